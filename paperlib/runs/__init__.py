"""The run engine: what to run, where its results live, and how many runs at once.

- :mod:`~paperlib.runs.experiment`: :class:`RunSpec` (one network: architecture,
  quantization, training, evaluation grid) and :func:`run` (train or read it
  from the content-addressed result cache, sweep its noise levels);
- :mod:`~paperlib.runs.fingerprint`: the hash of the code that determines
  results, stored with every cached result (``docs/protocol.md`` §12);
- :mod:`~paperlib.runs.sweep`: :func:`run_sweep` over many specs on any
  executor (a Dask cluster included);
- :mod:`~paperlib.runs.profile`: :class:`Profile`, how much of the paper's
  protocol to run, and the named profiles in ``paperlib/runs/profiles/``;
- :mod:`~paperlib.runs.provenance`, :mod:`~paperlib.runs.progress`,
  :mod:`~paperlib.runs.check_figures`: what made a result, progress lines,
  and whether committed figures are current.

The engine imports the toolbox (``paperlib.*``), never the paper layer.
"""
from .experiment import CacheWarning, RunResult, RunSpec, run
from .profile import PROFILES, Profile, load_profile
from .sweep import dask_executor, run_sweep

__all__ = ["CacheWarning", "PROFILES", "Profile", "RunResult", "RunSpec", "dask_executor", "load_profile", "run",
           "run_sweep"]

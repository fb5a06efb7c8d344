"""The run engine: what to run, where its results live, and how many runs at once.

- :mod:`~paperlib.runs.spec`: :class:`RunSpec`, one network (architecture,
  quantization, training, evaluation grid), and its cache keys;
- :mod:`~paperlib.runs.cache`: the content-addressed result cache (layout,
  records, curves, weights, partial checkpoints, stale and corrupt entries);
- :mod:`~paperlib.runs.experiment`: :func:`run` (train a spec or read it from
  the cache, evaluate the noise levels missing) and :class:`RunResult`;
- :mod:`~paperlib.runs.fingerprint`: the hash of the code that determines
  results, stored with every cached result (``docs/protocol.md`` §12);
- :mod:`~paperlib.runs.sweep`: :func:`run_sweep` over many specs on any
  executor (a Dask cluster included);
- :mod:`~paperlib.runs.packs`: what a sweep trains together in packs (on CUDA
  by default), resumably, each network in its own cache entry;
- :mod:`~paperlib.runs.profile`: :class:`Profile`, how much of the paper's
  protocol to run, and the named profiles in ``paperlib/runs/profiles/``;
- :mod:`~paperlib.runs.provenance`, :mod:`~paperlib.runs.progress`,
  :mod:`~paperlib.runs.check_figures`: what made a result, progress lines,
  and whether committed figures are current;
- :mod:`~paperlib.runs.compare`: a rerun's figure against ours, network by
  network (does it reproduce them, beside the spread between seeds).

The engine imports the toolbox (``paperlib.*``), never the paper layer.
"""
from .cache import CacheWarning, ResultsNotWritableError, results_root
from .experiment import RunResult, run, shared_data
from .profile import PROFILES, Profile, load_profile
from .spec import CACHE_VERSION, RunSpec
from .sweep import dask_executor, run_sweep

__all__ = [
    "CACHE_VERSION",
    "PROFILES",
    "CacheWarning",
    "Profile",
    "ResultsNotWritableError",
    "RunResult",
    "RunSpec",
    "dask_executor",
    "load_profile",
    "results_root",
    "run",
    "run_sweep",
    "shared_data",
]

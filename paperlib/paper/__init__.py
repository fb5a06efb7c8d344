"""The paper layer: one module per notebook, the pieces they share, and what runs the notebooks.

Import it on its own (``from paperlib import paper``); it brings matplotlib and seaborn. A notebook needs only this
package's names (``paper.<name>``). Every figure's module has the same shape: ``specs(profile, seeds, ...)`` (its
networks; a notebook sweeps them with ``session.run(paper.fig2)``), its tables beside the paper's, ``figure(...)``,
its checks, ``what_it_shows(...)`` and ``MODULES`` (what its saved figures record, ``session.save(..., by=...)``).

- the paper: :mod:`~paperlib.paper.fig2` (notebook 01), :mod:`~paperlib.paper.table1` (02),
  :mod:`~paperlib.paper.fig3` (03), :mod:`~paperlib.paper.table2` (04);
- beyond the paper: :mod:`~paperlib.paper.walking_noise` (05), :mod:`~paperlib.paper.variance_aware` (06),
  :mod:`~paperlib.paper.noise_kinds` (07), :mod:`~paperlib.paper.pcm_device` (08);
- behind the profiles: :mod:`~paperlib.paper.epochs_curve` (accuracy and sigma_mid against epochs,
  ``python -m benchmarks.epochs_curve``);
- shared: :mod:`~paperlib.paper.published` (the paper's printed numbers), :mod:`~paperlib.paper.specs` (spec
  builders), :mod:`~paperlib.paper.rules` (the findings' decision rules), :mod:`~paperlib.paper.prose` (the
  sentences of "what this run shows"), :mod:`~paperlib.paper.tables` (formatting), :mod:`~paperlib.paper.plots`
  (the theme, the curves, saved files); :mod:`~paperlib.runs.summary` (re-exported: curves, fits, summaries);
- running: :class:`~paperlib.paper.session.Session` (a notebook's parameters, sweeps, captions, saved figures),
  :mod:`~paperlib.paper.notebooks` (the main job), :mod:`~paperlib.paper.transfer`, :mod:`~paperlib.paper.slices`,
  :mod:`~paperlib.paper.verdicts`, :mod:`~paperlib.paper.zoo`.
"""
from ..runs.summary import CURVE_KEYS, Variant, curves, fit_curve, label, summarize, summary_row, variant_name
from . import (
    epochs_curve,
    fig2,
    fig3,
    noise_kinds,
    pcm_device,
    plots,
    prose,
    published,
    rules,
    specs,
    table1,
    table2,
    tables,
    variance_aware,
    walking_noise,
)
from .rules import findings, findings_report
from .session import Session
from .tables import Markdown, noise_module_counts, percent_table

#: The figures' modules, by the notebook that shows each (the main job's names).
FIGURES = {"01": fig2, "02": table1, "03": fig3, "04": table2, "05": walking_noise, "06": variance_aware,
           "07": noise_kinds, "08": pcm_device}

__all__ = [
    "CURVE_KEYS", "FIGURES", "Markdown", "Session", "Variant", "curves", "epochs_curve", "fig2", "fig3", "findings",
    "findings_report", "fit_curve", "label", "noise_kinds", "noise_module_counts", "pcm_device", "percent_table",
    "plots", "prose", "published", "rules", "specs", "summarize", "summary_row", "table1", "table2", "tables",
    "variance_aware", "variant_name", "walking_noise",
]

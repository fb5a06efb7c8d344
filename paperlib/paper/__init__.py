"""The paper layer: the paper's numbers, experiments, findings and figures, and what the notebooks use.

Import it on its own (``from paperlib import paper``); it brings matplotlib. A notebook needs only this
package's names (``paper.<name>``):

- :mod:`~paperlib.paper.published`: the paper's printed numbers as tables;
- :mod:`~paperlib.paper.experiments`: the specs of its experiments and its tables beside ours;
- :mod:`~paperlib.paper.findings`: its findings checked on a run, and what a run shows (``paper.findings`` is
  the function :func:`~paperlib.paper.findings.findings`);
- :mod:`~paperlib.runs.summary` (re-exported): curves, fits and summaries of sweep tables;
- :mod:`~paperlib.paper.beyond`: experiments beyond the paper;
- :mod:`~paperlib.paper.plotting`: plot functions (each takes an ``ax``) and the notebooks' figures;
- :mod:`~paperlib.paper.session`: :class:`Session`, a notebook's parameters, sweeps, captions and saved figures;
- :mod:`~paperlib.paper.notebooks`: the main job (``make figures``).
"""
from ..runs.summary import CURVE_KEYS, Variant, curves, fit_curve, label, summarize, summary_row, variant_name
from . import beyond, experiments, pcm_device, plotting, published
from .experiments import (
    Markdown,
    architecture_stats,
    clean_specs,
    compare_fig2,
    compare_fig3,
    compare_table_i,
    compare_table_ii,
    fig3_specs,
    noise_module_counts,
    noisy_specs,
    noisy_variants,
    percent_table,
    published_table_i,
    qat_variants,
    table_ii_specs,
    with_architecture_stats,
)
from .findings import (
    Finding,
    budget,
    findings_report,
    what_fig2_shows,
    what_fig3_shows,
    what_table1_shows,
    what_table2_shows,
)
from .findings import findings as _findings
from .plotting import (
    fig2,
    fig3,
    plot_curves,
    plot_layer_sensitivity,
    plot_midpoints,
    plot_peak_vs_midpoint,
    plot_train_infer_map,
    table1_figure,
    table2_figure,
)
from .session import Session

#: The function :func:`paperlib.paper.findings.findings` (the name shadows its module, which stays importable as
#: ``paperlib.paper.findings`` through ``sys.modules``).
findings = _findings

__all__ = [
    "CURVE_KEYS", "Finding", "Markdown", "Session", "Variant", "architecture_stats", "beyond", "budget",
    "clean_specs", "compare_fig2", "compare_fig3", "compare_table_i", "compare_table_ii", "curves", "experiments",
    "fig2", "fig3", "fig3_specs", "findings", "findings_report", "fit_curve", "label", "noise_module_counts",
    "noisy_specs", "noisy_variants", "pcm_device", "percent_table", "plot_curves", "plot_layer_sensitivity",
    "plot_midpoints",
    "plot_peak_vs_midpoint", "plot_train_infer_map", "plotting", "published", "published_table_i", "qat_variants",
    "summarize", "summary_row", "table1_figure", "table2_figure", "table_ii_specs", "variant_name", "what_fig2_shows",
    "what_fig3_shows", "what_table1_shows", "what_table2_shows", "with_architecture_stats",
]

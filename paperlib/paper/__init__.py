"""The paper layer: the paper's numbers, experiments, findings and figures, and what the notebooks use.

Import it on its own (``from paperlib import paper``); it brings matplotlib.

- :mod:`~paperlib.paper.published`: the paper's printed numbers as tables;
- :mod:`~paperlib.paper.reproduce`: the specs of its experiments, the summary
  tables and the findings;
- :mod:`~paperlib.paper.beyond`: experiments beyond the paper;
- :mod:`~paperlib.paper.plotting`: plot functions (each takes an ``ax``);
- :mod:`~paperlib.paper.session`: :class:`Session`, a notebook's parameters,
  sweeps, captions and saved figures;
- :mod:`~paperlib.paper.notebooks`: the main job (``make figures``).
"""
from . import beyond, plotting, published, reproduce
from .session import Session

__all__ = ["Session", "beyond", "plotting", "published", "reproduce"]

"""Resuming Brevitas networks from a checkpoint with their quantizers in place (docs/protocol.md §12).

Brevitas builds new quantizer modules whenever a state dict is loaded into
its layers (``brevitas.config.REINIT_ON_STATE_DICT_LOAD``, on by default).
For a dynamic scale (``ParameterFromRuntimeStatsScaling``) the learned value
is then a new parameter: an optimizer built before the load still holds the
old one, so after a resume the scale stopped learning, and a resumed run was
not the uninterrupted one (it was, for networks without a learned scale).
Inside :func:`quantizers_kept` a load fills the existing quantizers in
place: the optimizer's parameters stay the network's, and a resumed run
gives the numbers of an uninterrupted one bit for bit (tests/test_resume.py,
tests/test_pack.py). An uninterrupted run loads nothing, so its numbers do
not depend on this module.

:func:`train` (``paperlib.train``) is :func:`paperlib.training.train` inside
:func:`quantizers_kept`; the run engine and :func:`paperlib.train_pack` load
inside it too.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from . import training as _training


@contextlib.contextmanager
def quantizers_kept() -> Iterator[None]:
    """Inside the block, loading a state dict into Brevitas layers fills their quantizers in place (module
    docstring); Brevitas' setting is restored afterwards."""
    from brevitas import config

    before = config.REINIT_ON_STATE_DICT_LOAD
    config.REINIT_ON_STATE_DICT_LOAD = False
    try:
        yield
    finally:
        config.REINIT_ON_STATE_DICT_LOAD = before


@functools.wraps(_training.train)
def train(*args, **kwargs):
    with quantizers_kept():  # a checkpoint's learned scales stay the optimizer's (module docstring)
        return _training.train(*args, **kwargs)

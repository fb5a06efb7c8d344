"""Atomic file writes: a half-written file is never mistaken for a result."""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def write_atomic(path: Path, write: Callable[[BinaryIO], None], attempts: int = 3) -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it over ``path``.

    Readers see the old file or the new one, never a part. Retried when the
    folder vanishes meanwhile (a process that finished the same run removes it).
    """
    for attempt in range(attempts):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.NamedTemporaryFile(
                dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
            ) as f:
                write(f)
            os.replace(f.name, path)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise

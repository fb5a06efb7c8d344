"""Atomic file writes: a half-written file is never mistaken for a result."""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    """The process's file-creation mask (read once: setting it is process-wide, so it is not read per write)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Permissions of a new file, as ``open()`` gives them: 0o666 less the umask (0o644 under the usual 0o022).
#: A temporary file is created 0o600; without this, every figure, CSV and curve would be private to its writer.
FILE_MODE = 0o666 & ~_umask()


def write_atomic(path: Path, write: Callable[[BinaryIO], None], attempts: int = 3) -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it over ``path``.

    Readers see the old file or the new one, never a part; when ``write``
    raises, the temporary file is removed and the error goes on. The file gets the
    permissions a plain ``open()`` would give it (:data:`FILE_MODE`), so a
    result cache or figures folder shared with a group stays readable by it.
    Retried when the folder vanishes meanwhile (a process that finished the
    same run removes it).
    """
    for attempt in range(attempts):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.NamedTemporaryFile(
                dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False
            ) as f:
                try:
                    write(f)
                except BaseException:
                    f.close()
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f.name)
                    raise
                os.chmod(f.name, FILE_MODE)
            os.replace(f.name, path)
            return
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise

"""Progress lines for the terminal that runs a notebook, not for the notebook itself.

A notebook run by ``python -m paperlib.notebooks`` (what ``make figures``
calls) writes nothing about its progress into its stored outputs; instead the
runner sets ``$PAPERLIB_PROGRESS`` to a file, the library appends one line per
event to it (:func:`report`), and the runner prints those lines as they come.
Without the variable, :func:`report` does nothing.
"""
from __future__ import annotations

import os

#: Environment variable naming the file that progress lines are appended to.
ENV: str = "PAPERLIB_PROGRESS"


def report(message: str) -> None:
    """Append ``message`` (one line) to the file named by ``$PAPERLIB_PROGRESS``, if it is set."""
    path = os.environ.get(ENV)
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(" ".join(message.split("\n")) + "\n")
    except OSError:  # progress is a courtesy: never let it break a run
        pass


def duration(seconds: float) -> str:
    """``"42 s"``, ``"3 min"``, ``"2.5 h"``: a duration for humans."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

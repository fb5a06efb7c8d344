"""The findings' verdicts of the committed figures, for the prose that reports them (README.md, docs/results.md).

Every executed notebook ends with a table of the paper's findings and its
verdict on each (``| 1 | <statement> | **holds** | <evidence> |``, written by
:mod:`paperlib.paper.findings`). The prose must not say otherwise, so it does
not restate them by hand: a block between the markers

    <!-- verdicts: figures/quick -->
    ...
    <!-- /verdicts -->

is generated from the executed notebooks under that folder (``*/notebooks/*.ipynb``
or ``*.ipynb``), and so is a one-line summary per architecture between
``<!-- verdict-summary: figures/quick lenet5 -->`` and ``<!-- /verdict-summary -->``
(:func:`summary_line`, for the README), and the "what this run shows" of one executed notebook (printed or
returned as Markdown), as a quote, between ``<!-- shows: figures/quick/notebooks/08_pcm_device.ipynb -->``
and ``<!-- /shows -->`` (:func:`shows_quote`); ``tests/test_prose.py`` fails when a block is not what the
committed notebooks say.
Command line::

    python -m paperlib.paper.verdicts README.md docs/results.md            # rewrite the blocks
    python -m paperlib.paper.verdicts --check README.md docs/results.md    # exit 1 naming a stale block
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_atomic

#: A verdict row of a findings table: finding number, statement, verdict.
ROW = re.compile(r"^\| (\d) \| (.+?) \| \*\*(.+?)\*\* \|")
#: A generated block: its folder, and its body.
BLOCK = re.compile(r"(<!-- verdicts: (\S+) -->\n)(.*?)(<!-- /verdicts -->)", re.S)
#: A generated one-line summary: its folder and architecture, and its body.
SUMMARY = re.compile(r"(<!-- verdict-summary: (\S+) (\w+) -->)(.*?)(<!-- /verdict-summary -->)", re.S)
#: A generated quote of what one executed notebook's run shows: the notebook, and the body.
SHOWS = re.compile(r"(<!-- shows: (\S+) -->\n)(.*?)(<!-- /shows -->)", re.S)
#: Short names of the statements of a finding that is tested in two halves (finding 4), for the summary.
HALVES = {"noisy training raises sigma_mid": "the gain", "with noisy training, quantized and fp32": "quantized = fp32",
          "constant scaling raises sigma_mid above dynamic": "constant > dynamic",
          "dynamic scaling is less robust than fp32": "dynamic < fp32"}
#: What a notebook shows, for the table's first column (by the file name's start).
NOTEBOOK_NAMES = {"01": "Fig. 2", "02": "Table I", "03": "Fig. 3", "04": "Table II"}


@dataclass(frozen=True)
class Verdict:
    """One verdict of one executed notebook."""

    notebook: str
    """the executed notebook's file name"""
    finding: int
    """the paper's finding (docs/protocol.md §8)"""
    statement: str
    """what was tested, e.g. "lenet5 4-bit: dynamic scaling is less robust than fp32\""""
    verdict: str
    """holds, does not hold or not resolved"""


def notebook_verdicts(path: str | Path) -> list[Verdict]:
    """The verdicts in the stored outputs of the executed notebook ``path``, in order (empty: none)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    out = []
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown", "")
            for line in ("".join(text) if isinstance(text, list) else text).splitlines():
                m = ROW.match(line)
                if m:
                    out.append(Verdict(Path(path).name, int(m.group(1)), m.group(2), m.group(3)))
    return out


def folder_verdicts(folder: str | Path) -> list[Verdict]:
    """The verdicts of every executed notebook in ``folder`` (its ``notebooks/`` or itself), by file name."""
    folder = Path(folder)
    notebooks = sorted((folder / "notebooks").glob("*.ipynb")) or sorted(folder.glob("*.ipynb"))
    if not notebooks:
        raise ValueError(f"{folder} holds no executed notebooks (notebooks/*.ipynb); render its profile first")
    return [v for nb in notebooks for v in notebook_verdicts(nb)]


def verdict_table(folder: str | Path) -> str:
    """A markdown table of :func:`folder_verdicts`: notebook, finding, what was tested, verdict."""
    lines = ["| notebook | finding | tested | verdict |", "|---|---|---|---|"]
    for v in folder_verdicts(folder):
        shows = NOTEBOOK_NAMES.get(v.notebook[:2], v.notebook)
        lines.append(f"| {shows} (`{v.notebook}`) | {v.finding} | {v.statement} | **{v.verdict}** |")
    return "\n".join(lines) + "\n"


def _half(statement: str) -> str:
    tail = statement.split(": ", 1)[-1]
    return next((short for start, short in HALVES.items() if tail.startswith(start)), tail)


def summary_line(folder: str | Path, arch: str) -> str:
    """One line of every finding's verdicts for ``arch`` in the notebooks of ``folder``, e.g. "finding 1 does not
    hold at 4 bits, holds at 8 bits; 2 holds; ...": a finding tested at several bit widths or in two halves names
    each where the verdicts differ. A statement tested by two notebooks with two verdicts is named with both."""
    verdicts = [v for v in folder_verdicts(folder) if v.statement.startswith(f"{arch} ") or
                v.statement.startswith(f"{arch}:")]
    if not verdicts:
        raise ValueError(f"the notebooks in {folder} give no verdict for {arch}")
    parts = []
    for finding in sorted({v.finding for v in verdicts}):
        mine = [v for v in verdicts if v.finding == finding]
        groups: dict[str, list[str]] = {}
        for v in mine:  # by bit width ("4-bit"), else by half; verdicts in order, each once
            m = re.match(rf"{arch} (\d+)-bit:", v.statement)
            where = f"at {m.group(1)} bits" if m else f"({_half(v.statement)})"
            said = groups.setdefault(where, [])
            if v.verdict not in said:
                said.append(v.verdict)
        if len({w for said in groups.values() for w in said}) == 1:
            text = next(iter(groups.values()))[0]
        else:
            text = ", ".join(f"{' / '.join(said)} {where}" for where, said in groups.items())
        parts.append(f"{finding} {text}")
    return "finding " + "; ".join(parts)


def shows_quote(path: str | Path) -> str:
    """What the last code cell of the executed notebook ``path`` shows (its "what this run shows"): the text it
    printed, one paragraph per line, or the Markdown it returned, line by line; as a markdown quote."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
    outputs = code[-1].get("outputs", []) if code else []
    printed = "".join("".join(o.get("text", "")) for o in outputs if o.get("name") == "stdout")
    if printed.strip():
        return "".join(f"> {line}\n>\n" for line in printed.strip().splitlines()).removesuffix(">\n")
    shown = "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in outputs)
    if not shown.strip():
        raise ValueError(f"{path}: its last code cell shows nothing; render the notebook first")
    return "".join(f"> {line}".rstrip() + "\n" for line in shown.strip().splitlines())


def render(text: str, root: str | Path = ".") -> str:
    """``text`` with every verdict block, summary line and quote regenerated from its folder or notebook (relative
    to ``root``)."""
    text = BLOCK.sub(lambda m: m.group(1) + verdict_table(Path(root) / m.group(2)) + m.group(4), text)
    text = SHOWS.sub(lambda m: m.group(1) + shows_quote(Path(root) / m.group(2)) + m.group(4), text)
    return SUMMARY.sub(lambda m: m.group(1) + summary_line(Path(root) / m.group(2), m.group(3)) + m.group(5), text)


def stale_blocks(path: str | Path, root: str | Path = ".") -> list[str]:
    """The folders (and architectures) whose verdict blocks or summary lines in the file ``path`` differ from what
    their notebooks say (empty: all current)."""
    text = Path(path).read_text(encoding="utf-8")
    stale = [m.group(2) for m in BLOCK.finditer(text) if m.group(3) != verdict_table(Path(root) / m.group(2))]
    stale += [m.group(2) for m in SHOWS.finditer(text) if m.group(3) != shows_quote(Path(root) / m.group(2))]
    return stale + [f"{m.group(2)} {m.group(3)}" for m in SUMMARY.finditer(text)
                    if m.group(4) != summary_line(Path(root) / m.group(2), m.group(3))]


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite the verdict blocks of the files, or with ``--check`` name the stale ones."""
    parser = argparse.ArgumentParser(prog="python -m paperlib.paper.verdicts", description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", help="markdown files with <!-- verdicts: FOLDER --> blocks")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when a block is stale")
    args = parser.parse_args(argv)
    stale = []
    for f in args.files:
        if args.check:
            stale += [f"{f}: the verdicts of {folder} are not what its executed notebooks say; run "
                      f"python -m paperlib.paper.verdicts {f}" for folder in stale_blocks(f)]
        else:
            new = render(Path(f).read_text(encoding="utf-8"))
            write_atomic(Path(f), lambda out, new=new: out.write(new.encode()))
    for line in stale:
        print(line)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

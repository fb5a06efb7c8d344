"""The three layers import only downwards: no toolbox or engine module brings matplotlib or the paper layer.

Toolbox: ``paperlib/*.py``; engine: ``paperlib/runs/*.py``; paper layer: ``paperlib/paper/`` (the only one
that may import matplotlib). Each module is imported in a process of its own that starts from a bare
``import paperlib`` (itself checked first), so one module's imports never hide another's.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "paperlib"

# Runs in a fresh interpreter: import paperlib, then fork once per module (the child imports it and reports what
# of matplotlib and the paper layer is loaded). One JSON line per module: [module, offenders or an import error].
SCRIPT = r"""
import importlib, json, os, sys

def offenders():
    return sorted(m for m in sys.modules if m in ("matplotlib", "paperlib.paper") or m.startswith("paperlib.paper."))

try:
    import paperlib
    print(json.dumps(["paperlib", offenders()]), flush=True)
except Exception as exc:
    print(json.dumps(["paperlib", [f"import failed: {exc!r}"]]), flush=True)
    sys.exit(0)
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
            out = offenders()
        except BaseException as exc:
            out = [f"import failed: {exc!r}"]
        print(json.dumps([name, out]), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
"""


def layer_modules() -> list[str]:
    """Every toolbox module (paperlib/*.py) and engine module (paperlib/runs/*.py), as dotted names."""
    toolbox = [f"paperlib.{p.stem}" for p in sorted(PACKAGE.glob("*.py")) if p.stem != "__init__"]
    engine = [f"paperlib.runs.{p.stem}" for p in sorted((PACKAGE / "runs").glob("*.py")) if p.stem != "__init__"]
    return toolbox + ["paperlib.runs"] + engine


def test_no_toolbox_or_engine_module_imports_matplotlib_or_the_paper_layer():
    modules = layer_modules()
    assert "paperlib.data" in modules and "paperlib.runs.experiment" in modules
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *modules], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = dict(json.loads(line) for line in proc.stdout.splitlines() if line.startswith("["))
    assert set(report) == {"paperlib", *modules}, f"no report for {sorted({'paperlib', *modules} - set(report))}"
    bad = {m: o for m, o in report.items() if o}
    assert not bad, "modules below the paper layer that import matplotlib or paperlib.paper (or fail): " + "; ".join(
        f"{m}: {', '.join(o)}" for m, o in bad.items()
    )

"""The fingerprint of the code that makes our numbers (docs/protocol.md §12).

A cached result is only as good as the code that made it. :func:`code_fingerprint`
hashes the modules that determine a trained network and its accuracies
(:data:`RESULT_MODULES`) and records the versions of the packages that do
(:data:`RESULT_PACKAGES`); every cache record stores it, and
:func:`paperlib.run` never silently reuses an entry made by other code.

Each module is hashed on its syntax tree with docstrings (every bare string
statement) removed, so comments, docstrings, field docstrings and formatting do
not change the hash. Statements that only call :mod:`paperlib.guards` (a bare
``guards.<name>(...)`` and ``from . import guards``) are removed too: a guard
raises on bad input or sets a damaged cache file aside and never changes a
number (its contract, tested), so a new check of bad input keeps every cached
result. And a module that only computes another result module's numbers faster,
proven equal to it bit for bit by the test suite (:data:`PROVEN_EQUAL`: the fast
QAT path, equal to Brevitas' layers), enters the hash under a fixed label, not
its source: a faster version that passes the same equality tests keeps every
cached result; its source hash is recorded beside the code hash
(``implementations``). Any other change of code does change the hash, even one
that leaves the numbers as they were (the cache cannot tell; ``run(...,
reuse_stale=True)`` is for a person who can).
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
from importlib import metadata
from pathlib import Path

#: Modules of ``paperlib`` that determine a trained network and its accuracies; one missing is skipped.
RESULT_MODULES: tuple[str, ...] = ("models", "quant", "noise", "data", "training", "evaluate", "inference",
                                   "instrument", "fastquant")
#: Result modules proven equal bit for bit to another result module's numbers, on every CI run, by the tests named
#: here (docs/protocol.md §12): each enters the code hash under its label, the hash of the version whose numbers the
#: caches were first made with, instead of its source hash. Change the label (every cached result goes stale) when
#: such a module changes what it computes; a faster version of the same numbers keeps it.
PROVEN_EQUAL: dict[str, str] = {
    "fastquant": "eb00ca43d97bca4d",  # tests/test_fastquant.py: outputs, gradients and training runs equal Brevitas'
}
#: Modules that determine a network trained in a pack (:mod:`paperlib.pack`) beyond :data:`RESULT_MODULES`: a pack
#: equals training alone to float tolerance only, so a pack-made result has its own code hash (docs/protocol.md §12).
PACK_MODULES: tuple[str, ...] = ("pack",)
#: Installed packages whose versions determine our numbers.
RESULT_PACKAGES: tuple[str, ...] = ("torch", "torchvision", "brevitas", "numpy")
#: The folder of the ``paperlib`` toolbox modules (this module lives in ``paperlib/runs/``).
PACKAGE_DIR = Path(__file__).resolve().parents[1]


#: The module whose calls the fingerprint leaves out (see the module docstring).
GUARDS = "guards"


def _ignored(s: ast.stmt) -> bool:
    """A docstring (bare string statement), a bare call ``guards.<name>(...)`` or ``from . import guards``."""
    if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str):
        return True
    if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call):
        func = s.value.func
        return isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == GUARDS
    return (isinstance(s, ast.ImportFrom) and s.module is None and s.level >= 1
            and [(a.name, a.asname) for a in s.names] == [(GUARDS, None)])


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    """Remove every docstring and every statement that only calls the guards (:func:`_ignored`) from every body,
    in place."""
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if not isinstance(body, list) or not body or not isinstance(body[0], ast.stmt):
                continue
            kept = [s for s in body if not _ignored(s)]
            setattr(node, name, kept or ([ast.Pass()] if name == "body" else []))
    return tree


def _canonical(node) -> object:
    """A JSON-able form of an AST without positions; None and empty fields are left out, so a
    Python version that adds an optional field (e.g. ``type_params``) keeps every hash."""
    if isinstance(node, ast.AST):
        fields = {}
        for name in node._fields:
            value = getattr(node, name, None)
            if value is None or (isinstance(value, list) and not value):
                continue
            fields[name] = _canonical(value)
        return [type(node).__name__, fields]
    if isinstance(node, list):
        return [_canonical(v) for v in node]
    if isinstance(node, (bytes, complex)) or node is Ellipsis:
        return repr(node)
    if isinstance(node, float):
        return repr(node)  # 1.0 and 1 stay apart, inf and nan stay JSON-able
    return node


def source_hash(source: str, name: str = "<source>") -> str:
    """16-hex hash of Python ``source`` on its syntax tree: docstrings, comments and formatting do not count."""
    tree = _strip_docstrings(ast.parse(source, filename=name))
    text = json.dumps(_canonical(tree), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def compute_fingerprint(modules: tuple[str, ...] = RESULT_MODULES, package_dir: str | Path = PACKAGE_DIR,
                        packages: tuple[str, ...] = RESULT_PACKAGES) -> dict:
    """The fingerprint of ``modules`` (``<package_dir>/<name>.py``; missing files skipped), uncached.

    Returns:
        ``{"code": 16-hex hash over the module hashes, "modules": {name: 16-hex},
        "packages": {name: version}, "implementations": {name: 16-hex}}``: a module of
        :data:`PROVEN_EQUAL` has its label under ``modules`` (what the code hash is made of) and its source
        hash under ``implementations`` (provenance only).
    """
    folder = Path(package_dir)
    hashes, implementations = {}, {}
    for name in modules:
        path = folder / f"{name}.py"
        if path.is_file():
            hashes[name] = source_hash(path.read_text(encoding="utf-8"), str(path))
            if name in PROVEN_EQUAL:
                implementations[name], hashes[name] = hashes[name], PROVEN_EQUAL[name]
    code = hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]
    return {"code": code, "modules": hashes, "packages": {p: _package_version(p) for p in packages},
            "implementations": implementations}


@functools.lru_cache(maxsize=2)
def _cached_fingerprint(packed: bool) -> str:
    return json.dumps(compute_fingerprint(RESULT_MODULES + PACK_MODULES if packed else RESULT_MODULES))


def code_fingerprint(packed: bool = False) -> dict:
    """The fingerprint of this process's ``paperlib`` (computed once per process): see :func:`compute_fingerprint`.

    ``packed``: the fingerprint of a network trained in a pack (:data:`PACK_MODULES` hashed too; its own code hash).
    """
    return json.loads(_cached_fingerprint(bool(packed)))  # a fresh copy: callers may change it


def current_codes() -> set[str]:
    """The code hashes of results this checkout makes: trained alone, and trained in a pack."""
    return {code_fingerprint()["code"], code_fingerprint(packed=True)["code"]}


def packed_record(record: dict | None) -> bool:
    """Whether a cache record is of a network trained in a pack (its ``trained_in`` names the pack)."""
    return bool(record) and bool((record.get("trained_in") or {}).get("pack"))


def same_code(old: dict | None, new: dict) -> bool:
    """Whether fingerprint ``old`` (None: made before fingerprints existed) is the code and packages of ``new``."""
    return bool(old) and old.get("code") == new["code"] and old.get("packages") == new["packages"]


def changed_modules(old: dict | None, new: dict) -> list[str]:
    """The modules (``training``) and packages (``torch 2.3.0 -> 2.4.0``) that differ between two fingerprints.

    A module present in only one of them counts as changed; ``old`` None or
    empty (a result made before fingerprints existed) gives
    ``["unknown (made before code fingerprints)"]``.
    """
    if not old:
        return ["unknown (made before code fingerprints)"]
    a, b = old.get("modules", {}), new.get("modules", {})
    out = [m for m in sorted(set(a) | set(b)) if a.get(m) != b.get(m)]
    pa, pb = old.get("packages", {}), new.get("packages", {})
    out += [f"{p} {pa.get(p, 'absent')} -> {pb.get(p, 'absent')}" for p in sorted(set(pa) | set(pb))
            if pa.get(p) != pb.get(p)]
    if not out and old.get("code") != new.get("code"):
        out.append("code hash differs")
    return out

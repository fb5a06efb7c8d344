"""The result cache knows its code (docs/protocol.md §11-§12): fingerprints, stale entries, diverged runs,
captions of the results' own revision, the weights policy and an unwritable results folder."""
import json
import stat
import warnings
from pathlib import Path

import pandas as pd
import pytest

import paperlib.runs.experiment as experiment
import paperlib.runs.provenance as provenance
from paperlib import CacheWarning, RunSpec, run, run_sweep
from paperlib.paper import Session
from paperlib.runs.cache import ResultsNotWritableError, check_writable
from paperlib.runs.fingerprint import (
    PROVEN_EQUAL,
    RESULT_MODULES,
    changed_modules,
    code_fingerprint,
    compute_fingerprint,
    source_hash,
)
from paperlib.runs.provenance import git_revision

SPEC = dict(arch="lenet5", epochs=1, batch_size=32, sigmas=(0.1, 1.0), repeats=2)
PAPERLIB = Path(experiment.__file__).resolve().parents[1]  # the toolbox modules: paperlib/*.py


def _no_training(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("training happened")
    monkeypatch.setattr(experiment, "train", fail)


def _other_code(monkeypatch, module="training"):
    """From now on this process runs 'other code': the fingerprint of ``module`` differs."""
    fp = code_fingerprint()
    fp["modules"][module] = "0" * 16
    fp["code"] = "feedfacefeedface"
    pack_fp = {**fp, "code": "feedfacefeedfac0"}  # a pack's fingerprint of the same other code
    monkeypatch.setattr(experiment, "code_fingerprint",
                        lambda packed=False: json.loads(json.dumps(pack_fp if packed else fp)))
    monkeypatch.setattr(provenance, "code_fingerprint", lambda: json.loads(json.dumps(fp)))
    return fp


def _run(root, results, **kw):
    spec = {**SPEC, **kw.pop("spec", {})}
    return run(RunSpec(**spec), root, results, "cpu", progress=False, **kw)


# --- the fingerprint ---------------------------------------------------------------------------------------------

def test_the_fingerprint_ignores_comments_and_docstrings_but_not_a_change_of_code(tmp_path):
    original = (PAPERLIB / "training.py").read_text()
    (tmp_path / "training.py").write_text(original)
    before = compute_fingerprint(("training",), tmp_path)
    cosmetic = original.replace('"""Training: Adam', '"""Training (reworded docstring): Adam', 1)
    cosmetic = cosmetic.replace('    """number of passes over the training set (paper: 500)"""',
                                '    """passes over the training set, reworded"""  # and a comment', 1)
    cosmetic = cosmetic.replace("def default_lr(arch: str, bits: int | None) -> float:",
                                "def default_lr(arch: str,\n"
                                "               bits: int | None) -> float:  # reformatted", 1)
    assert cosmetic.count("reword") == 2 and "# reformatted" in cosmetic
    (tmp_path / "training.py").write_text(cosmetic)
    assert compute_fingerprint(("training",), tmp_path) == before
    changed = cosmetic.replace('_LR = {"lenet5": 1e-3,', '_LR = {"lenet5": 2e-3,', 1)
    assert changed != cosmetic
    (tmp_path / "training.py").write_text(changed)
    after = compute_fingerprint(("training",), tmp_path)
    assert after["code"] != before["code"] and changed_modules(before, after) == ["training"]


def test_a_faster_fast_path_keeps_the_code_hash_and_a_change_of_quant_does_not(tmp_path):
    # fastquant is proven equal to Brevitas bit for bit by tests/test_fastquant.py on every CI run: its slot in the
    # code hash is a fixed label, its source hash is provenance (docs/protocol.md §12); quant (what Brevitas
    # computes) still counts
    assert set(PROVEN_EQUAL) == {"fastquant"} and set(PROVEN_EQUAL) <= set(RESULT_MODULES)
    for name in ("fastquant", "quant"):
        (tmp_path / f"{name}.py").write_text((PAPERLIB / f"{name}.py").read_text())
    before = compute_fingerprint(("fastquant", "quant"), tmp_path)
    source = source_hash((PAPERLIB / "fastquant.py").read_text())
    assert before["modules"]["fastquant"] == PROVEN_EQUAL["fastquant"]
    assert before["implementations"] == {"fastquant": source}
    with open(tmp_path / "fastquant.py", "a") as f:
        f.write("\n\ndef _faster(x):\n    return x * 2\n")
    after = compute_fingerprint(("fastquant", "quant"), tmp_path)
    assert after["code"] == before["code"] and changed_modules(before, after) == []
    assert after["implementations"]["fastquant"] != source
    quant = (tmp_path / "quant.py").read_text()
    (tmp_path / "quant.py").write_text(quant + "\n\ndef _other(x):\n    return x * 2\n")
    assert compute_fingerprint(("fastquant", "quant"), tmp_path)["code"] != before["code"]


def test_source_hash_sees_a_changed_constant_and_an_added_statement_but_not_a_docstring():
    base = source_hash('def f(x):\n    """doc"""\n    return x + 1\n')
    assert base == source_hash("def f(x):\n    return x + 1  # comment\n")
    assert base != source_hash("def f(x):\n    return x + 2\n")
    assert base != source_hash("def f(x):\n    return x + 1.0\n")
    assert base != source_hash("def f(x):\n    x = x\n    return x + 1\n")


def test_code_fingerprint_covers_the_result_modules_and_the_packages():
    fp = code_fingerprint()
    assert set(fp["modules"]) == {m for m in RESULT_MODULES if (PAPERLIB / f"{m}.py").is_file()}
    assert {"models", "quant", "noise", "data", "training", "evaluate", "inference", "instrument"} <= set(fp["modules"])
    assert "fastquant" in RESULT_MODULES
    assert set(fp["packages"]) == {"torch", "torchvision", "brevitas", "numpy"}
    assert len(fp["code"]) == 16 and all(len(h) == 16 for h in fp["modules"].values())
    newer = json.loads(json.dumps(fp))
    newer["packages"]["torch"] = "9.9.9"
    assert changed_modules(fp, newer) == [f"torch {fp['packages']['torch']} -> 9.9.9"]
    assert changed_modules(None, fp) == ["unknown (made before code fingerprints)"]


# --- stale entries -----------------------------------------------------------------------------------------------

def test_an_entry_of_other_code_is_moved_aside_and_recomputed(tiny_root, tmp_path, monkeypatch):
    first = _run(tiny_root, tmp_path)
    assert first.record["fingerprint"] == code_fingerprint() and first.code == code_fingerprint()["code"]
    new = _other_code(monkeypatch)
    with pytest.warns(CacheWarning, match=r"made by other code \(changed: training; rev .*moved it to .*stale"):
        again = _run(tiny_root, tmp_path)
    assert again.trained and again.record["fingerprint"]["code"] == new["code"] == again.code
    (moved,) = (tmp_path / "stale").iterdir()
    assert moved.name.startswith(first.key) and json.loads((moved / "record.json").read_text())["key"] == first.key
    _no_training(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)  # made by this (other) code now: reused without a word
        assert not _run(tiny_root, tmp_path).trained


def test_an_entry_of_other_code_is_reused_with_a_warning_when_asked(tiny_root, tmp_path, monkeypatch):
    first = _run(tiny_root, tmp_path)
    _other_code(monkeypatch, "evaluate")
    _no_training(monkeypatch)
    with pytest.warns(CacheWarning, match=r"made by other code \(changed: evaluate;.*reusing it as asked"):
        reused = _run(tiny_root, tmp_path, reuse_stale=True)
    assert not reused.trained and reused.noise_curve.equals(first.noise_curve) and reused.code == first.code
    monkeypatch.setenv("PAPERLIB_REUSE_STALE", "1")
    with pytest.warns(CacheWarning, match="reusing it as asked"):
        df = run_sweep([RunSpec(**SPEC)], data_root=tiny_root, results_dir=tmp_path, device="cpu", progress=False)
    assert df.error.isna().all() and (df.code == first.code).all() and not (tmp_path / "stale").exists()


def _as_if_trained_on(entry: Path, device: str, torch_version: str) -> dict:
    """Rewrite a cached entry as if a machine with ``device`` and its own torch had made it (curve files renamed to
    that fingerprint's names, as that machine would have written them)."""
    from paperlib.runs.cache import curve_path

    record = json.loads((entry / "record.json").read_text())
    spec = RunSpec.from_dict(record["spec"])
    old = curve_path(entry, spec, record["fingerprint"])
    record["fingerprint"]["packages"]["torch"] = torch_version
    record["provenance"]["device"] = device
    old.rename(curve_path(entry, spec, record["fingerprint"]))
    (entry / "record.json").write_text(json.dumps(record))
    return record


def test_this_code_s_result_from_another_kind_of_device_is_kept_and_named(tiny_root, tmp_path, monkeypatch):
    """A GPU machine's result (same code, its own torch) is that device's result: kept, not retrained on the CPU,
    and the caption says where and with which torch it was trained; a new noise point it lacks, without its
    weights, is one clear error instead of a retraining that would make a CPU network."""
    first = _run(tiny_root, tmp_path)
    entry = tmp_path / "runs" / first.key
    record = _as_if_trained_on(entry, "cuda:0", "2.11.0")
    (entry / "weights.pt").unlink()  # imported without weights, as make export writes it by default
    (entry / "record.json").write_text(json.dumps({**record, "weights": False, "weights_not_exported": True}))
    _no_training(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        df = run_sweep([RunSpec(**SPEC)], data_root=tiny_root, results_dir=tmp_path, device="cpu", progress=False)
    assert df.error.isna().all() and not df.trained.any() and (df.torch == "2.11.0").all()
    assert df.accuracy.tolist() == first.noise_curve.accuracy.tolist()
    assert "trained on cuda:0 (torch 2.11.0), deterministic kernels" in Session.from_parameters("smoke").caption(df)
    with pytest.raises(ValueError, match="trained on cuda:0.*lacks 2 of the spec's noise points.*WEIGHTS=1"):
        _run(tiny_root, tmp_path, spec={"sigmas": (0.1, 1.0, 3.0), "repeats": 2})


def test_another_torch_on_the_same_kind_of_device_is_other_code(tiny_root, tmp_path, monkeypatch):
    first = _run(tiny_root, tmp_path)
    _as_if_trained_on(tmp_path / "runs" / first.key, "cpu", "2.11.0")
    with pytest.warns(CacheWarning, match=r"made by other code \(changed: torch 2.11.0 -> .*stale"):
        assert _run(tiny_root, tmp_path).trained


def test_an_entry_from_before_fingerprints_counts_as_other_code(tiny_root, tmp_path, monkeypatch):
    first = _run(tiny_root, tmp_path)
    record = json.loads((first.path / "record.json").read_text())
    del record["fingerprint"]
    (first.path / "record.json").write_text(json.dumps(record))
    with pytest.warns(CacheWarning, match=r"changed: unknown \(made before code fingerprints\)"):
        assert _run(tiny_root, tmp_path).trained


def test_curve_points_of_other_code_are_never_extended(tiny_root, tmp_path, monkeypatch):
    first = _run(tiny_root, tmp_path)
    (old_file,) = first.path.glob("curve-*.csv")
    old_text = old_file.read_text()
    _other_code(monkeypatch)
    _no_training(monkeypatch)
    with pytest.warns(CacheWarning, match="reusing it as asked"):
        more = _run(tiny_root, tmp_path, spec={"sigmas": (0.1, 1.0, 10.0)}, reuse_stale=True)
    assert old_file.read_text() == old_text  # the old code's file is left as it was
    (new_file,) = set(first.path.glob("curve-*.csv")) - {old_file}
    assert len(pd.read_csv(new_file)) == 6 and len(more.noise_curve) == 6  # the whole grid, evaluated by this code
    with pytest.warns(CacheWarning, match="reusing it as asked"):
        same_grid = _run(tiny_root, tmp_path, reuse_stale=True)
    assert same_grid.noise_curve.equals(first.noise_curve)  # old points cover the grid: taken as they are


class _Stop(RuntimeError):
    pass


def _interrupted(tiny_root, tmp_path, monkeypatch) -> Path:
    """A 2-epoch run stopped after its first epoch's checkpoint; returns the checkpoint."""
    import paperlib.training as training

    real = training.write_atomic

    def write_then_stop(path, write):
        real(path, write)
        raise _Stop("interrupted")

    monkeypatch.setattr(training, "write_atomic", write_then_stop)
    with pytest.raises(_Stop):
        _run(tiny_root, tmp_path, spec={"epochs": 2})
    monkeypatch.setattr(training, "write_atomic", real)
    (ckpt,) = (tmp_path / "partial").glob("*/checkpoint.pt")
    assert json.loads((ckpt.parent / "fingerprint.json").read_text()) == code_fingerprint()
    return ckpt


def _spy_loads(monkeypatch, ckpt: Path) -> list:
    import paperlib.training as training

    loads, real = [], training.torch.load

    def spy(f, *a, **k):
        loads.append(Path(f))
        return real(f, *a, **k)

    monkeypatch.setattr(training.torch, "load", spy)
    return loads


def test_a_partial_checkpoint_of_this_code_is_resumed(tiny_root, tmp_path, monkeypatch):
    ckpt = _interrupted(tiny_root, tmp_path, monkeypatch)
    loads = _spy_loads(monkeypatch, ckpt)
    res = _run(tiny_root, tmp_path, spec={"epochs": 2})
    assert ckpt in loads and len(res.history) == 2 and not ckpt.parent.exists()


def test_a_partial_checkpoint_of_other_code_is_moved_aside_not_resumed(tiny_root, tmp_path, monkeypatch):
    ckpt = _interrupted(tiny_root, tmp_path, monkeypatch)
    _other_code(monkeypatch, "noise")
    loads = _spy_loads(monkeypatch, ckpt)
    with pytest.warns(CacheWarning, match=r"partial checkpoint of run .* other code \(changed: noise\); moved it"):
        res = _run(tiny_root, tmp_path, spec={"epochs": 2})
    assert ckpt not in loads and res.trained and len(res.history) == 2
    (moved,) = (tmp_path / "stale").iterdir()
    assert moved.name.startswith("partial-")
    assert {p.name for p in moved.iterdir()} == {"checkpoint.pt", "fingerprint.json"}


# --- diverged runs -----------------------------------------------------------------------------------------------

def test_a_diverged_run_scores_as_nan_logits_at_every_sigma(tiny_root, tmp_path, monkeypatch):
    spec = {"sigma_train": 1e38, "sigmas": (0.01, 0.1, 1.0)}  # overflows float32: the loss becomes NaN
    res = _run(tiny_root, tmp_path, spec=spec)
    labels = experiment.shared_data(str(tiny_root), "cpu").y_test
    share_of_zero = float((labels == 0).double().mean())
    assert res.diverged and "loss became" in res.error and res.accuracy == share_of_zero
    assert len(res.noise_curve) == 6 and (res.noise_curve.accuracy == share_of_zero).all()
    assert res.record["scored"] == "scored as NaN logits: argmax = class 0" and not res.midpoint.ok
    with pytest.raises(FileNotFoundError, match="diverged"):
        res.load_model()
    _no_training(monkeypatch)
    again = _run(tiny_root, tmp_path, spec=spec, need_weights=True)
    assert not again.trained and again.noise_curve.equals(res.noise_curve) and again.accuracy == res.accuracy


# --- captions ----------------------------------------------------------------------------------------------------

def test_the_caption_names_the_revision_and_code_of_the_results_not_the_checkout(tiny_root, tmp_path, monkeypatch):
    df = run_sweep([RunSpec(**SPEC)], data_root=tiny_root, results_dir=tmp_path, device="cpu", progress=False)
    assert (df.code == code_fingerprint()["code"]).all() and df.revision.notna().all()
    session = Session.from_parameters(profile="smoke", results_dir=str(tmp_path), figures_dir=str(tmp_path / "fig"))
    made = session.caption(df)
    assert made.startswith("profile smoke") and made.endswith(f"paperlib rev {df.revision[0]}, code {df.code[0]}")
    old = df.assign(revision="a1b2c3d", code="1234abcd1234abcd")
    caption = session.caption(old)
    assert caption.endswith("paperlib rev a1b2c3d, code 1234abcd1234abcd") and git_revision() not in caption
    mixed = pd.concat([old, df.assign(revision="e4f5a6b", code="5678")], ignore_index=True)
    assert session.caption(mixed).endswith("paperlib revs a1b2c3d (code 1234abcd1234abcd), e4f5a6b (code 5678)")


# --- weights -----------------------------------------------------------------------------------------------------

def test_over_the_limit_only_networks_trained_without_noise_keep_their_weights(tiny_root, tmp_path):
    clean = _run(tiny_root, tmp_path, weights_limit_mb=0.0)
    noisy = _run(tiny_root, tmp_path, spec={"sigma_train": 0.05}, weights_limit_mb=0.0)
    assert clean.record["weights"] and clean.load_model().training is False
    assert not noisy.record["weights"] and noisy.record["weights_mb"] > 0
    with pytest.raises(FileNotFoundError, match=r"over the weights limit .* run\(spec, need_weights=True\) retrains"):
        noisy.load_model()


def test_need_weights_retrains_a_network_without_weights_and_keeps_them(tiny_root, tmp_path, monkeypatch):
    noisy = _run(tiny_root, tmp_path, spec={"sigma_train": 0.05}, weights_limit_mb=0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = _run(tiny_root, tmp_path, spec={"sigma_train": 0.05}, weights_limit_mb=0.0, need_weights=True)
    said = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(said) == 1 and "retraining it from its seed" in said[0]  # and no mismatch warning
    assert got.record["weights"] and got.record["weights_retrained"]["matches_record"]
    assert got.noise_curve.equals(noisy.noise_curve) and got.load_model().training is False
    _no_training(monkeypatch)
    assert _run(tiny_root, tmp_path, spec={"sigma_train": 0.05}, need_weights=True).load_model() is not None


def test_need_weights_says_clearly_when_the_retrained_network_differs_from_its_record(tiny_root, tmp_path):
    noisy = _run(tiny_root, tmp_path, spec={"sigma_train": 0.05}, weights_limit_mb=0.0)
    record = json.loads((noisy.path / "record.json").read_text())
    record["accuracy"] = 0.987  # as if the first training had given another network
    (noisy.path / "record.json").write_text(json.dumps(record))
    with pytest.warns(CacheWarning, match="kept no weights .* retraining it from its seed"), \
            pytest.warns(CacheWarning, match=r"is NOT the recorded network: clean accuracy .* now, 0.9870 recorded"):
        got = _run(tiny_root, tmp_path, spec={"sigma_train": 0.05}, need_weights=True)
    assert got.record["weights_retrained"]["matches_record"] is False and got.load_model() is not None


# --- an unwritable results folder --------------------------------------------------------------------------------

def test_an_unwritable_results_folder_is_one_clear_error_before_any_training(tiny_root, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    results = blocker / "results"  # under a regular file: unwritable even for root
    _no_training(monkeypatch)
    monkeypatch.setattr(experiment, "shared_data", lambda *a: pytest.fail("data loaded before the check"))
    pattern = r"results folder .*a-file/results is not writable \(.*\); pass results_dir=\.\.\. or set PAPERLIB_RESULTS"
    with pytest.raises(ResultsNotWritableError, match=pattern):
        _run(tiny_root, results)
    with pytest.raises(ResultsNotWritableError, match=pattern):
        run_sweep([RunSpec(**SPEC)] * 2, data_root=tiny_root, results_dir=results, device="cpu", progress=False)
    assert blocker.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_a_results_folder_is_created_on_the_way_and_the_check_leaves_nothing(tmp_path):
    folder = tmp_path / "new" / "results"
    assert check_writable(folder) == folder and folder.is_dir() and not list(folder.iterdir())


def test_need_weights_keeps_the_weights_of_a_network_it_trains_from_scratch(tiny_root, tmp_path):
    """A noisy network over the size limit, asked for with need_weights on its first run, keeps its weights."""
    got = _run(tiny_root, tmp_path, spec={"sigma_train": 0.05}, weights_limit_mb=0.0, need_weights=True)
    assert got.trained and got.record["weights"]
    assert got.load_model() is not None


def test_the_revision_is_dirty_only_when_the_code_or_its_pins_changed(tmp_path):
    """Figures and executed notebooks that a run rewrites (tracked files) must not mark its results '+dirty'."""
    import subprocess

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    for rel in ("paperlib/training.py", "pyproject.toml", "figures/quick/fig2.csv", "docs/results.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("original\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "init")
    clean = git_revision(tmp_path / "paperlib")
    assert len(clean) >= 7 and not clean.endswith("+dirty")
    (tmp_path / "figures/quick/fig2.csv").write_text("regenerated\n")
    (tmp_path / "docs/results.md").write_text("edited\n")
    assert git_revision(tmp_path / "paperlib") == clean
    (tmp_path / "pyproject.toml").write_text("other pins\n")
    assert git_revision(tmp_path / "paperlib") == clean + "+dirty"
    git("checkout", "pyproject.toml")
    (tmp_path / "paperlib/training.py").write_text("changed code\n")
    assert git_revision(tmp_path) == clean + "+dirty"


def test_an_atomic_write_gets_the_permissions_of_a_plain_open(tmp_path):
    """A temporary file is created 0o600; the written file must not stay private to its writer (tempfile's mode)."""
    from paperlib.atomic import write_atomic

    plain = tmp_path / "plain.csv"
    plain.write_text("x\n")
    written = tmp_path / "written.csv"
    write_atomic(written, lambda f: f.write(b"x\n"))
    assert stat.S_IMODE(written.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_an_atomic_write_that_fails_leaves_neither_file_nor_temporary_file(tmp_path):
    from paperlib.atomic import write_atomic

    def half_then_fail(f):
        f.write(b"half")
        raise RuntimeError("disk full, say")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(tmp_path / "out.csv", half_then_fail)
    assert list(tmp_path.iterdir()) == []

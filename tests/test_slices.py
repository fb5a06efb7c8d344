"""Training in slices of a time budget (paperlib.paper.slices): each slice starts in a fresh results folder, as the
device machine starts bare, resumes from the archives of the earlier slices, never starts a run its estimate says
would end past the budget, and the union of the slices renders here without training anything.

Time is a fake clock that each run advances by a fixed amount, and estimates come from a timings file or a
stubbed probe, so what runs where does not depend on this machine's speed. The runs are real (LeNet-5 at smoke on
the generated data set, about a second each).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import paperlib.runs.experiment as experiment
from paperlib import load_profile, run
from paperlib.paper import slice_packs, slices
from paperlib.paper.transfer import specs_for
from paperlib.runs.fingerprint import code_fingerprint
from paperlib.runs.transfer import import_entries, select_entries

REPO = Path(__file__).resolve().parents[1]
KINDS = ("fp32", "qat-dynamic", "qat-constant")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
#: smoke's LeNet-5 spec: 1 epoch of ceil(3000 / 128) = 24 steps. At 1 s a step and 0 s an image, an estimate from
#: timings is 1.5 x 24 = 36 s.
STEP_S, ESTIMATE_S = 1.0, 36.0


class Clock:
    """A clock that only runs advance, by ``step`` seconds each; records when each run started."""

    def __init__(self, step: float) -> None:
        self.t, self.step, self.starts = 0.0, step, []

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch):
    """The fake clock, with ``slices.run`` advancing it (25 s a run unless a test sets ``clock.step``)."""
    c = Clock(25.0)
    real = slices.run

    def timed_run(spec, **kwargs):
        c.starts.append(c.t)
        result = real(spec, **kwargs)
        c.t += c.step
        return result

    monkeypatch.setattr(slices, "run", timed_run)
    return c


def no_probe(*args):
    raise AssertionError("the probe ran although the estimates had another source")


def timings_file(path: Path, step: float = STEP_S) -> Path:
    """A benchmarks.gpu_check output with budget_timings for LeNet-5 only."""
    path.write_text(json.dumps({"gpu": "a test", "archs": {"lenet5": {"budget_timings": {k: [step, 0.0]
                                                                                           for k in KINDS}}}}))
    return path


def run_slice(tmp: Path, name: str, data: Path, clock, budget: float, device: str = "cpu", resume=(), extra=(),
              profile: str = "smoke", notebooks=("01",)) -> tuple[int, dict, Path]:
    """One slice into the fresh results folder ``tmp/<name>/results``; (exit status, slice.json, out folder)."""
    out = tmp / name / "out"
    argv = ["--profile", profile, "--notebooks", *notebooks, "--budget-s", str(budget), "--device", device,
            "--results", str(tmp / name / "results"), "--data", str(data), "--out", str(out), *extra]
    if resume:
        argv += ["--resume", *map(str, resume)]
    rc = slices.main(argv, clock=clock)
    return rc, json.loads((out / "slice.json").read_text()), out


def assert_within_budget(info: dict, starts: list[float]) -> None:
    """Every run of the slice started when its estimate said it would end within the budget."""
    assert len(starts) == len(info["runs"])
    for start, r in zip(starts, info["runs"]):
        assert start + r["estimate_s"] <= info["budget_s"], r


@pytest.mark.parametrize("device", DEVICES)
def test_two_slices_in_fresh_folders_then_the_union_trains_nothing(tmp_path, learnable_root, clock, monkeypatch,
                                                                   device):
    monkeypatch.setattr(slices, "probe", no_probe)
    timings = ["--timings", str(timings_file(tmp_path / "gpu_check.json"))]
    # slice 1: 80 s; runs of 25 s estimated at 36 s each: at 0 and 25 s (ending by 61 s); the third would end at 86
    rc, one, out1 = run_slice(tmp_path, "one", learnable_root, clock, 80, device, extra=timings)
    assert rc == 0
    assert one["specs"] == {"total": 3, "held_at_start": 0, "run_here": 2, "done": 2, "left": 1, "deferred": 1,
                            "failed": 0}
    assert one["stopped_by_budget"] and one["finished"] and not one["interrupted"]
    assert [r["estimate_from"] for r in one["runs"]] == ["timings", "timings"]
    assert [r["estimate_s"] for r in one["runs"]] == [ESTIMATE_S, ESTIMATE_S]
    assert_within_budget(one, clock.starts)
    assert clock.t + ESTIMATE_S > 80  # the one left would have ended past the budget
    assert one["device"].startswith(device) and one["deterministic"] is True
    assert (one["device_name"] is None) == (device == "cpu") and one["torch"] == torch.__version__
    assert one["profile"] == "smoke" and one["notebooks"] == ["01"] and one["started_utc"] <= one["ended_utc"]
    archive1 = out1 / "results-smoke-slice.tar.gz"
    assert one["archive"] == {"file": archive1.name, "bytes": archive1.stat().st_size, "entries": 2, "weights": False,
                              "over_limit": False}
    assert sorted(p.name for p in out1.iterdir()) == [archive1.name, "slice.json"]

    # slice 2: a fresh results folder (the device machine starts bare), slice 1's archive carried back
    clock.t, clock.starts = 0.0, []
    rc, two, out2 = run_slice(tmp_path, "two", learnable_root, clock, 80, device, resume=[archive1], extra=timings)
    assert rc == 0
    assert two["resumed"] == [{"archive": archive1.name, "added": 2, "kept": 0, "refused": 0}]
    assert two["specs"] == {"total": 3, "held_at_start": 2, "run_here": 1, "done": 3, "left": 0, "deferred": 0,
                            "failed": 0}
    assert not two["stopped_by_budget"] and len(clock.starts) == 1
    assert two["archive"]["entries"] == 3
    assert {r["key"] for r in one["runs"]}.isdisjoint(r["key"] for r in two["runs"])

    # the union, in a third fresh folder: every spec of notebook 01 comes from the cache; training would fail
    third = tmp_path / "laptop" / "results"
    report = import_entries(out2 / "results-smoke-slice.tar.gz", third)
    assert len(report.added) == 3 and not report.refused
    specs = specs_for(load_profile("smoke"), ["01"])
    assert select_entries(third, specs)[1] == []

    def no_training(*args, **kwargs):
        raise AssertionError("trained although every run was imported")

    monkeypatch.setattr(experiment, "train", no_training)
    for spec in specs:
        res = run(spec, data_root=learnable_root, results_dir=third, device=device, progress=False)
        assert not res.trained and len(res.noise_curve) == len(spec.pairs())


def test_estimates_come_from_this_slice_then_the_probe_and_no_run_starts_past_the_budget(tmp_path, learnable_root,
                                                                                         clock, monkeypatch):
    # smoke with two seeds: fp32, 8-bit dynamic and 8-bit s=1, each twice; runs of 10 s, the probe says 36 s
    text = (REPO / "paperlib/runs/profiles/smoke.yaml").read_text().replace("seeds: 1", "seeds: 2")
    (tmp_path / "smoke2.yaml").write_text(text)
    probed = []

    def fake_probe(spec, data, dev, deterministic):
        probed.append(slices.kind_of(spec))
        return STEP_S, 0.0

    monkeypatch.setattr(slices, "probe", fake_probe)
    clock.step = 10.0
    rc, info, _ = run_slice(tmp_path, "one", learnable_root, clock, 60, profile=str(tmp_path / "smoke2.yaml"))
    assert rc == 0
    kinds = [(r["kind"], r["estimate_from"], r["estimate_s"]) for r in info["runs"]]
    # fp32 at 0 s (probe: 36), its second seed at 10 s (this slice: 10), dynamic at 20 s (probe: ends by 56) and 30 s;
    # constant at 40 s would end at 76 by the probe: neither seed starts
    assert kinds == [("fp32", "probe", ESTIMATE_S), ("fp32", "this slice", 10.0),
                     ("qat-dynamic", "probe", ESTIMATE_S), ("qat-dynamic", "this slice", 10.0)]
    assert probed == ["fp32", "qat-dynamic", "qat-constant"]  # once per kind
    assert_within_budget(info, clock.starts)
    assert info["specs"] == {"total": 6, "held_at_start": 0, "run_here": 4, "done": 4, "left": 2, "deferred": 2,
                             "failed": 0}
    assert info["estimates"] == {"lenet5/fp32": [10.0, "this slice"], "lenet5/qat-dynamic": [10.0, "this slice"],
                                 "lenet5/qat-constant": [ESTIMATE_S, "probe"]}


def test_held_needs_this_code_and_every_point_of_the_grid(tmp_path, learnable_root):
    from dataclasses import replace

    from paperlib.runs.experiment import shared_data

    results = tmp_path / "results"
    spec = specs_for(load_profile("smoke"), ["01"])[0]
    run(spec, data_root=learnable_root, results_dir=results, device="cpu", progress=False)
    data = shared_data(str(learnable_root), "cpu")
    resolved = replace(spec, dataset=data.source, data_digest=data.content_digest())
    fp, cpu = code_fingerprint(), torch.device("cpu")
    assert slices.held(results, resolved, fp, cpu)
    assert not slices.held(results, replace(resolved, sigmas=(*resolved.sigmas, 7.0)), fp, cpu)  # a new point
    assert not slices.held(results, replace(resolved, repeats=2), fp, cpu)
    assert not slices.held(results, replace(resolved, seed=1), fp, cpu)  # no entry
    assert not slices.held(results, resolved, {**fp, "code": "0" * 16}, cpu)  # other code


def test_the_probe_measures_positive_times(learnable_root):
    from paperlib.runs.experiment import shared_data

    spec = specs_for(load_profile("smoke"), ["01"])[2]  # 8-bit, s = 1
    step, image = slices.probe(spec, shared_data(str(learnable_root), "cpu"), torch.device("cpu"), None)
    assert 0 < step < 60 and 0 < image < 1


def test_a_run_or_probe_that_raises_is_recorded_and_the_slice_goes_on(tmp_path, learnable_root, clock, monkeypatch,
                                                                      capsys):
    def probe(spec, *args):
        if spec.scale is not None:
            raise RuntimeError("no deterministic kernel for the probe")
        return 0.0, 0.0

    monkeypatch.setattr(slices, "probe", probe)
    real = slices.run

    def failing(spec, **kwargs):
        if spec.bits is not None and spec.scale is None:
            raise RuntimeError("no deterministic kernel for this")
        return real(spec, **kwargs)

    monkeypatch.setattr(slices, "run", failing)
    rc, info, out = run_slice(tmp_path, "one", learnable_root, clock, 100)
    assert rc == 1 and "2 run(s) raised" in capsys.readouterr().err
    assert [(f["spec"], f["error"]) for f in info["failed"]] == [
        ("lenet5 8-bit dynamic sigma_train=0 seed=0", "RuntimeError: no deterministic kernel for this"),
        ("lenet5 8-bit s=1 sigma_train=0 seed=0", "RuntimeError: no deterministic kernel for the probe")]
    assert info["specs"] == {"total": 3, "held_at_start": 0, "run_here": 1, "done": 1, "left": 2, "deferred": 0,
                             "failed": 2}
    assert info["archive"]["entries"] == 1 and info["finished"]


def test_a_slice_stopped_by_sigterm_writes_what_finished(tmp_path, learnable_root, clock, monkeypatch):
    monkeypatch.setattr(slices, "probe", lambda *a: (0.0, 0.0))
    real = slices.run

    def killed_in_second(spec, **kwargs):
        if clock.starts:
            raise KeyboardInterrupt  # what main's SIGTERM handler raises
        return real(spec, **kwargs)

    monkeypatch.setattr(slices, "run", killed_in_second)
    rc, info, out = run_slice(tmp_path, "one", learnable_root, clock, 100)
    assert rc == 1 and info["interrupted"] and not info["finished"]
    assert info["specs"]["run_here"] == 1 and info["archive"]["entries"] == 1
    assert len(import_entries(out / "results-smoke-slice.tar.gz", tmp_path / "here").added) == 1


@pytest.mark.parametrize("change, message", [
    ({"profile": "nope"}, "unknown profile 'nope'"),
    ({"budget": 0}, "--budget-s must be a positive number of seconds, got 0.0"),
    ({"budget": -5}, "--budget-s must be a positive number of seconds, got -5.0"),
    ({"resume": ["missing.tar.gz"]}, "resume archive missing.tar.gz does not exist"),
    ({"notebooks": ["99"]}, "unknown notebook(s) '99'"),
    ({"timings": "bad.json"}, "holds no budget_timings of python -m benchmarks.gpu_check"),
    ({"timings": "absent.json"}, "timings file absent.json does not exist"),
])
def test_bad_input_is_one_clear_error_and_nothing_runs(tmp_path, learnable_root, clock, capsys, monkeypatch, change,
                                                       message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_text('{"archs": {"lenet5": {}}}')
    out = tmp_path / "out"
    argv = ["--profile", change.get("profile", "smoke"), "--notebooks", *change.get("notebooks", ["01"]),
            "--budget-s", str(change.get("budget", 100)), "--device", "cpu", "--results", str(tmp_path / "results"),
            "--data", str(learnable_root), "--out", str(out)]
    argv += ["--resume", *change["resume"]] if "resume" in change else []
    argv += ["--timings", change["timings"]] if "timings" in change else []
    assert slices.main(argv, clock=clock) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert not clock.starts and not out.exists() and not (tmp_path / "results").exists()


def test_the_slice_needs_neither_dask_nor_papermill_nor_safetensors():
    """The device machine has none of them (only brevitas and its needs travel as wheels: make gpu-wheels)."""
    code = ("import sys\nfor m in ('dask', 'distributed', 'papermill', 'safetensors'): sys.modules[m] = None\n"
            "import paperlib.paper.slices\n"
            "assert not any(m in sys.modules and sys.modules[m] for m in ('dask', 'papermill', 'safetensors'))\n")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


def test_gpu_slice_sh_says_what_is_missing(tmp_path):
    script = REPO / "benchmarks" / "gpu_slice.sh"
    env = {**os.environ, "OUT": str(tmp_path), "PAPERLIB_WHEELS": str(tmp_path / "no-wheels")}
    res = subprocess.run(["bash", str(script), "--profile", "smoke"], env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "no-wheels" in res.stderr and "make gpu-wheels" in res.stderr
    env = {k: v for k, v in os.environ.items() if k != "OUT"}
    res = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert res.returncode != 0 and "OUT" in res.stderr


def _tiny_wheel(folder: Path) -> Path:
    """A minimal installable wheel (stands in for the carried brevitas wheels, which git ignores)."""
    import zipfile
    folder.mkdir(parents=True)
    wheel = folder / "placeholder-0.0.0-py3-none-any.whl"
    info = "placeholder-0.0.0.dist-info"
    files = {"placeholder/__init__.py": "", f"{info}/METADATA": "Metadata-Version: 2.1\nName: placeholder\n"
             "Version: 0.0.0\n", f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
             "Tag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return folder


@pytest.mark.parametrize("check_fails", [False, True])
def test_gpu_session_sh_checks_the_device_then_slices_the_time_left(tmp_path, learnable_root, check_fails):
    # the device check is stubbed (python -m benchmarks.gpu_check is tests/test_devices.py's); what it writes feeds
    # the slice's estimates; a failed check leaves the slice to its probe
    fake = tmp_path / "python"
    timings = {"archs": {"lenet5": {"budget_timings": {k: [0.001, 0.0] for k in KINDS}}}}
    fake.write_text("#!/usr/bin/env bash\n"
                    'if [ "$1 $2" = "-m benchmarks.gpu_check" ]; then\n'
                    + ("  echo 'no GPU here' >&2; exit 3\n" if check_fails else
                       '  while [ $# -gt 0 ]; do [ "$1" = --out ] && out="$2"; shift; done\n'
                       f"  echo '{json.dumps(timings)}' > \"$out\"; exit 0\n")
                    + f'fi\nexec {sys.executable} "$@"\n')
    fake.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OUT": str(out), "PYTHON": str(fake), "PAPERLIB_DEVICE": "cpu",
           "PAPERLIB_WHEELS": str(_tiny_wheel(tmp_path / "wheels")), "PAPERLIB_SITE": str(tmp_path / "site"),
           "PAPERLIB_SESSION_S": "400"}
    res = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_session.sh"), "--profile", "smoke", "--epochs-curve",
                          "lenet5", "--epochs", "1", "--variants", "fp32", "--data", str(learnable_root),
                          "--results", str(tmp_path / "results")], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr
    info = json.loads((out / "slice.json").read_text())
    assert info["specs"]["done"] == 1 and info["epochs_curve"]["arch"] == "lenet5"
    assert 370 <= info["budget_s"] <= 400  # what the check left of the session
    assert [r["estimate_from"] for r in info["runs"]] == (["probe"] if check_fails else ["timings"])
    assert (out / "gpu_check.json").is_file() != check_fails
    assert ("the device check failed" in res.stderr) == check_fails


def _seeds_profile(tmp_path: Path, seeds: int) -> str:
    text = (REPO / "paperlib/runs/profiles/smoke.yaml").read_text().replace("seeds: 1", f"seeds: {seeds}")
    path = tmp_path / f"smoke{seeds}.yaml"
    path.write_text(text)
    return str(path)


def _timed_packs(monkeypatch, clock, seconds: float, per_network_step_s: float = 0.5):
    """Packs advance the fake clock by ``seconds`` each; their probe says ``per_network_step_s`` x networks per
    step and nothing per image."""
    real = slice_packs.train_packed
    sizes = []

    def timed(specs, *args, **kwargs):
        sizes.append(len(specs))
        keys = real(specs, *args, **kwargs)
        clock.t += seconds
        return keys

    monkeypatch.setattr(slice_packs, "train_packed", timed)
    monkeypatch.setattr(slice_packs, "probe_pack", lambda specs, *a: (per_network_step_s * len(specs), 0.0))
    monkeypatch.setattr(slices, "probe", lambda *a: (STEP_S, 0.0))
    return sizes


def test_a_slice_trains_packs_first_and_then_evaluates_their_networks(tmp_path, learnable_root, clock, monkeypatch):
    sizes = _timed_packs(monkeypatch, clock, 20.0)
    clock.step = 1.0  # an evaluation
    # two seeds of fp32, 8-bit dynamic and 8-bit s=1: three packs of two, each estimated 1.5 x 24 steps x 1 s = 36 s
    rc, info, out = run_slice(tmp_path, "one", learnable_root, clock, 100, profile=_seeds_profile(tmp_path, 2),
                              extra=["--pack", "4"])
    assert rc == 0 and sizes == [2, 2, 2]
    assert [(p["size"], p["estimate_s"], p["estimate_from"], len(p["trained"])) for p in info["packs"]] == \
        [(2, ESTIMATE_S, "probe", 2)] * 3
    assert info["specs"]["done"] == 6 and info["specs"]["left"] == 0
    assert all(not r["trained"] and r["estimate_s"] == 0.0 for r in info["runs"])  # evaluated only
    # the next slice, in a fresh folder, holds them all: a pack's entry is judged by a pack's fingerprint
    fresh = tmp_path / "two" / "results"
    import_entries(out / "results-smoke2-slice.tar.gz", fresh)
    from paperlib.runs.experiment import shared_data

    data = shared_data(str(learnable_root), "cpu")
    from dataclasses import replace

    specs = [replace(s, dataset=data.source, data_digest=data.content_digest())
             for s in specs_for(load_profile(_seeds_profile(tmp_path, 2)), ["01"])]
    assert all(slices.held(fresh, s, code_fingerprint(), torch.device("cpu")) for s in specs)
    records = [json.loads(p.read_text()) for p in (fresh / "runs").glob("*/record.json")]
    assert len(records) == 6 and all(r["trained_in"]["pack"] == 2 for r in records)


def test_a_pack_that_does_not_fit_is_halved_and_what_is_left_waits(tmp_path, learnable_root, clock, monkeypatch):
    sizes = _timed_packs(monkeypatch, clock, 20.0)
    clock.step = 1.0
    # four seeds: packs of four estimated 1.5 x 24 x 2 s = 72 s, of two 36 s; budget 60 s: fp32 in two packs of two
    # (at 0 and 20 s), then 8-bit dynamic's halves would end at 76 s: they wait, as do 8-bit s=1's
    rc, info, _ = run_slice(tmp_path, "one", learnable_root, clock, 60, profile=_seeds_profile(tmp_path, 4),
                            extra=["--pack", "4"])
    assert rc == 0 and sizes == [2, 2]
    assert {p["kind"] for p in info["packs"]} == {"fp32"}
    assert info["specs"]["deferred"] == 8 and info["stopped_by_budget"]
    assert len(info["runs"]) == 4 and all(not r["trained"] for r in info["runs"])  # nothing trained alone


def test_without_packs_a_slice_runs_one_by_one(tmp_path, learnable_root, clock, monkeypatch):
    sizes = _timed_packs(monkeypatch, clock, 20.0)
    rc, info, _ = run_slice(tmp_path, "one", learnable_root, clock, 1000, profile=_seeds_profile(tmp_path, 2))
    assert rc == 0 and sizes == [] and info["packs"] == []  # the CPU's default: no packs
    assert len(info["runs"]) == 6 and all(r["trained"] for r in info["runs"])
    rc = slices.main(["--profile", "smoke", "--budget-s", "10", "--pack", "0", "--out", str(tmp_path / "x"),
                      "--data", str(learnable_root), "--results", str(tmp_path / "r")], clock=clock)
    assert rc == 2

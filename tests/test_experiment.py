import concurrent.futures as cf
import logging
import multiprocessing as mp
import socket
import warnings
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest
import torch

import paperlib.runs.experiment as experiment
from paperlib import CacheWarning, RunSpec, dask_executor, load_profile, run, run_sweep

SPEC = dict(arch="lenet5", bits=8, scale=1.0, epochs=1, batch_size=32, sigmas=(0.1, 1.0), repeats=2)


def _no_training(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("training happened")
    monkeypatch.setattr(experiment, "train", fail)


def test_second_run_comes_from_the_cache(tiny_root, tmp_path, monkeypatch):
    first = run(RunSpec(**SPEC), tiny_root, tmp_path, "cpu", progress=False)
    assert first.trained and first.spec.dataset == "CIFAR-10"
    assert list(first.noise_curve.columns) == ["sigma", "repeat", "accuracy"] and len(first.noise_curve) == 4
    _no_training(monkeypatch)
    second = run(RunSpec(**SPEC), tiny_root, tmp_path, "cpu", progress=False)
    assert not second.trained
    assert second.accuracy == first.accuracy
    assert second.noise_curve.equals(first.noise_curve)
    assert second.history.equals(first.history)
    prov = second.record["provenance"]
    assert {"revision", "packages", "device", "time_utc"} <= set(prov) and prov["packages"]["brevitas"] == "0.13.4"
    # where it was made: the last bits of CPU results may depend on the instruction set (docs/protocol.md §12)
    assert prov["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability() and prov["cpu"]["model"]
    assert second.record["train_wall_time_s"] > 0


def test_more_sigmas_and_repeats_reuse_the_weights(tiny_root, tmp_path, monkeypatch):
    first = run(RunSpec(**SPEC), tiny_root, tmp_path, "cpu", progress=False)
    _no_training(monkeypatch)
    more = run(
        RunSpec(**{**SPEC, "sigmas": (0.1, 1.0, 10.0), "repeats": 3}), tiny_root, tmp_path, "cpu", progress=False
    )
    assert not more.trained and len(more.noise_curve) == 9
    old = more.noise_curve.merge(first.noise_curve, on=["sigma", "repeat"], suffixes=("", "_first"))
    assert len(old) == 4 and (old.accuracy == old.accuracy_first).all()
    assert more.load_model().training is False


def test_evaluation_only_fields_share_the_training_key():
    a = RunSpec(**SPEC, dataset="CIFAR-10")
    b = RunSpec(**{**SPEC, "sigmas": (5.0,), "repeats": 9, "noise_kind": "multiplicative"}, dataset="CIFAR-10")
    assert a.train_key() == b.train_key() and a.eval_key() != b.eval_key()
    assert a.train_key() != RunSpec(**{**SPEC, "seed": 1}, dataset="CIFAR-10").train_key()
    assert a.train_key() != RunSpec(**SPEC, dataset="CIFAR-10 (JPEG copy)").train_key()
    assert RunSpec(arch="lenet5", dataset="x").train_key() == RunSpec(arch="lenet5", lr=1e-3, dataset="x").train_key()


def test_new_fields_at_their_defaults_keep_every_cache_key():
    """Keys computed with the code before train_noise_kind / sigma_alpha / sigma_theta / sigma_sampling existed."""
    spec = RunSpec(arch="lenet5", bits=8, scale=1.0, dataset="x")
    assert (spec.train_key(), spec.eval_key()) == ("9366dc397a990aae", "3f57667b79528017")
    assert (
        RunSpec(arch="lenet5", bits=8, scale=1.0, dataset="x", sigma_alpha=1, sigma_sampling="fixed").train_key()
        == "9366dc397a990aae"
    )
    mult = RunSpec(arch="lenet5", dataset="x", noise_kind="multiplicative")
    assert (mult.train_key(), mult.eval_key()) == ("316ecd3a88baf970", "1d0d3d8ecaaf06ed")
    noisy = RunSpec(arch="resnet18", bits=4, sigma_train=0.5, sigma_ramp_epochs=10, dataset="CIFAR-10")
    assert noisy.train_key() == "e47374443249e27c"
    assert set(spec.training_fields()).isdisjoint({"train_noise_kind", "sigma_alpha", "sigma_theta", "sigma_sampling"})


def test_training_noise_fields_reach_the_train_config_and_the_key():
    base = RunSpec(**SPEC, sigma_train=0.1, dataset="x")
    varied = RunSpec(
        **SPEC,
        sigma_train=0.1,
        sigma_alpha=0.5,
        sigma_theta=0.2,
        sigma_sampling="sample",
        train_noise_kind="combined",
        dataset="x",
    )
    cfg = varied.train_config()
    assert (cfg.noise_kind, cfg.sigma_alpha, cfg.sigma_theta, cfg.sigma_sampling) == ("combined", 0.5, 0.2, "sample")
    assert varied.training_fields()["sigma_sampling"] == "sample"
    keys = {
        base.train_key(),
        varied.train_key(),
        RunSpec(**SPEC, sigma_train=0.1, train_noise_kind="weight", dataset="x").train_key(),
    }
    assert len(keys) == 3
    weight_eval = RunSpec(**SPEC, noise_kind="weight", dataset="x")
    assert (
        weight_eval.train_key() == RunSpec(**SPEC, dataset="x").train_key()
        and weight_eval.eval_key() != base.eval_key()
    )
    with pytest.raises(ValueError, match="sigma_alpha and sigma_theta only apply to a random training sigma"):
        RunSpec(sigma_theta=0.3)


def test_a_run_with_variance_aware_training_and_weight_noise_evaluation(tiny_root, tmp_path):
    spec = RunSpec(
        **{
            **SPEC,
            "sigma_train": 0.05,
            "train_noise_kind": "combined",
            "sigma_sampling": "sample",
            "sigma_theta": 0.05,
            "noise_kind": "weight",
        }
    )
    res = run(spec, tiny_root, tmp_path, "cpu", progress=False)
    assert res.trained and len(res.noise_curve) == 4 and res.noise_curve.accuracy.between(0, 1).all()
    assert {"sigma_mean", "sigma_std"} <= set(res.history.columns)
    assert res.record["spec"]["sigma_sampling"] == "sample" and res.record["spec"]["train_noise_kind"] == "combined"


def test_corrupted_entries_are_recomputed(tiny_root, tmp_path, monkeypatch):
    first = run(RunSpec(**SPEC), tiny_root, tmp_path, "cpu", progress=False)
    record = first.path / "record.json"
    record.write_text(record.read_text()[:50])  # truncated
    with pytest.warns(CacheWarning, match="unreadable"):
        again = run(RunSpec(**SPEC), tiny_root, tmp_path, "cpu", progress=False)
    assert again.trained and again.accuracy == first.accuracy
    assert len(list((tmp_path / "corrupt").iterdir())) == 1  # moved aside, not deleted
    curve = next(again.path.glob("curve-*.csv"))
    curve.write_text("sigma,repeat\n0.1")
    _no_training(monkeypatch)
    with pytest.warns(CacheWarning, match="re-evaluating"):
        third = run(RunSpec(**SPEC), tiny_root, tmp_path, "cpu", progress=False)
    assert not third.trained and len(third.noise_curve) == 4


def _run_in_process(args):
    root, results = args
    res = run(RunSpec(**SPEC), root, results, "cpu", progress=False)
    return res.accuracy, res.noise_curve.accuracy.tolist()


def test_two_processes_finishing_the_same_spec_leave_one_valid_entry(tiny_root, tmp_path, monkeypatch):
    with mp.get_context("spawn").Pool(2) as pool:
        a, b = pool.map(_run_in_process, [(str(tiny_root), str(tmp_path))] * 2)
    assert a == b
    entries = [p for p in (tmp_path / "runs").iterdir()]
    assert len(entries) == 1 and not entries[0].name.startswith(".")
    _no_training(monkeypatch)
    cached = run(RunSpec(**SPEC), tiny_root, tmp_path, "cpu", progress=False)
    assert (cached.accuracy, cached.noise_curve.accuracy.tolist()) == a
    assert not (tmp_path / "partial" / cached.key).exists()


def test_failures_are_recorded_and_the_sweep_goes_on(tiny_root, tmp_path):
    # sigma 1e38 overflows float32: the loss becomes NaN
    specs = [RunSpec(**SPEC), RunSpec(**{**SPEC, "sigma_train": 1e38}), RunSpec(**SPEC, dataset="ImageNet")]
    df = run_sweep(specs, data_root=tiny_root, results_dir=tmp_path, device="cpu", progress=False)
    good, diverged, failed = (
        df[(df.sigma_train == 0) & df.dataset.eq("CIFAR-10")],
        df[df.diverged],
        df[df.error.fillna("").str.contains("ImageNet")],
    )
    assert len(good) == 4 and good.accuracy.notna().all()
    # a diverged run is scored as NaN logits (argmax = class 0) at every point: 6 of the 60 test labels are 0
    assert len(diverged) == 4 and "loss became" in diverged.error.iloc[0]
    assert (diverged.accuracy == 0.1).all() and (diverged.clean_accuracy == 0.1).all()
    assert len(failed) == 1 and "ValueError" in failed.error.iloc[0]


def test_dask_local_cluster_matches_the_serial_sweep(tiny_root, tmp_path):
    specs = [RunSpec(**{**SPEC, "seed": s}) for s in range(3)]
    serial = run_sweep(specs, data_root=tiny_root, results_dir=tmp_path / "serial", device="cpu", progress=False)
    with dask_executor(n_workers=2) as ex:
        parallel = run_sweep(
            specs, ex, data_root=tiny_root, results_dir=tmp_path / "dask", device="cpu", progress=False
        )
    cols = ["seed", "sigma", "repeat", "accuracy", "clean_accuracy", "key"]
    assert parallel[cols].equals(serial[cols])
    assert parallel.trained.all() and serial.error.isna().all()


@pytest.mark.parametrize(
    "make,match",
    [
        (
            lambda: load_profile("huge"),
            "unknown profile 'huge'; choose one of smoke, quick, lenet-full, gpu, paper, paper-dryrun",
        ),
        (
            lambda: RunSpec.from_dict({"arch": "lenet5", "epoch": 3}),
            "unknown RunSpec field\\(s\\) epoch; known fields: arch",
        ),
        (lambda: RunSpec(arch="lenet7"), "unknown arch 'lenet7'"),
        (lambda: RunSpec(bits=3), "bits=3 is not supported"),
        (lambda: RunSpec(bits=8, scale=-2.0), "scale=-2.0 is invalid"),
        (lambda: RunSpec(sigmas=(0.1, -1.0)), "sigma must be a finite number >= 0"),
        (lambda: RunSpec(repeats=0), "repeats must be an integer >= 1"),
        (lambda: RunSpec(epochs=0), "epochs must be an integer >= 1"),
        (lambda: RunSpec(train_subset=3), "train_subset must be None"),
    ],
)
def test_bad_input_gives_one_clear_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_profiles(tmp_path):
    smoke, quick, paper = (load_profile(n) for n in ("smoke", "quick", "paper"))
    assert paper.epochs == 500 and paper.seeds == 5 and len(paper.sigmas()) == 17
    assert np.allclose(paper.sigmas(), np.logspace(-2, 2, 17))
    assert paper.scales("lenet5")[0] == 0.25 and paper.scales("lenet5")[-1] == 512
    assert smoke.epochs == 1 and quick.name == "quick"
    spec = paper.spec("vgg11", bits=8, scale=1.0, sigma_train=0.5)
    assert spec.sigma_ramp_epochs == 100 and spec.epochs == 500 and spec.repeats == 1
    custom = tmp_path / "mine.yaml"
    custom.write_text("epochs: 3\nseeds: 2\n")
    assert load_profile(custom).epochs == 3 and load_profile(custom).name == "mine"
    custom.write_text("epochs: 3\nlearning_rate: 2\n")
    with pytest.raises(ValueError, match="unknown field\\(s\\) learning_rate in profile"):
        load_profile(custom)


class _FlakyExecutor(cf.ThreadPoolExecutor):
    """The first submission fails as a future of a dead worker does; later ones run."""

    def __init__(self):
        super().__init__(max_workers=1)
        self.submissions = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submissions += 1
        if self.submissions == 1:
            future = cf.Future()
            future.set_exception(BrokenProcessPool("worker died"))
            return future
        return super().submit(fn, *args, **kwargs)


def test_a_run_whose_worker_died_is_submitted_again(tiny_root, tmp_path):
    with _FlakyExecutor() as ex:
        df = run_sweep([RunSpec(**SPEC)], ex, data_root=tiny_root, results_dir=tmp_path, device="cpu", progress=False)
    assert ex.submissions == 2 and df.error.isna().all() and len(df) == 4
    with _FlakyExecutor() as ex:
        df = run_sweep(
            [RunSpec(**SPEC)], ex, data_root=tiny_root, results_dir=tmp_path, device="cpu", retries=0, progress=False
        )
    assert "worker failed 1 time(s): BrokenProcessPool: worker died" in df.error.iloc[0]


def test_a_local_cluster_starts_silently_when_the_dashboard_port_is_taken():
    """Another Dask cluster (or any program) on 8787 must not make a sweep warn: the dashboard takes a free port."""
    with socket.socket() as s:
        try:
            s.bind(("", 8787))
        except OSError:
            pass  # already taken: what the test wants
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ex = dask_executor(n_workers=1)
            try:  # workers log only what is fatal (a recovered heartbeat error printed a traceback)
                levels = ex.client.run(lambda: logging.getLogger("distributed").getEffectiveLevel())
                assert set(levels.values()) == {logging.CRITICAL}, levels
            finally:
                ex.shutdown()


def test_progress_lines_tell_apart_the_runs_of_a_sweep():
    """Notebooks 06 and 07 sweep networks that differ only in sigma sampling or noise kind: each line says which."""
    from paperlib.runs.sweep import _describe

    base = dict(arch="lenet5", epochs=1, bits=8, scale=1.0, seed=0)
    assert _describe(RunSpec(**base)) == "lenet5 8-bit s=1 seed 0"
    assert _describe(RunSpec(**{**base, "bits": None, "scale": None, "sigma_train": 0.5})) == \
        "lenet5 fp32 trained at sigma 0.5 seed 0"
    lines = {_describe(RunSpec(**base, noise_kind=k)) for k in ("additive", "multiplicative", "combined", "weight")}
    assert len(lines) == 4 and "lenet5 8-bit s=1 evaluated with weight noise seed 0" in lines
    varied = _describe(RunSpec(**base, sigma_train=1.0, sigma_sampling="sample", sigma_alpha=0.5, sigma_theta=0.3))
    assert varied == "lenet5 8-bit s=1 trained at sigma 1 (a sigma per image: alpha 0.5, theta 0.3) seed 0"

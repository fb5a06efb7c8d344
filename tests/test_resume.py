"""An interrupted run resumes to the numbers of an uninterrupted one (docs/protocol.md §12)."""
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import separable_data
from torch import nn

import paperlib.training as training
from paperlib import RunSpec, TrainConfig, build_model, run, train

BASE = dict(arch="lenet5", epochs=3, batch_size=32, train_subset=64, test_subset=20, sigmas=(0.1, 1.0), repeats=2)
STEPS = 2  # per epoch: 64 training images in batches of 32
CASES = {
    "constant-scale QAT": dict(bits=8, scale=1.0),
    "dynamic-scale QAT, killed while collecting statistics": dict(bits=8, scale=None),
    "variance-aware training": dict(bits=8, scale=1.0, sigma_train=0.05, sigma_sampling="sample", sigma_alpha=0.5,
                                    sigma_theta=0.05),
}

# A process that imports paperlib once and forks one child per request (it runs no torch op itself, so forking is
# safe). Request: one JSON line [env, spec, data root, results dir, stop_at]. The child runs the spec; the
# augmentation of its step `stop_at` (1-based, over all epochs) says "waiting to be killed <pid>" and waits.
# When the child has ended, the parent says "ended <wait status>".
FORKER = textwrap.dedent("""
    import json, os, sys, time, traceback
    import paperlib.training as training
    from paperlib import RunSpec, run

    real = training.augment
    for line in iter(sys.stdin.readline, ""):
        env, spec, root, results, stop_at = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.environ.update(env)
            calls = [0]

            def augment(*args, **kwargs):
                calls[0] += 1
                if calls[0] == stop_at:
                    print(f"waiting to be killed {os.getpid()}", flush=True)
                    time.sleep(600)
                return real(*args, **kwargs)

            training.augment = augment
            try:
                run(RunSpec(**spec), root, results, "cpu", progress=False)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(0)
        print(f"ended {os.waitpid(pid, 0)[1]}", flush=True)
""")


@pytest.fixture(scope="module")
def forker():
    proc = subprocess.Popen([sys.executable, "-c", FORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    yield proc
    proc.stdin.close()
    proc.kill()  # it holds nothing worth a clean shutdown
    proc.wait(timeout=60)


def _count_augment_calls(monkeypatch) -> list[int]:
    calls, real = [0], training.augment

    def counting(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "augment", counting)
    return calls


@pytest.mark.parametrize("case", CASES)
def test_a_run_killed_in_its_second_epoch_resumes_to_the_uninterrupted_result(case, forker, tiny_root, tmp_path,
                                                                              monkeypatch):
    spec = RunSpec(**BASE, **CASES[case])
    reference = run(spec, tiny_root, tmp_path / "fresh", "cpu", progress=False)

    results = tmp_path / "killed"
    request = [{"PAPERLIB_CACHE": os.environ["PAPERLIB_CACHE"]}, spec.to_dict(), str(tiny_root), str(results),
               STEPS + 2]
    forker.stdin.write(json.dumps(request) + "\n")
    forker.stdin.flush()
    said = forker.stdout.readline().split()  # blocks until the child is in step 2 of epoch 2
    assert said[:-1] == ["waiting", "to", "be", "killed"], said
    try:
        checkpoint = results / "partial" / reference.key / "checkpoint.pt"
        assert torch.load(checkpoint, weights_only=False)["epoch"] == 1  # the child keyed the run as we do
    finally:
        os.kill(int(said[-1]), signal.SIGKILL)
        ended = forker.stdout.readline().split()
    assert ended[0] == "ended" and os.WTERMSIG(int(ended[1])) == signal.SIGKILL
    assert not (results / "runs" / reference.key).exists()
    (checkpoint.parent / ".checkpoint.pt.killed-while-writing.tmp").write_bytes(b"half a checkpoint")

    calls = _count_augment_calls(monkeypatch)
    resumed = run(spec, tiny_root, results, "cpu", progress=False)
    assert resumed.trained and calls[0] == 2 * STEPS  # it went on from epoch 1, it did not start again
    assert resumed.key == reference.key and resumed.accuracy == reference.accuracy
    timeless = [c for c in reference.history.columns if "time" not in c]  # wall times differ, everything else not
    assert list(resumed.history.columns) == list(reference.history.columns) and len(timeless) >= 6
    assert resumed.history[timeless].equals(reference.history[timeless])
    assert resumed.noise_curve.equals(reference.noise_curve)
    assert list((results / "partial").iterdir()) == []


def _lenet_with_dropout() -> nn.Module:
    return nn.Sequential(build_model("lenet5", bits=None, seed=0), nn.Dropout(0.5))


def test_a_resumed_training_draws_the_dropout_masks_of_an_uninterrupted_one(tmp_path, monkeypatch):
    """Dropout (VGG-11's classifier) draws from torch's global RNG, which the checkpoint must carry too."""
    data = separable_data(n_train=64, n_test=20)
    config = TrainConfig(epochs=3, batch_size=16)
    reference_model = _lenet_with_dropout()
    caller_rng = torch.get_rng_state()
    reference = train(reference_model, data, config, device="cpu", progress=False)
    assert torch.equal(torch.get_rng_state(), caller_rng)  # training draws from a stream of its own

    real, calls = training.augment, [0]

    def interrupt(*args, **kwargs):
        calls[0] += 1
        if calls[0] == 4 + 2:  # step 2 of epoch 2
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "augment", interrupt)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        train(_lenet_with_dropout(), data, config, device="cpu", checkpoint=checkpoint, progress=False)
    monkeypatch.setattr(training, "augment", real)
    torch.manual_seed(12345)  # a new process: the global RNG is wherever it is
    model = _lenet_with_dropout()
    resumed = train(model, data, config, device="cpu", checkpoint=checkpoint, progress=False)
    assert resumed.history == reference.history
    for a, b in zip(model.state_dict().values(), reference_model.state_dict().values()):
        assert torch.equal(a, b)


def _learned_scales(model: nn.Module) -> torch.Tensor:
    from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling

    return torch.stack([q.value.detach().clone() for q in model.modules()
                        if isinstance(q, ParameterFromRuntimeStatsScaling)])


def test_a_resumed_dynamic_scale_goes_on_learning(tmp_path, monkeypatch):
    """Brevitas builds new quantizers on every state-dict load, so an optimizer built before the load lost the
    learned scales (they froze at the resume); paperlib.resume.quantizers_kept keeps them: paperlib.train and the
    engine train inside it. Brevitas' own 300 statistics steps: 20 epochs of 16 steps, killed after 19 (304 steps)."""
    import shutil

    data = separable_data(n_train=64, n_test=20)
    config = TrainConfig(epochs=20, batch_size=4)
    reference_model = build_model("lenet5", bits=8, scale=None, seed=0)
    reference = train(reference_model, data, config, device="cpu", progress=False)
    real, calls = training.write_atomic, [0]

    def killed_after_epoch_19(path, write):
        real(path, write)
        calls[0] += 1
        if calls[0] == 19:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "write_atomic", killed_after_epoch_19)
    checkpoint = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        train(build_model("lenet5", bits=8, scale=None, seed=0), data, config, device="cpu", checkpoint=checkpoint,
              progress=False)
    monkeypatch.setattr(training, "write_atomic", real)
    state = torch.load(checkpoint, weights_only=False)
    assert state["epoch"] == 19 and {v["counter"] for v in state["quant_stats"].values()} == {301}  # learning
    at_checkpoint = torch.stack([v["value"] for v in state["quant_stats"].values()])
    shutil.copy(checkpoint, tmp_path / "default.pt")
    resumed_model = build_model("lenet5", bits=8, scale=None, seed=0)
    resumed = train(resumed_model, data, config, device="cpu", checkpoint=checkpoint, progress=False)
    assert resumed.history == reference.history
    assert torch.equal(_learned_scales(resumed_model), _learned_scales(reference_model))
    # Brevitas' default (training.train outside quantizers_kept): the scales stay where the checkpoint left them
    frozen_model = build_model("lenet5", bits=8, scale=None, seed=0)
    training.train(frozen_model, data, config, device="cpu", checkpoint=tmp_path / "default.pt", progress=False)
    assert torch.equal(_learned_scales(frozen_model), at_checkpoint)
    assert not torch.equal(at_checkpoint, _learned_scales(reference_model))


def test_the_engine_trains_with_the_quantizers_kept(tiny_root, tmp_path, monkeypatch):
    from brevitas import config

    import paperlib.runs.experiment as experiment

    seen, real = [], experiment.train
    monkeypatch.setattr(experiment, "train", lambda *a, **k: seen.append(config.REINIT_ON_STATE_DICT_LOAD)
                        or real(*a, **k))
    run(RunSpec(**{**BASE, "epochs": 1, "bits": 8, "scale": None}), tiny_root, tmp_path, "cpu", progress=False)
    assert seen == [False] and config.REINIT_ON_STATE_DICT_LOAD is True  # Brevitas' own setting outside

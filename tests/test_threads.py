"""The numbers do not depend on torch's thread count; thread counts are restored and never oversubscribe."""
import contextlib
import threading

import pytest
import torch

from paperlib import RunSpec, dask_executor, run
from paperlib import noise as noise_module
from paperlib import threads as threads_module
from paperlib.threads import NUMERIC_THREADS, cpu_count, dask_task_threads, numeric_threads, process_threads

SPEC = dict(arch="lenet5", bits=8, scale=1.0, epochs=1, batch_size=32, sigmas=(0.1, 1.0), repeats=2)


@pytest.fixture
def torch_threads():
    """Set torch's thread count in the test; the count from before is restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


@pytest.mark.parametrize("bits,scale", [(None, None), (8, 1.0)])
def test_one_and_two_threads_train_the_same_weights_and_curves(tiny_root, tmp_path, torch_threads, bits, scale):
    results = {}
    for threads in (1, 2):  # as an in-process sweep (one thread per core) vs a Dask worker (one thread)
        torch_threads(threads)
        spec = RunSpec(**{**SPEC, "bits": bits, "scale": scale})
        results[threads] = run(spec, tiny_root, tmp_path / f"threads{threads}", "cpu", progress=False)
        assert torch.get_num_threads() == threads  # run() gives the caller its thread count back
    one, two = results[1], results[2]
    assert one.trained and two.trained
    w1, w2 = one.load_model().state_dict(), two.load_model().state_dict()
    assert w1.keys() == w2.keys()
    assert all(torch.equal(w1[k], w2[k]) for k in w1), "weights differ in their last bits between 1 and 2 threads"
    assert one.history.equals(two.history)
    assert one.noise_curve.equals(two.noise_curve)
    assert one.accuracy == two.accuracy


def test_numeric_threads_sets_the_count_and_restores_it(torch_threads):
    torch_threads(2)
    with numeric_threads():
        assert torch.get_num_threads() == NUMERIC_THREADS == 1
        assert process_threads() == min(2, cpu_count())  # the process's share is what it was outside
        with numeric_threads(3):
            assert torch.get_num_threads() == 3
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError, match="boom"), numeric_threads():
        raise RuntimeError("boom")
    assert torch.get_num_threads() == 2 and process_threads() == min(2, cpu_count())


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_numeric_threads_refuses_a_count_that_is_not_a_whole_number_of_threads(bad):
    with pytest.raises(ValueError, match="numeric_threads takes a whole number of threads >= 1, got"):
        with numeric_threads(bad):
            pass


def test_numeric_threads_act_on_the_calling_thread_only(torch_threads):
    torch_threads(2)
    inside, go_on = threading.Event(), threading.Event()
    seen = {}

    def task():
        with numeric_threads():
            seen["task"] = torch.get_num_threads()
            inside.set()
            go_on.wait(10)
        seen["task after"] = torch.get_num_threads()

    t = threading.Thread(target=task)
    t.start()
    assert inside.wait(10)
    seen["main"] = torch.get_num_threads()  # while the other thread is inside its block
    go_on.set()
    t.join()
    assert seen == {"task": 1, "main": 2, "task after": 2}


def test_noise_draws_use_the_process_share_and_give_the_same_numbers(torch_threads, monkeypatch):
    pools = []
    real_pool = noise_module._draw_pool
    monkeypatch.setattr(noise_module, "_draw_pool", lambda helpers: pools.append(helpers) or real_pool(helpers))
    shape = torch.Size((4, noise_module.PARALLEL_DRAW_MIN // 2))
    draws = []
    for threads, numeric in ((1, False), (2, False), (2, True)):
        torch_threads(threads)
        with numeric_threads() if numeric else contextlib.nullcontext():
            draws.append(noise_module.standard_normal(shape, torch.Generator().manual_seed(5), torch.device("cpu"),
                                                      torch.float32))
    assert torch.equal(draws[0], draws[1]) and torch.equal(draws[0], draws[2])
    # one thread: no helper; two threads: one helper beside the caller, also inside numeric_threads (1 thread)
    expected = [] if cpu_count() < 2 else [1, 1]
    assert pools == expected


def test_outside_a_dask_worker_dask_task_threads_changes_nothing(torch_threads):
    torch_threads(2)
    with dask_task_threads():
        assert torch.get_num_threads() == 2


def test_a_dask_task_runs_on_one_thread_and_gives_it_back():
    from distributed import Client, LocalCluster

    def task():
        before = torch.get_num_threads()
        torch.set_num_threads(2)  # as a worker whose OMP_NUM_THREADS gives every task all cores
        with dask_task_threads():
            inside = torch.get_num_threads(), process_threads()
        after = torch.get_num_threads()
        torch.set_num_threads(before)
        return inside, after

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        assert client.submit(task, pure=False).result(timeout=60) == ((1, 1), 2)


@pytest.mark.parametrize("bad", [0, 1.5])
def test_dask_executor_refuses_a_bad_thread_count(bad):
    with pytest.raises(ValueError, match="threads_per_worker must be a whole number >= 1"):
        dask_executor(threads_per_worker=bad)


# Evaluation threads (paperlib.threads' docstring; docs/protocol.md §12).

FORWARD_MODELS = [(arch, bits, scale) for arch in ("lenet5", "vgg11", "resnet18")
                  for bits, scale in ((None, None), (8, 1.0), (4, None))]


def _logits_by_outside_threads(torch_threads, arch, bits, scale):
    """The logits of one noisy forward pass run as the evaluations run it (``numeric_threads()`` inside
    ``torch.no_grad()``), with torch on 1, 2 and 3 threads outside."""
    from paperlib import build_model, set_noise
    from paperlib.inference import frozen_quantizers

    model = build_model(arch, bits, scale, seed=0)
    x = torch.randn(96, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model(x[:32])  # batch-norm running statistics and a dynamic scale's statistics, as after training
    model.eval()
    logits = {}
    for threads_outside in (1, 2, 3):
        torch_threads(threads_outside)
        with torch.no_grad(), numeric_threads(), frozen_quantizers(model):
            set_noise(model, 0.5, generator=torch.Generator().manual_seed(7))
            logits[threads_outside] = model(x)
            set_noise(model, 0.0)
    return logits


@pytest.mark.parametrize("arch,bits,scale", FORWARD_MODELS)
def test_an_evaluation_gives_the_same_bits_whatever_the_threads_outside(torch_threads, monkeypatch, arch, bits, scale):
    """By default evaluations run on one thread: on some CPUs (an Intel Xeon, 2026-12-05) VGG-11's logits differ in
    their last bits between 1 and 2 threads, so the process's share is not the default. Fails there with
    ``PAPERLIB_EVAL_THREADS=share``."""
    monkeypatch.delenv(threads_module.EVAL_THREADS_ENV, raising=False)
    logits = _logits_by_outside_threads(torch_threads, arch, bits, scale)
    assert logits[1].abs().sum() > 0
    assert torch.equal(logits[1], logits[2]) and torch.equal(logits[1], logits[3])


def test_evaluations_run_on_one_thread_unless_the_environment_asks_for_more(torch_threads, monkeypatch):
    torch_threads(2)
    share = min(2, cpu_count())
    monkeypatch.delenv(threads_module.EVAL_THREADS_ENV, raising=False)
    with numeric_threads():
        assert torch.get_num_threads() == NUMERIC_THREADS == 1  # autograd records: a backward pass may follow
        with torch.no_grad(), numeric_threads():
            assert torch.get_num_threads() == 1  # the default: the same bits on every CPU
    monkeypatch.setenv(threads_module.EVAL_THREADS_ENV, "share")
    monkeypatch.setattr(threads_module, "PASSIVE_WAIT", True)
    with numeric_threads():
        assert torch.get_num_threads() == 1
        with torch.no_grad(), numeric_threads():
            assert torch.get_num_threads() == share  # the process's share, from outside the training's block
        with torch.inference_mode(), numeric_threads():
            assert torch.get_num_threads() == share
        assert torch.get_num_threads() == 1
    with torch.no_grad(), numeric_threads(1):
        assert torch.get_num_threads() == 1  # an explicit count is kept
    monkeypatch.setattr(threads_module, "PASSIVE_WAIT", False)  # OpenMP's idle threads spin: one thread
    with torch.no_grad(), numeric_threads():
        assert torch.get_num_threads() == 1
    monkeypatch.setenv(threads_module.EVAL_THREADS_ENV, "3")
    with torch.no_grad(), numeric_threads():
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == 2
    for bad in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv(threads_module.EVAL_THREADS_ENV, bad)
        with pytest.raises(ValueError, match=r"PAPERLIB_EVAL_THREADS is .* set it to 'share'"):
            threads_module.evaluation_threads()


def test_an_evaluation_gives_the_same_numbers_on_one_thread_and_on_the_process_share(torch_threads, monkeypatch):
    from paperlib import build_model, evaluate_pairs, threads

    monkeypatch.setattr(threads, "PASSIVE_WAIT", True)
    model = build_model("lenet5", 8, None, seed=0)
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(300, 3, 32, 32, generator=g), torch.randint(0, 10, (300,), generator=g)
    with torch.no_grad():
        model(x[:64])
    pairs = [(0.0, 0), (0.5, 0), (0.5, 1), (2.0, 0)]
    frames = []
    for threads_outside in (1, 2, 3):
        torch_threads(threads_outside)
        frames.append(evaluate_pairs(model, x, y, pairs, seed=4, max_batch=128, progress=False))
    assert frames[0].accuracy.nunique() > 1
    assert frames[0].equals(frames[1]) and frames[0].equals(frames[2])


def test_a_pcm_weight_programmed_without_autograd_gives_the_same_bits_on_any_thread_count(torch_threads,
                                                                                          monkeypatch):
    from paperlib import threads
    from paperlib.pcm import program_weight

    monkeypatch.setattr(threads, "PASSIVE_WAIT", True)
    weight = torch.randn(2000, 2000, generator=torch.Generator().manual_seed(3))  # a mean over 4 million weights
    out = {}
    for threads_outside in (1, 2):
        torch_threads(threads_outside)
        with torch.no_grad(), numeric_threads():  # as in pcm_sweep: the process's share outside
            out[threads_outside] = program_weight(weight, 3600.0, generator=torch.Generator().manual_seed(5))
    assert out[1][1] != 1.0 and out[1][1] == out[2][1]  # the drift compensation's factor
    assert torch.equal(out[1][0], out[2][0])


@pytest.mark.parametrize("first,env,passive", [
    ("import paperlib", {}, True),
    ("import torch, paperlib", {}, False),  # torch loaded first: OpenMP has read its wait policy already
    ("import paperlib", {"OMP_WAIT_POLICY": "ACTIVE"}, False),  # the environment's choice is kept
    ("import torch, paperlib", {"OMP_WAIT_POLICY": "passive"}, True),
])
def test_importing_paperlib_first_lets_openmp_threads_sleep(first, env, passive):
    import os
    import subprocess
    import sys

    environ = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    code = f"{first}, os; print(os.environ.get('OMP_WAIT_POLICY'), paperlib.threads.PASSIVE_WAIT)"
    out = subprocess.run([sys.executable, "-c", f"import os; {code}"], env=environ, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[1] == str(passive)
    assert out[0] == env.get("OMP_WAIT_POLICY", "PASSIVE" if first == "import paperlib" else "None")

"""Reproducible on CUDA by default (docs/protocol.md §12): deterministic kernels inside paperlib.run, recorded with
every result and shown in captions; an explicit opt-out is recorded as such. The flags are checked without a GPU
(they are process-wide settings); tests/test_devices.py checks bitwise reruns on every device this machine has."""
import os

import pandas as pd
import pytest
import torch

from paperlib import RunSpec, run, run_sweep
from paperlib.device import CUBLAS_WORKSPACE, NONDETERMINISTIC_ENV, deterministic_default, reproducible
from paperlib.paper.session import accelerator_kernels

CUDA = torch.device("cuda")  # a torch.device is taken as it is: the flags can be checked on a machine without one


def _flags():
    return (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic,
            torch.backends.cudnn.benchmark)


def test_on_cuda_the_block_runs_deterministic_kernels_and_restores_the_flags(monkeypatch):
    monkeypatch.delenv(NONDETERMINISTIC_ENV, raising=False)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = _flags()
    with reproducible(CUDA) as numerics:
        assert _flags() == (True, True, False)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
    assert numerics == {"device_type": "cuda", "deterministic": True,
                        "how": "torch.use_deterministic_algorithms(True), cudnn.deterministic"}
    assert _flags() == before


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_the_opt_out_is_explicit_and_recorded(how, monkeypatch):
    if how == "environment":
        monkeypatch.setenv(NONDETERMINISTIC_ENV, "1")
    kwargs = {"deterministic": False} if how == "argument" else {}
    with reproducible(CUDA, **kwargs) as numerics:
        assert _flags() == (False, False, False)
    assert numerics["deterministic"] is False and "opted out" in numerics["how"]
    assert deterministic_default() is (how == "argument")


def test_on_the_cpu_nothing_changes_and_the_record_says_why():
    before = _flags()
    with reproducible("cpu") as numerics:
        assert _flags() == before
    assert numerics == {"device_type": "cpu", "deterministic": True, "how": "CPU kernels, one numeric thread"}


def test_a_result_records_its_kernels_and_a_sweep_shows_them(tiny_root, tmp_path):
    spec = RunSpec(arch="lenet5", epochs=1, batch_size=32, sigmas=(0.1,), repeats=1)
    res = run(spec, tiny_root, tmp_path / "results", "cpu", progress=False)
    assert res.record["numerics"]["deterministic"] is True and res.deterministic is True and res.device == "cpu"
    df = run_sweep([spec], data_root=tiny_root, results_dir=tmp_path / "results", device="cpu", progress=False)
    assert df.device.tolist() == ["cpu"] and df.deterministic.tolist() == [True]
    assert accelerator_kernels(df) == ""  # the CPU is deterministic: captions say nothing more


@pytest.mark.parametrize("det,says", [
    ([True, True], "trained on cuda:0, deterministic kernels"),
    ([False, False], "trained on cuda:0, NOT deterministic kernels (opted out)"),
    ([True, None], "trained on cuda:0, 1 of 2 networks with deterministic kernels, 1 not recorded"),
])
def test_a_caption_says_how_accelerators_trained(det, says):
    df = pd.DataFrame({"key": ["a", "b", "c"], "device": ["cuda:0", "cuda:0", "cpu"], "deterministic": det + [True]})
    assert accelerator_kernels(df) == says

"""The fast QAT path and the frozen evaluation path on every device this machine has (the GPU check's own code).

``benchmarks/gpu_check.py`` is the one script to run where a GPU is lent; here it runs on each available device
with few steps. On the CPU both paths must equal Brevitas bit for bit; on CUDA, float-level differences from
reordered sums are allowed (bounded below).
"""
import pytest
import torch

from benchmarks.gpu_check import check_device, compare

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


@pytest.mark.parametrize("device", DEVICES)
def test_fast_training_and_frozen_evaluation_equal_brevitas_on_the_device(device):
    result = check_device(device, quick=True)
    lenet = result["archs"]["lenet5"]
    assert set(lenet["fast_vs_brevitas"]) == {"int8_constant", "int8_dynamic"}
    for name, c in {**lenet["fast_vs_brevitas"], "frozen": lenet["frozen_vs_brevitas"]}.items():
        if device == "cpu":
            assert c["bitwise_equal"], f"{name}: max |diff| {c['max_abs_diff']}"
        else:
            assert c["max_abs_diff"] < 1e-4, f"{name}: max |diff| {c['max_abs_diff']}"
    assert all(v > 0 for v in lenet["train_images_per_s"].values())
    assert result["device"].startswith(device)
    # each path against itself first, deterministic kernels: a rerun is bit for bit the same on every device
    assert set(lenet["rerun"]) == {f"{n}_{p}" for n in ("int8_constant", "int8_dynamic") for p in ("fast", "brevitas")}
    assert all(c["bitwise_equal"] for c in lenet["rerun"].values()), lenet["rerun"]
    assert lenet["numerics"]["deterministic"] is True and lenet["numerics"]["device_type"] == device
    twice = lenet["trained_twice"]
    assert twice["accuracy_equal"] and twice["history_equal"] and twice["curve_equal"] and twice["deterministic"]
    assert set(lenet["determinism_cost"]) == {"fp32", "int8_constant_fast", "int8_dynamic_fast",
                                              "int8_dynamic_learned_fast"}
    budget = lenet["budget_timings"]  # what benchmarks/paper_budget.py --timings reads
    assert set(budget) == {"fp32", "qat-dynamic", "qat-constant"} and all(s > 0 and i > 0 for s, i in budget.values())
    speed = lenet["train_images_per_s"]  # a dynamic scale is charged its learned phase (nearly all of a training)
    assert budget["qat-dynamic"][0] == 128 / speed["int8_dynamic_learned_fast"]
    assert budget["qat-constant"][0] == 128 / speed["int8_constant_fast"] and budget["fp32"][0] == 128 / speed["fp32"]
    assert set(lenet["pack"]) == {"fp32", "int8_constant", "int8_dynamic"}
    for pack in lenet["pack"].values():  # a pack of 2 networks against one
        assert pack["one"] > 0 and set(pack["packs"]) == {2} and pack["speedup"][2] == pack["packs"][2] / pack["one"]
    twice = lenet["packed_twice"]  # the engine's packs: a rerun is bit for bit the same; alone to float tolerance
    assert twice["records_equal"] and 0 <= twice["max_loss_diff_vs_alone"] < 1e-3, twice
    sweep = lenet["pack_sweep"]
    assert sweep["one_by_one_s"] > 0 and sweep["batched_s"] > 0 and sweep["sigmas"] == 17


def test_the_comparison_sees_one_flipped_bit():
    a = torch.randn(5)
    b = a.clone()
    b[2] = torch.nextafter(b[2], torch.tensor(float("inf")))
    assert compare([a], [a.clone()])["bitwise_equal"]
    c = compare([a], [b])
    assert not c["bitwise_equal"] and 0 < c["max_abs_diff"] < 1e-5

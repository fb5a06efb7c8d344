import pytest
import torch

from paperlib import CONST_SCALE_MAX, TrainConfig, build_model, train
from paperlib.data import CIFAR10Data
from brevitas.nn import QuantReLU

from paperlib.quant import Layers


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("scale", [0.25, 1.0, 3.0])
def test_constant_scaling_puts_relu_outputs_on_the_grid(bits, scale):
    relu = Layers(bits, scale).relu()
    x = torch.linspace(-10, 2 * CONST_SCALE_MAX[bits] * scale, 20001)
    y = relu(x)
    maximum = CONST_SCALE_MAX[bits] * scale  # clipping maximum M * s (REFERENCE §5)
    step = maximum / (2**bits - 1)  # Brevitas: M*s / (2^b - 1); exactly s at 4 bits
    if bits == 4:
        assert step == pytest.approx(scale)
    k = y / step
    assert torch.allclose(k, k.round(), atol=1e-3)
    assert float(y.max()) == pytest.approx(maximum, rel=1e-6)
    assert float(y.min()) == 0.0
    assert len(torch.unique(k.round())) == 2**bits  # the whole grid 0..2^b-1 is used


def _tiny_data(n=160):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    return CIFAR10Data(x, y, x[:16], y[:16], "random")


def _relu_scales(model):
    return [float(m.act_quant.scale()) for m in model.modules() if isinstance(m, QuantReLU)]


def test_constant_scale_is_fixed_dynamic_scale_learns():
    const = build_model("lenet5", 8, 1.0, seed=0)
    dynamic = build_model("lenet5", 8, None, seed=0)
    assert not [n for n, _ in const.named_parameters() if "act_quant" in n]  # CONST scaling: no parameter
    assert len([n for n, _ in dynamic.named_parameters() if "act_quant" in n]) == 4  # one per QuantReLU
    const_before, dynamic_before = _relu_scales(const), _relu_scales(dynamic)
    # 40 steps: Brevitas collects statistics for 30 steps, then learns the scale
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-2, augment=False)
    train(const, _tiny_data(), cfg, device="cpu", progress=False)
    train(dynamic, _tiny_data(), cfg, device="cpu", progress=False)
    assert _relu_scales(const) == const_before == [pytest.approx(256 / 255)] * 4
    assert all(a != b for a, b in zip(_relu_scales(dynamic), dynamic_before))

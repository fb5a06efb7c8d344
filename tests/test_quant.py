import pytest
import torch
from brevitas.nn import QuantConv2d, QuantLinear, QuantReLU
from conftest import assert_frozen_equals_brevitas

from paperlib import CONST_SCALE_MAX, TrainConfig, build_model, train
from paperlib.data import CIFAR10Data
from paperlib.quant import Layers


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("scale", [0.25, 1.0, 3.0])
def test_constant_scaling_puts_relu_outputs_on_the_grid(bits, scale):
    relu = Layers(bits, scale).relu()
    x = torch.linspace(-10, 2 * CONST_SCALE_MAX[bits] * scale, 20001)
    y = relu(x)
    maximum = CONST_SCALE_MAX[bits] * scale  # clipping maximum M * s (docs/protocol.md §5)
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
    # 40 steps, all inside Brevitas' statistics phase (300 steps): the running statistic moves the scale
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-2, augment=False)
    train(const, _tiny_data(), cfg, device="cpu", progress=False)
    train(dynamic, _tiny_data(), cfg, device="cpu", progress=False)
    assert _relu_scales(const) == const_before == [pytest.approx(256 / 255)] * 4
    assert all(a != b for a, b in zip(_relu_scales(dynamic), dynamic_before))


@pytest.mark.parametrize("bits", [4, 8])
def test_per_channel_linear_has_one_scale_per_output_feature(bits):
    """Int8WeightPerTensorFloat statistics: scale = max |w| / (2^(b-1) - 1), per row with per_channel=True."""
    torch.manual_seed(0)
    per_channel, per_tensor = Layers(bits).linear(6, 5, per_channel=True), Layers(bits).linear(6, 5)
    with torch.no_grad():
        per_tensor.weight.copy_(per_channel.weight)
        qmax = 2 ** (bits - 1) - 1
        w = per_channel.weight
        assert per_channel.quant_weight().scale.shape == (5, 1)
        assert torch.allclose(per_channel.quant_weight().scale, w.abs().amax(1, keepdim=True) / qmax)
        assert per_tensor.quant_weight().scale.numel() == 1
        assert torch.allclose(per_tensor.quant_weight().scale, w.abs().max() / qmax)
    assert type(Layers(None).linear(6, 5, per_channel=True)) is torch.nn.Linear  # no effect on fp32


def _weight_scale_shapes(model):
    return [tuple(m.quant_weight().scale.shape) for m in model.modules() if isinstance(m, (QuantConv2d, QuantLinear))]


@pytest.mark.parametrize("bits,scale", [(4, 1.0), (8, None)])
def test_vgg11_quantizes_its_hidden_fc_weights_per_channel_and_the_last_per_tensor(bits, scale):
    """As the authors' models_noisy/vgg_qat.py (docs/protocol.md §10); the convs per channel."""
    shapes = _weight_scale_shapes(build_model("vgg11", bits, scale))
    convs = [64, 128, 256, 256, 512, 512, 512, 512]
    assert shapes == [(c, 1, 1, 1) for c in convs] + [(4096, 1), (4096, 1), ()]


@pytest.mark.parametrize("arch,fc_count", [("lenet5", 3), ("resnet18", 1)])
def test_lenet5_and_resnet18_quantize_every_fc_per_tensor(arch, fc_count):
    """The authors' lenet_qat.py and resnet_qat.py: CommonIntWeightPerTensorQuant on every QuantLinear."""
    linears = [m for m in build_model(arch, 8, None).modules() if isinstance(m, QuantLinear)]
    assert len(linears) == fc_count and all(m.quant_weight().scale.numel() == 1 for m in linears)


@pytest.mark.parametrize("bits,scale", [(8, 1.0), (4, None)])
def test_frozen_quantizers_match_brevitas_bitwise_on_vgg11_with_per_channel_fc(bits, scale):
    model = build_model("vgg11", bits, scale, seed=0)
    if scale is None:  # one training-mode pass gives the dynamic quantizers their running statistics
        with torch.no_grad():
            model(torch.randn(2, 3, 32, 32))
    assert_frozen_equals_brevitas(model.eval(), 3 * torch.randn(4, 3, 32, 32), (QuantLinear, QuantReLU))

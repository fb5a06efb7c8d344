import pytest
import torch
from torch import nn

from paperlib import ARCHS, build_model, model_stats, noise_modules
from paperlib.models import VGG11_CFG, BasicBlock
from paperlib.noise import GaussianNoise

COUNTS = {"lenet5": 12, "vgg11": 27, "resnet18": 33}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("bits,scale", [(None, None), (4, None), (8, None), (8, 1.0), (4, 0.5), (16, 2.0)])
def test_noise_module_counts(arch, bits, scale):
    assert len(noise_modules(build_model(arch, bits, scale))) == COUNTS[arch]


@pytest.mark.parametrize("arch", ARCHS)
def test_noise_modules_are_listed_in_forward_order(arch):
    model = build_model(arch, 8, 1.0, seed=0).eval()
    fired: list[GaussianNoise] = []
    hooks = [m.register_forward_hook(lambda mod, i, o: fired.append(mod)) for m in noise_modules(model)]
    model(torch.randn(2, 3, 32, 32))
    for h in hooks:
        h.remove()
    first_fire = list(dict.fromkeys(fired))  # order of first firing, duplicates removed
    assert first_fire == noise_modules(model)
    # ResNet-18: each block's ReLU noise module fires twice (docs/protocol.md §2)
    assert len(fired) == COUNTS[arch] + (8 if arch == "resnet18" else 0)


def test_lenet5_size():
    stats = model_stats(build_model("lenet5"))
    assert 61_000 < stats.params < 63_000  # about 62 k (docs/protocol.md §4)
    assert stats.macs == 651_720  # hand count: 5x5 convs 28*28*6*75 + 10*10*16*150, fc 400*120 + 120*84 + 84*10
    assert stats.noisy_layers == 12


def test_model_stats_counts_resnet18_and_vgg11():
    resnet, vgg = model_stats(build_model("resnet18")), model_stats(build_model("vgg11"))
    # 10-class models at 32x32: fewer MACs than the paper's ImageNet-head figures (docs/protocol.md §4)
    assert 36e6 < resnet.macs < 38e6 and 11.1e6 < resnet.params < 11.3e6
    assert 150e6 < vgg.macs < 200e6 and 28e6 < vgg.params < 28.5e6


def test_same_seed_same_weights():
    a, b = build_model("lenet5", 8, None, seed=3), build_model("lenet5", 8, None, seed=3)
    c = build_model("lenet5", 8, None, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_qat_vgg11_init_follows_the_authors_vgg_qat_class():
    model = build_model("vgg11", 8, 1.0, seed=0)
    fc = model.classifier[0][0]
    assert abs(float(fc.weight.detach().std()) - 0.01) < 1e-3 and float(fc.bias.detach().abs().max()) == 0.0
    conv = model.features[1][0]  # 3->64, Kaiming normal fan_out: std = sqrt(2 / (64*9))
    assert abs(float(conv.weight.detach().std()) - (2 / (64 * 9)) ** 0.5) < 0.01
    assert float(conv.bias.detach().abs().max()) == 0.0


def test_fp32_vgg11_keeps_pytorch_default_init_like_the_authors_vgg_class():
    """The authors' fp32 VGG (models_noisy/vgg.py) has no init of its own (docs/protocol.md §10)."""
    model = build_model("vgg11", seed=5)
    # the same layers made fresh by torch, in the same order, from the same seed: identical tensors
    torch.manual_seed(5)
    fresh, cin = [], 3
    for item in VGG11_CFG:
        if item != "M":
            fresh.append(nn.Conv2d(cin, item, 3, padding=1))
            cin = item
    fresh += [nn.Linear(512, 4096), nn.Linear(4096, 4096), nn.Linear(4096, 10)]
    ours = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(ours) == len(fresh) == 11
    for a, b in zip(ours, fresh):
        assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
    fc = model.classifier[0][0]  # default: U(-1/sqrt(512), 1/sqrt(512)), std 1/sqrt(3*512) = 0.0255, not 0.01
    assert abs(float(fc.weight.detach().std()) - (3 * 512) ** -0.5) < 1e-3 and float(fc.bias.detach().abs().min()) > 0


#: Trainable parameters, by hand: fp32 adds the last layer's bias (10) and, in ResNet-18, drops the three 1x1
#: downsample convs' biases (128 + 256 + 512 = 896); dynamic scaling adds one learned scale per QuantReLU module
#: (LeNet-5 4, VGG-11 10, ResNet-18 9). The authors' classes: docs/protocol.md §10.
PARAMS = {
    # convs 456 + 2416, fc 48120 + 10164 + 840 (+ 10)
    "lenet5": {"fp32": 62_006, "const": 61_996, "dynamic": 62_000},
    # convs 9_220_480, fc 2_101_248 + 16_781_312 + 40_960 (+ 10)
    "vgg11": {"fp32": 28_144_010, "const": 28_144_000, "dynamic": 28_144_010},
    "resnet18": {"fp32": 11_185_546, "const": 11_186_432, "dynamic": 11_186_441},
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("bits,scale,kind", [(None, None, "fp32"), (4, 1.0, "const"), (8, None, "dynamic")])
def test_parameter_counts_match_the_authors_classes(arch, bits, scale, kind):
    model = build_model(arch, bits, scale)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == PARAMS[arch][kind]


def test_fp32_resnet18_is_torchvision_resnet18_plus_the_authors_conv_biases():
    """resnet_new.py: the stem conv and every 3x3 block conv have a bias, the 1x1 shortcut and torchvision's none."""
    torchvision = pytest.importorskip("torchvision")
    reference = sum(p.numel() for p in torchvision.models.resnet18(num_classes=10).parameters())
    conv_biases = 64 + 4 * (64 + 128 + 256 + 512)  # stem + 2 blocks x 2 convs per stage
    assert PARAMS["resnet18"]["fp32"] == reference + conv_biases


def _last_layer(model: nn.Module) -> nn.Module:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


@pytest.mark.parametrize("arch", ARCHS)
def test_last_layer_has_a_bias_in_fp32_and_none_in_qat(arch):
    assert _last_layer(build_model(arch)).bias is not None
    for bits, scale in [(8, None), (4, 1.0)]:
        assert _last_layer(build_model(arch, bits, scale)).bias is None


def test_resnet18_downsample_conv_has_a_bias_in_qat_only():
    for bits, with_bias in [(None, False), (8, True), (4, True)]:
        blocks = [m for m in build_model("resnet18", bits).modules() if isinstance(m, BasicBlock)]
        shortcuts = [b.downsample[0] for b in blocks if b.downsample is not None]
        assert len(shortcuts) == 3 and all((c.bias is not None) == with_bias for c in shortcuts)
        assert all(b.conv1[0].bias is not None and b.conv2[0].bias is not None for b in blocks)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"arch": "alexnet"}, "unknown arch 'alexnet'; choose one of lenet5, vgg11, resnet18"),
        ({"arch": "lenet5", "bits": 3}, "bits=3 is not supported; use None \\(fp32\\) or one of 4, 8, 16"),
        ({"arch": "lenet5", "bits": 8, "scale": 0.0}, "scale=0.0 is invalid"),
        ({"arch": "lenet5", "bits": 8, "scale": -1.0}, "scale=-1.0 is invalid"),
        ({"arch": "lenet5", "bits": None, "scale": 1.0}, "scale is only meaningful for a quantized model"),
    ],
)
def test_bad_model_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)

import pytest
import torch

from paperlib import ARCHS, build_model, model_stats, noise_modules
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
    # ResNet-18: each block's ReLU noise module fires twice (REFERENCE §2)
    assert len(fired) == COUNTS[arch] + (8 if arch == "resnet18" else 0)


def test_lenet5_size():
    stats = model_stats(build_model("lenet5"))
    assert 61_000 < stats.params < 63_000  # about 62 k (REFERENCE §4)
    assert stats.macs == 651_720  # hand count: 5x5 convs 28*28*6*75 + 10*10*16*150, fc 400*120 + 120*84 + 84*10
    assert stats.noisy_layers == 12


def test_model_stats_counts_resnet18_and_vgg11():
    resnet, vgg = model_stats(build_model("resnet18")), model_stats(build_model("vgg11"))
    # 10-class models at 32x32: fewer MACs than the paper's ImageNet-head figures (REFERENCE §4)
    assert 36e6 < resnet.macs < 38e6 and 11.1e6 < resnet.params < 11.3e6
    assert 150e6 < vgg.macs < 200e6 and 28e6 < vgg.params < 28.5e6


def test_same_seed_same_weights():
    a, b = build_model("lenet5", 8, None, seed=3), build_model("lenet5", 8, None, seed=3)
    c = build_model("lenet5", 8, None, seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_vgg11_init_follows_the_authors():
    model = build_model("vgg11", seed=0)
    fc = model.classifier[0][0]
    assert abs(float(fc.weight.detach().std()) - 0.01) < 1e-3 and float(fc.bias.detach().abs().max()) == 0.0
    conv = model.features[1][0]  # 3->64, Kaiming normal fan_out: std = sqrt(2 / (64*9))
    assert abs(float(conv.weight.detach().std()) - (2 / (64 * 9)) ** 0.5) < 0.01


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

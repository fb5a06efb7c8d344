"""add_noise: the paper's noise placement on any nn.Module (docs/protocol.md §2)."""
import copy

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from paperlib import build_model, fit_midpoint, noise_modules, noise_sweep, set_noise, summarize_sweep
from paperlib.instrument import add_noise
from paperlib.walking import noise_site_table


def _firing_order(model, x):
    fired = []
    hooks = [m.register_forward_hook(lambda mod, i, o: fired.append(mod)) for m in noise_modules(model)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    first = []
    for m in fired:
        if not any(m is f for f in first):
            first.append(m)
    return fired, first


def _small():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Dropout(0.1), nn.Linear(4 * 15 * 15, 10)).eval()


def test_torchvision_resnet18_gets_33_noise_modules_in_forward_order():
    model = torchvision.models.resnet18(num_classes=10).eval()
    reference = copy.deepcopy(model)
    assert add_noise(model) is model
    x = torch.randn(2, 3, 32, 32)
    fired, first = _firing_order(model, x)
    assert len(noise_modules(model)) == 33  # = our ResNet-18 and the paper's Table II
    assert len(fired) == 33 + 8  # each BasicBlock's relu (and its noise) runs twice
    assert all(a is b for a, b in zip(first, noise_modules(model))) and fired[0] is model.input_noise
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))  # sigma 0: exactly the un-instrumented output
        set_noise(model, 0.1)
        assert not torch.equal(model(x), reference(x))
    assert list(noise_site_table(model).follows[:4]) == ["input", "conv", "relu", "pool"]


def test_small_sequential_placement_and_exact_clean_output():
    model = _small()
    reference = copy.deepcopy(model)
    add_noise(model)
    x = torch.randn(3, 3, 32, 32)
    assert torch.equal(model(x), reference(x))
    sites = noise_site_table(model)
    assert list(sites.follows) == ["input", "conv", "relu", "pool", "linear"]  # none after BatchNorm, Flatten, Dropout
    assert list(sites.name) == ["input_noise", "0.1", "2.1", "3.1", "6.1"]
    _, first = _firing_order(model, x)
    assert all(a is b for a, b in zip(first, noise_modules(model)))
    no_input = add_noise(_small(), input=False)
    assert len(noise_modules(no_input)) == 4 and not hasattr(no_input, "input_noise")


def test_noise_sweep_and_midpoint_on_an_instrumented_model():
    model = _small()
    x = torch.randn(200, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # centre the logits on x, so that the model's predictions spread over the classes
        model[-1].bias.copy_(-model[-1].weight @ model[:-1](x).mean(0))
    add_noise(model)
    with torch.no_grad():
        y = model(x).argmax(1)  # the clean model's own predictions: accuracy 1 at sigma 0
    assert int(torch.bincount(y).max()) < 60
    sigmas = np.logspace(-3, 3, 13)
    curve = noise_sweep(model, x, y, sigmas, 2, seed=0, max_batch=1000, progress=False)
    summary = summarize_sweep(curve)
    assert summary.acc_mean.iloc[0] > 0.95 and summary.acc_mean.iloc[-1] < 0.2
    fit = fit_midpoint(summary.sigma, summary.acc_mean, summary.acc_std)
    assert fit.ok and 1e-3 < fit.sigma_mid < 1e3
    layer_curve = noise_sweep(model, x, y, [1e3], 1, layer=0, seed=0, progress=False)
    assert layer_curve.accuracy.iloc[0] < 0.5


def test_brevitas_layers_get_noise_but_not_their_insides():
    import brevitas.nn as qnn

    model = nn.Sequential(
        qnn.QuantConv2d(3, 4, 3, weight_bit_width=8, return_quant_tensor=False),
        qnn.QuantReLU(bit_width=8, return_quant_tensor=False),
        nn.Flatten(),
        qnn.QuantLinear(4 * 30 * 30, 10, bias=True, weight_bit_width=8, return_quant_tensor=False),
    ).eval()
    add_noise(model)
    assert list(noise_site_table(model).follows) == ["input", "conv", "relu", "linear"]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize(
    "make,err,match",
    [
        (lambda: add_noise(build_model("lenet5")), ValueError, "the model already has 12 GaussianNoise modules"),
        (lambda: add_noise(add_noise(_small())), ValueError, "the model already has 5 GaussianNoise modules"),
        (
            lambda: add_noise(nn.Sequential(nn.Flatten(), nn.Dropout())),
            ValueError,
            "has no Conv, Linear, ReLU or pooling",
        ),
        (lambda: add_noise(nn.Linear(3, 4)), ValueError, "not a single Linear"),
        (lambda: add_noise("resnet"), TypeError, "add_noise needs a torch.nn.Module, got str"),
    ],
)
def test_add_noise_refuses_bad_models(make, err, match):
    with pytest.raises(err, match=match):
        make()

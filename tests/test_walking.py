"""Walking noise: one noisy site at a time, one midpoint per site (arXiv 2212.10430)."""
import numpy as np
import pytest
import torch
from torch import nn

from paperlib import build_model
from paperlib.instrument import add_noise
from paperlib.walking import SENSITIVITY_COLUMNS, fit_layer_curves, layer_curves, layer_sensitivity, noise_site_table

SIGMAS = np.logspace(-4, 2, 19)


@pytest.fixture(scope="module")
def sensitive():
    """An MLP whose third linear layer shrinks its signal 100-fold (the next one restores it).

    The noise module right after that layer (site 3) sees a 100 times smaller
    signal than every other site, so it tolerates about 100 times less noise.
    """
    torch.manual_seed(0)
    shrink, grow = nn.Linear(32, 32), nn.Linear(32, 32)
    with torch.no_grad():
        shrink.weight.mul_(0.01)
        shrink.bias.mul_(0.01)
        grow.weight.mul_(100.0)
    model = add_noise(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), shrink, grow, nn.ReLU(), nn.Linear(32, 4))).eval()
    x = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y = model(x).argmax(1)  # the clean model's own predictions: accuracy 1 without noise
    return model, x, y


def test_the_sensitive_site_has_the_smallest_midpoint(sensitive):
    model, x, y = sensitive
    table = layer_sensitivity(model, x, y, SIGMAS, 2, seed=0, a_min=0.25, progress=False)
    assert list(table.columns) == list(SENSITIVITY_COLUMNS)
    assert list(table["index"]) == list(range(7))  # forward order
    assert list(table.follows) == ["input", "linear", "relu", "linear", "linear", "relu", "linear"]
    assert list(table.name) == list(noise_site_table(model).name)
    assert table.fit_ok.all(), table[["name", "reason"]]
    assert table.sigma_mid.idxmin() == 3
    assert table.sigma_mid.drop(3).min() > 10 * table.sigma_mid[3]
    # errors from the fit residuals (docs/protocol.md §11): these curves end near 0.16, below a_min, so they are loose
    assert (table.peak_accuracy > 0.95).all() and (table.rel_err < 0.3).all()


def test_seeded_curves_are_identical_and_give_the_same_fits(sensitive):
    model, x, y = sensitive
    a = layer_curves(model, x, y, [0.01, 0.1, 1.0], 2, seed=5, progress=False)
    b = layer_curves(model, x, y, [0.01, 0.1, 1.0], 2, seed=5, progress=False)
    assert a.equals(b) and len(a) == 7 * 3 * 2
    assert list(a.columns) == ["index", "name", "follows", "sigma", "repeat", "accuracy"]
    assert not a.equals(layer_curves(model, x, y, [0.01, 0.1, 1.0], 2, seed=6, progress=False))
    assert fit_layer_curves(a, a_min=0.25).equals(fit_layer_curves(b, a_min=0.25))


def test_lenet5_activation_and_weight_sites():
    model = build_model("lenet5", 8, 1.0, seed=0).eval()
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    act = layer_sensitivity(model, x, y, [0.01, 1.0, 100.0], progress=False)
    assert list(act.follows) == ["input", "conv", "relu", "pool", "conv", "relu", "pool", "linear", "relu", "linear",
                                 "relu", "linear"]
    weights = layer_curves(model, x, y, [0.0, 100.0], kind="weight", progress=False)
    assert list(weights.name.unique()) == ["1.0", "4.0", "8.0", "10.0", "12.0"]
    assert (weights[weights.sigma == 0.0].accuracy == 1.0).all()
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        layer_curves(model, x, y, [0.1], 0, progress=False)
    with pytest.raises(ValueError, match="curves lacks the column\\(s\\) follows, index, name"):
        fit_layer_curves(weights[["sigma", "repeat", "accuracy"]])

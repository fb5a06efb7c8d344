"""Weight noise (kind="weight"): W + sigma * Z at every Conv/Linear layer, redrawn on every forward pass."""
import copy

import pytest
import torch
from brevitas.nn import QuantConv2d
from torch.nn import functional as F

from paperlib import accuracy, build_model, evaluate_pairs, noise_modules, noise_settings, noise_sweep, set_noise
from paperlib.inference import frozen_quantizers
from paperlib.noise import weight_layers


@pytest.fixture(params=[None, 8], ids=["fp32", "int8"])
def lenet(request):
    bits = request.param
    return build_model("lenet5", bits, None if bits is None else 1.0, seed=0).eval()


def _weights(model):
    return [m._parameters["weight"] for m in weight_layers(model)]


def test_weight_noise_changes_the_output_and_is_redrawn_every_pass(lenet):
    x = torch.randn(4, 3, 32, 32)
    clean = lenet(x)
    params, keys = _weights(lenet), list(lenet.state_dict())
    set_noise(lenet, 0.05, kind="weight", generator=torch.Generator().manual_seed(0))
    a, b = lenet(x), lenet(x)
    assert not torch.equal(a, clean) and not torch.equal(a, b)
    assert all(m.sigma == 0.0 and not m.active() for m in noise_modules(lenet))  # activation noise silent
    after = _weights(lenet)  # the clean parameters are back after every pass, same objects
    assert all(p is q and isinstance(q, torch.nn.Parameter) for p, q in zip(params, after))
    assert len(weight_layers(lenet)) == 5 and list(lenet.state_dict()) == keys


def test_sigma_zero_gives_exactly_the_clean_output(lenet):
    x = torch.randn(4, 3, 32, 32)
    clean = lenet(x)
    set_noise(lenet, 0.0, kind="weight")
    assert torch.equal(lenet(x), clean)
    set_noise(lenet, 0.3, kind="weight")
    set_noise(lenet, 0.0)  # back to (silent) activation noise: the weight hooks do nothing
    assert torch.equal(lenet(x), clean)


def test_same_generator_seed_same_weight_noise(lenet):
    x = torch.randn(2, 3, 32, 32)
    outs = []
    for _ in range(2):
        set_noise(lenet, 0.1, kind="weight", generator=torch.Generator().manual_seed(9))
        outs.append(lenet(x))
    assert torch.equal(*outs)


def test_gradients_are_those_at_the_clean_weights_plus_the_fixed_draw(lenet):
    """d loss / dW with weight noise equals the gradient of a clean copy whose weights are W + draw."""
    lenet.train()
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    noisy_w = {}
    set_noise(lenet, 0.05, kind="weight", generator=torch.Generator().manual_seed(1))
    hooks = [m.register_forward_pre_hook(lambda mod, inp: noisy_w.__setitem__(mod, mod.weight.detach().clone()))
             for m in weight_layers(lenet)]  # registered after set_noise's hooks: they see the noisy weight
    twin = copy.deepcopy(lenet)
    F.cross_entropy(lenet(x), y).backward()
    for h in hooks:
        h.remove()
    assert len(noisy_w) == 5
    set_noise(twin, 0.0)
    with torch.no_grad():
        for orig, dup in zip(weight_layers(lenet), weight_layers(twin)):
            assert float((noisy_w[orig] - orig.weight).abs().max()) > 0
            dup.weight.copy_(noisy_w[orig])
    F.cross_entropy(twin(x), y).backward()
    for (name, p), q in zip(lenet.named_parameters(), twin.parameters()):
        assert p.grad is not None and torch.allclose(p.grad, q.grad, atol=1e-6), name


def test_layer_wise_weight_noise_and_per_sample_sigma(lenet):
    set_noise(lenet, 0.5, layer=2, kind="weight")
    states = [m._paperlib_weight_noise.sigma for m in weight_layers(lenet)]
    assert states == [0.0, 0.0, 0.5, 0.0, 0.0]
    with pytest.raises(IndexError, match="layer=5 is out of range: the model has 5 weight layers"):
        set_noise(lenet, 0.5, layer=5, kind="weight")
    with pytest.raises(ValueError, match="weight noise takes one float sigma per forward pass"):
        set_noise(lenet, torch.tensor([0.1, 0.2]), kind="weight")
    with noise_settings(lenet):
        set_noise(lenet, 1.0, kind="weight")
    assert [m._paperlib_weight_noise.sigma for m in weight_layers(lenet)] == states


def test_weights_are_restored_after_an_exception_and_refused_when_frozen(lenet):
    set_noise(lenet, 0.1, kind="weight")
    params = _weights(lenet)
    with pytest.raises(RuntimeError):
        lenet(torch.randn(2, 3, 28, 28))  # fails at the first linear layer, after two noisy convs
    assert all(p is q for p, q in zip(params, _weights(lenet)))
    if isinstance(lenet[1][0], QuantConv2d):
        with (
            frozen_quantizers(lenet),
            pytest.raises(RuntimeError, match="weight noise cannot act on QuantConv2d while its weights are frozen"),
        ):
            lenet(torch.randn(2, 3, 32, 32))


def test_evaluation_with_weight_noise(lenet):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, 32, 32, generator=g), torch.arange(40) % 10
    clean_pred = lenet(x).argmax(1)
    a = noise_sweep(lenet, x, clean_pred, [0.0, 0.01, 10.0], 2, kind="weight", seed=2, max_batch=16, progress=False)
    b = evaluate_pairs(
        lenet,
        x,
        clean_pred,
        [(0.0, 0), (0.0, 1), (0.01, 0), (0.01, 1), (10.0, 0), (10.0, 1)],
        kind="weight",
        seed=2,
        max_batch=16,
        progress=False,
    )
    assert a.equals(b)
    assert (a[a.sigma == 0.0].accuracy == 1.0).all() and a[a.sigma == 10.0].accuracy.max() < 0.5
    assert accuracy(lenet, x, clean_pred, 0.0, kind="weight") == 1.0
    assert accuracy(lenet, x, y, 5.0, kind="weight", generator=torch.Generator().manual_seed(1)) < 0.5
    assert all(m._paperlib_weight_noise.sigma == 0.0 for m in weight_layers(lenet))  # settings restored

import pytest
import torch

from paperlib import build_model, noise_modules, set_noise
from paperlib.noise import GaussianNoise, noise_settings


@pytest.fixture
def lenet():
    return build_model("lenet5", 8, 1.0, seed=0).eval()


def test_sigma_zero_is_deterministic_and_positive_sigma_is_not(lenet):
    x = torch.randn(8, 3, 32, 32)
    set_noise(lenet, 0.0)
    assert torch.equal(lenet(x), lenet(x))
    set_noise(lenet, 0.1)
    assert not torch.equal(lenet(x), lenet(x))


def test_same_generator_seed_same_noise(lenet):
    x = torch.randn(4, 3, 32, 32)
    outs = []
    for _ in range(2):
        set_noise(lenet, 0.5, generator=torch.Generator().manual_seed(7))
        outs.append(lenet(x))
    assert torch.equal(*outs)


def _record(model, x):
    acts = []
    hooks = [m.register_forward_hook(lambda mod, i, o: acts.append(o.detach().clone())) for m in noise_modules(model)]
    model(x)
    for h in hooks:
        h.remove()
    return acts


@pytest.mark.parametrize("arch", ["lenet5", "vgg11"])
def test_layer_wise_noise_changes_only_what_follows(arch):
    model = build_model(arch, None, None, seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    set_noise(model, 0.0)
    clean = _record(model, x)
    for k in (0, 3, len(clean) - 1):
        set_noise(model, 0.5, layer=k)
        assert [m.sigma for m in noise_modules(model)] == [0.5 if j == k else 0.0 for j in range(len(clean))]
        noisy = _record(model, x)
        for j, (a, b) in enumerate(zip(clean, noisy)):
            assert torch.equal(a, b) == (j < k), f"module {j} with noise at {k}"


def test_gradients_treat_the_draw_as_a_constant():
    """A noisy forward pass gives the same gradients as adding the same draws as constants."""
    model = build_model("lenet5", 8, 1.0, seed=0)
    x, y = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    draws = []

    def capture(mod, inp, out):
        draws.append((out - inp[0]).detach())

    set_noise(model, 0.3, generator=torch.Generator().manual_seed(1))
    hooks = [m.register_forward_hook(capture) for m in noise_modules(model)]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for h in hooks:
        h.remove()
    noisy_grads = [p.grad.clone() for p in model.parameters()]
    assert all(float(d.abs().max()) > 0 for d in draws)

    model.zero_grad()
    set_noise(model, 0.0)
    queue = list(draws)
    hooks = [m.register_forward_hook(lambda mod, inp, out: out + queue.pop(0)) for m in noise_modules(model)]
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for h in hooks:
        h.remove()
    for a, p in zip(noisy_grads, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_noise_statistics_additive_and_multiplicative():
    m = GaussianNoise()
    x = torch.full((200_000,), 2.0)
    m.sigma = 0.5
    d = m(x) - x
    assert abs(float(d.mean())) < 0.01 and float(d.std()) == pytest.approx(0.5, rel=0.02)
    m.kind = "multiplicative"
    r = m(x) / x
    assert float(r.mean()) == pytest.approx(1.0, abs=0.01) and float(r.std()) == pytest.approx(0.5, rel=0.02)


def test_per_sample_sigma():
    m = GaussianNoise()
    m.sigma = torch.tensor([0.0, 1.0, 3.0])
    x = torch.zeros(3, 50_000)
    out = m(x)
    assert float(out[0].abs().max()) == 0.0
    assert float(out[1].std()) == pytest.approx(1.0, rel=0.03)
    assert float(out[2].std()) == pytest.approx(3.0, rel=0.03)
    with pytest.raises(ValueError, match="per-sample sigma has 3 entries but the batch has 2"):
        m(torch.zeros(2, 4))


def test_when_train_or_eval():
    m = GaussianNoise()
    m.sigma, m.when = 1.0, "train"
    x = torch.zeros(10)
    assert torch.equal(m.eval()(x), x) and not torch.equal(m.train()(x), x)
    m.when = "eval"
    assert torch.equal(m.train()(x), x) and not torch.equal(m.eval()(x), x)


def test_noise_settings_are_restored(lenet):
    set_noise(lenet, 0.2)
    with noise_settings(lenet):
        set_noise(lenet, 1.0, layer=2, kind="multiplicative")
    assert all(m.sigma == 0.2 and m.kind == "additive" for m in noise_modules(lenet))


@pytest.mark.parametrize(
    "args,kwargs,err,match",
    [
        ((-0.1,), {}, ValueError, "sigma must be a finite number >= 0"),
        ((float("nan"),), {}, ValueError, "sigma must be a finite number >= 0"),
        ((torch.tensor([0.1, -1.0]),), {}, ValueError, "sigma must be finite and >= 0"),
        ((0.1,), {"layer": 12}, IndexError, "layer=12 is out of range: the model has 12 noise modules"),
        ((0.1,), {"kind": "uniform"}, ValueError, "unknown noise kind 'uniform'"),
    ],
)
def test_bad_noise_arguments(lenet, args, kwargs, err, match):
    with pytest.raises(err, match=match):
        set_noise(lenet, *args, **kwargs)


def test_large_cpu_draws_do_not_depend_on_the_thread_count():
    from paperlib.noise import PARALLEL_DRAW_MIN, standard_normal

    shape = torch.Size((4, PARALLEL_DRAW_MIN // 2))
    before = torch.get_num_threads()
    draws = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            draws.append(standard_normal(shape, torch.Generator().manual_seed(5), torch.device("cpu"), torch.float32))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*draws)
    assert abs(float(draws[0].mean())) < 0.01 and float(draws[0].std()) == pytest.approx(1.0, abs=0.01)
    chunks = draws[0].view(-1).chunk(4)  # independent streams, not copies of one another
    assert not torch.equal(chunks[0], chunks[1])


def test_noise_refuses_a_brevitas_quant_tensor():
    from brevitas.nn import QuantReLU

    quant = QuantReLU(bit_width=8, return_quant_tensor=True)(torch.randn(4))
    m = GaussianNoise()
    m.sigma = 0.1
    with pytest.raises(TypeError, match="expects a plain torch.Tensor, got IntQuantTensor"):
        m(quant)


def test_combined_noise_statistics():
    """combined: x * N(1, sigma^2) + N(0, sigma^2), two independent draws (docs/protocol.md §2)."""
    m = GaussianNoise()
    m.sigma, m.kind = 0.5, "combined"
    y = m(torch.full((400_000,), 2.0))
    assert float(y.mean()) == pytest.approx(2.0, abs=0.01)
    assert float(y.var()) == pytest.approx(2.0**2 * 0.25 + 0.25, rel=0.02)  # x^2 sigma^2 + sigma^2
    z = m(torch.zeros(200_000))  # the multiplicative part vanishes on 0: only the additive draw is left
    assert float(z.std()) == pytest.approx(0.5, rel=0.02)
    m.sigma = torch.tensor([0.0, 1.0])
    out = m(torch.ones(2, 50_000))
    assert torch.equal(out[0], torch.ones(50_000)) and float(out[1].var()) == pytest.approx(2.0, rel=0.03)


def test_combined_noise_through_set_noise_is_seeded(lenet):
    x = torch.randn(2, 3, 32, 32)
    outs = []
    for _ in range(2):
        set_noise(lenet, 0.2, kind="combined", generator=torch.Generator().manual_seed(3))
        outs.append(lenet(x))
    set_noise(lenet, 0.2, kind="multiplicative", generator=torch.Generator().manual_seed(3))
    assert torch.equal(*outs) and not torch.equal(outs[0], lenet(x))


def test_unknown_kinds_give_clear_errors(lenet):
    from paperlib import RunSpec, TrainConfig, noise_sweep

    m = GaussianNoise()
    m.sigma, m.kind = 0.1, "uniform"
    with pytest.raises(ValueError, match="unknown noise kind 'uniform' for a noise module; choose one of additive"):
        m(torch.zeros(3))
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    match = "unknown noise kind 'weights'; choose one of additive, multiplicative, combined, weight"
    with pytest.raises(ValueError, match=match):
        noise_sweep(lenet, x, y, [0.1], 1, kind="weights", progress=False)
    with pytest.raises(ValueError, match="unknown noise_kind 'gauss'"):
        TrainConfig(noise_kind="gauss")
    with pytest.raises(ValueError, match="unknown noise_kind 'gauss'"):
        RunSpec(noise_kind="gauss")
    with pytest.raises(ValueError, match="unknown noise_kind 'gauss'"):
        RunSpec(train_noise_kind="gauss")

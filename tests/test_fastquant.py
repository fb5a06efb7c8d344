"""The fast QAT path (paperlib.fastquant) against Brevitas' own modules: same bits, same gradients, same state."""
import math

import pytest
import torch
from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling
from conftest import separable_data
from torch import nn
from torch.nn import functional as F

from paperlib import TrainConfig, accuracy, build_model, set_noise, train
from paperlib.fastquant import (
    CollectFakeQuant,
    FastQuantConv2d,
    FastQuantLinear,
    FastQuantReLU,
    _quant_weight,
    fast_qat,
    install,
    kth_smallest,
    qat_mode,
    uninstall,
    use_brevitas,
    use_qat,
)
from paperlib.noise import GaussianNoise
from paperlib.quant import Layers, stats_collection_state

FAST_TYPES = (FastQuantConv2d, FastQuantLinear, FastQuantReLU)


def bits_of(t: torch.Tensor) -> torch.Tensor:
    """A float32 tensor's bit patterns (so -0.0 and +0.0 differ, and NaNs compare); other dtypes as they are."""
    return t.detach().contiguous().view(torch.int32) if t.dtype == torch.float32 else t


def assert_same_bits(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    assert a.shape == b.shape and torch.equal(bits_of(a), bits_of(b)), f"{what} differs: max |diff| " \
        f"{float((a - b).abs().max()) if a.shape == b.shape else 'shape'}"


def shorten_collection(model: nn.Module, steps: int) -> nn.Module:
    """Brevitas collects activation statistics for `steps` calls instead of 300 (to cross into the learned phase)."""
    for m in model.modules():
        if isinstance(m, ParameterFromRuntimeStatsScaling):
            m.collect_stats_steps = steps
    return model


def vgg_like(bits: int, scale: float | None, seed: int = 0) -> nn.Module:
    """A small VGG-11-like net: conv, then per-channel hidden fc layers and a per-tensor last fc, with noise sites."""
    layers = Layers(bits, scale)
    torch.manual_seed(seed)
    return nn.Sequential(
        layers.conv(3, 8, 3, padding=1), GaussianNoise(), layers.relu(), nn.MaxPool2d(4), nn.Flatten(),
        layers.linear(8 * 8 * 8, 32, per_channel=True), GaussianNoise(), layers.relu(),
        layers.linear(32, 24, per_channel=True), layers.relu(),
        layers.linear(24, 10, bias=False), GaussianNoise(),
    )


def run_steps(make, fast: bool, steps: int, batch: int, collect: int, weight_noise: float = 0.0):
    """Train a fresh model `steps` Adam steps on random data; return what a step produces and leaves behind."""
    model = shorten_collection(make(), collect)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    if weight_noise:
        set_noise(model, weight_noise, kind="weight", generator=torch.Generator().manual_seed(7))
    outs, grads = [], []
    with fast_qat(model, enabled=fast) as switched:
        assert bool(switched) == fast
        for _ in range(steps):
            x, y = 2 * torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g)
            out = model(x)
            opt.zero_grad()
            F.cross_entropy(out, y).backward()
            opt.step()
            outs.append(out.detach())
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
        model.eval()
        with torch.no_grad():
            evaluated = model(torch.randn(batch, 3, 32, 32, generator=g))
    return outs, grads, model.state_dict(), stats_collection_state(model), evaluated


def assert_same_training(ref, fast) -> None:
    for step, (a, b) in enumerate(zip(ref[0], fast[0])):
        assert_same_bits(a, b, f"output of step {step}")
    for step, (a, b) in enumerate(zip(ref[1], fast[1])):
        assert a.keys() == b.keys(), f"step {step}: parameters with a gradient differ"
        for name in a:
            assert_same_bits(a[name], b[name], f"gradient of {name} in step {step}")
    assert ref[2].keys() == fast[2].keys()
    for name in ref[2]:
        assert_same_bits(ref[2][name], fast[2][name], f"state {name}")
    assert ref[3].keys() == fast[3].keys()
    for name, entry in ref[3].items():
        assert entry["counter"] == fast[3][name]["counter"], name
        assert_same_bits(entry["value"], fast[3][name]["value"], f"collected statistic of {name}")
        assert_same_bits(entry["buffer"], fast[3][name]["buffer"], f"statistics buffer of {name}")
    assert_same_bits(ref[4], fast[4], "eval-mode output")


@pytest.mark.parametrize("bits", [4, 8, 16])
@pytest.mark.parametrize("scale", [None, 0.5], ids=["dynamic", "const"])
def test_lenet5_training_steps_are_bit_for_bit_brevitas(bits, scale):
    # 3 collection steps, the step that initialises the learned scale, then 2 learned-scale steps
    def make():
        return build_model("lenet5", bits, scale, seed=0)
    ref, fast = (run_steps(make, f, steps=6, batch=4, collect=3) for f in (False, True))
    assert_same_training(ref, fast)
    if scale is None:
        assert all(e["counter"] == 4 for e in fast[3].values())  # past the collection phase


@pytest.mark.parametrize("bits,scale", [(8, None), pytest.param(4, 1.0, marks=pytest.mark.slow)],
                         ids=["8bit-dynamic", "4bit-const"])
def test_resnet18_training_steps_are_bit_for_bit_brevitas(bits, scale):
    # one collection call: the blocks' ReLU runs twice per step, so its second call starts the learned phase
    def make():
        return build_model("resnet18", bits, scale, seed=0)
    ref, fast = (run_steps(make, f, steps=2, batch=2, collect=1) for f in (False, True))
    assert_same_training(ref, fast)


@pytest.mark.parametrize("bits,scale", [(4, None), (8, 0.25), (16, None)])
def test_per_channel_linear_layers_train_bit_for_bit_as_brevitas(bits, scale):
    def make():
        return vgg_like(bits, scale)
    ref, fast = (run_steps(make, f, steps=5, batch=4, collect=2) for f in (False, True))
    assert_same_training(ref, fast)


def percentile_inputs() -> dict[str, torch.Tensor]:
    """|activations| at Brevitas' 99.999th percentile's edges: unique values, ties at the selected value and above
    it, NaN in a block and after the last block, all equal, one block's worth, and tiny tensors."""
    g = torch.Generator().manual_seed(3)
    relu = torch.relu(torch.randn(128 * 6 * 28 * 28, generator=g))  # LeNet-5's first activations, half zeros
    cases = {"unique": relu.clone(), "small": relu[:2_000].clone(), "one": relu[:1].clone(),
             "two": torch.tensor([1.5, 1.5]), "seven": relu[:7].clone(), "zeros": torch.zeros(50_000)}
    ties = relu.clone()
    ties[ties > 2.5] = 3.0  # the selected value occurs hundreds of times, in many blocks
    cases["ties"] = ties
    twin = relu.clone()
    twin[123] = twin[int(torch.topk(twin, 7).indices[-1])]  # the 7th largest twice
    cases["twin at the value"] = twin
    above = relu.clone()
    above[5] = above[77_777] = 100.0  # equal elements above the selected one
    cases["ties above"] = above
    for where in (5_000, relu.numel() - 3):
        nan = relu.clone()
        nan[where] = float("nan")
        cases[f"nan at {where}"] = nan
    return cases


@pytest.mark.parametrize("case", list(percentile_inputs()))
def test_the_percentile_statistic_is_kthvalue_value_and_gradient(case, monkeypatch):
    # Brevitas' AbsPercentile runs torch.kthvalue; kth_smallest must give its value and its gradient bit for bit
    flat = percentile_inputs()[case]
    k = int(math.floor(.01 * 99.999 * flat.numel() + 0.5))
    results = []
    for ours in (False, True):
        x = flat.clone().requires_grad_(True)
        a = x.abs()
        v = kth_smallest(a, k) if ours else torch.kthvalue(a, k)[0]
        (v * 3.7).backward()
        results.append((v.detach(), x.grad))
    (ref, ref_grad), (fast, fast_grad) = results
    assert_same_bits(ref, fast, "the percentile")
    assert_same_bits(ref_grad.nan_to_num(), fast_grad.nan_to_num(), "its gradient")
    if case in ("unique", "small", "seven", "ties above"):  # a unique value is found without kthvalue
        monkeypatch.setattr(torch, "kthvalue", lambda *a, **k: pytest.fail("kthvalue ran"))
        kth_smallest(flat.abs(), k)


def test_the_percentile_statistic_at_other_percentiles():
    flat = torch.relu(torch.randn(20_000, generator=torch.Generator().manual_seed(4)))
    for k in (1, 2, 10_000, 18_900, 19_990, 20_000):  # low ranks go to kthvalue; within 1,024 of the top to topk
        assert_same_bits(torch.kthvalue(flat, k)[0], kth_smallest(flat, k), f"k = {k}")


def test_weight_noise_acts_on_the_fast_path_as_on_brevitas():
    def make():
        return build_model("lenet5", 8, None, seed=0)
    ref, fast = (run_steps(make, f, steps=4, batch=4, collect=2, weight_noise=0.05) for f in (False, True))
    assert_same_training(ref, fast)
    clean = run_steps(make, True, steps=4, batch=4, collect=2)
    assert not torch.equal(clean[0][0], fast[0][0])  # the noise did act


def relu_pair(bits: int, scale: float | None, value: float | None = None):
    """A Brevitas QuantReLU and its twin on the fast path; a dynamic scale is put in its learned phase at `value`.

    A dynamic scale with ``value=None`` stays in Brevitas' statistics collection.
    """
    pair = []
    for _ in range(2):
        relu = Layers(bits, scale).relu()
        if scale is None and value is not None:
            sc = relu.act_quant.fused_activation_quant_proxy.tensor_quant.scaling_impl
            sc.buffer.fill_(value)
            sc.init_scale()
        pair.append(relu)
    assert install(pair[1])[0] == [pair[1]]
    return pair


def edge_inputs(step: float, qmax: int) -> torch.Tensor:
    """Activations at the ReLU's and the clamp's edges: -0.0, 0, tiny, ties at half steps, qmax +- 0.5, beyond."""
    k = torch.arange(0, qmax + 3, max(1, qmax // 40), dtype=torch.float32)
    values = [-3.0, -1e-30, -0.0, 0.0, 1e-45, 1e-40, 1e-30, step * (qmax - 0.5), step * (qmax + 0.5),
              step * qmax, step * (qmax + 0.25), step * (qmax + 0.75), step * (qmax + 1.5), 1e30]
    return torch.cat([torch.tensor(values), k * step, (k + 0.5) * step, (k + 0.499) * step, (k + 0.501) * step])


@pytest.mark.parametrize("bits", [4, 8, 16])
@pytest.mark.parametrize("scale,value", [(0.5, None), (1024.0, None), (None, 0.125 * 255), (None, 3.7), (None, None)])
def test_relu_quantizer_edges_give_brevitas_bits_and_gradients(bits, scale, value):
    qmax = 2**bits - 1
    if value is not None:
        value = value * qmax / 255  # the step value / qmax stays 0.125 (exact ties) or 3.7 / 255
    brevitas, fast = relu_pair(bits, scale, value)
    step = float(brevitas.act_quant.scale().detach())
    for mode in ("train", "eval"):
        brevitas.train(mode == "train"), fast.train(mode == "train")
        x = edge_inputs(step, qmax)
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        g = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
        outs = [relu(xi) for relu, xi in zip((brevitas, fast), xs)]
        assert_same_bits(outs[0], outs[1], f"{mode} output")
        for o in outs:
            o.backward(g)
        assert_same_bits(xs[0].grad, xs[1].grad, f"{mode} gradient of the input")
        params = [list(r.parameters()) for r in (brevitas, fast)]
        for p, q in zip(*params):
            assert (p.grad is None) == (q.grad is None)  # None: eval mode while collecting statistics
            if p.grad is not None:
                assert_same_bits(p.grad, q.grad, f"{mode} gradient of the learned scale")
            p.grad = q.grad = None
    uninstall([fast])
    assert type(fast) is type(brevitas)


@pytest.mark.parametrize("bits", [4, 8])
def test_statistics_collection_runs_as_one_node_with_brevitas_bits(bits, monkeypatch):
    # the usual case of the statistics phase (the percentile's element positive and unique) runs CollectFakeQuant:
    # same output, input gradient (-0.0 where autograd's +0.0 from the statistic's path makes it +0.0: upstream
    # gradients of -0.0), learned-scale gradient and statistics buffer as Brevitas' chain
    calls, real = [], CollectFakeQuant.apply

    def spy(*args):
        calls.append(float(args[0].detach().view(-1)[args[3]]))  # the statistic's element
        return real(*args)

    monkeypatch.setattr(CollectFakeQuant, "apply", spy)
    brevitas, fast = relu_pair(bits, None)
    g = torch.Generator().manual_seed(5)
    for step in range(3):
        x = 2 * torch.randn(4, 6, 28, 28, generator=g)
        x.view(-1)[:40] = -0.0
        x.view(-1)[40:80] = 0.0
        up = torch.randn(x.shape, generator=g)
        up.view(-1)[::5] = -0.0
        xs = [x.clone().requires_grad_(True) for _ in range(2)]
        outs = [relu(xi) for relu, xi in zip((brevitas, fast), xs)]
        assert_same_bits(outs[0], outs[1], f"output of step {step}")
        for o in outs:
            o.backward(up)
        assert_same_bits(xs[0].grad, xs[1].grad, f"input gradient of step {step}")
        for p, q in zip(brevitas.parameters(), fast.parameters()):
            assert_same_bits(p.grad, q.grad, f"learned-scale gradient of step {step}")
            p.grad = q.grad = None
        a, b = stats_collection_state(brevitas), stats_collection_state(fast)
        for name in a:
            assert a[name]["counter"] == b[name]["counter"] == step + 1
            assert_same_bits(a[name]["buffer"], b[name]["buffer"], f"statistics buffer after step {step}")
    assert len(calls) == 3 and all(v > 0 for v in calls)  # the statistic: a positive element


def test_weight_scales_with_ties_at_the_maximum_share_the_gradient_as_brevitas():
    for make in (lambda: Layers(8, 1.0).linear(6, 4), lambda: Layers(8, 1.0).linear(6, 4, per_channel=True),
                 lambda: Layers(4, 1.0).conv(2, 3, 3)):
        pair = [make(), make()]
        with torch.no_grad():
            w = torch.randn(pair[0].weight.shape, generator=torch.Generator().manual_seed(0))
            w.view(w.shape[0], -1)[:, 0] = 2.5  # ties at the maximum, within and across output channels
            w.view(w.shape[0], -1)[:, 1] = -2.5
            w.view(-1)[2] = -0.0
            for layer in pair:
                layer.weight.copy_(w)
                layer.bias.zero_()
        install(pair[1])
        fast_weight = _quant_weight(pair[1], pair[1].__dict__["_paperlib_fastquant"])
        assert_same_bits(pair[0].quant_weight().value, fast_weight, "quantized weight")
        x = torch.randn((5, 6) if isinstance(pair[0], nn.Linear) else (5, 2, 6, 6),
                        generator=torch.Generator().manual_seed(1))
        outs = [layer(x) for layer in pair]
        assert_same_bits(outs[0], outs[1], "output")
        for o in outs:
            (o * torch.arange(o.numel()).view(o.shape)).sum().backward()
        assert_same_bits(pair[0].weight.grad, pair[1].weight.grad, "weight gradient")
        assert_same_bits(pair[0].bias.grad, pair[1].bias.grad, "bias gradient")


class _Stop(Exception):
    pass


def test_train_uses_the_fast_path_by_default_and_brevitas_when_asked(monkeypatch):
    import paperlib.training as training
    seen = []

    def spy(model, *args, **kwargs):  # train() evaluates after its first epoch, on the layers it trains
        seen.append(sorted({type(m).__name__ for m in model.modules() if isinstance(m, FAST_TYPES)}))
        raise _Stop

    monkeypatch.setattr(training, "accuracy", spy)
    data, cfg = separable_data(n_train=8, n_test=8), TrainConfig(epochs=1, batch_size=4, augment=False)
    model = build_model("lenet5", 8, None, seed=0)
    assert qat_mode() == "fast"
    with pytest.raises(_Stop):
        train(model, data, cfg, device="cpu", progress=False)
    with use_brevitas(), pytest.raises(_Stop):
        assert qat_mode() == "brevitas"
        train(model, data, cfg, device="cpu", progress=False)
    assert qat_mode() == "fast"
    assert seen == [["FastQuantConv2d", "FastQuantLinear", "FastQuantReLU"], []]
    assert not any(isinstance(m, FAST_TYPES) for m in model.modules())  # restored on the way out
    with pytest.raises(ValueError, match="unknown QAT path 'fastest'; choose one of fast, brevitas"):
        with use_qat("fastest"):
            pass


def test_evaluation_inside_training_keeps_the_fast_layers():
    model = build_model("lenet5", 8, 1.0, seed=0)
    data = separable_data(n_train=16, n_test=16)
    with fast_qat(model) as switched:
        before = accuracy(model, data.x_test, data.y_test)  # frozen_quantizers patches and restores forwards
        assert all(type(m) in FAST_TYPES and "forward" not in vars(m) for m in switched)
        model.eval()
        with torch.no_grad():
            fast_eval = model(data.x_test)
    with torch.no_grad():
        assert_same_bits(model(data.x_test), fast_eval, "eval output after leaving the fast path")
    assert accuracy(model, data.x_test, data.y_test) == before


def test_unsupported_layers_keep_brevitas_and_say_why():
    import brevitas.nn as qnn
    model = nn.Sequential(qnn.QuantReLU(bit_width=8, return_quant_tensor=True), Layers(8, None).relu())
    switched, skipped = install(model)
    assert switched == [model[1]] and list(skipped) == ["0"] and "quant tensor" in skipped["0"]
    uninstall(switched)


def test_a_second_backward_through_one_forward_is_refused():
    relu = Layers(8, None).relu()
    install(relu)
    x = torch.randn(64, requires_grad=True)
    out = relu(x).sum()
    out.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="does not support retain_graph"):
        out.backward()


@pytest.mark.parametrize("arch,bits,scale,steps,batch", [
    ("lenet5", 8, None, 300, 4),
    pytest.param("resnet18", 4, None, 60, 2, marks=pytest.mark.slow),
])
def test_training_runs_end_with_the_same_accuracy_and_weights_on_both_paths(arch, bits, scale, steps, batch):
    data = separable_data(n_train=steps * batch // 3, n_test=60)
    cfg = TrainConfig(epochs=3, batch_size=batch, lr=1e-3, augment=True, sigma_train=0.1)
    results = []
    for fast in (True, False):
        model = shorten_collection(build_model(arch, bits, scale, seed=0), steps // 6)
        with use_qat("fast" if fast else "brevitas"):
            res = train(model, data, cfg, device="cpu", progress=False)
        results.append((res, model.state_dict(), stats_collection_state(model)))
    (fast_res, fast_state, fast_stats), (ref_res, ref_state, ref_stats) = results
    assert [h["test_acc"] for h in fast_res.history] == [h["test_acc"] for h in ref_res.history]
    assert [h["loss"] for h in fast_res.history] == [h["loss"] for h in ref_res.history]
    for name in ref_state:
        assert_same_bits(ref_state[name], fast_state[name], f"trained {name}")
    assert {k: v["counter"] for k, v in fast_stats.items()} == {k: v["counter"] for k, v in ref_stats.items()}

"""Packs (paperlib.pack): N networks of one architecture trained as one, each as it would train alone.

A pack's grouped convolutions and batched matmuls may sum in another order than one network's kernels, so the
comparisons are to float tolerance; each network's own streams (data order, augmentation, noise, dropout) are
checked through the losses, which a wrong stream moves by far more than the tolerance.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from paperlib import TrainConfig, build_model, train
from paperlib.data import CIFAR10Data
from paperlib.pack import pack_accuracy, pack_input, pack_models, train_pack, unpack_into, unpack_output


def _data(n_train: int = 96, n_test: int = 50, seed: int = 0) -> CIFAR10Data:
    g = torch.Generator().manual_seed(seed)
    return CIFAR10Data(torch.randn(n_train, 3, 32, 32, generator=g), torch.randint(0, 10, (n_train,), generator=g),
                       torch.randn(n_test, 3, 32, 32, generator=g), torch.randint(0, 10, (n_test,), generator=g),
                       "synthetic")


def _batches(n: int, size: int = 8) -> list[torch.Tensor]:
    return [torch.randn(size, 3, 32, 32, generator=torch.Generator().manual_seed(10 + i)) for i in range(n)]


@pytest.mark.parametrize("arch", ["lenet5", "vgg11", "resnet18"])
@pytest.mark.parametrize("training", [False, True])
def test_a_pack_computes_each_networks_forward_pass(arch, training):
    models = [build_model(arch, seed=s).train(training) for s in (0, 1, 2)]
    pack = pack_models(models)
    assert pack.networks == 3 and pack.training == training
    x = _batches(3)
    with torch.no_grad():
        if arch == "vgg11" and training:  # dropout needs each network's stream: compare without it
            for m in [*models, pack]:
                for d in m.modules():
                    if isinstance(d, torch.nn.Dropout):
                        d.p = 0.0
        alone = torch.stack([m(xi) for m, xi in zip(models, x)])
        packed = unpack_output(pack(pack_input(x)), 3)
    assert packed.shape == alone.shape == (3, 8, 10)
    assert (packed - alone).abs().max() <= 1e-5 * alone.abs().max()
    assert (alone[0] - alone[1]).abs().max() > 1e-2  # the networks differ: the comparison can tell them apart


@pytest.mark.parametrize("arch", ["lenet5", "resnet18"])
def test_each_network_of_a_pack_gets_the_gradient_of_its_own_loss(arch):
    models = [build_model(arch, seed=s) for s in (0, 1)]
    pack = pack_models(models)
    x = _batches(2)
    y = [torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(20 + i)) for i in range(2)]
    for m, xi, yi in zip(models, x, y):
        F.cross_entropy(m(xi), yi).backward()
    out = unpack_output(pack(pack_input(x)), 2)
    sum(F.cross_entropy(o, t) for o, t in zip(out, y)).backward()
    for alone in models:  # the pack's gradients, unpacked into the models' .weight slots, against their own
        for p in alone.parameters():
            p.data = p.grad.clone()
    grads = [build_model(arch, seed=s) for s in (0, 1)]
    for p in pack.parameters():
        p.data = p.grad.clone()
    unpack_into(pack, grads)
    compared = 0
    for alone, packed in zip(models, grads):
        for (name, a), b in zip(alone.named_parameters(), packed.parameters()):
            if name.endswith("bias") and arch == "resnet18" and "fc" not in name:
                continue  # a bias before a batch norm has no gradient but rounding
            assert (a - b).abs().max() <= 1e-4 * a.abs().max(), name
            compared += 1
    assert compared >= 10


def _configs(sigmas, seeds, **kw) -> list[TrainConfig]:
    return [TrainConfig(epochs=2, lr=1e-3, batch_size=32, seed=s, sigma_train=sig, **kw)
            for s, sig in zip(seeds, sigmas)]


@pytest.mark.parametrize("kw", [{}, {"sigma_sampling": "sample", "sigma_theta": 0.2}, {"noise_kind": "combined"}])
def test_networks_trained_in_a_pack_train_as_alone(kw):
    data = _data()
    configs = _configs((0.0, 0.5, 0.2), (0, 1, 2), **kw)
    alone = []
    for c in configs:
        m = build_model("lenet5", seed=c.seed)
        alone.append((m, train(m, data, c, device="cpu", progress=False)))
    models = [build_model("lenet5", seed=c.seed) for c in configs]
    results = train_pack(models, data, configs, device="cpu", progress=False)
    for (m, r), mp, rp in zip(alone, models, results):
        assert not rp.diverged and len(rp.history) == 2 and not mp.training
        for a, b in zip(r.history, rp.history):
            assert a.keys() == b.keys()
            assert math.isclose(a["loss"], b["loss"], rel_tol=1e-5), (a, b)
            assert {k: v for k, v in a.items() if k != "loss"} == pytest.approx(
                {k: v for k, v in b.items() if k != "loss"}, rel=1e-9)
        for (name, wa), wb in zip(m.state_dict().items(), mp.state_dict().values()):
            # Adam moves a weight whose gradient is about 0 by about lr either way: a rounding difference can flip it
            assert (wa - wb).abs().max() <= 2 * configs[0].lr * 2 * 3, name
    losses = [r.history[0]["loss"] for _, r in alone]
    assert abs(losses[0] - losses[1]) > 1e-3  # networks with other seeds and sigmas learn otherwise


def test_dropout_in_a_pack_draws_each_networks_own_masks():
    data = _data(n_train=16, n_test=8)
    configs = [TrainConfig(epochs=1, lr=1e-3, batch_size=8, seed=s) for s in (0, 1)]
    alone = []
    for c in configs:
        m = build_model("vgg11", seed=c.seed)
        alone.append(train(m, data, c, device="cpu", progress=False).history[0]["loss"])
    models = [build_model("vgg11", seed=c.seed) for c in configs]
    packed = [r.history[0]["loss"] for r in train_pack(models, data, configs, device="cpu", progress=False)]
    assert packed == pytest.approx(alone, rel=1e-5)


def test_pack_accuracy_is_each_networks_accuracy():
    data = _data(n_test=300)
    models = [build_model("lenet5", seed=s) for s in (0, 1, 2)]
    for m in models:
        m.eval()
    from paperlib import accuracy

    expected = [accuracy(m, data.x_test, data.y_test) for m in models]
    assert pack_accuracy(pack_models(models), data.x_test, data.y_test, batch_size=128) == expected
    assert len(set(expected)) > 1


def test_a_network_that_diverges_in_a_pack_stops_and_the_others_go_on():
    data = _data()
    configs = _configs((0.1, 3e38), (0, 1))  # noise at the float32 limit: inf - inf in the first layers
    models = [build_model("lenet5", seed=c.seed) for c in configs]
    ok, bad = train_pack(models, data, configs, device="cpu", progress=False)
    assert bad.diverged and "loss became" in bad.error and bad.history == []
    assert not ok.diverged and len(ok.history) == 2 and all(math.isfinite(h["loss"]) for h in ok.history)
    assert all(torch.isfinite(p).all() for p in models[0].parameters())


def test_a_pack_refuses_what_it_cannot_stack():
    with pytest.raises(ValueError, match="LayerNorm has weights of its own that a pack cannot stack"):
        pack_models([torch.nn.Sequential(torch.nn.LayerNorm(4)) for _ in range(2)])
    with pytest.raises(ValueError, match="a pack takes networks of one architecture"):
        pack_models([build_model("lenet5", seed=0), build_model("resnet18", seed=0)])
    with pytest.raises(ValueError, match="a pack needs at least one network"):
        pack_models([])
    data = _data(n_train=8, n_test=8)
    two = [build_model("lenet5", seed=s) for s in (0, 1)]
    with pytest.raises(ValueError, match="they differ in lr"):
        train_pack(two, data, [TrainConfig(lr=1e-3), TrainConfig(lr=1e-2, seed=1)], device="cpu", progress=False)
    with pytest.raises(ValueError, match="weight noise"):
        train_pack(two, data, [TrainConfig(noise_kind="weight", seed=s) for s in (0, 1)], device="cpu",
                   progress=False)
    with pytest.raises(ValueError, match="one config per network"):
        train_pack(two, data, [TrainConfig()], device="cpu", progress=False)


@pytest.mark.parametrize("layer", [None, 3])
def test_a_packs_noise_sweep_is_each_networks_own_sweep(layer):
    from paperlib import evaluate_pairs
    from paperlib.pack import pack_evaluate_pairs

    data = _data(n_test=200)
    models = [build_model("lenet5", seed=s).eval() for s in (0, 1, 2)]
    pairs = [(0.0, 0), (0.3, 0), (0.3, 1), (1.0, 0), (3.0, 0)]
    seeds = (5, 6, 7)
    alone = [evaluate_pairs(m, data.x_test, data.y_test, pairs, layer=layer, seed=s, max_batch=256, progress=False)
             for m, s in zip(models, seeds)]
    packed = pack_evaluate_pairs(pack_models(models), data.x_test, data.y_test, pairs, seeds, layer=layer,
                                 max_batch=256)
    for a, b in zip(alone, packed):
        assert a[["sigma", "repeat"]].equals(b[["sigma", "repeat"]])
        assert (a.accuracy - b.accuracy).abs().max() <= 2 / 200  # at most two images flip by the pack's rounding
    assert alone[0].accuracy.nunique() > 2
    other = pack_evaluate_pairs(pack_models(models), data.x_test, data.y_test, pairs, (5, 6, 8), layer=layer,
                                max_batch=256)
    assert other[0].equals(packed[0]) and not other[2].accuracy.equals(packed[2].accuracy)  # seeds are per network


def _qat(arch: str, bits: int, scale: float | None, seed: int, collect_steps: int | None = None):
    from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling

    m = build_model(arch, bits, scale, seed=seed)
    if collect_steps is not None:  # a dynamic scale learns after its statistics: both phases in a short test
        for q in m.modules():
            if isinstance(q, ParameterFromRuntimeStatsScaling):
                q.collect_stats_steps = collect_steps
    return m


@pytest.mark.parametrize("bits,scale", [(8, 1.0), (8, None), (4, None)])
def test_quantized_networks_trained_in_a_pack_train_as_alone(bits, scale):
    from paperlib.quant import stats_collection_state

    data = _data()
    configs = _configs((0.0, 0.3), (0, 1))
    alone = []
    for c in configs:
        m = _qat("lenet5", bits, scale, c.seed, collect_steps=3)
        alone.append((m, train(m, data, c, device="cpu", progress=False)))
    models = [_qat("lenet5", bits, scale, c.seed, collect_steps=3) for c in configs]
    results = train_pack(models, data, configs, device="cpu", progress=False)
    for (m, r), mp, rp in zip(alone, models, results):
        # a learned scale differs by Adam steps of size lr (below), so do the quantized activations a little
        assert [h["loss"] for h in rp.history] == pytest.approx([h["loss"] for h in r.history], rel=1e-4)
        assert [h["test_acc"] for h in rp.history] == [h["test_acc"] for h in r.history]
        for (name, wa), wb in zip(m.state_dict().items(), mp.state_dict().values()):
            assert (wa - wb).abs().max() <= 2 * configs[0].lr * 2 * 3, name
        sa, sp = stats_collection_state(m), stats_collection_state(mp)  # each network's own scale statistics
        assert sa.keys() == sp.keys() and len(sa) == (0 if scale else 4)
        for k in sa:
            assert sa[k]["counter"] == sp[k]["counter"] == 4  # 3 steps of statistics, then learned
            assert torch.allclose(sa[k]["buffer"], sp[k]["buffer"], rtol=1e-3)  # statistics of each network's own
            # the learned value: Adam normalizes its gradient, a sum with much cancellation (as for the weights)
            assert (sa[k]["value"] - sp[k]["value"]).abs() <= 2 * configs[0].lr * 3
    assert results[0].history[0]["loss"] != pytest.approx(results[1].history[0]["loss"], rel=1e-3)


@pytest.mark.parametrize("arch", ["vgg11", "resnet18"])
def test_a_quantized_pack_computes_each_networks_forward_pass(arch):
    models = [_qat(arch, 8, None, s) for s in (0, 1)]
    x = _batches(2)
    with torch.no_grad():
        for m, xi in zip(models, x):  # statistics of one batch each, then eval
            m(xi)
            m.eval()
        pack = pack_models(models)
        alone = torch.stack([m(xi) for m, xi in zip(models, x)])
        packed = unpack_output(pack(pack_input(x)), 2)
    assert (packed - alone).abs().max() <= 1e-5 * alone.abs().max()


def test_a_pack_of_quantized_networks_refuses_mixed_scales():
    with pytest.raises(ValueError, match="their ReLU quantizers differ"):
        pack_models([build_model("lenet5", 8, 1.0, seed=0), build_model("lenet5", 8, 2.0, seed=1)])
    with pytest.raises(ValueError, match="weight quantizers differ"):
        pack_models([build_model("lenet5", 8, None, seed=0), build_model("lenet5", 4, None, seed=1)])


class _Interrupted(Exception):
    pass


def _stop_after(epoch: int):
    def on_epoch(e, entries):
        if e == epoch:
            raise _Interrupted
    return on_epoch


@pytest.mark.parametrize("arch,bits,scale,sigmas", [
    ("lenet5", 8, None, (0.0, 0.3, 3e38)),  # a dynamic scale's statistics then its learned value; one diverges
    ("vgg11", None, None, (0.0, 0.2)),  # each network's dropout stream
])
def test_an_interrupted_pack_resumes_to_the_uninterrupted_numbers(tmp_path, arch, bits, scale, sigmas):
    from paperlib.quant import stats_collection_state

    n_train, batch = (96, 32) if arch == "lenet5" else (16, 8)
    data = _data(n_train=n_train, n_test=8 if arch == "vgg11" else 50)
    configs = [TrainConfig(epochs=3, lr=1e-3, batch_size=batch, seed=s, sigma_train=sig, sigma_sampling="sample",
                           sigma_theta=0.2) for s, sig in zip(range(len(sigmas)), sigmas)]

    def models():
        return [_qat(arch, bits, scale, c.seed, collect_steps=4) for c in configs]

    whole = models()
    expected = train_pack(whole, data, configs, device="cpu", progress=False)
    ckpt = tmp_path / "pack.pt"
    with pytest.raises(_Interrupted):
        train_pack(models(), data, configs, device="cpu", progress=False, checkpoint=ckpt, on_epoch=_stop_after(1))
    assert ckpt.is_file()
    resumed_models = models()  # a new process: networks built from their seeds again
    resumed = train_pack(resumed_models, data, configs, device="cpu", progress=False, checkpoint=ckpt)
    for a, b, ma, mb in zip(expected, resumed, whole, resumed_models):
        assert (a.history, a.diverged, a.error) == (b.history, b.diverged, b.error)
        if not a.diverged:
            for (name, wa), wb in zip(ma.state_dict().items(), mb.state_dict().values()):
                assert torch.equal(wa, wb), name
            sa, sb = stats_collection_state(ma), stats_collection_state(mb)
            assert [v["counter"] for v in sa.values()] == [v["counter"] for v in sb.values()]
    assert expected[-1].diverged == (sigmas[-1] > 1e30)
    assert len(expected[0].history) == 3
    with pytest.raises(ValueError, match="was written for another pack"):
        train_pack(models()[:1], data, configs[:1], device="cpu", progress=False, checkpoint=ckpt)

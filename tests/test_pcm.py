"""PCM device noise on the weights (paperlib.pcm, docs/protocol.md §13): semantics, reproducibility,
restoring the model, and the distributions against IBM aihwkit's own PCMLikeNoiseModel (the analog extra)."""
import dataclasses
import math
import sys

import pandas as pd
import pytest
import torch
from brevitas.nn import QuantConv2d, QuantLinear
from brevitas.quant import Int8ActPerTensorFloat
from torch import nn

from paperlib import build_model
from paperlib.inference import frozen_quantizers
from paperlib.noise import weight_layers
from paperlib.pcm import DEFAULT_PCM, PCMModel, aihwkit_reference, pcm_sweep, program_weight, programmed
from paperlib.threads import numeric_threads

TIMES = (1.0, 3600.0, 86400.0, 365 * 86400.0)  # 1 s, 1 h, 1 day, 1 year after programming
ANALOG = "the analog extra is not installed: pip install -e '.[analog]'"


@pytest.fixture(autouse=True)
def _one_thread():
    """Two OpenMP threads on a busy 2-core machine made the draw loops 30x slower (paperlib.threads)."""
    with numeric_threads():
        yield


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(params=[None, 8], ids=["fp32", "int8"])
def lenet(request):
    bits = request.param
    return build_model("lenet5", bits, None if bits is None else 1.0, seed=0).eval()


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


# --- the model's semantics, without aihwkit -------------------------------------------------------------------------

def test_defaults_are_aihwkits_published_constants():
    p = PCMModel()
    assert (p.g_max, p.g_min, p.t_0, p.t_read) == (25.0, 0.0, 20.0, 250e-9)
    assert p.prog_coeff == (0.26348, 1.9650, -1.1731) and p.prog_coeff_g_max_reference == 25.0
    assert (p.prog_noise_scale, p.read_noise_scale, p.drift_scale) == (1.0, 1.0, 1.0)
    assert (p.drift_mean, p.drift_mean_range) == ((-0.0155, 0.0244), (0.049, 0.1))
    assert (p.drift_std, p.drift_std_range) == ((-0.0125, -0.0059), (0.008, 0.045))
    assert (p.read_q, p.read_q_exponent, p.read_q_floor, p.read_q_max) == (0.0088, 0.65, 1e-3, 0.2)
    assert PCMModel(prog_coeff=[1, 2]).prog_coeff == (1.0, 2.0)  # lists become tuples (hashable, frozen)


@pytest.mark.parametrize("field, value, match", [
    ("g_max", 0.0, "g_max must be a finite number > 0"),
    ("g_max", "25", "g_max must be a finite number > 0, got '25'"),
    ("g_min", 30.0, "g_min must be below g_max"),
    ("t_0", -1.0, "t_0 must be a finite number > 0"),
    ("t_read", float("nan"), "t_read must be a finite number > 0"),
    ("prog_noise_scale", -0.5, "prog_noise_scale must be a finite number >= 0"),
    ("drift_scale", float("inf"), "drift_scale must be a finite number >= 0"),
    ("prog_coeff", (), "prog_coeff must be a non-empty sequence"),
    ("drift_mean", (1.0, 2.0, 3.0), "drift_mean must be a pair"),
    ("drift_mean_range", (0.1, 0.05), r"drift_mean_range must be \(low, high\) with 0 <= low <= high"),
])
def test_bad_model_values_say_what_is_wrong_and_what_is_right(field, value, match):
    with pytest.raises(ValueError, match=match):
        PCMModel(**{field: value})


def test_mapping_round_trip_is_exact_and_puts_each_sign_on_its_own_device():
    w = torch.randn(64, 3, 5, 5, generator=gen())
    g_plus, g_minus, scale = DEFAULT_PCM.to_conductances(w.double())
    assert torch.equal(DEFAULT_PCM.to_weights(g_plus, g_minus, scale).float(), w)
    assert float(torch.maximum(g_plus, g_minus).max()) == pytest.approx(25.0, rel=1e-12)  # max|W| -> g_max
    assert torch.equal(g_plus * g_minus, torch.zeros_like(w, dtype=torch.float64))  # one device of a pair at 0
    assert torch.equal(g_plus > 0, w > 0) and torch.equal(g_minus > 0, w < 0)


@pytest.mark.parametrize("t", [0.0, *TIMES])
def test_noise_scale_zero_is_an_ideal_device(t):
    w = torch.randn(32, 16, generator=gen())
    for compensation in (True, False):
        out, alpha = program_weight(w, t, generator=gen(), compensation=compensation, pcm=DEFAULT_PCM.scaled(0.0))
        assert torch.equal(out, w) and alpha == 1.0


def test_at_t_inference_zero_there_is_no_drift_but_read_noise():
    g = torch.linspace(0.0, 25.0, 11, dtype=torch.float64)
    nu = DEFAULT_PCM.drift_coefficients(g, gen())
    quiet = dataclasses.replace(DEFAULT_PCM, read_noise_scale=0.0)
    assert torch.equal(quiet.conductance_at(g, nu, 0.0, gen()), g)  # t = t_0: (t / t_0)^-nu = 1
    t = 3600.0
    assert torch.allclose(quiet.conductance_at(g, nu, t, gen()), g * ((t + 20.0) / 20.0) ** -nu, rtol=1e-12)
    assert not torch.equal(DEFAULT_PCM.conductance_at(g, nu, 0.0, gen()), g)  # 1/f noise accumulated since t = 0


def test_drift_lowers_the_weights_and_compensation_restores_their_scale():
    w = torch.randn(64, 64, generator=gen())
    drifted, _ = program_weight(w, 86400.0, generator=gen(), compensation=False)
    compensated, alpha = program_weight(w, 86400.0, generator=gen(), compensation=True)
    assert drifted.abs().mean() < 0.8 * w.abs().mean() and alpha > 1.2
    assert torch.allclose(compensated, alpha * drifted)
    assert float(compensated.abs().mean()) == pytest.approx(float(w.abs().mean()), rel=0.05)


def test_same_seed_same_weights_other_seed_other_devices():
    w = torch.randn(20, 30, generator=gen())
    a, alpha_a = program_weight(w, 3600.0, generator=gen(1))
    b, alpha_b = program_weight(w, 3600.0, generator=gen(1))
    c, _ = program_weight(w, 3600.0, generator=gen(2))
    assert torch.equal(a, b) and alpha_a == alpha_b
    assert not torch.equal(a, c)
    assert abs(float(torch.corrcoef(torch.stack([(a - w).flatten(), (c - w).flatten()]))[0, 1])) < 0.2


def test_programmed_uses_one_fixed_draw_and_restores_the_model(lenet):
    x = torch.randn(8, 3, 32, 32, generator=gen())
    clean, state = lenet(x), _state(lenet)
    with programmed(lenet, 3600.0, generator=gen()) as alphas:
        a, b = lenet(x), lenet(x)
        assert len(alphas) == 5 and all(1.0 < v < 2.0 for v in alphas.values())
    assert torch.equal(a, b) and not torch.allclose(a, clean, atol=1e-4)
    assert torch.equal(lenet(x), clean) and all(torch.equal(v, state[k]) for k, v in lenet.state_dict().items())
    assert all("forward" not in m.__dict__ for m in lenet.modules())
    with programmed(lenet, 3600.0, generator=gen()):
        assert torch.equal(lenet(x), a)  # same seed, same devices


def test_the_model_is_restored_after_an_exception(lenet):
    x = torch.randn(4, 3, 32, 32, generator=gen())
    clean = lenet(x)
    with pytest.raises(KeyError, match="inside"), programmed(lenet, 60.0, generator=gen()):
        raise KeyError("inside")
    assert torch.equal(lenet(x), clean) and all("forward" not in m.__dict__ for m in lenet.modules())


def test_inside_frozen_quantizers_their_forwards_come_back(lenet):
    x = torch.randn(4, 3, 32, 32, generator=gen())
    with frozen_quantizers(lenet):
        before = {m: m.__dict__.get("forward") for m in lenet.modules()}
        with programmed(lenet, 60.0, generator=gen()):
            pass
        assert {m: m.__dict__.get("forward") for m in lenet.modules()} == before
        frozen = lenet(x)
    assert torch.equal(frozen, lenet(x))


def test_noise_scale_zero_gives_the_clean_outputs_exactly(lenet):
    x = torch.randn(4, 3, 32, 32, generator=gen())
    clean = lenet(x)
    with programmed(lenet, 86400.0, generator=gen(), noise_scale=0.0) as alphas:
        assert torch.equal(lenet(x), clean) and set(alphas.values()) == {1.0}


def test_brevitas_layers_are_programmed_from_their_quantized_weight():
    model = build_model("lenet5", 4, 1.0, seed=0).eval()
    layers = [m for m in weight_layers(model) if isinstance(m, (QuantConv2d, QuantLinear))]
    assert len(layers) == 5
    with programmed(model, 3600.0, generator=gen(), noise_scale=0.0):
        for m in layers:
            programmed_weight = m.forward.args[1]
            assert torch.equal(programmed_weight, m.quant_weight().value)
            assert not torch.equal(programmed_weight, m.weight)  # 4-bit: the float weight is not what is stored
    levels = {m: m.quant_weight().value.detach() for m in layers}
    with programmed(model, 3600.0, generator=gen()):  # noisy: off the quantization grid, around the stored levels
        for m in layers:
            assert not torch.equal(m.forward.args[1], levels[m])
            assert float((m.forward.args[1] - levels[m]).abs().mean()) < 0.5 * float(levels[m].abs().mean())


def test_bad_inputs_give_clear_errors(lenet):
    with pytest.raises(RuntimeError, match=r"call model.eval\(\) first"):
        with programmed(lenet.train(), 1.0, generator=gen()):
            pass
    lenet.eval()
    with pytest.raises(ValueError, match="t_inference must be a finite number >= 0"):
        with programmed(lenet, -1.0, generator=gen()):
            pass
    with pytest.raises(ValueError, match="noise_scale must be a finite number >= 0"):
        with programmed(lenet, 1.0, generator=gen(), noise_scale=-1.0):
            pass
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        with programmed(lenet, 1.0, generator=None):
            pass
    assert all("forward" not in m.__dict__ for m in lenet.modules())
    x, y = torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="unknown backend 'ibm'"):
        pcm_sweep(lenet, x, y, [1.0], backend="ibm")
    with pytest.raises(ValueError, match="equally long"):
        pcm_sweep(lenet, x, y[:3], [1.0])
    layer = QuantLinear(4, 2, bias=True, input_quant=Int8ActPerTensorFloat).eval()
    with pytest.raises(ValueError, match="only weight-quantized Brevitas layers"):
        with programmed(nn.Sequential(layer).eval(), 1.0, generator=gen()):
            pass


def test_a_missing_aihwkit_names_the_extra(lenet, monkeypatch):
    for name in [n for n in sys.modules if n == "aihwkit" or n.startswith("aihwkit.")] + ["aihwkit"]:
        monkeypatch.setitem(sys.modules, name, None)  # "import aihwkit..." now raises ImportError
    with pytest.raises(ImportError, match=r"pip install -e '\.\[analog\]'"):
        aihwkit_reference(lenet, 1.0, seed=0)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[analog\]'"):
        pcm_sweep(lenet, torch.randn(2, 3, 32, 32), torch.zeros(2, dtype=torch.long), [1.0], backend="aihwkit")


def test_pcm_sweep_is_tidy_and_reproducible(lenet):
    x = torch.randn(40, 3, 32, 32, generator=gen())
    y = lenet(x).argmax(1)
    kw = dict(noise_scales=(0.0, 1.0), seeds=(0, 1), batch_size=16)
    rng = torch.get_rng_state()
    table = pcm_sweep(lenet, x, y, [0.0, 86400.0], **kw)
    assert torch.equal(torch.get_rng_state(), rng)  # explicit generators only
    assert list(table.columns) == ["t_inference", "noise_scale", "compensation", "seed", "accuracy",
                                   "clean_accuracy", "backend"]
    assert len(table) == 2 * 2 * 2 * 2 and set(table.clean_accuracy) == {1.0}
    assert set(table[table.noise_scale == 0.0].accuracy) == {1.0}
    pd.testing.assert_frame_equal(table, pcm_sweep(lenet, x, y, [0.0, 86400.0], **kw))
    assert lenet.training is False and all("forward" not in m.__dict__ for m in lenet.modules())


# --- against aihwkit: the same distributions -----------------------------------------------------------------------
#
# Each quantity is drawn N = 20,000 times by us and by aihwkit (PCMLikeNoiseModel, seeded through torch's global
# RNG). Its mean and standard deviation must agree within Z = 5 standard errors of their difference, from the sample
# itself: SE(mean) = sd / sqrt(n); SE(sd) = SE(var) / (2 sd), SE(var) = sd of the squared deviations / sqrt(n) (the
# delta method, valid for non-normal, clipped distributions). Where draws share one matrix (the weight level), the
# standard errors come from the 800 per-matrix averages, which are independent; the compensation factor, one per
# matrix, is drawn 2,000 times. Plus 1e-6 relative: float32 rounding.

N, Z = 20_000, 5.0
GRID = torch.linspace(0.0, 25.0, 11, dtype=torch.float64)  # target conductances, µS


def _moments(x):
    """x [R, c, k]: R independent draws of c correlated samples at k points -> mean, SE, sd, SE, each [k]."""
    x = x.double()
    r = x.shape[0]
    mean = x.mean((0, 1))
    sq = ((x - mean) ** 2).mean(1)
    sd = sq.mean(0).sqrt()
    return mean, x.mean(1).std(0) / math.sqrt(r), sd, sq.std(0) / math.sqrt(r) / (2 * sd.clamp(min=1e-300))


def _disagreements(ours, theirs, what):
    """The points where the means or standard deviations of two samples [R, c, k] differ by more than Z SE."""
    bad = []
    for name, i in (("mean", 0), ("sd", 2)):
        a, b = _moments(ours), _moments(theirs)
        diff, tol = (a[i] - b[i]).abs(), Z * torch.hypot(a[i + 1], b[i + 1]) + 1e-6 * (a[i].abs() + b[i].abs())
        bad += [f"{what} {name}[{k}]: ours {a[i][k]:.5g}, aihwkit {b[i][k]:.5g}, differ by {diff[k]:.3g} > "
                f"{tol[k]:.3g}" for k in torch.nonzero(diff > tol).flatten().tolist()]
    return bad


@pytest.fixture(scope="module")
def aihwkit():
    return pytest.importorskip("aihwkit", reason=ANALOG)


def _aihwkit_model(pcm=DEFAULT_PCM):
    from aihwkit.inference import PCMLikeNoiseModel
    return PCMLikeNoiseModel(g_max=pcm.g_max, t_0=pcm.t_0, t_read=pcm.t_read)


def _grid(n=N):
    return GRID.repeat(n, 1)  # [N, 11]


def test_defaults_equal_aihwkits(aihwkit):
    from aihwkit.inference import PCMLikeNoiseModel

    theirs = PCMLikeNoiseModel()
    p = PCMModel()
    assert (theirs.g_max, theirs.g_converter.g_min, theirs.t_0, theirs.t_read) == (p.g_max, p.g_min, p.t_0, p.t_read)
    assert tuple(theirs.prog_coeff) == p.prog_coeff and theirs.prog_coeff_g_max_reference == 25.0
    assert (theirs.prog_noise_scale, theirs.read_noise_scale, theirs.drift_scale) == (1.0, 1.0, 1.0)


def _programming(pcm):
    torch.manual_seed(1)
    ours = pcm.programming_noise(_grid(), gen(1))
    theirs = _aihwkit_model().apply_programming_noise_to_conductance(_grid().float())
    return ours[:, None], theirs[:, None]


def _drift(pcm):
    torch.manual_seed(2)
    ours = pcm.drift_coefficients(_grid(), gen(2))
    theirs = _aihwkit_model().generate_drift_coefficients(_grid().float())
    return ours[:, None], theirs[:, None]


def test_programming_noise_matches_aihwkit(aihwkit):
    assert _disagreements(*_programming(DEFAULT_PCM), "g_prog") == []


def test_drift_coefficients_match_aihwkit(aihwkit):
    assert _disagreements(*_drift(DEFAULT_PCM), "nu") == []


@pytest.mark.parametrize("t", [0.0, *TIMES])
def test_conductance_after_drift_and_read_noise_matches_aihwkit(aihwkit, t):
    nu = DEFAULT_PCM.drift_coefficients(_grid(), gen(3))  # one set of devices, read by both
    torch.manual_seed(3)
    ours = DEFAULT_PCM.conductance_at(_grid(), nu, t, gen(4))
    theirs = _aihwkit_model().apply_drift_noise_to_conductance(_grid().float(), nu.float(), t)
    assert _disagreements(ours[:, None], theirs[:, None], f"g({t:g} s)") == []


@pytest.mark.parametrize("t", [3600.0, 365 * 86400.0])
def test_weights_programmed_and_drifted_match_aihwkits_tile(aihwkit, t):
    """The whole chain of the tile (program, map again, drift, read), 800 matrices of 25 x 41 weights in [-1, 1]."""
    w = torch.linspace(-1.0, 1.0, 41).repeat(25, 1)
    model, draws, g = _aihwkit_model(), 800, gen(5)
    torch.manual_seed(5)
    ours = torch.stack([program_weight(w, t, generator=g, compensation=False)[0] for _ in range(draws)])
    theirs = []
    for _ in range(draws):
        w_prog, nus = model.apply_programming_noise(w)  # InferenceTileWithPeriphery.program_weights
        theirs.append(model.apply_drift_noise(w_prog, nus, t))  # ... .drift_weights
    assert _disagreements(ours, torch.stack(theirs), f"W({t:g} s)") == []


def test_global_drift_compensation_factor_matches_aihwkits_tile(aihwkit):
    from aihwkit.inference import GlobalDriftCompensation
    from aihwkit.nn import AnalogLinear
    from aihwkit.simulator.configs import TorchInferenceRPUConfig

    linear, t, draws = nn.Linear(32, 16), 86400.0, 2_000  # one factor per matrix: 2,000 draws
    config = TorchInferenceRPUConfig(noise_model=_aihwkit_model(), drift_compensation=GlobalDriftCompensation())
    config.forward.is_perfect = True
    analog = AnalogLinear.from_digital(linear, config).eval()
    tile = next(analog.analog_tiles())
    torch.manual_seed(6)
    theirs = []
    for _ in range(draws):
        analog.program_analog_weights()
        analog.drift_analog_weights(t)
        theirs.append(float(tile.alpha))
    g = gen(6)
    ours = [program_weight(linear.weight, t, generator=g)[1] for _ in range(draws)]
    assert _disagreements(torch.tensor(ours)[:, None, None], torch.tensor(theirs)[:, None, None], "alpha") == []
    assert 1.2 < sum(ours) / draws < 1.6


@pytest.mark.parametrize("field, value, check", [
    ("drift_mean", (-0.0155, 0.0274), _drift),  # nu 0.003 too large where its mean is not clipped
    ("prog_coeff", (0.26348, 1.9650, -1.0731), _programming),  # sigma_prog 0.1 µS too large at g_max
])
def test_the_comparison_can_fail(aihwkit, field, value, check):
    """A deliberately wrong coefficient is caught (the same draws as the tests above)."""
    assert _disagreements(*check(dataclasses.replace(DEFAULT_PCM, **{field: value})), field)


def test_aihwkit_backend_of_the_sweep(aihwkit, lenet):
    x = torch.randn(16, 3, 32, 32, generator=gen())
    assert torch.allclose(aihwkit_reference(lenet, 86400.0, seed=0, noise_scale=0.0)(x), lenet(x), atol=1e-5)
    with pytest.raises(ValueError, match="aihwkit hard-codes"):
        aihwkit_reference(lenet, 1.0, seed=0, pcm=PCMModel(read_q=0.01))
    rng = torch.get_rng_state()
    table = pcm_sweep(lenet, x, lenet(x).argmax(1), [3600.0], seeds=(0,), backend="aihwkit")
    assert torch.equal(torch.get_rng_state(), rng)  # aihwkit's draws come from a seeded, restored global RNG
    assert len(table) == 2 and set(table.backend) == {"aihwkit"} and table.accuracy.between(0, 1).all()
    pd.testing.assert_frame_equal(table, pcm_sweep(lenet, x, lenet(x).argmax(1), [3600.0], seeds=(0,),
                                                   backend="aihwkit"))

"""The named profiles still make the same runs: every spec of every experiment keeps its cache key, on every machine.

``tests/data/profile_keys.json`` holds, per profile and experiment, the sorted keys of the specs that the code
makes (generated with :func:`profile_keys`; last regenerated when keys began to round their floats to 12
significant digits, docs/protocol.md §12, so that they no longer depend on the last bit of a CPU's ``logspace``;
entries under the older keys are renamed by ``paperlib.runs.cache.migrate_keys``). A key is
``<train key>-<evaluation hash>``: the cache key of the trained network (RunSpec.train_key, with a fixed data
set label) and 8 hex over the evaluation (RunSpec.eval_key, the sigma grid, the repeats). A changed key means a
cached result no longer matches its spec: regenerate the file only for a change meant to change the runs.
"""
import hashlib
import json
import math
from dataclasses import replace
from decimal import Decimal, getcontext
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

FIXTURE = Path(__file__).resolve().parent / "data" / "profile_keys.json"
PROFILE_NAMES = ("smoke", "quick", "lenet-full", "paper", "paper-dryrun")
#: The data set label the keys are computed with (run() sets the real one; any fixed label gives stable keys).
DATASET = "profile-keys fixture"


def spec_key(spec) -> str:
    """``<train key>-<8 hex over eval key, sigmas, repeats>`` of ``spec`` with the fixture's data set label."""
    spec = replace(spec, dataset=DATASET)
    grid = json.dumps({"eval": spec.eval_key(), "sigmas": list(spec.sigmas), "repeats": spec.repeats})
    return f"{spec.train_key()}-{hashlib.sha256(grid.encode()).hexdigest()[:8]}"


def describe(spec) -> str:
    """The fields of ``spec`` that tell it apart, for a failure message."""
    d = spec.to_dict()
    fields = ("arch", "bits", "scale", "sigma_train", "seed", "epochs", "train_subset", "test_subset", "repeats",
              "noise_kind", "sigma_sampling", "sigma_ramp_epochs")
    return ", ".join(f"{k}={d[k]}" for k in fields) + f", {len(spec.sigmas)} sigmas"


def experiment_specs(profile, fn) -> dict[str, list]:
    """Per experiment (``"<arch> <experiment>"``), the specs the notebooks run at ``profile``.

    ``fn`` holds the spec builders: qat_variants, noisy_variants, clean_specs, noisy_specs (Fig. 2/3, Tables
    I/II), variance_aware_sigmas/specs (notebook 06), kind_sigmas/specs (notebook 07), ARCHS, NOISE_KINDS.
    """
    out = {}
    for arch in fn.ARCHS:
        noisy = fn.noisy_variants(profile)
        kinds = [(None, None), (profile.bits[-1], None), (profile.bits[-1], profile.noisy_scale)]  # notebook 07
        out[f"{arch} clean"] = fn.clean_specs(profile, arch, fn.qat_variants(profile, arch))
        out[f"{arch} noisy"] = fn.clean_specs(profile, arch, noisy) + fn.noisy_specs(profile, arch, noisy)
        out[f"{arch} variance-aware"] = fn.variance_aware_specs(profile, arch, fn.variance_aware_sigmas(profile))
        out[f"{arch} noise kinds"] = fn.kind_specs(profile, arch, kinds, fn.NOISE_KINDS, fn.kind_sigmas(profile))
    return out


def profile_keys(load_profile, fn) -> dict[str, dict[str, list[str]]]:
    """Profile name -> experiment -> sorted spec keys (the fixture's form)."""
    out = {}
    for name in PROFILE_NAMES:
        specs = experiment_specs(load_profile(name), fn)
        out[name] = {exp: sorted(spec_key(s) for s in made) for exp, made in specs.items()}
    return out


def _builders() -> SimpleNamespace:
    """The builders of the notebooks' specs where the paper layer keeps them (one module per figure)."""
    import paperlib
    from paperlib.paper import noise_kinds, specs, variance_aware

    def kind_specs(profile, arch, variants, kinds, sigmas):
        assert variants == noise_kinds.variants(profile) and tuple(sigmas) == noise_kinds.sigmas(profile)
        return noise_kinds.specs(profile, 0, arch, kinds)

    return SimpleNamespace(
        qat_variants=specs.qat_variants, noisy_variants=specs.noisy_variants, clean_specs=specs.clean_specs,
        noisy_specs=specs.noisy_specs, variance_aware_sigmas=variance_aware.sigmas,
        variance_aware_specs=lambda profile, arch, sigmas: variance_aware.specs(profile, 0, arch, sigmas),
        kind_sigmas=noise_kinds.sigmas, kind_specs=kind_specs, ARCHS=paperlib.ARCHS, NOISE_KINDS=paperlib.NOISE_KINDS)


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_every_profile_makes_the_same_specs_with_the_same_cache_keys(name):
    from paperlib import load_profile

    expected = json.loads(FIXTURE.read_text())[name]
    specs = experiment_specs(load_profile(name), _builders())
    assert sorted(specs) == sorted(expected), f"profile {name}: the experiments changed"
    for exp, made in specs.items():
        keys = [spec_key(s) for s in made]
        new = [s for s, k in zip(made, keys) if k not in expected[exp]]
        lost = sorted(set(expected[exp]) - set(keys))
        assert not new and not lost and sorted(keys) == expected[exp], (
            f"profile {name}, {exp}: {len(made)} specs, {len(expected[exp])} expected; "
            + (f"first spec with a new key: {describe(new[0])} ({spec_key(new[0])}); " if new else "")
            + (f"{len(lost)} expected key(s) no longer made, first {lost[0]}" if lost else "same keys, other counts")
        )


def _numpy(lo: float, hi: float, n: int) -> list[float]:
    return list(np.logspace(np.log10(lo), np.log10(hi), n))


def _python(lo: float, hi: float, n: int) -> list[float]:
    a, b = math.log10(lo), math.log10(hi)
    return [10 ** (a + i * (b - a) / (n - 1)) if n > 1 else lo for i in range(n)]


def _decimal_strings(lo: float, hi: float, n: int) -> list[float]:
    """The grid in 30-digit decimal arithmetic, written out as a person would type it (a string), then read."""
    getcontext().prec = 30
    a, b = Decimal(repr(lo)).log10(), Decimal(repr(hi)).log10()
    return [float(str(Decimal(10) ** (a + i * (b - a) / (n - 1)) if n > 1 else Decimal(repr(lo)))) for i in range(n)]


def _ulp(direction: float):
    """A grid one ulp off numpy's, as another CPU's logspace may make it."""
    return lambda lo, hi, n: [float(np.nextafter(v, direction)) for v in _numpy(lo, hi, n)]


GRID_MAKERS = {"numpy": _numpy, "python **": _python, "decimal strings": _decimal_strings,
               "one ulp up": _ulp(math.inf), "one ulp down": _ulp(-math.inf)}


@pytest.mark.parametrize("way", sorted(GRID_MAKERS))
@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_grids_made_in_numerically_different_ways_give_the_same_keys(name, way, monkeypatch):
    """Every profile's evaluation and training sigma grids, made by numpy, by Python's ``**``, from decimal strings
    and one ulp off (another CPU's last bit), give the keys of the fixture (docs/protocol.md §12)."""
    from paperlib import load_profile
    from paperlib.runs.profile import Profile
    from paperlib.runs.spec import canonical_grid

    def grid(self, n, lo=None, hi=None):  # Profile._grid with another maker of the raw points
        lo, hi = (self.sigma_min if lo is None else lo), (self.sigma_max if hi is None else hi)
        return canonical_grid(GRID_MAKERS[way](lo, hi, n))

    monkeypatch.setattr(Profile, "_grid", grid)
    profile = load_profile(name)
    expected = json.loads(FIXTURE.read_text())[name]
    for exp, made in experiment_specs(profile, _builders()).items():
        assert sorted(spec_key(s) for s in made) == expected[exp], f"profile {name}, {exp}: keys of {way} grids differ"


def test_the_last_bit_of_a_sigma_no_longer_changes_a_key():
    """The case that failed CI on some CPUs: 10 ** (-2 + 3/4) by hand and numpy's logspace point, one ulp apart."""
    from paperlib import RunSpec

    by_hand = 10 ** (-2 + 3 / 4)
    other = float(np.nextafter(by_hand, 0))
    assert by_hand != other
    a = RunSpec(sigmas=(by_hand,), sigma_train=by_hand, dataset="x")
    b = RunSpec(sigmas=(other,), sigma_train=other, dataset="x")
    assert a.sigmas == b.sigmas and a.train_key() == b.train_key() and spec_key(a) == spec_key(b)
    assert RunSpec(sigma_train=0.25, dataset="x").sigma_train == 0.25  # exact values stay as they are


def test_the_raw_grids_really_differ_between_the_ways():
    """The ways of :data:`GRID_MAKERS` make other floats than numpy for some profile grid (else the test above
    would prove nothing), and all of them the same canonical grid."""
    from paperlib import load_profile
    from paperlib.runs.spec import canonical_grid

    differ = set()
    for name in PROFILE_NAMES:
        p = load_profile(name)
        for lo, hi, n in ((p.sigma_min, p.sigma_max, p.n_sigmas), (*p._noisy_range(), p.noisy_n_sigmas)):
            grids = {way: make(lo, hi, n) for way, make in GRID_MAKERS.items()}
            differ |= {way for way, g in grids.items() if g != grids["numpy"]}
            assert len({canonical_grid(g) for g in grids.values()}) == 1, f"profile {name}: canonical grids differ"
    assert {"one ulp up", "one ulp down", "decimal strings"} <= differ

"""The named profiles still make the same runs: every spec of every experiment keeps its cache key.

``tests/data/profile_keys.json`` holds, per profile and experiment, the sorted keys of the specs that the code
before the three-layer restructuring made (generated once from that code with :func:`profile_keys`). A key is
``<train key>-<evaluation hash>``: the cache key of the trained network (RunSpec.train_key, with a fixed data
set label) and 8 hex over the evaluation (RunSpec.eval_key, the sigma grid, the repeats). A changed key means a
cached result no longer matches its spec: regenerate the file only for a change meant to change the runs.
"""
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

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
    import paperlib
    from paperlib import paper

    names = ("qat_variants", "noisy_variants", "clean_specs", "noisy_specs", "variance_aware_sigmas",
             "variance_aware_specs", "kind_sigmas", "kind_specs")
    homes = [paper] + [getattr(paper, m) for m in ("reproduce", "beyond", "experiments") if hasattr(paper, m)]
    fns = {}
    for n in names:
        home = next((h for h in homes if hasattr(h, n)), None)
        assert home is not None, f"paperlib.paper exports no {n}"
        fns[n] = getattr(home, n)
    return SimpleNamespace(**fns, ARCHS=paperlib.ARCHS, NOISE_KINDS=paperlib.NOISE_KINDS)


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

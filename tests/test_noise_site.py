"""Walking noise as an evaluation of the engine: ``RunSpec(noise_site=k)`` (noise at one noise site only, Borras et
al., arXiv 2212.10430; docs/protocol.md §9) and ``RunSpec(eval_test_subset=n)``, run, cached and swept like any run."""
from dataclasses import replace

import pytest
from conftest import make_learnable_release

import paperlib.runs.experiment as experiment
from paperlib import RunSpec, accuracy, evaluate_pairs, load_cifar10, noise_sites, run, run_sweep
from paperlib.runs.spec import CACHE_VERSION, SUBSET_SEED, _hash
from paperlib.runs.sweep import _describe

#: fp32 LeNet-5, one epoch: 100% on the learnable data in about a second; noise of sigma 3 at every site brings it
#: near chance, at one site it keeps most of it.
SPEC = dict(arch="lenet5", epochs=1, batch_size=32, sigmas=(1e-4, 1.0, 3.0), repeats=2)


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    """A learnable data root (1,000 training, 100 test images) and its data set, loaded on the CPU."""
    root = make_learnable_release(tmp_path_factory.mktemp("learnable"), n_train=1000, n_test=100)
    return root, load_cifar10(root, device="cpu")


@pytest.fixture(scope="module")
def walked(learnable, tmp_path_factory):
    """One results folder: the plain spec and three of its site specs (on 50 evaluation images), run."""
    _, data = learnable
    results = tmp_path_factory.mktemp("walked")
    plain = run(RunSpec(**SPEC), results_dir=results, device="cpu", data=data, progress=False)
    sites = {k: run(RunSpec(**SPEC, noise_site=k, eval_test_subset=50), results_dir=results, device="cpu", data=data,
                    progress=False) for k in (0, 5, 11)}
    return plain, sites


def _no_training_or_evaluation(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("trained or evaluated again")
    monkeypatch.setattr(experiment, "train", fail)
    monkeypatch.setattr(experiment, "evaluate_pairs", fail)


def test_the_new_fields_leave_every_train_key_and_old_eval_key_alone():
    spec = RunSpec(arch="lenet5", bits=8, scale=1.0, dataset="x")
    assert (spec.train_key(), spec.eval_key()) == ("9366dc397a990aae", "3f57667b79528017")  # as before the fields
    assert spec.eval_key() == _hash({"v": CACHE_VERSION, "noise_kind": "additive"})
    site = replace(spec, noise_site=3)
    fewer = replace(spec, eval_test_subset=500)
    both = replace(spec, noise_site=3, eval_test_subset=500)
    assert {s.train_key() for s in (site, fewer, both)} == {"9366dc397a990aae"}
    assert set(spec.training_fields()).isdisjoint({"noise_site", "eval_test_subset"})
    assert site.eval_key() == _hash({"v": CACHE_VERSION, "noise_kind": "additive", "noise_site": 3})
    assert fewer.eval_key() == _hash({"v": CACHE_VERSION, "noise_kind": "additive", "eval_test_subset": 500})
    keys = [replace(spec, noise_site=k).eval_key() for k in range(12)]
    keys += [replace(spec, eval_test_subset=n).eval_key() for n in (100, 500)]
    keys += [both.eval_key(), spec.eval_key(), replace(site, noise_kind="weight").eval_key()]
    assert len(set(keys)) == len(keys)


def test_a_site_curve_is_noise_at_that_site_only_on_the_evaluation_images(walked, learnable):
    """The engine's curve of a site spec is evaluate_pairs at that site, on eval_test_subset images of the full data
    set, with a seed of its own per site; without a site the seed is the one existing curves were made with."""
    _, data = learnable
    plain, sites = walked
    model = plain.load_model()
    test = data.subset(test=50, seed=SUBSET_SEED)
    pairs = plain.spec.pairs()
    for k, res in sites.items():
        assert not res.trained and res.key == plain.key and res.accuracy == plain.accuracy
        seed = int(_hash({"seed": 0, "pairs": pairs, "site": k}), 16) % 2**62
        direct = evaluate_pairs(model, test.x_test, test.y_test, pairs, layer=k, seed=seed, progress=False)
        assert res.noise_curve.equals(direct), k
    seed = int(_hash({"seed": 0, "pairs": pairs}), 16) % 2**62
    direct = evaluate_pairs(model, data.x_test, data.y_test, pairs, seed=seed, progress=False)
    assert plain.noise_curve.equals(direct)


def test_noise_at_one_site_costs_less_than_noise_at_every_site(walked, learnable):
    _, data = learnable
    plain, sites = walked
    test = data.subset(test=50, seed=SUBSET_SEED)
    clean = accuracy(plain.load_model(), test.x_test, test.y_test)
    at = {k: r.noise_curve.groupby("sigma").accuracy.mean() for k, r in sites.items()}
    everywhere = plain.noise_curve.groupby("sigma").accuracy.mean()
    assert plain.accuracy > 0.9 and everywhere[3.0] < 0.5
    for k, curve in at.items():
        assert curve[1e-4] == clean, k  # next to no noise: the clean accuracy on the evaluation images
        assert curve[3.0] > everywhere[3.0] + 0.2, k


def test_a_site_run_is_computed_once(learnable, tmp_path, monkeypatch):
    _, data = learnable
    spec = RunSpec(**SPEC, noise_site=4)
    first = run(spec, results_dir=tmp_path, device="cpu", data=data, progress=False)
    assert first.trained
    files = sorted(first.path.glob("curve-*.csv"))
    assert [f.name.split("-")[1] for f in files] == [spec.eval_key()]
    before = files[0].read_bytes(), files[0].stat().st_mtime_ns
    with monkeypatch.context() as m:
        _no_training_or_evaluation(m)
        second = run(spec, results_dir=tmp_path, device="cpu", data=data, progress=False)
    assert not second.trained and second.noise_curve.equals(first.noise_curve)
    assert (files[0].read_bytes(), files[0].stat().st_mtime_ns) == before
    # the plain spec shares the trained network but not the curve file
    monkeypatch.setattr(experiment, "train", lambda *a, **k: pytest.fail("trained again"))
    plain = run(replace(spec, noise_site=None), results_dir=tmp_path, device="cpu", data=data, progress=False)
    assert not plain.trained and plain.key == first.key
    assert len(list(first.path.glob("curve-*.csv"))) == 2 and files[0].read_bytes() == before[0]
    assert not plain.noise_curve.equals(first.noise_curve)


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"noise_site": -1}, r"noise_site must be None \(noise at every site\) or a whole number >= 0.*got -1"),
        ({"noise_site": True}, r"noise_site must be None .* got True"),
        ({"noise_site": "3"}, r"noise_site must be None .* got '3'"),
        ({"noise_site": 1.0}, r"noise_site must be None .* got 1.0"),
        ({"eval_test_subset": 5}, r"eval_test_subset must be None \(the spec's test_subset\) or an integer >= 10"),
        ({"eval_test_subset": "50"}, r"eval_test_subset must be None .* got '50'"),
    ],
)
def test_bad_fields_give_one_clear_error(fields, match):
    with pytest.raises(ValueError, match=match):
        RunSpec(**SPEC, **fields)


@pytest.mark.parametrize(
    "fields,match",
    [
        ({"noise_site": 12}, r"noise_site=12 is not a noise site of lenet5: it has 12 additive noise sites .* "
                             r"noise_site=0 to 11"),
        ({"noise_site": 5, "noise_kind": "weight"}, "it has 5 weight noise sites"),
        ({"eval_test_subset": 101}, r"eval_test_subset=101 asks for more test images than the data set holds \(100 "),
    ],
)
def test_a_site_or_subset_beyond_the_network_or_data_fails_before_training(fields, match, learnable, tmp_path,
                                                                          monkeypatch):
    _, data = learnable
    _no_training_or_evaluation(monkeypatch)
    with pytest.raises(ValueError, match=match):
        run(RunSpec(**SPEC, **fields), results_dir=tmp_path, device="cpu", data=data, progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_diverged_site_run_scores_the_labels_of_its_evaluation_images(learnable, tmp_path):
    _, data = learnable
    # sigma 1e38 overflows float32: the loss becomes NaN; 15 stratified images hold two of class 0
    spec = RunSpec(**SPEC, sigma_train=1e38, noise_site=2, eval_test_subset=15)
    res = run(spec, results_dir=tmp_path, device="cpu", data=data, progress=False)
    assert res.diverged and res.accuracy == 0.1  # the clean accuracy: the spec's own 100 test images
    assert (res.noise_curve.accuracy == 2 / 15).all() and len(res.noise_curve) == 6
    again = run(spec, results_dir=tmp_path, device="cpu", data=data, progress=False)
    assert not again.trained and again.noise_curve.equals(res.noise_curve)


def test_a_sweep_of_site_specs_trains_once_and_tells_the_sites_apart(learnable, tmp_path):
    root, _ = learnable
    n = len(noise_sites(experiment.build_model("lenet5"), "additive"))
    specs = [RunSpec(**SPEC, noise_site=k) for k in (0, 3, n - 1)] + [RunSpec(**SPEC, noise_site=n)]
    df = run_sweep(specs, data_root=root, results_dir=tmp_path, device="cpu", progress=False)
    assert {"noise_site", "eval_test_subset"} <= set(df.columns) and "_evaluated" not in df  # a progress count only
    good, failed = df[df.error.isna()], df[df.error.notna()]
    assert len(good) == 3 * 6 and sorted(set(good.noise_site)) == [0, 3, n - 1]
    assert good.groupby("noise_site").size().tolist() == [6, 6, 6] and good.key.nunique() == 1
    assert good.trained.sum() == 6 and good.eval_test_subset.isna().all()  # one network trained, for the first spec
    assert len(failed) == 1 and f"it has {n} additive noise sites" in failed.error.iloc[0]
    lines = {_describe(s) for s in specs}
    assert len(lines) == 4 and "lenet5 fp32 noise at site 3 only seed 0" in lines
    assert _describe(replace(specs[0], eval_test_subset=1000)) == "lenet5 fp32 noise at site 0 only on 1,000 test " \
                                                                   "images seed 0"

"""The zoo (paperlib.zoo): every shipped file is its manifest's, a damaged or missing one is one clear error, a
release asset is fetched and checked, and a network reproduces its recorded clean accuracy on real CIFAR-10."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from paperlib import zoo
from paperlib.evaluate import accuracy
from paperlib.models import build_model

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_zoo_is_what_its_manifest_says():
    names = zoo.names()
    assert names, "the zoo ships no network"
    for name in names:
        entry = zoo.info(name)
        if entry.where != "repository":
            continue
        file = zoo.path(name)  # size and sha256 checked
        assert file.stat().st_size == entry.size
        assert entry.spec.train_key() == entry.key, name  # the spec is the one that was trained
        assert name.startswith(entry.profile + "/") and 0.1 < entry.clean_accuracy <= 1
        assert entry.code and entry.revision


def test_load_gives_the_spec_s_model_with_the_zoo_s_weights():
    name = zoo.names(arch="lenet5")[0]
    entry = zoo.info(name)
    model = zoo.load(name)
    assert not model.training
    assert type(model) is type(build_model(entry.spec.arch, entry.spec.bits, entry.spec.scale))
    from safetensors.torch import load_file
    state = load_file(str(zoo.path(name)))
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


@pytest.fixture
def private_zoo(tmp_path):
    """A copy of one shipped network with its own manifest, to damage."""
    name = zoo.names()[0]
    raw = json.loads(zoo.MANIFEST.read_text())["networks"][name]
    (tmp_path / "weights").mkdir()
    shutil.copy(zoo.WEIGHTS_DIR / raw["file"], tmp_path / "weights" / raw["file"])
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"format": zoo.FORMAT, "base_url": None, "networks": {name: raw}}))
    return name, manifest, tmp_path / "weights" / raw["file"]


def test_a_truncated_or_corrupt_file_is_one_clear_error(private_zoo):
    name, manifest, file = private_zoo
    zoo.load(name, manifest=manifest)  # intact: loads
    data = file.read_bytes()
    file.write_bytes(data[:-100])
    with pytest.raises(zoo.ZooIntegrityError, match="truncated"):
        zoo.load(name, manifest=manifest)
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 1  # one bit of one weight: safetensors would read it without complaint
    file.write_bytes(bytes(flipped))
    with pytest.raises(zoo.ZooIntegrityError, match="corrupt"):
        zoo.load(name, manifest=manifest)
    file.unlink()
    with pytest.raises(zoo.ZooError, match="missing"):
        zoo.load(name, manifest=manifest)


def test_unknown_names_and_foreign_manifests_are_clear_errors(tmp_path):
    with pytest.raises(zoo.ZooError, match="no network 'quick/nope'.*names"):
        zoo.info("quick/nope")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"format": 99, "networks": {}}))
    with pytest.raises(zoo.ZooError, match="format 99"):
        zoo.names(manifest=manifest)


def _as_release(private_zoo, tmp_path, base_url):
    name, manifest, file = private_zoo
    raw = json.loads(manifest.read_text())
    raw["base_url"] = base_url
    raw["networks"][name]["where"] = "release"
    manifest.write_text(json.dumps(raw))
    return name, manifest, file


def test_a_release_asset_is_fetched_once_checked_and_reused(private_zoo, tmp_path, monkeypatch):
    server = tmp_path / "release"
    server.mkdir()
    name, manifest, file = _as_release(private_zoo, tmp_path, server.as_uri() + "/")
    shutil.move(file, server / file.name)
    monkeypatch.setenv(zoo.ENV_CACHE, str(tmp_path / "cache"))
    got = zoo.path(name, manifest=manifest)
    assert got == tmp_path / "cache" / file.name and got.read_bytes() == (server / file.name).read_bytes()
    (server / file.name).unlink()  # now offline for this file: the downloaded copy is used
    zoo.load(name, manifest=manifest)


def test_offline_is_one_clear_error_and_a_bad_download_is_not_kept(private_zoo, tmp_path, monkeypatch):
    name, manifest, file = _as_release(private_zoo, tmp_path, (tmp_path / "nowhere").as_uri() + "/")
    monkeypatch.setenv(zoo.ENV_CACHE, str(tmp_path / "cache"))
    with pytest.raises(zoo.ZooOfflineError, match="could not be downloaded.*put it at"):
        zoo.load(name, manifest=manifest)
    assert not (tmp_path / "cache" / file.name).exists()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / file.name).write_bytes(b"<html>not the weights</html>")  # a file host answering with a page
    monkeypatch.setenv(zoo.ENV_URL, mirror.as_uri())
    with pytest.raises(zoo.ZooIntegrityError):
        zoo.load(name, manifest=manifest)
    assert not (tmp_path / "cache" / file.name).exists()  # set aside as .bad, never taken for the file


def test_manifest_sizes_and_hashes_are_the_files_own():
    for name in zoo.names():
        entry = zoo.info(name)
        if entry.where == "repository":
            data = (zoo.WEIGHTS_DIR / entry.file).read_bytes()
            assert hashlib.sha256(data).hexdigest() == entry.sha256


def test_a_zoo_network_reproduces_its_recorded_clean_accuracy(real_cifar10):
    """The first shipped LeNet-5 network of each kind (a 4-bit and an 8-bit one) on the test images it was measured on;
    on the python release of CIFAR-10 (not the JPEG copy the zoo was trained on) the refusal is checked instead."""
    from paperlib.data import load_cifar10

    data = load_cifar10(real_cifar10.path, download=False)
    picks = [zoo.names(arch="lenet5")[0]] + [n for n in zoo.names(arch="lenet5") if "8bit-dynamic" in n][:1]
    for name in picks:
        entry = zoo.info(name)
        if data.content_digest() != entry.spec.data_digest:
            with pytest.raises(ValueError, match="digest"):
                zoo.eval_images(name, data=data)
            continue
        x, y = zoo.eval_images(name, data=data)
        assert len(y) == (entry.spec.test_subset or 10_000)
        # the recorded accuracy was measured on another CPU: a last-bit difference of a convolution moves a
        # quantized activation across a rounding step now and then and flips an image near a decision boundary
        # (measured on an Intel Xeon: lenet-full's 4-bit dynamic network 4 images of 10,000 off the record an AMD
        # EPYC made, the 8-bit one 0 off). So up to 0.1% of the images (10 of 10,000, the last digit our
        # tables print) may differ. That tells networks of other accuracies apart (lenet-full's 4-bit s = 1 network
        # is 14 images off the 4-bit dynamic one's record), not all (4-bit s = 0.25: 9; every weight of the right one
        # off by 0.1%: 5): the manifest's sha256 and the noise-curve test below do that
        assert round(abs(accuracy(zoo.load(name), x, y) - entry.clean_accuracy) * len(y)) <= max(2, len(y) // 1000), \
            name


def test_a_zoo_network_reproduces_the_noise_curve_of_its_committed_figure(real_cifar10):
    """A shipped network evaluated as ``paperlib.run`` evaluates it (noise draws seeded by
    :func:`paperlib.runs.experiment.eval_seed` from its seed and grid: code outside the code hash) gives the points of
    the committed Fig. 2 CSV that shows it: a change of the seeding, the draws or the batching of the pairs would
    move them by several images a point."""
    import pandas as pd

    from paperlib.data import load_cifar10
    from paperlib.evaluate import evaluate_pairs
    from paperlib.runs.experiment import eval_seed

    data = load_cifar10(real_cifar10.path, download=False)
    name = "quick/lenet5-4bit-dynamic-seed0"
    entry = zoo.info(name)
    if data.content_digest() != entry.spec.data_digest:
        pytest.skip("the zoo's networks were trained and measured on the JPEG copy of CIFAR-10")
    figure = pd.read_csv(REPO / "figures" / entry.profile / "fig2_lenet5_qat.csv", comment="#")
    shown = figure[figure.key == entry.key].set_index(["sigma", "repeat"]).accuracy
    pairs = entry.spec.pairs()
    x, y = zoo.eval_images(name, data=data)
    ours = evaluate_pairs(zoo.load(name), x, y, pairs, seed=eval_seed(entry.spec, pairs), progress=False)
    assert len(shown) == len(pairs) == len(ours)
    images = (ours.set_index(["sigma", "repeat"]).accuracy - shown.loc[pairs].to_numpy()).abs() * len(y)
    # another CPU's last bits may flip an image near a decision boundary (as for the clean accuracy above)
    assert images.round().max() <= 2, images.to_dict()


def test_the_zoo_is_built_from_the_cache_and_loads_from_a_release(tmp_path, monkeypatch, capsys):
    """``python -m paperlib.paper.zoo`` on a cache of notebook 01's smoke networks (generated data): nothing is
    trained by the build, every cached network gets its entry, files over the limit go to the release folder, and
    they load from there as release assets with the recorded accuracy; a spec missing from the cache is reported."""
    from conftest import make_learnable_release

    from paperlib.paper import zoo as build
    from paperlib.paper.transfer import specs_for
    from paperlib.runs.experiment import run
    from paperlib.runs.profile import load_profile

    data_root = make_learnable_release(tmp_path / "data")
    results, release, manifest = tmp_path / "results", tmp_path / "release", tmp_path / "zoo" / "manifest.json"
    specs = specs_for(load_profile("smoke"), ["01"])
    trained = [run(s, data_root, results, "cpu", progress=False) for s in specs[1:]]  # the first is left out
    out = build.build("smoke", ["01"], ["lenet5"], str(results), str(data_root), release, 0.1, 0.0, manifest)
    assert len(out["added"]) == len(trained) and len(out["skipped"]["not cached by this code"]) == 1
    assert sorted(p.name for p in release.iterdir()) == sorted(zoo.info(n, manifest).file for n in out["added"])
    monkeypatch.setenv(zoo.ENV_URL, release.as_uri())
    monkeypatch.setenv(zoo.ENV_CACHE, str(tmp_path / "downloads"))
    for result in trained:
        name = build.zoo_name("smoke", result.spec)
        entry = zoo.info(name, manifest)
        assert entry.key == result.key and entry.where == "release" and entry.figures == ("01",)
        assert entry.clean_accuracy == result.accuracy
        x, y = zoo.eval_images(name, data_root, manifest=manifest)
        assert accuracy(zoo.load(name, manifest=manifest), x, y) == result.accuracy
    files, listed = {p.name: p.read_bytes() for p in release.iterdir()}, manifest.read_text()
    empty = build.build("smoke", ["01"], ["lenet5"], str(tmp_path / "no-results"), str(data_root), release, 0.1, 0.0,
                        manifest)  # a machine without the cache: nothing is lost
    assert empty["added"] == [] and len(empty["skipped"]["kept as they were (not cached by this code)"]) == 2
    assert {p.name: p.read_bytes() for p in release.iterdir()} == files and manifest.read_text() == listed
    first = manifest.read_text()
    again = build.build("smoke", ["01"], ["lenet5"], str(results), str(data_root), release, 0.1, 0.0, manifest)
    assert again["added"] == out["added"] and manifest.read_text() == first  # same code: same bytes, same sha256

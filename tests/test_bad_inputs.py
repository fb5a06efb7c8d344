"""The last bad inputs and damaged cache pieces (docs/protocol.md §12): each is one sentence saying what is wrong and
what would be right, before any expensive work, and a damaged piece is set aside and rebuilt; entries under the keys
of unrounded floats are found again; the guards keep their contract and the fingerprint leaves them out."""
import json
import shutil
import textwrap
import warnings

import numpy as np
import pytest
import torch
from conftest import make_release

import paperlib.runs.experiment as experiment
from paperlib import CacheWarning, DataNotFoundError, RunSpec, build_model, guards, load_cifar10, load_profile, run
from paperlib.paper import Session, variance_aware
from paperlib.paper import notebooks as main_job
from paperlib.paper.specs import clean_specs, qat_variants
from paperlib.runs.cache import ResultsNotWritableError, migrate_keys
from paperlib.runs.fingerprint import source_hash
from paperlib.runs.spec import CACHE_VERSION, _hash

SPEC = dict(arch="lenet5", epochs=1, batch_size=32, sigmas=(0.1, 1.0), repeats=1)


def _no_training(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("training happened")
    monkeypatch.setattr(experiment, "train", fail)


def _run(root, results, **kw):
    return run(RunSpec(**{**SPEC, **kw.pop("spec", {})}), root, results, "cpu", progress=False, **kw)


# --- noise_sweep: images and labels ------------------------------------------------------------------------------

@pytest.mark.parametrize("x,y,match", [
    (torch.zeros(8, 3, 32, 32), torch.zeros(7, dtype=torch.long),
     r"x and y must hold one label per image: x is \[8, 3, 32, 32\] and y is \[7\]; give y as \[8\] labels"),
    (torch.zeros(8, 1, 28, 28), torch.zeros(8, dtype=torch.long),
     r"images are \[8, 1, 28, 28\] but LeNet5 takes CIFAR-10 images \[N, 3, 32, 32\]; resize or pad them"),
    (torch.zeros(8, 3 * 32 * 32), torch.zeros(8, dtype=torch.long),
     r"x must be a batch of images \[N, C, H, W\] \(CIFAR-10: \[N, 3, 32, 32\]\), got \[8, 3072\]"),
])
def test_noise_sweep_names_images_and_labels_that_do_not_fit(x, y, match):
    from paperlib import noise_sweep

    with pytest.raises(ValueError, match=match):
        noise_sweep(build_model("lenet5"), x, y, sigmas=[0.1], repeats=1, progress=False)


def test_a_foreign_model_is_checked_against_its_first_convolution():
    from paperlib import add_noise, noise_sweep

    model = add_noise(torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10)))
    x, y = torch.zeros(4, 3, 28, 28), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"images have 3 channel\(s\) .* first convolution takes 1"):
        noise_sweep(model, x, y, sigmas=[0.1], repeats=1, progress=False)
    out = noise_sweep(model, x[:, :1], y, sigmas=[0.1], repeats=1, progress=False)  # any size it takes is fine
    assert list(out.columns) == ["sigma", "repeat", "accuracy"] and len(out) == 1


# --- data ---------------------------------------------------------------------------------------------------------

def test_a_subset_larger_than_the_data_set_is_an_error_before_training(tiny_root, tmp_path, monkeypatch):
    _no_training(monkeypatch)
    with pytest.raises(ValueError, match=r"train_subset=1,000 asks for more training images than the data set holds "
                                         r"\(200 in CIFAR-10\); use train_subset=None \(all of them\) or at most 200"):
        _run(tiny_root, tmp_path / "results", spec={"train_subset": 1000})
    with pytest.raises(ValueError, match=r"test_subset=100 asks for more test images .* \(60 in CIFAR-10\)"):
        _run(tiny_root, tmp_path / "results", spec={"test_subset": 100})


@pytest.mark.parametrize("missing", ["test", "train"])
def test_an_image_folder_without_one_split_says_which(tmp_path, missing):
    make_release(tmp_path, per_batch=2, n_test=10)
    shutil.rmtree(tmp_path / "folder" / missing)
    present = "train" if missing == "test" else "test"
    with pytest.raises(DataNotFoundError, match=rf"folder holds {present}/ but no {missing}/: an image-folder tree "
                                                rf"needs both train/<class>/\* and test/<class>/\*"):
        load_cifar10(tmp_path / "folder", download=False)


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "member flipped"])
def test_a_damaged_decoded_image_cache_is_set_aside_and_rebuilt(tmp_path, damage, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "cache"))
    make_release(tmp_path, per_batch=2, n_test=10)
    first = load_cifar10(tmp_path / "folder", download=False)
    cache = guards_cache_files(tmp_path)
    assert len(cache) == 1
    raw = cache[0].read_bytes()
    if damage == "truncated":
        cache[0].write_bytes(raw[: len(raw) // 2])
    elif damage == "not a zip":
        cache[0].write_bytes(b"<html>not the cache</html>")
    else:  # one byte in the middle of the first array's data: a CRC error when read
        mid = raw.index(b"xtr.npy") + 200
        cache[0].write_bytes(raw[:mid] + bytes([raw[mid] ^ 0xFF]) + raw[mid + 1:])
    damaged = r"decoded-image cache .*cifar10-\w+\.npz was damaged .*; moved it to .*corrupt"
    with pytest.warns(UserWarning, match=damaged):
        again = load_cifar10(tmp_path / "folder", download=False)
    assert again.digest == first.digest and torch.equal(again.x_train, first.x_train)
    assert cache[0].read_bytes() == raw  # rebuilt whole
    assert len(list((cache[0].parent / "corrupt").iterdir())) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_cifar10(tmp_path / "folder", download=False)  # sound again: no warning


def guards_cache_files(tmp_path):
    from paperlib.data import cache_dir

    return sorted(cache_dir().glob("cifar10-*.npz"))


# --- profiles and notebook parameters -----------------------------------------------------------------------------

@pytest.mark.parametrize("text,match", [
    ("bits: 8", r"bits must be a list of bit widths \(e.g. bits: \[4, 8\]\), got 8"),
    ("n_sigmas: five", r"n_sigmas must be an integer >= 1 \(e.g. n_sigmas: 17\), got 'five'"),
    ("archs: [vgg13]", r"archs names unknown architecture\(s\) 'vgg13'; valid architectures: lenet5, vgg11, resnet18"),
    ("sigma_max: big", r"sigma_max must be a positive number \(e.g. sigma_max: 100\), got 'big'"),
    ("noisy_bits: [eight]", r"noisy_bits must be a list of bit widths"),
])
def test_a_profile_field_of_the_wrong_type_is_one_sentence(tmp_path, text, match):
    path = tmp_path / "mine.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ValueError, match=r"in profile .*mine.yaml: " + match):
        load_profile(path)


@pytest.mark.parametrize("seeds", [-1, 1.5, "2", True])
def test_seeds_must_be_zero_or_a_number_of_networks(seeds):
    profile = load_profile("smoke")
    with pytest.raises(ValueError, match=r"seeds must be 0 \(as many networks as the profile says\) or a positive "
                                         r"number of networks per variant, got"):
        clean_specs(profile, "lenet5", qat_variants(profile, "lenet5"), seeds)
    with pytest.raises(ValueError, match=r"seeds must be 0"):
        variance_aware.specs(profile, seeds, "lenet5", (0.1,))
    with pytest.raises(ValueError, match=r"seeds must be 0"):
        Session.from_parameters("smoke", "cpu", seeds=seeds)
    assert len(clean_specs(profile, "lenet5", [(None, None)], 2)) == 2


@pytest.mark.parametrize("device,match", [
    ("tpu", r"unknown device 'tpu'; use 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ("meta", r"device 'meta' is not one paperlib runs on"),
] + ([("cuda", r"device 'cuda' was asked for but CUDA is not available here; use 'cpu' or 'auto'")]
     if not torch.cuda.is_available() else []))
def test_a_device_this_machine_lacks_is_an_error_before_any_data(device, match, monkeypatch, capsys):
    monkeypatch.setattr(experiment, "shared_data", lambda *a: pytest.fail("data loaded before the check"))
    with pytest.raises(ValueError, match=match):
        Session.from_parameters("smoke", device)
    with pytest.raises(SystemExit) as exit_:
        main_job.main(["--profile", "smoke", "--device", device, "01"])
    assert exit_.value.code == 2 and "error: " + match.split(";")[0].replace("\\", "")[:20] in capsys.readouterr().err


# --- damaged weights ----------------------------------------------------------------------------------------------

def test_a_truncated_weights_file_is_set_aside_and_repaired_once(tiny_root, tmp_path, monkeypatch):
    results = tmp_path / "results"
    first = _run(tiny_root, results)
    weights = first.path / "weights.pt"
    raw = weights.read_bytes()
    weights.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(FileNotFoundError, match=r"weights file was missing or unreadable \(set aside in the results "
                                                r"folder's corrupt/\); run\(spec, need_weights=True\) retrains it"):
        with pytest.warns(CacheWarning, match=r"unreadable .*moved to .*corrupt"):
            first.load_model()
    record = json.loads((first.path / "record.json").read_text())
    assert record["weights"] is False and "corrupt" in record["weights_lost"]["moved_to"]
    with pytest.warns(CacheWarning, match=r"weights file was unreadable .*retraining it from its seed to repair"):
        repaired = _run(tiny_root, results, spec={"sigmas": (0.1, 1.0, 3.0)})  # a new sigma needs the network
    assert repaired.record["weights"] is True and "weights_lost" not in repaired.record
    assert repaired.record["weights_retrained"]["matches_record"] is True  # the same network, bit for bit
    assert repaired.load_model() is not None
    _no_training(monkeypatch)  # repaired once: the next new sigma evaluates the kept weights
    later = _run(tiny_root, results, spec={"sigmas": (0.1, 1.0, 3.0, 10.0)})
    assert later.noise_curve.sigma.tolist() == [0.1, 1.0, 3.0, 10.0]


# --- a results folder that cannot be written ----------------------------------------------------------------------

def test_a_read_only_entry_still_gives_its_cached_results(tiny_root, tmp_path, monkeypatch):
    results = tmp_path / "results"
    done = _run(tiny_root, results)
    lock = done.path / ".curve.lock"  # stands for a read-only folder (root may write anywhere): it cannot be opened
    lock.unlink(missing_ok=True)
    lock.mkdir()
    _no_training(monkeypatch)
    again = _run(tiny_root, results)
    assert again.noise_curve.equals(done.noise_curve) and not again.trained
    with pytest.raises(ResultsNotWritableError, match=r"needs 1 noise point\(s\) that its cache entry lacks, but .* "
                                                      r"cannot be written \(read-only\); make it writable"):
        _run(tiny_root, results, spec={"sigmas": (0.1, 1.0, 5.0)})


def test_an_unwritable_runs_folder_is_an_error_before_training(tiny_root, tmp_path, monkeypatch):
    results = tmp_path / "results"
    results.mkdir()
    (results / "runs").write_text("not a folder")  # unwritable as a folder, even for root
    _no_training(monkeypatch)
    with pytest.raises(ResultsNotWritableError, match=r"results folder .*runs is not writable"):
        _run(tiny_root, results)


# --- keys of unrounded floats: found again, not retrained -----------------------------------------------------------

def test_an_entry_under_the_key_of_unrounded_floats_is_renamed_not_retrained(tiny_root, tmp_path, monkeypatch):
    results = tmp_path / "results"
    raw = 10 ** (-2 + 3 / 4)  # a logspace point, as a machine made it before keys were canonical
    assert RunSpec(sigma_train=raw).sigma_train != raw
    done = _run(tiny_root, results, spec={"sigma_train": raw})
    record = json.loads((done.path / "record.json").read_text())
    legacy_spec = {**record["spec"], "sigma_train": raw}  # what the older code stored and hashed
    legacy = _hash({"v": CACHE_VERSION, **legacy_spec})
    assert legacy != done.key
    old = done.path.rename(done.path.parent / legacy)
    (old / "record.json").write_text(json.dumps({**record, "key": legacy, "spec": legacy_spec}))
    curve = next(old.glob("curve-*.csv"))
    text = curve.read_text().replace("0.1,", f"{float(np.nextafter(0.1, 1))!r},")  # points of unrounded sigmas
    curve.write_text(text)
    _no_training(monkeypatch)
    again = _run(tiny_root, results, spec={"sigma_train": raw})
    assert again.key == done.key and not again.trained and again.record["migrated_from"] == legacy
    assert again.noise_curve.accuracy.tolist() == done.noise_curve.accuracy.tolist()
    assert not old.exists() and migrate_keys(results, force=True) == []


# --- the guards' contract, and the fingerprint without them ---------------------------------------------------------

def test_the_guards_return_nothing_and_touch_no_random_state(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "cache"))
    make_release(tmp_path, per_batch=2, n_test=10)
    load_cifar10(tmp_path / "folder", download=False)
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    model = build_model("lenet5")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)
    x_copy = x.clone()
    torch.set_rng_state(torch_state)
    assert guards.sweep_inputs(model, x, y) is None
    assert guards.image_folder(tmp_path / "folder") is None
    for cached in guards_cache_files(tmp_path):
        assert guards.decoded_cache(cached) is None and cached.is_file()  # a sound file stays
    assert guards.seeds(0) is None and guards.seeds(3) is None
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(a == b if not isinstance(a, np.ndarray) else np.array_equal(a, b)
               for a, b in zip(np.random.get_state(), np_state))
    assert torch.equal(x, x_copy) and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    public = [n for n in vars(guards) if not n.startswith("_") and callable(getattr(guards, n))
              and getattr(getattr(guards, n), "__module__", "") == "paperlib.guards"]
    assert sorted(public) == ["decoded_cache", "image_folder", "seeds", "sweep_inputs"]  # each tested above


def test_the_fingerprint_leaves_out_guard_calls_and_nothing_else():
    base = textwrap.dedent("""\
        import math
        def f(x):
            return math.sqrt(x)
        """)
    guarded = textwrap.dedent("""\
        import math
        from . import guards
        def f(x):
            guards.seeds(x)
            return math.sqrt(x)
        """)
    assert source_hash(guarded) == source_hash(base)
    for other in ("x = guards.seeds(x)", "print(x)", "guards_seeds(x)", "other.seeds(x)", "if guards.seeds(x): pass"):
        changed = base.replace("    return", f"    {other}\n    return")
        assert source_hash(changed) != source_hash(base), other
    aliased = base.replace("import math\n", "import math\nfrom . import guards as g\n")
    assert source_hash(aliased) != source_hash(base)


def test_the_toolbox_calls_the_guards_where_the_work_starts():
    """The guards are where their docstring says (a statement the fingerprint leaves out could silently vanish)."""
    import inspect

    from paperlib import data, evaluate
    from paperlib.paper import specs

    assert "guards.sweep_inputs(model, x, y)" in inspect.getsource(evaluate.evaluate_pairs)
    assert "guards.image_folder(root)" in inspect.getsource(data._read_any)
    assert "guards.decoded_cache(path)" in inspect.getsource(data._cached)
    assert "guards.seeds(seeds)" in inspect.getsource(specs.network_seeds)

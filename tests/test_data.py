import tarfile

import pytest
import torch
from conftest import make_release as _make_release
from PIL import Image

from paperlib import CIFAR10Data, DataNotFoundError, augment, load_cifar10
from paperlib.data import MEAN, STD, normalize, stratified_indices


def test_batches_folder_and_image_folder_load_identically(tmp_path):
    arrays = _make_release(tmp_path)
    a = load_cifar10(tmp_path / "release", download=False)
    b = load_cifar10(tmp_path / "folder", download=False)
    with tarfile.open(tmp_path / "folder.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "folder", arcname="cifar10")
    c = load_cifar10(tmp_path / "folder.tar.gz", download=False)
    for d in (b, c):
        for name in ("x_train", "y_train", "x_test", "y_test"):
            assert torch.equal(getattr(a, name), getattr(d, name)), name
    assert torch.equal(a.x_train, normalize(arrays["train"][0]))
    assert a.x_train.shape == (100, 3, 32, 32) and a.y_test.dtype == torch.long
    assert a.source == "CIFAR-10" and b.source == "CIFAR-10 (image folder)"
    # the decoded folder is cached: a second load reads the cache and agrees
    assert torch.equal(load_cifar10(tmp_path / "folder", download=False).x_test, b.x_test)


def test_root_from_environment(tmp_path, monkeypatch):
    _make_release(tmp_path)
    monkeypatch.setenv("PAPERLIB_DATA", str(tmp_path / "release"))
    assert len(load_cifar10(download=False).y_train) == 100


def test_missing_data_names_the_three_ways(tmp_path):
    with pytest.raises(DataNotFoundError) as info:
        load_cifar10(tmp_path / "nowhere", download=False)
    msg = str(info.value)
    assert (
        "torchvision download" in msg
        and "cifar-10-batches-py" in msg
        and "train/<class>" in msg
        and "PAPERLIB_DATA" in msg
    )


def test_stratified_subset_is_balanced_and_seeded(tmp_path):
    _make_release(tmp_path, per_batch=40)
    data = load_cifar10(tmp_path / "release", download=False, train_subset=50, seed=1)
    assert torch.bincount(data.y_train).tolist() == [5] * 10
    assert data.describe() == "CIFAR-10, 50 train / 30 test images"
    labels = torch.arange(200) % 10
    assert torch.equal(stratified_indices(labels, 23, seed=4), stratified_indices(labels, 23, seed=4))
    assert not torch.equal(stratified_indices(labels, 23, seed=4), stratified_indices(labels, 23, seed=5))


def test_augment_is_a_padded_crop_or_its_mirror():
    """Each output equals one of the 9x9 crops of the zero-padded image, flipped or not."""
    g = torch.Generator().manual_seed(0)
    x = normalize(torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g))
    out = augment(x, torch.Generator().manual_seed(1))
    fill = (-torch.tensor(MEAN) / torch.tensor(STD)).view(3, 1, 1)
    flips = 0
    for img, res in zip(x, out):
        padded = fill.expand(3, 40, 40).clone()
        padded[:, 4:36, 4:36] = img
        crops = {
            (dy, dx, f)
            for dy in range(9)
            for dx in range(9)
            for f in (False, True)
            if torch.equal(
                res, (padded[:, dy : dy + 32, dx : dx + 32].flip(2) if f else padded[:, dy : dy + 32, dx : dx + 32])
            )
        }
        assert len(crops) == 1
        flips += next(iter(crops))[2]
    assert 16 < flips < 48  # about half are mirrored
    assert torch.equal(out, augment(x, torch.Generator().manual_seed(1)))


def test_the_digest_follows_the_content_and_is_cached(tmp_path, monkeypatch):
    _make_release(tmp_path)
    _make_release(tmp_path / "other", seed=1)
    release = load_cifar10(tmp_path / "release", download=False)
    folder = load_cifar10(tmp_path / "folder", download=False)
    other = load_cifar10(tmp_path / "other" / "release", download=False)
    assert len(release.digest) == 16 and int(release.digest, 16) >= 0
    assert folder.digest == release.digest  # the same pixels in the same order, stored another way
    assert other.source == release.source and other.digest != release.digest  # same label, other pixels
    assert release.subset(train=20).digest == release.digest  # a subset is in the key through its size
    assert release.content_digest() == release.digest
    # the digest is stored with the decoded images / beside the batches: no recomputation on the next load
    monkeypatch.setattr("paperlib.data.images_digest", lambda images: pytest.fail("digest recomputed"))
    monkeypatch.setattr("paperlib.data._decode", lambda *a: pytest.fail("images decoded again"))
    assert load_cifar10(tmp_path / "folder", download=False).digest == release.digest
    assert load_cifar10(tmp_path / "release", download=False).digest == release.digest


def test_hand_built_data_get_a_digest_of_their_tensors():
    x, y = torch.zeros(10, 3, 32, 32), torch.arange(10)
    a = CIFAR10Data(x, y, x, y, "mine")
    b = CIFAR10Data(x + 1, y, x, y, "mine")
    assert a.digest is None and len(a.content_digest()) == 16
    assert a.content_digest() == CIFAR10Data(x.clone(), y, x, y, "another label").content_digest()
    assert a.content_digest() != b.content_digest()


def test_an_overwritten_image_is_decoded_again(tmp_path):
    _make_release(tmp_path)
    before = load_cifar10(tmp_path / "folder", download=False)
    image = tmp_path / "folder" / "train" / "airplane" / "00000.png"  # the first training image
    Image.new("RGB", (32, 32), (255, 0, 0)).save(image)  # same name, other pixels
    after = load_cifar10(tmp_path / "folder", download=False)
    assert not torch.equal(after.x_train[0], before.x_train[0])
    assert torch.equal(
        after.x_train[0],
        normalize(torch.tensor([255, 0, 0], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 32, 32))[0],
    )
    assert torch.equal(after.x_train[1:], before.x_train[1:]) and after.digest != before.digest


def _break_png(tmp_path):
    (tmp_path / "folder" / "test" / "cat" / "broken.png").write_bytes(b"not an image")


def _break_batch(tmp_path):
    (tmp_path / "release" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04truncated")


def _break_archive(tmp_path):
    (tmp_path / "folder.tar.gz").write_bytes(b"\x1f\x8b\x08\x00garbage")


@pytest.mark.parametrize(
    "damage,root,match",
    [
        (_break_png, "folder", r"test/cat/broken.png is not a readable image \(UnidentifiedImageError"),
        (_break_batch, "release", r"data_batch_3 is not a readable CIFAR-10 python batch"),
        (_break_archive, "folder.tar.gz", r"folder.tar.gz is not a readable tar archive"),
    ],
)
def test_unreadable_data_give_one_clear_sentence(tmp_path, damage, root, match):
    _make_release(tmp_path)
    damage(tmp_path)
    with pytest.raises(ValueError, match=match):
        load_cifar10(tmp_path / root, download=False)


def test_an_image_of_the_wrong_size_is_named(tmp_path):
    _make_release(tmp_path)
    Image.new("RGB", (64, 48)).save(tmp_path / "folder" / "train" / "dog" / "big.png")
    with pytest.raises(ValueError, match=r"train/dog/big.png is 64x48 pixels; CIFAR-10 images must be 32x32 RGB"):
        load_cifar10(tmp_path / "folder", download=False)


def test_runs_on_two_data_sets_with_one_label_do_not_share_a_cache_entry(tmp_path):
    from paperlib import RunSpec, run

    _make_release(tmp_path / "a", seed=0)
    _make_release(tmp_path / "b", seed=1)
    spec = RunSpec(arch="lenet5", epochs=1, batch_size=32, train_subset=20, test_subset=10, sigmas=(0.1,), repeats=1)
    a = run(spec, tmp_path / "a" / "release", tmp_path / "results", "cpu", progress=False)
    b = run(spec, tmp_path / "b" / "release", tmp_path / "results", "cpu", progress=False)
    assert a.spec.dataset == b.spec.dataset == "CIFAR-10" and b.trained and a.key != b.key
    assert a.spec.data_digest == load_cifar10(tmp_path / "a" / "release", download=False).digest
    assert a.record["spec"]["data_digest"] == a.spec.data_digest  # the record says which data it was trained on
    with pytest.raises(
        ValueError,
        match=f"the spec asks for data with digest {a.spec.data_digest} but the data root "
        f"holds {b.spec.data_digest} \\(CIFAR-10\\); point data_root at",
    ):
        run(a.spec, tmp_path / "b" / "release", tmp_path / "results", "cpu", progress=False)
    # a spec without a digest hashes as before the digest existed (specs built by hand, old records)
    assert RunSpec(arch="lenet5", bits=8, scale=1.0, dataset="x").train_key() == "9366dc397a990aae"


def test_a_folder_holding_one_archive_reads_it_and_two_archives_are_refused(tmp_path):
    _make_release(tmp_path)
    (tmp_path / "archives").mkdir()
    with tarfile.open(tmp_path / "archives" / "cifar10-jpeg.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "folder", arcname="cifar10")
    a = load_cifar10(tmp_path / "archives", download=False)
    assert torch.equal(a.x_test, load_cifar10(tmp_path / "folder", download=False).x_test)
    (tmp_path / "archives" / "other.tgz").write_bytes(b"")
    with pytest.raises(DataNotFoundError, match="holds 2 archives .*set the data root to the one to use"):
        load_cifar10(tmp_path / "archives", download=False)


def test_one_process_decodes_while_the_others_wait_for_its_cache(tmp_path, monkeypatch):
    import threading

    from paperlib import data as data_module

    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    _make_release(tmp_path)
    decoded = []

    def reader(source):
        decoded.append(threading.get_ident())
        return data_module.read_image_folder(source)

    path = tmp_path / "cache" / "cifar10-k.npz"
    results = []
    with data_module._exclusive(path.with_suffix(".lock")):  # another process is decoding
        threads = [
            threading.Thread(target=lambda: results.append(data_module._cached("k", tmp_path / "folder", reader)))
            for _ in range(3)
        ]
        for t in threads:
            t.start()
        threads[0].join(timeout=1.0)
        assert decoded == [] and not results  # all wait for the lock
    for t in threads:
        t.join(timeout=60)
    assert len(decoded) == 1 and len(results) == 3  # one decoded, two read its cache
    assert len({r[1] for r in results}) == 1

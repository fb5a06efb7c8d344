import tarfile

import pytest
import torch

from paperlib import DataNotFoundError, augment, load_cifar10
from paperlib.data import MEAN, STD, normalize, stratified_indices

from conftest import make_release as _make_release


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
    assert "torchvision download" in msg and "cifar-10-batches-py" in msg and "train/<class>" in msg and "PAPERLIB_DATA" in msg


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
        crops = {(dy, dx, f) for dy in range(9) for dx in range(9) for f in (False, True)
                 if torch.equal(res, (padded[:, dy:dy + 32, dx:dx + 32].flip(2) if f else padded[:, dy:dy + 32, dx:dx + 32]))}
        assert len(crops) == 1
        flips += next(iter(crops))[2]
    assert 16 < flips < 48  # about half are mirrored
    assert torch.equal(out, augment(x, torch.Generator().manual_seed(1)))

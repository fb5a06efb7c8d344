import math

import numpy as np
import pytest
import torch
from conftest import separable_data

import paperlib.training as train_mod
from paperlib import TrainConfig, accuracy, build_model, load_cifar10, noise_sweep, summarize_sweep, train


@pytest.fixture(scope="module")
def trained():
    model = build_model("lenet5", 8, 1.0, seed=0)
    res = train(
        model,
        separable_data(),
        TrainConfig(epochs=3, batch_size=32, lr=3e-3, augment=False),
        device="cpu",
        progress=False,
    )
    assert res.test_accuracy > 0.9, res.history
    return model


def test_training_history_and_determinism():
    data = separable_data(n_train=128, n_test=50)
    cfg = TrainConfig(epochs=2, lr=1e-3, seed=5, sigma_train=0.05)
    runs = [train(build_model("lenet5", None, None, seed=0), data, cfg, device="cpu", progress=False) for _ in range(2)]
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]
    assert [set(h) for h in runs[0].history] == [{"epoch", "sigma_train", "lr", "loss", "train_acc", "test_acc"}] * 2
    assert runs[0].history[1]["lr"] < runs[0].history[0]["lr"]  # cosine decay
    assert runs[0].images_per_s > 0 and not runs[0].diverged


def test_sigma_ramp_steps_through_linspace_and_reaches_sigma_in_its_last_epoch():
    cfg = TrainConfig(epochs=10, sigma_train=1.0, sigma_ramp_epochs=4)
    assert [cfg.sigma_at(e) for e in range(6)] == [0.0, 1 / 3, 2 / 3, 1.0, 1.0, 1.0]
    one_epoch_ramp = TrainConfig(epochs=3, sigma_train=0.5, sigma_ramp_epochs=1)
    assert [one_epoch_ramp.sigma_at(e) for e in range(3)] == [0.0, 0.5, 0.5]
    assert [TrainConfig(epochs=3, sigma_train=0.5).sigma_at(e) for e in range(3)] == [0.5] * 3  # no ramp
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
        cfg.sigma_at(-1)


@pytest.mark.parametrize("sigma", [0.0, 0.01, 0.1, 1 / 3, 2.957, 100.0])
@pytest.mark.parametrize("ramp", [1, 2, 3, 7, 100])
def test_sigma_ramp_equals_the_authors_numpy_schedule_bit_for_bit(sigma, ramp):
    """The authors' main.py: concatenate(linspace(0, sigma, 100), [sigma] * (epochs - 100)), one entry per epoch."""
    epochs = ramp + 20
    authors = np.concatenate((np.linspace(0, sigma, ramp), np.array([sigma] * (epochs - ramp))))
    cfg = TrainConfig(epochs=epochs, sigma_train=sigma, sigma_ramp_epochs=ramp)
    assert [cfg.sigma_at(e) for e in range(epochs)] == authors.tolist()
    if ramp == 100 and sigma > 0:
        assert cfg.sigma_at(98) < sigma == cfg.sigma_at(99)  # sigma is reached in epoch 99, the 100th


def test_nan_loss_is_reported_not_raised():
    data = separable_data(n_train=64, n_test=20)
    data.x_train[3] = float("nan")
    res = train(build_model("lenet5"), data, TrainConfig(epochs=3, augment=False), device="cpu", progress=False)
    assert res.diverged and "loss became nan in epoch 0" in res.error
    assert res.history == [] and math.isnan(res.test_accuracy)


@pytest.mark.parametrize("bits", [None, 8])
def test_interrupted_training_resumes_from_checkpoint(tmp_path, monkeypatch, bits):
    data = separable_data(n_train=256, n_test=50)
    cfg = TrainConfig(epochs=2, lr=1e-3, sigma_train=0.1, seed=1)
    straight = build_model("lenet5", bits, None, seed=0)
    full = train(straight, data, cfg, device="cpu", progress=False)

    calls = {"n": 0}
    real_accuracy = train_mod.accuracy

    def crash_in_second_epoch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_accuracy(*a, **k)

    ckpt = tmp_path / "run.pt"
    monkeypatch.setattr(train_mod, "accuracy", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(build_model("lenet5", bits, None, seed=0), data, cfg, device="cpu", checkpoint=ckpt, progress=False)
    monkeypatch.setattr(train_mod, "accuracy", real_accuracy)
    resumed_model = build_model("lenet5", bits, None, seed=0)
    resumed = train(resumed_model, data, cfg, device="cpu", checkpoint=ckpt, progress=False)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    for p, q in zip(straight.parameters(), resumed_model.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="written for another config"):
        train(
            build_model("lenet5", bits, None),
            data,
            TrainConfig(epochs=3),
            device="cpu",
            checkpoint=ckpt,
            progress=False,
        )


def test_batched_sweep_matches_the_one_sigma_loop(trained):
    data = separable_data()
    sigmas, repeats = [0.3, 1.0, 3.0], 8
    batched = summarize_sweep(
        noise_sweep(trained, data.x_test, data.y_test, sigmas, repeats, seed=0, max_batch=1000, progress=False)
    )
    for s, row in zip(sigmas, batched.itertuples()):
        g = torch.Generator().manual_seed(100)
        loop = np.array(
            [accuracy(trained, data.x_test, data.y_test, s, generator=g, batch_size=128) for _ in range(repeats)]
        )
        se = math.sqrt(row.acc_std**2 / repeats + loop.std(ddof=1) ** 2 / repeats) + 1e-3
        assert abs(row.acc_mean - loop.mean()) < 4 * se, (s, row.acc_mean, loop.mean())
    assert batched.acc_mean.is_monotonic_decreasing and batched.acc_mean.iloc[0] > 0.5


def test_noise_sweep_table_and_seed(trained):
    data = separable_data(n_test=100)
    a = noise_sweep(trained, data.x_test, data.y_test, [0.0, 0.1, 10.0], 2, seed=3, max_batch=64, progress=False)
    b = noise_sweep(trained, data.x_test, data.y_test, [0.0, 0.1, 10.0], 2, seed=3, max_batch=64, progress=False)
    assert list(a.columns) == ["sigma", "repeat", "accuracy"] and len(a) == 6
    assert a.equals(b)
    clean = accuracy(trained, data.x_test, data.y_test)
    assert (a[a.sigma == 0.0].accuracy == clean).all()
    assert a[a.sigma == 10.0].accuracy.max() < 0.35
    assert all(m.sigma == 0.0 for m in trained.modules() if hasattr(m, "kind"))  # settings restored
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        noise_sweep(trained, data.x_test, data.y_test, [-1.0], progress=False)


def test_short_lenet5_run_on_real_cifar10_beats_chance(real_cifar10):
    """Real CIFAR-10 from each source that is set (the JPEG archive, the python release; see ``real_cifar10``):
    read whole, with the source's own label and image order, balanced classes, and LeNet-5 learns from 1,000 of its
    images."""
    full = load_cifar10(real_cifar10.path, download=False)
    assert full.source == real_cifar10.source, real_cifar10
    assert (len(full.y_train), len(full.y_test)) == (50_000, 10_000) and full.x_train.shape[1:] == (3, 32, 32)
    assert torch.bincount(full.y_train).tolist() == [5000] * 10 and torch.bincount(full.y_test).tolist() == [1000] * 10
    if real_cifar10.kind == "python-release":  # the release's own order: data_batch_1..5, then test_batch
        assert full.y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
        assert full.y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    else:  # the image-folder reader goes class by class
        assert bool((full.y_train.diff() >= 0).all() and (full.y_test.diff() >= 0).all())
    data = full.subset(train=1000, test=2000, seed=0)
    del full
    res = train(build_model("lenet5", seed=0), data, TrainConfig(epochs=4, lr=1e-3), device="cpu", progress=False)
    assert res.test_accuracy > 0.17, res.history  # chance is 0.10 (+-0.007 on 2000 images)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"sigma_train": -0.5}, "sigma must be a finite number >= 0"),
        ({"epochs": 5, "sigma_ramp_epochs": 9}, "sigma_ramp_epochs must be an integer in 0..epochs"),
    ],
)
def test_bad_train_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kwargs)


def test_tf32_is_off_unless_asked_for_and_restored():
    from paperlib.device import tf32

    flags = lambda: (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)  # noqa: E731
    saved = flags()
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default for convolutions
    try:
        with tf32(False):
            assert flags() == (False, False)
            with tf32(True):
                assert flags() == (True, True)
            assert flags() == (False, False)
        assert torch.backends.cudnn.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved

"""Training: Adam with cosine decay, batch 128, optional noisy training (docs/protocol.md §6, §9).

Data stay on the training device; each step draws a random batch index set,
augments it there (:func:`paperlib.data.augment`) and runs one Adam step. One
``torch.Generator`` on the device, seeded from ``TrainConfig.seed``, drives
the data order, the augmentation, the training sigma draws and the training
noise, so the same seed gives the same numbers on the CPU. Dropout (VGG-11)
draws from torch's global RNG instead; :func:`train` gives it a stream of its
own, seeded from the same seed, and restores the caller's afterwards.
Checkpoints hold both streams, so a resumed run continues them where they stopped.

Noisy training injects noise of kind ``TrainConfig.noise_kind`` (any kind of
:func:`paperlib.set_noise`, weight noise included). Its sigma is, per
``TrainConfig.sigma_sampling``:

- ``"fixed"``: ``sigma_e``, the (ramped) ``sigma_train`` of epoch ``e`` (the paper);
- ``"sample"``: variance-aware noisy training (arXiv 2503.16183, docs/protocol.md §9):
  a random sigma per training image, ``sigma_i = alpha * sigma_e + theta * |z_i|``,
  ``z_i ~ N(0, 1)`` drawn afresh in every step; mean ``alpha * sigma_e + theta * sqrt(2/pi)``;
- ``"epoch"``: the same formula with one ``z`` per epoch, used by the whole epoch.
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from .atomic import write_atomic
from .data import CIFAR10Data, augment
from .device import resolve_device, tf32
from .evaluate import accuracy
from .fastquant import fast_qat
from .noise import NOISE_KINDS, check_sigma, set_noise
from .quant import load_stats_collection_state, stats_collection_state
from .threads import numeric_threads

#: Learning rates of the paper and the authors' configs (docs/protocol.md §6).
_LR = {"lenet5": 1e-3, "resnet18": 1e-2}


def default_lr(arch: str, bits: int | None) -> float:
    """Initial learning rate: LeNet-5 1e-3; VGG-11 1e-3 fp32, 1e-4 QAT; ResNet-18 1e-2."""
    if arch == "vgg11":
        return 1e-3 if bits is None else 1e-4
    if arch not in _LR:
        raise ValueError(f"unknown arch {arch!r}; choose one of lenet5, vgg11, resnet18")
    return _LR[arch]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run besides the model."""

    epochs: int = 500
    """number of passes over the training set (paper: 500)"""
    lr: float = 1e-3
    """initial Adam learning rate; decays to 0 with a cosine over ``epochs`` (see :func:`default_lr`)"""
    batch_size: int = 128
    """images per step (paper: 128)"""
    sigma_train: float = 0.0
    """absolute sigma of the Gaussian noise at every noise module during training; 0 = no noisy training"""
    sigma_ramp_epochs: int = 0
    """ramp sigma linearly from 0 to ``sigma_train`` over this many epochs (authors' VGG-11: 100); 0 = no ramp"""
    seed: int = 0
    """seed of the data order, augmentation and training noise"""
    augment: bool = True
    """random crop (padding 4) and horizontal flip"""
    allow_tf32: bool = False
    """allow TF32 matmuls/convolutions on CUDA (faster, not fp32 numerics); no effect on the CPU"""
    noise_kind: str = "additive"
    """kind of the training noise: additive, multiplicative, combined or weight (see paperlib.set_noise)"""
    sigma_alpha: float = 1.0
    """variance-aware training: weight of the (ramped) sigma_train in each drawn sigma (dimensionless)"""
    sigma_theta: float = 0.0
    """variance-aware training: scale of the random part theta * |z| of each drawn sigma (absolute sigma units)"""
    sigma_sampling: str = "fixed"
    """training sigma: "fixed" (sigma_train), "sample" (a random sigma per image per step) or "epoch" (one per epoch)"""

    def __post_init__(self) -> None:
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        check_sigma(self.sigma_train)
        if not (isinstance(self.sigma_ramp_epochs, int) and 0 <= self.sigma_ramp_epochs <= self.epochs):
            raise ValueError(f"sigma_ramp_epochs must be an integer in 0..epochs, got {self.sigma_ramp_epochs!r}")
        if self.noise_kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise_kind {self.noise_kind!r}; choose one of {', '.join(NOISE_KINDS)}")
        if self.sigma_sampling not in SIGMA_SAMPLINGS:
            raise ValueError(
                f"unknown sigma_sampling {self.sigma_sampling!r}; choose one of {', '.join(SIGMA_SAMPLINGS)}"
            )
        for name in ("sigma_alpha", "sigma_theta"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (math.isfinite(value) and value >= 0)
            ):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.sigma_sampling == "fixed" and (self.sigma_alpha != 1.0 or self.sigma_theta != 0.0):
            raise ValueError(
                "sigma_alpha and sigma_theta only apply to a random training sigma; "
                "set sigma_sampling to 'sample' or 'epoch', or leave them at 1.0 and 0.0"
            )
        if self.sigma_sampling == "sample" and self.noise_kind == "weight":
            raise ValueError(
                "sigma_sampling='sample' draws one sigma per image, but weight noise takes one sigma "
                "per forward pass; use sigma_sampling='epoch' or another noise_kind"
            )

    def sigma_at(self, epoch: int) -> float:
        """Training sigma in ``epoch`` (0-based): the authors' "incremental" schedule (docs/protocol.md §6, §10).

        ``numpy.linspace(0, sigma_train, R)[epoch]`` for ``epoch < R``, ``sigma_train``
        after, with ``R = sigma_ramp_epochs`` (authors' VGG-11: ``R = 100``, so
        ``sigma_train`` is reached in epoch 99, the 100th). ``R = 1`` trains epoch 0
        without noise; ``R = 0`` is no ramp. Equal to numpy bit for bit.
        """
        if isinstance(epoch, bool) or not hasattr(epoch, "__index__") or epoch < 0:
            raise ValueError(f"epoch must be an integer >= 0 (0-based), got {epoch!r}")
        ramp = self.sigma_ramp_epochs
        if epoch >= ramp:
            return self.sigma_train
        if ramp == 1:
            return 0.0  # numpy.linspace(0, s, 1) == [0.0]
        if epoch == ramp - 1:
            return self.sigma_train  # numpy sets the endpoint exactly
        return epoch * (self.sigma_train / (ramp - 1))  # numpy: arange(num) * (delta / div) + start

    def draw_sigma(self, epoch: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """Random training sigmas ``alpha * sigma_at(epoch) + theta * |z|``, shape ``[n]`` (arXiv 2503.16183).

        ``z ~ N(0, 1)`` is drawn from ``generator`` (on its device), one per
        entry; their mean is ``alpha * sigma_at(epoch) + theta * sqrt(2 / pi)``.
        Used per image (``sigma_sampling="sample"``) or once per epoch (``"epoch"``).
        """
        z = torch.randn(n, generator=generator, device=generator.device)
        return z.abs_().mul_(self.sigma_theta).add_(self.sigma_alpha * self.sigma_at(epoch))

    def state(self) -> dict:
        """The config as a dict for checkpoints; fields at their default that older versions lacked are left out.

        So a checkpoint written before those fields existed still resumes.
        """
        return {k: v for k, v in asdict(self).items() if k not in _NEW_DEFAULTS or v != _NEW_DEFAULTS[k]}


#: Allowed values of ``TrainConfig.sigma_sampling``.
SIGMA_SAMPLINGS: tuple[str, ...] = ("fixed", "sample", "epoch")
#: TrainConfig fields added after the first release, with their defaults (left out of checkpoints when default).
_NEW_DEFAULTS: dict[str, object] = {
    "noise_kind": "additive",
    "sigma_alpha": 1.0,
    "sigma_theta": 0.0,
    "sigma_sampling": "fixed",
}


@contextlib.contextmanager
def _own_global_rng(seed: int, dev: torch.device, state: dict | None) -> Iterator[None]:
    """Run the block on its own stream of torch's global RNG, seeded from ``seed``; the caller's stream is restored.

    Dropout (VGG-11's classifier) draws from the global RNG, not from the run's
    generator; without this its masks depended on whatever the process had
    drawn before. ``state``: a checkpoint's :func:`_global_rng`, to resume that stream.
    """
    cuda = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        own = int(hashlib.sha256(f"paperlib global rng|{seed}".encode()).hexdigest()[:15], 16)
        torch.default_generator.manual_seed(own)
        for index in cuda:
            torch.cuda.default_generators[index].manual_seed(own)
        if state is not None:
            _set_global_rng(state, dev)
        yield


def _global_rng(dev: torch.device) -> dict:
    """torch's global RNG states (CPU, and ``dev`` when CUDA): dropout draws from them, not from the run's generator."""
    out = {"cpu": torch.get_rng_state()}
    if dev.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(dev)
    return out


def _set_global_rng(state: dict, dev: torch.device) -> None:
    """Restore what :func:`_global_rng` saved, so a resumed run draws the dropout masks of an uninterrupted one."""
    torch.set_rng_state(state["cpu"].cpu())
    if dev.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), dev)


def remove_checkpoint(path: str | os.PathLike) -> None:
    """Delete a checkpoint (or a file written beside it) and the temporary files of a killed write (``.<name>.*.tmp``).

    A process still writing the same checkpoint loses only its temporary file;
    :func:`paperlib.atomic.write_atomic` then writes it again.
    """
    path = Path(path)
    for leftover in [path, *path.parent.glob(f".{path.name}.*.tmp")]:
        leftover.unlink(missing_ok=True)


@dataclass
class TrainResult:
    """Outcome of :func:`train`; accuracies are fractions."""

    history: list[dict] = field(default_factory=list)
    """one dict per finished epoch: epoch, sigma_train (ramped), lr, loss, train_acc, test_acc; with a random
    training sigma also sigma_mean and sigma_std (over the epoch's images)"""
    test_accuracy: float = math.nan
    """clean (sigma 0) test accuracy after the last finished epoch"""
    diverged: bool = False
    """the loss became NaN or infinite; training stopped there"""
    error: str | None = None
    """what went wrong, when ``diverged``"""
    images_per_s: float = math.nan
    """training throughput over this call's steps (evaluation excluded)"""
    wall_time_s: float = 0.0
    """wall time of this call, evaluation included"""


def train(
    model: nn.Module,
    data: CIFAR10Data,
    config: TrainConfig,
    *,
    device: str | torch.device = "auto",
    checkpoint: str | os.PathLike | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` on ``data`` (moved to ``device``); resumable, NaN-safe.

    Args:
        model: a model from :func:`paperlib.build_model` (or any model with
            noise modules); moved to ``device`` and left in eval mode with
            noise off.
        data: training and test tensors (normalized).
        config: the run's settings.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` ...
        checkpoint: file written atomically after every epoch; when it exists
            (with the same config) training resumes from it.
        progress: show a tqdm bar (terminal and notebook).

    Returns:
        A :class:`TrainResult`. A NaN/inf loss stops training and is reported
        in the result (``diverged=True``), not raised.
    """
    dev = resolve_device(device)
    model.to(dev)
    data = data.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    gen = torch.Generator(dev).manual_seed(config.seed)
    result, start, global_rng = TrainResult(), 0, None
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        if state["config"] != config.state():
            raise ValueError(
                f"checkpoint {ckpt} was written for another config ({state['config']}); delete it or pass another path"
            )
        model.load_state_dict(state["model"])
        load_stats_collection_state(model, state["quant_stats"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"].cpu())  # set_state takes a CPU byte tensor, also for a CUDA generator
        global_rng = state.get("torch_rng")  # older checkpoints lack it
        result.history, start = state["history"], state["epoch"]
    n = len(data.y_train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    t0, train_time, images = time.perf_counter(), 0.0, 0
    with (
        numeric_threads(),
        tf32(config.allow_tf32),
        _own_global_rng(config.seed, dev, global_rng),
        fast_qat(model),
        tqdm(total=config.epochs, initial=start, desc="train", unit="epoch", disable=not progress, leave=False) as bar,
    ):
        for epoch in range(start, config.epochs):
            sigma = config.sigma_at(epoch)
            model.train()
            sampling = config.sigma_sampling
            if sampling == "epoch":
                sigma_epoch = float(config.draw_sigma(epoch, 1, gen)[0])
            set_noise(model, sigma_epoch if sampling == "epoch" else sigma, kind=config.noise_kind, generator=gen)
            sigma_sum = torch.zeros((), device=dev, dtype=torch.float64)  # "sample": sums over the epoch's images
            sigma_sq = torch.zeros((), device=dev, dtype=torch.float64)  # of the drawn sigma and of its square
            t_ep = time.perf_counter()
            order = torch.randperm(n, generator=gen, device=dev)
            loss_sum = torch.zeros((), device=dev)
            correct = torch.zeros((), device=dev, dtype=torch.long)
            for step in range(steps_per_epoch):
                idx = order[step * config.batch_size : (step + 1) * config.batch_size]
                xb, yb = data.x_train[idx], data.y_train[idx]
                if config.augment:
                    xb = augment(xb, gen)
                if sampling == "sample":
                    drawn = config.draw_sigma(epoch, len(yb), gen)
                    set_noise(model, drawn, kind=config.noise_kind, generator=gen)
                    sigma_sum += drawn.double().sum()
                    sigma_sq += drawn.double().square().sum()
                out = model(xb)
                loss = F.cross_entropy(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * len(yb)
                correct += (out.argmax(1) == yb).sum()
            mean_loss = float(loss_sum) / n  # one host sync per epoch
            train_time += time.perf_counter() - t_ep
            images += n
            if not math.isfinite(mean_loss):
                result.diverged = True
                result.error = (
                    f"loss became {mean_loss} in epoch {epoch} (sigma_train={sigma:g}, lr={sched.get_last_lr()[0]:.3g})"
                )
                break
            lr = sched.get_last_lr()[0]
            sched.step()
            test_acc = accuracy(model, data.x_test, data.y_test, 0.0)
            entry = {
                "epoch": epoch + 1,
                "sigma_train": sigma,
                "lr": lr,
                "loss": mean_loss,
                "train_acc": float(correct) / n,
                "test_acc": test_acc,
            }
            if sampling == "epoch":
                entry.update(sigma_mean=sigma_epoch, sigma_std=0.0)
            elif sampling == "sample":
                mean = float(sigma_sum) / n
                entry.update(sigma_mean=mean, sigma_std=math.sqrt(max(0.0, float(sigma_sq) / n - mean * mean)))
            result.history.append(entry)
            bar.update()
            bar.set_postfix(loss=f"{mean_loss:.3f}", test_acc=f"{test_acc:.3f}")
            if ckpt is not None:
                state = {
                    "config": config.state(),
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "quant_stats": stats_collection_state(model),
                    "optimizer": opt.state_dict(),
                    "scheduler": sched.state_dict(),
                    "generator": gen.get_state(),
                    "history": result.history,
                    "torch_rng": _global_rng(dev),
                }
                write_atomic(ckpt, lambda f, state=state: torch.save(state, f))
    set_noise(model, 0.0)
    model.eval()
    if result.history:
        result.test_accuracy = result.history[-1]["test_acc"]
    result.images_per_s = images / train_time if train_time > 0 else math.nan
    result.wall_time_s = time.perf_counter() - t0
    return result

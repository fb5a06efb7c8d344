"""paperlib: the reproducible companion of *On Hardening DNNs against Noisy Computations* (arXiv 2501.14531).

Models with a noise module after every layer (fp32 or Brevitas QAT), noise
injection, training, noise sweeps and the midpoint noise level.
"""
from .data import CIFAR10Data, DataNotFoundError, augment, load_cifar10
from .device import resolve_device
from .evaluate import DEFAULT_SIGMAS, accuracy, noise_sweep, summarize_sweep
from .midpoint import MidpointFit, fit_midpoint
from .models import ARCHS, build_model
from .noise import GaussianNoise, noise_modules, noise_settings, set_noise
from .quant import BIT_WIDTHS, CONST_SCALE_MAX
from .stats import ModelStats, model_stats
from .training import TrainConfig, TrainResult, default_lr, train

__version__ = "0.1.0"

__all__ = [
    "ARCHS", "BIT_WIDTHS", "CONST_SCALE_MAX", "CIFAR10Data", "DEFAULT_SIGMAS", "DataNotFoundError",
    "GaussianNoise", "MidpointFit", "ModelStats", "TrainConfig", "TrainResult", "accuracy", "augment",
    "build_model", "default_lr", "fit_midpoint", "load_cifar10", "model_stats", "noise_modules",
    "noise_settings", "noise_sweep", "resolve_device", "set_noise", "summarize_sweep", "train",
]

"""paperlib: the reproducible companion of *On Hardening DNNs against Noisy Computations* (arXiv 2501.14531).

Models with a noise module after every layer (fp32 or Brevitas QAT), noise
injection, training, noise sweeps and the midpoint noise level; run specs,
a result cache, profiles and sweeps on any executor (Dask included); the
paper's experiments, numbers and plots for the notebooks (``reproduce``,
``paper``, ``plotting``, ``Study``).
"""
from .data import CIFAR10Data, DataNotFoundError, augment, load_cifar10
from .device import resolve_device
from .evaluate import DEFAULT_SIGMAS, accuracy, evaluate_pairs, noise_sweep, summarize_sweep
from .experiment import CacheWarning, RunResult, RunSpec, run
from .midpoint import MidpointFit, fit_midpoint
from . import paper, plotting, reproduce
from .models import ARCH_NAMES, ARCHS, build_model
from .noise import GaussianNoise, noise_modules, noise_settings, set_noise
from .profiles import Profile, load_profile
from .quant import BIT_WIDTHS, CONST_SCALE_MAX
from .stats import ModelStats, model_stats
from .study import Study
from .sweep import dask_executor, run_sweep
from .training import TrainConfig, TrainResult, default_lr, train

__version__ = "0.1.0"

__all__ = [
    "ARCH_NAMES", "ARCHS", "BIT_WIDTHS", "CONST_SCALE_MAX", "CIFAR10Data", "CacheWarning", "DEFAULT_SIGMAS", "DataNotFoundError",
    "GaussianNoise", "MidpointFit", "ModelStats", "Profile", "RunResult", "RunSpec", "Study", "TrainConfig", "TrainResult",
    "accuracy", "augment", "build_model", "dask_executor", "default_lr", "evaluate_pairs", "fit_midpoint",
    "load_cifar10", "load_profile", "model_stats", "noise_modules", "noise_settings", "noise_sweep",
    "resolve_device", "run", "run_sweep", "set_noise", "summarize_sweep", "train",
]

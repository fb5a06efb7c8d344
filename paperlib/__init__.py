"""paperlib: the reproducible companion of *On Hardening DNNs against Noisy Computations* (arXiv 2501.14531).

Models with a noise module after every layer (fp32 or Brevitas QAT), noise
injection, training, noise sweeps and the midpoint noise level; run specs,
a result cache, profiles and sweeps on any executor (Dask included); the
paper's experiments, numbers and plots for the notebooks (``reproduce``,
``paper``, ``plotting``, ``Study``) and beyond it (``outlook``).
"""
import logging as _logging

# Brevitas imports torch.utils.cpp_extension, which logs a warning on machines with a CUDA folder but no CUDA
# runtime ("No CUDA runtime is found"); it says nothing about paperlib's numbers and would land in every notebook.
_logging.getLogger("torch.utils.cpp_extension").setLevel(_logging.ERROR)

from . import outlook, paper, plotting, reproduce  # the notebooks' modules
from .data import CIFAR10Data, DataNotFoundError, augment, load_cifar10
from .device import resolve_device
from .evaluate import DEFAULT_SIGMAS, accuracy, evaluate_pairs, noise_sweep, summarize_sweep
from .experiment import CacheWarning, RunResult, RunSpec, run
from .instrument import add_noise
from .midpoint import MidpointFit, fit_midpoint
from .models import ARCH_NAMES, ARCHS, build_model
from .noise import (
    NOISE_KINDS,
    GaussianNoise,
    WeightNoise,
    noise_modules,
    noise_settings,
    noise_sites,
    set_noise,
    weight_layers,
)
from .profiles import Profile, load_profile
from .quant import BIT_WIDTHS, CONST_SCALE_MAX
from .stats import ModelStats, model_stats
from .study import Study
from .sweep import dask_executor, run_sweep
from .training import SIGMA_SAMPLINGS, TrainConfig, TrainResult, default_lr, train
from .walking import fit_layer_curves, layer_curves, layer_sensitivity, noise_site_table

__version__ = "0.1.0"

__all__ = [
    "ARCH_NAMES",
    "ARCHS",
    "BIT_WIDTHS",
    "CONST_SCALE_MAX",
    "CIFAR10Data",
    "CacheWarning",
    "DEFAULT_SIGMAS",
    "DataNotFoundError",
    "GaussianNoise",
    "MidpointFit",
    "NOISE_KINDS",
    "SIGMA_SAMPLINGS",
    "WeightNoise",
    "ModelStats",
    "Profile",
    "RunResult",
    "RunSpec",
    "Study",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "add_noise",
    "augment",
    "build_model",
    "dask_executor",
    "default_lr",
    "evaluate_pairs",
    "fit_layer_curves",
    "fit_midpoint",
    "layer_curves",
    "layer_sensitivity",
    "load_cifar10",
    "load_profile",
    "model_stats",
    "noise_modules",
    "noise_settings",
    "noise_site_table",
    "noise_sites",
    "noise_sweep",
    "outlook",
    "paper",
    "plotting",
    "reproduce",
    "resolve_device",
    "run",
    "run_sweep",
    "set_noise",
    "summarize_sweep",
    "train",
    "weight_layers",
]

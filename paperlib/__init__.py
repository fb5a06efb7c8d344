"""paperlib: the reproducible companion of *On Hardening DNNs against Noisy Computations* (arXiv 2501.14531).

Three layers, each importing only the ones above it in this list:

- the toolbox (``paperlib.*`` modules): models with a noise module after every
  layer (fp32 or Brevitas QAT), noise injection, data, training, evaluation,
  noise sweeps, the midpoint noise level, walking noise, model sizes;
- the run engine (``paperlib.runs``): run specs, the result cache and its
  fingerprint, sweeps on any executor (Dask included), profiles, provenance;
- the paper layer (``paperlib.paper``, imported on its own: it brings
  matplotlib and seaborn): one module per notebook (the paper's figures and
  tables, the experiments beyond it), what they share, and the notebooks'
  session.

``import paperlib`` gives the toolbox and the engine's entry points.
"""
import logging as _logging

from . import threads as _threads  # noqa: F401  first: it asks OpenMP's idle threads to sleep before torch loads (its docstring)

# Brevitas imports torch.utils.cpp_extension, which logs a warning on machines with a CUDA folder but no CUDA
# runtime ("No CUDA runtime is found"); it says nothing about paperlib's numbers and would land in every notebook.
_logging.getLogger("torch.utils.cpp_extension").setLevel(_logging.ERROR)

from .data import CIFAR10Data, DataNotFoundError, augment, load_cifar10
from .device import resolve_device
from .evaluate import DEFAULT_SIGMAS, accuracy, evaluate_pairs, noise_sweep, summarize_sweep
from .instrument import add_noise
from .midpoint import MidpointFit, fit_midpoint
from .model_size import ModelStats, model_stats
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
from .pack import pack_evaluate_pairs, pack_models, train_pack
from .quant import BIT_WIDTHS, CONST_SCALE_MAX
from .resume import train  # paperlib.training.train, resuming dynamic scales exactly (paperlib.resume)
from .runs import (
    PROFILES,
    CacheWarning,
    Profile,
    ResultsNotWritableError,
    RunResult,
    RunSpec,
    dask_executor,
    load_profile,
    run,
    run_sweep,
)
from .training import SIGMA_SAMPLINGS, TrainConfig, TrainResult, default_lr
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
    "ModelStats",
    "NOISE_KINDS",
    "PROFILES",
    "Profile",
    "ResultsNotWritableError",
    "RunResult",
    "RunSpec",
    "SIGMA_SAMPLINGS",
    "TrainConfig",
    "TrainResult",
    "WeightNoise",
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
    "pack_evaluate_pairs",
    "pack_models",
    "resolve_device",
    "run",
    "run_sweep",
    "set_noise",
    "summarize_sweep",
    "train",
    "train_pack",
    "weight_layers",
]

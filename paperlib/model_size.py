"""Model statistics for Table II: parameters, multiply-accumulates, noisy layers (docs/protocol.md §4)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .evaluate import eval_mode
from .noise import noise_modules, noise_settings, set_noise


@dataclass(frozen=True)
class ModelStats:
    """Size of a model."""

    params: int
    """number of trainable parameters"""
    macs: int
    """multiply-accumulates of one forward pass of one 3x32x32 image (FLOPs / 2, counted by torch)"""
    noisy_layers: int
    """number of noise modules"""


def model_stats(model: nn.Module, input_shape: tuple[int, ...] = (1, 3, 32, 32)) -> ModelStats:
    """Count parameters, and multiply-accumulates with ``torch.utils.flop_counter`` on one input.

    Convolutions and matrix products are counted (torch counts 2 FLOPs per
    multiply-accumulate); ReLU, pooling, BatchNorm and quantizers are not.
    Runs in eval mode with noise off; restores both. (Gradients stay enabled:
    the counter's module tracker fails on Brevitas layers under ``no_grad``.)
    """
    p = next(model.parameters())
    counter = FlopCounterMode(display=False)
    with eval_mode(model), noise_settings(model):
        if noise_modules(model):
            set_noise(model, 0.0)
        with counter:
            model(torch.zeros(input_shape, device=p.device, dtype=p.dtype))
    return ModelStats(
        params=sum(q.numel() for q in model.parameters() if q.requires_grad),
        macs=counter.get_total_flops() // 2 // input_shape[0],
        noisy_layers=len(noise_modules(model)),
    )

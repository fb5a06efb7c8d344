"""The paper's published numbers (arXiv 2501.14531, Tables I-II and the text on Fig. 2; docs/protocol.md §4, §7).

Accuracies are percentages and ``sigma_mid`` absolute noise levels, exactly as
printed; ``rel_err`` is the printed relative error as a fraction (0.5% ->
0.005). ``bits`` is None for fp32, ``scale`` None for dynamic scaling.
"""
from __future__ import annotations

import pandas as pd

_TABLE_I_ROWS: list[tuple] = [
    # arch, bits, scale, peak accuracy (%), sigma_mid, relative error
    ("vgg11", None, None, 87.7, 0.154, 0.005),
    ("vgg11", 8, None, 87.2, 0.024, 0.001),
    ("vgg11", 8, 0.5, 84.3, 0.145, 0.002),
    ("vgg11", 8, 1.0, 82.2, 0.2, 0.002),
    ("vgg11", 8, 2.0, 76.8, 0.222, 0.003),
    ("vgg11", 8, 3.0, 10.0, 0.013, 0.0),
    ("vgg11", 4, None, 86.5, 0.031, 0.001),
    ("vgg11", 4, 0.5, 84.5, 0.12, 0.002),
    ("vgg11", 4, 1.0, 82.6, 0.177, 0.002),
    ("vgg11", 4, 2.0, 78.3, 0.23, 0.003),
    ("vgg11", 4, 3.0, 10.0, 0.010, 0.001),
    ("resnet18", None, None, 87.0, 0.495, 0.002),
    ("resnet18", 8, None, 87.3, 0.452, 0.003),
    ("resnet18", 8, 0.5, 87.1, 0.526, 0.003),
    ("resnet18", 8, 1.0, 87.0, 0.557, 0.003),
    ("resnet18", 8, 4.0, 86.5, 0.577, 0.003),
    ("resnet18", 8, 8.0, 85.7, 0.625, 0.004),
    ("resnet18", 8, 10.0, 10.0, 0.05, 0.025),
    ("resnet18", 4, None, 86.8, 0.281, 0.003),
    ("resnet18", 4, 0.5, 86.5, 0.492, 0.004),
    ("resnet18", 4, 1.0, 86.7, 0.605, 0.003),
    ("resnet18", 4, 4.0, 86.5, 0.657, 0.005),
    ("resnet18", 4, 8.0, 86.5, 0.665, 0.003),
    ("resnet18", 4, 10.0, 10.0, 0.005, 0.013),
]

_TABLE_II_ROWS: list[tuple] = [
    # arch, FLOPs (M) as printed, parameters (M) as printed, noisy layers, peak accuracy (%),
    # sigma_mid without / with noisy training
    ("lenet5", 0.66, 0.06, 12, 75.0, 0.286, 2.59),
    ("vgg11", 276.56, 132.86, 27, 87.7, 0.154, 2.957),
    ("resnet18", 37.53, 11.69, 33, 86.9, 0.494, 3.023),
]

_FIG2C_ROWS: list[tuple] = [
    # LeNet-5 points of Fig. 2 (c) that the paper states in numbers (the rest is only drawn):
    # bits, scale, peak accuracy (%), sigma_mid, what the text says
    (None, None, 75.0, 0.286, "fp32 baseline (Table II)"),
    (8, 8.0, 70.0, None, "8-bit, s = 8: accuracy 75% -> 70%, sigma_mid 'rises by over 200%' (> 0.86)"),
]


def table_i() -> pd.DataFrame:
    """Table I: VGG-11 and ResNet-18 trained without noise, fp32 and 8/4-bit QAT."""
    return pd.DataFrame(_TABLE_I_ROWS, columns=["arch", "bits", "scale", "peak_acc_pct", "sigma_mid", "rel_err"])


def table_ii() -> pd.DataFrame:
    """Table II: per architecture, the printed FLOPs/parameters (M), noisy layers, fp32 peak accuracy and sigma_mid.

    The printed FLOPs are multiply-accumulates, and for VGG-11/ResNet-18 those
    of torchvision's 1000-class ImageNet models at 32x32 (docs/protocol.md §4).
    """
    return pd.DataFrame(_TABLE_II_ROWS, columns=["arch", "flops_m", "params_m", "noisy_layers", "peak_acc_pct",
                                                 "sigma_mid", "sigma_mid_noisy"])


def fig2c_points() -> pd.DataFrame:
    """The LeNet-5 points of Fig. 2 (c) the paper gives as numbers; the others exist only as a drawing."""
    return pd.DataFrame(_FIG2C_ROWS, columns=["bits", "scale", "peak_acc_pct", "sigma_mid", "source"])

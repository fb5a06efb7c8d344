"""Noise modules for any model: :func:`add_noise` (docs/protocol.md §2 placement on your own network).

:func:`add_noise` puts a :class:`~paperlib.noise.GaussianNoise` module after
every Conv / Linear / ReLU / MaxPool / AvgPool / AdaptiveAvgPool of an
arbitrary ``nn.Module`` (fp32 or Brevitas ``QuantConv2d`` / ``QuantLinear`` /
``QuantReLU``), and one on the input, following the paper's placement rule
(docs/protocol.md §2): Flatten, Dropout and BatchNorm get none. Then
:func:`paperlib.set_noise`, :func:`paperlib.noise_sweep`,
:func:`paperlib.fit_midpoint` and :func:`paperlib.walking.layer_sensitivity`
work on it as on our own models.

Example, torchvision's ResNet-18::

    model = add_noise(torchvision.models.resnet18(num_classes=10))
    len(noise_modules(model))  # 33, as our ResNet-18 (docs/protocol.md §2)

torchvision's ResNet-18 gets **33** noise modules, the count of the paper's
Table II and of :class:`paperlib.models.ResNet18`: input 1; stem conv, relu,
maxpool 3; 8 basic blocks x (conv1, relu, conv2) 24; the 3 downsample 1x1
convs 3; avgpool and fc 2. There is no difference to explain: each
torchvision ``BasicBlock`` applies its one ``relu`` module twice (after
``bn1`` and after the residual add), so its noise module fires twice while
counting once, exactly as in the authors' code and in our ResNet-18; and the
downsample noise sits between the 1x1 conv and its BatchNorm, as in ours.
(The differences between the two networks are elsewhere: torchvision's fc has
a bias, and its init differs.)
"""
from __future__ import annotations

import brevitas.nn as qnn
from torch import Tensor, nn

from .noise import GaussianNoise, noise_modules

#: Module types that get a noise module after them (Brevitas' QuantConv2d/QuantLinear subclass Conv/Linear).
NOISY_TYPES: tuple[type, ...] = (
    nn.modules.conv._ConvNd, nn.Linear, nn.ReLU, qnn.QuantReLU,
    nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
)
#: Name of the input noise module that :func:`add_noise` registers on the model.
INPUT_NOISE = "input_noise"


def _input_noise_pre_hook(module: nn.Module, args: tuple) -> tuple:
    if not args or not isinstance(args[0], Tensor):
        raise TypeError(
            f"the input noise of {type(module).__name__} needs the input tensor as the first positional argument"
        )
    return (module._modules[INPUT_NOISE](args[0]), *args[1:])


def _wrap(parent: nn.Module, targets: tuple[type, ...]) -> int:
    """Replace every target child ``m`` below ``parent`` by ``Sequential(m, GaussianNoise())``; returns the count."""
    count = 0
    for name, child in list(parent.named_children()):
        if isinstance(child, targets):  # never look inside a target (a QuantReLU holds an nn.ReLU of its own)
            setattr(parent, name, nn.Sequential(child, GaussianNoise()))
            count += 1
        else:
            count += _wrap(child, targets)
    return count


def add_noise(model: nn.Module, *, input: bool = True, targets: tuple[type, ...] = NOISY_TYPES) -> nn.Module:
    """Insert noise modules into ``model`` in place, after every layer of the paper's rule, and return it.

    Every child module ``m`` (at any depth) of a type in ``targets`` is
    replaced by ``nn.Sequential(m, GaussianNoise())``, so a module that the
    forward pass calls twice (like torchvision ``BasicBlock.relu``) adds noise
    twice, as in the authors' code. With ``input=True`` a noise module
    ``model.input_noise`` adds noise to the model's first positional input: for
    an ``nn.Sequential`` it becomes the first module of the sequence; for any
    other model it is registered as the first child and applied by a forward
    pre-hook. Either way :func:`paperlib.noise_modules` lists it first, and
    lists the others in registration order, which is forward order for models
    that register their layers in the order they run (torchvision's do).

    The noise is off (sigma 0) until :func:`paperlib.set_noise`; with sigma 0
    the model computes exactly what it computed before. The state dict keys of
    wrapped layers gain a ``.0`` (``conv1.weight`` -> ``conv1.0.weight``), so
    load pretrained weights before calling this.

    Args:
        model: any ``nn.Module`` without noise modules; its input ``[B, ...]``.
        input: also add noise to the model's input.
        targets: module types that get a noise module after them (default:
            Conv, Linear, ReLU, MaxPool, AvgPool, AdaptiveAvgPool, Brevitas
            QuantReLU); Flatten, Dropout and BatchNorm get none (docs/protocol.md §2).

    Returns:
        ``model`` itself, with its noise modules.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"add_noise needs a torch.nn.Module, got {type(model).__name__}")
    existing = len(noise_modules(model))
    if existing:
        raise ValueError(
            f"the model already has {existing} GaussianNoise modules; "
            "add_noise needs a model without noise modules (ours come with theirs)"
        )
    if isinstance(model, targets):
        raise ValueError(
            f"add_noise needs a model that contains layers, not a single {type(model).__name__}; "
            "wrap it in an nn.Sequential first"
        )
    if input and hasattr(model, INPUT_NOISE):
        raise ValueError(f"the model already has an attribute {INPUT_NOISE!r}; rename it or pass input=False")
    if _wrap(model, targets) == 0:
        raise ValueError("the model has no Conv, Linear, ReLU or pooling layers to add noise after")
    if input:
        model._modules = {INPUT_NOISE: GaussianNoise(), **model._modules}  # first child: first in noise_modules
        if (
            type(model).forward is not nn.Sequential.forward
        ):  # a Sequential runs its children in order, the input noise first
            model.register_forward_pre_hook(_input_noise_pre_hook)
    return model

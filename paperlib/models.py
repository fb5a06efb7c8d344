"""LeNet-5, VGG-11 and ResNet-18 with a noise module after every layer (docs/protocol.md §2, §4).

Every model registers its modules in the order in which they first run, so
``noise_modules(model)`` lists the noise modules in forward order.

One class per architecture builds both the fp32 and the QAT network; where the
authors' separate fp32 and QAT classes (UniHD-CEG/VANT ``models_noisy/``)
differ, the difference follows ``layers.quantized`` (docs/protocol.md §10):

- last layer: a bias in fp32 (``lenet.py``, ``vgg.py``, ``resnet_new.py``),
  none in QAT (``lenet_qat.py``, ``vgg_qat.py``, ``resnet_qat.py``);
- VGG-11: the Kaiming / N(0, 0.01) init only in QAT (``vgg_qat.py``
  ``_initialize_weights``), PyTorch's default init in fp32 (``vgg.py`` has
  none); the two hidden fc layers quantize their weights per output channel;
- ResNet-18: the 1x1 downsample conv has a bias in QAT only.

Kept the same in both (a choice, not the authors' fp32 code): fp32 LeNet-5
uses max pooling like ``lenet_qat.py`` and walking-noise's ``lenet.py``
(VANT's fp32 ``lenet.py`` uses average pooling), so that the fp32 curve of
Fig. 2 is the same architecture as the QAT ones.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .noise import GaussianNoise
from .quant import Layers

ARCHS: tuple[str, ...] = ("lenet5", "vgg11", "resnet18")
#: The architectures' names as the paper writes them.
ARCH_NAMES: dict[str, str] = {"lenet5": "LeNet-5", "vgg11": "VGG-11", "resnet18": "ResNet-18"}
#: VGG config "A" (VGG-11); ``"M"`` is a 2x2 max-pool.
VGG11_CFG: tuple = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _noisy(*layers: nn.Module) -> nn.Sequential:
    """``layer -> noise`` (or ``layer1 -> layer2 -> noise``) as one block."""
    return nn.Sequential(*layers, GaussianNoise())


class LeNet5(nn.Sequential):
    """LeNet-5 for 32x32x3 input, 12 noise modules, no BatchNorm, PyTorch's default init.

    input -> conv 3->6 5x5 -> relu -> maxpool 2 -> conv 6->16 5x5 -> relu ->
    maxpool 2 -> flatten -> fc 400->120 -> relu -> fc 120->84 -> relu ->
    fc 84->10; noise after each, and on the input. The last fc has a bias in
    fp32 and none in QAT, as the authors' ``lenet.py`` / ``lenet_qat.py``.
    Max pooling in both (see the module docstring).
    Input ``[B, 3, 32, 32]``, output logits ``[B, 10]``.
    """

    def __init__(self, layers: Layers, num_classes: int = 10) -> None:
        super().__init__(
            GaussianNoise(),
            _noisy(layers.conv(3, 6, 5)), _noisy(layers.relu()), _noisy(nn.MaxPool2d(2)),
            _noisy(layers.conv(6, 16, 5)), _noisy(layers.relu()), _noisy(nn.MaxPool2d(2)),
            nn.Flatten(),
            _noisy(layers.linear(16 * 5 * 5, 120)), _noisy(layers.relu()),
            _noisy(layers.linear(120, 84)), _noisy(layers.relu()),
            _noisy(layers.linear(84, num_classes, bias=not layers.quantized)),
        )


class VGG11(nn.Module):
    """VGG-11 (config "A") without BatchNorm, 27 noise modules (authors' ``VGG11-noBN``).

    Features: 8 x (3x3 conv with bias -> noise -> relu -> noise), 5 x (maxpool
    -> noise), after a noise module on the input. Classifier: fc 512->4096,
    relu, dropout 0.5, fc 4096->4096, relu, dropout 0.5, fc 4096->10, noise
    after each fc and relu. As the authors' classes (docs/protocol.md §10):

    - QAT (``vgg_qat.py``): the two hidden fc layers quantize their weights per
      output channel, the last per tensor; the last fc has no bias; init
      Kaiming-normal (fan_out) convs, N(0, 0.01) linear weights, zero biases;
    - fp32 (``vgg.py``): the last fc has a bias; PyTorch's default init.

    Input ``[B, 3, 32, 32]``, output ``[B, 10]``.
    """

    def __init__(self, layers: Layers, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        feats: list[nn.Module] = [GaussianNoise()]
        cin = 3
        for item in VGG11_CFG:
            if item == "M":
                feats.append(_noisy(nn.MaxPool2d(2, 2)))
            else:
                feats += [_noisy(layers.conv(cin, item, 3, padding=1)), _noisy(layers.relu())]
                cin = item
        self.features = nn.Sequential(*feats)
        self.classifier = nn.Sequential(
            _noisy(layers.linear(512, 4096, per_channel=True)), _noisy(layers.relu()), nn.Dropout(dropout),
            _noisy(layers.linear(4096, 4096, per_channel=True)), _noisy(layers.relu()), nn.Dropout(dropout),
            _noisy(layers.linear(4096, num_classes, bias=not layers.quantized)),
        )
        if layers.quantized:
            self._init_qat_weights()

    def _init_qat_weights(self) -> None:
        """The init of the authors' ``VGG_QAT._initialize_weights`` (their fp32 ``VGG`` has none)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    """ResNet basic block as in the authors' ``BlockQAT`` / ``Block``: 3 noise modules (4 with downsampling).

    conv1 -> noise -> bn1 -> relu -> noise -> conv2 -> noise -> bn2 -> (+ skip)
    -> relu -> noise. The block has one ReLU+noise module that runs twice
    (after conv1 and after the residual add), so it fires twice while counting
    once (docs/protocol.md §2). The downsample path is 1x1 conv -> noise -> BN;
    its conv has a bias in QAT (``resnet_qat.py``) and none in fp32
    (``resnet_new.py``). The 3x3 convs have biases in both. BatchNorm gets no noise.
    """

    def __init__(self, layers: Layers, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _noisy(layers.conv(cin, cout, 3, stride=stride, padding=1))
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = _noisy(layers.relu())
        self.conv2 = _noisy(layers.conv(cout, cout, 3, padding=1))
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            shortcut = layers.conv(cin, cout, 1, stride=stride, bias=layers.quantized)
            self.downsample = nn.Sequential(shortcut, GaussianNoise(), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18 in torchvision's layout with the ImageNet stem kept on 32x32 input, 33 noise modules.

    Stem: noise -> 7x7/2 conv -> noise -> BN -> relu -> noise -> 3x3/2 maxpool
    -> noise; 4 stages of 2 :class:`BasicBlock` (64, 128, 256, 512); global
    avgpool -> noise; fc 512->10 -> noise, with a bias in fp32 and none in QAT
    (the authors' ``resnet_new.py`` / ``resnet_qat.py``). PyTorch's default
    init (the authors' code has none of its own). The 7x7/2 stem in both: the
    public ``resnet_new.py`` takes a 3x3/1 stem for inputs under 224 px, but its
    comments say the CIFAR-10 experiments used the 7x7/2 one, which
    ``resnet_qat.py`` always uses (docs/protocol.md §10).
    Input ``[B, 3, 32, 32]``, output ``[B, 10]``.
    """

    def __init__(self, layers: Layers, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(GaussianNoise(), layers.conv(3, 64, 7, stride=2, padding=3), GaussianNoise())
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = _noisy(layers.relu())
        self.maxpool = _noisy(nn.MaxPool2d(3, stride=2, padding=1))
        stages, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages.append(nn.Sequential(BasicBlock(layers, cin, cout, stride), BasicBlock(layers, cout, cout)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = _noisy(nn.AdaptiveAvgPool2d(1))
        self.fc = _noisy(layers.linear(512, num_classes, bias=not layers.quantized))

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


_BUILDERS = {"lenet5": LeNet5, "vgg11": VGG11, "resnet18": ResNet18}


def build_model(arch: str, bits: int | None = None, scale: float | None = None, seed: int | None = None) -> nn.Module:
    """Build one of the paper's CIFAR-10 models.

    Args:
        arch: ``"lenet5"``, ``"vgg11"`` or ``"resnet18"``.
        bits: ``None`` for fp32, else 4, 8 or 16 (weights and activations).
        scale: ``None`` for dynamic activation scaling, or the constant step
            ``s > 0`` (clipping at ``M * s``, docs/protocol.md §5). Needs ``bits``.
        seed: seeds the weight initialisation (``None``: torch's global RNG).

    Returns:
        The model in training mode, noise off (sigma 0 at every noise module).
    """
    if arch not in _BUILDERS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(ARCHS)}")
    layers = Layers(bits, scale)
    if seed is None:
        return _BUILDERS[arch](layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _BUILDERS[arch](layers)

import pytest
import torch
from brevitas.nn import QuantConv2d, QuantReLU
from conftest import assert_frozen_equals_brevitas

from paperlib import TrainConfig, build_model, set_noise, train
from paperlib.data import CIFAR10Data
from paperlib.inference import frozen_quantizers


@pytest.mark.parametrize("arch", ["lenet5", "resnet18"])
@pytest.mark.parametrize("bits,scale", [(8, 1.0), (4, 0.5), (8, None), (4, None)])
def test_frozen_quantizers_give_bitwise_identical_outputs(arch, bits, scale):
    model = build_model(arch, bits, scale, seed=0)
    if scale is None:  # leave Brevitas' statistics phase so that the learned scale is used
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(124, 3, 32, 32, generator=g), torch.randint(0, 10, (124,), generator=g)
        train(model, CIFAR10Data(x, y, x[:4], y[:4], "random"), TrainConfig(epochs=1, batch_size=4, augment=False),
              device="cpu", progress=False)
    assert_frozen_equals_brevitas(model.eval(), 3 * torch.randn(16, 3, 32, 32), (QuantConv2d, QuantReLU))


def test_frozen_quantizers_keep_the_noise_and_refuse_training_mode():
    model = build_model("lenet5", 8, 1.0, seed=0).eval()
    x = torch.randn(4, 3, 32, 32)
    set_noise(model, 0.5, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a = model(x)
        set_noise(model, 0.5, generator=torch.Generator().manual_seed(3))
        with frozen_quantizers(model):
            b = model(x)
    assert torch.equal(a, b)
    with pytest.raises(RuntimeError, match="call model.eval\\(\\) first"):
        with frozen_quantizers(model.train()):
            pass

"""One prepared check of a device (a GPU): QAT speed and exactness there, in one short run.

    python -m benchmarks.gpu_check --device cuda --out gpu_check.json     # about 2 minutes on one GPU
    python -m benchmarks.gpu_check --device cpu --quick                   # what tests/test_devices.py runs

For LeNet-5 and ResNet-18 on ``--device``:

- ``train``: training images/s (batch 128, random images, Adam) in fp32 and at
  8 bits with a constant scale and with a dynamic scale, on the fast QAT path
  (:mod:`paperlib.fastquant`, what :func:`paperlib.train` runs) and on
  Brevitas' own modules; and the QAT/fp32 time ratio;
- ``fast_vs_brevitas``: a few training steps from the same start on both
  paths: whether outputs, gradients and the final state are bit for bit equal,
  and the largest absolute difference (CUDA kernels may reorder sums: expect
  float-level differences there, not on the CPU);
- ``frozen_vs_brevitas``: evaluation with frozen quantizers
  (:func:`paperlib.inference.frozen_quantizers`) against Brevitas' forward on
  the same batch: bitwise equal or not, and the largest difference.

Writes one JSON object (``--out``) and prints it.
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from torch.nn import functional as F

from benchmarks.timing import step_time
from paperlib import build_model, resolve_device
from paperlib.device import tf32
from paperlib.fastquant import fast_qat
from paperlib.inference import frozen_quantizers

VARIANTS = {"fp32": (None, None), "int8_constant": (8, 1.0), "int8_dynamic": (8, None)}


def _batch(device: torch.device, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g)
    return x.to(device), y.to(device)


def images_per_s(arch: str, bits: int | None, scale: float | None, fast: bool, device: torch.device,
                 steps: int, batch: int = 128) -> float:
    """Training images/s of ``steps`` Adam steps on one random batch (after one warm-up step)."""
    model = build_model(arch, bits, scale, seed=0).to(device)
    x, y = _batch(device, batch, 0)
    with fast_qat(model, enabled=fast and bits is not None):
        return batch / step_time(model, x, y, steps)


def _trace(arch: str, bits: int, scale: float | None, fast: bool, device: torch.device, steps: int, batch: int):
    """Outputs, gradients and final state of ``steps`` training steps from seed 0 on one path."""
    model = build_model(arch, bits, scale, seed=0).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    tensors = []
    with fast_qat(model, enabled=fast):
        for k in range(steps):
            x, y = _batch(device, batch, 10 + k)
            out = model(x)
            opt.zero_grad()
            F.cross_entropy(out, y).backward()
            opt.step()
            tensors.append(out.detach())
            tensors += [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]
    tensors += [v.detach() for v in model.state_dict().values() if torch.is_tensor(v) and v.is_floating_point()]
    return tensors


def compare(a: list[torch.Tensor], b: list[torch.Tensor]) -> dict:
    """Whether two lists of tensors are bit for bit equal, and their largest absolute difference."""
    assert len(a) == len(b), "the two paths produced different numbers of tensors"
    bitwise = all(x.shape == y.shape and torch.equal(x, y) for x, y in zip(a, b))
    diff = max(float((x.float() - y.float()).abs().max()) if x.numel() else 0.0 for x, y in zip(a, b))
    return {"bitwise_equal": bitwise, "max_abs_diff": diff, "tensors": len(a)}


def frozen_vs_brevitas(arch: str, device: torch.device, batch: int = 64) -> dict:
    """Evaluation logits of an 8-bit constant-scale model: frozen quantizers vs Brevitas' forward."""
    model = build_model(arch, 8, 1.0, seed=0).to(device).eval()
    x, _ = _batch(device, batch, 1)
    with torch.no_grad():
        reference = model(x)
        with frozen_quantizers(model):
            fast = model(x)
    return compare([reference], [fast])


def check_device(device: str = "cuda", quick: bool = False) -> dict:
    """Every measurement of the module docstring on ``device``; ``quick``: few steps, LeNet-5 only (for tests)."""
    dev = resolve_device(device)
    archs = ("lenet5",) if quick else ("lenet5", "resnet18")
    steps = 2 if quick else 30
    out: dict = {"device": str(dev), "machine": platform.machine(), "torch": torch.__version__,
                 "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, "archs": {}}
    with tf32(False):  # full fp32, as paperlib trains and evaluates
        for arch in archs:
            out["archs"][arch] = _check_arch(arch, dev, steps)
    return out


def _check_arch(arch: str, dev: torch.device, steps: int) -> dict:
    """The measurements of the module docstring for one architecture."""
    r: dict = {"train_images_per_s": {}}
    for name, (bits, scale) in VARIANTS.items():
        for fast in ((True,) if bits is None else (True, False)):
            key = name if bits is None else f"{name}_{'fast' if fast else 'brevitas'}"
            r["train_images_per_s"][key] = images_per_s(arch, bits, scale, fast, dev, steps)
    speed = r["train_images_per_s"]
    r["qat_over_fp32_fast"] = {n: speed["fp32"] / speed[f"{n}_fast"] for n in ("int8_constant", "int8_dynamic")}
    r["qat_over_fp32_brevitas"] = {
        n: speed["fp32"] / speed[f"{n}_brevitas"] for n in ("int8_constant", "int8_dynamic")
    }
    r["fast_vs_brevitas"] = {
        n: compare(*(_trace(arch, bits, scale, f, dev, steps=3, batch=8) for f in (False, True)))
        for n, (bits, scale) in VARIANTS.items() if bits is not None
    }
    r["frozen_vs_brevitas"] = frozen_vs_brevitas(arch, dev)
    return r


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="few steps, LeNet-5 only")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = ap.parse_args(argv)
    result = check_device(args.device, args.quick)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

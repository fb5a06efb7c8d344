"""One prepared check of a device (a GPU): QAT speed and exactness there, in one short run.

    python -m benchmarks.gpu_check --device cuda --out gpu_check.json     # minutes on one GPU (not timed yet)
    python -m benchmarks.gpu_check --device cuda --archs lenet5 resnet18  # some architectures
    python -m benchmarks.gpu_check --device cpu --quick                   # what tests/test_devices.py runs

For LeNet-5, ResNet-18 and VGG-11 (``--archs``) on ``--device``:

- ``train``: training images/s (batch 128, random images, Adam) in fp32 and at
  8 bits with a constant scale and with a dynamic scale (collecting statistics,
  and learned: ``int8_dynamic_learned_fast``), on the fast QAT path
  (:mod:`paperlib.fastquant`, what :func:`paperlib.train` runs) and on
  Brevitas' own modules; and the QAT/fp32 time ratio;
- ``rerun``: each path against itself (a few training steps from the same
  start, twice), first, so that nondeterministic kernels never read as a bug of
  the fast path; then ``fast_vs_brevitas``: the two paths from the same start:
  whether outputs, gradients and the final state are bit for bit equal, and the
  largest absolute difference. All of it under :func:`paperlib.device.reproducible`
  (deterministic kernels, as :func:`paperlib.run` trains), and ``rerun`` also
  without them (``rerun_nondeterministic``), which shows what they buy;
- ``determinism_cost``: training images/s with CUDA's default kernels over
  images/s with deterministic ones, per variant on the fast path (on the CPU
  both time the same kernels: there the ratio only shows timing noise);
- ``budget_timings``: per kind (``fp32``, ``qat-dynamic``, ``qat-constant``, as
  ``benchmarks/paper_budget.py`` charges them) the device's seconds per training
  step of batch 128 (fast path, deterministic kernels) and per test image of a
  noisy forward pass (:func:`paperlib.accuracy` at sigma 1, batch 1,000):
  ``python -m benchmarks.paper_budget --timings gpu_check.json`` projects a
  profile's device-hours from them;
- ``trained_twice``: one small spec trained and evaluated twice by
  :func:`paperlib.run` into two result folders: whether records (clean accuracy,
  history) and noise curves are equal;
- ``frozen_vs_brevitas``: evaluation with frozen quantizers
  (:func:`paperlib.inference.frozen_quantizers`) against Brevitas' forward on
  the same batch: bitwise equal or not, and the largest difference;
- ``pack`` (LeNet-5 and ResNet-18; fp32, 8-bit constant and dynamic): training images/s of one network in
  :func:`paperlib.train` and of packs of several in :func:`paperlib.pack.train_pack`
  (all networks' images counted; same data pipeline: each network its own
  order, augmentation and noise), and each pack's speed-up over one network;
- ``packed_twice`` (LeNet-5, 8-bit dynamic): two specs trained as one pack by the run engine
  (:func:`paperlib.runs.packs.train_packed`, what ``run_sweep`` runs on CUDA) twice into two result folders:
  whether the records are bitwise equal, and how far each network is from the same spec trained alone
  (:func:`paperlib.run`);
- ``pack_sweep`` (LeNet-5): the noise sweep of a pack of networks (17 sigmas on 1,000 test images each),
  network by network (:func:`paperlib.evaluate_pairs`, what the engine runs) and batched
  (:func:`paperlib.pack_evaluate_pairs`): seconds of each, so that whether batching sweeps pays is measured.

Writes one JSON object (``--out``) and prints it.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
from dataclasses import replace
from pathlib import Path

import torch
from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling
from torch.nn import functional as F

from benchmarks.timing import step_time
from paperlib import CIFAR10Data, RunSpec, accuracy, build_model, evaluate_pairs, resolve_device, run
from paperlib.device import reproducible, tf32
from paperlib.fastquant import fast_qat
from paperlib.inference import frozen_quantizers

VARIANTS = {"fp32": (None, None), "int8_constant": (8, 1.0), "int8_dynamic": (8, None)}


def _batch(device: torch.device, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(batch, 3, 32, 32, generator=g), torch.randint(0, 10, (batch,), generator=g)
    return x.to(device), y.to(device)


def images_per_s(arch: str, bits: int | None, scale: float | None, fast: bool, device: torch.device,
                 steps: int, batch: int = 128, learned: bool = False) -> float:
    """Training images/s of ``steps`` Adam steps on one random batch (after one warm-up step).

    A dynamic scale collects activation statistics for Brevitas' first 300 steps (the timed steps of a fresh
    model), then is learned (most of a long training); ``learned``: its collection ends after the warm-up step,
    so that the timed steps are of the learned phase.
    """
    model = build_model(arch, bits, scale, seed=0).to(device)
    if learned:
        for m in model.modules():
            if isinstance(m, ParameterFromRuntimeStatsScaling):
                m.collect_stats_steps = 1
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


#: paper_budget's kinds of network: the training speed that times a step (``train_images_per_s``' key; a dynamic
#: scale in its learned phase: past the first 300 steps, nearly all of a training of many epochs) and the variant of
#: VARIANTS that times a noisy test image.
BUDGET_KINDS = {"fp32": ("fp32", "fp32"), "qat-dynamic": ("int8_dynamic_learned_fast", "int8_dynamic"),
                "qat-constant": ("int8_constant_fast", "int8_constant")}


def seconds_per_image(arch: str, bits: int | None, scale: float | None, device: torch.device, images: int = 1000,
                      repeats: int = 3) -> float:
    """Wall seconds per test image of a forward pass with noise at every module (sigma 1), the minimum of
    ``repeats`` after one warm-up, on ``device`` (synchronized)."""
    import time

    model = build_model(arch, bits, scale, seed=0).to(device).eval()
    x, y = _batch(device, images, 2)
    best = float("inf")
    for k in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        accuracy(model, x, y, 1.0, batch_size=images, generator=torch.Generator(device).manual_seed(k))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k:  # the first pass warms up
            best = min(best, (time.perf_counter() - t0) / images)
    return best


def trained_twice(arch: str, dev: torch.device, bits: int | None = 8, scale: float | None = None) -> dict:
    """One small spec (1 epoch on 256 random images, 3 sigmas) trained and evaluated twice by :func:`paperlib.run`
    into two fresh result folders: whether the records and curves are equal."""
    g = torch.Generator().manual_seed(0)
    data = CIFAR10Data(torch.randn(256, 3, 32, 32, generator=g), torch.arange(256) % 10,
                       torch.randn(128, 3, 32, 32, generator=g), torch.arange(128) % 10, "random images")
    spec = RunSpec(arch=arch, bits=bits, scale=scale, epochs=1, batch_size=64, sigmas=(0.1, 1.0, 10.0), repeats=1)
    results = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as folder:
            results.append(run(replace(spec), data=data, results_dir=folder, device=dev, progress=False))
    a, b = results
    return {"accuracy_equal": a.accuracy == b.accuracy,
            "history_equal": a.history.drop(columns=["seconds"], errors="ignore").equals(
                b.history.drop(columns=["seconds"], errors="ignore")),
            "curve_equal": a.noise_curve.equals(b.noise_curve), "deterministic": a.deterministic,
            "accuracies": [a.accuracy, b.accuracy]}


def _random_data(n_train: int = 256, n_test: int = 128) -> CIFAR10Data:
    g = torch.Generator().manual_seed(0)
    return CIFAR10Data(torch.randn(n_train, 3, 32, 32, generator=g), torch.arange(n_train) % 10,
                       torch.randn(n_test, 3, 32, 32, generator=g), torch.arange(n_test) % 10, "random images")


def packed_twice(dev: torch.device, bits: int | None = 8, scale: float | None = None) -> dict:
    """Two LeNet-5 specs (seeds 0 and 1, 2 epochs on 256 random images) trained as one pack by the run engine
    twice, into two fresh result folders, and each alone by :func:`paperlib.run`: whether the two packs' records
    are bitwise equal, and the largest difference of a network's per-epoch loss between pack and alone."""
    from paperlib.runs.experiment import resolve_spec
    from paperlib.runs.packs import train_packed

    data = _random_data()
    specs = [resolve_spec(RunSpec(arch="lenet5", bits=bits, scale=scale, epochs=2, batch_size=64, seed=s,
                                  sigma_train=0.1 * s, sigmas=(1.0,), repeats=1), data) for s in (0, 1)]
    records = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as folder:
            keys = train_packed(specs, data, dev, Path(folder), deterministic=True)
            records.append([json.loads((Path(folder) / "runs" / k / "record.json").read_text()) for k in keys])
    alone = []
    for spec in specs:
        with tempfile.TemporaryDirectory() as folder:
            alone.append(run(spec, data=data, results_dir=folder, device=dev, progress=False))
    same = len(records[0]) == len(records[1]) == 2 and all(
        (a["accuracy"], a["history"]) == (b["accuracy"], b["history"]) for a, b in zip(*records))
    loss_diff = max(abs(h["loss"] - k) for rec, res in zip(records[0], alone)
                    for h, k in zip(rec["history"], res.history["loss"]))
    return {"records_equal": same, "max_loss_diff_vs_alone": loss_diff,
            "accuracies": [r["accuracy"] for r in records[0]], "accuracies_alone": [r.accuracy for r in alone]}


def pack_sweep(dev: torch.device, networks: int = 8, images: int = 1000, repeats: int = 2) -> dict:
    """Seconds of the noise sweep (17 sigmas, one draw, ``images`` test images) of ``networks`` LeNet-5s one by one
    (:func:`paperlib.evaluate_pairs`) and batched as one pack (:func:`paperlib.pack_evaluate_pairs`); the minimum
    of ``repeats`` after a warm-up, synchronized."""
    import time

    from paperlib import pack_evaluate_pairs, pack_models
    from paperlib.evaluate import DEFAULT_SIGMAS

    models = [build_model("lenet5", seed=s).to(dev).eval() for s in range(networks)]
    x, y = _batch(dev, images, 3)
    pairs = [(float(sig), 0) for sig in DEFAULT_SIGMAS]
    pack = pack_models(models).to(dev).eval()

    def timed(fn) -> float:
        best = float("inf")
        for k in range(repeats + 1):
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            if k:
                best = min(best, time.perf_counter() - t0)
        return best

    one_by_one = timed(lambda: [evaluate_pairs(m, x, y, pairs, seed=s, progress=False) for s, m in enumerate(models)])
    batched = timed(lambda: pack_evaluate_pairs(pack, x, y, pairs, list(range(networks))))
    return {"networks": networks, "sigmas": len(pairs), "images": images, "one_by_one_s": one_by_one,
            "batched_s": batched, "speedup": one_by_one / batched}


def check_device(device: str = "cuda", quick: bool = False, archs: tuple[str, ...] | None = None) -> dict:
    """Every measurement of the module docstring on ``device`` for ``archs`` (default: all three, or LeNet-5 alone
    with ``quick``); ``quick``: few steps (for tests)."""
    dev = resolve_device(device)
    archs = archs or (("lenet5",) if quick else ("lenet5", "resnet18", "vgg11"))
    steps = 2 if quick else 30
    out: dict = {"device": str(dev), "machine": platform.machine(), "torch": torch.__version__,
                 "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, "archs": {}}
    with tf32(False):  # full fp32, as paperlib trains and evaluates
        for arch in archs:
            out["archs"][arch] = _check_arch(arch, dev, steps)
    return out


def _speeds(arch: str, dev: torch.device, steps: int, brevitas: bool = True) -> dict:
    """Training images/s per variant on the fast path (and on Brevitas' modules when ``brevitas``)."""
    speed = {}
    for name, (bits, scale) in VARIANTS.items():
        for fast in ((True,) if bits is None or not brevitas else (True, False)):
            key = name if bits is None else f"{name}_{'fast' if fast else 'brevitas'}"
            speed[key] = images_per_s(arch, bits, scale, fast, dev, steps)
    speed["int8_dynamic_learned_fast"] = images_per_s(arch, *VARIANTS["int8_dynamic"], True, dev, steps, learned=True)
    return speed


def _check_arch(arch: str, dev: torch.device, steps: int) -> dict:
    """The measurements of the module docstring for one architecture."""
    r: dict = {}
    with reproducible(dev, deterministic=False):
        fastest = _speeds(arch, dev, steps, brevitas=False)
        r["rerun_nondeterministic"] = {
            n: compare(*(_trace(arch, bits, scale, True, dev, steps=3, batch=8) for _ in range(2)))
            for n, (bits, scale) in VARIANTS.items() if bits is not None
        }
    with reproducible(dev, deterministic=True) as numerics:
        r["numerics"] = numerics
        r["train_images_per_s"] = speed = _speeds(arch, dev, steps)
        r["determinism_cost"] = {k: fastest[k] / v for k, v in speed.items() if k in fastest}
        r["qat_over_fp32_fast"] = {n: speed["fp32"] / speed[f"{n}_fast"]
                                   for n in ("int8_constant", "int8_dynamic", "int8_dynamic_learned")}
        r["qat_over_fp32_brevitas"] = {
            n: speed["fp32"] / speed[f"{n}_brevitas"] for n in ("int8_constant", "int8_dynamic")
        }
        traces = {(n, f, k): _trace(arch, bits, scale, f, dev, steps=3, batch=8)
                  for n, (bits, scale) in VARIANTS.items() if bits is not None for f in (False, True) for k in (0, 1)}
        names = [n for n, (bits, _) in VARIANTS.items() if bits is not None]
        r["rerun"] = {f"{n}_{'fast' if f else 'brevitas'}": compare(traces[(n, f, 0)], traces[(n, f, 1)])
                      for n in names for f in (False, True)}
        r["fast_vs_brevitas"] = {n: compare(traces[(n, False, 0)], traces[(n, True, 0)]) for n in names}
        r["frozen_vs_brevitas"] = frozen_vs_brevitas(arch, dev)
        r["budget_timings"] = {
            kind: [128 / speed[timed],
                   seconds_per_image(arch, *VARIANTS[variant], dev, images=64 if steps < 10 else 1000)]
            for kind, (timed, variant) in BUDGET_KINDS.items()
        }
    r["trained_twice"] = trained_twice(arch, dev)  # run() chooses its kernels itself (deterministic by default)
    if arch in PACK_SIZES:
        with reproducible(dev, deterministic=True):
            r["pack"] = {name: pack_speed(arch, dev, PACK_SIZES[arch] if steps >= 10 else (2,), steps, bits, scale)
                         for name, (bits, scale) in VARIANTS.items()}
    if arch == "lenet5":
        r["packed_twice"] = packed_twice(dev)  # train_packed and run() choose their kernels (deterministic)
        with reproducible(dev, deterministic=True):
            r["pack_sweep"] = pack_sweep(dev, networks=8 if steps >= 10 else 2, images=1000 if steps >= 10 else 100)
    return r


#: Pack sizes that ``pack`` times per architecture (VGG-11's 4096-wide classifier makes its packs memory-bound).
PACK_SIZES: dict[str, tuple[int, ...]] = {"lenet5": (8, 32, 64), "resnet18": (4, 8)}


def pack_speed(arch: str, dev: torch.device, sizes: tuple[int, ...], steps: int, bits: int | None = None,
               scale: float | None = None, batch: int = 128) -> dict:
    """Training images/s of one network (``train``) and of packs of ``sizes`` networks (``train_pack``).

    One epoch of ``steps`` batches of random images per network (with augmentation and noise at sigma 0.1, as
    noisy training), the per-epoch test pass on 1,000 images not counted; a dynamic scale in its learned phase
    (its statistics end after the first step). Returns ``{"one": images/s, "packs": {n: images/s},
    "speedup": {n: pack / one}}``.
    """
    from paperlib import TrainConfig, train
    from paperlib.pack import train_pack

    g = torch.Generator().manual_seed(0)
    n_train = steps * batch
    data = CIFAR10Data(torch.randn(n_train, 3, 32, 32, generator=g), torch.randint(0, 10, (n_train,), generator=g),
                       torch.randn(1000, 3, 32, 32, generator=g), torch.randint(0, 10, (1000,), generator=g),
                       "random images").to(dev)
    cfg = TrainConfig(epochs=1, lr=1e-3, batch_size=batch, sigma_train=0.1)

    def model(seed: int) -> torch.nn.Module:
        m = build_model(arch, bits, scale, seed=seed)
        for q in m.modules():
            if isinstance(q, ParameterFromRuntimeStatsScaling):
                q.collect_stats_steps = 1
        return m

    train(model(0), data, cfg, device=dev, progress=False)  # warm-up
    one = train(model(0), data, cfg, device=dev, progress=False).images_per_s
    packs = {}
    for n in sizes:
        configs = [replace(cfg, seed=s) for s in range(n)]
        train_pack([model(s) for s in range(n)], data, configs, device=dev, progress=False)
        packs[n] = train_pack([model(s) for s in range(n)], data, configs, device=dev, progress=False)[0].images_per_s
    return {"one": one, "packs": packs, "speedup": {n: v / one for n, v in packs.items()}, "steps": steps,
            "batch": batch}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--quick", action="store_true", help="few steps, LeNet-5 only")
    ap.add_argument("--archs", nargs="+", default=None, help="architectures (default: lenet5 resnet18 vgg11)")
    ap.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    args = ap.parse_args(argv)
    result = check_device(args.device, args.quick, tuple(args.archs) if args.archs else None)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

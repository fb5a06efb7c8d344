"""paperlib vs the reference pipeline, side by side in one process run.

    python -m benchmarks                      # everything (about 20 minutes on 2 CPU cores)
    python -m benchmarks --only train_lenet5_fp32 train_lenet5_int8
    python -m benchmarks --repeats 1          # a shorter noise sweep
    python -m benchmarks --only sweep_workers --runs 4 --out /tmp/sweep4.json

Writes ``benchmarks/results.json``: name -> {ours, reference, ratio, unit, ...};
``ratio`` is always our speed-up over the reference (higher is better).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from benchmarks import reference
from paperlib import (DEFAULT_SIGMAS, RunSpec, TrainConfig, build_model, dask_executor, load_cifar10, noise_sweep,
                      run_sweep, summarize_sweep, train)
from paperlib.data import MEAN, STD, CIFAR10Data
from paperlib.experiment import shared_data
from paperlib.inference import frozen_quantizers
from paperlib.provenance import provenance

RESULTS = Path(__file__).resolve().parent / "results.json"


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Undo the normalization: the exact uint8 pixels the reference pipeline starts from."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return ((x.cpu() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def bench_train(data: CIFAR10Data, bits: int | None, scale: float | None, steps: int) -> dict:
    """Training images/s, same model, batch 128 and number of steps."""
    sub = data.subset(train=steps * 128, seed=0)
    model = build_model("lenet5", bits, scale, seed=0)
    ours = train(model, sub, TrainConfig(epochs=1, lr=1e-3), device="cpu", progress=False).images_per_s
    model = build_model("lenet5", bits, scale, seed=0)
    images, labels = to_uint8(sub.x_train), sub.y_train.numpy()
    t = time.perf_counter()
    seen = reference.train_steps(model, images, labels, steps)
    ref = seen / (time.perf_counter() - t)
    return {"ours": ours, "reference": ref, "ratio": ours / ref, "unit": "images/s", "steps": steps}


def bench_noise_sweep(data: CIFAR10Data, repeats: int) -> dict:
    """Wall time of a full sweep (17 sigmas x repeats x the test set) of one trained LeNet-5."""
    model = build_model("lenet5", 8, 1.0, seed=0)
    train(model, data.subset(train=10_000), TrainConfig(epochs=2, lr=1e-3), device="cpu", progress=False)
    t = time.perf_counter()
    ours = summarize_sweep(noise_sweep(model, data.x_test, data.y_test, DEFAULT_SIGMAS, repeats, seed=0, progress=False))
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    ref = pd.DataFrame(reference.noise_sweep(model, to_uint8(data.x_test), data.y_test.numpy(), DEFAULT_SIGMAS, repeats),
                       columns=["sigma", "repeat", "accuracy"])
    t_ref = time.perf_counter() - t
    ref = summarize_sweep(ref)
    return {"ours": t_ours, "reference": t_ref, "ratio": t_ref / t_ours, "unit": "s",
            "sigmas": len(DEFAULT_SIGMAS), "repeats": repeats, "test_images": len(data.y_test),
            "max_mean_accuracy_difference": float((ours.acc_mean - ref.acc_mean).abs().max())}


def bench_sweep_workers(data_root: str | None, n_runs: int, workers: int) -> dict:
    """Wall time of ``n_runs`` short LeNet-5 runs: a 1-worker vs a ``workers``-worker Dask LocalCluster.

    Also timed: the same sweep in-process (no executor), and its rerun from the cache.
    """
    specs = [RunSpec(arch="lenet5", bits=8, scale=1.0, epochs=1, train_subset=5000, test_subset=1000,
                     sigmas=tuple(np.logspace(-2, 2, 5)), repeats=1, seed=s) for s in range(n_runs)]
    times = {}
    results = Path(tempfile.mkdtemp(prefix="paperlib-bench-"))
    t = time.perf_counter()
    run_sweep(specs, data_root=data_root, results_dir=results, device="cpu", progress=False)
    serial = time.perf_counter() - t
    shutil.rmtree(results)
    for n in (1, workers):
        results = Path(tempfile.mkdtemp(prefix="paperlib-bench-"))
        with dask_executor(n_workers=n) as ex:
            ex.client.run(shared_data, data_root, "cpu")  # each worker loads the data once, before the clock starts
            t = time.perf_counter()
            df = run_sweep(specs, ex, data_root=data_root, results_dir=results / "runs", device="cpu", progress=False)
            times[n] = time.perf_counter() - t
        t = time.perf_counter()
        run_sweep(specs, data_root=data_root, results_dir=results / "runs", device="cpu", progress=False)
        cached = time.perf_counter() - t
        shutil.rmtree(results)
        assert df.error.isna().all(), df.error.dropna().iloc[0]
    return {"ours": times[workers], "reference": times[1], "ratio": times[1] / times[workers], "unit": "s",
            "runs": n_runs, "workers": workers, "serial_in_process_s": serial, "rerun_from_cache_s": cached}


def _step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    for i in range(steps + 1):
        if i == 1:  # the first step warms up
            t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - t) / steps


@torch.no_grad()
def _eval_time(model: torch.nn.Module, x: torch.Tensor, frozen: bool) -> float:
    model.eval()
    with frozen_quantizers(model) if frozen else contextlib.nullcontext():
        model(x)
        t = time.perf_counter()
        model(x)
        return time.perf_counter() - t


def bench_qat_overhead(steps: int) -> dict:
    """QAT / fp32 time of one training step (batch 128) and one evaluation batch, per architecture.

    ``ours`` is the 8-bit evaluation with frozen quantizers, ``reference``
    Brevitas' own forward; both give the same numbers.
    """
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
    out: dict = {}
    for arch in ("lenet5", "resnet18", "vgg11"):
        fp32, int8 = build_model(arch, seed=0), build_model(arch, 8, 1.0, seed=0)
        out[arch] = {"train_step_s_fp32": _step_time(fp32, x, y, steps), "train_step_s_int8": _step_time(int8, x, y, steps),
                     "eval_batch_s_fp32": _eval_time(fp32, x, False), "eval_batch_s_int8_brevitas": _eval_time(int8, x, False),
                     "eval_batch_s_int8_frozen": _eval_time(int8, x, True)}
        o = out[arch]
        o["train_qat_over_fp32"] = o["train_step_s_int8"] / o["train_step_s_fp32"]
        o["eval_qat_over_fp32_brevitas"] = o["eval_batch_s_int8_brevitas"] / o["eval_batch_s_fp32"]
        o["eval_qat_over_fp32_frozen"] = o["eval_batch_s_int8_frozen"] / o["eval_batch_s_fp32"]
        print(f"  {arch}: train step QAT/fp32 {o['train_qat_over_fp32']:.2f}, eval QAT/fp32 "
              f"{o['eval_qat_over_fp32_brevitas']:.2f} (Brevitas) -> {o['eval_qat_over_fp32_frozen']:.2f} (frozen)", flush=True)
    ours = sum(o["eval_batch_s_int8_frozen"] for o in out.values())
    ref = sum(o["eval_batch_s_int8_brevitas"] for o in out.values())
    return {"ours": ours, "reference": ref, "ratio": ref / ours, "unit": "s (one 8-bit eval batch of 128, three models)",
            "per_arch": out}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None, help="benchmark names to run")
    ap.add_argument("--data", default=None, help="data root (default: $PAPERLIB_DATA, else ./data)")
    ap.add_argument("--steps", type=int, default=100, help="training steps per training benchmark")
    ap.add_argument("--repeats", type=int, default=5, help="noise draws per sigma in the sweep benchmark")
    ap.add_argument("--runs", type=int, default=8, help="runs in the workers benchmark")
    ap.add_argument("--workers", type=int, default=2, help="workers in the workers benchmark")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON file to merge the results into")
    args = ap.parse_args(argv)

    meta = provenance("cpu")  # the revision that runs, read before anything can change it
    data = load_cifar10(args.data)
    cases = {
        "train_lenet5_fp32": lambda: bench_train(data, None, None, args.steps),
        "train_lenet5_int8": lambda: bench_train(data, 8, 1.0, args.steps),
        "noise_sweep_lenet5": lambda: bench_noise_sweep(data, args.repeats),
        "sweep_workers": lambda: bench_sweep_workers(args.data, args.runs, args.workers),
        "qat_overhead": lambda: bench_qat_overhead(3),
    }
    unknown = set(args.only or []) - set(cases)
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {', '.join(sorted(unknown))}; choose from {', '.join(cases)}")
    previous = json.loads(args.out.read_text()) if args.out.is_file() else {}
    results = {}
    for name, case in cases.items():
        if args.only and name not in args.only:
            continue
        print(f"{name} ...", flush=True)
        results[name] = {**case(), "data": data.source, "torch_threads": torch.get_num_threads(),
                         "cpu_count": __import__("os").cpu_count(), "machine": platform.machine()}
        r = results[name]
        print(f"  ours {r['ours']:.4g} {r['unit']}, reference {r['reference']:.4g} {r['unit']}, speed-up {r['ratio']:.2f}x", flush=True)
    merged = {**previous, **{k: {**v, "revision": meta["revision"], "time_utc": meta["time_utc"]} for k, v in results.items()}}
    args.out.write_text(json.dumps(merged, indent=1) + "\n")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()

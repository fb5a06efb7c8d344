"""paperlib vs the reference pipeline, side by side in one benchmark run (the reference in a process of its own).

    python -m benchmarks                      # everything (about 20 minutes on 2 CPU cores)
    python -m benchmarks --only train_lenet5_fp32 train_lenet5_int8
    python -m benchmarks --repeats 1          # a shorter noise sweep
    python -m benchmarks --only sweep_workers --runs 4 --out /tmp/sweep4.json
    python -m benchmarks --only under_load    # ours and the reference while busy loops hold every core

Writes ``benchmarks/results.json``: name -> {ours, reference, ratio, unit, ...};
``ratio`` is always our speed-up over the reference (higher is better).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import paperlib  # noqa: F401  first: it asks OpenMP's idle threads to sleep before torch loads (paperlib.threads)

# isort: split
import numpy as np
import pandas as pd
import torch

from benchmarks.timing import step_time
from paperlib import (
    DEFAULT_SIGMAS,
    RunSpec,
    TrainConfig,
    build_model,
    dask_executor,
    load_cifar10,
    noise_sweep,
    run_sweep,
    summarize_sweep,
    train,
)
from paperlib.data import MEAN, STD, CIFAR10Data
from paperlib.inference import frozen_quantizers
from paperlib.runs.experiment import shared_data
from paperlib.runs.provenance import cpu, provenance
from paperlib.threads import USER_WAIT_POLICY, cpu_count, numeric_threads

RESULTS = Path(__file__).resolve().parent / "results.json"


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Undo the normalization: the exact uint8 pixels the reference pipeline starts from."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return ((x.cpu() * std + mean) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


def run_reference(fn: str, model: tuple, state_dict: dict | None, *args, **kwargs) -> tuple[object, float, str | None]:
    """``benchmarks.reference.<fn>(model, *args, **kwargs)`` in a process of its own, as the authors' scripts run:
    torch loaded first, OpenMP's wait policy the environment's (``import paperlib`` asks for passive waiting in
    this process, which would speed up the reference's own multi-threaded model too). ``model``: ``(arch, bits,
    scale, seed)`` for :func:`paperlib.build_model`, with ``state_dict`` loaded when given. Returns the
    function's result (JSON-decoded), the seconds of the call alone and the process's ``OMP_WAIT_POLICY``."""
    env = dict(os.environ)
    if env.get("OMP_WAIT_POLICY") == "PASSIVE" and USER_WAIT_POLICY is None:
        del env["OMP_WAIT_POLICY"]  # set by paperlib, not by the user
    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp) / "job.pt", Path(tmp) / "out.json"
        torch.save({"fn": fn, "model": model, "state_dict": state_dict, "args": list(args), "kwargs": kwargs}, job)
        subprocess.run([sys.executable, "-m", "benchmarks.reference", str(job), str(out)], env=env, check=True,
                       cwd=Path(__file__).resolve().parents[1])
        done = json.loads(out.read_text())
    return done["result"], done["seconds"], done["omp_wait_policy"]


def bench_train(data: CIFAR10Data, bits: int | None, scale: float | None, steps: int) -> dict:
    """Training images/s, same model, batch 128 and number of steps (the reference in its own process)."""
    sub = data.subset(train=steps * 128, seed=0)
    model = build_model("lenet5", bits, scale, seed=0)
    ours = train(model, sub, TrainConfig(epochs=1, lr=1e-3), device="cpu", progress=False).images_per_s
    images, labels = to_uint8(sub.x_train), sub.y_train.numpy()
    seen, seconds, _ = run_reference("train_steps", ("lenet5", bits, scale, 0), None, images, labels, steps)
    ref = seen / seconds
    return {"ours": ours, "reference": ref, "ratio": ours / ref, "unit": "images/s", "steps": steps}


def bench_qat_paths(data: CIFAR10Data, steps: int) -> dict:
    """LeNet-5 training images/s in :func:`paperlib.train` (what ``run()`` calls): fast QAT path vs Brevitas' modules.

    fp32, 8-bit constant scale (s = 1) and 8-bit dynamic scale, each on the
    same ``steps`` x 128 training images (one epoch: a dynamic scale collects
    statistics all of it, as in a short training). ``ours`` / ``reference``: 8-bit
    dynamic, fast path / Brevitas path; ``*_fast_time_over_fp32``: the fast
    path's time per image over fp32's.
    """
    from paperlib.fastquant import use_qat

    sub = data.subset(train=steps * 128, seed=0)
    out: dict = {}
    for name, bits, scale in (("fp32", None, None), ("int8_constant", 8, 1.0), ("int8_dynamic", 8, None)):
        for path in ("fast", "brevitas"):
            if bits is None and path == "brevitas":
                continue
            with use_qat(path):
                model = build_model("lenet5", bits, scale, seed=0)
                r = train(model, sub, TrainConfig(epochs=1, lr=1e-3), device="cpu", progress=False)
            out[f"{name}_{path}_images_per_s"] = r.images_per_s
    for name in ("int8_constant", "int8_dynamic"):
        f, b = out[f"{name}_fast_images_per_s"], out[f"{name}_brevitas_images_per_s"]
        out[f"{name}_fast_time_over_fp32"] = out["fp32_fast_images_per_s"] / f  # the "QAT/fp32"
        print(f"  {name}: Brevitas {b:.0f} -> fast {f:.0f} images/s (fp32 {out['fp32_fast_images_per_s']:.0f}; "
              f"time QAT/fp32 {out[f'{name}_fast_time_over_fp32']:.2f})")
    return {
        "ours": out["int8_dynamic_fast_images_per_s"],
        "reference": out["int8_dynamic_brevitas_images_per_s"],
        "ratio": out["int8_dynamic_fast_images_per_s"] / out["int8_dynamic_brevitas_images_per_s"],
        "unit": "images/s",
        "steps": steps,
        **out,
    }


def bench_noise_sweep(data: CIFAR10Data, repeats: int) -> dict:
    """Wall time of a full sweep (17 sigmas x repeats x the test set) of one trained LeNet-5."""
    model = build_model("lenet5", 8, 1.0, seed=0)
    train(model, data.subset(train=10_000), TrainConfig(epochs=2, lr=1e-3), device="cpu", progress=False)
    t = time.perf_counter()
    ours = summarize_sweep(
        noise_sweep(model, data.x_test, data.y_test, DEFAULT_SIGMAS, repeats, seed=0, progress=False)
    )
    t_ours = time.perf_counter() - t
    rows, t_ref, _ = run_reference("noise_sweep", ("lenet5", 8, 1.0, 0), model.state_dict(), to_uint8(data.x_test),
                                data.y_test.numpy(), [float(s) for s in DEFAULT_SIGMAS], repeats)
    ref = pd.DataFrame(rows, columns=["sigma", "repeat", "accuracy"])
    ref = summarize_sweep(ref)
    return {
        "ours": t_ours,
        "reference": t_ref,
        "ratio": t_ref / t_ours,
        "unit": "s",
        "sigmas": len(DEFAULT_SIGMAS),
        "repeats": repeats,
        "test_images": len(data.y_test),
        "max_mean_accuracy_difference": float((ours.acc_mean - ref.acc_mean).abs().max()),
    }


def bench_sweep_workers(data_root: str | None, n_runs: int, workers: int) -> dict:
    """Wall time of ``n_runs`` short LeNet-5 runs: a 1-worker vs a ``workers``-worker Dask LocalCluster.

    Also timed: the same sweep in-process (no executor), and its rerun from the cache.
    """
    specs = [
        RunSpec(
            arch="lenet5",
            bits=8,
            scale=1.0,
            epochs=1,
            train_subset=5000,
            test_subset=1000,
            sigmas=tuple(np.logspace(-2, 2, 5)),
            repeats=1,
            seed=s,
        )
        for s in range(n_runs)
    ]
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
    return {
        "ours": times[workers],
        "reference": times[1],
        "ratio": times[1] / times[workers],
        "unit": "s",
        "runs": n_runs,
        "workers": workers,
        "serial_in_process_s": serial,
        "rerun_from_cache_s": cached,
    }


@torch.no_grad()
def _eval_time(model: torch.nn.Module, x: torch.Tensor, frozen: bool) -> float:
    model.eval()
    with frozen_quantizers(model) if frozen else contextlib.nullcontext():
        model(x)
        t = time.perf_counter()
        model(x)
        return time.perf_counter() - t


def _learned_phase(model: torch.nn.Module) -> torch.nn.Module:
    """End Brevitas' statistics collection of every dynamic activation scale (the learned scale phase)."""
    from brevitas.core.scaling.standalone import ParameterFromRuntimeStatsScaling

    for m in model.modules():
        if isinstance(m, ParameterFromRuntimeStatsScaling):
            m.init_scale()
    return model


def bench_qat_overhead(steps: int) -> dict:
    """QAT / fp32 time of one training step (batch 128) and one evaluation batch, per architecture.

    Training steps at 8 bits: Brevitas' own modules vs the fast path
    (:func:`paperlib.fastquant.fast_qat`, which :func:`paperlib.train` uses;
    same numbers), with a constant scale and with a dynamic scale in its
    learned phase. ``ours`` is the fast 8-bit constant-scale training step,
    ``reference`` Brevitas' (summed over the three models); the evaluation
    times compare frozen quantizers with Brevitas' forward.
    """
    from paperlib.fastquant import fast_qat

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
    out: dict = {}
    for arch in ("lenet5", "resnet18", "vgg11"):
        fp32, int8 = build_model(arch, seed=0), build_model(arch, 8, 1.0, seed=0)
        dyn = _learned_phase(build_model(arch, 8, None, seed=0))
        o = out[arch] = {"train_step_s_fp32": step_time(fp32, x, y, steps)}
        for name, model in (("int8", int8), ("int8_dynamic", dyn)):
            o[f"train_step_s_{name}_brevitas"] = step_time(model, x, y, steps)
            with fast_qat(model, enabled=True):
                o[f"train_step_s_{name}_fast"] = step_time(model, x, y, steps)
        o.update(
            eval_batch_s_fp32=_eval_time(fp32, x, False),
            eval_batch_s_int8_brevitas=_eval_time(int8, x, False),
            eval_batch_s_int8_frozen=_eval_time(int8, x, True),
        )
        for name in ("int8", "int8_dynamic"):
            for path in ("brevitas", "fast"):
                o[f"train_{name}_{path}_over_fp32"] = o[f"train_step_s_{name}_{path}"] / o["train_step_s_fp32"]
        o["train_qat_over_fp32"] = o["train_int8_fast_over_fp32"]  # what paperlib.train runs
        o["eval_qat_over_fp32_brevitas"] = o["eval_batch_s_int8_brevitas"] / o["eval_batch_s_fp32"]
        o["eval_qat_over_fp32_frozen"] = o["eval_batch_s_int8_frozen"] / o["eval_batch_s_fp32"]
        print(
            f"  {arch}: train step QAT/fp32 {o['train_int8_brevitas_over_fp32']:.2f} (Brevitas) -> "
            f"{o['train_int8_fast_over_fp32']:.2f} (fast); dynamic "
            f"{o['train_int8_dynamic_brevitas_over_fp32']:.2f} -> {o['train_int8_dynamic_fast_over_fp32']:.2f}; "
            f"eval QAT/fp32 "
            f"{o['eval_qat_over_fp32_brevitas']:.2f} (Brevitas) -> {o['eval_qat_over_fp32_frozen']:.2f} (frozen)",
            flush=True,
        )
    ours = sum(o["train_step_s_int8_fast"] for o in out.values())
    ref = sum(o["train_step_s_int8_brevitas"] for o in out.values())
    return {
        "ours": ours,
        "reference": ref,
        "ratio": ref / ours,
        "unit": "s (one 8-bit constant-scale training step of batch 128, three models)",
        "per_arch": out,
    }


@contextlib.contextmanager
def competing_load(processes: int) -> Iterator[list[subprocess.Popen]]:
    """``processes`` busy-loop Python processes (a fixed competing CPU load) for the block; always stopped on exit."""
    procs: list[subprocess.Popen] = []
    try:
        for _ in range(processes):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", "while True: pass"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
        time.sleep(1.0)  # let the scheduler see them
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _raw_steps_per_s(bits: int | None, scale: float | None, threads: int, steps: int) -> float:
    """Images/s of plain LeNet-5 training steps (batch 128) on ``threads`` intra-op threads, no data pipeline."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
    model = build_model("lenet5", bits, scale, seed=0)
    with numeric_threads(threads):
        return 128 / step_time(model, x, y, steps)


def bench_under_load(data: CIFAR10Data, steps: int, processes: int | None = None) -> dict:
    """Training images/s of ours and the reference, quiet and under a fixed competing CPU load.

    The load is ``processes`` busy-loop processes (default: one per core),
    started and stopped here. Per model (LeNet-5 fp32 and 8-bit QAT):
    :func:`bench_train` quiet and under load, and, to show why our training
    runs on one intra-op thread (``paperlib.threads``), plain training steps on
    1 and on 2 intra-op threads under load. ``ours``/``reference``: the
    fp32 images/s under load; ``ratio``: ours / reference under load (higher
    is better). Load averages are the 1-minute ``os.getloadavg()``; on a
    shared machine the absolute numbers are noisy, compare within one run.
    """
    processes = processes or cpu_count()
    out: dict = {"load_processes": processes, "cpu_count": cpu_count(), "loadavg_before": os.getloadavg()[0]}
    models = {}
    for name, bits, scale in (("fp32", None, None), ("int8", 8, 1.0)):
        quiet = bench_train(data, bits, scale, steps)
        with competing_load(processes):
            loaded = bench_train(data, bits, scale, steps)
            raw = {t: _raw_steps_per_s(bits, scale, t, steps) for t in (1, 2)}
            load = os.getloadavg()[0]
        m = models[name] = {
            "ours_quiet": quiet["ours"],
            "reference_quiet": quiet["reference"],
            "ours_under_load": loaded["ours"],
            "reference_under_load": loaded["reference"],
            "ours_slowdown": quiet["ours"] / loaded["ours"],
            "reference_slowdown": quiet["reference"] / loaded["reference"],
            "ratio_quiet": quiet["ratio"],
            "ratio_under_load": loaded["ratio"],
            "raw_steps_1_thread_under_load": raw[1],
            "raw_steps_2_threads_under_load": raw[2],
            "loadavg_under_load": load,
        }
        print(
            f"  {name}: ours {m['ours_quiet']:.0f} -> {m['ours_under_load']:.0f} images/s "
            f"({m['ours_slowdown']:.1f}x slower), reference {m['reference_quiet']:.0f} -> "
            f"{m['reference_under_load']:.0f} ({m['reference_slowdown']:.1f}x); plain steps under load: "
            f"1 thread {raw[1]:.0f}, 2 threads {raw[2]:.0f} images/s; load average {load:.1f}",
            flush=True,
        )
    fp32 = models["fp32"]
    return {
        "ours": fp32["ours_under_load"],
        "reference": fp32["reference_under_load"],
        "ratio": fp32["ours_under_load"] / fp32["reference_under_load"],
        "unit": "images/s under load",
        "steps": steps,
        **out,
        "loadavg_after": os.getloadavg()[0],
        "per_model": models,
    }


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
        "train_lenet5_qat_paths": lambda: bench_qat_paths(data, args.steps),
        "noise_sweep_lenet5": lambda: bench_noise_sweep(data, args.repeats),
        "sweep_workers": lambda: bench_sweep_workers(args.data, args.runs, args.workers),
        "qat_overhead": lambda: bench_qat_overhead(3),
        "under_load": lambda: bench_under_load(data, args.steps),
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
        load_before = os.getloadavg()[0]
        measured = case()
        results[name] = {
            **measured,
            "data": data.source,
            "torch_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_1min_before": load_before,  # the machine's load while it ran: a busy machine's numbers mean little
            "load_1min_after": os.getloadavg()[0],
            "machine": platform.machine(),
            "cpu": cpu(),  # model and instruction set: another CPU gives other speeds (and other last bits)
        }
        r = results[name]
        print(
            f"  ours {r['ours']:.4g} {r['unit']}, reference {r['reference']:.4g} {r['unit']}, "
            f"speed-up {r['ratio']:.2f}x",
            flush=True,
        )
    merged = {
        **previous,
        **{k: {**v, "revision": meta["revision"], "time_utc": meta["time_utc"]} for k, v in results.items()},
    }
    args.out.write_text(json.dumps(merged, indent=1) + "\n")
    print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    main()

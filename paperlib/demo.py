"""End-to-end LeNet-5 demo: train fp32, 8-bit dynamic and 8-bit constant (s=1), sweep noise, fit sigma_mid.

    python -m paperlib.demo --epochs 10 --data ../shared/data/cifar10-jpeg.tar.gz

Prints, per variant, clean test accuracy, training throughput and the
midpoint noise level, and writes them as CSV (``--out``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from . import DEFAULT_SIGMAS, TrainConfig, build_model, default_lr, fit_midpoint, load_cifar10, noise_sweep, summarize_sweep, train
from .device import resolve_device
from .provenance import git_revision

VARIANTS: tuple[tuple[str, int | None, float | None], ...] = (
    ("fp32", None, None),
    ("8-bit dynamic", 8, None),
    ("8-bit constant s=1", 8, 1.0),
)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=10, help="training epochs per variant (paper: 500)")
    ap.add_argument("--train-subset", type=int, default=None, help="stratified training subset size (default: all 50,000)")
    ap.add_argument("--repeats", type=int, default=5, help="noise draws per sigma")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=None, help="data root (default: $PAPERLIB_DATA, else ./data)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="results/demo_lenet5.csv", help="CSV of the results")
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    data = load_cifar10(args.data, train_subset=args.train_subset, seed=args.seed, device=device)
    rows = []
    for name, bits, scale in VARIANTS:
        print(f"== LeNet-5 {name}: {args.epochs} epochs on {data.describe()}, device {device}", flush=True)
        model = build_model("lenet5", bits, scale, seed=args.seed)
        res = train(model, data, TrainConfig(epochs=args.epochs, lr=default_lr("lenet5", bits), seed=args.seed), device=device)
        curve = noise_sweep(model, data.x_test, data.y_test, DEFAULT_SIGMAS, args.repeats, seed=args.seed)
        summary = summarize_sweep(curve)
        fit = fit_midpoint(summary.sigma, summary.acc_mean, summary.acc_std)
        rows.append({"variant": name, "bits": bits, "scale": scale, "epochs": args.epochs, "seed": args.seed,
                     "test_accuracy": res.test_accuracy, "peak_accuracy": summary.acc_mean.max(),
                     "sigma_mid": fit.sigma_mid, "sigma_mid_err": fit.sigma_mid_err, "fit": str(fit),
                     "train_images_per_s": res.images_per_s, "diverged": res.diverged,
                     "data": data.describe(), "device": str(device), "torch_threads": torch.get_num_threads(),
                     "revision": git_revision()})
        print(f"   test accuracy {res.test_accuracy:.4f}, sigma_mid {fit}, {res.images_per_s:.0f} images/s", flush=True)
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    print(df[["variant", "test_accuracy", "fit", "train_images_per_s"]].to_string(index=False))
    print(f"wrote {out}")
    return df


if __name__ == "__main__":
    main()

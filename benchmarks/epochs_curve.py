"""How peak accuracy and sigma_mid move with the training budget: the curve behind a profile's epochs.

    python -m benchmarks.epochs_curve --profile lenet-full --epochs 8 16 32 64 --executor local

Trains LeNet-5 in fp32 and at 8 bits with a constant scale (default s = 8, the
paper's headline network) on the profile's data for each number of epochs
(one seed; the runs of the profile's own epochs are the ones its notebooks
reuse from the cache), sweeps the profile's sigmas, and writes
``figures/<profile>/epochs_curve.csv`` (caption and fingerprint lines, like
every figure) and prints it as a Markdown table. Interrupted, it resumes from
the cache.
"""
from __future__ import annotations

import argparse

import pandas as pd

from paperlib import paper
from paperlib.runs import summary as rp


def epochs_curve(session: paper.Session, epochs: list[int], variants: list[rp.Variant], arch: str = "lenet5"):
    """One row per (epochs, variant): peak accuracy and sigma_mid with their errors; and the sweep table."""
    specs = [session.profile.spec(arch, bits=b, scale=s, epochs=e, seed=0) for e in sorted(epochs, reverse=True)
             for b, s in variants]  # the longest first: they set the wall time on a cluster
    df = session.sweep(specs)
    rows = []
    for e, g in df.groupby("epochs"):
        summary = rp.summarize(g).assign(epochs=int(e))
        rows.append(summary[["epochs", "variant", "peak_acc", "peak_acc_err", "sigma_mid", "sigma_mid_err", "fit"]])
    return pd.concat(rows, ignore_index=True).sort_values(["variant", "epochs"]), df


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="lenet-full", help="the profile whose data, sigmas and draws to use")
    ap.add_argument("--epochs", type=int, nargs="+", default=[8, 16, 32, 64], help="training budgets to compare")
    ap.add_argument("--scale", type=float, default=8.0, help="the constant scale s of the 8-bit network")
    ap.add_argument("--executor", default="local", help="'' (this process), local, local:N or a scheduler address")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = ap.parse_args(argv)
    session = paper.Session.from_parameters(args.profile, args.device, executor=args.executor)
    table, df = epochs_curve(session, args.epochs, [(None, None), (8, args.scale)])
    session.save_table(table, "epochs_curve", df)
    out = table.assign(
        peak=lambda t: [f"{100 * a:.1f} ± {100 * e:.1f}%" for a, e in zip(t.peak_acc, t.peak_acc_err)],
        mid=lambda t: [f"{m:.3g} ± {e:.2g}" for m, e in zip(t.sigma_mid, t.sigma_mid_err)],
    )[["variant", "epochs", "peak", "mid"]]
    print(session.caption(df))
    print("| variant | epochs | peak accuracy | sigma_mid |\n|---|---:|---:|---:|")
    for r in out.itertuples(index=False):
        print(f"| {r.variant} | {r.epochs} | {r.peak} | {r.mid} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How peak accuracy and sigma_mid move with the training budget: the curve behind a profile's epochs.

    python -m benchmarks.epochs_curve --profile lenet-full --epochs 8 16 32 64 --executor local
    python -m benchmarks.epochs_curve --profile gpu --arch vgg11 --epochs 5 10 20 40 --variants fp32 --executor ""

Trains an architecture in fp32 and in one QAT variant (``--variants``; default
:data:`paperlib.paper.epochs_curve.VARIANTS`: LeNet-5 at 8 bits with s = 8, the
paper's headline network; VGG-11 and ResNet-18 at 8 bits with s = 1) on the
profile's data for each number of epochs (one seed; the runs of the profile's
own epochs are the ones its notebooks reuse from the cache), sweeps the
profile's sigmas, and writes ``figures/<profile>/epochs_curve.csv`` (LeNet-5;
``epochs_curve_<arch>.csv`` for the others; caption and fingerprint lines, like
every figure) and prints it as a Markdown table. Interrupted, it resumes from
the cache; networks trained on a GPU machine (``python -m paperlib.paper.slices
--epochs-curve ARCH``, then ``make import``) are read from it, not trained here.
"""
from __future__ import annotations

import argparse

from paperlib import paper
from paperlib.paper import epochs_curve as ec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="lenet-full", help="the profile whose data, sigmas and draws to use")
    ap.add_argument("--arch", default="lenet5", choices=list(ec.VARIANTS), help="the architecture")
    ap.add_argument("--epochs", type=int, nargs="+", default=[8, 16, 32, 64], help="training budgets to compare")
    ap.add_argument("--variants", nargs="+", default=None, metavar="V",
                    help="fp32, BITS:dynamic or BITS:SCALE (default: fp32 and the arch's QAT variant)")
    ap.add_argument("--executor", default="local", help="'' (this process), local, local:N or a scheduler address")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = ap.parse_args(argv)
    try:
        variants = None if args.variants is None else [ec.parse_variant(v) for v in args.variants]
    except ValueError as exc:
        ap.error(str(exc))
    session = paper.Session.from_parameters(args.profile, args.device, executor=args.executor)
    try:
        specs = ec.specs(session.profile, args.epochs, args.arch, variants)
    except ValueError as exc:
        ap.error(str(exc))
    df = session.sweep(specs)
    table = ec.table(df)
    session.save_table(table, ec.name(args.arch), df, by=ec)
    print(session.caption(df))
    print(ec.markdown(table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env bash
# One slice of training on the GPU machine (paperlib/paper/slices.py; docs/experiments.md, "Training on a GPU
# machine in slices"). Run from anywhere in the repository copy there; its arguments go to the slice, e.g.
#
#   bash benchmarks/gpu_slice.sh --profile gpu --notebooks 02-vgg11 --budget-s 420 --device cuda \
#       --data data/cifar10-jpeg.tar.gz --resume results/slices/results-gpu-slice.tar.gz
#
# It installs the wheels that machine lacks (brevitas and what it needs beyond that machine's packages, and
# safetensors and seaborn: `make gpu-wheels` downloads them into wheels/, which must travel with the command) into a folder
# of its own, sets PYTHONPATH to the repository and that folder, and writes the archive and slice.json to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=benchmarks/gpu_env.sh
source benchmarks/gpu_env.sh
exec "$PYTHON" -m paperlib.paper.slices --out "$OUT" "$@"

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
: "${OUT:?OUT must name the folder for the results (the device machine sets it)}"
WHEELS="${PAPERLIB_WHEELS:-wheels}"
SITE="${PAPERLIB_SITE:-/tmp/paperlib-site}"
PYTHON="${PYTHON:-python3}"
if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "error: no wheels in $WHEELS: run 'make gpu-wheels' here and carry wheels/ with the command" >&2
    exit 2
fi
"$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEELS"/*.whl
export PYTHONPATH=".:$SITE" PYTHONUNBUFFERED=1
exec "$PYTHON" -m paperlib.paper.slices --out "$OUT" "$@"

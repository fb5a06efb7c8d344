#!/usr/bin/env bash
# A GPU session's prepared command: one `run` of the device machine (under 8 minutes), every number under $OUT.
#
#   bash benchmarks/gpu_session.sh --profile gpu --epochs-curve vgg11 --epochs 5 10 20 40 --variants fp32 \
#       --data data/cifar10-jpeg.tar.gz [--resume results/slices/results-gpu-slice.tar.gz]
#
# First the device check of every architecture (python -m benchmarks.gpu_check -> $OUT/gpu_check.json: training
# speed of fp32 and of each QAT path, QAT/fp32, reruns and fast vs Brevitas compared bit for bit under deterministic
# kernels, the cost of determinism, one spec trained twice, the budget timings), then one slice of training
# (benchmarks/gpu_slice.sh with these arguments -> $OUT/results-<profile>-slice.tar.gz and $OUT/slice.json) in the
# time left, its runs estimated from that check's timings. Carry wheels/ (make gpu-wheels), the data set and the
# last slice's archive. Environment: PAPERLIB_SESSION_S (default 420: no run of the slice ends later, counted from
# this script's start), PAPERLIB_DEVICE (default cuda), PAPERLIB_CHECK_ARGS (e.g. "--archs lenet5 vgg11", or
# "--quick" to try it on a CPU), PYTHON, PAPERLIB_WHEELS, PAPERLIB_SITE (as gpu_slice.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
TOTAL_S="${PAPERLIB_SESSION_S:-420}"
DEVICE="${PAPERLIB_DEVICE:-cuda}"
# shellcheck source=benchmarks/gpu_env.sh
source benchmarks/gpu_env.sh
echo "== device check ($DEVICE) -> $OUT/gpu_check.json"
timings=()
# shellcheck disable=SC2086  # PAPERLIB_CHECK_ARGS holds several arguments
if "$PYTHON" -m benchmarks.gpu_check --device "$DEVICE" \
        ${PAPERLIB_CHECK_ARGS:-} --out "$OUT/gpu_check.json" > /dev/null; then
    timings=(--timings "$OUT/gpu_check.json")
else
    echo "warning: the device check failed (its error is above); the slice estimates its runs by probing" >&2
fi
left=$(( TOTAL_S - ($(date +%s) - start) ))
echo "== device check done after $(( TOTAL_S - left )) s; a slice of ${left} s"
if (( left < 30 )); then
    echo "error: the device check left ${left} s of PAPERLIB_SESSION_S=${TOTAL_S}: no slice" >&2
    exit 1
fi
exec bash benchmarks/gpu_slice.sh --device "$DEVICE" --budget-s "$left" "${timings[@]}" "$@"

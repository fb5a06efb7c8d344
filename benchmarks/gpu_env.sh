# Sourced by gpu_slice.sh and gpu_session.sh (run from the repository root): installs the carried wheels (brevitas and
# what it needs beyond the GPU machine's packages, and safetensors: `make gpu-wheels` downloads them into wheels/) into
# a folder of its own, once per folder, and puts the repository and that folder on PYTHONPATH. Environment:
# PAPERLIB_WHEELS (default wheels), PAPERLIB_SITE (default /tmp/paperlib-site), PYTHON (default python3).
: "${OUT:?OUT must name the folder for the results (the device machine sets it)}"
WHEELS="${PAPERLIB_WHEELS:-wheels}"
SITE="${PAPERLIB_SITE:-/tmp/paperlib-site}"
PYTHON="${PYTHON:-python3}"
if [ "${PAPERLIB_WHEELS_INSTALLED:-}" != "$SITE" ]; then
    if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "error: no wheels in $WHEELS: run 'make gpu-wheels' here and carry wheels/ with the command" >&2
        exit 2
    fi
    "$PYTHON" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        "$WHEELS"/*.whl
    export PAPERLIB_WHEELS_INSTALLED="$SITE"
fi
export PYTHONPATH=".:$SITE" PYTHONUNBUFFERED=1

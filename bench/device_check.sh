#!/usr/bin/env bash
# The GPU device check (issue 12), one short script, at most 8 minutes:
#   1. what onnxruntime runs on (providers, the GPU), and that the pack's models open on it;
#   2. model latency, engine vs bare onnxruntime, face models batched (bench/models.py);
#   3. several cameras end to end: one batched perceive vs a perceive per camera vs the bare
#      batched loop, 1 and 4 cameras at 640x480 (bench/cameras.py).
# Prints one table (Markdown, for docs/benchmarks.md) and leaves the JSON under $OUT (or bench-out/).
#
# Needs, made beforehand on a machine with the registries (the device machine has no network):
#   make setup GPU=1                       # .venv with onnxruntime-gpu instead of onnxruntime
#   .venv/bin/sensorfuse models build      # the model pack (SENSORFUSE_MODEL_CACHE, or the user cache)
# Usage: bash bench/device_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
start=$(date +%s)

if [ ! -x "$PY" ]; then
    echo "device_check: no $PY (make setup GPU=1 first)" >&2
    exit 2
fi
"$PY" - <<'PYEOF' | tee "$OUT/device.txt"
import subprocess
import onnxruntime as ort
from sensorfuse.engine import inference, manifest as mf
from sensorfuse.perception.encoders import FACE_MODEL, LANDMARK_MODEL, SCENE_MODEL
print("onnxruntime", ort.__version__, "providers", ort.get_available_providers(), "usable", inference.usable_providers())
try:
    print(subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                         capture_output=True, text=True, timeout=20).stdout.strip() or "nvidia-smi: no GPU listed")
except OSError:
    print("nvidia-smi: not found")
for name in (FACE_MODEL, LANDMARK_MODEL, SCENE_MODEL):
    model = inference.open_model(mf.find_manifest(name, None))
    print(f"{name}: {model.provider}{' (IO binding)' if model.io_binding else ''}")
PYEOF

timeout 200 "$PY" bench/models.py --seconds 0.5 --only blazeface_short face_landmarks efficientnet_lite0 \
    | tee "$OUT/models.txt"
left=$(( 480 - ($(date +%s) - start) ))
timeout $(( left > 60 ? left - 20 : 40 )) "$PY" bench/cameras.py --cameras 1,4 --duration 6 --json "$OUT/cameras.json" \
    | tee "$OUT/cameras.txt"
echo
echo "## device check ($(date -u +%F), $(head -c 200 "$OUT/device.txt" | head -1))"
grep '^|' "$OUT/models.txt" || true
echo
grep '^|' "$OUT/cameras.txt"
echo "device_check: done in $(( $(date +%s) - start )) s; JSON and logs in $OUT/"

#!/usr/bin/env bash
# One short GPU check (< 5 min): the training benchmark with the panel resident on the device.
# Prints our TFT and DeepAR training samples/s in fp32, bf16 and bf16 + torch.compile, and the data-time
# share of a step (target < 5 %), then the datamodule benchmark on the device. Needs no network: it uses
# ../shared/data when present, else the embedded sample in data/sample.
#   bash scripts/gpu_check.sh            # from the repository root (or anywhere: it cds there)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
[ -x "$PY" ] || PY=python3
STEPS=${STEPS:-100}
DATA=sample
[ -f ../shared/data/prices.parquet ] && DATA=shared
echo "== deepq gpu_check  $(date -u +%FT%TZ)  python: $PY  data: $DATA"
"$PY" - <<'PY' || { echo "torch/CUDA not usable; stopping"; exit 1; }
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
assert torch.cuda.is_available(), "no CUDA device"
print("device", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
PY
run() {  # label, then bench_train arguments; a failure is reported and the script goes on
  echo "-- $1"
  timeout 150 "$PY" scripts/bench_train.py --data "$DATA" --device cuda --threads 4 --only ours \
      --steps "$STEPS" --warmup 10 "${@:2}" 2>&1 | grep -E "^(panel|ours_|ratio)" || echo "   ($1 failed or timed out)"
}
run "fp32"          --precision fp32
run "bf16"          --precision bf16
run "bf16+compile"  --precision bf16 --compile
run "fp32 batch 1024" --precision fp32 --batch 1024
echo "-- profile, fp32 (torch.profiler over 5 steps; traces in \${PROFILE_DIR:-/tmp/deepq_gpu_profile})"
timeout 150 "$PY" scripts/bench_train.py --data "$DATA" --device cuda --threads 4 --only ours --steps 20 \
    --warmup 5 --profile "${PROFILE_DIR:-/tmp/deepq_gpu_profile}" --profile-top 15 2>&1 | grep -vE "^USDT" \
  || echo "   (profile failed or timed out)"
echo "-- datamodule on the device (ours only): 200 batches of 256, lookback 60, 100 features"
timeout 120 "$PY" scripts/bench_datamodule.py --data "$DATA" --device cuda --skip-peer 2>&1 | grep -E "^(panel|ours)" \
  || echo "   (datamodule benchmark failed or timed out)"
echo "== done $(date -u +%FT%TZ)"

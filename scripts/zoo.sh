#!/usr/bin/env bash
# The model zoo: every network x task experiment preset (conf/experiment/<model>_<task>.yaml) walked forward on
# the full shared panel, one process per run, then one leaderboard (`deepq compare`). Sized by environment
# variables so the same script runs on a GPU workstation and, smaller, on a CPU:
#
#   bash scripts/zoo.sh                                   # GPU, ../shared/data, tests 2020 -> 2024-06
#   TRAINER=cpu THREADS=2 SAMPLES=20000 VAL_SAMPLES=20000 EPOCHS=3 BATCH=256 bash scripts/zoo.sh
#   MODELS="tft" TASKS="risk" bash scripts/zoo.sh
#
# A run that fails or passes PER_RUN seconds is reported and the next one starts; its log stays in OUTDIR.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
DATA_DIR=${DATA_DIR:-../shared/data}
MODELS=${MODELS:-"lstm transformer tft deepar"}
TASKS=${TASKS:-"returns direction signal risk"}
TRAINER=${TRAINER:-gpu}
PRECISION=${PRECISION:-32-true}        # fp32: bf16 and compile were slower for these small models on an H200
THREADS=${THREADS:-8}
START=${START:-2000-01-01}
FIRST_TEST=${FIRST_TEST:-2020-01-01}   # 10 years train -> 1 year test, rolling yearly: 2020 .. 2024-06
SAMPLES=${SAMPLES:-50000}              # training windows drawn per epoch
VAL_SAMPLES=${VAL_SAMPLES:-null}       # early-stopping windows (whole symbols); null = the full validation year
EPOCHS=${EPOCHS:-5}
BATCH=${BATCH:-1024}                   # training batch; on a CPU 256 gives 4x the optimiser steps at the same cost
PER_RUN=${PER_RUN:-300}
OUTDIR=${OUTDIR:-outputs/zoo}
mkdir -p "$OUTDIR"
echo "== deepq zoo $(date -u +%FT%TZ) models: $MODELS tasks: $TASKS trainer: $TRAINER data: $DATA_DIR"
one() {  # one model x task run; prints its exit status, seconds and verdict
  local m=$1 t=$2 run="$OUTDIR/${1}_${2}" t0
  t0=$(date +%s)
  timeout "$PER_RUN" "$PY" -m deepq.tasks.train "experiment=${m}_${t}" "trainer=$TRAINER" \
    "data.prices=$DATA_DIR/prices.parquet" "data.sectors=$DATA_DIR/sectors.parquet" \
    "data.constituents=$DATA_DIR/constituents.parquet" "data.sessions=$DATA_DIR/nyse_sessions.parquet" \
    "data.start=$START" "split.first_test=$FIRST_TEST" "datamodule.max_train_samples=$SAMPLES" \
    "datamodule.max_val_samples=$VAL_SAMPLES" "datamodule.batch_size=$BATCH" \
    "trainer.max_epochs=$EPOCHS" "++trainer.precision=$PRECISION" "num_threads=$THREADS" \
    registry.enabled=false "hydra.run.dir=$run" >"$run.log" 2>&1
  printf '%-22s rc=%-3s %5ss  %s\n' "${m}_${t}" "$?" "$(($(date +%s) - t0))" \
    "$(grep -E "beat" "$run.log" | tail -2 | tr -d '\n' | cut -c1-160)"
}
# PARALLEL=1 runs each model's chain of tasks in its own process, side by side (a GPU and 16 cores hold
# four small networks at once); the feature cache is written atomically, so concurrent first runs are safe.
for m in $MODELS; do
  if [ "${PARALLEL:-0}" = 1 ]; then
    (for t in $TASKS; do one "$m" "$t"; done) &
  else
    for t in $TASKS; do one "$m" "$t"; done
  fi
done
wait
"$PY" -m deepq.tasks.compare "$OUTDIR" --out "$OUTDIR" 2>&1 | tail -40
echo "== done $(date -u +%FT%TZ)"

#!/usr/bin/env bash
# The whole comparison of lbsim with the real grpc-go code, on this machine:
#
#   1. builds the Go harness (validation/go) against grpc-go v1.71.1 (before
#      PR #8095), v1.72.0 (the fix) and v1.81.1 (A115), with and without -race;
#   2. calibrates this machine's Go runtime (wake-ups, hand-offs, step costs,
#      involuntary pauses) at each GOMAXPROCS, with and without -race;
#   3. measures the real leak rates over the close delays;
#   4. runs `lbsim compare`: lbsim's prediction of every measured point, the
#      table and the chart, under results/validation/.
#
#   validation/run.sh              everything (about 25 minutes on 2 cores)
#   validation/run.sh --quick      a few minutes, for a first look
#
# Run it on an otherwise idle machine: the leak rate depends on the load.
# Settings (environment): ITERS (v1.71.1 iterations per point), FIXED_ITERS
# (v1.72.0 and v1.81.1 per point), RACE_ITERS, DELAYS, PROCS, RACE_PROCS,
# RACE_DELAYS, PRED_RUNS (lbsim runs per leaking point), OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
export GOTOOLCHAIN=local
if [[ ${1:-} == --quick ]]; then
  : "${ITERS:=30000}" "${FIXED_ITERS:=10000}" "${RACE_ITERS:=3000}" "${PRED_RUNS:=50000}"
fi
ITERS=${ITERS:-300000}
FIXED_ITERS=${FIXED_ITERS:-50000}
RACE_ITERS=${RACE_ITERS:-30000}
DELAYS=${DELAYS:-0,2us,5us,10us,20us,50us,100us}
PROCS=${PROCS:-1 2 4}
RACE_PROCS=${RACE_PROCS:-2 4}
RACE_DELAYS=${RACE_DELAYS:-0,10us,50us}
PRED_RUNS=${PRED_RUNS:-200000}
OUT=${OUT:-results/validation}
BIN=target/validation
CAL="$OUT/calibration"
mkdir -p "$BIN" "$CAL"

echo "== building the harness" >&2
for v in v1.71.1 v1.72.0 v1.81.1; do
  (cd validation/go && go build -modfile=go.$v.mod -o "../../$BIN/validate-$v" .)
  (cd validation/go && go build -race -modfile=go.$v.mod -o "../../$BIN/validate-$v-race" .)
done
cargo build --release --quiet

echo "== calibrating the Go runtime of this machine" >&2
for p in $PROCS; do
  GOMAXPROCS=$p "$BIN/validate-v1.71.1" -mode calibrate -version v1.71.1 > "$CAL/gomaxprocs-$p.json.tmp"
  mv "$CAL/gomaxprocs-$p.json.tmp" "$CAL/gomaxprocs-$p.json"
done
for p in $RACE_PROCS; do
  GOMAXPROCS=$p "$BIN/validate-v1.71.1-race" -mode calibrate -race -version v1.71.1 > "$CAL/gomaxprocs-$p-race.json.tmp"
  mv "$CAL/gomaxprocs-$p-race.json.tmp" "$CAL/gomaxprocs-$p-race.json"
done

echo "== measuring the real harness" >&2
REAL="$OUT/real.jsonl"
: > "$REAL.tmp"
for p in $PROCS; do
  GOMAXPROCS=$p "$BIN/validate-v1.71.1" -version v1.71.1 -iters "$ITERS" -delays "$DELAYS" | tee -a "$REAL.tmp"
done
for v in v1.72.0 v1.81.1; do
  for p in $PROCS; do
    GOMAXPROCS=$p "$BIN/validate-$v" -version $v -iters "$FIXED_ITERS" -delays "$DELAYS" -max-leaks 0 | tee -a "$REAL.tmp"
  done
done
for v in v1.71.1 v1.72.0 v1.81.1; do
  max=0; [[ $v == v1.71.1 ]] && max=-1
  for p in $RACE_PROCS; do
    GOMAXPROCS=$p "$BIN/validate-$v-race" -race -version $v -iters "$RACE_ITERS" -delays "$RACE_DELAYS" -max-leaks $max | tee -a "$REAL.tmp"
  done
done
mv "$REAL.tmp" "$REAL"

echo "== predicting the same points with lbsim" >&2
./target/release/lbsim compare --real "$REAL" --calibration "$CAL" --runs "$PRED_RUNS" --out "$OUT"

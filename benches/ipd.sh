#!/usr/bin/env bash
# Instructions per scheduling decision of the flagship scenario (pre-8095,
# one thread), counted by callgrind: the difference between a run of N and
# one of N/4 runs, over the difference of their decisions, so that start-up
# and the scenario's calibration cancel out. Counts, not seconds: stable on
# a loaded machine.
#
#   benches/ipd.sh [N]        (default 1200; needs valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1200}
M=$((N / 4))
SCENARIO=scenarios/switch_to_lower_priority_and_back.toml
cargo build --release --quiet
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
measure() { # strategy runs -> "instructions steps"
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" \
    "${CARGO_TARGET_DIR:-target}"/release/lbsim run "$SCENARIO" --variant pre-8095 --runs "$2" --strategy "$1" \
    -j 1 --no-plot --quiet --format json --out "$tmp/out" > "$tmp/json" 2> /dev/null
  local ir steps
  ir=$(grep -m1 '^summary:' "$tmp/cg" | awk '{print $2}')
  steps=$(sed -n 's/.*"steps":\([0-9]*\).*/\1/p' "$tmp/json")
  echo "$ir $steps"
}
for strategy in random timed; do
  read -r ir_m st_m < <(measure "$strategy" "$M")
  read -r ir_n st_n < <(measure "$strategy" "$N")
  awk -v s="$strategy" -v a="$ir_m" -v b="$ir_n" -v c="$st_m" -v d="$st_n" -v n="$N" -v m="$M" \
    'BEGIN { printf "%-7s %6.0f instructions per decision (%d decisions per run, %.2fM instructions per run)\n", s, (b - a) / (d - c), (d - c) / (n - m), (b - a) / (n - m) / 1e6 }'
done

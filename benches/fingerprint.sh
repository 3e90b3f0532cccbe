#!/usr/bin/env bash
# A fingerprint of the results: for every shipped scenario, strategy
# (random, timed, pct:3) and variant, the outcome counts, total decisions,
# total preemptions and first failure seed of a fixed batch of runs (400;
# 60 for flapping_localities). A change that must not move results (a
# speed-up, a refactor) leaves this output byte-identical:
#
#   benches/fingerprint.sh > before.txt; <change>; benches/fingerprint.sh > after.txt
#   diff before.txt after.txt
#
# BIN overrides the binary (default: target/release/lbsim, built here).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z ${BIN:-} ]]; then
  cargo build --release --quiet
  BIN=target/release/lbsim
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for s in scenarios/*.toml; do
  for st in random timed pct:3; do
    n=400
    [[ $s == *flapping* ]] && n=60
    "$BIN" run "$s" --runs $n --strategy $st --variant all -j 2 --no-plot --quiet \
      --format json --out "$tmp/out" 2>&1 |
      python3 -c 'import sys, json
for l in sys.stdin:
    l = l.strip()
    if not l.startswith("{"):
        print("ERR", l)
        continue
    d = json.loads(l)
    print(d["scenario"], d["strategy"], d["variant"], d["ok"], d["leaks"], d["deadlocks"],
          d["panics"], d["limits"], d["steps"], d["preemptions"], d["first_failure_seed"])'
  done
done

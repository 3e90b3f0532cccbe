#!/usr/bin/env bash
# Regenerates the reference outputs of the flagship scenario under
# results/switch_to_lower_priority_and_back/ and prints every figure
# results/README.md quotes, with the command that produced it:
#
#   the README's main command (summary.csv, failures.csv, leak_rate.*) and
#   the timeline of its first pre-8095 leak; 300,000 timed runs of pre-8095;
#   100,000 random and 100,000 pct:3 runs of every variant; the PCT depth
#   study (pct:1..5, pre-8095, 100,000 runs each: pct_depth.csv and .png/.svg);
#   the pause-probability sweep (sweep_runtime_pause_prob.*); the
#   minimization of the first leak.
#
#   results/regenerate.sh                 everything (about 40 minutes of CPU
#                                         on 2 cores)
#   results/regenerate.sh depth sweep     only these parts (main, timed,
#                                         systematic, depth, sweep)
#
# The counts do not depend on the machine or on --jobs; the times do.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
B=target/release/lbsim
S=scenarios/switch_to_lower_priority_and_back.toml
OUT=results/switch_to_lower_priority_and_back
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$OUT"
PARTS=${*:-main timed systematic depth sweep}
want() { [[ " $PARTS " == *" $1 "* ]]; }

show() { # command...: prints it, runs it, keeps the table (not the timing line)
  echo
  echo "\$ ${*/#target\/release\/lbsim/lbsim}"
  "$@" 2>&1 | grep -v '^wrote\|^[0-9]* runs × \|point(s) × '
}

first_seed() { # summary.csv variant -> first failure seed
  python3 - "$1" "$2" <<'EOF'
import csv, sys
for row in csv.DictReader(open(sys.argv[1])):
    if row["variant"] == sys.argv[2] and row["first_failure_seed"]:
        print(row["first_failure_seed"])
EOF
}

if want main; then
echo "== the README's main command"
rm -f "$OUT"/timeline_*.png "$OUT"/timeline_*.svg
show "$B" run "$S" --out "$OUT"
seed=$(first_seed "$OUT/summary.csv" pre-8095)
if [[ -n $seed ]]; then
  "$B" replay "$S" --variant pre-8095 --seed "$seed" --strategy timed \
    --timeline "$OUT/timeline_$seed.png" > /dev/null
  "$B" replay "$S" --variant pre-8095 --seed "$seed" --strategy timed \
    --timeline "$OUT/timeline_$seed.svg" > /dev/null
  echo
  echo "\$ lbsim minimize $S --variant pre-8095 --seed $seed --strategy timed"
  "$B" minimize "$S" --variant pre-8095 --seed "$seed" --strategy timed |
    grep '^original\|^minimized'
fi
fi

if want timed; then
echo
echo "== timed, pre-8095"
show "$B" run "$S" --runs 300000 --strategy timed --variant pre-8095 --jobs 2 --no-plot --out "$tmp/timed"
fi

if want systematic; then
echo
echo "== random and pct:3, every variant"
show "$B" run "$S" --runs 100000 --strategy random --variant all --jobs 2 --no-plot --out "$tmp/random"
show "$B" run "$S" --runs 100000 --strategy pct:3 --variant all --jobs 2 --no-plot --out "$tmp/pct3"
fi

if want depth; then
echo
echo "== PCT depth study"
for d in 1 2 3 4 5; do
  show "$B" run "$S" --runs 100000 --strategy "pct:$d" --variant pre-8095 --jobs 2 --no-plot --out "$tmp/depth$d"
done
# n: the mean number of tasks of 12 replayed pct:3 runs.
for s in $(seq 1 12); do
  "$B" replay "$S" --variant pre-8095 --seed "$s" --strategy pct:3 |
    sed -n 's/^run: .* \([0-9]*\) tasks,.*/\1/p'
done > "$tmp/tasks"
python3 - "$tmp" "$OUT" <<'EOF'
import csv, os, sys
tmp, out = sys.argv[1], sys.argv[2]
tasks = [int(x) for x in open(os.path.join(tmp, "tasks")).read().split()]
n = round(sum(tasks) / len(tasks))
rows, summary = [], []
for d in range(1, 6):
    r = next(csv.DictReader(open(os.path.join(tmp, f"depth{d}", "summary.csv"))))
    k = round(int(r["steps"]) / int(r["runs"]))
    bound = 0.0 if d == 1 else 1.0 / (n * k ** (d - 1))
    rows.append([d, "pre-8095", r["runs"], r["leaks"], "%.3e" % float(r["rate"]),
                 "%.3e" % float(r["ci95_low"]), "%.3e" % float(r["ci95_high"]), k, n,
                 "%.3e" % bound])
    summary.append(r)
with open(os.path.join(out, "pct_depth.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["depth", "variant", "runs", "leaks", "rate", "ci95_low", "ci95_high",
                "mean_steps_k", "mean_tasks_n", "pct_lower_bound_depth2"])
    w.writerows(rows)
with open(os.path.join(tmp, "depth_summary.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(summary[0].keys()))
    w.writeheader()
    w.writerows(summary)
print()
print(open(os.path.join(out, "pct_depth.csv")).read())
EOF
for ext in png svg; do
  "$B" plot "$tmp/depth_summary.csv" --out "$OUT/pct_depth.$ext" \
    --title "pre-8095 leak rate by PCT depth D — switch_to_lower_priority_and_back" > /dev/null
done
fi

if want sweep; then
echo
echo "== pause-probability sweep"
show "$B" sweep "$S" --param runtime.pause_prob=0.0005..0.002:4 --variant pre-8095,pr-8095 \
  --strategy timed --runs 150000 --jobs 2 --out "$OUT"
fi

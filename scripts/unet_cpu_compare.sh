#!/usr/bin/env bash
# The CPU UNet training step of `dsb fit` against the same step in PyTorch (issue 13, item 3),
# interleaved: REPS rounds of (dsb, PyTorch 1 thread, PyTorch 2 threads) at the CPU defaults
# (base width 16, multipliers 1,2, one block per level, attention, batch 32; MNIST fixture).
# Prints seconds per step (medians of each run's timed steps) and writes $OUT/unet-cpu.json.
#
#   PYTHON=$HOME/peer-venvs/venv/bin/python bash scripts/unet_cpu_compare.sh
#
# PYTHON must have torch (a CPU build is enough). The machine, load and versions go in the
# report; compare only figures from one run of this script.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
REPS=${REPS:-3}
STEPS=${STEPS:-20}
OUT=${OUT:-target/unet-cpu-compare}
mkdir -p "$OUT"
DSB=${DSB:-target/release/dsb}
[ -x "$DSB" ] || cargo build --release
"$PYTHON" -c "import torch" || { echo "PYTHON=$PYTHON has no torch"; exit 2; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
: > "$OUT/rows.txt"
for r in $(seq 1 "$REPS"); do
  rm -rf "$OUT/dsb-run"
  "$DSB" fit --data mnist --data-dir tests/fixtures/mnist-5k --stop-after $((STEPS + 3)) \
    --loss-log "$OUT/dsb-loss.csv" --out "$OUT/dsb-run" --quiet > /dev/null
  # Skip the first 3 steps (warm-up), as PyTorch's --warmup 3 does.
  d=$(tail -n +5 "$OUT/dsb-loss.csv" | cut -d, -f6 | median)
  echo "dsb $r $d" | tee -a "$OUT/rows.txt"
  rm -f "$OUT/dsb-loss.csv"
  for t in 1 2; do
    OMP_NUM_THREADS=$t OMP_WAIT_POLICY=PASSIVE "$PYTHON" scripts/unet_reference.py --device cpu \
      --width 16 --mults 1,2 --blocks 1 --batch 32 --warmup 3 --steps "$STEPS" \
      --loss-csv "$OUT/torch.csv" --json "$OUT/torch.json" > /dev/null
    p=$(tail -n +5 "$OUT/torch.csv" | cut -d, -f3 | median)
    echo "torch-${t}t $r $p" | tee -a "$OUT/rows.txt"
  done
done
"$PYTHON" - "$OUT" <<'PY'
import json, statistics, sys, os
out = sys.argv[1]
rows = [l.split() for l in open(os.path.join(out, "rows.txt"))]
res = {}
for name, _, v in rows:
    res.setdefault(name, []).append(float(v))
summary = {k: {"median_s_per_step": statistics.median(v), "runs": v} for k, v in res.items()}
json.dump(summary, open(os.path.join(out, "unet-cpu.json"), "w"), indent=2)
for k, v in summary.items():
    print(f"{k:10s} {v['median_s_per_step']:.3f} s/step (runs {', '.join(f'{x:.3f}' for x in v['runs'])})")
d = summary["dsb"]["median_s_per_step"]
for k in ("torch-1t", "torch-2t"):
    print(f"dsb / {k}: {d / summary[k]['median_s_per_step']:.2f}x the time per step")
PY

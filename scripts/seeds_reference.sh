#!/usr/bin/env bash
# The reference log Z of the `seeds` target (random-effects binomial model, 26-D): the mean of
# five long adaptive-tempering SMC runs (8,192 particles, 10 HMC moves per temperature, CESS
# 0.95, seeds 0-4), printed with the standard deviation over the runs and the standard error
# of the mean. Used as `seeds::LOG_Z_REFERENCE` (src/target/seeds.rs).
# Run from the repository root after `cargo build --release` (about 5 minutes on 2 cores).
set -euo pipefail
vals=()
for s in 0 1 2 3 4; do
  v=$(./target/release/dsb sample --target seeds --method smc --particles 8192 --seed "$s" --n 100 --json --quiet \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["log_z"])')
  echo "seed $s: log Z-hat $v"
  vals+=("$v")
done
python3 - "${vals[@]}" <<'PY'
import statistics, sys
v = [float(a) for a in sys.argv[1:]]
m, sd = statistics.mean(v), statistics.stdev(v)
print(f"mean {m:.4f}  sd over runs {sd:.4f}  s.e. of the mean {sd / len(v) ** 0.5:.4f}")
PY

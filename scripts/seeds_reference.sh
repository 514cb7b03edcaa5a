#!/usr/bin/env bash
# The reference log Z of the `seeds` target (random-effects binomial model, 26-D): the mean of
# ten adaptive-tempering SMC runs (2,048 particles, 20 HMC moves of 5 leapfrog steps per
# temperature, CESS 0.98, seeds 0-9), printed with the standard deviation over the runs and
# the standard error of the mean. Used as `seeds::LOG_Z_REFERENCE` (src/target/seeds.rs).
# Run from the repository root after `cargo build --release` (10-20 minutes on 2 cores).
set -euo pipefail
vals=()
for s in 0 1 2 3 4 5 6 7 8 9; do
  v=$(./target/release/dsb sample --target seeds --method smc --particles 2048 --moves 20 --cess 0.98 --seed "$s" --n 100 --json --quiet \
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

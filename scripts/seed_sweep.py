"""log Ẑ and ESS of one `dsb` command over a range of seeds, for one or more builds.

Usage: python3 scripts/seed_sweep.py BIN[,BIN...] FIRST LAST -- ARGS...

Runs `BIN ARGS... --seed S --json --quiet` for S = FIRST..=LAST and each binary, and prints per
seed the log Ẑ ± its standard error and the ESS of each binary, then per binary the mean and
spread of log Ẑ over the seeds. Used in BENCHMARKS.md to compare builds whose random streams
differ (issue 13: the normals' generator), where one seed says little:

    python3 scripts/seed_sweep.py OLD/dsb,target/release/dsb 0 14 -- \\
        sample --target funnel --method dsb
"""
import json
import statistics
import subprocess
import sys

if len(sys.argv) < 5 or sys.argv[4] != "--":
    sys.exit(__doc__)
bins = sys.argv[1].split(",")
first, last = int(sys.argv[2]), int(sys.argv[3])
args = sys.argv[5:]
res = {b: [] for b in bins}
for seed in range(first, last + 1):
    cells = []
    for b in bins:
        out = subprocess.run([b, *args, "--seed", str(seed), "--json", "--quiet"],
                             capture_output=True, text=True)
        try:
            e = json.loads(out.stdout)["estimates"]
            lz, se, ess = e["log_z"], e["log_z_stderr"], e["ess"]
        except (json.JSONDecodeError, KeyError):
            lz, se, ess = float("nan"), float("nan"), float("nan")
        res[b].append(lz)
        if lz == lz:
            cells.append(f"{lz:+.4f} ± {se:.4f} (ESS {ess:.4f})")
        else:
            # An error exit (divergence, a failed check): its message, shortened.
            cells.append(f"failed (exit {out.returncode}: {out.stderr.strip()[:60]})")
    print(f"seed {seed:3d}: " + "   ".join(cells), flush=True)
for b in bins:
    v = [x for x in res[b] if x == x]
    failed = len(res[b]) - len(v)
    print(f"{b}: mean log Ẑ {statistics.mean(v):+.4f}, sd {statistics.stdev(v):.4f}, "
          f"min {min(v):+.4f}, max {max(v):+.4f} over {len(v)} seeds ({failed} failed)")

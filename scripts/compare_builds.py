"""Interleaved whole-run comparison of dsb binaries on any `dsb` command line.

Usage: python3 scripts/compare_builds.py BIN[,BIN...] REPS -- ARGS...

Runs `BIN ARGS... --json --quiet` for each binary in turn, REPS times (the order reversed on
every other repetition), and prints per binary the medians of the wall time, the CPU time (user
+ system of the child) and the train_seconds and log_z of the JSON output (where present), with
each repetition's log_z, so that two builds are compared in one run on a noisy machine
(BENCHMARKS.md, issue 13). Example:

    python3 scripts/compare_builds.py /tmp/old/dsb,target/release/dsb 3 -- \
        sample --target funnel --method dsb --iters 200 --ipf-iters 1 --seed 1
"""
import json
import resource
import statistics
import subprocess
import sys
import time

if len(sys.argv) < 4 or sys.argv[3] != "--":
    sys.exit(__doc__)
bins = sys.argv[1].split(",")
reps = int(sys.argv[2])
args = sys.argv[4:] + ["--json", "--quiet"]
res = {b: [] for b in bins}
for rep in range(reps):
    for b in bins if rep % 2 == 0 else bins[::-1]:
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        out = subprocess.run([b] + args, capture_output=True, text=True, check=True).stdout
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
        j = json.loads(out)
        log_z = j.get("log_z", j.get("estimates", {}).get("log_z"))
        res[b].append((wall, cpu, j.get("train_seconds", float("nan")), log_z))
print("args:", " ".join(args))
for b, v in res.items():
    med = lambda i: statistics.median(x[i] for x in v)
    zs = " ".join(f"{x[3]:.4f}" if isinstance(x[3], float) else "-" for x in v)
    print(f"{b}: wall {med(0):7.2f} s, CPU {med(1):7.2f} s, train {med(2):7.2f} s; "
          f"log Z per run: {zs}")

"""Interleaved whole-run timing of dsb binaries on the DDS yardstick's configuration.

Usage: python3 scripts/dds_whole_runs.py BIN[,BIN...] BATCH REPS [ITERS]

Runs `dsb sample --target funnel --steps 128 --width 64 --depth 2 --replay 0` with each loss
(reverse KL and log-variance) for each binary in turn, REPS times, and prints the medians of the
training time per iteration (from `--json`'s train_seconds), of the whole run's wall time and of
its CPU time (user + system of the child). Used to compare two builds of dsb in one interleaved
run (BENCHMARKS.md, issue 13); ../shared/peers/dds/bench.py compares dsb with the peers.
"""
import json
import resource
import statistics
import subprocess
import sys
import time

bins = sys.argv[1].split(",")
batch, reps = sys.argv[2], int(sys.argv[3])
iters = sys.argv[4] if len(sys.argv) > 4 else "100"
res = {}
for _ in range(reps):
    for b in bins:
        for loss in ["kl", "log-var"]:
            cmd = [b, "sample", "--target", "funnel", "--steps", "128", "--batch", batch,
                   "--width", "64", "--depth", "2", "--loss", loss, "--iters", iters,
                   "--replay", "0", "--n", "1000", "--quiet", "--json"]
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            wall = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
            res.setdefault((b, loss), []).append((json.loads(out)["train_seconds"], wall, cpu))
for (b, loss), v in sorted(res.items(), key=lambda x: (x[0][1], x[0][0])):
    med = lambda i: statistics.median(x[i] for x in v)
    print(f"{loss:8s} {b}: train {1000 * med(0) / int(iters):6.1f} ms/iteration, "
          f"run {med(1):6.2f} s wall, {med(2):6.2f} s CPU ({med(2) / med(1):.2f} CPU/wall)")

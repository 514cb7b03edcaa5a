"""Per-iteration wall and CPU time of several dsb builds on the DDS yardstick's iteration.

Usage: python3 scripts/dds_iteration_compare.py BIN[,BIN...] LOSS BATCH LO HI REPS

For each binary, in turn (the order reversed on odd repetitions), runs
`dsb sample --target funnel --steps 128 --width 64 --depth 2 --replay 0` with LO and then HI
training iterations and takes the difference of the two runs' wall and CPU (user + system)
times divided by HI - LO, as ../shared/peers/dds/bench.py does for dsb: start-up and the final
sampling cancel. Prints the medians over REPS, and each binary's CPU time over the first one's,
repetition by repetition, with their median. Used in BENCHMARKS.md (issue 13) to measure one
change at a time; ../shared/peers/dds/bench.py compares dsb with the peers.

    python3 scripts/dds_iteration_compare.py OLD/dsb,target/release/dsb kl 512 5 35 3
"""
import resource
import statistics
import subprocess
import sys
import time


def run(binary, loss, batch, iters):
    cmd = [binary, "sample", "--target", "funnel", "--steps", "128", "--batch", str(batch),
           "--width", "64", "--depth", "2", "--loss", loss, "--iters", str(iters),
           "--replay", "0", "--n", "1000", "--quiet", "--json"]
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    bins = sys.argv[1].split(",")
    loss, batch = sys.argv[2], int(sys.argv[3])
    lo, hi, reps = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
    res = {}
    for r in range(reps):
        for b in bins if r % 2 == 0 else bins[::-1]:
            a, c = run(b, loss, batch, lo), run(b, loss, batch, hi)
            res.setdefault(b, []).append(((c[0] - a[0]) / (hi - lo) * 1000,
                                          (c[1] - a[1]) / (hi - lo) * 1000))
    for b in bins:
        wall = statistics.median(x[0] for x in res[b])
        cpu = statistics.median(x[1] for x in res[b])
        print(f"{loss} {batch} {b}: wall {wall:.1f} ms, cpu {cpu:.1f} ms per iteration")
    # Paired ratios against the first binary, repetition by repetition: the machine's noise
    # drifts over minutes, so a ratio of runs made one after the other is steadier than a ratio
    # of medians.
    for b in bins[1:]:
        ratios = [y[1] / x[1] for x, y in zip(res[bins[0]], res[b])]
        each = " ".join(f"{r:.3f}" for r in ratios)
        print(f"  cpu {b} / {bins[0]}: median {statistics.median(ratios):.3f} (pairs: {each})")


if __name__ == "__main__":
    main()

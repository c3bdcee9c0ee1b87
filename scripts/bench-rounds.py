#!/usr/bin/env python3
"""The speed rows a note reports, for one or more builds, in alternating rounds.

On a shared machine every row moves by tens of percent between minutes, so builds are only
comparable when their rows are taken in the same minutes: each round runs
`nanofind bench --json --only memory_latency` once (the cache this round had), then, for each
binary in turn, the rows `infer_tile_512`, `infer_2048` and `train_step_512`. After the rounds,
per binary (with the CPU model, vector ISA and thread count its rows name): the median and range
of each row's fraction_of_peak and time, how many rounds met the targets (a 512² tile at 0.75 of
the FMA peak, a batch-20 training step at 0.55, a 2048² image within 10 % of the tile's time per
pixel), and the cache the rounds had.

usage: scripts/bench-rounds.py [--rounds N] BINARY [BINARY ...]
e.g.   scripts/bench-rounds.py --rounds 20 .build/release/nanofind .build/avx2/release/nanofind
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

ROWS = ["infer_tile_512", "infer_2048", "train_step_512"]


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def bench(binary, only):
    """The JSON rows of `binary bench --json --only only`; exits with 2 when the run fails."""
    try:
        run = subprocess.run([binary, "bench", "--json", "--only", only], capture_output=True, text=True)
    except OSError as e:
        fail(f"{binary}: {e.strerror}")
    if run.returncode != 0:
        last = (run.stderr.strip().splitlines() or ["no message"])[-1]
        fail(f"{binary} bench --only {only}: exit {run.returncode}: {last}")
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


def round_of(binary):
    """One round's figures for one binary: (ms, fraction_of_peak) per row, the peaks measured, and the CPU,
    vector ISA and threads its rows name."""
    got = {"peaks": []}
    for only in ROWS:
        for row in bench(binary, only):
            if row["name"] == "fma_peak":
                got["peaks"].append(row["gflops"])
            elif row["name"] == "infer_tile_512" and row["batch"] == 1:
                got["tile"] = (row["ms_per_tile"], row["fraction_of_peak"])
                got["machine"] = "%s, %s, %d threads" % (row["cpu"], row["isa"], row["threads"])
            elif row["name"] == "infer_2048":
                got["2048"] = (row["ms"], row["fraction_of_peak"])
            elif row["name"] == "train_step_512" and row["batch"] == 20:
                got["step"] = (row["s_per_step"] * 1000, row["fraction_of_peak"])
    got["ratio"] = got["2048"][0] / 16 / got["tile"][0]
    return got


def summary(values, fmt="%.3f"):
    return (fmt + " (" + fmt + "–" + fmt + ")") % (statistics.median(values), min(values), max(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("binaries", nargs="+")
    args = parser.parse_args()
    if args.rounds < 1:
        fail("--rounds must be at least 1")
    rounds = {b: [] for b in args.binaries}
    caches = []
    start = time.strftime("%H:%M", time.gmtime())
    for _ in range(args.rounds):
        latency = [r for r in bench(args.binaries[0], "memory_latency") if r["name"] == "memory_latency"][0]
        caches.append(latency["cache_mib"])
        for b in args.binaries:
            got = round_of(b)
            rounds[b].append(got)
            print("%s %s tile %.2f ms %.3f | 2048² %.1f ms %.3f | ratio %.3f | step %.1f ms %.3f | peak %.0f–%.0f | cache %g MiB"
                  % (time.strftime("%H:%M:%S", time.gmtime()), b, *got["tile"], *got["2048"], got["ratio"], *got["step"],
                     min(got["peaks"]), max(got["peaks"]), caches[-1]), flush=True)
    end = time.strftime("%H:%M", time.gmtime())
    print(f"\n{args.rounds} rounds {start}–{end} UTC; cache_mib median {statistics.median(caches):g} ({min(caches):g}–{max(caches):g})")
    for b, rs in rounds.items():
        tile, step, big = [r["tile"] for r in rs], [r["step"] for r in rs], [r["2048"] for r in rs]
        ratios = [r["ratio"] for r in rs]
        print(f"{b} ({rs[0]['machine']}):")
        print("  tile  fraction %s, %s ms, %d of %d at or over 0.75"
              % (summary([f for _, f in tile]), summary([t for t, _ in tile], "%.2f"), sum(f >= 0.75 for _, f in tile), len(rs)))
        print("  step  fraction %s, %s ms, %d of %d at or over 0.55"
              % (summary([f for _, f in step]), summary([t for t, _ in step], "%.1f"), sum(f >= 0.55 for _, f in step), len(rs)))
        print("  2048² fraction %s, %s ms; per pixel against the tile %s, %d of %d within 10 %%"
              % (summary([f for _, f in big]), summary([t for t, _ in big], "%.1f"), summary(ratios),
                 sum(abs(r - 1) <= 0.1 for r in ratios), len(rs)))
        peaks = [p for r in rs for p in r["peaks"]]
        print("  FMA peak %.0f–%.0f GFLOP/s" % (min(peaks), max(peaks)))


if __name__ == "__main__":
    main()

"""Timing shared by the framework baselines (`tf-baseline.py`, `torch-baseline.py`): the same
warm-up and the same minimum and median as `nanofind bench` reports."""
import time


def timed(fn, runs, warmup):
    """(min, median) seconds of `runs` calls of fn after `warmup` untimed ones."""
    for _ in range(warmup): fn()
    t = []
    for _ in range(runs):
        s = time.perf_counter(); fn(); t.append(time.perf_counter() - s)
    t.sort(); return t[0], t[len(t) // 2]

"""Shared by the benchmarks: the median of repeated, synchronised runs after warm-up."""

from __future__ import annotations

import statistics
import time


def median_ms(fn, iters: int, sync=lambda: None, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def interleaved_ratio(fn, baseline, pairs: int, sync=lambda: None, warmup: int = 1) -> tuple[float, float, float]:
    """(median ms of fn, median ms of baseline, median of the per-pair ratios fn / baseline),
    running the two alternately: on a shared machine the load drifts over seconds, and a ratio
    of two back-to-back runs drifts far less than two medians taken minutes apart."""
    for _ in range(warmup):
        fn()
        baseline()
    sync()
    ours, theirs = [], []
    for _ in range(pairs):
        for call, times in ((baseline, theirs), (fn, ours)):
            start = time.perf_counter()
            call()
            sync()
            times.append(time.perf_counter() - start)
    ratios = [a / b for a, b in zip(ours, theirs)]
    return statistics.median(ours) * 1000, statistics.median(theirs) * 1000, statistics.median(ratios)

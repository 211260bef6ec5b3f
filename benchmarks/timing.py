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

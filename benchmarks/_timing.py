"""Timing shared by the benchmark scripts (imported from the scripts' own folder)."""

from __future__ import annotations

import statistics
import time

import jax


def timeit(f, *args, repeats=10):
    """Median wall time in seconds of `f(*args)` over `repeats` warm runs (one warm-up)."""
    jax.block_until_ready(f(*args))
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)

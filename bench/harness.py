"""Interleaved measurement: A B A B ..., medians of several repetitions."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def per_call(fn: Callable[[], object], n: int) -> float:
    """Return the mean seconds per call of ``fn`` over ``n`` calls."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def interleaved(
    candidate: Callable[[], object],
    baseline: Callable[[], object],
    *,
    n: int = 2000,
    reps: int = 9,
) -> tuple[float, float, float]:
    """Time both alternately; return (candidate s/op, baseline s/op, throughput ratio).

    The ratio is candidate throughput over baseline throughput, the median
    of the per-repetition ratios, so a noisy neighbour that slows one
    repetition slows both sides of it. The order alternates (A B, B A, ...)
    so that neither side always runs first, after the other has filled the
    caches with its own data.
    """
    for _ in range(max(1, n // 10)):  # warm caches, prepared statements, allocators
        candidate()
        baseline()
    ours, theirs, ratios = [], [], []
    for rep in range(reps):
        if rep % 2:
            b = per_call(baseline, n)
            a = per_call(candidate, n)
        else:
            a = per_call(candidate, n)
            b = per_call(baseline, n)
        ours.append(a)
        theirs.append(b)
        ratios.append(b / a)
    return statistics.median(ours), statistics.median(theirs), statistics.median(ratios)

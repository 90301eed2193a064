"""Map a function over many small items in a few threads.

``ThreadPoolExecutor.map`` makes one future per item, which costs more than
loading one OSTree object or hashing one small file; here each thread takes a
contiguous slice, and results come back in input order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_in_threads(fn: Callable[[T], R], items: Sequence[T], threads: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, computed in ``threads`` threads (default: cores)."""
    workers = max(1, min(threads or os.cpu_count() or 1, len(items) // 64 or 1))
    if workers == 1:
        return [fn(x) for x in items]
    step = -(-len(items) // (workers * 4))
    slices = [items[i : i + step] for i in range(0, len(items), step)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = pool.map(lambda part: [fn(x) for x in part], slices)
        return [r for part in parts for r in part]

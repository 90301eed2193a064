"""mapping._threads: a function mapped over many small items in a few threads."""

from __future__ import annotations

import threading
import time

import pytest

from mapping._threads import map_in_threads


def test_results_in_input_order_from_several_threads() -> None:
    seen: set[int] = set()

    def slow_square(x: int) -> int:
        seen.add(threading.get_ident())
        time.sleep(0.0005)
        return x * x

    items = list(range(1000))
    assert map_in_threads(slow_square, items, threads=4) == [x * x for x in items]
    assert 1 < len(seen) <= 4
    assert threading.get_ident() not in seen


def test_few_items_or_one_thread_stay_in_the_caller() -> None:
    caller = threading.get_ident()
    for items, threads in ((list(range(63)), 8), (list(range(500)), 1)):
        idents: set[int] = set()

        def where(x: int, idents: set[int] = idents) -> int:
            idents.add(threading.get_ident())
            return x

        assert map_in_threads(where, items, threads) == items
        assert idents == {caller}
    assert map_in_threads(str, [], 4) == []


def test_an_exception_reaches_the_caller() -> None:
    def fail_on_700(x: int) -> int:
        if x == 700:
            raise ValueError("item 700")
        return x

    with pytest.raises(ValueError, match="item 700"):
        map_in_threads(fail_on_700, list(range(1000)), threads=3)

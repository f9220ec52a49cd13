"""The connection table's timer heap (flowlens/core/timers.py) pops what heapq pops over
(deadline, push number, object) tuples: the earliest deadline first, and of equal deadlines the
first pushed, through pushes, pops, prunes (`keep`) and a pickle round trip."""

from __future__ import annotations

import heapq
import pickle
import random

import pytest

from flowlens.core.constants import NEVER
from flowlens.core.timers import TimerHeap


class Item:
    """An object that cannot be compared: the heap must never need to."""

    def __init__(self, name: int) -> None:
        self.name = name

    def __eq__(self, other):  # (pickled copies are equal by name)
        return isinstance(other, Item) and other.name == self.name

    __hash__ = None  # type: ignore[assignment]


def test_an_empty_heap_is_due_never_and_refuses_a_pop():
    heap = TimerHeap()
    assert len(heap) == 0 and heap.due() == NEVER
    with pytest.raises(IndexError):
        heap.pop()


def test_equal_deadlines_pop_in_the_order_they_were_pushed():
    heap = TimerHeap()
    items = [Item(i) for i in range(50)]
    for item in items:
        heap.push(7, item)
    heap.push(3, Item(-1))
    assert heap.pop().name == -1
    assert [heap.pop() for _ in range(50)] == items


@pytest.mark.parametrize("seed", range(40))
def test_every_operation_agrees_with_heapq(seed):
    rng = random.Random(seed)
    heap, ref, pushed, names = TimerHeap(), [], 0, 0
    for _step in range(rng.randrange(50, 600)):
        r = rng.random()
        if r < 0.55 or not ref:
            # few distinct deadlines: many ties, which only the push order breaks
            d = rng.choice((rng.randrange(0, 40), rng.randrange(0, 1 << 62), NEVER - 1))
            names += 1
            item = Item(names)
            pushed += 1
            heap.push(d, item)
            heapq.heappush(ref, (d, pushed, item))
        elif r < 0.93:
            assert heap.due() == ref[0][0]
            assert heap.pop() is heapq.heappop(ref)[2]
        elif r < 0.97:
            kept = {e[2].name for e in ref if rng.random() < 0.6}
            heap.keep(lambda item, kept=kept: item.name in kept)
            ref = [e for e in ref if e[2].name in kept]
            heapq.heapify(ref)
        else:
            heap = pickle.loads(pickle.dumps(heap))
            # the copy holds copies of the objects: carry on with them
            copies = {}
            for _ in range(len(heap)):
                item = heap.pop()
                copies[item.name] = item
            for d, _n, item in sorted(ref):
                heap.push(d, copies[item.name])
            ref = [
                (d, i + pushed + 1, copies[item.name])
                for i, (d, _n, item) in enumerate(sorted(ref))
            ]
            pushed += len(ref)
            heapq.heapify(ref)
        assert len(heap) == len(ref)
        assert heap.due() == (ref[0][0] if ref else NEVER)
    assert [heap.pop().name for _ in range(len(heap))] == [
        heapq.heappop(ref)[2].name for _ in range(len(ref))
    ]


def test_a_pickled_heap_pops_the_same_sequence():
    rng = random.Random(1)
    heap = TimerHeap()
    for i in range(300):
        heap.push(rng.randrange(0, 20), Item(i))
    for _ in range(100):
        heap.pop()
    copy = pickle.loads(pickle.dumps(heap))
    assert len(copy) == len(heap)
    assert [copy.pop().name for _ in range(len(copy))] == [heap.pop().name for _ in range(200)]
    # pushes after the round trip still come after the entries pushed before it at a tie
    a, b = TimerHeap(), Item(1)
    a.push(5, b)
    a = pickle.loads(pickle.dumps(a))
    a.push(5, Item(2))
    assert [a.pop().name, a.pop().name] == [1, 2]


def test_clear_empties_it():
    heap = TimerHeap()
    for i in range(10):
        heap.push(i, Item(i))
    heap.clear()
    assert len(heap) == 0 and heap.due() == NEVER
    heap.push(4, Item(4))
    assert heap.pop().name == 4

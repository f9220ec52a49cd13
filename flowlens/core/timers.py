# cython: annotation_typing=False, infer_types=False
# (compiled when possible, as plain Python: see flowlens/compiled.py)
"""The connection table's timers (`ConnectionTable._schedule` and `expire`): a binary min-heap
of deadlines, each with the object it is for, the earliest deadline first and, of equal
deadlines, the one pushed first.

The order is heapq's over (deadline, push number, object) tuples, but the keys are two arrays
of 64-bit integers beside a list of the objects, and the sifting compares C numbers when
compiled: with heapq's tuples, a third of a run over short connections went to comparing the
tuples (a Python comparison of tuples, then of their ints, a dozen or more per pop) and to
allocating and freeing them (and sifting the objects themselves costs their reference counts,
spread over memory: the heap moves the numbers of their slots). The sifts are heapq's (CPython's Modules/_heapqmodule.c: a pop
takes the smaller child down to a leaf, then moves the last entry up from there), over the
pairs (deadline, push number), which are all different, so every correct heap pops the same
sequence.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

import cython

from .constants import NEVER

__all__ = ["TimerHeap"]


class TimerHeap:
    """`push(deadline_ns, obj)`, `due()` (the earliest deadline, or constants.NEVER), `pop()`
    (its object), `keep(test)` (drop the entries whose object fails `test`), `clear()`; the
    length is the number of entries. It pickles (a table's snapshot).

    The heap holds three integers per entry: the deadline, the push number and the slot of the
    object in `_objects` (freed slots are reused, `_free`), so that sifting moves C numbers
    only and touches no object (their reference counts are spread over memory)."""

    def __init__(self) -> None:
        self._d = array("q")  # deadlines, ns
        self._n = array("q")  # push numbers: of equal deadlines, the first pushed comes first
        self._s = array("q")  # slots in _objects
        self._objects: list = []  # by slot (None: free)
        self._free = array("q")  # free slots
        self._pushed = 0

    def __len__(self) -> int:
        return len(self._d)

    def __reduce__(self):
        objects = [self._objects[s] for s in self._s]
        return (_rebuilt, (self._d.tobytes(), self._n.tobytes(), objects, self._pushed))

    def due(self) -> int:
        """The earliest deadline, or NEVER when nothing is scheduled."""
        if not len(self._d):
            return NEVER
        if cython.compiled:
            return self._d.data.as_longlongs[0]  # type: ignore[attr-defined]
        return self._d[0]

    @cython.locals(k=cython.Py_ssize_t, d=cython.longlong,
                   n=cython.longlong, slot=cython.longlong, nfree=cython.Py_ssize_t,
                   dp=cython.p_longlong, np_=cython.p_longlong, sp=cython.p_longlong)  # fmt: skip
    def push(self, deadline: int, obj: Any) -> None:
        """Schedule `obj` at `deadline` (ns)."""
        d = deadline
        self._pushed += 1
        n = self._pushed
        nfree = len(self._free)
        if nfree:
            slot = self._free[nfree - 1]
            self._free.pop()
            self._objects[slot] = obj
        else:
            slot = len(self._objects)
            self._objects.append(obj)
        k = len(self._d)
        if cython.compiled:
            cpython.array.resize_smart(self._d, k + 1)  # type: ignore[name-defined]  # (cimported in timers.pxd)
            cpython.array.resize_smart(self._n, k + 1)  # type: ignore[name-defined]  # (cimported in timers.pxd)
            cpython.array.resize_smart(self._s, k + 1)  # type: ignore[name-defined]  # (cimported in timers.pxd)
            dp = self._d.data.as_longlongs  # type: ignore[attr-defined]
            np_ = self._n.data.as_longlongs  # type: ignore[attr-defined]
            sp = self._s.data.as_longlongs  # type: ignore[attr-defined]
        else:
            self._d.append(d)
            self._n.append(n)
            self._s.append(slot)
            dp, np_, sp = self._d, self._n, self._s
        _place(dp, np_, sp, k, d, n, slot)

    @cython.locals(last=cython.Py_ssize_t, k=cython.Py_ssize_t, child=cython.Py_ssize_t,
                   right=cython.Py_ssize_t, d=cython.longlong,
                   n=cython.longlong, s=cython.longlong, top=cython.longlong,
                   dp=cython.p_longlong, np_=cython.p_longlong, sp=cython.p_longlong)  # fmt: skip
    def pop(self) -> Any:
        """Remove the entry `due()` names and return its object (IndexError when empty)."""
        last = len(self._d) - 1
        if last < 0:
            raise IndexError("pop from an empty TimerHeap")
        if cython.compiled:
            dp = self._d.data.as_longlongs  # type: ignore[attr-defined]
            np_ = self._n.data.as_longlongs  # type: ignore[attr-defined]
            sp = self._s.data.as_longlongs  # type: ignore[attr-defined]
        else:
            dp, np_, sp = self._d, self._n, self._s
        top = sp[0]
        d, n, s = dp[last], np_[last], sp[last]
        if last:
            # heapq's _siftup: the smaller child moves up until a leaf is free ...
            k = 0
            child = 1
            while child < last:
                right = child + 1
                if right < last and (
                    dp[right] < dp[child] or (dp[right] == dp[child] and np_[right] < np_[child])
                ):
                    child = right
                dp[k], np_[k], sp[k] = dp[child], np_[child], sp[child]
                k = child
                child = 2 * k + 1
            # ... then the former last entry moves up from there to its place
            _place(dp, np_, sp, k, d, n, s)
        if cython.compiled:
            cpython.array.resize_smart(self._d, last)  # type: ignore[name-defined]  # (cimported in timers.pxd)
            cpython.array.resize_smart(self._n, last)  # type: ignore[name-defined]  # (cimported in timers.pxd)
            cpython.array.resize_smart(self._s, last)  # type: ignore[name-defined]  # (cimported in timers.pxd)
        else:
            self._d.pop()
            self._n.pop()
            self._s.pop()
        obj = self._objects[top]
        self._objects[top] = None
        self._free.append(top)
        return obj

    @cython.locals(i=cython.Py_ssize_t)
    def keep(self, test: Callable[[Any], bool]) -> None:
        """Keep only the entries whose object passes `test`, in a heap again."""
        objects = self._objects
        entries = []
        for i in range(len(self._d)):
            obj = objects[self._s[i]]
            if test(obj):
                entries.append((self._d[i], self._n[i], obj))
        entries.sort()  # (a sorted array is a heap; the pairs differ, so objects never compare)
        self._fill(entries)

    def clear(self) -> None:
        self._fill([])

    def _fill(self, entries: list) -> None:
        """Hold `entries`, (deadline, push number, object) in heap order, and nothing else."""
        self._d = array("q", [e[0] for e in entries])
        self._n = array("q", [e[1] for e in entries])
        self._s = array("q", range(len(entries)))
        self._objects = [e[2] for e in entries]
        self._free = array("q")


@cython.locals(parent=cython.Py_ssize_t)
def _place(dp, np_, sp, k: int, d: int, n: int, s: int) -> None:
    """heapq's _siftdown: put the entry (deadline `d`, push number `n`, slot `s`) in the hole at
    `k` of the heap's arrays `dp`, `np_`, `sp`, moving it up past every parent that comes after
    it (C pointers into the arrays when compiled: timers.pxd)."""
    while k > 0:
        parent = (k - 1) >> 1
        if dp[parent] < d or (dp[parent] == d and np_[parent] < n):
            break
        dp[k], np_[k], sp[k] = dp[parent], np_[parent], sp[parent]
        k = parent
    dp[k], np_[k], sp[k] = d, n, s


@cython.locals(heap=TimerHeap)
def _rebuilt(d: bytes, n: bytes, objects: list, pushed: int) -> TimerHeap:
    """A pickled TimerHeap (its `__reduce__`): the entries in heap order, their objects."""
    heap = TimerHeap()
    heap._d.frombytes(d)
    heap._n.frombytes(n)
    heap._s = array("q", range(len(objects)))
    heap._objects = objects
    heap._pushed = pushed
    return heap

"""Arrays parked in a temporary file and read back in bounded blocks, and the running peak of
sorted runs of starts and ends merged a block at a time: what keeps `SpanTable`'s memory flat.

The file is made by `tempfile.TemporaryFile` under `tempfile.gettempdir()`: on Linux it has no
name from the start (unlinked or O_TMPFILE), so nothing is left behind on any exit, even a
kill; `close` (or the table being dropped, through `weakref.finalize`) gives its space back.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["READ_BLOCK", "SpillFile", "SortedRun", "running_peak"]

#: elements read from the file at once by a question that goes block by block
READ_BLOCK = 1 << 16
#: elements of all the runs' blocks held at once by `running_peak` (8 bytes each)
MERGE_BUDGET = 1 << 20
#: the smallest block a run is read in, however many runs there are
_MIN_RUN_BLOCK = 1 << 10


def _np():
    import numpy

    return numpy


class SpillFile:
    """One temporary file that numpy arrays are appended to (`write`) and read back from
    (`read`), at byte offsets the caller keeps."""

    def __init__(self, what: str = "spans") -> None:
        import tempfile  # (when a table first spills: most never do)

        # (no context manager: the file lives as long as the table; the finalizer closes it;
        # unnamed, but its prefix shows in /proc/PID/fd as what it holds)
        self.file = tempfile.TemporaryFile(prefix=f"flowlens-{what}-", buffering=0)  # noqa: SIM115
        self.size = 0  # bytes written
        self._finalizer = weakref.finalize(self, self.file.close)

    def write(self, arrays: Sequence) -> int:
        """Append `arrays` one after the other; the offset of the first."""
        offset = self.size
        self.file.seek(offset)
        for a in arrays:
            a.tofile(self.file)
            self.size += a.nbytes
        return offset

    def read(self, offset: int, dtype, count: int):
        """`count` elements of `dtype` from byte `offset`."""
        np = _np()
        self.file.seek(offset)
        out = np.fromfile(self.file, dtype=dtype, count=count)
        if len(out) != count:  # (the file is ours alone: a short read is a bug or a full disk)
            raise OSError(f"spill file: read {len(out)} of {count} values at {offset}")
        return out

    def close(self) -> None:
        """Give the file's space back (reads after this fail)."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive


class SortedRun:
    """A sorted int64 sequence read a block at a time: `read(lo, hi)` gives its elements
    [lo, hi) (from a `SpillFile`, or a slice of an array in memory)."""

    __slots__ = ("block", "chunk", "i", "n", "pos", "read")

    def __init__(self, read: Callable, n: int) -> None:
        self.read, self.n = read, n
        self.pos = 0  # elements read so far
        self.chunk: Any = None  # the current block (a numpy array)
        self.i = 0  # next unconsumed element of chunk
        self.block = READ_BLOCK

    def live(self) -> bool:
        """Whether elements are left; reads the next block when the current one is spent."""
        if self.chunk is not None and self.i < len(self.chunk):
            return True
        if self.pos >= self.n:
            return False
        hi = min(self.n, self.pos + self.block)
        self.chunk, self.i, self.pos = self.read(self.pos, hi), 0, hi
        return True

    def take_below(self, cut: int):
        """The unconsumed elements of the current block below `cut` (consumed)."""
        np = _np()
        j = self.i + int(np.searchsorted(self.chunk[self.i :], cut, side="left"))
        piece = self.chunk[self.i : j]
        self.i = j
        return piece

    def take_equal(self, value: int) -> int:
        """Consume every element equal to `value` at the run's head (across blocks); their
        number."""
        np = _np()
        taken = 0
        while self.live():
            rest = self.chunk[self.i :]
            j = int(np.searchsorted(rest, value, side="right"))
            taken += j
            self.i += j
            if j < len(rest):
                break
        return taken


def running_peak(starts: list[SortedRun], ends: list[SortedRun], until: int | None) -> int:
    """The most spans held at once at any start up to `until` (None: any), the spans' starts
    and ends being given as sorted runs: at each start s, (starts <= s) - (ends <= s), an end
    at the same instant as a start counted first; 0 without a start.

    The runs are merged a slab at a time: the slab is every element below the smallest last
    element of the runs' current blocks, so every element of a slab's instants is in it, and
    the count at each of its starts is the count before the slab plus the slab's own starts
    and ends up to that start. When no element is below that cut (a block of one instant), the
    elements at the cut are counted across blocks instead. Memory: the runs' blocks, at most
    MERGE_BUDGET elements however many runs (a smaller block each when there are many)."""
    np = _np()
    runs = starts + ends
    block = max(_MIN_RUN_BLOCK, MERGE_BUDGET // max(1, len(runs)))
    for run in runs:
        run.block = block
    best = 0
    held = 0  # spans started and not ended before the slab
    while True:
        live_starts = [r for r in starts if r.live()]
        if not live_starts:
            return best  # (no start is left to count at)
        live_ends = [r for r in ends if r.live()]
        head = min(int(r.chunk[r.i]) for r in live_starts)
        if until is not None and head > until:
            return best
        cut = min(int(r.chunk[-1]) for r in live_starts + live_ends)
        s_parts = [r.take_below(cut) for r in live_starts]
        e_parts = [r.take_below(cut) for r in live_ends]
        n_s, n_e = sum(map(len, s_parts)), sum(map(len, e_parts))
        if n_s or n_e:
            s = np.sort(np.concatenate(s_parts)) if len(s_parts) > 1 else s_parts[0]
            e = np.sort(np.concatenate(e_parts)) if len(e_parts) > 1 else (
                e_parts[0] if e_parts else np.zeros(0, dtype=np.int64)
            )  # fmt: skip
            counted = s if until is None else s[: np.searchsorted(s, until, side="right")]
            if len(counted):
                ended = np.searchsorted(e, counted, side="right")
                top = held + int((np.arange(1, len(counted) + 1) - ended).max())
                best = max(best, top)
            held += n_s - n_e
            continue
        # every run's head is at or past the cut, and one block is all the cut's instant
        n_s = sum(r.take_equal(cut) for r in live_starts)
        n_e = sum(r.take_equal(cut) for r in live_ends)
        held += n_s - n_e
        if n_s and (until is None or cut <= until):
            best = max(best, held)

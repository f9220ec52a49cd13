"""Columns of numbers kept in bounded memory, their exact order statistics, and pairs of them
in time order: what keeps the report's RTT groups (`rtt._Group`) and the RTT chart's lines
(`rtt.Series`) flat in the capture's length.

A `ValuePool` holds many `Column`s (a group's RTTs, its handshake legs; a line's times, its
RTTs). Values are appended to a column's in-memory C array; once the pool's columns together
hold more than `SPILL_VALUES`, every column's array is written to the pool's one temporary file
(`spill.SpillFile`: unnamed, gone on any exit) as a block, and the arrays start again empty. A
column is then its blocks in the file, in the order they were written, and its array: its
values in the order they came, read back a `READ_BLOCK` at a time (`Column.chunks`).

`order_statistics` finds the values at given ranks of a column's `sorted()` order without
sorting it: each pass over the column counts its values in at most `BUCKETS` buckets of the
range still holding a rank (the first pass: between the smallest and the largest value), and
narrows each rank to its bucket; once a rank's bucket holds at most `COLLECT_MAX` values, a last
pass collects those (in the column's order) and sorts them stably, the same order `sorted()`
gives them, so the value at the rank is exactly `sorted(values)[rank]`. Memory: a block, the
buckets' counts and the collected values; passes: one for the range, one per narrowing (each
divides the range by BUCKETS, and one is usually enough for RTTs in ns), one to collect.

`by_time` orders pairs of columns (a line's times and RTTs) by the first, stably, with an
external merge sort: runs of `RUN` pairs sorted in memory and written to the file, merged a
slab at a time within `MERGE_PAIRS` pairs of blocks.

Floats are bucketed by an order-preserving map of their bits to unsigned integers (so every
bucket is an exact range of floats); -0.0 is counted as 0.0, as `sorted()` compares them, and
only a bucket of equal values too large to collect (more than COLLECT_MAX values all equal)
returns that value's key rather than the one `sorted()` puts at the rank: identical except for
-0.0 among zeros, which no duration the report keeps is (a count of ns over 1e6 is never -0.0).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from .spill import READ_BLOCK, SpillFile

__all__ = [
    "SPILL_VALUES",
    "BUCKETS",
    "COLLECT_MAX",
    "RUN",
    "MERGE_PAIRS",
    "ValuePool",
    "Column",
    "Chain",
    "by_time",
    "column_pairs",
    "order_statistics",
]

#: values held in memory by all of a pool's columns together (8 bytes each) before every
#: column's are written to the pool's temporary file: 512 KB. Small enough that 1M and 5M
#: packets of short connections (a sample and a handshake leg each) both spill and peak alike;
#: the 250k-packet loopback capture of scripts/bench.py (32,608 samples: 65,216 values of the
#: chart's lines) stays in memory
SPILL_VALUES = 1 << 16
#: buckets a counting pass sorts a rank's range into (8 bytes of count each)
BUCKETS = 1 << 12
#: values of a rank's bucket collected and sorted at most (else one more counting pass)
COLLECT_MAX = 1 << 16

_SIGN = 1 << 63
_ALL = (1 << 64) - 1


def _np():
    import numpy

    return numpy


class ValuePool:
    """The spill budget and temporary file that many columns share."""

    def __init__(self, limit: int | None = None) -> None:
        self.limit = SPILL_VALUES if limit is None else limit
        self.columns: list[Column] = []
        self.held = 0  # values in the columns' arrays
        self.file: SpillFile | None = None  # made at the first spill

    def column(self, typecode: str) -> Column:
        """A new empty column of C type `typecode` ("q": int64, "d": double)."""
        col = Column(self, typecode)
        self.columns.append(col)
        return col

    def added(self, k: int) -> None:
        """`k` values were added to the columns' arrays: past the limit, write them all."""
        self.held += k
        if self.held > self.limit:
            self.spill()

    def spill_file(self) -> SpillFile:
        """The pool's temporary file (made now if it was not)."""
        if self.file is None:
            self.file = SpillFile("values")
        return self.file

    def spill(self) -> None:
        """Write every column's in-memory values to the file (a block each)."""
        file = self.spill_file()
        for col in self.columns:
            col._flush(file)
        self.held = 0

    @property
    def spilled(self) -> bool:
        return self.file is not None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


class Column:
    """The values of one column: its blocks in the pool's file, then its array."""

    __slots__ = ("pool", "typecode", "values", "blocks", "written")

    def __init__(self, pool: ValuePool, typecode: str) -> None:
        self.pool = pool
        self.typecode = typecode
        #: the newest values, not yet written. A caller adding many values at a time may
        #: extend this array itself and then `ValuePool.added` their number (the report's
        #: pass does: one C call a column and one check a connection)
        self.values: array[Any] = array(typecode)
        self.blocks = array("q")  # (byte offset, count) of each block in the file
        self.written = 0  # values in the blocks

    def __len__(self) -> int:
        return self.written + len(self.values)

    def append(self, value: Any) -> None:
        self.values.append(value)
        self.pool.added(1)

    def extend(self, values: Sequence[Any] | Column) -> None:
        self.values.extend(values)
        self.pool.added(len(values))

    def in_memory(self) -> bool:
        """All the values are in `values` (none was written)."""
        return not self.blocks

    def _flush(self, file: SpillFile) -> None:
        if not self.values:
            return
        np = _np()
        offset = file.write([np.frombuffer(self.values, dtype=self.typecode)])
        self.blocks.extend((offset, len(self.values)))
        self.written += len(self.values)
        self.values = array(self.typecode)

    def extend_array(self, values: Any) -> None:
        """`extend` with a contiguous numpy array of the column's type (copied as bytes)."""
        self.values.frombytes(memoryview(values).cast("B"))
        self.pool.added(len(values))

    def chunks(self) -> Iterator[Any]:
        """The values in the order they came, as numpy arrays of at most READ_BLOCK (the
        column as it was at the first one: a spill while they are read loses nothing)."""
        np = _np()
        dtype = np.dtype(self.typecode)
        file = self.pool.file
        blocks, tail = self.blocks, self.values
        for i in range(0, len(blocks) - (len(blocks) % 2), 2):
            assert file is not None
            offset, count = blocks[i], blocks[i + 1]
            for lo in range(0, count, READ_BLOCK):
                k = min(READ_BLOCK, count - lo)
                yield file.read(offset + lo * dtype.itemsize, dtype, k)
        if tail:
            view = np.frombuffer(tail, dtype=dtype)
            for lo in range(0, len(view), READ_BLOCK):
                yield view[lo : lo + READ_BLOCK]

    def __iter__(self) -> Iterator[Any]:
        for chunk in self.chunks():
            yield from chunk.tolist()

    def __getitem__(self, index: int) -> Any:
        """The value at `index` (0 <= index < len: a chart reads its first one)."""
        if not 0 <= index < len(self):
            raise IndexError(index)
        for chunk in self.chunks():
            if index < len(chunk):
                return chunk[index].item()
            index -= len(chunk)
        raise IndexError(index)


class Chain:
    """Columns (or arrays) read one after the other as one sequence, all of its values or
    (`positive`) those above 0: a chart's samples of all its lines."""

    def __init__(self, parts: list, positive: bool = False) -> None:
        self.parts = parts
        self.positive = positive

    def __len__(self) -> int:
        if self.positive:
            return sum(1 for _v in self)
        return sum(len(p) for p in self.parts)

    def __iter__(self) -> Iterator[Any]:
        for p in self.parts:
            if self.positive:
                yield from (v for v in p if v > 0)
            else:
                yield from p

    def __getitem__(self, index: int) -> Any:
        if index != 0 or self.positive:
            raise IndexError(index)  # (only the first value is read)
        for p in self.parts:
            if len(p):
                return p[0]
        raise IndexError(index)


#: pairs sorted in memory at once into one run of `by_time`
RUN = 1 << 16
#: pairs of all the runs' blocks held at once while `by_time` merges them (16 bytes each)
MERGE_PAIRS = 1 << 17


def column_pairs(a: Column, b: Column) -> Iterator[tuple[Any, Any]]:
    """Equal-length numpy pieces of two columns of one length, in order (their blocks need not
    fall alike: the two are written whenever the pool spills)."""
    np = _np()
    ia, ib = a.chunks(), b.chunks()
    ca = cb = np.zeros(0)
    while True:
        if not len(ca):
            ca = next(ia, None)
        if not len(cb):
            cb = next(ib, None)
        if ca is None or cb is None:
            assert ca is None and cb is None, "columns of different lengths"
            return
        k = min(len(ca), len(cb))
        yield ca[:k], cb[:k]
        ca, cb = ca[k:], cb[k:]


class _Run:
    """One sorted run of `by_time` in the file: its t's then its v's, a block at a time."""

    __slots__ = ("file", "offset", "n", "pos", "t", "v", "i", "block")

    def __init__(self, file: SpillFile, offset: int, n: int, block: int) -> None:
        np = _np()
        self.file, self.offset, self.n, self.block = file, offset, n, block
        self.pos = 0
        self.t = self.v = np.zeros(0)
        self.i = 0

    def live(self) -> bool:
        """Whether pairs are left; reads the next block when the current one is spent."""
        np = _np()
        if self.i < len(self.t):
            return True
        if self.pos >= self.n:
            return False
        k = min(self.block, self.n - self.pos)
        self.t = self.file.read(self.offset + 8 * self.pos, np.float64, k)
        self.v = self.file.read(self.offset + 8 * (self.n + self.pos), np.float64, k)
        self.i, self.pos = 0, self.pos + k
        return True


def by_time(sources: list[tuple[Column, Column]], pool: ValuePool) -> tuple[Column, Column]:
    """The pairs (t, v) of `sources` (double columns, read one source after the other) in the
    order of t, pairs of equal t in the order they came (sorted(range(n), key=t), a stable
    argsort), as two new columns of `pool`. An external merge sort: runs of RUN pairs sorted
    in memory and written to the pool's file, then merged a slab at a time (every pair below
    the smallest last t of the runs' current blocks, so no later pair belongs before it)."""
    np = _np()
    file = pool.spill_file()
    runs: list[tuple[int, int]] = []  # (offset, pairs)
    ts: list = []
    vs: list = []
    held = 0

    def write_run(ts: list, vs: list) -> None:
        t, v = np.concatenate(ts), np.concatenate(vs)
        order = np.argsort(t, kind="stable")
        runs.append((file.write([t[order], v[order]]), len(t)))

    for a, b in sources:
        for t, v in column_pairs(a, b):
            ts.append(t)
            vs.append(v)
            held += len(t)
            if held >= RUN:
                write_run(ts, vs)
                ts, vs, held = [], [], 0
    if held:
        write_run(ts, vs)
    ts = vs = []
    out_t, out_v = pool.column("d"), pool.column("d")
    block = max(1 << 10, MERGE_PAIRS // max(1, len(runs)))
    live_runs = [_Run(file, offset, n, block) for offset, n in runs]
    while True:
        live = [r for r in live_runs if r.live()]
        if not live:
            return out_t, out_v
        cut = min(float(r.t[-1]) for r in live)
        t_parts, v_parts = [], []
        for r in live:
            j = r.i + int(np.searchsorted(r.t[r.i :], cut, side="left"))
            if j > r.i:
                t_parts.append(r.t[r.i : j])
                v_parts.append(r.v[r.i : j])
                r.i = j
        if not t_parts:
            # every run's head is at or past the cut, and one block is all the cut's t: take
            # the pairs at the cut of every run (across its blocks), in the runs' order
            for r in live:
                while r.live():
                    j = r.i + int(np.searchsorted(r.t[r.i :], cut, side="right"))
                    t_parts.append(r.t[r.i : j])
                    v_parts.append(r.v[r.i : j])
                    more = j == len(r.t)
                    r.i = j
                    if not more:
                        break
            out_t.extend_array(np.concatenate(t_parts))
            out_v.extend_array(np.concatenate(v_parts))
            continue
        t, v = np.concatenate(t_parts), np.concatenate(v_parts)
        if len(t_parts) > 1:
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
        out_t.extend_array(np.ascontiguousarray(t))
        out_v.extend_array(np.ascontiguousarray(v))


def _keys(chunk):
    """Order-preserving uint64 keys of a chunk (int64, or float64 with -0.0 as 0.0)."""
    np = _np()
    if chunk.dtype.kind == "f":
        bits = (chunk + 0.0).view(np.uint64)  # (+ 0.0: -0.0 becomes 0.0)
        neg = (bits >> np.uint64(63)).astype(bool)
        return np.where(neg, ~bits, bits | np.uint64(_SIGN))
    return chunk.view(np.uint64) ^ np.uint64(_SIGN)


def _value_of(key: int, typecode: str) -> Any:
    """The value whose key `_keys` made `key` (a Python int or float)."""
    np = _np()
    if typecode == "d":
        bits = key & ~_SIGN if key & _SIGN else ~key & _ALL
        return float(np.array([bits], dtype=np.uint64).view(np.float64)[0])
    return int(np.array([key ^ _SIGN], dtype=np.uint64).view(np.int64)[0])


def order_statistics(column: Column, ranks: Iterable[int]) -> dict[int, Any]:
    """{rank: sorted(values)[rank]} for each of `ranks` (0-based, within the column's length),
    as Python ints or floats, in bounded memory (see the module's docstring)."""
    np = _np()
    wanted = sorted(set(ranks))
    out: dict[int, Any] = {}
    if not wanted:
        return out
    if column.in_memory():  # (never written: sorting it is the cheapest)
        ordered = sorted(column.values)
        return {r: ordered[r] for r in wanted}
    lo_key, hi_key = _ALL, 0
    for chunk in column.chunks():
        keys = _keys(chunk)
        lo_key, hi_key = min(lo_key, int(keys.min())), max(hi_key, int(keys.max()))
    # each rank's range of keys [a, b] and how many values lie below a
    pending = {r: (lo_key, hi_key, 0) for r in wanted}
    collect: dict[int, tuple[int, int, int]] = {}
    while pending:
        ranges = sorted(set(pending.values()))
        counts = {}
        widths = {}
        for a, b, _below in ranges:
            width = (b - a) // BUCKETS + 1
            widths[(a, b)] = width
            counts[(a, b)] = np.zeros((b - a) // width + 1, dtype=np.int64)
        for chunk in column.chunks():
            keys = _keys(chunk)
            for a, b, _below in ranges:
                inside = keys[(keys >= np.uint64(a)) & (keys <= np.uint64(b))]
                if len(inside):
                    index = (inside - np.uint64(a)) // np.uint64(widths[(a, b)])
                    c = counts[(a, b)]
                    c += np.bincount(index.astype(np.int64), minlength=len(c))
        for r, (a, b, below) in list(pending.items()):
            c = counts[(a, b)]
            cum = np.cumsum(c)
            k = int(np.searchsorted(cum, r - below, side="right"))
            width = widths[(a, b)]
            na = a + k * width
            nb = min(na + width - 1, b)
            nbelow = below + (int(cum[k - 1]) if k else 0)
            del pending[r]
            if int(c[k]) <= COLLECT_MAX:
                collect[r] = (na, nb, nbelow)
            elif na == nb:  # one key, too many to collect: every value there is it
                out[r] = _value_of(na, column.typecode)
            else:
                pending[r] = (na, nb, nbelow)
    if collect:
        ranges = sorted(set(collect.values()))
        picked: dict[tuple[int, int, int], list] = {key: [] for key in ranges}
        for chunk in column.chunks():
            keys = _keys(chunk)
            for a, b, below in ranges:
                sel = chunk[(keys >= np.uint64(a)) & (keys <= np.uint64(b))]
                if len(sel):
                    picked[(a, b, below)].append(sel)
        by_key = {key: np.sort(np.concatenate(got), kind="stable") for key, got in picked.items()}
        for r, key in collect.items():
            out[r] = by_key[key][r - key[2]].item()
    return out

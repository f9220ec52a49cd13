# cython: annotation_typing=False, infer_types=False
# (compiled when possible, as plain Python: see flowlens/compiled.py)
"""The holds of one client's connections to one server port, summed up as they come
(`HoldGroup`, for port_findings.py), and the watermark that lets the sum forget them
(`OpenStarts`): memory grows with the connections open at once, not with the capture.

A hold (HOLD integers: start, held until, client port, each side's TIME_WAIT
spell, reused flag, first frame) arrives when its connection finishes, with a watermark W: no
hold of its group that arrives later starts before W. What the findings need of the holds is
a few sums, the ports with each one's first start, bounded heaps of frames, and two peaks of
concurrency (ports in use, TIME_WAIT spells of each side); the peaks are an exact sweep over
starts in time order, an end at the same time as a start first (`Peak`), and a start before W
can be swept once every hold that starts before W has arrived: then every end at or before it
is known too (an end is never before its start).
"""

from __future__ import annotations

import heapq
from array import array

import cython

from ...core.analyzer import Analyzer

__all__ = ["FLUSH_MIN", "HOLD", "HoldGroup", "OpenStarts", "Peak"]

#: a hold in HoldGroup's pending array, as this many integers: start, held until, client port,
#: the client side's TIME_WAIT from and until, the server side's (-1, -1: no TIME_WAIT), reused
#: in TIME_WAIT (0/1), first frame (ns where a time)
HOLD = 9
_HOLD = HOLD
_NEVER = (1 << 63) - 1  # no end known: the sweep's "capture end" while the capture goes on
_NONE = -(1 << 63)  # no watermark: nothing may be swept before the capture ends
#: a group sweeps its pending holds once this many wait (and twice as many as stayed last
#: time): a group with fewer connections is swept once, at the end, all at once
FLUSH_MIN = 4096


@cython.cfunc
@cython.inline
@cython.locals(e=cython.longlong, a=cython.longlong, end=cython.longlong, m=cython.longlong)
def _cut(e, a, end) -> cython.longlong:
    """End `e` of an interval that starts at `a`, cut at the capture's end `end` (never
    before its start)."""
    m = end if end > a else a
    return e if e < m else m


class Peak:
    """The peak concurrency of [start, end) intervals and its time, by a sweep over their
    starts in order that keeps only the count and the ends not yet passed.

    `step(starts, ends)`: the next starts, sorted, none before the last step's, and the ends
    that became known; every end at or before the last of these starts must be known by then.
    `cut(end)` cuts the ends not yet passed at the capture's end, before the last step. The
    result is that of sorting every start and end and walking them, an end at the same time as
    a start first (port_findings.py's former `_peak`)."""

    __slots__ = ("cur", "best", "at", "min_start", "min_end", "ends")

    def __init__(self) -> None:
        self.cur = 0
        self.best = 0
        self.at = 0
        self.min_start = _NEVER  # (the peak's time while it is 0: the first event)
        self.min_end = _NEVER
        #: the ends not passed yet, unsorted
        self.ends = array("q")

    @cython.locals(
        cur=cython.Py_ssize_t, best=cython.Py_ssize_t, j=cython.Py_ssize_t,
        n_ends=cython.Py_ssize_t, a=cython.longlong, e=cython.longlong, at=cython.longlong,
        pend=list,
    )  # fmt: skip
    def step(self, starts: list, ends: list) -> None:
        if ends:
            e = min(ends)
            if e < self.min_end:
                self.min_end = e
        if not starts:
            if ends:
                self.ends.extend(ends)
            return
        a = starts[0]
        if a < self.min_start:
            self.min_start = a
        pend = self.ends.tolist()
        pend.extend(ends)
        pend.sort()
        cur, best, at = self.cur, self.best, self.at
        j, n_ends = 0, len(pend)
        for a in starts:
            while j < n_ends:
                e = pend[j]
                if e > a:
                    break
                cur -= 1
                j += 1
            cur += 1
            if cur > best:
                best, at = cur, a
        self.cur, self.best, self.at = cur, best, at
        self.ends = array("q", pend[j:])

    @cython.locals(end=cython.longlong, e=cython.longlong)
    def cut(self, end) -> None:
        """Cut the ends not passed yet at `end`: each one's start was swept, before a
        watermark, so before the capture's end (min(e, max(end, start)) is min(e, end))."""
        if self.ends:
            self.ends = array("q", [e if e < end else end for e in self.ends])
            if end < self.min_end:
                self.min_end = end

    def result(self) -> tuple[int, int]:
        """(peak, ts of the peak in ns); with no interval, (0, 0)."""
        if self.best > 0 or self.min_start == _NEVER:
            return self.best, self.at
        return 0, min(self.min_start, self.min_end)


class _Spells:
    """One side's TIME_WAIT spells of a group: those whose start is not swept yet, as (start,
    end) pairs, and their Peak."""

    __slots__ = ("todo", "n", "peak", "swept_to")

    def __init__(self) -> None:
        self.todo = array("q")
        self.n = 0
        self.peak = Peak()
        self.swept_to = _NONE

    @cython.locals(
        v=cython.longlong[:], i=cython.Py_ssize_t, m=cython.Py_ssize_t, a=cython.longlong,
        b=cython.longlong, w=cython.longlong, end=cython.longlong,
    )  # fmt: skip
    def sweep(self, w, end) -> None:
        """Sweep the spells that start before `w` (`end`: the capture's, or _NEVER)."""
        v = self.todo
        m = len(self.todo)
        if not m:
            return
        keep = array("q")
        pairs = []
        for i in range(0, m, 2):
            a, b = v[i], v[i + 1]
            if a < w:
                pairs.append((a, b))
            else:
                keep.append(a)
                keep.append(b)
        if pairs:
            pairs.sort()
            self.peak.step([p[0] for p in pairs], [_cut(p[1], p[0], end) for p in pairs])
            self.todo = keep
        if w > self.swept_to:
            self.swept_to = w


class HoldGroup:
    """The holds of one (client, server, server port): each is appended to `pending` as it
    arrives, then `arrived(start, watermark)`; `finish(end_ns)` once at the end; then the fields
    below are what port_findings.port_group reads. Holds wait in `pending` (an array('q'),
    no object per connection) until a watermark lets them be swept; the per-port state is
    at most one entry per client port.

    A hold that arrives starting before a watermark already swept to (timestamps that went
    backwards between two connections of a host pair, or within one) cannot be swept in
    order: it is swept anyway, and `late` counts it (the finding says so, port_group)."""

    __slots__ = (
        "k", "n", "held", "first_start", "last_start", "reused", "reused_frames", "frames_lo",
        "frames_hi", "pending", "watermark", "swept_to", "next_sweep", "late", "index",
        "first", "run_a", "run_b", "is_open", "open", "in_use", "spells", "marks",
    )  # fmt: skip

    def __init__(self, evidence_max: int, shards: int = 1) -> None:
        #: evidence frames kept of each kind
        self.k = evidence_max
        #: connections swept; the sum of their hold times (ns, a Python int: it may not fit
        #: 64 bits); their first and last start (ns)
        self.n = 0
        self.held = 0
        self.first_start = _NEVER
        self.last_start = _NONE
        #: connections that reused a port in TIME_WAIT, and the smallest `k` of their frames
        self.reused = 0
        self.reused_frames: list[int] = []
        #: the smallest and the largest `k` first frames of the connections
        self.frames_lo: list[int] = []
        self.frames_hi: list[int] = []
        #: the holds not swept yet, _HOLD integers each, in arrival order
        self.pending = array("q")
        #: the largest watermark that came from each shard (a shard's holds say nothing of
        #: another's connections), the smallest of those; how far the holds were swept (ns)
        self.marks = array("q", [_NONE]) * shards
        self.watermark = _NONE
        self.swept_to = _NONE
        self.next_sweep = FLUSH_MIN
        self.late = 0
        #: client port -> its index in the arrays below: its first start, its last run of
        #: holds in use ([run_a, run_b]: holds that overlap or touch merged), whether that run
        #: may still grow (its end not given to `in_use` yet); `open`: those indices
        self.index: dict[int, int] = {}
        self.first = array("q")
        self.run_a = array("q")
        self.run_b = array("q")
        self.is_open = array("b")
        self.open = array("q")
        #: ports in use at once (runs), TIME_WAIT spells at once per side (0: the client's)
        self.in_use = Peak()
        self.spells = (_Spells(), _Spells())

    @cython.locals(start=cython.longlong, w=cython.longlong, shard=cython.Py_ssize_t)
    def arrived(self, start, w, shard=0) -> None:
        """One hold was appended to `pending` (host_findings: `_hold_into`): its start and its
        watermark (ns), made in `shard` (of `marks`)."""
        if start < self.swept_to:
            self.late += 1
        marks = self.marks
        if w > marks[shard]:
            marks[shard] = w
            self.watermark = min(marks) if len(marks) > 1 else w
        if len(self.pending) >= self.next_sweep * _HOLD and self.watermark > self.swept_to:
            self._sweep(self.watermark, _NEVER)
            self.next_sweep = max(FLUSH_MIN, 2 * (len(self.pending) // _HOLD))

    def count(self) -> int:
        """Holds taken so far."""
        return self.n + len(self.pending) // _HOLD

    def finish(self, end_ns: int) -> None:
        """Sweep everything, the intervals cut at `end_ns`, the capture's last timestamp."""
        if end_ns < self.swept_to:
            self.late += 1  # (swept past the end: the ends swept were not cut)
        self.in_use.cut(end_ns)
        for s in self.spells:
            s.peak.cut(end_ns)
        self._sweep(_NEVER, end_ns)

    @cython.locals(
        v=cython.longlong[:], m=cython.Py_ssize_t, i=cython.Py_ssize_t, k=cython.Py_ssize_t,
        x=cython.Py_ssize_t, side=cython.Py_ssize_t, w=cython.longlong, end=cython.longlong,
        start=cython.longlong, until=cython.longlong, port=cython.longlong,
        a=cython.longlong, b=cython.longlong, held=object, sel=list, frames=list,
        reused=list, in_starts=list, in_ends=list, keep=object,
    )  # fmt: skip
    def _sweep(self, w, end) -> None:
        """Sweep the pending holds that start before `w` (`end`: the capture's, or _NEVER
        while it goes on), in order of start."""
        v = self.pending
        m = len(self.pending) // _HOLD
        sel = []
        keep = array("q")
        for i in range(m):
            if v[i * _HOLD] < w:
                sel.append((v[i * _HOLD], i))
            else:
                keep.extend(self.pending[i * _HOLD : (i + 1) * _HOLD])
        if not sel:
            return
        sel.sort()  # (by start, then arrival: the order of a sort by start)
        index, first, run_a, run_b = self.index, self.first, self.run_a, self.run_b
        is_open, spells = self.is_open, self.spells
        in_starts, in_ends, frames, reused = [], [], [], []
        held = 0
        for start, i in sel:
            k = i * _HOLD
            until, port = v[k + 1], v[k + 2]
            held += until - start
            if start < self.first_start:
                self.first_start = start
            if start > self.last_start:
                self.last_start = start
            for side in range(2):
                a = v[k + 3 + 2 * side]
                if a >= 0:
                    b = v[k + 4 + 2 * side]
                    s = spells[side]
                    if a < s.swept_to or b < a:
                        self.late += 1  # (a spell before its connection, or ending before it began)
                    s.todo.append(a)
                    s.todo.append(b)
                    s.n += 1
            frames.append(v[k + 8])
            if v[k + 7]:
                reused.append(v[k + 8])
            # a port is in use while any of its holds is: a hold that overlaps or touches the
            # port's last run (a new connection that took the port while the previous one was
            # still in TIME_WAIT) extends it, else it closes it and begins the next
            x = index.get(port, -1)
            if x < 0:
                x = index[port] = len(first)
                first.append(start)
                run_a.append(start)
                run_b.append(until)
                is_open.append(1)
                self.open.append(x)
                in_starts.append(start)
                continue
            if start < first[x]:
                first[x] = start  # (a late hold only)
            if is_open[x] and start <= run_b[x]:
                if until > run_b[x]:
                    run_b[x] = until
                continue
            if is_open[x]:
                in_ends.append(_cut(run_b[x], run_a[x], end))
            else:
                is_open[x] = 1
                self.open.append(x)
            run_a[x], run_b[x] = start, until
            in_starts.append(start)
        # a run that ends before the watermark can grow no more: every later hold starts after
        # it, so its end is known
        still = array("q")
        for x in self.open:
            if run_b[x] < w:
                in_ends.append(_cut(run_b[x], run_a[x], end))
                is_open[x] = 0
            else:
                still.append(x)
        self.open = still
        self.in_use.step(in_starts, in_ends)
        for s in spells:
            s.sweep(w, end)
        self.n += len(sel)
        self.held += held
        self.reused += len(reused)
        k = self.k
        self.frames_lo = heapq.nsmallest(k, self.frames_lo + frames)
        self.frames_hi = heapq.nlargest(k, self.frames_hi + frames)
        if reused:
            self.reused_frames = heapq.nsmallest(k, self.reused_frames + reused)
        self.pending = keep
        if w > self.swept_to:
            self.swept_to = w

    def ports(self) -> tuple[list[int], list[int]]:
        """(the client ports, sorted; the same in order of first use, ties by port)."""
        ports = sorted(self.index)
        first, index = self.first, self.index
        return ports, sorted(ports, key=lambda p: first[index[p]])


# ------------------------------------------------------------------------------ the watermark
class _Pair:
    """The open TCP connections between two hosts: uid -> start, the starts in the order they
    came (a queue: the oldest open one at its head, when starts came in time order) and the
    starts that left it from behind the head."""

    __slots__ = ("open", "starts", "head", "gone", "latest", "unordered")

    def __init__(self) -> None:
        self.open: dict[str, int] = {}
        self.starts = array("q")
        self.head = 0
        self.gone: dict[int, int] = {}
        self.latest = _NONE
        #: a connection started before one that came before it: the queue's head is not
        #: the oldest, and no watermark is given for this pair while it has connections open
        self.unordered = False


class OpenStarts(Analyzer):
    """Analyzer that knows, for each pair of hosts, the starts of the TCP connections open
    between them (whichever side opened: a role flip changes nothing), so that `done(conn)`
    can say when a finished connection's part is made (AnomalyDetector.parts) how early any
    later connection of that pair may start: the oldest open one's start, or the latest start
    seen, when connections start in time order (they do unless the capture's timestamps go
    backwards; the pair then gives no watermark until it has none open). It sees no packets;
    it keeps one entry per open connection."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs: dict[tuple, _Pair] = {}

    def on_start(self, conn, pkt):
        if conn.tcp is not None:
            a, b = conn.orig_h, conn.resp_h
            key = (a, b) if a < b else (b, a)
            pair = self.pairs.get(key)
            if pair is None:
                pair = self.pairs[key] = _Pair()
            start = conn.first_ts_ns
            if start < pair.latest:
                pair.unordered = True
            else:
                pair.latest = start
            pair.open[conn.uid] = start
            pair.starts.append(start)
        return None

    @cython.locals(start=cython.longlong, n=cython.Py_ssize_t, h=cython.Py_ssize_t)
    def done(self, conn) -> int:
        """Forget finished connection `conn`; returns the watermark of its pair (ns): no
        connection of the pair still open or yet to start began before it (-2**63: none)."""
        a, b = conn.orig_h, conn.resp_h
        key = (a, b) if a < b else (b, a)
        pair = self.pairs.get(key)
        if pair is None:
            return _NONE
        start = pair.open.pop(conn.uid, _NONE)
        if start == _NONE:
            return _NONE if pair.unordered else pair.starts[pair.head]
        if not pair.open:
            del self.pairs[key]
            return _NONE if pair.unordered else pair.latest
        starts, gone = pair.starts, pair.gone
        h, n = pair.head, len(pair.starts)
        if starts[h] == start:
            h += 1
            while h < n and gone:
                c = gone.get(starts[h], 0)
                if not c:
                    break
                if c == 1:
                    del gone[starts[h]]
                else:
                    gone[starts[h]] = c - 1
                h += 1
        else:
            gone[start] = gone.get(start, 0) + 1
        if h >= 4096 and 2 * h >= n:
            del starts[:h]
            h = 0
        pair.head = h
        if pair.unordered:
            return _NONE
        return starts[h]

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

import gc
from array import array

import cython

from ...core.analyzer import Analyzer
from ...core.connections import Connection

__all__ = ["FLUSH_MIN", "HOLD", "HoldGroup", "OpenStarts", "Peak"]

#: a hold in HoldGroup's pending array, as this many integers: start, held until, client port,
#: the client side's TIME_WAIT from and until, the server side's (-1, -1: no TIME_WAIT), reused
#: in TIME_WAIT (0/1), first frame (ns where a time)
HOLD = 9
_HOLD = HOLD
_NEVER = (1 << 63) - 1  # no end known: the sweep's "capture end" while the capture goes on
_NONE = -(1 << 63)  # no watermark: nothing may be swept before the capture ends
#: a group sweeps its pending holds once this many wait (and twice as many as stayed last
#: time): a group with fewer connections is swept once, at the end, all at once. Measured
#: (sequential 1M/5M packets' peak RSS; loopback-250k's detector time against one sort at the
#: end): 4,096: 64/65 MB, +60 %; 16,384: 72/72 MB, +10 %; 65,536: 98/102 MB, +5 %
FLUSH_MIN = 1 << 14


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
        b=cython.longlong, w=cython.longlong, end=cython.longlong, starts=list, ends=list,
    )  # fmt: skip
    def sweep(self, w, end) -> None:
        """Sweep the spells that start before `w` (`end`: the capture's, or _NEVER)."""
        v = self.todo
        m = len(self.todo)
        if not m:
            return
        keep = array("q")
        starts, ends = [], []
        for i in range(0, m, 2):
            a, b = v[i], v[i + 1]
            if a < w:
                starts.append(a)
                ends.append(_cut(b, a, end))
            else:
                keep.append(a)
                keep.append(b)
        if starts:
            starts.sort()
            self.peak.step(starts, ends)
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
            # the sweep's lists of numbers make no reference cycles, and the collector's passes
            # that their thousands of objects set off would cost more than the sweep (as in
            # AnomalyDetector.finish)
            enabled = gc.isenabled()
            gc.disable()
            try:
                self._sweep(self.watermark, _NEVER)
            finally:
                if enabled:
                    gc.enable()
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
        v=cython.longlong[:], fm=cython.longlong[:], ra=cython.longlong[:],
        rb=cython.longlong[:], op=cython.schar[:], m=cython.Py_ssize_t, i=cython.Py_ssize_t,
        k=cython.Py_ssize_t, x=cython.Py_ssize_t, side=cython.Py_ssize_t, w=cython.longlong,
        end=cython.longlong, start=cython.longlong, until=cython.longlong,
        port=cython.longlong, a=cython.longlong, b=cython.longlong, d=cython.longlong,
        acc=cython.longlong, sw0=cython.longlong, sw1=cython.longlong, late=cython.Py_ssize_t,
        n0=cython.Py_ssize_t, n1=cython.Py_ssize_t, first_start=cython.longlong,
        last_start=cython.longlong, sel=list, frames=list, reused=list, in_starts=list,
        in_ends=list, todo0=list, todo1=list, opened=list, index=dict, starts=list,
        h=cython.Py_ssize_t, n_ports=cython.Py_ssize_t,
    )  # fmt: skip
    def _sweep(self, w, end) -> None:
        """Sweep the pending holds that start before `w` (`end`: the capture's, or _NEVER
        while it goes on), in order of start."""
        h = _HOLD  # (a C constant here: the module's is a Python int)
        v = self.pending
        m = len(self.pending) // h
        sel, starts = [], []
        keep = array("q")
        for i in range(m):
            if v[i * h] < w:
                sel.append(i)
                starts.append(v[i * h])
            else:
                keep.extend(self.pending[i * h : (i + 1) * h])
        if not sel:
            return
        # in order of start (holds that start together may go in any order: each port's runs
        # are the union of its holds, the rest are sums and heaps)
        sel = [sel[j] for j in sorted(range(len(sel)), key=starts.__getitem__)]
        # the ports seen first here get their entries (the arrays do not move below)
        index = self.index
        x = n_ports = len(self.first)
        for i in sel:
            port = v[i * h + 2]
            if port not in index:
                index[port] = x
                x += 1
        if x > n_ports:
            self.first.extend(array("q", [_NEVER]) * (x - n_ports))
            self.run_a.extend(array("q", [0]) * (x - n_ports))
            self.run_b.extend(array("q", [0]) * (x - n_ports))
            self.is_open.extend(array("b", [0]) * (x - n_ports))
        fm, ra, rb, op = self.first, self.run_a, self.run_b, self.is_open
        s0, s1 = self.spells
        sw0, sw1 = s0.swept_to, s1.swept_to
        in_starts, in_ends, frames, reused, todo0, todo1, opened = [], [], [], [], [], [], []
        held = self.held
        acc = late = n0 = n1 = 0
        first_start, last_start = self.first_start, self.last_start
        for i in sel:
            k = i * h
            start, until, port = v[k], v[k + 1], v[k + 2]
            # the sum of the hold times, in C until it could overflow 64 bits
            d = until - start
            if d > (1 << 62) - acc:
                held += acc
                acc = 0
            acc += d
            if start < first_start:
                first_start = start
            if start > last_start:
                last_start = start
            a = v[k + 3]
            if a >= 0:
                b = v[k + 4]
                if a < sw0 or b < a:
                    late += 1  # (a spell before its connection, or ending before it began)
                todo0.append(a)
                todo0.append(b)
                n0 += 1
            a = v[k + 5]
            if a >= 0:
                b = v[k + 6]
                if a < sw1 or b < a:
                    late += 1
                todo1.append(a)
                todo1.append(b)
                n1 += 1
            frames.append(v[k + 8])
            if v[k + 7]:
                reused.append(v[k + 8])
            # a port is in use while any of its holds is: a hold that overlaps or touches the
            # port's last run (a new connection that took the port while the previous one was
            # still in TIME_WAIT) extends it, else it closes it and begins the next
            x = index[port]
            if start < fm[x]:
                fm[x] = start
            if op[x] and start <= rb[x]:
                if until > rb[x]:
                    rb[x] = until
                continue
            if op[x]:
                in_ends.append(_cut(rb[x], ra[x], end))
            else:
                op[x] = 1
                opened.append(x)
            ra[x], rb[x] = start, until
            in_starts.append(start)
        self.open.extend(opened)
        # a run that ends before the watermark can grow no more: every later hold starts after
        # it, so its end is known
        still = array("q")
        for x in self.open:
            if rb[x] < w:
                in_ends.append(_cut(rb[x], ra[x], end))
                op[x] = 0
            else:
                still.append(x)
        self.open = still
        self.in_use.step(in_starts, in_ends)
        s0.todo.extend(todo0)
        s1.todo.extend(todo1)
        s0.n += n0
        s1.n += n1
        s0.sweep(w, end)
        s1.sweep(w, end)
        self.first_start, self.last_start = first_start, last_start
        self.late += late
        self.n += len(sel)
        self.held = held + acc
        self.reused += len(reused)
        # (in order of start the frames are nearly sorted: a sort of them is about linear)
        k = self.k
        frames.sort()
        self.frames_lo = sorted(self.frames_lo + frames[:k])[:k]
        self.frames_hi = sorted(self.frames_hi + frames[-k:] if k else [], reverse=True)[:k]
        if reused:
            reused.sort()
            self.reused_frames = sorted(self.reused_frames + reused[:k])[:k]
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

    @cython.locals(c=Connection, pair=_Pair, start=cython.longlong)
    def on_start(self, conn, pkt):
        c = conn
        if c.tcp is not None:
            a, b = c.orig_h, c.resp_h
            key = (a, b) if a < b else (b, a)
            pair = self.pairs.get(key)
            if pair is None:
                pair = self.pairs[key] = _Pair()
            start = c.first_ts_ns
            if start < pair.latest:
                pair.unordered = True
            else:
                pair.latest = start
            pair.open[c.uid] = start
            pair.starts.append(start)
        return None

    @cython.locals(
        c=Connection, pair=_Pair, start=cython.longlong, n=cython.Py_ssize_t,
        h=cython.Py_ssize_t, starts=object, gone=dict,
    )  # fmt: skip
    def done(self, conn) -> int:
        """Forget finished connection `conn`; returns the watermark of its pair (ns): no
        connection of the pair still open or yet to start began before it (-2**63: none)."""
        c = conn
        a, b = c.orig_h, c.resp_h
        key = (a, b) if a < b else (b, a)
        pair = self.pairs.get(key)
        if pair is None:
            return _NONE
        start = pair.open.pop(c.uid, _NONE)
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
                left = gone.get(starts[h], 0)
                if not left:
                    break
                if left == 1:
                    del gone[starts[h]]
                else:
                    gone[starts[h]] = left - 1
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

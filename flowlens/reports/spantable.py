"""Socket-state spans of a whole capture, compact: the one store `states` and the report count.

Every TCP connection has two endpoints, each with its own state timeline; `counted_spans` is
the rule of which of the tracker's spans (`TcpTracker.spans`, the one owner of how long a state
lasts) count as a socket: those of the states in STATES (CLOSED is no socket, LISTEN is in no
connection's timeline) that last a while. `SpanTable` keeps them per host as three arrays
(start, end, state index: 17 bytes a span, not an object), and answers every question of the
counts: at one instant (`counts_at`), at many (`series`, `iter_active`), their peaks
(`peaks`), where they change (`change_points`), the brief CLOSE_WAITs the chart colours apart
(`brief_close_waits`), and when the last TIME_WAIT runs out (`time_wait_horizon`). A span
holds from its start to before its end. `states.SocketStates` adds ss's filters and the
listening ports; the postmortem report charts a plain `SpanTable`.

Memory is bounded in the capture's length: past SPILL_SPANS spans in memory, every host's are
written to a temporary file (`spill.SpillFile`: as taken, and each of starts and ends sorted)
and every question reads them back a block at a time. The counts are sums over spans, so they
add up block by block; the peak is a sweep in time order, which merges the sorted runs
(`spill.running_peak`). Below SPILL_SPANS nothing is written and every answer is made as it
was, in one go over the arrays.
"""

from __future__ import annotations

import ipaddress
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain

from ..core.connections import Connection, format_addr
from ..core.tcpstate import TcpState
from .spill import READ_BLOCK, SortedRun, SpillFile, running_peak

__all__ = [
    "BRIEF_CLOSE_WAIT_NS",
    "OPEN_END",
    "SPILL_SPANS",
    "STATES",
    "SpanTable",
    "counted_spans",
    "host_key",
]

#: the states a socket can be counted in, in the order of a connection's life
STATES = (
    "SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT_1", "FIN_WAIT_2", "CLOSE_WAIT",
    "CLOSING", "LAST_ACK", "TIME_WAIT",
)  # fmt: skip
#: a CLOSE_WAIT shorter than this is an application closing normally, not a leak (the
#: anomalies' close_wait threshold is far longer; this is only how the chart colours it)
BRIEF_CLOSE_WAIT_NS = 1_000_000_000
#: the end of a span still held when the capture ended
OPEN_END = 2**63 - 1

_STATE_INDEX = {name: i for i, name in enumerate(STATES)}
#: the same by the enum member's identity: an Enum's hash and `.value` are Python calls, and
#: a capture has about eight spans per connection
_INDEX_OF_MEMBER = {id(TcpState(name)): i for i, name in enumerate(STATES)}
_TIME_WAIT = _STATE_INDEX["TIME_WAIT"]
#: spans binned at once by `SpanTable.iter_active` (its working memory: a few arrays of this)
_BLOCK = 1 << 16
_CLOSE_WAIT = _STATE_INDEX["CLOSE_WAIT"]
#: spans kept in memory (17 bytes each, all hosts together) before they are written to the
#: table's temporary file: about 33,000 connections' worth, 4.5 MB (read when a table is
#: made). Small enough that 1M and 5M packets of short connections both spill and peak alike,
#: large enough that a capture of 250k packets (about 180,000 spans) never spills
SPILL_SPANS = 1 << 18


def host_key(host: str) -> tuple[int, int]:
    """Sort key of an address: IPv4 before IPv6, then by value."""
    ip = ipaddress.ip_address(host)
    return (ip.version, int(ip))


def counted_spans(
    conn: Connection, spans: Sequence[tuple] | None = None, hosts: tuple[str, str] | None = None
) -> list[tuple]:
    """The spans of TCP connection `conn` that count as a socket, as (side, state index in
    STATES, start ns, end ns or OPEN_END): a state of STATES that lasted (a zero-length step,
    entered and left at one packet, is no socket). `spans` is `conn.tcp.spans()` when the
    caller has it already. With `hosts` (the originator's and the responder's address text),
    each is (host, state index, start, end, side) instead, as `SpanTable.add_span_parts` takes
    them. (A list: a generator per connection costs more.)"""
    assert conn.tcp is not None  # (TCP connections only)
    index_of = _INDEX_OF_MEMBER.get
    out: list[tuple] = []
    for side, state, start, end, _frame, _timed_out in conn.tcp.spans() if spans is None else spans:
        k = index_of(id(state))
        if k is None or (end is not None and end <= start):
            continue
        if hosts is None:
            out.append((side, k, start, OPEN_END if end is None else end))
        else:
            out.append((hosts[side], k, start, OPEN_END if end is None else end, side))
    return out


def _np():
    import numpy  # (a dependency of pandas; imported when counts are asked for)

    return numpy


class SpanTable:
    """The counted spans of a capture's connections, per host three arrays (start, end, state
    index) and the count of its sockets (endpoints with a counted span). `add(conn)` takes a
    finished connection (then it can be dropped); `add_span` one span. Memory: 17 bytes a span,
    about eight spans a connection, and nothing else per connection, up to SPILL_SPANS spans;
    past that they go to a temporary file (33 bytes a span there) and memory stays flat.
    `close` gives the file back (so does dropping the table). A table pickles with its spans
    (those in the file too: the copy has no file of its own until it spills)."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self.hosts: list[str] = []  # in the order they were first seen
        self._starts: list[array] = []
        self._ends: list[array] = []
        self._states: list[array] = []
        self.sockets: list[int] = []  # per host: endpoints with at least one counted span
        self._tw_horizon: int | None = None
        self._addr_text: dict[bytes, str] = {}
        self._memo: tuple | None = None
        self._buffered = 0  # spans in the arrays, all hosts
        self._spill_at = SPILL_SPANS
        self._file: SpillFile | None = None
        #: host -> its spilled pieces (byte offset, spans): at the offset its starts, ends,
        #: sorted starts, sorted ends (int64 each) and state indexes (int8)
        self._segments: dict[int, list[tuple[int, int]]] = {}
        self._spilled = 0  # spans in the file

    def _host(self, host: str) -> int:
        i = self._index.get(host)
        if i is None:
            i = self._index[host] = len(self.hosts)
            self.hosts.append(host)
            self._starts.append(array("q"))
            self._ends.append(array("q"))
            self._states.append(array("b"))
            self.sockets.append(0)
        return i

    def _text(self, addr: bytes) -> str:
        text = self._addr_text.get(addr)
        if text is None:
            if len(self._addr_text) > 65536:  # a flood of spoofed sources: keep it bounded
                self._addr_text.clear()
            text = self._addr_text[addr] = format_addr(addr)
        return text

    def add(self, conn: Connection, spans: Sequence[tuple] | None = None) -> None:
        """Take one finished connection's counted spans (then it can be dropped); `spans` is
        `conn.tcp.spans()` when the caller has it already."""
        self.add_span_parts(self.span_parts(conn, spans))

    def span_parts(self, conn: Connection, spans: Sequence[tuple] | None = None) -> list[tuple]:
        """`conn`'s counted spans as plain values, (host, state index, start, end, side), for
        `add_span_parts` (in the process that merges the shards of `report --jobs`)."""
        if conn.tcp is None:
            return []
        return counted_spans(conn, spans, (self._text(conn.orig_h), self._text(conn.resp_h)))

    def add_span_parts(self, parts: Sequence[tuple]) -> None:
        """Take one connection's `span_parts` (about eight spans; the one place spans are
        taken in, `add_span` included)."""
        counted = [False, False]
        # (the table's lists in locals: about eight spans a connection; `_host` appends to
        # these same lists, and `_spill` replaces their items only after the loop)
        index, starts, ends, states = self._index, self._starts, self._ends, self._states
        sockets, horizon = self.sockets, self._tw_horizon
        for host, k, start, end, side in parts:
            h = index.get(host)
            if h is None:
                h = self._host(host)
            starts[h].append(start)
            ends[h].append(end)
            states[h].append(k)
            if k == _TIME_WAIT and end != OPEN_END:
                if horizon is None or end > horizon:
                    horizon = end
            if not counted[side]:
                sockets[h] += 1
                counted[side] = True
        self._tw_horizon = horizon
        self._buffered += len(parts)
        if self._buffered >= self._spill_at:
            self._spill()

    def add_span(self, host: str, k: int, start: int, end: int) -> None:
        """One span of `host` in state STATES[k] from `start` to before `end` (OPEN_END: still
        held when the capture ended), the only span of a new socket: `add_span_parts` of it,
        which alone keeps the arrays, the TIME_WAIT horizon and the spill."""
        self.add_span_parts(((host, k, start, end, 0),))

    def _spill(self) -> None:
        """Write every host's spans in memory to the file and start its arrays afresh."""
        if self._file is None:
            self._file = SpillFile()
        for h in range(len(self.hosts)):
            n = len(self._starts[h])
            if not n:
                continue
            starts, ends, ks = self._arrays(h)
            offset = self._file.write((starts, ends))
            starts.sort()  # in place: the arrays are dropped next
            ends.sort()
            self._file.write((starts, ends, ks))
            del starts, ends, ks
            self._segments.setdefault(h, []).append((offset, n))
            self._starts[h], self._ends[h], self._states[h] = array("q"), array("q"), array("b")
            self._spilled += n
        self._buffered = 0
        self._memo = None

    def close(self) -> None:
        """Give back the temporary file of the spilled spans; the table's spans are gone
        after (as a new SpanTable's)."""
        if self._file is not None:
            self._file.close()
        SpanTable.__init__(self)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self._file is not None:
            # the spilled spans back into the arrays: another process cannot read our file
            starts, ends, ks = [], [], []
            for h in range(len(self.hosts)):
                s, e, k = array("q"), array("q"), array("b")
                for bs, be, bk in self._blocks(h):
                    s.frombytes(bs.tobytes())
                    e.frombytes(be.tobytes())
                    k.frombytes(bk.tobytes())
                starts.append(s)
                ends.append(e)
                ks.append(k)
            state.update(_starts=starts, _ends=ends, _states=ks, _file=None, _segments={},
                         _spilled=0, _buffered=self._spilled + self._buffered)  # fmt: skip
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __len__(self) -> int:
        return self._spilled + sum(len(a) for a in self._starts)

    def _count(self, h: int) -> int:
        """Host h's spans, in memory and in the file."""
        return len(self._starts[h]) + sum(n for _o, n in self._segments.get(h, ()))

    def _spilled_blocks(self, h: int) -> Iterator[tuple]:
        """Host h's spans in the file, READ_BLOCK at a time, as (starts, ends, state
        indexes)."""
        np = _np()
        file = self._file
        for offset, n in self._segments.get(h, ()):
            assert file is not None
            for lo in range(0, n, READ_BLOCK):
                m = min(READ_BLOCK, n - lo)
                yield (
                    file.read(offset + 8 * lo, np.int64, m),
                    file.read(offset + 8 * (n + lo), np.int64, m),
                    file.read(offset + 32 * n + lo, np.int8, m),
                )

    def _blocks(self, h: int) -> Iterator[tuple]:
        """Host h's spans a block at a time: those in the file, then those in memory (all of
        them when nothing was spilled)."""
        if h in self._segments:
            yield from self._spilled_blocks(h)
        yield self._arrays(h)

    def host_list(self) -> list[str]:
        """Every host with at least one counted span, in address order."""
        return sorted(self.hosts, key=host_key)

    def _arrays(self, h: int):
        """Host h's (starts, ends, state indexes) as numpy views of its arrays."""
        np = _np()
        return (
            np.frombuffer(self._starts[h], dtype=np.int64),
            np.frombuffer(self._ends[h], dtype=np.int64),
            np.frombuffer(self._states[h], dtype=np.int8),
        )

    def _peak(self, h: int, until_ns: int | None = None) -> int:
        """The host's most sockets at once (up to `until_ns`). A count can only rise at a
        span's start, so it is the largest of (starts so far - ends so far) at each start (an
        end at the same instant as a start comes first)."""
        np = _np()
        starts, ends, _k = self._arrays(h)
        starts, ends = np.sort(starts), np.sort(ends)
        if h in self._segments:  # merged with the file's sorted runs, a block at a time
            return running_peak(
                self._sorted_runs(h, 16) + [_memory_run(starts)],
                self._sorted_runs(h, 24) + [_memory_run(ends)],
                until_ns,
            )
        if until_ns is not None:
            starts = starts[: np.searchsorted(starts, until_ns, side="right")]
        best = 0
        for lo in range(0, len(starts), READ_BLOCK):  # (a block at a time: no n-long temporaries)
            block = starts[lo : lo + READ_BLOCK]
            ended = np.searchsorted(ends, block, side="right")
            best = max(best, int((np.arange(lo + 1, lo + len(block) + 1) - ended).max()))
        return best

    def _sorted_runs(self, h: int, at: int) -> list[SortedRun]:
        """Host h's spilled sorted starts (`at` 16) or ends (24), one run a piece."""
        np = _np()
        file = self._file
        assert file is not None

        def reader(offset: int):
            return lambda lo, hi: file.read(offset + 8 * lo, np.int64, hi - lo)

        return [SortedRun(reader(offset + at * n), n) for offset, n in self._segments[h]]

    def busy_hosts(self) -> list[tuple[str, int, int]]:
        """[(host, most sockets it held at once, sockets over the capture)], busiest first
        (then by address)."""
        out = [(host, self._peak(h), self.sockets[h]) for h, host in enumerate(self.hosts)]
        return sorted(out, key=lambda x: (-x[1], -x[2], host_key(x[0])))

    def subset(self, hosts: Iterable[str]) -> SpanTable:
        """The same spans for `hosts` only (shared arrays, not copies)."""
        sub = SpanTable()
        for host in hosts:
            h = self._index.get(host)
            if h is None:
                continue
            i = sub._host(host)
            sub._starts[i], sub._ends[i], sub._states[i] = (
                self._starts[h],
                self._ends[h],
                self._states[h],
            )
            sub.sockets[i] = self.sockets[h]
            if h in self._segments:
                sub._file = self._file
                sub._segments[i] = self._segments[h]
                sub._spilled += sum(n for _o, n in self._segments[h])
        sub._buffered = sum(len(a) for a in sub._starts)
        sub._spill_at = OPEN_END  # (a view: nothing is added to it)
        sub._tw_horizon = self.time_wait_horizon(sub.hosts)
        return sub

    # ------------------------------------------------------------------ counting
    def time_wait_horizon(self, hosts: Iterable[str] | None = None) -> int | None:
        """When the last TIME_WAIT runs out, or None without TIME_WAIT."""
        if hosts is None:
            return self._tw_horizon
        best = None
        for host in hosts:
            for _s, ends, ks in self._blocks(self._index[host]):
                ends = ends[(ks == _TIME_WAIT) & (ends != OPEN_END)]
                if len(ends):
                    last = int(ends.max())
                    best = last if best is None or last > best else best
        return best

    def change_points(
        self, start_ns: int, end_ns: int, limit: int | None = None
    ) -> list[int] | None:
        """Every instant in [start, end] where some count changes, plus both ends, sorted; None
        when there are more than `limit` (the caller then samples the span evenly: the list
        of a long capture's millions of instants is never made)."""
        np = _np()
        # a block of the arrays at a time, stopping as soon as there are more than `limit`:
        # a long capture's hundreds of thousands of instants are never concatenated (its
        # first block answers), and the answer is the same sorted set either way
        points = np.array([start_ns, end_ns], dtype=np.int64)
        points = points[(points >= start_ns) & (points <= end_ns)]
        parts = [points]
        for more in chain(self._memory_blocks(), self._spilled_instants()):
            more = np.unique(more[(more >= start_ns) & (more <= end_ns)])
            if limit is None:  # (the answer is all of them: made once, at the end)
                parts.append(more)
                continue
            points = np.union1d(points, more)
            if len(points) > limit:
                return None
        if limit is None and len(parts) > 1:
            points = np.unique(np.concatenate(parts))
        return points.tolist()

    def _memory_blocks(self) -> Iterator:
        """The starts and ends in memory, every host's, as numpy views of at most READ_BLOCK."""
        np = _np()
        for arrays in (self._starts, self._ends):
            for a in arrays:
                view = np.frombuffer(a, dtype=np.int64)
                for lo in range(0, len(view), READ_BLOCK):
                    yield view[lo : lo + READ_BLOCK]

    def _spilled_instants(self) -> Iterator:
        """The spilled starts and ends, a block at a time."""
        for h in self._segments:
            for starts, ends, _k in self._spilled_blocks(h):
                yield starts
                yield ends

    def counts_at(self, ts_ns: int) -> dict[str, Counter]:
        """{host: Counter(state -> sockets)} at `ts_ns`; every host is present (address
        order), with the states it has sockets in."""
        np = _np()
        out = {}
        for host in self.host_list():
            held = None
            for starts, ends, ks in self._blocks(self._index[host]):
                n = np.bincount(ks[(starts <= ts_ns) & (ts_ns < ends)], minlength=len(STATES))
                held = n if held is None else held + n
            assert held is not None
            out[host] = Counter({STATES[k]: int(n) for k, n in enumerate(held.tolist()) if n})
        return out

    def _counts(self, h: int, times: Sequence[int], brief_only: bool = False) -> list[list[int]]:
        """Per state index, the host's sockets in it at each of the sorted `times` (a +1/-1
        step per span, summed): with `brief_only`, only CLOSE_WAIT spans shorter than
        BRIEF_CLOSE_WAIT_NS, in row 0. The last answer is kept (the chart asks for the same
        times more than once)."""
        key = (h, brief_only, tuple(times))
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        np = _np()
        grid = np.asarray(times, dtype=np.int64)
        steps = np.zeros((1 if brief_only else len(STATES), len(times) + 1), dtype=np.int64)
        for starts, ends, ks in self._blocks(h):  # (the steps add up block by block)
            if brief_only:
                keep = (ks == _CLOSE_WAIT) & (ends != OPEN_END)
                starts, ends = starts[keep], ends[keep]
                keep = ends - starts < BRIEF_CLOSE_WAIT_NS
                starts, ends = starts[keep], ends[keep]
                ks = np.zeros(len(starts), dtype=np.int8)
            # holds(t): start <= t < end, so a span counts from the first time at or after
            # its start to before the first time at or after its end
            np.add.at(steps, (ks, np.searchsorted(grid, starts, side="left")), 1)
            np.add.at(steps, (ks, np.searchsorted(grid, ends, side="left")), -1)
        rows = np.cumsum(steps, axis=1)[:, :-1].tolist()
        self._memo = (key, rows)
        return rows

    def peaks(self, times: Sequence[int]) -> dict[str, int]:
        """Each host's largest socket count at any instant up to the last of the sorted
        `times` (between two sampled times too)."""
        until = times[-1] if times else None
        return {host: self._peak(h, until) for h, host in enumerate(self.hosts)}

    def series(
        self, times: Sequence[int], hosts: Sequence[str] | None = None
    ) -> list[dict[str, Counter]]:
        """At each of the sorted `times`, {host: Counter(state -> sockets)} for `hosts` (every
        host, in address order, by default; a SYN flood has tens of thousands of sources)."""
        if hosts is None:
            hosts = self.host_list()
        per_host = {host: self._counts(self._index[host], times) for host in hosts}
        out = []
        for i in range(len(times)):
            out.append(
                {
                    host: Counter({STATES[k]: row[i] for k, row in enumerate(rows) if row[i]})
                    for host, rows in per_host.items()
                }
            )
        return out

    def iter_active(
        self, times: Sequence[int]
    ) -> Iterator[tuple[int, list[tuple[str, list[int]]]]]:
        """At each of the sorted `times` where some host has sockets then or had at the time
        before: (index of the time, [(host, its socket count per state index)] in address
        order). One sweep over every span's start and end, binned to the first time at or
        after it: memory for the sweep is a few arrays of the spans' size, and the hosts with
        sockets at a time, not every host at every time."""
        np = _np()
        n_hosts, n_times = len(self.hosts), len(times)
        if not n_hosts or not n_times:
            return
        grid = np.asarray(times, dtype=np.int64)
        width = len(STATES)
        cells = (n_times + 1) * width  # (time bin, state) cells of one host
        parts_b, parts_h, parts_k, parts_d = [], [], [], []
        for h in range(n_hosts):
            # the host's net change per (first time at or after the event, state): at most
            # `cells` numbers however many spans it has, made a block of spans at a time
            dense = 2 * self._count(h) > cells
            acc = np.zeros(cells if dense else 0, dtype=np.int64)
            keys_parts, delta_parts = [], []
            for starts, ends, ks in self._blocks(h):
                for lo in range(0, len(starts), _BLOCK):
                    k = ks[lo : lo + _BLOCK].astype(np.int64)
                    e = ends[lo : lo + _BLOCK]
                    closed = e != OPEN_END
                    keys = np.concatenate(
                        [
                            np.searchsorted(grid, starts[lo : lo + _BLOCK], side="left") * width
                            + k,
                            np.searchsorted(grid, e[closed], side="left") * width + k[closed],
                        ]
                    )
                    weights = np.concatenate(
                        [
                            np.ones(len(k), dtype=np.int64),
                            -np.ones(int(closed.sum()), dtype=np.int64),
                        ]
                    )
                    if dense:
                        acc += np.bincount(keys, weights=weights, minlength=cells).astype(np.int64)
                    else:
                        keys_parts.append(keys)
                        delta_parts.append(weights)
            if dense:
                keys = np.flatnonzero(acc)
                deltas = acc[keys]
            else:
                keys, where = np.unique(np.concatenate(keys_parts), return_inverse=True)
                deltas = np.bincount(where, weights=np.concatenate(delta_parts)).astype(np.int64)
                keep = deltas != 0
                keys, deltas = keys[keep], deltas[keep]
            keep = keys < n_times * width  # a change after the last time shows at none
            keys, deltas = keys[keep], deltas[keep]
            parts_b.append(keys // width)
            parts_k.append(keys % width)
            parts_h.append(np.full(len(keys), h, dtype=np.int64))
            parts_d.append(deltas)
        bins = np.concatenate(parts_b)
        order = np.argsort(bins, kind="stable")
        bins = bins[order]
        hs = np.concatenate(parts_h)[order]
        ks = np.concatenate(parts_k)[order]
        deltas = np.concatenate(parts_d)[order]
        del parts_b, parts_h, parts_k, parts_d, order
        bounds = np.searchsorted(bins, np.arange(n_times), side="right").tolist()
        rank = {
            h: r
            for r, h in enumerate(sorted(range(n_hosts), key=lambda h: host_key(self.hosts[h])))
        }
        current = np.zeros((n_hosts, len(STATES)), dtype=np.int64)
        totals = np.zeros(n_hosts, dtype=np.int64)
        active: set[int] = set()
        previous: set[int] = set()
        lo = 0
        for i in range(n_times):
            hi = bounds[i]
            if hi > lo:
                touched_h = hs[lo:hi]
                np.add.at(current, (touched_h, ks[lo:hi]), deltas[lo:hi])
                np.add.at(totals, touched_h, deltas[lo:hi])
                for h in np.unique(touched_h).tolist():
                    if totals[h] > 0:
                        active.add(h)
                    else:
                        active.discard(h)
                lo = hi
            if active or previous:
                shown = sorted(active | previous, key=rank.__getitem__)
                yield i, [(self.hosts[h], current[h].tolist()) for h in shown]
            previous = set(active)

    def brief_close_waits(self, hosts: Sequence[str], times: Sequence[int]) -> dict[str, list[int]]:
        """Per host, its CLOSE_WAIT sockets at each of `times` that are in a brief span (one
        that ended within BRIEF_CLOSE_WAIT_NS); hosts without any are left out."""
        out = {}
        for host in hosts:
            (row,) = self._counts(self._index[host], times, brief_only=True)
            if any(row) or self._has_brief(self._index[host]):
                out[host] = row
        return out

    def _has_brief(self, h: int) -> bool:
        for starts, ends, ks in self._blocks(h):
            keep = (ks == _CLOSE_WAIT) & (ends != OPEN_END)
            if ((ends[keep] - starts[keep]) < BRIEF_CLOSE_WAIT_NS).any():
                return True
        return False


def _memory_run(values) -> SortedRun:
    """A sorted array in memory as a run."""
    return SortedRun(lambda lo, hi: values[lo:hi], len(values))

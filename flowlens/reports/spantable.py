"""Socket-state spans of a whole capture, compact: what the postmortem report charts.

`SpanTable` holds the spans `SocketStates` holds (`endpoint_spans`' rule of which count), as
three arrays per host (start, end, state index: 17 bytes a span instead of a `Span` object), and
answers what `states.states_chart` asks of either (`time_wait_horizon`, `change_points`,
`peaks`, `series`, `brief_close_waits`) by the same counting rules: a span holds from its start
to before its end.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterable, Sequence

from ..core.connections import Connection, format_addr
from ..core.tcpstate import TcpState
from .states import BRIEF_CLOSE_WAIT_NS, STATES, host_key

__all__ = ["SpanTable"]

_STATE_INDEX = {name: i for i, name in enumerate(STATES)}
#: the same by the enum member's identity: an Enum's hash and `.value` are Python calls, and
#: the report reads about eight spans per connection
_INDEX_OF_MEMBER = {id(TcpState(name)): i for i, name in enumerate(STATES)}
_OPEN_END = 2**63 - 1  # a span still held when the capture ended


class SpanTable:
    """The spans of `SocketStates` in a compact form, for a capture's worth of connections:
    per host three arrays (start, end, state index), 17 bytes a span instead of a `Span`
    object, and the count of its sockets. The postmortem report keeps one of these over the
    whole capture, picks the busy hosts (`busy_hosts`) and charts them (`states_chart`, which
    reads the same counting rules from either class: a span holds from its start to before its
    end, `endpoint_spans` decides which spans count)."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self.hosts: list[str] = []
        self._starts: list[array] = []
        self._ends: list[array] = []
        self._states: list[array] = []
        self.sockets: list[int] = []  # per host: endpoints with at least one counted span
        self._tw_horizon: int | None = None
        self._addr_text: dict[bytes, str] = {}
        self._memo: tuple | None = None

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
        """Take one finished connection's spans (then it can be dropped); `spans` is
        `conn.tcp.spans()` when the caller has it already."""
        if conn.tcp is None:
            return
        sides = (self._text(conn.orig_h), self._text(conn.resp_h))
        counted = [False, False]
        tw = _STATE_INDEX["TIME_WAIT"]
        index_of = _INDEX_OF_MEMBER.get
        for side, state, start, end, _frame, _timed_out in (
            conn.tcp.spans() if spans is None else spans
        ):
            k = index_of(id(state))
            if k is None or (end is not None and end <= start):
                continue
            h = self._host(sides[side])
            self._starts[h].append(start)
            self._ends[h].append(_OPEN_END if end is None else end)
            self._states[h].append(k)
            if k == tw and end is not None:
                if self._tw_horizon is None or end > self._tw_horizon:
                    self._tw_horizon = end
            if not counted[side]:
                counted[side] = True
                self.sockets[h] += 1

    def __len__(self) -> int:
        return sum(len(a) for a in self._starts)

    def _peak(self, h: int, until_ns: int | None = None) -> int:
        """The host's most sockets at once (up to `until_ns`). A count can only rise at a
        span's start, so it is the largest of (starts so far - ends so far) at each start."""
        # one sorted list at a time, back into an array: a host can have 100,000s of spans
        starts = array("q", sorted(self._starts[h]))
        ends = array("q", sorted(self._ends[h]))
        peak, j, n_end = 0, 0, len(ends)
        for i, t in enumerate(starts):
            if until_ns is not None and t > until_ns:
                break
            while j < n_end and ends[j] <= t:
                j += 1
            if i + 1 - j > peak:
                peak = i + 1 - j
        return peak

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
        sub._tw_horizon = self.time_wait_horizon(sub.hosts)
        return sub

    # -------------------------------------------- what states_chart reads (as SocketStates)
    def time_wait_horizon(self, hosts: Iterable[str] | None = None) -> int | None:
        """When the last TIME_WAIT runs out, or None without TIME_WAIT."""
        if hosts is None:
            return self._tw_horizon
        tw, best = _STATE_INDEX["TIME_WAIT"], None
        for host in hosts:
            h = self._index[host]
            for e, k in zip(self._ends[h], self._states[h]):
                if k == tw and e != _OPEN_END and (best is None or e > best):
                    best = e
        return best

    def change_points(self, start_ns: int, end_ns: int) -> list[int]:
        """Every instant in [start, end] where some count changes, plus both ends."""
        points = {start_ns, end_ns}
        for h in range(len(self.hosts)):
            points.update(self._starts[h])
            points.update(self._ends[h])
        return sorted(t for t in points if start_ns <= t <= end_ns)

    def _counts(self, h: int, times: Sequence[int], brief_only: bool = False) -> list[list[int]]:
        """Per state index, the host's sockets in it at each of the sorted `times` (a +1/-1
        step per span, summed): with `brief_only`, only CLOSE_WAIT spans shorter than
        BRIEF_CLOSE_WAIT_NS, in row 0. The last answer is kept (the chart asks for the same
        times more than once)."""
        key = (h, brief_only, tuple(times))
        if self._memo is not None and self._memo[0] == key:
            return self._memo[1]
        rows = self._count_rows(h, times, brief_only)
        self._memo = (key, rows)
        return rows

    def _count_rows(self, h: int, times: Sequence[int], brief_only: bool) -> list[list[int]]:
        import bisect
        from itertools import accumulate

        rows = [[0] * (len(times) + 1) for _ in (range(1) if brief_only else STATES)]
        cw = _STATE_INDEX["CLOSE_WAIT"]
        left = bisect.bisect_left
        for start, end, k in zip(self._starts[h], self._ends[h], self._states[h]):
            if brief_only:
                if k != cw or end == _OPEN_END or end - start >= BRIEF_CLOSE_WAIT_NS:
                    continue
                k = 0
            row = rows[k]
            row[left(times, start)] += 1
            row[left(times, end)] -= 1  # holds(t): start <= t < end
        return [list(accumulate(r))[:-1] for r in rows]

    def peaks(self, times: Sequence[int]) -> dict[str, int]:
        """Each host's largest socket count at any instant up to the last of the sorted
        `times` (as SocketStates.peaks: between two sampled times too)."""
        until = times[-1] if times else None
        return {host: self._peak(h, until) for h, host in enumerate(self.hosts)}

    def series(self, times: Sequence[int], hosts: Sequence[str]) -> list[dict[str, Counter]]:
        """At each of the sorted `times`, {host: Counter(state -> sockets)} (SocketStates')."""
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

    def brief_close_waits(self, hosts: Sequence[str], times: Sequence[int]) -> dict[str, list[int]]:
        """As SocketStates.brief_close_waits."""
        out = {}
        for host in hosts:
            (row,) = self._counts(self._index[host], times, brief_only=True)
            if any(row) or self._has_brief(self._index[host]):
                out[host] = row
        return out

    def _has_brief(self, h: int) -> bool:
        cw = _STATE_INDEX["CLOSE_WAIT"]
        return any(
            k == cw and e != _OPEN_END and e - s < BRIEF_CLOSE_WAIT_NS
            for s, e, k in zip(self._starts[h], self._ends[h], self._states[h])
        )

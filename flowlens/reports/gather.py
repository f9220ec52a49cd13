"""The postmortem report's pass: what each connection adds to the report, where it was read, and
how the report keeps it, in one process or in the hash shards of `report --jobs`/`--scheduler`.

The report is made in two places. Where a pipeline runs (the one process, or each shard's
worker), a `ReportShard` turns every finished connection into its *part* (`ReportShard.part`,
plain values: its table row when the report could show one, its socket spans, its RTT groups'
and the RTT chart's samples, its part of the findings, and how much its packet log is worth)
and keeps the connection's packet log and segment series itself, within the same budgets the
report applies. Where the report is assembled, a `ReportGather` adds the parts in the order one
pipeline yields the connections, so it decides exactly what one process decides: which rows
the table has, which logs survive the budget, which series are kept. Only after the findings
are made does it ask the pipelines' side (`ReportShard.answer`) for the few things that need
the connections themselves: where the user's frame notes fell, which kept log holds an
evidence frame, and the ladders of the chosen connections, drawn where their logs are.

Why a shard's own budget keeps every log the whole report keeps (so a ladder is never missing
in a shard that one process would have drawn): each budget keeps, per `worth` tier, the oldest
of its connections (it drops the newest of the larger lower tier first, then the newest
STRONG), and a shard sees a subset of the connections in the same order, with no more
competition for its budget than the whole has. The same holds for the rows (the first
`max_table_rows`, and the later ones a finding could name) and the series (the first
`max_kept_streams`). tests/test_jobs.py checks the report's bytes against one process over
every sample and corpus capture.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..analyzers.anomalies.detector import AnomalyDetector, Thresholds
from ..analyzers.packetlog import PacketCollector
from ..analyzers.rtt import RttCollector
from ..analyzers.tcpanalysis import TcpAnalyzer
from ..core.analyzer import Analyzer
from ..core.connections import RECORD_FIELDS, Connection
from ..core.decode import IPPROTO_TCP
from ..core.tcpstate import TcpState
from .ladder import Note, build_ladder, render_text
from .postmortem_figures import ladder_picture, tseq_picture
from .rtt import Aggregator, Series, series_for
from .spantable import SpanTable
from .valuespill import Column, ValuePool

if TYPE_CHECKING:  # (the segment series are read only for --stream-graphs)
    from ..analyzers.streamlog import StreamCollector, StreamLog

__all__ = [
    "SPARE",
    "WEAK",
    "STRONG",
    "MAX_LATE_ROWS",
    "MAX_LATE_WEAK_ROWS",
    "FrameMarks",
    "LogBudget",
    "ReportShard",
    "ReportGather",
    "exit_key",
    "open_peak",
    "row_record",
    "row_values",
]

#: how much a connection's log is worth keeping (`worth`): a per-connection finding is
#: possible (STRONG), only a host-level one names it (WEAK: a reused 5-tuple, which
#: port_reuse lists), or neither (SPARE: it can still be a host-level finding's example)
SPARE, WEAK, STRONG = 0, 1, 2
#: rows past the table's limit kept for WEAK connections: a host-level finding names at most
#: its first few dozen uids (port_reuse's `uids`), so these stop early
MAX_LATE_WEAK_ROWS = 1000
#: rows past the table's limit kept at most (STRONG and WEAK), in case a finding names them:
#: a capture of millions of failed connections must not keep a row for each (the report says
#: how many it left without one)
MAX_LATE_ROWS = 20_000


def worth(conn: Connection, tcp: TcpAnalyzer, lingers: tuple[int, int], spans) -> int:
    """Can this connection feed a per-connection finding (STRONG), or only be named by a
    host-level one (WEAK), or neither (SPARE)? Logs go in that order when the budget is full.
    `lingers`: the close_wait and fin_wait_2 thresholds (ns); `spans`: `conn.tcp.spans()`
    (TCP only)."""
    if conn.icmp_errors:
        return STRONG
    if conn.proto != IPPROTO_TCP:
        return WEAK if conn.prev_uid is not None else SPARE
    if conn.conn_state != "SF" or conn.retransmissions:
        return STRONG
    # every close passes through CLOSE_WAIT and FIN_WAIT_2: only a long one is a finding
    for _side, st, start, end, _frame, _timed_out in spans:
        # (by identity: an Enum's hash is a Python call, and most spans are neither)
        if st is _CLOSE_WAIT:
            limit = lingers[0]
        elif st is _FIN_WAIT_2:
            limit = lingers[1]
        else:
            continue
        if end is None or end - start >= limit:
            return STRONG
    st = tcp.state_of(conn)
    if st is not None:
        for d in st.dirs:  # (a loop, not any(...): no generator per connection)
            if d.retrans_segments or d.zero_window_spells or d.keep_alive_first_ns is not None:
                return STRONG
    return WEAK if conn.prev_uid is not None else SPARE


def could_graph(conn: Connection, tcp: TcpAnalyzer) -> bool:
    """Can this connection get a time-sequence graph (a retransmissions or zero_window
    finding)? Only then is its segment series kept."""
    st = tcp.state_of(conn)
    if st is not None:
        for d in st.dirs:
            if d.retrans_segments or d.zero_window_spells:
                return True
    return False


class FrameMarks(Analyzer):
    """Analyzer remembering (ts_ns, uid) of a few frames: where the user's frame notes fall."""

    def __init__(self, frames: Iterable[int]) -> None:
        super().__init__()
        self.frames = frozenset(frames)
        self.seen: dict[int, tuple[int, str]] = {}

    def on_start(self, conn: Connection, pkt):
        return True if self.frames else None  # (no frame notes: no packet to look at)

    def on_packet(self, conn: Connection, pkt, from_orig: bool) -> None:
        if pkt.frame in self.frames:
            self.seen[pkt.frame] = (pkt.ts_ns, conn.uid)


class LogBudget:
    """The packet logs kept for ladders, at most `limit`: past it, the newest of the larger of
    the SPARE and WEAK tiers goes first (both can hold a host-level finding's example, which is
    among its first connections), the newest STRONG last. `kept` maps uid -> what the caller
    keeps for it, oldest first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # (plain dicts: insertion-ordered, and popitem() takes the newest, as an
        # OrderedDict's popitem(last=True), at less cost: two keeps per connection)
        self.kept: dict[str, Any] = {}
        self.tiers: tuple[dict[str, None], ...] = ({}, {}, {})
        self.dropped = 0

    def keep(self, uid: str, tier: int, value: Any) -> list[tuple[str, Any]]:
        """Keep `value` for `uid` of `tier`; returns what the budget dropped for it."""
        self.kept[uid] = value
        self.tiers[tier][uid] = None
        gone = []
        while len(self.kept) > self.limit:
            self.dropped += 1
            spare, weak, strong = self.tiers
            if spare or weak:  # the larger, SPARE on a tie (as max(spare, weak, key=len))
                tiered = spare if len(spare) >= len(weak) else weak
            else:
                tiered = strong
            old, _ = tiered.popitem()
            gone.append((old, self.kept.pop(old)))
        return gone


_CLOSE_WAIT, _FIN_WAIT_2 = TcpState.CLOSE_WAIT, TcpState.FIN_WAIT_2


def _lingers(thresholds: Thresholds | None) -> tuple[int, int]:
    """The close_wait and fin_wait_2 thresholds in ns (`worth`)."""
    th = thresholds or Thresholds()
    return int(th.close_wait_s * 1e9), int(th.fin_wait_2_s * 1e9)


class ReportShard(Analyzer):
    """The report's side of one pipeline (the one process's, or a shard's): `part(conn)` for
    every connection in the order the pipeline yields them, and `answer(question)` after the
    run. An Analyzer only to travel in the pipeline's analyzer list (it sees no packet).

    `whole`: this pipeline sees every connection (one process), so the late rows it makes
    are exactly the report's; a shard makes each later row a finding could name (the process
    that merges keeps those the whole report keeps, MAX_LATE_ROWS)."""

    def __init__(
        self,
        options: Any,  # postmortem.ReportOptions
        tcp: TcpAnalyzer,
        rtt: RttCollector,
        detector: AnomalyDetector,
        collector: PacketCollector,
        marks: FrameMarks,
        streams: StreamCollector | None,
        whole: bool,
    ) -> None:
        super().__init__()
        self.options = options
        self.tcp, self.rtt, self.detector = tcp, rtt, detector
        self.collector, self.marks, self.streams = collector, marks, streams
        self.whole = whole
        self.lingers = _lingers(options.thresholds)
        self.spans = SpanTable()  # (its address texts: a shard's parts name hosts as text)
        self.rtt_parts = Aggregator("server", rtt)
        self.seen = 0
        self.late = 0
        self.logs = LogBudget(options.max_kept_logs)  # uid -> (conn, log)
        self.stream_logs: dict[str, StreamLog] = {}

    # (no on_start: the Analyzer's, which follows no connection, is called as C code)

    def part(self, conn: Connection) -> tuple:
        """What `conn` adds to the report (ReportGather.add takes it), as plain values; its
        packet log and segment series stay here."""
        options, tcp = self.options, self.tcp
        spans = conn.tcp.spans() if conn.tcp is not None else ()
        tier = worth(conn, tcp, self.lingers, spans)
        row = None
        if self.seen < options.max_table_rows:
            row = row_values(conn)
        elif (tier == STRONG or (tier == WEAK and self.late < MAX_LATE_WEAK_ROWS)) and (
            not self.whole or self.late < MAX_LATE_ROWS
        ):
            row = row_values(conn)
            self.late += 1
        self.seen += 1
        series = None
        if self.streams is not None and len(self.stream_logs) < options.max_kept_streams:
            series = self.streams.log_of(conn)
            if series is not None and could_graph(conn, tcp):
                self.stream_logs[conn.uid] = series
            else:
                series = None
        log = self.collector.log_of(conn)
        if log is not None:
            self.logs.keep(conn.uid, tier, (conn, log))
        part = (
            conn.uid, conn.first_frame, tier, conn.proto_name, conn.orig_h, conn.resp_h, row,
            self.spans.span_parts(conn, spans), self.rtt_parts.parts(conn),
            series_for(conn, "server", self.rtt), log is not None, series is not None,
            self.detector.parts(conn),
            conn.held and (conn.closed_by == "reused" or conn.closed_by == "continued"),
        )  # fmt: skip
        if log is not None:
            # a kept connection's ladder reads the connection, its trackers and its log, never
            # its analyzers' states (TCP analysis, RTT: most of what it holds), which go now
            conn.states = None
        return part

    def answer(self, question: tuple) -> Any:
        """After the run: ("marks",) where the frame notes fell; ("frames", frames, uids)
        which of the kept logs of `uids` hold each of `frames`; ("ladders", uids, notes,
        graphed) the ladder of each of `uids` whose log is here (uid -> (record, ladder,
        text, picture, notes placed, time-sequence picture or None)); ("release",) drops the
        kept logs and series (no question about them follows)."""
        kind = question[0]
        if kind == "marks":
            return self.marks.seen
        if kind == "frames":
            frames, uids = question[1], question[2]
            hits: dict[int, list[str]] = {}
            for uid, (_conn, log) in self.logs.kept.items():
                if uid in uids:
                    for r in log.rows():
                        if r.frame in frames:
                            hits.setdefault(r.frame, []).append(uid)
            return hits
        if kind == "ladders":
            uids, notes, graphed = question[1], question[2], question[3]
            out = {}
            for uid in uids:
                kept = self.logs.kept.get(uid)
                if kept is not None:
                    out[uid] = self._ladder(kept[0], kept[1], notes, uid in graphed)
            return out
        if kind == "release":
            # the ladders are drawn: the kept logs and series (and their connections) go
            # before the report draws its charts, which need the room
            self.logs.kept.clear()
            self.stream_logs.clear()
            return None
        raise ValueError(f"no such question: {kind!r}")

    def _ladder(self, conn: Connection, log, notes: list[Note], graphed: bool) -> tuple:
        lad = build_ladder(conn, log, notes)
        placed = [t for s in lad.steps for t in s.notes] + [
            d.split(": ", 1)[1] for s in lad.steps if s.kind == "collapsed" for d in s.detail
            if d.startswith("frame ") and ": " in d
        ]  # fmt: skip
        series = self.stream_logs.get(conn.uid) if graphed else None
        stream = None
        if series is not None:
            from .streamgraph import tseq_graph  # (only with --stream-graphs)

            stream = tseq_picture(tseq_graph(series))
        return conn.to_record(), lad, render_text(lad), ladder_picture(lad), placed, stream


class ReportGather:
    """What the report keeps of the parts (ReportShard.part), added in the order one pipeline
    yields the connections: the same rows, kept logs and series, whatever the shards."""

    def __init__(self, options: Any, detector: AnomalyDetector) -> None:
        self.options = options
        self.detector = detector
        self.states = SpanTable()
        self.rtt_agg = Aggregator("server", None)
        self.rtt_series: dict[str, Series] = {}  # the RTT chart's lines, of Columns
        self.rtt_pool = ValuePool()  # (of the lines' samples)
        self.rtt_columns: dict[str, tuple[Column, Column]] = {}  # the lines' (ts_s, rtt_ms)
        #: the table's rows as `row_values` (`row_record` makes each the record again)
        self.records: list[tuple] = []
        self.late_records: dict[str, tuple] = {}  # past max_table_rows, kept in case of a finding
        self.total = 0
        self.by_proto: Counter = Counter()
        self.hosts: Counter = Counter()
        #: first frame -> uid of the connections with a row or a kept log (what a finding's
        #: evidence frame can lead to: a row to mark, a ladder to link)
        self.first_frames: dict[int, str] = {}
        self.rowed: set[str] = set()  # uids of the first max_table_rows rows
        self.late_dropped = 0  # connections a finding could name, left without a row
        self.logs = LogBudget(options.max_kept_logs)  # uid -> first frame
        self.stream_uids: list[str] = []  # the kept series' connections

    @property
    def dropped(self) -> int:
        """Logs the budget dropped."""
        return self.logs.dropped

    def rtt_lines(self) -> list[Series]:
        """The RTT chart's lines: their C arrays when nothing was written to the pool's file
        (the chart then orders them in memory), else the Columns, which it reads back."""
        if self.rtt_pool.spilled:
            return list(self.rtt_series.values())
        return [
            Series(label, ts.values, rtt.values) for label, (ts, rtt) in self.rtt_columns.items()
        ]

    def add(self, part: tuple) -> None:
        (uid, first_frame, tier, proto_name, orig_h, resp_h, record, spans, rtt_parts, series,
         logged, graphable, findings, _after) = part  # fmt: skip
        self.total += 1
        self.states.add_span_parts(spans)
        self.rtt_agg.add_parts(rtt_parts)
        if series:
            pool = self.rtt_pool
            added = 0
            for label, ts_s, rtt_ms in series:
                cols = self.rtt_columns.get(label)
                if cols is None:
                    # (columns of the pool, not lists: a server's line holds every sample of
                    # the capture, written to the pool's temporary file past its budget)
                    cols = self.rtt_columns[label] = (pool.column("d"), pool.column("d"))
                    self.rtt_series[label] = Series(label, cols[0], cols[1])
                cols[0].values.extend(ts_s)
                cols[1].values.extend(rtt_ms)
                added += 2 * len(ts_s)
            pool.added(added)
        self.by_proto[proto_name] += 1
        self.hosts[orig_h] += 1  # addresses as bytes: spelt once, in the facts
        self.hosts[resp_h] += 1
        self.detector.add_parts(findings)
        options = self.options
        if len(self.records) < options.max_table_rows:
            self.records.append(record)
            self.rowed.add(uid)
            self.first_frames[first_frame] = uid
        elif tier == STRONG or (tier == WEAK and len(self.late_records) < MAX_LATE_WEAK_ROWS):
            # past the table's rows, kept in case a finding names it (a host-level finding's
            # uids are its first ones: the reused 5-tuples' rows stop at MAX_LATE_WEAK_ROWS)
            if len(self.late_records) < MAX_LATE_ROWS:
                self.late_records[uid] = record
                self.first_frames[first_frame] = uid
            else:
                self.late_dropped += 1
        if graphable and len(self.stream_uids) < options.max_kept_streams:
            self.stream_uids.append(uid)
        if logged:
            self.first_frames[first_frame] = uid
            for gone, frame in self.logs.keep(uid, tier, first_frame):
                if gone not in self.rowed and gone not in self.late_records:
                    self.first_frames.pop(frame, None)


def row_values(conn: Connection) -> tuple:
    """A table row kept compactly: the values of `conn.to_record()` (its keys are always
    `RECORD_FIELDS`, in that order), a third of the dict's size for the 5,000 rows a report
    keeps through its pass."""
    return tuple(conn.to_record().values())


def row_record(values: tuple) -> dict:
    """The record again from `row_values`, the same keys in the same order."""
    return dict(zip(RECORD_FIELDS, values))


def exit_key(frame: int, after_open: bool) -> int:
    """When a connection left the table, comparable with `2 * first_frame` (`open_peak`): its
    frame's clock ends it before the frame's packet opens a connection (2 * frame), but a
    held record that the packet's new connection replaces leaves after it (2 * frame + 1;
    ReportShard.part's last field)."""
    return 2 * frame + 1 if after_open else 2 * frame


def open_peak(first_frames: Iterable[int], exits: Iterable[int]) -> int:
    """The most connections open at once, as `ConnectionTable.open_peak` counts them (at each
    opening: the live table and the held records), from each connection's first frame and
    its `exit_key`, for a run whose shards each held only their own."""
    import numpy as np

    opened = np.sort(2 * np.fromiter(first_frames, dtype=np.int64))
    if not len(opened):
        return 0
    ended = np.sort(np.fromiter(exits, dtype=np.int64))
    # at the last opening of each frame: every connection opened by then, less those gone
    frames = np.unique(opened)
    open_at = np.searchsorted(opened, frames, side="right") - np.searchsorted(
        ended, frames, side="right"
    )
    return int(open_at.max())


def local_run(path: str, config, progress: Callable | None = None):
    """A one-process stand-in for the commands' ConnectionStream (the library's default): the
    same calls, one Pipeline."""
    return _LocalRun(path, config, progress)


class _LocalRun:
    jobs = 1
    split = (1, -1)  # (ConnectionStream.split: one shard)

    def __init__(self, path: str, config, progress: Callable | None) -> None:
        from ..core.pipeline import Pipeline

        self._new = lambda analyzers: Pipeline(path, config, analyzers=analyzers,
                                               progress=progress)  # fmt: skip
        self.progress = progress
        self.facts: dict = {}
        self.finished: list = []
        self.stats: Any = None  # (the pipeline's CaptureStats, once it is made)

    def __call__(self, make_analyzers, work, *, frames: bool, finish, answer) -> _LocalRun:
        self._analyzers = make_analyzers()
        self._pipe = self._new(self._analyzers)  # CaptureError: before any work
        self.stats = self._pipe.stats
        self._work, self._finish, self._answer = work, finish, answer
        return self

    def __iter__(self):
        pipe, analyzers, work = self._pipe, self._analyzers, self._work
        try:
            for conn in pipe:
                yield pipe.emit_frame, work(conn, analyzers)
        finally:
            if self.progress is not None and hasattr(self.progress, "close"):
                self.progress.close()
        self.finished = [self._finish(pipe)]
        self.facts = pipe.run_facts()

    def ask(self, question):
        return [self._answer(question, self._analyzers)]

    def close(self) -> None:
        pass

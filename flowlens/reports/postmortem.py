"""The postmortem report's content: one pass over a capture gathers everything the HTML and
Markdown renderers (`reports/html.py`, `reports/markdown.py`) lay out.

`build_report` runs the pipeline once, never twice, with every analyzer the report needs: the
TCP analyzer (``keep_frames=True``; the anomaly detector requires it and reads its results, and
the ladders show its per-frame verdicts without a second analyzer), the anomaly detector, the
RTT collector, a `PacketCollector` in collapsed mode, a small analyzer that notes where the
user's ``--note FRAME=...`` frames fall, and, when time-sequence graphs are asked for
(`ReportOptions.max_stream_graphs`), a `StreamCollector`. Which connections *matter* (the ones
the findings name, and the ones the notes point at) is known only at the end, so as each
connection finishes its collapsed log is kept within a budget (`ReportOptions.max_kept_logs`);
when the budget overflows, logs of connections that cannot feed a per-connection finding go
first, and a chosen connection whose log was dropped anyway (a huge capture) is named among the
ladders left out. Segment series are kept only for finished connections with retransmissions or
a zero window (the graphs' kinds), at most `ReportOptions.max_kept_streams`. Memory is then the
open connections' state plus those kept logs and series. Standard input works like a file.

Everything here is data (records, `Ladder`s, SVG pictures); the renderers only lay it out.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from ..analyzers.anomalies.detector import SEVERITIES, Anomaly, AnomalyDetector, Thresholds
from ..analyzers.packetlog import ConnLog, PacketCollector
from ..analyzers.rtt import RttCollector
from ..analyzers.streamlog import StreamCollector, StreamLog
from ..analyzers.tcpanalysis import TcpAnalyzer
from ..core.analyzer import Analyzer
from ..core.connections import Config, Connection, format_addr
from ..core.decode import IPPROTO_TCP, LINKTYPE_NAMES
from ..core.pipeline import Pipeline
from ..core.tcpstate import TcpState
from .hints import tseq_command
from .ladder import Ladder, Note, build_ladder, render_text, utc_text
from .postmortem_figures import (
    MAX_STATE_HOSTS,
    MIN_BUSY_SOCKETS,
    Picture,
    ladder_picture,
    rtt_picture,
    states_picture,
    tseq_picture,
)
from .rtt import Aggregator, Series, series_for
from .spantable import SpanTable
from .streamgraph import tseq_graph

__all__ = [
    "MAX_STATE_HOSTS",
    "MIN_BUSY_SOCKETS",
    "Event",
    "LadderView",
    "Picture",
    "Report",
    "ReportOptions",
    "build_report",
    "endpoint",
    "group_findings",
    "severity_of",
]

_RANK = {s: i for i, s in enumerate(SEVERITIES)}
#: connections whose graph is drawn or, past max_stream_graphs, named by its command
STREAM_GRAPH_KINDS_LIMIT = 4
#: findings whose connection's time-sequence graph the report draws beside its ladder
STREAM_GRAPH_KINDS = ("retransmissions", "zero_window")


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """What goes into the report and how much of it."""

    #: user notes (``--note``): a frame, an absolute time, or an offset from the *capture's*
    #: first packet (a report spans many connections, so offsets are capture-relative here)
    notes: Sequence[Note] = ()
    #: ladders drawn (the connections that matter, most severe finding first)
    max_ladders: int = 12
    #: time-sequence graphs drawn beside the ladders of connections with findings of
    #: `STREAM_GRAPH_KINDS` (most severe first). 0 (the default) draws none and runs no
    #: `StreamCollector`: it sees every TCP segment of the capture in Python, which costs more
    #: than the rest of the pass (README's speed table); each such ladder then names the
    #: `flowlens plot --kind tseq` command instead
    max_stream_graphs: int = 0
    #: segments (and ACKs, SACK blocks) per direction a report's graph holds; past it the
    #: picture says how many were left out (a picture cannot show more bars than this anyway)
    max_stream_points: int = 20_000
    #: segment series of finished connections kept for the graphs (those with retransmissions
    #: or a zero window) before the newest are dropped
    max_kept_streams: int = 16
    #: rows of the connection table; beyond it, only connections with a finding are added
    max_table_rows: int = 5000
    #: packet logs kept during the pass before the least interesting ones are dropped
    max_kept_logs: int = 2000
    #: anomaly thresholds (None: the defaults of `flowlens anomalies`)
    thresholds: Thresholds | None = None
    #: the page title (default: "flowlens report: <capture file name>")
    title: str | None = None


@dataclass(slots=True)
class LadderView:
    """One connection that matters: its ladder as text and picture, and what points at it."""

    uid: str
    record: dict  # Connection.to_record()
    ladder: Ladder
    text: str
    picture: Picture | None
    #: indexes into Report.findings of the findings that link here
    findings: list[int] = field(default_factory=list)
    #: user notes placed on this ladder
    notes: list[str] = field(default_factory=list)
    #: why it is shown: "finding", "example" (a host-level finding's example), "note"
    why: str = "finding"
    #: its time-sequence graph (flowlens plot --kind tseq), for retransmissions and zero windows
    stream: Picture | None = None
    #: the `flowlens plot --kind tseq` command for its graph, when the graph is not drawn
    stream_hint: str | None = None


@dataclass(slots=True)
class Event:
    """One line of the timeline: the capture's ends, a finding, or a user note."""

    ts_ns: int | None  # None: a note on a frame that was not decoded (no time known)
    kind: str  # "capture", "finding", "note"
    text: str
    severity: str | None = None  # a finding's severity; None for the other kinds
    frame: int | None = None
    #: anchor id in the HTML page it links to ("finding-3", "conn-C..."), or None
    target: str | None = None


@dataclass(slots=True)
class Report:
    """Everything the renderers show, in the order they show it."""

    path: str
    title: str
    generated: str  # UTC time the report was made
    version: str
    first_ts_ns: int | None
    last_ts_ns: int | None
    #: (label, value) lines about the capture, in display order
    facts: list[tuple[str, str]]
    #: damage and skipped frames, one sentence each (empty for a clean capture)
    warnings: list[str]
    findings: list[Anomaly]
    #: per finding: uid of the ladder it links to, or None
    finding_links: list[str | None]
    connections: list[dict]  # table rows: Connection.to_record() + "finding" (worst severity)
    connections_total: int
    ladders: list[LadderView]
    #: connections that mattered but were not drawn (over max_ladders, or their log dropped)
    ladders_left_out: list[str]
    states: Picture | None
    states_hosts_left_out: list[str]
    rtt: Picture | None
    rtt_rows: list[dict]  # per server (Aggregator("server").rows())
    timeline: list[Event]
    #: reads of the capture (always 1: kept for the scripts that print it)
    passes: int
    #: notes that fell on no drawn ladder (they are still in the timeline)
    unplaced_notes: list[str]
    #: informational findings left out of the timeline (there were too many)
    timeline_hidden_info: int = 0

    def severity_counts(self) -> Counter:
        return Counter(a.severity for a in self.findings)


def severity_of(findings: Sequence[Anomaly]) -> str | None:
    """The worst severity among `findings`, or None."""
    return max((a.severity for a in findings), key=_RANK.__getitem__, default=None)


# ---------------------------------------------------------------------- the pass


class _FrameMarks(Analyzer):
    """Analyzer remembering (ts_ns, uid) of a few frames: where the user's frame notes fall."""

    def __init__(self, frames) -> None:
        super().__init__()
        self.frames = frozenset(frames)
        self.seen: dict[int, tuple[int, str]] = {}

    def on_start(self, conn: Connection, pkt):
        return True if self.frames else None  # (no frame notes: no packet to look at)

    def on_packet(self, conn: Connection, pkt, from_orig: bool) -> None:
        if pkt.frame in self.frames:
            self.seen[pkt.frame] = (pkt.ts_ns, conn.uid)


#: how much a connection's log is worth keeping (`_worth`): a per-connection finding is
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


def _worth(conn: Connection, tcp: TcpAnalyzer, lingers: dict[int, int], spans) -> int:
    """Can this connection feed a per-connection finding (STRONG), or only be named by a
    host-level one (WEAK), or neither (SPARE)? Logs go in that order when the budget is full.
    `lingers`: the close_wait and fin_wait_2 thresholds (ns) by the TcpState member's id;
    `spans`: `conn.tcp.spans()` (TCP only)."""
    if conn.icmp_errors:
        return STRONG
    if conn.proto != IPPROTO_TCP:
        return WEAK if conn.prev_uid is not None else SPARE
    if conn.conn_state != "SF" or conn.retransmissions:
        return STRONG
    # every close passes through CLOSE_WAIT and FIN_WAIT_2: only a long one is a finding
    for _side, st, start, end, _frame, _timed_out in spans:
        limit = lingers.get(id(st))
        if limit is not None and (end is None or end - start >= limit):
            return STRONG
    st = tcp.state_of(conn)
    if st is not None and any(
        d.retrans_segments or d.zero_window_spells or d.keep_alive_first_ns is not None
        for d in st.dirs
    ):
        return STRONG
    return WEAK if conn.prev_uid is not None else SPARE


def _could_graph(conn: Connection, tcp: TcpAnalyzer) -> bool:
    """Can this connection get a time-sequence graph (a retransmissions or zero_window
    finding, STREAM_GRAPH_KINDS)? Only then is its segment series kept."""
    st = tcp.state_of(conn)
    return st is not None and any(d.retrans_segments or d.zero_window_spells for d in st.dirs)


class _Gather:
    """What the first pass keeps per finished connection."""

    def __init__(
        self,
        config: Config,
        options: ReportOptions,
        collector: PacketCollector,
        tcp: TcpAnalyzer,
        rtt: RttCollector,
        streams: StreamCollector | None = None,
    ) -> None:
        self.options = options
        self.collector = collector
        self.streams = streams
        th = options.thresholds or Thresholds()
        self.lingers = {  # by identity: an Enum's hash is a Python call
            id(TcpState.CLOSE_WAIT): int(th.close_wait_s * 1e9),
            id(TcpState.FIN_WAIT_2): int(th.fin_wait_2_s * 1e9),
        }
        self.stream_logs: dict[str, StreamLog] = {}
        self.tcp = tcp
        self.rtt = rtt
        self.states = SpanTable()
        self.rtt_agg = Aggregator("server", rtt)
        self.rtt_series: dict[str, Series] = {}
        self.records: list[dict] = []
        self.late_records: dict[str, dict] = {}  # past max_table_rows, kept in case of a finding
        self.total = 0
        self.by_proto: Counter = Counter()
        self.hosts: Counter = Counter()
        #: first frame -> uid of the connections with a row or a kept log (what a finding's
        #: evidence frame can lead to: a row to mark, a ladder to link)
        self.first_frames: dict[int, str] = {}
        self.rowed: set[str] = set()  # uids of the first max_table_rows rows
        self.late_dropped = 0  # connections a finding could name, left without a row
        self.logs: OrderedDict[str, tuple[Connection, ConnLog]] = OrderedDict()
        #: uids of the kept logs per `_worth` (SPARE, WEAK, STRONG), oldest first
        self.tiers: tuple[OrderedDict[str, None], ...] = (
            OrderedDict(),
            OrderedDict(),
            OrderedDict(),
        )
        self.dropped = 0

    def add(self, conn: Connection) -> None:
        self.total += 1
        spans = conn.tcp.spans() if conn.tcp is not None else ()
        self.states.add(conn, spans)
        self.rtt_agg.add(conn)
        for label, ts_s, rtt_ms in series_for(conn, "server", self.rtt):
            s = self.rtt_series.get(label)
            if s is None:
                s = self.rtt_series[label] = Series(label)
            s.ts_s.extend(ts_s)
            s.rtt_ms.extend(rtt_ms)
        self.by_proto[conn.proto_name] += 1
        self.hosts[conn.orig_h] += 1  # addresses as bytes: spelt once, in _facts
        self.hosts[conn.resp_h] += 1
        worth = _worth(conn, self.tcp, self.lingers, spans)
        if len(self.records) < self.options.max_table_rows:
            self.records.append(conn.to_record())
            self.rowed.add(conn.uid)
            self.first_frames[conn.first_frame] = conn.uid
        elif worth == STRONG or (worth == WEAK and len(self.late_records) < MAX_LATE_WEAK_ROWS):
            # past the table's rows, kept in case a finding names it (a host-level finding's
            # uids are its first ones: the reused 5-tuples' rows stop at MAX_LATE_WEAK_ROWS)
            if len(self.late_records) < MAX_LATE_ROWS:
                self.late_records[conn.uid] = conn.to_record()
                self.first_frames[conn.first_frame] = conn.uid
            else:
                self.late_dropped += 1
        if self.streams is not None and len(self.stream_logs) < self.options.max_kept_streams:
            series = self.streams.log_of(conn)
            if series is not None and _could_graph(conn, self.tcp):
                self.stream_logs[conn.uid] = series
        log = self.collector.log_of(conn)
        if log is None:
            return
        self.logs[conn.uid] = (conn, log)
        self.first_frames[conn.first_frame] = conn.uid
        self.tiers[worth][conn.uid] = None
        while len(self.logs) > self.options.max_kept_logs:
            self.dropped += 1
            # SPARE and WEAK first, the larger of them (both can hold a host-level finding's
            # example, which is among its first connections: the newest goes), STRONG last
            spare, weak, strong = self.tiers
            tier = max(spare, weak, key=len) if spare or weak else strong
            uid, _ = tier.popitem(last=True)
            gone, _log = self.logs.pop(uid)
            if uid not in self.rowed and uid not in self.late_records:
                self.first_frames.pop(gone.first_frame, None)


def _collector(
    options: ReportOptions, tcp: TcpAnalyzer, first_ns: Callable[[], int | None], wants=None
) -> PacketCollector:
    """The ladder's collapsed packet log, its findings from the shared TCP analyzer."""
    pins = [n.frame for n in options.notes if n.frame is not None]
    # a time note is at an absolute time or at an offset from the capture's first packet
    at_ns = [n.ts_ns for n in options.notes if n.frame is None and n.ts_ns is not None]
    offsets_ns = [n.offset_ns for n in options.notes if n.frame is None and n.offset_ns is not None]

    def breaks(conn: Connection) -> list[int]:  # (PacketCollector sorts them)
        base = first_ns() or conn.first_ts_ns
        return at_ns + [base + offset for offset in offsets_ns]

    return PacketCollector(
        wants, full=False, pinned=pins, breaks=breaks if at_ns or offsets_ns else None, tcp=tcp
    )


def build_report(
    path: str, config: Config | None = None, options: ReportOptions | None = None, progress=None
) -> Report:
    """Read `path` (a file, or "-" for standard input) and gather the report's content.

    `progress` is a `ProgressFn` (see flowlens.core.pipeline) or None. Raises CaptureError for an
    unreadable capture; a readable one without packets (all of it damaged) is a report of its
    facts and warnings, with no times (`first_ts_ns` and `last_ts_ns` None).
    """
    config = config or Config()
    options = options or ReportOptions()
    tcp = TcpAnalyzer(keep_frames=True)  # shared: the findings and the ladders' notes
    detector = AnomalyDetector(options.thresholds)
    rtt = RttCollector()
    marks = _FrameMarks(n.frame for n in options.notes if n.frame is not None)

    def first_ns() -> int | None:  # asked on a connection's first packet, once `pipe` runs
        return pipe.stats.first_ts_ns

    collector = _collector(options, tcp, first_ns)
    analyzers: list[Analyzer] = [tcp, detector, rtt, collector, marks]
    streams = None
    if options.max_stream_graphs > 0:
        streams = StreamCollector(
            lambda c: c.proto == IPPROTO_TCP, tcp=tcp, max_points=options.max_stream_points
        )
        analyzers.append(streams)
    gather = _Gather(config, options, collector, tcp, rtt, streams)
    # (the detector and the collectors require `tcp`: the pipeline runs it before them)
    pipe = Pipeline(path, config, analyzers=analyzers, progress=progress)
    try:
        for conn in pipe:
            gather.add(conn)
    finally:
        if progress is not None and hasattr(progress, "close"):
            progress.close()
    stats = pipe.stats
    first, last = stats.first_ts_ns, stats.last_ts_ns
    # no packets (an empty or wholly damaged capture) is a report too: its facts and the damage
    findings = group_findings(cast("list[Anomaly]", pipe.results[detector]))  # its finish()
    notes = [n if first is None else _absolute(n, first) for n in options.notes]

    # which connections matter: the notes' connections, then each finding's (or an example),
    # one per kind of finding before a second of any kind (23 keep-alives must not crowd out
    # the one refused connection)
    links = [_link_of(a, gather) for a in findings]
    note_uids = [marks.seen[n.frame][1] for n in notes if n.frame in marks.seen]
    by_kind: dict[tuple[str, str], list[str]] = {}
    for a, uid in zip(findings, links):
        if uid is not None:
            by_kind.setdefault((a.severity, a.kind), []).append(uid)
    chosen: list[str] = []
    for uid in note_uids + _round_robin(list(by_kind.values())):
        if uid not in chosen:
            chosen.append(uid)
    left_out = chosen[options.max_ladders :]
    chosen = chosen[: options.max_ladders]
    # a chosen connection whose log the budget dropped (a huge capture) is named, not drawn
    missing = [u for u in chosen if u not in gather.logs]
    left_out = missing + left_out
    chosen = [u for u in chosen if u not in missing]
    graphed = _stream_uids(
        findings, chosen, max(STREAM_GRAPH_KINDS_LIMIT, options.max_stream_graphs)
    )
    drawn_graphs = [u for u in graphed if u in gather.stream_logs][: options.max_stream_graphs]

    # shown in the order of their first finding (the most severe first), notes' connections after
    first_link: dict[str | None, int] = {}
    for i, uid in enumerate(links):
        first_link.setdefault(uid, i)
    chosen.sort(key=lambda u: first_link.get(u, len(links)))
    hints = {u: tseq_command(path, u) for u in graphed if u not in drawn_graphs}
    graphs = {u: gather.stream_logs[u] for u in drawn_graphs}
    ladders = _ladders(chosen, gather, findings, links, notes, graphs, hints)
    drawn = {v.uid for v in ladders}
    links = [u if u in drawn else None for u in links]
    placed = {t for v in ladders for t in v.notes}
    rows = _table_rows(gather, findings, links)
    states_pic, states_left = (
        states_picture(gather.states, first, last)
        if first is not None and last is not None
        else (None, [])
    )
    rtt_pic = rtt_picture(list(gather.rtt_series.values()))

    warnings = list(pipe.summary_lines()) + [f"Note: {line}" for line in pipe.notes()]
    name = os.path.basename(path) if path != "-" else "standard input"
    infos = sum(a.severity == "info" for a in findings)
    return Report(
        path=path,
        title=options.title or f"flowlens report: {name}",
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        version=_version(),
        first_ts_ns=first,
        last_ts_ns=last,
        facts=_facts(path, pipe, gather),
        warnings=warnings,
        findings=findings,
        finding_links=links,
        connections=rows,
        connections_total=gather.total,
        ladders=ladders,
        ladders_left_out=left_out,
        states=states_pic,
        states_hosts_left_out=states_left,
        rtt=rtt_pic,
        rtt_rows=gather.rtt_agg.rows(),
        timeline=(
            _timeline(findings, links, notes, marks, ladders, first, last)
            if first is not None and last is not None
            else []
        ),
        passes=1,
        unplaced_notes=[n.text for n in notes if n.text not in placed],
        timeline_hidden_info=infos if infos > MAX_TIMELINE_INFO else 0,
    )


def group_findings(findings: Sequence[Anomaly]) -> list[Anomaly]:
    """Most severe first; within a severity, the findings of one kind together (kinds in the
    order of their first finding), each kind's in time order. The detector's order is by
    severity and time, which scatters a kind with many findings among the others."""
    first_of: dict[tuple[str, str], int] = {}
    for i, a in enumerate(findings):
        first_of.setdefault((a.severity, a.kind), i)
    order = sorted(
        range(len(findings)),
        key=lambda i: (
            -_RANK[findings[i].severity],
            first_of[(findings[i].severity, findings[i].kind)],
            i,
        ),
    )
    return [findings[i] for i in order]


def _round_robin(groups: list[list[str]]) -> list[str]:
    """The first of each group, then the second of each ..."""
    out: list[str] = []
    depth = 0
    while any(len(g) > depth for g in groups):
        out.extend(g[depth] for g in groups if len(g) > depth)
        depth += 1
    return out


def _absolute(note: Note, first_ns: int) -> Note:
    """A capture-relative offset note becomes an absolute-time note."""
    if note.offset_ns is not None:
        return Note(note.text, ts_ns=first_ns + note.offset_ns)
    return note


def _link_of(a: Anomaly, gather: _Gather) -> str | None:
    """The connection a finding's ladder link goes to: its own, or an example of a host-level
    finding (the first uid it lists, else the connection of its first evidence frame)."""
    if a.uid:
        return a.uid
    uids = a.details.get("uids") if isinstance(a.details, dict) else None
    if uids:
        return uids[0]
    for frame in a.evidence:
        uid = gather.first_frames.get(frame)
        if uid is not None:
            return uid
    for frame in a.evidence:
        for uid, (_conn, log) in gather.logs.items():
            if any(r.frame == frame for r in log.rows()):
                return uid
    return None


def _stream_uids(findings: Sequence[Anomaly], chosen: Sequence[str], limit: int) -> list[str]:
    """The chosen connections whose time-sequence graph is drawn: those with a finding of
    STREAM_GRAPH_KINDS, in the findings' order (most severe first), at most `limit`."""
    drawn = set(chosen)
    out: list[str] = []
    for a in findings:
        if len(out) >= limit:
            break
        if a.kind in STREAM_GRAPH_KINDS and a.uid in drawn and a.uid not in out:
            out.append(a.uid)
    return out


def _ladders(chosen, gather, findings, links, notes, graphs, hints) -> list[LadderView]:
    views = []
    for uid in chosen:
        conn, log = gather.logs[uid]
        lad = build_ladder(conn, log, notes)
        mine = [i for i, u in enumerate(links) if u == uid]
        direct = any(findings[i].uid == uid for i in mine)
        why = "finding" if direct else "example" if mine else "note"
        placed = [t for s in lad.steps for t in s.notes] + [
            d.split(": ", 1)[1] for s in lad.steps if s.kind == "collapsed" for d in s.detail
            if d.startswith("frame ") and ": " in d
        ]  # fmt: skip
        series = graphs.get(uid)
        stream = tseq_picture(tseq_graph(series)) if series is not None else None
        views.append(
            LadderView(
                uid, conn.to_record(), lad, render_text(lad), ladder_picture(lad),
                mine, placed, why, stream, hints.get(uid),
            )
        )  # fmt: skip
    return views


def _table_rows(gather: _Gather, findings: list[Anomaly], links) -> list[dict]:
    worst: dict[str, str] = {}

    def mark(uid, sev):
        if uid and (uid not in worst or _RANK[sev] > _RANK[worst[uid]]):
            worst[uid] = sev

    for a, _link in zip(findings, links):
        mark(a.uid, a.severity)
        for uid in (a.details.get("uids") or []) if isinstance(a.details, dict) else []:
            mark(uid, a.severity)
        for frame in a.evidence:
            mark(gather.first_frames.get(frame), a.severity)
    rows = list(gather.records)
    rows.extend(r for uid, r in gather.late_records.items() if uid in worst)
    for r in rows:
        r["finding"] = worst.get(r["uid"])
    return rows


# ---------------------------------------------------------------------- facts and timeline


def _si(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min ({seconds:.0f} s)"
    return f"{seconds / 3600:.1f} h ({seconds:.0f} s)"


def _facts(path: str, pipe: Pipeline, gather: _Gather) -> list[tuple[str, str]]:
    stats = pipe.stats
    out = [("file", path if path != "-" else "standard input")]
    if path != "-":
        try:
            out.append(("file size", _si(os.path.getsize(path))))
        except OSError:
            pass
    out.append(("container", stats.container or "-"))
    out.append(("packets", f"{stats.frames:,} frames, {_si(stats.bytes)} captured"))
    out.append(("first packet", utc_text(stats.first_ts_ns)))
    out.append(("last packet", utc_text(stats.last_ts_ns)))
    out.append(("duration", _duration(stats.duration_ns / 1e9)))
    links = ", ".join(
        f"{LINKTYPE_NAMES.get(lt, str(lt))} ({n:,} frames)"
        for lt, n in sorted(stats.linktypes.items())
    )
    out.append(("link types", links or "-"))
    protos = ", ".join(f"{n:,} {p.upper()}" for p, n in gather.by_proto.most_common())
    out.append(("connections", f"{gather.total:,}" + (f" ({protos})" if protos else "")))
    top = ", ".join(f"{format_addr(h)} ({n:,})" for h, n in gather.hosts.most_common(8))
    more = len(gather.hosts) - 8
    out.append(
        ("hosts", f"{len(gather.hosts):,}: {top}" + (f", and {more} more" if more > 0 else ""))
    )
    skipped = sum(pipe.skipped.values())
    if skipped:
        why = ", ".join(f"{n:,} {reason}" for reason, n in pipe.skipped.most_common())
        out.append(("skipped frames", f"{skipped:,} undecodable ({why})"))
    else:
        out.append(("skipped frames", "none"))
    non_ip = sum(pipe.non_ip.values())
    if non_ip:
        kinds = ", ".join(f"{n:,} {k}" for k, n in pipe.non_ip.most_common(5))
        out.append(("not IP", f"{non_ip:,} frames ({kinds})"))
    out.append(("open connections at peak", f"{pipe.table.open_peak:,}"))
    if gather.late_dropped:
        out.append(
            ("connection rows", f"the first {gather.options.max_table_rows:,}, and "
             f"{len(gather.late_records):,} more that findings could name; "
             f"{gather.late_dropped:,} more such connections have no row")
        )  # fmt: skip
    return out


#: informational findings listed in the timeline; past this many, only their count
MAX_TIMELINE_INFO = 10


def _timeline(findings, links, notes, marks: _FrameMarks, ladders, first, last) -> list[Event]:
    events = [Event(first, "capture", "first packet of the capture")]
    infos = sum(a.severity == "info" for a in findings)
    for i, (a, _link) in enumerate(zip(findings, links), 1):
        if a.severity == "info" and infos > MAX_TIMELINE_INFO:
            continue
        events.append(
            Event(
                round(a.ts * 1e9), "finding", a.summary, a.severity,
                a.evidence[0] if a.evidence else None, f"finding-{i}",
            )
        )  # fmt: skip
    on_ladder = {t: v.uid for v in ladders for t in v.notes}
    for n in notes:
        target = f"conn-{on_ladder[n.text]}" if n.text in on_ladder else None
        if n.frame is not None:
            ts = marks.seen.get(n.frame, (None, None))[0]
            events.append(Event(ts, "note", n.text, frame=n.frame, target=target))
        else:
            events.append(Event(n.ts_ns, "note", n.text, target=target))
    events.append(Event(last, "capture", "last packet of the capture"))
    # by time; the capture's first line first and its last line last; notes without a time
    # (their frame was not decoded) at the end
    events[1:-1] = sorted(
        events[1:-1], key=lambda e: (e.ts_ns is None, e.ts_ns or 0, e.kind != "note")
    )
    return events


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("flowlens")
    except PackageNotFoundError:  # pragma: no cover - not installed as a distribution
        from .. import __version__

        return __version__


def endpoint(record: dict, side: str) -> str:
    """`host:port` of a record's orig or resp, IPv6 in brackets (no port for ICMP)."""
    host, port = record[f"id.{side}_h"], record[f"id.{side}_p"]
    if record.get("proto") == "icmp":
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

"""The postmortem report's content: one pass over a capture gathers everything the HTML and
Markdown renderers (`reports/html.py`, `reports/markdown.py`) lay out.

`build_report` reads the capture once, never twice, in one pipeline or in the hash shards of
`report --jobs`/`--scheduler` (its `run`), each pipeline with every analyzer the report
needs: the TCP analyzer (``keep_frames=True``; the anomaly detector reads its results, and
the ladders show its per-frame verdicts without a second analyzer), the RTT collector, a
`PacketCollector` in collapsed mode, a small analyzer that notes where the user's
``--note FRAME=...`` frames fall, and, when time-sequence graphs are asked for
(`ReportOptions.max_stream_graphs`), a `StreamCollector`. Each finished connection becomes its
part where it was read (reports/gather.py: its row, spans, RTT samples, part of the findings),
and its collapsed log stays there within a budget (`ReportOptions.max_kept_logs`); when the
budget overflows, logs of connections that cannot feed a per-connection finding go first.
Which connections *matter* (the ones the findings name, and the ones the notes point at) is
known only at the end: their ladders are then drawn where their logs are, and a chosen
connection whose log was dropped anyway (a huge capture) is named among the ladders left out.
Segment series are kept only for finished connections with retransmissions or a zero window
(the graphs' kinds), at most `ReportOptions.max_kept_streams`. Memory is then the open
connections' state plus those kept logs and series. Standard input works like a file (in one
process).

Everything here is data (records, `Ladder`s, SVG pictures); the renderers only lay it out.
"""

from __future__ import annotations

import datetime as _dt
import gc
import os
from array import array
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..analyzers.anomalies.detector import SEVERITIES, Anomaly, AnomalyDetector, Thresholds
from ..analyzers.anomalies.holds import OpenStarts
from ..analyzers.packetlog import PacketCollector
from ..analyzers.rtt import RttCollector
from ..analyzers.tcpanalysis import TcpAnalyzer
from ..core.analyzer import Analyzer
from ..core.capture import open_capture
from ..core.connections import Config, Connection
from ..core.decode import IPPROTO_TCP
from .capture_facts import fact_lines, merge_facts, run_facts
from .gather import FrameMarks, ReportGather, ReportShard, exit_key, local_run, row_record
from .hints import tseq_command
from .ladder import Ladder, Note
from .postmortem_figures import (
    MAX_STATE_HOSTS,
    MIN_BUSY_SOCKETS,
    Picture,
    rtt_picture,
    states_picture,
)

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
    path: str,
    config: Config | None = None,
    options: ReportOptions | None = None,
    progress=None,
    run: Callable | None = None,
) -> Report:
    """Read `path` (a file, or "-" for standard input) and gather the report's content.

    `progress` is a `ProgressFn` (see flowlens.core.pipeline) or None. `run`: how the capture
    is read, `run(make_analyzers, work, frames=True, finish=..., answer=...)` giving a stream
    as the commands' `ConnectionStream` (one process, `--jobs` shards or a Dask cluster's);
    None reads it here, in one pipeline (with `progress`). Raises CaptureError for an
    unreadable capture; a readable one without packets (all of it damaged) is a report of its
    facts and warnings, with no times (`first_ts_ns` and `last_ts_ns` None).
    """
    config = config or Config()
    options = options or ReportOptions()
    detector = AnomalyDetector(options.thresholds)  # its groups: here, from the parts
    marked = [n.frame for n in options.notes if n.frame is not None]
    # the capture's first packet (notes at an offset from it): read here for a file (a shard
    # cannot ask the others), from the one pipeline for standard input
    start = _CaptureStart(path) if path != "-" and os.path.isfile(path) else None
    piped: list = []  # [the stream], for standard input's start (only a file is sharded)
    jobs: list[int] = []  # [the run's pipelines], once it is made

    def first_ns() -> int | None:  # asked on a connection's first packet, once the run reads
        return start() if start is not None else piped[0].stats.first_ts_ns

    def make_analyzers() -> list[Analyzer]:
        # fresh for each pipeline: the one process's, or each shard's
        tcp = TcpAnalyzer(keep_frames=True)  # shared: the findings and the ladders' notes
        open_starts = OpenStarts()  # (the watermarks of the detector's TIME_WAIT holds)
        detector.bind((tcp, open_starts))  # (in a shard: the shard's copy of the detector)
        rtt = RttCollector()
        marks = FrameMarks(marked)
        collector = _collector(options, tcp, first_ns)
        analyzers: list[Analyzer] = [tcp, open_starts, rtt, collector]
        if marked:  # (without frame notes it would only be asked on every connection's start)
            analyzers.append(marks)
        streams = None
        if options.max_stream_graphs > 0:
            from ..analyzers.streamlog import StreamCollector  # (only with --stream-graphs)

            streams = StreamCollector(
                lambda c: c.proto == IPPROTO_TCP, tcp=tcp, max_points=options.max_stream_points
            )
            analyzers.append(streams)
        whole = not jobs or jobs[0] == 1  # (a one-process stream makes its pipeline at once)
        analyzers.append(ReportShard(options, tcp, rtt, detector, collector, marks, streams, whole))
        return analyzers

    def work(conn: Connection, analyzers: list) -> tuple:
        return analyzers[-1].part(conn)

    def answer(question: tuple, analyzers: list):
        return analyzers[-1].answer(question)

    make_run = run or local_run(path, config, progress)
    stream = make_run(make_analyzers, work, frames=True, finish=run_facts, answer=answer)
    jobs.append(stream.jobs)
    detector.from_shards(*stream.split)  # (the parts' watermarks: each its shard's)
    if start is None:
        piped.append(stream)
    # as in Pipeline: the report's parts, rows and pictures make hardly any reference cycles,
    # and the collector's passes over the kept logs and rows after the pass (the pipeline
    # switches it off only while it reads) cost about a twentieth of the report
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _assemble(path, options, detector, stream)
    finally:
        if gc_was_enabled:
            gc.enable()
        stream.close()


class _CaptureStart:
    """The timestamp of a capture file's first frame, read once (picklable: a Dask shard
    reads it on its worker)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.ts_ns: int | None = None
        self.read = False

    def __call__(self) -> int | None:
        if not self.read:
            self.read = True
            cap = open_capture(self.path)
            try:
                for ref in cap.frames():
                    self.ts_ns = ref.ts_ns
                    break
            finally:
                cap.close()
        return self.ts_ns


def _assemble(path: str, options: ReportOptions, detector: AnomalyDetector, stream) -> Report:
    gather = ReportGather(options, detector)
    sharded = stream.jobs > 1
    opened, ended = array("q"), array("q")  # (a sharded run's open connections, for the peak)
    for frame, part in stream:
        gather.add(part)
        if sharded:
            opened.append(part[1])
            ended.append(exit_key(frame, part[-1]))
    run = merge_facts(stream.finished, stream.facts, opened, ended)
    del opened, ended
    first, last = run["first_ts_ns"], run["last_ts_ns"]
    # no packets (an empty or wholly damaged capture) is a report too: its facts and the damage
    findings = group_findings(detector.finish(last))
    notes = [n if first is None else _absolute(n, first) for n in options.notes]
    marks: dict[int, tuple[int, str]] = {}
    if any(n.frame is not None for n in options.notes):
        for seen in stream.ask(("marks",)):
            marks.update(seen)

    # which connections matter: the notes' connections, then each finding's (or an example),
    # one per kind of finding before a second of any kind (23 keep-alives must not crowd out
    # the one refused connection)
    links = _links(findings, gather, stream)
    note_uids = [marks[n.frame][1] for n in notes if n.frame in marks]
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
    missing = [u for u in chosen if u not in gather.logs.kept]
    left_out = missing + left_out
    chosen = [u for u in chosen if u not in missing]
    graphed = _stream_uids(
        findings, chosen, max(STREAM_GRAPH_KINDS_LIMIT, options.max_stream_graphs)
    )
    drawn_graphs = [u for u in graphed if u in gather.stream_uids][: options.max_stream_graphs]

    # shown in the order of their first finding (the most severe first), notes' connections after
    first_link: dict[str | None, int] = {}
    for i, uid in enumerate(links):
        first_link.setdefault(uid, i)
    chosen.sort(key=lambda u: first_link.get(u, len(links)))
    hints = {u: tseq_command(path, u) for u in graphed if u not in drawn_graphs}
    drawn_ladders: dict[str, tuple] = {}
    if chosen:
        for got in stream.ask(("ladders", chosen, notes, set(drawn_graphs))):
            drawn_ladders.update(got)
    stream.ask(("release",))  # (no more questions about the kept logs)
    ladders = _ladders(chosen, drawn_ladders, findings, links, hints)
    drawn = {v.uid for v in ladders}
    links = [u if u in drawn else None for u in links]
    placed = {t for v in ladders for t in v.notes}
    rows = _table_rows(gather, findings, links)
    states_pic, states_left = (
        states_picture(gather.states, first, last)
        if first is not None and last is not None
        else (None, [])
    )
    rtt_pic = rtt_picture(gather.rtt_lines())

    warnings = list(run["damage"]) + [f"Note: {line}" for line in run["notes"]]
    name = os.path.basename(path) if path != "-" else "standard input"
    infos = sum(a.severity == "info" for a in findings)
    return Report(
        path=path,
        title=options.title or f"flowlens report: {name}",
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        version=_version(),
        first_ts_ns=first,
        last_ts_ns=last,
        facts=fact_lines(path, run, gather),
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


def _links(findings: Sequence[Anomaly], gather: ReportGather, stream) -> list[str | None]:
    """The connection each finding's ladder link goes to: its own, or an example of a
    host-level finding (the first uid it lists, else the connection of its first evidence
    frame: one with a row or a kept log, else the oldest kept log that holds the frame)."""
    links: list[str | None] = []
    unplaced: list[int] = []
    for i, a in enumerate(findings):
        uid = a.uid
        if not uid:
            uids = a.details.get("uids") if isinstance(a.details, dict) else None
            if uids:
                uid = uids[0]
            else:
                uid = next((gather.first_frames[f] for f in a.evidence
                            if f in gather.first_frames), None)  # fmt: skip
                if uid is None and a.evidence:
                    unplaced.append(i)
        links.append(uid)
    if unplaced and gather.logs.kept:
        frames = {f for i in unplaced for f in findings[i].evidence}
        holders: dict[int, set[str]] = {}
        for hits in stream.ask(("frames", frames, set(gather.logs.kept))):
            for frame, uids in hits.items():
                holders.setdefault(frame, set()).update(uids)
        order = list(gather.logs.kept)  # oldest first, as one process kept them
        for i in unplaced:
            for frame in findings[i].evidence:
                held = holders.get(frame)
                uid = next((u for u in order if u in held), None) if held else None
                if uid is not None:
                    links[i] = uid
                    break
    return links


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


def _ladders(chosen, drawn: dict[str, tuple], findings, links, hints) -> list[LadderView]:
    """The chosen connections' LadderViews, from the ladders drawn where their logs are."""
    views = []
    for uid in chosen:
        record, lad, text, picture, placed, stream = drawn[uid]
        mine = [i for i, u in enumerate(links) if u == uid]
        direct = any(findings[i].uid == uid for i in mine)
        why = "finding" if direct else "example" if mine else "note"
        views.append(
            LadderView(
                uid, record, lad, text, picture, mine, placed, why, stream, hints.get(uid),
            )
        )  # fmt: skip
    return views


def _table_rows(gather: ReportGather, findings: list[Anomaly], links) -> list[dict]:
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
    rows = [row_record(r) for r in gather.records]
    rows.extend(row_record(r) for uid, r in gather.late_records.items() if uid in worst)
    for r in rows:
        r["finding"] = worst.get(r["uid"])
    return rows


# ---------------------------------------------------------------------- the timeline


#: informational findings listed in the timeline; past this many, only their count
MAX_TIMELINE_INFO = 10


def _timeline(findings, links, notes, marks: dict, ladders, first, last) -> list[Event]:
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
            ts = marks.get(n.frame, (None, None))[0]
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

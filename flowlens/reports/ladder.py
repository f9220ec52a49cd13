"""Ladder (sequence) diagrams of connections: the steps, and the text for terminals and postmortems.

`build_ladder` turns a connection and its `ConnLog` into a `Ladder`: a list of `Step`s (one per
arrow, collapsed data run, state change without a packet, or user note) that both renderers
draw, so the text and the picture always hold the same content. The text is 100 columns wide:

    frame | time since the connection's first packet | state the originator enters | its line |
    arrow with tcpdump-style flags, relative seq/ack, length, window when it matters | the
    responder's line | state the responder enters

with findings (``!`` warns, ``*`` describes) and notes (``NOTE:``) on lines under their arrow.
The picture is drawn by `flowlens.reports.ladder_plot` from the same steps.
"""

from __future__ import annotations

import datetime as _dt
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..analyzers.packetlog import (
    CollapsedRun,
    ConnLog,
    Finding,
    PacketRow,
    StateChange,
    time_wait_until,
)
from ..core.connections import Connection, format_addr
from ..core.decode import IPPROTO_TCP, IPPROTO_UDP, TH_ACK, TH_RST, TH_SYN, flags_text

__all__ = [
    "INFO_KINDS",
    "WIDTH",
    "Ladder",
    "Note",
    "Step",
    "build_ladder",
    "endpoint_label",
    "render_text",
    "utc_text",
]

WIDTH = 100
_FRAME_W, _TIME_W, _STATE_W = 6, 10, 12
_LEFT = _FRAME_W + 2 + _TIME_W + 2 + _STATE_W + 1  # column of the originator's line (33)
_AREA = WIDTH - _LEFT - 2 - 1 - _STATE_W  # between the two lines (52)
_RIGHT = _LEFT + 1 + _AREA  # column of the responder's line (86)

_ICMP_NAMES = {
    (4, 0): "echo reply", (4, 8): "echo request", (4, 3): "unreachable", (4, 11): "time exceeded",
    (6, 129): "echo reply", (6, 128): "echo request", (6, 1): "unreachable", (6, 3): "time exceeded",
}  # fmt: skip


@dataclass(slots=True, frozen=True)
class Note:
    """A user's note (``--note``): at a frame, at an absolute time, or at an offset from the
    connection's first packet (the ladder's time column). Exactly one of the three is set."""

    text: str
    frame: int | None = None
    ts_ns: int | None = None
    offset_ns: int | None = None

    def when(self, conn: Connection) -> int | None:
        """Absolute ns for a time note on `conn`, None for a frame note."""
        if self.ts_ns is not None:
            return self.ts_ns
        if self.offset_ns is not None:
            return conn.first_ts_ns + self.offset_ns
        return None


#: a fact about each endpoint, (originator's, responder's): a state name or None
StatePair = tuple[str | None, str | None]


def _with(pair: StatePair, side: int, value: str | None) -> StatePair:
    """`pair` with `side`'s (0 orig, 1 resp) item replaced by `value`."""
    return (value, pair[1]) if side == 0 else (pair[0], value)


@dataclass(slots=True)
class Step:
    """One row of the diagram."""

    #: "packet", "collapsed" (a folded data run), "state" (a change no packet caused), "note"
    kind: str
    ts_ns: int
    offset_s: float  # seconds since the connection's first packet
    frame: int | None = None
    from_orig: bool | None = None  # packets: direction of the arrow
    label: str = ""  # packets: flags and numbers; collapsed: the summary line
    flags: str = ""  # packets: tcpdump flags without brackets ("S.", "P.")
    #: state each endpoint enters here, shown beside its line (None: no change)
    entered: StatePair = (None, None)
    #: state of each endpoint after this row (colours the lifelines in the figure)
    after: StatePair = (None, None)
    findings: list[Finding] = field(default_factory=list)  # shown under the arrow
    notes: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)  # collapsed: the lines under the summary
    last_frame: int | None = None  # collapsed: last frame folded in
    end_offset_s: float | None = None  # collapsed: time of its last packet


@dataclass(slots=True)
class Ladder:
    """Everything drawn for one connection."""

    uid: str
    title: str  # uid, protocol, endpoints, service
    header: list[str]  # facts under the title
    orig_label: str  # address:port of the originator
    resp_label: str
    steps: list[Step]
    footer: list[str]
    unused_notes: list[Note] = field(default_factory=list)  # notes that fell on no step

    @property
    def arrows(self) -> list[Step]:
        return [s for s in self.steps if s.kind == "packet"]


def endpoint_label(addr: bytes, port: int) -> str:
    """`192.0.2.1:80`, `[2001:db8::1]:80`."""
    text = format_addr(addr)
    return f"[{text}]:{port}" if len(addr) == 16 else f"{text}:{port}"


def _si(n: int) -> str:
    """Bytes with SI units (1.1 MB): what a person reads at a glance."""
    if n < 1000:
        return f"{n} B"
    scaled = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        scaled /= 1000.0
        if scaled < 1000 or unit == "TB":
            return f"{scaled:.1f} {unit}"
    return f"{n} B"  # pragma: no cover


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _packet_label(row: PacketRow, log: ConnLog, absolute: bool) -> tuple[str, str]:
    """(flags, label) for an arrow, tcpdump style: `[P.] seq 1:19 ack 1 len 18`."""
    if row.proto == IPPROTO_UDP:
        return "UDP", f"UDP len {row.plen}"
    if row.proto != IPPROTO_TCP:
        family = 4 if row.proto == 1 else 6
        itype, code = row.icmp or (0, 0)
        name = _ICMP_NAMES.get((family, itype), f"type {itype} code {code}")
        return "ICMP", f"ICMP {name}" + (f" len {row.plen}" if row.plen else "")
    flags = row.flags
    ftext = flags_text(flags)
    seq = row.seq if absolute else log.rel_seq(row)
    parts = [f"[{ftext}]"]
    if row.plen:
        parts.append(f"seq {seq}:{(seq + row.plen) & 0xFFFFFFFF}")
    else:
        parts.append(f"seq {seq}")
    if flags & TH_ACK:
        parts.append(f"ack {row.ack if absolute else log.rel_ack(row)}")
    if row.plen:
        parts.append(f"len {row.plen}")
    window_matters = (
        bool(flags & TH_SYN)
        or (row.win == 0 and not flags & TH_RST)
        or any("window" in f.kind for f in row.findings)
    )
    if window_matters:
        parts.append(f"win {row.win}")
    if row.mss is not None:
        parts.append(f"mss {row.mss}")
    if row.wscale is not None:
        parts.append(f"ws {row.wscale}")
    return ftext, " ".join(parts)


def _collapsed_lines(run: CollapsedRun) -> tuple[str, list[str]]:
    span = (run.last_ts_ns - run.first_ts_ns) / 1e9
    summary = f"... {_plural(run.count, 'segment')} over {span:.3f} s (frames {run.first_frame}-{run.last_frame}) ..."
    detail = []
    for side, arrow in ((0, "orig -> resp:"), (1, "resp -> orig:")):
        if run.pkts[side]:
            size = _si(run.payload[side]) if run.payload[side] else "no payload (ACKs)"
            detail.append(f"{arrow} {_plural(run.pkts[side], 'segment')}, {size}")
    if run.findings:
        names = {
            "dup_ack": "dup ACK",
            "keep_alive_ack": "keep-alive ACK",
            "keep_alive": "keep-alive",
        }
        folded = ", ".join(
            _plural(n, names.get(kind, kind.replace("_", " ")))
            for kind, n in sorted(run.findings.items())
        )
        detail.append(f"{folded} inside")
    return summary, detail


def utc_text(ts_ns: int | None) -> str:
    """`2023-11-14 22:13:20.000000 UTC`; epoch seconds when the date is out of range (a
    damaged timestamp is data, not a crash); `-` for no time (a capture without packets)."""
    if ts_ns is None:
        return "-"
    try:
        t = _dt.datetime.fromtimestamp(ts_ns // 1_000_000_000, _dt.UTC)
    except (ValueError, OverflowError, OSError):
        return f"{ts_ns / 1e9:.6f} (epoch seconds)"
    return t.strftime("%Y-%m-%d %H:%M:%S") + f".{ts_ns % 1_000_000_000 // 1000:06d} UTC"


def build_ladder(
    conn: Connection, log: ConnLog, notes: Sequence[Note] = (), absolute: bool = False
) -> Ladder:
    """The diagram of one connection from its kept packets; `notes` that concern it are placed."""
    t0 = conn.first_ts_ns
    off = lambda ts: (ts - t0) / 1e9
    frame_notes: dict[int, list[str]] = {}
    time_notes: list[tuple[int, Note]] = []
    for note in notes:
        if note.frame is not None:
            frame_notes.setdefault(note.frame, []).append(note.text)
        else:
            ts = note.when(conn)
            assert ts is not None  # a note without a frame has a time (see Note)
            time_notes.append((ts, note))
    time_notes.sort(key=lambda x: x[0])
    placed_frames: set[int] = set()

    steps: list[Step] = []
    state: StatePair = (None, None) if conn.tcp is None else ("CLOSED", "CLOSED")

    def flush_time_notes(before_ns: int | None) -> None:
        while time_notes and (before_ns is None or time_notes[0][0] <= before_ns):
            ts, note = time_notes.pop(0)
            if before_ns is None and ts > _last_ts(conn):
                # past the connection: keep it only if it is within the record's life
                end = conn.end_ts_ns if conn.end_ts_ns is not None else conn.last_ts_ns
                if ts > max(end, _tw_end(conn)):
                    unused.append(note)
                    continue
            if ts < t0:
                unused.append(note)
                continue
            steps.append(Step("note", ts, off(ts), notes=[note.text], after=state))

    unused: list[Note] = []
    for item in log.items:
        if isinstance(item, PacketRow):
            flush_time_notes(item.ts_ns - 1) if time_notes else None
            ftext, label = _packet_label(item, log, absolute)
            entered: StatePair = (None, None)
            for side, st in item.entered:
                entered = _with(entered, side, st)
            if item.orig_state is not None:
                state = (item.orig_state, item.resp_state)
            mine = frame_notes.get(item.frame, [])
            if mine:
                placed_frames.add(item.frame)
            steps.append(
                Step(
                    "packet", item.ts_ns, off(item.ts_ns), item.frame, item.from_orig, label, ftext,
                    entered, state, list(item.findings), list(mine),
                )
            )  # fmt: skip
        elif isinstance(item, CollapsedRun):
            flush_time_notes(item.first_ts_ns - 1) if time_notes else None
            summary, detail = _collapsed_lines(item)
            for frame, texts in frame_notes.items():
                if item.first_frame <= frame <= item.last_frame and frame not in placed_frames:
                    placed_frames.add(frame)
                    detail.extend(f"frame {frame}: {t}" for t in texts)
            steps.append(
                Step(
                    "collapsed", item.first_ts_ns, off(item.first_ts_ns), item.first_frame, None,
                    summary, after=state, detail=detail, last_frame=item.last_frame,
                    end_offset_s=off(item.last_ts_ns),
                )
            )  # fmt: skip
        elif isinstance(item, StateChange):
            flush_time_notes(item.ts_ns - 1) if time_notes else None
            entered = _with((None, None), item.side, item.state)
            state = _with(state, item.side, item.state)
            steps.append(
                Step(
                    "state",
                    item.ts_ns,
                    off(item.ts_ns),
                    entered=entered,
                    after=state,
                    label=item.why,
                )
            )
    flush_time_notes(None)
    steps = _mark_idle(steps)
    unused.extend(
        Note(t, frame=f)
        for f, texts in frame_notes.items()
        if f not in placed_frames
        for t in texts
    )

    orig = endpoint_label(conn.orig_h, conn.orig_p)
    resp = endpoint_label(conn.resp_h, conn.resp_p)
    service = conn.port_service
    title = f"{conn.uid}  {conn.proto_name}  {orig} -> {resp}" + (f"  {service}" if service else "")
    header = [
        (
            f"start {utc_text(conn.first_ts_ns)}  duration {conn.duration_s:.6f} s  "
            f"packets {conn.pkts[0]} orig / {conn.pkts[1]} resp"
        )
    ]
    footer: list[str] = []
    if conn.tcp is not None:
        rtt = f", iRTT {conn.irtt_ms:.3f} ms" if conn.irtt_ms is not None else ""
        header.append(
            f"conn_state {conn.conn_state}  history {conn.history}  handshake {conn.handshake}{rtt}  "
            f"retransmissions {conn.retransmissions}"
        )
        by = f", first close by {conn.close_initiator}" if conn.close_initiator else ""
        header.append(
            f"teardown {conn.teardown}{by}  end states: orig {conn.orig_state}, resp {conn.resp_state}"
        )
        if conn.originator_inferred:
            header.append("no SYN seen: the originator was inferred from the ports")
        if conn.prev_uid:
            header.append(
                f"reuses the 5-tuple of {conn.prev_uid}"
                + (
                    " while that connection's TIME_WAIT was still running"
                    if conn.reused_in_time_wait
                    else ""
                )
            )
        past = (
            "the end of the capture" if conn.closed_by == "capture_end" else "the end of the record"
        )
        for side, tw_end in time_wait_until(conn):
            who = "orig" if side == 0 else "resp"
            footer.append(
                f"{who} stays in TIME_WAIT until +{off(tw_end):.6f} s (2 x MSL), past {past}"
            )
    header = [w for line in header for w in textwrap.wrap(line, WIDTH, subsequent_indent="  ")]
    footer = [w for line in footer for w in textwrap.wrap(line, WIDTH, subsequent_indent="  ")]
    return Ladder(conn.uid, title, header, orig, resp, steps, footer, unused)


#: a silence at least this long between two rows gets a row of its own
IDLE_GAP_S = 5.0


def _mark_idle(steps: list[Step]) -> list[Step]:
    out: list[Step] = []
    last = None
    for step in steps:
        if (
            last is not None
            and step.kind in ("packet", "collapsed")
            and step.offset_s - last >= IDLE_GAP_S
        ):
            gap = step.offset_s - last
            out.append(
                Step(
                    "idle",
                    step.ts_ns,
                    last,
                    label=f"... {gap:.3f} s without packets ...",
                    after=out[-1].after,
                )
            )
        out.append(step)
        if step.kind in ("packet", "collapsed", "state"):
            last = step.end_offset_s if step.end_offset_s is not None else step.offset_s
    return out


def _last_ts(conn: Connection) -> int:
    return conn.last_ts_ns


def _tw_end(conn: Connection) -> int:
    ends = [end for _side, end in time_wait_until(conn)]
    return max(ends) if ends else conn.last_ts_ns


# ---------------------------------------------------------------------- text

#: findings that describe rather than warn (drawn in blue, not red)
INFO_KINDS = frozenset(
    (
        "handshake_synack",
        "handshake_ack",
        "window_update",
        "window_reopen",
        "keep_alive",
        "keep_alive_ack",
    )
)


@dataclass(slots=True, frozen=True)
class _Glyphs:
    line: str
    gap: str
    dash: str
    right: str
    left: str
    finding: str  # before a finding that warns
    info: str  # before a finding that describes (handshake legs)
    ellipsis: str


_ASCII = _Glyphs("|", ":", "-", ">", "<", "!", "*", "...")
_UNICODE = _Glyphs("│", "┆", "─", "▶", "◀", "!", "•", "…")


def _time_text(seconds: float) -> str:
    text = f"{seconds:.6f}"
    return text if len(text) <= _TIME_W else f"{seconds:.0f}"


def _row(frame: str, time: str, left: str, area: str, right: str, line: str) -> str:
    return (
        f"{frame:>{_FRAME_W}}  {time:>{_TIME_W}}  {left:>{_STATE_W}} {line}{area:<{_AREA}}{line} {right}"
    ).rstrip()


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False) or [""]


def _arrow(label: str, to_right: bool, g: _Glyphs) -> tuple[str, str]:
    """The arrow filling the area, and whatever of the label did not fit on it."""
    room = _AREA - 6
    rest = ""
    if len(label) > room:
        cut = label.rfind(" ", 0, room + 1)
        cut = cut if cut > 0 else room
        label, rest = label[:cut], label[cut:].strip()
    fill = g.dash * (_AREA - len(label) - 5)
    if to_right:
        return f"{g.dash * 2} {label} {fill}{g.right}", rest
    return f"{g.left}{fill} {label} {g.dash * 2}", rest


def render_text(ladder: Ladder, unicode: bool = False) -> str:
    """The ladder as text, at most 100 columns, pure ASCII unless `unicode`."""
    g = _UNICODE if unicode else _ASCII
    out = [ladder.title, *ladder.header, ""]
    # endpoint labels centred on their lines (shifted to fit, on two lines if they would overlap)
    lw, rw = len(ladder.orig_label), len(ladder.resp_label)
    lstart = min(max(0, _LEFT - lw // 2), WIDTH - lw)
    rstart = min(max(0, _RIGHT - rw // 2), WIDTH - rw)
    if lstart + lw + 1 > rstart:
        out.append(" " * lstart + ladder.orig_label)
        out.append(" " * rstart + ladder.resp_label)
    else:
        out.append((" " * lstart + ladder.orig_label).ljust(rstart) + ladder.resp_label)
    out.append(_row("frame", "time s", "orig", "", "resp", g.line).replace(g.line, " "))
    out.append(_row("", "", "", "", "", g.line))

    def text_lines(texts: Iterable[str], prefix: str, line: str) -> None:
        for text in texts:
            for i, chunk in enumerate(_wrap(text, _AREA - 3 - len(prefix))):
                lead = prefix if i == 0 else " " * len(prefix)
                out.append(_row("", "", "", f"  {lead}{chunk}", "", line))

    for step in ladder.steps:
        left = step.entered[0] or ""
        right = step.entered[1] or ""
        if step.kind == "packet":
            area, rest = _arrow(step.label, bool(step.from_orig), g)
            out.append(_row(str(step.frame), _time_text(step.offset_s), left, area, right, g.line))
            if rest:
                text_lines([rest], "   ", g.line)
            for f in step.findings:
                text_lines([f.text], (g.info if f.kind in INFO_KINDS else g.finding) + " ", g.line)
            text_lines(step.notes, "NOTE: ", g.line)
        elif step.kind == "collapsed":
            summary = step.label.replace("...", g.ellipsis)
            out.append(_row("", "", "", "", "", g.gap))
            chunks = _wrap(summary, _AREA - 2)
            out.append(
                _row(str(step.frame), _time_text(step.offset_s), "", f"  {chunks[0]}", "", g.gap)
            )
            for chunk in chunks[1:] + step.detail:
                for piece in _wrap(chunk, _AREA - 4):
                    out.append(_row("", "", "", f"    {piece}", "", g.gap))
            out.append(_row("", "", "", "", "", g.gap))
        elif step.kind == "idle":
            out.append(_row("", "", "", "", "", g.gap))
            out.append(_row("", "", "", "  " + step.label.replace("...", g.ellipsis), "", g.gap))
            out.append(_row("", "", "", "", "", g.gap))
        elif step.kind == "state":
            chunks = _wrap(f"({step.label})", _AREA - 2)
            out.append(_row("", _time_text(step.offset_s), left, f"  {chunks[0]}", right, g.line))
            for chunk in chunks[1:]:
                out.append(_row("", "", "", f"   {chunk}", "", g.line))
        elif step.kind == "note":
            chunks = _wrap(step.notes[0], _AREA - 9)
            out.append(_row("", _time_text(step.offset_s), "", f"  NOTE: {chunks[0]}", "", g.line))
            for chunk in chunks[1:]:
                out.append(_row("", "", "", f"        {chunk}", "", g.line))
    out.append(_row("", "", "", "", "", g.line))
    out.extend(ladder.footer)
    return "\n".join(out) + "\n"

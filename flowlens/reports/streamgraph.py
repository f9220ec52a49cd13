"""Stream graphs as data: a connection's series (`StreamLog`) turned into what gets drawn.

Pure functions, one per graph, each returning a plain object of (t, y) points and bars that
`reports/streamgraph_plot.py` draws and tests read:

- `tseq_graph`: the Stevens time-sequence graph of one direction, as tcptrace's xplot and
  Wireshark's "Stevens"/"tcptrace" stream graphs draw it: each segment a vertical bar from its
  relative sequence number to seq + len at its capture time, retransmissions apart, the peer's
  cumulative ACK as a step line, the receive window's right edge (ACK + advertised window in
  bytes, scaled by the negotiated window scale, RFC 7323 §2.2) as another, and the peer's SACK
  blocks (RFC 2018) as bars at the time of the ACK that carried them.
- `throughput_graph`: Wireshark's "Throughput" graph per direction: at each segment, the payload
  bytes of the segments in the moving-average window ending there, over that window, in bits/s;
  goodput the same without the segments sent again; and each segment's length.
- `rtt_graph`: the round-trip samples of `RttCollector` (the one owner of RTT samples, Karn's
  rule included) over time, per leg, marked by their source.
- `window_graph`: each endpoint's advertised receive window over time (bytes, scaled), and the
  data direction's bytes in flight (highest sequence number sent minus the highest ACK seen).

Times are seconds since the connection's first packet, as Wireshark's graphs show them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from ..analyzers.rtt import ConnectionRtt
from ..analyzers.streamlog import SEGMENT_KINDS, StreamLog
from ..core.decode import TH_ACK, TH_FIN, TH_SYN

__all__ = [
    "DIRECTIONS",
    "KINDS",
    "Bar",
    "RttGraph",
    "ThroughputGraph",
    "ThroughputSeries",
    "TseqGraph",
    "WindowGraph",
    "data_direction",
    "rtt_graph",
    "throughput_graph",
    "tseq_graph",
    "window_graph",
]

#: a direction is named by its sender: "orig" (originator -> responder) or "resp"
DIRECTIONS = ("orig", "resp")
#: the graphs `flowlens plot --kind` draws
KINDS = ("tseq", "throughput", "rtt", "window")

Point = tuple[float, float]


@dataclass(slots=True, frozen=True)
class Bar:
    """A vertical bar at `t_s` from `low` to `high` (relative sequence numbers)."""

    t_s: float
    low: int
    high: int
    frame: int
    #: one of streamlog.SEGMENT_KINDS ("data", "retransmission", ...), or "sack"
    kind: str
    syn: bool = False
    fin: bool = False


@dataclass(slots=True)
class TseqGraph:
    """One direction's time-sequence graph (tcptrace's xplot, Wireshark's Stevens graph)."""

    uid: str
    direction: str  # "orig" or "resp": the sender of the segments drawn
    #: the segments, each a Bar from seq to seq + len (SYN and FIN take one number)
    segments: list[Bar]
    #: the peer's cumulative ACK over time: a step line, one point per ACK
    ack: list[Point]
    #: the receive window's right edge (ACK + window in bytes) over time: a step line
    window: list[Point]
    #: the peer's SACK blocks, each a Bar at the time of the ACK carrying it
    sacks: list[Bar]
    #: False when the handshake was not seen: the window is drawn unscaled (unknown scale)
    window_scaled: bool = True
    #: rows left out past the collector's bound (segments, ACKs, SACK blocks)
    dropped: tuple[int, int, int] = (0, 0, 0)

    def by_kind(self, kind: str) -> list[Bar]:
        return [b for b in self.segments if b.kind == kind]


@dataclass(slots=True)
class ThroughputSeries:
    direction: str
    #: bits per second over the moving-average window ending at each segment
    throughput: list[Point] = field(default_factory=list)
    #: the same, counting only segments that were not sent again
    goodput: list[Point] = field(default_factory=list)
    #: each segment's payload length in bytes
    segments: list[Point] = field(default_factory=list)


@dataclass(slots=True)
class ThroughputGraph:
    uid: str
    window_s: float  # the moving-average window
    series: list[ThroughputSeries]


@dataclass(slots=True)
class RttGraph:
    uid: str
    #: (leg, source) -> [(t_s, rtt_ms)]; leg "resp" times the originator's data (cap>resp>cap)
    samples: dict[tuple[str, str], list[Point]]


@dataclass(slots=True)
class WindowGraph:
    uid: str
    direction: str  # the data direction whose bytes in flight are drawn
    #: sender -> the receive window it advertised, bytes, over time (step)
    windows: dict[str, list[Point]]
    #: the data direction's bytes in flight over time (step)
    in_flight: list[Point]
    #: False when a window scale was unknown (handshake not seen): windows drawn unscaled
    window_scaled: bool = True


def _t(log: StreamLog, ts_ns: int) -> float:
    return (ts_ns - log.first_ts_ns) / 1e9


def _side(direction: str) -> int:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
    return DIRECTIONS.index(direction)


def data_direction(log: StreamLog) -> str:
    """The direction that carried more payload bytes (the originator's on a tie)."""
    orig, resp = (s.payload_bytes for s in log.sides)
    return "resp" if resp > orig else "orig"


def tseq_graph(log: StreamLog, direction: str | None = None) -> TseqGraph:
    """The time-sequence graph of the segments `direction` sent (default: `data_direction`)."""
    direction = direction or data_direction(log)
    side = _side(direction)
    me, peer = log.sides[side], log.sides[1 - side]
    segments = []
    for ts, seq, plen, flags, frame, kind in me.rows("segments"):
        syn, fin = bool(flags & TH_SYN), bool(flags & TH_FIN)
        high = seq + plen + syn + fin  # SYN and FIN each take a sequence number (RFC 9293 §3.4)
        segments.append(Bar(_t(log, ts), seq, high, frame, SEGMENT_KINDS[kind], syn, fin))
    ack: list[Point] = []
    window: list[Point] = []
    for ts, rel_ack, win, flags, _frame in peer.rows("acks"):
        if not flags & TH_ACK:
            continue
        t = _t(log, ts)
        ack.append((t, rel_ack))
        window.append((t, rel_ack + win))
    sacks = [Bar(_t(log, ts), lo, hi, frame, "sack") for ts, lo, hi, frame in peer.rows("sacks")]
    dropped = (me.dropped[0], peer.dropped[1], peer.dropped[2])
    return TseqGraph(
        log.uid, direction, segments, ack, window, sacks, log.window_scaled[1 - side], dropped
    )


def throughput_graph(
    log: StreamLog, window_s: float = 1.0, direction: str | None = None
) -> ThroughputGraph:
    """Per direction (both, or `direction`): at each segment with payload, the payload bytes of
    the segments sent in the `window_s` seconds ending there (that segment included) over
    `window_s`, in bits/s: a moving average over a fixed window, as Wireshark's throughput graph
    offers ("MA Window"). The divisor is always the whole window, so the first `window_s` of a
    transfer ramp up rather than spike on the first few segments' short spacing."""
    if window_s <= 0:
        raise ValueError("the moving-average window must be positive")
    directions = DIRECTIONS if direction is None else (direction,)
    out = []
    for d in directions:
        series = ThroughputSeries(d)
        rows = [r for r in log.sides[_side(d)].rows("segments") if r[2]]
        if rows:
            _moving_average(log, rows, window_s, series)
        out.append(series)
    return ThroughputGraph(log.uid, window_s, out)


def _moving_average(log: StreamLog, rows: list, window_s: float, out: ThroughputSeries) -> None:
    window_ns = int(window_s * 1e9)
    inside: deque = deque()
    total = good = 0
    retrans = SEGMENT_KINDS.index("retransmission")
    for ts, _seq, plen, _flags, _frame, kind in rows:
        inside.append((ts, plen, kind))
        total += plen
        if kind != retrans:
            good += plen
        while inside and inside[0][0] <= ts - window_ns:
            _t0, n, k = inside.popleft()
            total -= n
            if k != retrans:
                good -= n
        t = _t(log, ts)
        out.throughput.append((t, total * 8 / window_s))
        out.goodput.append((t, good * 8 / window_s))
        out.segments.append((t, float(plen)))


def rtt_graph(log: StreamLog, rtt: ConnectionRtt | None) -> RttGraph:
    """The connection's RTT samples (kept by `RttCollector`) by leg and source."""
    samples: dict[tuple[str, str], list[Point]] = {}
    if rtt is not None:
        for s in rtt.iter_samples():
            samples.setdefault((s.leg, s.source), []).append((_t(log, s.ts_ns), s.rtt_ms))
    return RttGraph(log.uid, samples)


def window_graph(log: StreamLog, direction: str | None = None) -> WindowGraph:
    """Both endpoints' advertised windows, and the bytes in flight of `direction` (default: the
    data direction): after each of its segments and each of the peer's ACKs, the highest
    sequence number it sent (SYN included, FIN not: a FIN is no data) minus the highest ACK."""
    direction = direction or data_direction(log)
    side = _side(direction)
    windows = {
        d: [(_t(log, ts), float(win)) for ts, _a, win, _fl, _fr in log.sides[i].rows("acks")]
        for i, d in enumerate(DIRECTIONS)
    }
    events = [
        (ts, 0, seq + plen + bool(flags & TH_SYN))
        for ts, seq, plen, flags, _f, _k in log.sides[side].rows("segments")
    ]
    events += [
        (ts, 1, ack)
        for ts, ack, _w, flags, _f in log.sides[1 - side].rows("acks")
        if flags & TH_ACK
    ]
    events.sort(key=lambda e: e[0])  # (stable: a segment and an ACK at one instant keep order)
    in_flight: list[Point] = []
    sent = acked = None
    for ts, what, value in events:
        if what == 0:
            sent = value if sent is None else max(sent, value)
        else:
            acked = value if acked is None else max(acked, value)
        if sent is not None and acked is not None:
            in_flight.append((_t(log, ts), float(max(0, sent - acked))))
    return WindowGraph(log.uid, direction, windows, in_flight, all(log.window_scaled))

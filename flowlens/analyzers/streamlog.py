"""Per-segment series of selected TCP connections, for stream graphs (tcptrace's and Wireshark's).

A `StreamCollector` is one of the pipeline's analyzers. On a connection's first packet it asks
`wants(conn)` whether to keep it (so only the connections being drawn cost memory), then records
for each endpoint, as the packets stream by:

- the segments it sent (`SEG_FIELDS`: capture time, relative sequence number, payload length,
  TCP flags, frame, and the segment's class as `TcpAnalyzer` says: retransmission, out-of-order,
  zero-window probe, keep-alive; the analyzer is the one owner of "retransmission", so nothing
  here re-derives it),
- its acknowledgments and advertised windows (`ACK_FIELDS`: time, relative ACK in the peer's
  sequence space, the window in bytes scaled by the negotiated window scale as
  `DirectionStats.window_bytes` says, RFC 7323 §2.2),
- its SACK blocks (RFC 2018), relative to the peer's sequence space (`SACK_FIELDS`; these need
  every segment's TCP options, `Needs.ALL_OPTIONS`, so `sack=False` leaves them out and the
  decoder copies no option bytes for it).

Sequence numbers are Wireshark's relative ones (a side's SYN is 0, so its first byte is 1; a side
whose SYN was not seen starts at 1 too), unwrapped past 2**32 so a long transfer keeps climbing.
Memory per connection is bounded: at most `max_points` rows per series and endpoint; rows past
that are counted (`SideSeries.dropped`), not kept, and the graphs say so.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable

from ..core.analyzer import Analyzer, Needs
from ..core.connections import Connection
from ..core.constants import seq_diff
from ..core.decode import TH_ACK, TH_FIN, TH_RST, TH_SYN, Packet
from .tcpanalysis import RETRANSMISSION_KINDS, TcpAnalyzer

__all__ = [
    "ACK_FIELDS",
    "SACK_FIELDS",
    "SEGMENT_KINDS",
    "SEG_FIELDS",
    "SideSeries",
    "StreamCollector",
    "StreamLog",
]

#: a segment's class, by index (`SEG_FIELDS`' kind): new data, sent again (Wireshark's three
#: retransmission kinds, and out-of-order segments whose TSval shows they were sent again, as
#: `flows.retransmissions` counts them), reordered, a zero-window probe, a keep-alive
SEGMENT_KINDS = ("data", "retransmission", "out_of_order", "zero_window_probe", "keep_alive")
KIND_DATA, KIND_RETRANS, KIND_OOO, KIND_PROBE, KIND_KEEPALIVE = range(5)

#: the columns of `SideSeries.segments` (a flat array('q'), one row after another)
SEG_FIELDS = ("ts_ns", "seq", "len", "flags", "frame", "kind")
#: the columns of `SideSeries.acks`: `ack` is -1 for a segment without the ACK bit
ACK_FIELDS = ("ts_ns", "ack", "window", "flags", "frame")
#: the columns of `SideSeries.sacks`: one row per SACK block, [left, right) in the peer's space
SACK_FIELDS = ("ts_ns", "left", "right", "frame")

_M32 = 0xFFFFFFFF


class _Space:
    """One endpoint's sequence space: the base of its relative numbers and the highest number
    seen, against which a raw 32-bit number is unwrapped (RFC 9293 §3.4 comparison)."""

    __slots__ = ("base", "last_raw", "last_rel")

    def __init__(self) -> None:
        self.base: int | None = None
        self.last_raw = 0
        self.last_rel = 0

    def start(self, base: int) -> None:
        if self.base is None:
            self.base = base & _M32
            self.last_raw = self.base
            self.last_rel = 0

    def rel(self, raw: int) -> int:
        """`raw` relative to the base, unwrapped: within 2**31 of the highest number seen."""
        rel = self.last_rel + seq_diff(raw, self.last_raw)
        if rel > self.last_rel:
            self.last_raw, self.last_rel = raw, rel
        return rel


class SideSeries:
    """What one endpoint sent: its segments, its ACKs and windows, its SACK blocks (flat
    array('q')s, rows of `SEG_FIELDS`, `ACK_FIELDS`, `SACK_FIELDS`), and the rows left out past
    the collector's `max_points` (`dropped`: segments, ACKs, SACK blocks)."""

    __slots__ = ("acks", "dropped", "resent_seen", "sacks", "segments", "space")

    def __init__(self) -> None:
        self.segments = array("q")
        self.acks = array("q")
        self.sacks = array("q")
        self.dropped = [0, 0, 0]
        self.space = _Space()  # this endpoint's sequence space
        self.resent_seen = 0  # TcpAnalyzer's resent_ooo count already attributed

    def rows(self, name: str) -> list[tuple[int, ...]]:
        """The rows of `segments`, `acks` or `sacks` as tuples."""
        data = getattr(self, name)
        width = {"segments": len(SEG_FIELDS), "acks": len(ACK_FIELDS), "sacks": len(SACK_FIELDS)}[
            name
        ]
        return [tuple(data[i : i + width]) for i in range(0, len(data), width)]

    @property
    def payload_bytes(self) -> int:
        """Payload bytes of the segments kept (every copy counted)."""
        seg = self.segments
        return sum(seg[i + 2] for i in range(0, len(seg), len(SEG_FIELDS)))


class StreamLog:
    """The series of one connection: `sides[0]` what the originator sent, `sides[1]` the
    responder; `first_ts_ns` its first packet; `window_scaled` per side: whether its window
    scale was known (the handshake was seen), as `DirectionStats.window_scale_known` says."""

    __slots__ = ("first_ts_ns", "sides", "uid", "window_scaled")

    def __init__(self, uid: str, first_ts_ns: int) -> None:
        self.uid = uid
        self.first_ts_ns = first_ts_ns
        self.sides = (SideSeries(), SideSeries())
        self.window_scaled = [False, False]

    def swap(self) -> None:
        """Follow `Connection.swap_roles`: the originator's series are now the responder's."""
        self.sides = (self.sides[1], self.sides[0])
        self.window_scaled.reverse()


class StreamCollector(Analyzer):
    """Analyzer keeping the per-segment series of the TCP connections `wants` picks.

        collector = StreamCollector(lambda conn: conn.uid == "CMayhZrxGd")
        analyze("capture.pcap", analyzers=[collector])
        log = collector.log_of(conn)   # StreamLog, or None when not kept

    `tcp` is the `TcpAnalyzer(keep_frames=True)` whose verdicts class each segment (made a
    dependency, so it sees each packet first); by default one of its own, analysing the wanted
    connections only. `sack=False`: no SACK blocks, and no need for every segment's options.
    """

    def __init__(
        self,
        wants: Callable[[Connection], bool] | None = None,
        *,
        tcp: TcpAnalyzer | None = None,
        sack: bool = True,
        max_points: int = 1_000_000,
    ) -> None:
        super().__init__()
        if tcp is not None and not tcp.keep_frames:
            raise ValueError("StreamCollector needs a TcpAnalyzer(keep_frames=True)")
        self.wants = wants
        self.tcp = tcp if tcp is not None else TcpAnalyzer(keep_frames=True, wants=wants)
        self.sack = sack
        self.max_points = max_points
        #: the window scale and SYN options come with every SYN; SACK blocks need every segment's
        self.needs = Needs.SYN_OPTIONS | (Needs.ALL_OPTIONS if sack else Needs.NONE)

    def dependencies(self) -> tuple:
        return (self.tcp,)

    def log_of(self, conn: Connection) -> StreamLog | None:
        """The series of `conn` (complete once it ended), or None when not kept."""
        return self.state_of(conn)

    # ------------------------------------------------------------------ hooks
    def on_start(self, conn: Connection, pkt: Packet) -> StreamLog | None:
        if conn.tcp is None or (self.wants is not None and not self.wants(conn)):
            return None
        return StreamLog(conn.uid, pkt.ts_ns)

    def on_flip(self, conn: Connection) -> None:
        self.state_of(conn).swap()

    def on_packet(self, conn: Connection, pkt: Packet, from_orig: bool) -> None:
        log: StreamLog = self.state_of(conn)
        side = 0 if from_orig else 1
        me, peer = log.sides[side], log.sides[1 - side]
        flags = pkt.flags
        # Wireshark's relative numbers (as the ladder's): a SYN is 0 of its side's space; a side
        # whose SYN was not seen starts one below its first number, so its first byte is 1
        me.space.start(pkt.seq if flags & TH_SYN else pkt.seq - 1)
        if flags & TH_ACK:
            peer.space.start(pkt.ack - 1)
        st = self.tcp.state_of(conn)
        stats = st.dirs[side] if st is not None else None
        limit = self.max_points
        ts = pkt.ts_ns
        if pkt.plen or flags & (TH_SYN | TH_FIN):
            kind = self._kind(pkt.frame, me, stats)
            if len(me.segments) < limit * len(SEG_FIELDS):
                seq = me.space.rel(pkt.seq)
                me.segments.extend((ts, seq, pkt.plen, flags, pkt.frame, kind))
            else:
                me.dropped[0] += 1
        if flags & TH_RST:
            return  # an abort is neither acknowledgment nor window (its ACK field is anything)
        if stats is not None:
            win = stats.window_bytes(pkt.win, bool(flags & TH_SYN))
            log.window_scaled[side] = stats.window_scale_known
        else:
            win = pkt.win
        if len(me.acks) < limit * len(ACK_FIELDS):
            ack = peer.space.rel(pkt.ack) if flags & TH_ACK else -1
            me.acks.extend((ts, ack, win, flags, pkt.frame))
        else:
            me.dropped[1] += 1
        if self.sack and pkt.raw_options and flags & TH_ACK:
            for left, right in pkt.options.sack:
                if len(me.sacks) < limit * len(SACK_FIELDS):
                    me.sacks.extend((ts, peer.space.rel(left), peer.space.rel(right), pkt.frame))
                else:
                    me.dropped[2] += 1

    def _kind(self, frame: int, me: SideSeries, stats) -> int:
        """The segment's class from the TCP analysis' verdict on its frame."""
        kinds = self.tcp.kinds(frame)
        resent = False
        if stats is not None and stats.resent_ooo != me.resent_seen:
            # TcpAnalyzer counted this out-of-order segment as sent again (its TSval)
            me.resent_seen = stats.resent_ooo
            resent = True
        if resent or any(k in RETRANSMISSION_KINDS for k in kinds):
            return KIND_RETRANS
        if "out_of_order" in kinds:
            return KIND_OOO
        if "zero_window_probe" in kinds:
            return KIND_PROBE
        if "keep_alive" in kinds:
            return KIND_KEEPALIVE
        return KIND_DATA

"""Per-segment TCP analysis the way Wireshark's `tcp.analysis` flags it: retransmissions, dup ACKs, windows.

`TcpAnalyzer` is an analyzer (`analyze(path, analyzers=[TcpAnalyzer()])`). For every
TCP segment it applies the rules of Wireshark's `tcp_analyze_sequence_number`
(epan/dissectors/packet-tcp.c, as shipped in Wireshark 4.0) in the same order and with the same
state, so its verdicts can be checked frame by frame against `tshark -Y tcp.analysis.flags`:

==========================  ==============================  ====================================
kind                        Wireshark Info label            set when
==========================  ==============================  ====================================
retransmission              TCP Retransmission              data/SYN/FIN below the next expected
                                                            sequence number, none of the below
fast_retransmission         TCP Fast Retransmission         ... at the peer's dup-ACKed sequence
                                                            (>= 2 dup ACKs), < 20 ms after them
spurious_retransmission     TCP Spurious Retransmission     data the peer had already ACKed
out_of_order                TCP Out-Of-Order                ... within the initial RTT (3 ms if
                                                            unknown) of the highest segment
lost_segment                TCP Previous segment not        a sequence gap: the capture missed
                            captured                        a segment (or the network lost it)
acked_unseen                TCP ACKed unseen segment        the ACK covers data never seen
dup_ack                     TCP Dup ACK <frame>#<n>         same seq/ack/window, no data
zero_window                 TCP ZeroWindow                  the sender advertises window 0
zero_window_probe           TCP ZeroWindowProbe             1 byte at the next sequence number
                                                            while the peer's window is 0, or
                                                            0/1 byte at next sequence - 1 then
                                                            (Linux's persist timer; Wireshark:
                                                            Keep-Alive)
zero_window_probe_ack       TCP ZeroWindowProbeAck          the zero-window answer to a probe
window_full                 TCP Window Full                 data up to the peer's window edge
window_update               TCP Window Update               no data, same seq/ack, new window
keep_alive                  TCP Keep-Alive                  0/1 byte at next sequence - 1
                                                            (1 byte: only once the peer ACKed it)
                                                            while the peer's window is open
keep_alive_ack              TCP Keep-Alive ACK              the answer to a keep-alive
==========================  ==============================  ====================================

Per-connection state is a `TcpaState` (``analyzer.state_of(conn)``): per direction counts of
each kind, retransmitted bytes, how long the window stayed closed, keep-alive times, and the bytes
in flight when the first RST came. Its size does not grow with the connection's length (Wireshark
keeps a list of unacknowledged segments; flowlens keeps only the few numbers the rules read, see
the module's differences below). Frame-level notes are kept only when asked for
(``TcpAnalyzer(keep_frames=True)``), and then only for flagged frames.

Known differences from tshark 4.0 (documented in tests/test_tcpanalysis.py with examples):
- no list of unacknowledged segments: a retransmission arriving within the out-of-order threshold
  is called out-of-order whenever its end differs from the highest sequence number, as Wireshark
  2.x did (4.0 first looks the segment up in its unacked list);
- a one-byte segment at the next expected sequence number - 1 that the peer has not yet
  acknowledged is a retransmission of that byte (RFC 9293 §3.8.4 sends keep-alives only when
  all data was acknowledged), where Wireshark calls it a keep-alive whatever the ACKs said;
- a 0/1-byte segment at the next expected sequence number - 1 sent while the peer's last
  window was 0 is a zero-window probe, not a keep-alive: Linux's persist timer
  (net/ipv4/tcp_timer.c tcp_probe_timer -> tcp_output.c tcp_write_wakeup -> tcp_xmit_probe_skb)
  sends exactly that, SEQ = SND.UNA - 1 and no data, where Wireshark's zero-window-probe rule
  wants one byte at the next sequence number and calls this one a keep-alive;
- a connection is what flowlens's table says it is: after an idle expiry (5 min established,
  1 min for attempts) the next packet starts a new record with fresh analysis state, where
  Wireshark continues the stream.

Compiled by Cython (pure-Python mode): tcpanalysis.pxd makes the state classes C structs and the
constants C integers; the per-packet code below is plain Python that also runs uncompiled.
"""

from __future__ import annotations

import cython

from ..core.analyzer import Analyzer, Needs
from ..core.connections import Connection
from ..core.decode import TH_ACK, TH_FIN, TH_RST, TH_SYN, Packet, window_scale
from ..errors import UsageError

if not cython.compiled:  # (compiled: cimported in tcpanalysis.pxd, inline C)
    from ..core.constants import seq_ge, seq_gt

__all__ = [
    "KINDS",
    "LABELS",
    "RETRANSMISSION_KINDS",
    "DirectionStats",
    "TcpAnalyzer",
    "TcpaState",
]

_M = 0xFFFFFFFF
_H = 0x80000000
_SFR = TH_SYN | TH_FIN | TH_RST
_SF = TH_SYN | TH_FIN

#: every kind, in the order notes are listed (Wireshark's analysis tree order)
KINDS = (
    "retransmission",
    "fast_retransmission",
    "spurious_retransmission",
    "out_of_order",
    "lost_segment",
    "acked_unseen",
    "window_update",
    "window_full",
    "keep_alive",
    "keep_alive_ack",
    "dup_ack",
    "zero_window_probe",
    "zero_window",
    "zero_window_probe_ack",
)
_BIT = {kind: 1 << i for i, kind in enumerate(KINDS)}
RETRANS = _BIT["retransmission"]
FAST = _BIT["fast_retransmission"]
SPURIOUS = _BIT["spurious_retransmission"]
OOO = _BIT["out_of_order"]
LOST = _BIT["lost_segment"]
ACKED_UNSEEN = _BIT["acked_unseen"]
WINDOW_UPDATE = _BIT["window_update"]
WINDOW_FULL = _BIT["window_full"]
KEEP_ALIVE = _BIT["keep_alive"]
KEEP_ALIVE_ACK = _BIT["keep_alive_ack"]
DUP_ACK = _BIT["dup_ack"]
ZWP = _BIT["zero_window_probe"]
ZERO_WINDOW = _BIT["zero_window"]
ZWP_ACK = _BIT["zero_window_probe_ack"]
_ANY_RETRANS = RETRANS | FAST | SPURIOUS

#: the kinds Wireshark also reports as "This frame is a (suspected) retransmission"
RETRANSMISSION_KINDS = ("retransmission", "fast_retransmission", "spurious_retransmission")

#: Wireshark's Info-column label of each kind (dup_ack gets " <frame>#<n>" appended)
LABELS = {
    "retransmission": "TCP Retransmission",
    "fast_retransmission": "TCP Fast Retransmission",
    "spurious_retransmission": "TCP Spurious Retransmission",
    "out_of_order": "TCP Out-Of-Order",
    "lost_segment": "TCP Previous segment not captured",
    "acked_unseen": "TCP ACKed unseen segment",
    "window_update": "TCP Window Update",
    "window_full": "TCP Window Full",
    "keep_alive": "TCP Keep-Alive",
    "keep_alive_ack": "TCP Keep-Alive ACK",
    "dup_ack": "TCP Dup ACK",
    "zero_window_probe": "TCP ZeroWindowProbe",
    "zero_window": "TCP ZeroWindow",
    "zero_window_probe_ack": "TCP ZeroWindowProbeAck",
}

_BITS = tuple((1 << i, i) for i in range(len(KINDS)))

#: Wireshark's out-of-order threshold when the initial RTT is unknown (3 ms), and the window in
#: which a segment after two dup ACKs is a fast retransmission (20 ms), in nanoseconds
_OOO_DEFAULT_NS = 3_000_000
_FAST_WINDOW_NS = 20_000_000
#: evidence frames kept per connection and kind
EVIDENCE_PER_KIND = 8
#: SYN timestamps kept per connection (retry times of unanswered SYNs)
_SYN_TIMES = 16


def _kinds_of(note: int) -> tuple[str, ...]:
    return tuple(KINDS[i] for bit, i in _BITS if note & bit)


class DirectionStats:
    """What one direction of a connection sent, and the sequence state the rules read.

    Public, read-only fields: `counts` (list of ints, one per entry of `KINDS`, or None before
    the first note; use `count`), `data_segments` and `data_bytes` (segments with payload and
    their payload bytes), `retrans_segments`/`retrans_bytes` (retransmission, fast or spurious;
    `retrans_syn` of them were SYNs, `retrans_fin` FINs without data), `resent_ooo` and
    `resent_ooo_bytes` (segments Wireshark calls out-of-order that fill a hole with a TSval
    later than the segment beyond the hole: sent after it, so retransmissions; counted in
    `count("out_of_order")` too, Wireshark's label, and not in `retrans_segments`),
    `zero_window_ns` (total
    time this side advertised a zero window, closed spells only), `zero_window_max_ns`,
    `zero_window_since_ns` (start of a spell still open, or None), `zero_window_spells`,
    `keep_alive_first_ns`/`keep_alive_last_ns`, `window_probes` (zero-window probes this
    side sent, of both forms: one byte at the next sequence number, Wireshark's, and a 0/1-byte
    segment at the next sequence number - 1, Linux's; `count("zero_window_probe")` counts the
    same segments and the zero_window finding reads this), `evidence` (kind -> first frames, bounded),
    `first_ns` (kind -> capture time of its first segment: when a finding's event happened).
    """

    __slots__ = (
        # Wireshark's tcp_flow_t / tcp_analyze_seq_info fields (0 = unknown, as there)
        "nextseq",  # highest sequence number sent + its length: the next expected one
        "nextseq_ts",  # ts_ns of the segment that set nextseq
        "nextseq_frame",
        "nextseq_tsval",  # TSval (RFC 7323) of the segment that set nextseq, -1 without one
        "fin_next",  # sequence number after this side's FIN, 0 before one
        "maxseqtobeacked",  # highest contiguous sequence number (for ACKed-unseen)
        "lastack",  # ACK field of the last segment sent in this direction
        "lastack_ts",
        "window",  # raw window field of the last segment (G_MAXUINT32 before any)
        "win_scale",  # -1 unknown, -2 no scaling, else the shift (RFC 7323)
        "last_was_syn",  # the last segment was a SYN: its window is never scaled
        "dupacknum",  # -1: parked after an ACKed-unseen report (Wireshark's trick)
        "lastnondupack",  # frame of the last ACK that was not a duplicate
        "lastflags",  # analysis bits of the last segment
        # statistics
        "counts",
        "data_segments",
        "data_bytes",
        "retrans_segments",
        "retrans_bytes",
        "retrans_syn",  # of retrans_segments, retransmitted SYNs (connection attempts)
        "retrans_fin",  # ... and retransmitted FINs without data
        "resent_ooo",  # out-of-order segments whose TSval says they were sent again (below)
        "resent_ooo_bytes",
        "zero_window_ns",
        "zero_window_max_ns",
        "zero_window_since_ns",
        "zero_window_spells",
        "keep_alive_first_ns",
        "keep_alive_last_ns",
        "window_probes",
        "evidence",
        "first_ns",
    )

    def __init__(self) -> None:
        self.nextseq = 0
        self.nextseq_ts = 0
        self.nextseq_frame = 0
        self.nextseq_tsval = -1
        self.fin_next = 0
        self.maxseqtobeacked = 0
        self.lastack = 0
        self.lastack_ts = 0
        self.window = _M
        self.win_scale = -1
        self.last_was_syn = 0  # (the last segment's SYN bit)
        self.dupacknum = 0
        self.lastnondupack = 0
        self.lastflags = 0
        # (allocated with the first note: most connections never get one)
        self.counts: list[int] | None = None
        self.data_segments = 0
        self.data_bytes = 0
        self.retrans_segments = 0
        self.retrans_bytes = 0
        self.retrans_syn = 0
        self.retrans_fin = 0
        self.resent_ooo = 0
        self.resent_ooo_bytes = 0
        self.zero_window_ns = 0
        self.zero_window_max_ns = 0
        self.zero_window_since_ns = None
        self.zero_window_spells = 0
        self.keep_alive_first_ns = None
        self.keep_alive_last_ns = None
        self.window_probes = 0
        self.evidence: dict[str, list[int]] | None = None
        self.first_ns: dict[str, int] | None = None

    def count(self, kind: str) -> int:
        """Segments of this direction flagged `kind` (one of `KINDS`)."""
        return self.counts[KINDS.index(kind)] if self.counts else 0

    def as_dict(self) -> dict[str, int]:
        """Non-zero counts by kind."""
        return {k: n for k, n in zip(KINDS, self.counts or ()) if n}

    def first_time_ns(self, *kinds: str) -> int | None:
        """Capture time of the first segment flagged with any of `kinds` (None: none was)."""
        if not self.first_ns:
            return None
        times = [self.first_ns[k] for k in kinds if k in self.first_ns]
        return min(times) if times else None

    def frames(self, kind: str) -> list[int]:
        """The first frames (at most EVIDENCE_PER_KIND) flagged `kind`."""
        if not self.evidence:
            return []
        return list(self.evidence.get(kind, ()))

    def window_bytes(self, raw_window: int, syn: bool = False) -> int:
        """The receive window, in bytes, that a segment of this direction advertises with
        `raw_window` in its header: shifted by this direction's negotiated window scale
        (RFC 7323 §2.2; Wireshark's verify_tcp_window_scaling, as `win_scale` above), except on
        a SYN, whose window is never scaled. Unscaled when neither side offered scaling, and when
        the handshake was not seen (the scale is unknown; Wireshark's default shows it raw)."""
        if syn or self.win_scale < 0:
            return raw_window
        return raw_window << self.win_scale

    @property
    def window_scale_known(self) -> bool:
        """False when the handshake was not seen: `window_bytes` then cannot scale."""
        return self.win_scale != -1


class TcpaState:
    """The analysis of one connection (`TcpAnalyzer.state_of(conn)`).

    `dirs[0]`/`orig` is what the originator sent, `dirs[1]`/`resp` the responder.
    `first_flags`/`first_from_orig`: TCP flags and sender of the connection's first packet;
    `reply_flags`: flags of the first packet the other side sent (None: it never answered).
    `syn_ts`: capture times (ns) of the SYNs (no ACK) of the side that sent the first one,
    `syn_side` (normally 0, the originator), at most 16; `syn_frames` their frames.
    `rst`: None, or (sender 0/1, frame, ts_ns, sender's bytes in flight, peer's bytes in flight)
    for the first RST, bytes in flight being data sent but not acknowledged (a FIN is not data;
    None when unknown).
    `first_rtt_ns`: Wireshark's initial RTT (most recent SYN to the first ACK), 0 when unknown.
    """

    __slots__ = (
        "dirs",
        "first_flags",
        "first_from_orig",
        "first_rtt_ns",
        "mru_syn_ns",
        "reply_flags",
        "rst",
        "syn_side",
        "syns",
    )

    def __init__(self, flags: int, from_orig: bool) -> None:
        self.dirs = (DirectionStats(), DirectionStats())
        self.first_flags = flags
        self.first_from_orig = from_orig
        self.reply_flags = None
        #: [(ts_ns, frame)] of the first SYN's sender, at most _SYN_TIMES
        self.syns: list[tuple[int, int]] | None = None
        self.syn_side = 0
        self.rst = None
        self.mru_syn_ns = 0
        self.first_rtt_ns = 0

    def swap(self) -> None:
        """Follow `Connection.swap_roles`: what was the originator's is now the responder's."""
        self.dirs = (self.dirs[1], self.dirs[0])
        self.first_from_orig = not self.first_from_orig
        if self.rst is not None:
            self.rst = (1 - self.rst[0],) + self.rst[1:]
        if self.syns is not None:
            self.syn_side = 1 - self.syn_side

    @property
    def syn_ts(self) -> list[int] | None:
        return None if self.syns is None else [t for t, _f in self.syns]

    @property
    def syn_frames(self) -> list[int] | None:
        return None if self.syns is None else [f for _t, f in self.syns]

    @property
    def orig(self) -> DirectionStats:
        return self.dirs[0]

    @property
    def resp(self) -> DirectionStats:
        return self.dirs[1]

    def count(self, kind: str, side: int | None = None) -> int:
        """Segments flagged `kind`, sent by `side` (0 orig, 1 resp) or by either."""
        if side is None:
            return self.dirs[0].count(kind) + self.dirs[1].count(kind)
        return self.dirs[side].count(kind)

    def retransmitted(self, side: int | None = None) -> int:
        """Segments sent again: the three retransmission kinds (Wireshark's
        `tcp.analysis.retransmission`) and the out-of-order segments that their TSval shows were
        sent after the segments beyond their hole (`resent_ooo`). `flows.retransmissions`."""
        sides = (0, 1) if side is None else (side,)
        return sum(self.dirs[s].retrans_segments + self.dirs[s].resent_ooo for s in sides)

    def reordered(self, side: int | None = None) -> int:
        """Out-of-order segments that were not sent again (`flows.out_of_order`)."""
        sides = (0, 1) if side is None else (side,)
        return sum(self.dirs[s].count("out_of_order") - self.dirs[s].resent_ooo for s in sides)


class TcpAnalyzer(Analyzer):
    """Analyzer that classifies every TCP segment as Wireshark's TCP analysis does.

        analyzer = TcpAnalyzer(keep_frames=True)
        a = analyze("capture.pcap", analyzers=[analyzer])
        analyzer.notes(57)      # -> ("TCP Dup ACK 52#2",)
        analyzer.kinds(57)      # -> ("dup_ack",)
        analyzer.state_of(a.connections[0]).orig.as_dict()   # -> {"retransmission": 3, ...}

    `keep_frames=False` (the default) keeps only per-connection counts (`state_of(conn)`); with
    True it also remembers the verdict of every *flagged* frame, so memory then grows with the
    number of flagged frames (unflagged frames cost nothing). `wants(conn)`, when given, is asked
    on each connection's first packet: the others are not analysed (their state is None), as the
    ladder does for the few connections it draws.
    """

    __slots__ = ("_frames", "keep_frames", "wants")

    #: reads SYNs' TCP options (the window scale) and every segment's TSval (resent_ooo)
    needs = Needs.SYN_OPTIONS | Needs.TIMESTAMPS

    def __init__(self, keep_frames: bool = False, wants=None) -> None:
        super().__init__()
        self.keep_frames = keep_frames
        self.wants = wants
        #: frame -> analysis bits, or (bits, dup ACK number, frame of the original ACK)
        self._frames: dict[int, int | tuple[int, int, int]] = {}

    # ------------------------------------------------------------------ frame API
    def _entry(self, frame: int):
        if not self.keep_frames:
            raise UsageError("frame notes need TcpAnalyzer(keep_frames=True)")
        return self._frames.get(frame)

    def kinds(self, frame: int) -> tuple[str, ...]:
        """Kinds (see `KINDS`) flagged on `frame`; () when none or not a TCP frame."""
        entry = self._entry(frame)
        if entry is None:
            return ()
        return _kinds_of(entry if isinstance(entry, int) else entry[0])

    def notes(self, frame: int) -> tuple[str, ...]:
        """Wireshark's Info-column labels for `frame`, e.g. ``("TCP Retransmission",)`` or
        ``("TCP Dup ACK 52#2",)``; () when nothing was flagged."""
        entry = self._entry(frame)
        if entry is None:
            return ()
        if isinstance(entry, int):
            return tuple(LABELS[k] for k in _kinds_of(entry))
        bits, num, orig = entry
        return tuple(
            f"TCP Dup ACK {orig}#{num}" if k == "dup_ack" else LABELS[k] for k in _kinds_of(bits)
        )

    def dup_ack(self, frame: int) -> tuple[int, int] | None:
        """(n, frame of the ACK it duplicates) when `frame` is the n-th duplicate ACK."""
        entry = self._entry(frame)
        if isinstance(entry, tuple):
            return entry[1], entry[2]
        return None

    @property
    def flagged_frames(self) -> int:
        """How many frames carry at least one note (with keep_frames)."""
        return len(self._frames)

    # ------------------------------------------------------------------ analyzer hooks
    def state_of(self, conn):  # -> TcpaState | None (cpdef object in the .pxd)
        """The `TcpaState` of `conn`, or None (not TCP, not wanted, or not in this pipeline)."""
        return Analyzer.state_of(self, conn)

    @cython.locals(c=Connection)
    def on_start(self, conn, pkt: Packet):
        """A TCP connection's first packet: its fresh `TcpaState`."""
        c = cython.cast(Connection, conn, typecheck=True)  # (C fields when compiled)
        if c.tcp is None:
            return None
        if self.wants is not None and not self.wants(c):
            return None
        return TcpaState(pkt.flags, pkt.sport == c.orig_p and pkt.src == c.orig_h)

    @cython.locals(c=Connection, st=TcpaState)
    def on_flip(self, conn) -> None:
        c = cython.cast(Connection, conn, typecheck=True)
        st = c.states[self.slot]
        if st is not None:
            st.swap()

    # A C method when compiled (`cpdef` in analyzer.pxd): the connection table calls it
    # directly. Python sees the same method, `analyzer.on_packet(...)`.
    @cython.locals(
        c=Connection, st=TcpaState, fwd=DirectionStats, rev=DirectionStats,
        flags=cython.int, sfr=cython.int, note=cython.int, seq=cython.longlong,
        ack=cython.longlong, seglen=cython.longlong, window=cython.longlong, ts=cython.longlong,
        fnext=cython.longlong, dupnum=cython.longlong, lastack=cython.longlong, shift=cython.int,
        not_advanced=cython.bint, rlast=cython.longlong, t=cython.longlong,
        nextseq=cython.longlong, resent=cython.bint, probe=cython.bint,
    )  # fmt: skip
    def on_packet(self, conn, pkt: Packet, from_orig: cython.bint) -> None:
        """Analyse one TCP segment of `conn`."""
        c = cython.cast(Connection, conn, typecheck=True)  # (C fields when compiled)
        st = c.states[self.slot]
        if st is None:
            return  # (the table calls this only with a state; a direct call may not)
        if from_orig:
            fwd, rev = st.dirs
        else:
            rev, fwd = st.dirs
        flags = pkt.flags
        seq = pkt.seq
        ack = pkt.ack
        seglen = pkt.plen
        window = pkt.win
        ts = pkt.ts_ns
        if st.reply_flags is None and from_orig != st.first_from_orig:
            st.reply_flags = flags
        if flags & TH_SYN:
            _syn(st, fwd, rev, pkt, from_orig)
        elif flags & TH_ACK and not st.first_rtt_ns and st.mru_syn_ns:
            # Wireshark's tcp.analysis.initial_rtt: most recent SYN to the first ACK
            st.first_rtt_ns = ts - st.mru_syn_ns  # 0 stays unknown, as in Wireshark
        fnext = fwd.nextseq
        if not flags & _SFR and seq == fnext and window and rev.window and fnext:
            if _in_order(self, st, fwd, rev, pkt, flags, seq, ack, seglen, window, ts):
                c.retransmissions += 1  # (a spurious retransmission: the only kind here)
            return

        note = 0
        sfr = flags & _SFR
        dupnum = 0
        resent = False
        probe = False  # a keep-alive, or a zero-window probe of the same shape (below)
        if seglen == 1 and seq == fnext and rev.window == 0:
            note = ZWP
        else:
            if window == 0 and not sfr:
                note = ZERO_WINDOW
            if fnext and not flags & TH_RST and seq_gt(seq, fnext):
                note |= LOST
            if (
                seglen <= 1
                and not sfr
                and seq == ((fnext - 1) & _M)
                and (seglen == 0 or rev.window == _M or seq_ge(rev.lastack, fnext))
            ):
                # RFC 9293 §3.8.4: a keep-alive is sent at SND.NXT-1, with or without one
                # garbage octet, when everything sent was acknowledged. One byte at SND.NXT-1
                # the peer has not acknowledged yet is that byte sent again: a retransmission
                # (below), not a keep-alive. Wireshark (packet-tcp.c) calls it keep-alive either
                # way; flowlens does so only when the peer's ACKs were never seen.
                # While the peer's last window was 0 the same segment is a zero-window probe
                # (RFC 9293 §3.8.6.1): Linux's persist timer sends it (tcp_probe_timer ->
                # tcp_write_wakeup -> tcp_xmit_probe_skb: SEQ = SND.UNA - 1, no data, "should
                # cause the other end to send an ack"), the very segment its keep-alive timer
                # sends; Wireshark's rule (one byte at the next sequence number) misses it and
                # says keep-alive.
                note |= ZWP if rev.window == 0 else KEEP_ALIVE
                probe = True
            if seglen == 0:
                if not sfr and seq == fnext:
                    lastack = fwd.lastack
                    if window:
                        if ack == lastack:
                            if window != fwd.window:
                                note |= WINDOW_UPDATE
                            elif rev.lastflags & KEEP_ALIVE:
                                note |= KEEP_ALIVE_ACK
                            else:
                                fwd.dupacknum = 1 if fwd.dupacknum < 0 else fwd.dupacknum + 1
                                dupnum = fwd.dupacknum
                                note |= DUP_ACK
                    elif fwd.window == 0 and ack == lastack and rev.lastflags & ZWP:
                        note |= ZWP_ACK
            elif not sfr and rev.win_scale != -1:
                shift = 0 if rev.win_scale == -2 or rev.last_was_syn else rev.win_scale
                if ((seq + seglen) & _M) == ((rev.lastack + ((rev.window << shift) & _M)) & _M):
                    note |= WINDOW_FULL

        # finished_fwd: a new ACK number restarts the dup-ACK count (a data segment with the
        # same ACK does not)
        if ack != fwd.lastack:
            fwd.lastnondupack = pkt.frame
            fwd.dupacknum = 0

        if rev.maxseqtobeacked and flags & TH_ACK:
            note |= _acked_unseen(rev, ack)

        if (seglen or flags & _SF) and not probe:  # (a keep-alive is no retransmission)
            not_advanced = fnext != 0 and not seq_ge(seq, fnext)
            if seglen > 1 and ((fnext - 1) & _M) == seq:
                not_advanced = False
            rlast = rev.lastack
            if seglen and rlast and seq_ge(rlast, seq + seglen):
                note |= SPURIOUS
            elif not_advanced:
                t = ts - rev.lastack_ts
                # (a parked counter, -1, is 0xFFFFFFFF to Wireshark's unsigned compare)
                if (
                    (rev.dupacknum >= 2 or rev.dupacknum < 0)
                    and rlast == seq
                    and 0 <= t < _FAST_WINDOW_NS
                ):
                    note |= FAST
                else:
                    t = ts - fwd.nextseq_ts
                    if 0 <= t < (
                        st.first_rtt_ns if st.first_rtt_ns else _OOO_DEFAULT_NS
                    ) and fnext != ((seq + seglen + (1 if flags & _SF else 0)) & _M):
                        note |= OOO
                        # RFC 7323 §3: TSval never decreases along a sender's segments, so a
                        # hole filled by a segment with a later TSval than the segment beyond
                        # the hole was sent after it: resent (the first copy was lost before
                        # the capture point), not reordered. Wireshark's timing rule still
                        # labels it out-of-order; the counts (flows, findings) say resent.
                        if (
                            pkt.tsval >= 0
                            and fwd.nextseq_tsval >= 0
                            and seq_gt(pkt.tsval, fwd.nextseq_tsval)
                        ):
                            fwd.resent_ooo += 1
                            fwd.resent_ooo_bytes += seglen
                            resent = True
                    else:
                        note |= RETRANS

        # finished_checking_retransmission_type: advance the sequence state
        nextseq = (seq + seglen + (1 if flags & _SF else 0)) & _M
        if flags & TH_FIN:
            fwd.fin_next = nextseq
        # A RST occupies no sequence space, and a genuine one carries at most its sender's
        # SND.NXT (RFC 9293 §3.5.2, §3.10.7.4): one beyond what that side was seen to send is
        # forged, or follows data the capture missed, and moves the next expected sequence
        # number nowhere. Wireshark's rule (packet-tcp.c) lets it move, and then calls the
        # sender's next real segment a retransmission (tshark 4 does, after an injected RST).
        if not note & ZWP and not (flags & TH_RST and fnext):
            if not fnext or seq_gt(nextseq, fnext):
                fwd.nextseq = nextseq
                fwd.nextseq_ts = ts
                fwd.nextseq_frame = pkt.frame
                fwd.nextseq_tsval = pkt.tsval
            if seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked:
                fwd.maxseqtobeacked = fwd.nextseq
        if flags & TH_RST and st.rst is None:
            # what each side had sent and not had acknowledged when the RST came; a RST
            # without the ACK bit says nothing about what its sender received
            st.rst = (
                0 if from_orig else 1,
                pkt.frame,
                ts,
                _in_flight(fwd.nextseq, rev.lastack, fwd.fin_next),
                _in_flight(rev.nextseq, ack if flags & TH_ACK else fwd.lastack, rev.fin_next),
            )
        fwd.window = window
        fwd.lastack = ack
        fwd.lastack_ts = ts
        fwd.lastflags = note
        fwd.last_was_syn = flags & TH_SYN
        if seglen:
            fwd.data_segments += 1
            fwd.data_bytes += seglen

        # zero-window spells of this direction (its receive buffer was full)
        if not sfr:
            if window == 0:
                if fwd.zero_window_since_ns is None:
                    fwd.zero_window_since_ns = ts
                    fwd.zero_window_spells += 1
            elif fwd.zero_window_since_ns is not None:
                _end_zero_window(fwd, ts)
        _record(self, st, fwd, note, dupnum, seglen, pkt.frame, ts, flags)
        # the connection record's counts are this analysis (flows.retransmissions: Wireshark's
        # retransmission + fast + spurious and the resent out-of-order ones, as
        # TcpaState.retransmitted(); flows.out_of_order: TcpaState.reordered())
        if note & _ANY_RETRANS or resent:
            c.retransmissions += 1
        elif note & OOO:
            c.out_of_order += 1


# The per-packet helpers are C functions when compiled (`cython.cfunc`), ordinary ones otherwise.
@cython.cfunc
@cython.locals(
    note=cython.int, dupnum=cython.longlong, lastack=cython.longlong, shift=cython.int,
    rlast=cython.longlong, nextseq=cython.longlong,
)  # fmt: skip
def _in_order(
    self: TcpAnalyzer, st: TcpaState, fwd: DirectionStats, rev: DirectionStats, pkt: Packet,
    flags: cython.int, seq: cython.longlong, ack: cython.longlong, seglen: cython.longlong,
    window: cython.longlong, ts: cython.longlong,
) -> cython.bint:  # fmt: skip
    """The general rules above, specialised to the common segment: no SYN, FIN or RST, at
    the next expected sequence number, both windows open. Only window full, window update,
    keep-alive ACK, duplicate ACK, ACKed unseen and spurious retransmission can apply
    (tests/test_tcpanalysis.py checks both paths against tshark). True when the segment is a
    (spurious) retransmission."""
    note = 0
    dupnum = 0
    lastack = fwd.lastack
    if seglen:
        if rev.win_scale != -1:
            shift = 0 if rev.win_scale == -2 or rev.last_was_syn else rev.win_scale
            if ((seq + seglen) & _M) == ((rev.lastack + ((rev.window << shift) & _M)) & _M):
                note = WINDOW_FULL
    elif ack == lastack:
        if window != fwd.window:
            note = WINDOW_UPDATE
        elif rev.lastflags & KEEP_ALIVE:
            note = KEEP_ALIVE_ACK
        else:
            fwd.dupacknum = dupnum = 1 if fwd.dupacknum < 0 else fwd.dupacknum + 1
            note = DUP_ACK
    if ack != lastack:
        fwd.lastnondupack = pkt.frame
        fwd.dupacknum = 0
    if rev.maxseqtobeacked and flags & TH_ACK:
        note |= _acked_unseen(rev, ack)
    if seglen:
        rlast = rev.lastack
        if rlast and seq_ge(rlast, seq + seglen):
            note |= SPURIOUS
        nextseq = (seq + seglen) & _M
        fwd.nextseq = nextseq
        fwd.nextseq_ts = ts
        fwd.nextseq_frame = pkt.frame
        fwd.nextseq_tsval = pkt.tsval
        if seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked:
            fwd.maxseqtobeacked = nextseq
        fwd.data_segments += 1
        fwd.data_bytes += seglen
    elif seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked:
        fwd.maxseqtobeacked = seq
    fwd.window = window
    fwd.lastack = ack
    fwd.lastack_ts = ts
    fwd.lastflags = note
    fwd.last_was_syn = 0
    if fwd.zero_window_since_ns is not None:
        _end_zero_window(fwd, ts)
    _record(self, st, fwd, note, dupnum, seglen, pkt.frame, ts, flags)
    return (note & SPURIOUS) != 0


@cython.cfunc
@cython.locals(since=cython.longlong, spell=cython.longlong)
def _end_zero_window(fwd: DirectionStats, ts: cython.longlong) -> None:
    """The window reopened: close this direction's zero-window spell."""
    since = fwd.zero_window_since_ns
    spell = ts - since
    fwd.zero_window_ns += spell
    if spell > fwd.zero_window_max_ns:
        fwd.zero_window_max_ns = spell
    fwd.zero_window_since_ns = None


@cython.cfunc
@cython.locals(entry=object)
def _record(
    an: TcpAnalyzer, st: TcpaState, fwd: DirectionStats, note: cython.int, dupnum: cython.longlong,
    seglen: cython.longlong, frame: cython.longlong, ts: cython.longlong, flags: cython.int,
) -> None:  # fmt: skip
    """Count the segment's analysis note and remember it for `kinds`/`notes`/`dup_ack`."""
    if note:
        _count(fwd, note, seglen, frame, ts, flags)
        if an.keep_frames:
            if dupnum:
                an._frames[frame] = (note, dupnum, fwd.lastnondupack)
            else:
                an._frames[frame] = note


@cython.cfunc
@cython.locals(flags=cython.int, side=cython.int, ws=cython.int)
def _syn(
    st: TcpaState, fwd: DirectionStats, rev: DirectionStats, pkt: Packet, from_orig: cython.bint
) -> None:
    """Window scaling (Wireshark's verify_tcp_window_scaling) and SYN bookkeeping."""
    flags = pkt.flags
    ws = window_scale(pkt.raw_options)
    if ws >= 0:
        fwd.win_scale = min(ws, 14)
    if fwd.win_scale == -1:
        # this SYN has no window scale option: neither side scales
        fwd.win_scale = rev.win_scale = -2
    elif flags & TH_ACK and rev.win_scale == -2:
        fwd.win_scale = -2
    if not flags & TH_ACK:
        st.mru_syn_ns = pkt.ts_ns
        side = 0 if from_orig else 1
        if st.syns is None:
            st.syns = [(pkt.ts_ns, pkt.frame)]
            st.syn_side = side
        elif side == st.syn_side and len(st.syns) < _SYN_TIMES:
            st.syns.append((pkt.ts_ns, pkt.frame))


@cython.cfunc
def _count(
    fwd: DirectionStats,
    note: cython.int,
    seglen: cython.longlong,
    frame: cython.longlong,
    ts: cython.longlong,
    flags: cython.int,
) -> None:
    counts = fwd.counts
    if counts is None:
        counts = fwd.counts = [0] * len(KINDS)
    ev = fwd.evidence
    if ev is None:
        ev = fwd.evidence = {}
    first_ns = fwd.first_ns  # (made with evidence)
    if first_ns is None:
        first_ns = fwd.first_ns = {}
    for bit, i in _BITS:
        if note & bit:
            counts[i] += 1
            frames = ev.get(KINDS[i])
            if frames is None:
                ev[KINDS[i]] = [frame]
                first_ns[KINDS[i]] = ts
            elif len(frames) < EVIDENCE_PER_KIND:
                frames.append(frame)
    if note & _ANY_RETRANS:
        fwd.retrans_segments += 1
        fwd.retrans_bytes += seglen
        if flags & TH_SYN:
            fwd.retrans_syn += 1
        elif flags & TH_FIN and not seglen:
            fwd.retrans_fin += 1
    if note & ZWP:
        fwd.window_probes += 1
    if note & KEEP_ALIVE:
        if fwd.keep_alive_first_ns is None:
            fwd.keep_alive_first_ns = ts
        fwd.keep_alive_last_ns = ts


@cython.cfunc
@cython.exceptval(check=False)
@cython.locals(rmax=cython.longlong, note=cython.int)
def _acked_unseen(rev: DirectionStats, ack: cython.longlong) -> cython.int:
    """ACKED_UNSEEN when this ACK acknowledges data the peer (`rev`) was never seen sending,
    else 0 (Wireshark's "ACKed segment that wasn't captured"). Shared by both analysis paths."""
    rmax = rev.maxseqtobeacked
    if not seq_gt(ack, rmax):
        return 0
    if not seq_ge(rmax, rev.nextseq):
        # the ACK covers a hole in what the peer was seen sending
        rev.maxseqtobeacked = rev.nextseq
        return ACKED_UNSEEN
    # beyond everything the peer sent: said once until the peer's ACK moves
    # (Wireshark parks the peer's dup-ACK counter at -1 for this)
    note = ACKED_UNSEEN if rev.dupacknum == 0 else 0
    rev.dupacknum = -1
    return note


@cython.cfunc
@cython.locals(d=cython.longlong)
def _in_flight(
    nextseq: cython.longlong, acked: cython.longlong, fin_next: cython.longlong
):  # -> int | None
    """Bytes sent up to `nextseq` and not yet acknowledged by `acked`; None when unknown. A FIN
    ending at `nextseq` takes a sequence number but is no data (RFC 9293 §3.4): not counted."""
    if not nextseq or not acked:
        return None
    d = (nextseq - acked) & _M
    if d >= _H:
        return 0
    if d and fin_next == nextseq:
        d -= 1
    return d

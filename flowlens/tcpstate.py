# cython: annotation_typing=False
# (C types come from tcpstate.pxd; the annotations here are documentation only)
"""Per-endpoint TCP state machine (RFC 9293 §3.3.2) driven by what the capture point saw.

Each packet moves its *sender* (a SYN puts it in SYN_SENT, a FIN in FIN_WAIT_1 or LAST_ACK) and
its *receiver* (a SYN/ACK puts a SYN_SENT peer in ESTABLISHED, a FIN puts it in CLOSE_WAIT,
CLOSING or TIME_WAIT, an ACK of its FIN moves it on), at the packet's timestamp. The ACK field
says what the sender had received when it sent, which is how a simultaneous close (each FIN
sent before the other arrived, RFC 9293 figure 13) is told apart from an ordinary one.

The tracker also classifies the handshake and the teardown, times the handshake legs the way
Wireshark's `tcp.analysis.initial_rtt` does (from the most recent SYN), and counts SYN retries.
"""

from __future__ import annotations

import enum

import cython
from dpkt.tcp import TH_ACK, TH_FIN, TH_RST, TH_SYN

__all__ = ["TcpState", "TcpTracker", "seq_after", "seq_ge"]


class TcpState(enum.Enum):
    """RFC 9293 connection states, as `ss` names them."""

    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT_1 = "FIN_WAIT_1"
    FIN_WAIT_2 = "FIN_WAIT_2"
    CLOSE_WAIT = "CLOSE_WAIT"
    CLOSING = "CLOSING"
    LAST_ACK = "LAST_ACK"
    TIME_WAIT = "TIME_WAIT"

    def __str__(self) -> str:
        return self.value


CLOSED = TcpState.CLOSED
SYN_SENT = TcpState.SYN_SENT
SYN_RECEIVED = TcpState.SYN_RECEIVED
ESTABLISHED = TcpState.ESTABLISHED
FIN_WAIT_1 = TcpState.FIN_WAIT_1
FIN_WAIT_2 = TcpState.FIN_WAIT_2
CLOSE_WAIT = TcpState.CLOSE_WAIT
CLOSING = TcpState.CLOSING
LAST_ACK = TcpState.LAST_ACK
TIME_WAIT = TcpState.TIME_WAIT

_SYNCHRONIZED = frozenset((SYN_RECEIVED, ESTABLISHED))
_FIN_SENT = frozenset((FIN_WAIT_1, FIN_WAIT_2, CLOSING, LAST_ACK, TIME_WAIT))

_M32 = 0xFFFFFFFF

# TCP flag bits as C constants when compiled (dpkt's names are Python objects)
_FIN = cython.declare(cython.int, TH_FIN)
_SYN = cython.declare(cython.int, TH_SYN)
_RST = cython.declare(cython.int, TH_RST)
_ACK = cython.declare(cython.int, TH_ACK)


def seq_after(a: int, b: int) -> bool:
    """a > b in 32-bit sequence space (RFC 9293 §3.4, modulo 2**32)."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


def seq_ge(a: int, b: int) -> bool:
    """a >= b in 32-bit sequence space."""
    return ((a - b) & 0xFFFFFFFF) < 0x80000000


def _leg_ms(start_ns: int, end_ns: int) -> float | None:
    """Milliseconds from start to end; None when the capture's clock went backwards between
    them (a negative round trip is no measurement)."""
    return (end_ns - start_ns) / 1e6 if end_ns >= start_ns else None


class TcpTracker:
    """Both endpoints' RFC states for one connection, plus handshake and teardown facts.

    Index 0 is the originator, 1 the responder. Timestamps are integer nanoseconds.
    """

    __slots__ = (
        "state",  # [orig TcpState, resp TcpState]
        "timeline",  # [(ts_ns, frame, endpoint 0/1, TcpState)] in capture order
        "isn",  # [orig ISN or None, resp ISN or None]
        "fin_seq",  # [seq of the FIN each side sent, or None]
        # per-side facts below are C arrays when compiled; the properties of the same name
        # without the underscore give them as (new, read-only) lists
        "_fin_acked",  # [bool, bool]
        "_fin_acked_by_fin",  # [bool, bool]: the first ACK of that FIN came with the peer's FIN
        "_syn_count",  # [SYNs (no ACK) per side]
        "_synack_count",
        "syn_ts",  # [per side] most recent SYN before any SYN/ACK (Wireshark's ts_mru_syn)
        "synack_ts",  # [per side] most recent SYN/ACK
        "synack_ms",
        "ackdat_ms",
        "handshake_acked",  # the originator's ACK of the SYN/ACK was seen
        "rejected",  # the responder answered a SYN with RST
        "first_close",  # (endpoint, "F" or "R") of the first FIN or RST, or None
        "fin_style",  # "4way", "3way" or "simultaneous" once the second FIN is seen
        "reset_by",  # endpoint that sent the first RST, or None
        "closed_ts",  # ts_ns when both endpoints left the connection (CLOSED/TIME_WAIT)
        "tw_start",  # [ts_ns each side entered TIME_WAIT, or None]
        "midstream",  # no SYN or SYN/ACK opened it in the capture
        "tw_cut_short",  # a new connection took the 5-tuple while a side was in TIME_WAIT
    )

    def __init__(self) -> None:
        self.state = [CLOSED, CLOSED]
        self.timeline: list[tuple[int, int | None, int, TcpState]] = []
        self.isn = [None, None]
        self.fin_seq = [None, None]
        self._fin_acked = [False, False]
        self._fin_acked_by_fin = [False, False]
        self._syn_count = [0, 0]
        self._synack_count = [0, 0]
        self.syn_ts = [None, None]
        self.synack_ts = [None, None]
        self.synack_ms = None
        self.ackdat_ms = None
        self.handshake_acked = False
        self.rejected = False
        self.first_close = None
        self.fin_style = None
        self.reset_by = None
        self.closed_ts = None
        self.tw_start = [None, None]
        self.midstream = False
        self.tw_cut_short = False

    @property
    def fin_acked(self) -> list[bool]:
        return [bool(self._fin_acked[0]), bool(self._fin_acked[1])]

    @property
    def fin_acked_by_fin(self) -> list[bool]:
        return [bool(self._fin_acked_by_fin[0]), bool(self._fin_acked_by_fin[1])]

    @property
    def syn_count(self) -> list[int]:
        return [self._syn_count[0], self._syn_count[1]]

    @property
    def synack_count(self) -> list[int]:
        return [self._synack_count[0], self._synack_count[1]]

    # ------------------------------------------------------------------ transitions
    @cython.boundscheck(False)
    @cython.wraparound(False)
    def set_state(self, side: int, new: TcpState, ts_ns: int, frame: int | None) -> None:
        if self.state[side] is not new:
            self.state[side] = new
            self.timeline.append((ts_ns, frame, side, new))
            if new is TIME_WAIT:
                self.tw_start[side] = ts_ns

    def swap(self) -> None:
        """Exchange the roles of the two endpoints (the originator was chosen wrongly, e.g.
        a SYN/ACK was the first packet seen); every per-side fact moves with its endpoint."""
        for pair in (self.state, self.isn, self.fin_seq, self.syn_ts, self.synack_ts, self.tw_start):
            pair[0], pair[1] = pair[1], pair[0]
        self._fin_acked[0], self._fin_acked[1] = self._fin_acked[1], self._fin_acked[0]
        self._fin_acked_by_fin[0], self._fin_acked_by_fin[1] = self._fin_acked_by_fin[1], self._fin_acked_by_fin[0]
        self._syn_count[0], self._syn_count[1] = self._syn_count[1], self._syn_count[0]
        self._synack_count[0], self._synack_count[1] = self._synack_count[1], self._synack_count[0]
        self.timeline = [(t, f, 1 - s, st) for t, f, s, st in self.timeline]
        if self.first_close is not None:
            self.first_close = (1 - self.first_close[0], self.first_close[1])
        if self.reset_by is not None:
            self.reset_by = 1 - self.reset_by

    def start_midstream(self, ts_ns: int, frame: int) -> None:
        """The capture begins inside the connection: both endpoints are taken as ESTABLISHED."""
        self.midstream = True
        self.set_state(0, ESTABLISHED, ts_ns, frame)
        self.set_state(1, ESTABLISHED, ts_ns, frame)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(peer=cython.int, state=list, s=object)
    def packet(self, side: int, flags: int, seq: int, ack: int, plen: int, ts_ns: int, frame: int):
        """Advance both endpoints for one packet sent by `side` (0 orig, 1 resp)."""
        peer = 1 - side
        state = self.state
        if flags & _RST:
            if self.first_close is None:
                self.first_close = (side, "R")
            if side == 1 and self._synack_count[1] == 0 and self._syn_count[0] and state[0] is SYN_SENT:
                self.rejected = True
            if self.reset_by is None and not self._fully_closed():
                self.reset_by = side
            self.set_state(side, CLOSED, ts_ns, frame)
            if state[peer] is not CLOSED:
                self.set_state(peer, CLOSED, ts_ns, frame)
            self._note_closed(ts_ns)
            return
        if flags & _SYN:
            if flags & _ACK:
                self._synack_count[side] += 1
                if self.isn[side] is None:
                    self.isn[side] = seq
                if side == 1 and self.synack_ts[1] is None and self.syn_ts[0] is not None:
                    self.synack_ms = _leg_ms(self.syn_ts[0], ts_ns)
                self.synack_ts[side] = ts_ns
                s = state[side]
                if s is CLOSED or s is SYN_SENT:
                    self.set_state(side, SYN_RECEIVED, ts_ns, frame)
                s = state[peer]
                if s is SYN_SENT or s is SYN_RECEIVED:
                    self.set_state(peer, ESTABLISHED, ts_ns, frame)
                elif s is CLOSED and not self._syn_count[peer]:
                    # the capture began after the SYN: its sender gets the SYN/ACK it waited for
                    self.set_state(peer, ESTABLISHED, ts_ns, frame)
                return
            self._syn_count[side] += 1
            if self.isn[side] is None:
                self.isn[side] = seq
            if self.synack_ts[peer] is None:
                self.syn_ts[side] = ts_ns  # most recent SYN before the SYN/ACK
            if state[side] is CLOSED:
                self.set_state(side, SYN_SENT, ts_ns, frame)
            if state[peer] is SYN_SENT:  # simultaneous open: the SYNs crossed
                self.set_state(peer, SYN_RECEIVED, ts_ns, frame)
                self.set_state(side, SYN_RECEIVED, ts_ns, frame)
            return
        if flags & _ACK:
            self._ack(side, flags, ack, ts_ns, frame)
        if flags & _FIN:
            self._fin(side, flags, seq + plen, ack, ts_ns, frame)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(peer=cython.int, state=list, isn=object, fin=object, current=object)
    def _ack(self, side: int, flags: int, ack: int, ts_ns: int, frame: int) -> None:
        peer = 1 - side
        state = self.state
        if state[peer] is SYN_RECEIVED and self.isn[peer] is not None:
            if seq_after(ack, self.isn[peer]):
                self.set_state(peer, ESTABLISHED, ts_ns, frame)
                if side == 0 and not self.handshake_acked and self.synack_ts[1] is not None:
                    self.handshake_acked = True
                    self.ackdat_ms = _leg_ms(self.synack_ts[1], ts_ns)
        elif side == 0 and not self.handshake_acked and self.synack_ts[1] is not None:
            if self.isn[1] is not None and seq_after(ack, self.isn[1]):
                self.handshake_acked = True
                self.ackdat_ms = _leg_ms(self.synack_ts[1], ts_ns)
        if state[side] is SYN_SENT and self._synack_count[peer]:
            self.set_state(side, ESTABLISHED, ts_ns, frame)
        fin = self.fin_seq[peer]
        if fin is not None and not self._fin_acked[peer] and seq_after(ack, fin):
            self._fin_acked[peer] = True
            self._fin_acked_by_fin[peer] = bool(flags & _FIN)
            current = state[peer]
            if current is FIN_WAIT_1:
                self.set_state(peer, FIN_WAIT_2, ts_ns, frame)
            elif current is CLOSING:
                self.set_state(peer, TIME_WAIT, ts_ns, frame)
            elif current is LAST_ACK:
                self.set_state(peer, CLOSED, ts_ns, frame)
            self._note_closed(ts_ns)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(peer=cython.int, state=list, peer_fin=object, saw_peer_fin=cython.bint, s=object)
    def _fin(self, side: int, flags: int, fin_seq: int, ack: int, ts_ns: int, frame: int) -> None:
        peer = 1 - side
        state = self.state
        if self.fin_seq[side] is not None:
            return  # a retransmitted FIN changes nothing
        self.fin_seq[side] = fin_seq
        if self.first_close is None:
            self.first_close = (side, "F")
        peer_fin = self.fin_seq[peer]
        if peer_fin is None:
            # First FIN: the sender starts an active close, the receiver learns of it.
            s = state[side]
            if s is ESTABLISHED or s is SYN_RECEIVED or s is SYN_SENT or s is CLOSED:
                self.set_state(side, FIN_WAIT_1, ts_ns, frame)
            s = state[peer]
            if s is ESTABLISHED or s is SYN_RECEIVED or s is SYN_SENT:
                self.set_state(peer, CLOSE_WAIT, ts_ns, frame)
            return
        # Second FIN. Did its sender already have the first FIN? Its ACK field says.
        saw_peer_fin = bool(flags & _ACK) and seq_after(ack, peer_fin)
        if saw_peer_fin:
            # 3-way when this very FIN carried the first ACK of the peer's FIN (FIN+ACK).
            self.fin_style = "3way" if self._fin_acked_by_fin[peer] else "4way"
            self.set_state(side, LAST_ACK, ts_ns, frame)
            s = state[peer]
            if s is FIN_WAIT_1 or s is FIN_WAIT_2:
                # The FIN (and, in the 3-way case, its ACK) reaches the active closer.
                self.set_state(peer, TIME_WAIT, ts_ns, frame)
            elif state[peer] is CLOSING:
                self.set_state(peer, TIME_WAIT, ts_ns, frame)
        else:
            # Simultaneous close: this FIN left before the peer's FIN arrived.
            self.fin_style = "simultaneous"
            self.set_state(side, CLOSING, ts_ns, frame)
            s = state[peer]
            if s is FIN_WAIT_1 or s is CLOSE_WAIT or s is ESTABLISHED:
                self.set_state(peer, CLOSING, ts_ns, frame)
            elif state[peer] is FIN_WAIT_2:
                self.set_state(peer, TIME_WAIT, ts_ns, frame)
        self._note_closed(ts_ns)

    # ------------------------------------------------------------------ summaries
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(s=list, a=object, b=object)
    def _fully_closed(self) -> bool:
        s = self.state
        a, b = s[0], s[1]
        return (a is CLOSED or a is TIME_WAIT) and (b is CLOSED or b is TIME_WAIT) and len(self.timeline) > 0

    def _note_closed(self, ts_ns: int) -> None:
        if self.closed_ts is None and self._fully_closed():
            self.closed_ts = ts_ns

    def handshake(self) -> str:
        """`3way`, `simultaneous_open`, `rejected`, `unanswered`, `incomplete` or `missing`."""
        if self._syn_count[0] and self._syn_count[1]:
            return "simultaneous_open"
        if self.rejected:
            return "rejected"
        if self._syn_count[0] and self._synack_count[1] and self.handshake_acked:
            return "3way"
        if self._syn_count[0] and not self._synack_count[1]:
            return "unanswered" if self.reset_by is None else "incomplete"
        if self._syn_count[0] or self._synack_count[1] or self._synack_count[0] or self._syn_count[1]:
            return "incomplete"
        return "missing"

    def teardown(self) -> str:
        """`4way`, `3way`, `simultaneous`, `half_closed`, `reset_orig`, `reset_resp` or `open`."""
        if self.reset_by is not None:
            return "reset_orig" if self.reset_by == 0 else "reset_resp"
        if self.fin_style is not None:
            return self.fin_style
        if self.fin_seq[0] is not None or self.fin_seq[1] is not None:
            return "half_closed"
        return "open"

    def close_initiator(self) -> str | None:
        if self.first_close is None:
            return None
        return "orig" if self.first_close[0] == 0 else "resp"

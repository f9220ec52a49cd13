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

from .constants import UNSET
from .decode import TH_ACK, TH_FIN, TH_RST, TH_SYN

if not cython.compiled:  # (compiled: cimported in tcpstate.pxd, inline C)
    from .constants import seq_gt

__all__ = ["TIMER_REASONS", "TcpState", "TcpTracker"]


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

# TCP flag bits as C constants when compiled (the imported names are Python objects)
_FIN = cython.declare(cython.int, TH_FIN)
_SYN = cython.declare(cython.int, TH_SYN)
_RST = cython.declare(cython.int, TH_RST)
_ACK = cython.declare(cython.int, TH_ACK)

# Inside the tracker an endpoint's state is its index in TcpState (a C int when compiled);
# `state` and `timeline` give TcpState members.
_STATES = tuple(TcpState)
_CODE = {s: i for i, s in enumerate(_STATES)}
_S_CLOSED = cython.declare(cython.int, _CODE[CLOSED])
_S_SYN_SENT = cython.declare(cython.int, _CODE[SYN_SENT])
_S_SYN_RECEIVED = cython.declare(cython.int, _CODE[SYN_RECEIVED])
_S_ESTABLISHED = cython.declare(cython.int, _CODE[ESTABLISHED])
_S_FIN_WAIT_1 = cython.declare(cython.int, _CODE[FIN_WAIT_1])
_S_FIN_WAIT_2 = cython.declare(cython.int, _CODE[FIN_WAIT_2])
_S_CLOSE_WAIT = cython.declare(cython.int, _CODE[CLOSE_WAIT])
_S_CLOSING = cython.declare(cython.int, _CODE[CLOSING])
_S_LAST_ACK = cython.declare(cython.int, _CODE[LAST_ACK])
_S_TIME_WAIT = cython.declare(cython.int, _CODE[TIME_WAIT])

#: "None" in the tracker's per-side number arrays (ISN, FIN sequence, timestamps, frames)
_UNSET = cython.declare(cython.longlong, UNSET)  # no ISN, seq or ts_ns is that

#: state changes a tracker keeps in its own arrays (C arrays when compiled: tcpstate.pxd
#: declares them with this many elements, keep the two equal); a connection rarely makes more
#: than ten, and later ones go to a list
_TL_INLINE = cython.declare(cython.int, 12)

#: why a timed state ended without a packet (see `TcpTracker.spans`), for ladders and timelines
TIMER_REASONS = {
    TcpState.TIME_WAIT: "TIME_WAIT over (2 x MSL)",
    TcpState.SYN_SENT: "SYN_SENT given up (no SYN retransmission when one was due: retries "
    "exhausted, or the application closed it; inferred, no packet)",
    TcpState.SYN_RECEIVED: "SYN_RECEIVED given up (no SYN/ACK retransmission when one was due: "
    "retries exhausted, or the request dropped; inferred, no packet)",
    TcpState.FIN_WAIT_2: "orphaned FIN_WAIT_2 dropped (tcp_fin_timeout; inferred, no packet)",
}


# The retransmission timer of a SYN_SENT socket and of a SYN_RECEIVED request, as Linux runs it
# (net/ipv4/tcp_timer.c, net/ipv4/inet_connection_sock.c; see `TcpTracker._rto_after`), in ns:
#: TCP_TIMEOUT_INIT (include/net/tcp.h), the RTO armed after the first SYN or SYN/ACK: 1 s, as
#: RFC 6298 §2.1 says ("the sender SHOULD set RTO <- 1 second")
_TIMEOUT_INIT_NS = cython.declare(cython.longlong, 1_000_000_000)
#: TCP_RTO_MAX (include/net/tcp.h): no RTO doubles past 120 s
_RTO_MAX_NS = cython.declare(cython.longlong, 120_000_000_000)
#: SYNs (or SYN/ACKs) of one side closer than this are one transmission the capture saw twice,
#: not a retransmission (no RTO is that short: TCP_RTO_MIN is 200 ms)
_RTX_DUP_NS = cython.declare(cython.longlong, 1_000_000)
#: how late a retransmission may be seen after its RTO ran out, on top of 8/63 of the RTO (the
#: timer wheel never fires early and late by at most one bucket of the level the timeout falls
#: in: a level's granularity is 8^n jiffies and it takes timeouts from 63 x 8^(n-1) jiffies on,
#: kernel/time/timer.c, calc_index), for a jiffy (10 ms at HZ=100), the softirq and the path
_RTX_LATE_NS = cython.declare(cython.longlong, 100_000_000)
# _rtx_flags bits
_RTX_DOUBLED = cython.declare(cython.int, 1)  # an interval twice the one before was seen
_RTX_SYNACK = cython.declare(cython.int, 2)  # the side retransmits SYN/ACKs (not SYNs)
_RTX_VOID = cython.declare(cython.int, 4)  # the peer resent its SYN: SYN/ACKs not on the timer


def _opt(value: int) -> int | None:
    return None if value == _UNSET else value


@cython.cfunc
@cython.returns(cython.longlong)
@cython.locals(start_ns=cython.longlong, end_ns=cython.longlong)
def _leg_ns(start_ns, end_ns):
    """Nanoseconds from start to end; _UNSET when the capture's clock went backwards between
    them (a negative round trip is no measurement)."""
    return end_ns - start_ns if end_ns >= start_ns else _UNSET


class TcpTracker:
    """Both endpoints' RFC states for one connection, plus handshake and teardown facts.

    Index 0 is the originator, 1 the responder. Timestamps are integer nanoseconds.

    The per-side facts are kept in two-element arrays (C arrays when compiled: no Python
    objects per packet), `_UNSET` standing for None; the properties of the same name without
    the underscore (`state`, `isn`, `syn_count`, ...) give them as new, read-only lists.
    """

    __slots__ = (
        "_state",  # [orig, resp] state, as its index in TcpState (see `state`)
        # the state changes in capture order (see `timeline`): the first _TL_INLINE in arrays,
        # one element per change, the rest as (ts_ns, frame, endpoint, state code) tuples
        "_tl_n",  # how many changes there are
        "_tl_ts",  # ts_ns
        "_tl_frame",  # frame, or _UNSET (a change no packet caused)
        "_tl_side",  # endpoint 0/1
        "_tl_state",  # the state entered, as its index in TcpState
        "_tl_more",  # changes after the first _TL_INLINE (None until there are any)
        "_timeline_max_ns",  # latest ts_ns in timeline (_UNSET while empty)
        "_isn",  # [orig ISN or None, resp ISN or None]
        "_fin_seq",  # [seq of the FIN each side sent, or None]
        "_fin_acked",  # [bool, bool]
        "_fin_acked_by_fin",  # [bool, bool]: the first ACK of that FIN came with the peer's FIN
        "_syn_count",  # [SYNs (no ACK) per side]
        "_synack_count",
        "_syn_ts",  # [per side] most recent SYN before any SYN/ACK (Wireshark's ts_mru_syn)
        "_synack_ts",  # [per side] most recent SYN/ACK
        "_synack_ns",  # handshake legs (see synack_ms and ackdat_ms), _UNSET until measured
        "_ackdat_ns",
        "handshake_acked",  # the originator's ACK of the SYN/ACK was seen
        "rejected",  # the responder answered a SYN with RST
        "first_close",  # (endpoint, "F" or "R") of the first FIN or RST, or None
        "fin_style",  # "4way", "3way" or "simultaneous" once the second FIN is seen
        "reset_by",  # endpoint that sent the first RST, or None
        "closed_ts",  # ts_ns when both endpoints left the connection (CLOSED/TIME_WAIT)
        "_since",  # [per side] ts_ns it entered its current state (_UNSET: it never changed)
        "_tw_start",  # [ts_ns each side entered TIME_WAIT, or None]
        "_tw_restart",  # [ts_ns of the last retransmitted FIN that restarted its 2 x MSL, or None]
        "_snd_max",  # [per side] the highest sequence number it sent, + 1 (SND.NXT as seen)
        "_last_ack",  # [per side] the ACK field of its latest segment (its RCV.NXT then)
        "_last_win",  # [per side] the window of that segment in bytes (scaled), -1 while unknown
        "_wscale",  # [per side] the window scale shift its SYN offered (RFC 7323), -1: none
        "_synack_ack",  # [per side] the ACK field of its first SYN/ACK (the peer's ISN + 1)
        "_cw_sent",  # [per side] payload bytes it sent while in CLOSE_WAIT (a half-close's data)
        "_fw2_last",  # [per side] ts_ns of the last packet it sent while in FIN_WAIT_2
        "_late_fin",  # [per side] ts_ns of the peer's FIN that came after its orphan timer ran
        # out (see `_fin_reaches`), _UNSET: none
        "_carry_ts",  # ts_ns this record took its endpoints over from the previous record on
        # the 5-tuple (`continue_from`), _UNSET: it did not
        "_carry_since",  # [per side] when that endpoint entered the state it was carried in
        "rst_ignored",  # the first RST no endpoint accepts (see `_rst_valid`): (ts_ns, frame,
        # sender, reason) or None
        "rst_ignored_then",  # frame of the first packet after it (the connection went on)
        "_notes",  # [(ts_ns, frame or None, side, kind, text)]: rows for the timeline that are
        # no state change (an ignored RST), or None while there are none (see `notes`)
        "midstream",  # no SYN or SYN/ACK opened it in the capture
        "tw_cut_short",  # a new connection took the 5-tuple while a side was in TIME_WAIT
        # how long the timed states last before the endpoint gives up on its own (see
        # `state_at`), in ns; _UNSET: no timer (the state lasts until a packet changes it)
        "_tw_ns",  # TIME_WAIT: 2 x MSL
        "_syn_sent_ns",  # SYN_SENT: the SYN retry budget
        "_syn_received_ns",  # SYN_RECEIVED: the SYN/ACK retry budget
        "_fin_wait_2_ns",  # an orphaned FIN_WAIT_2: tcp_fin_timeout
        "_syn_linear",  # SYN retransmissions before the RTO starts doubling (Linux 6.5+:
        # net.ipv4.tcp_syn_linear_timeouts, Config.syn_linear_timeouts), when the capture's
        # intervals cannot tell
        # the retransmission schedule each side showed in SYN_SENT (its SYNs) or SYN_RECEIVED
        # (its SYN/ACKs), for the end of those states (see `_rto_after`); an attempt's SYNs in
        # earlier records that Zeek's attempt timer ended count too (`continue_attempt`)
        "_rtx_first",  # [per side] ts_ns of its first SYN or SYN/ACK, _UNSET: none
        "_rtx_last",  # [per side] ts_ns of its latest
        "_rtx_gap",  # [per side] the interval before the latest, _UNSET with fewer than two
        "_rtx_n",  # [per side] how many
        "_rtx_flags",  # [per side] _RTX_DOUBLED | _RTX_SYNACK | _RTX_VOID
        "_seen_to",  # ts_ns the capture is known to have run to (`capture_ran_to`), _UNSET
    )

    def __init__(
        self,
        time_wait_ns: int | None = None,
        syn_sent_ns: int | None = None,
        syn_received_ns: int | None = None,
        fin_wait_2_ns: int | None = None,
        syn_linear_timeouts: int = 4,
    ) -> None:
        """The timers (ns) are the connection table's Config (`Config.state_timers_ns`): the
        table hands them in when it creates the tracker. None: that state has no timer (a bare
        tracker, as tests build, keeps every state until a packet changes it).
        `syn_linear_timeouts`: Config.syn_linear_timeouts (see `_rto_after`)."""
        self._tw_ns = _UNSET if time_wait_ns is None else time_wait_ns
        self._syn_sent_ns = _UNSET if syn_sent_ns is None else syn_sent_ns
        self._syn_received_ns = _UNSET if syn_received_ns is None else syn_received_ns
        self._fin_wait_2_ns = _UNSET if fin_wait_2_ns is None else fin_wait_2_ns
        self._syn_linear = syn_linear_timeouts
        self._rtx_first = [_UNSET, _UNSET]
        self._rtx_last = [_UNSET, _UNSET]
        self._rtx_gap = [_UNSET, _UNSET]
        self._rtx_n = [0, 0]
        self._rtx_flags = [0, 0]
        self._seen_to = _UNSET
        self._state = [_S_CLOSED, _S_CLOSED]
        self._tl_n = 0
        if not cython.compiled:  # (compiled, these are C arrays, zeroed with the object)
            self._tl_ts = [0] * _TL_INLINE
            self._tl_frame = [0] * _TL_INLINE
            self._tl_side = [0] * _TL_INLINE
            self._tl_state = [0] * _TL_INLINE
        self._tl_more: list[tuple[int, int, int, int]] | None = None
        self._timeline_max_ns = _UNSET
        self._isn = [_UNSET, _UNSET]
        self._fin_seq = [_UNSET, _UNSET]
        self._fin_acked = [False, False]
        self._fin_acked_by_fin = [False, False]
        self._syn_count = [0, 0]
        self._synack_count = [0, 0]
        self._syn_ts = [_UNSET, _UNSET]
        self._synack_ts = [_UNSET, _UNSET]
        self._synack_ns = _UNSET
        self._ackdat_ns = _UNSET
        self.handshake_acked = False
        self.rejected = False
        self.first_close: tuple[int, str] | None = None
        self.fin_style: str | None = None
        self.reset_by: int | None = None
        self.closed_ts: int | None = None
        self._since = [_UNSET, _UNSET]
        self._tw_start = [_UNSET, _UNSET]
        self._tw_restart = [_UNSET, _UNSET]
        self._snd_max = [_UNSET, _UNSET]
        self._last_ack = [_UNSET, _UNSET]
        self._last_win = [-1, -1]
        self._wscale = [-1, -1]
        self._synack_ack = [_UNSET, _UNSET]
        self._cw_sent = [0, 0]
        self._fw2_last = [_UNSET, _UNSET]
        self._late_fin = [_UNSET, _UNSET]
        self._carry_ts = _UNSET
        self._carry_since = [_UNSET, _UNSET]
        self.rst_ignored: tuple[int, int, int, str] | None = None
        self.rst_ignored_then: int | None = None
        self._notes: list[tuple[int, int | None, int, str, str]] | None = None
        self.midstream = False
        self.tw_cut_short = False

    # ------------------------------------------------------------------ per-side facts as lists
    @property
    def state(self) -> list[TcpState]:
        """[orig TcpState, resp TcpState]"""
        return [_STATES[self._state[0]], _STATES[self._state[1]]]

    @property
    def isn(self) -> list[int | None]:
        return [_opt(self._isn[0]), _opt(self._isn[1])]

    @property
    def fin_seq(self) -> list[int | None]:
        return [_opt(self._fin_seq[0]), _opt(self._fin_seq[1])]

    @property
    def fin_acked(self) -> list[bool]:
        return [bool(self._fin_acked[0]), bool(self._fin_acked[1])]

    @property
    def fin_acked_by_fin(self) -> list[bool]:
        return [bool(self._fin_acked_by_fin[0]), bool(self._fin_acked_by_fin[1])]

    # scalar reads for other modules (C calls when compiled: cpdef in tcpstate.pxd)
    def syns_sent(self, side: int) -> int:
        """SYNs without ACK that `side` (0 orig, 1 resp) sent: 1 for a first try, more on retries."""
        return self._syn_count[side]

    def synacks_sent(self, side: int) -> int:
        """SYN/ACKs that `side` sent."""
        return self._synack_count[side]

    def isn_of(self, side: int) -> int:
        """`side`'s initial sequence number, or constants.UNSET before its SYN was seen."""
        return self._isn[side]

    def synack_leg_ns(self) -> int:
        """SYN -> SYN/ACK at the capture point, ns, or constants.UNSET (see `synack_ms`)."""
        return self._synack_ns

    def ackdat_leg_ns(self) -> int:
        """SYN/ACK -> ACK at the capture point, ns, or constants.UNSET (see `ackdat_ms`)."""
        return self._ackdat_ns

    def sent_in_close_wait(self, side: int) -> int:
        """Payload bytes `side` sent while in CLOSE_WAIT: after its peer's FIN, before its own.
        A side that goes on sending is in a half-close (RFC 9293 §3.6: a FIN closes only its
        sender's direction), not leaking its socket."""
        return self._cw_sent[side]

    def fin_sent(self, side: int) -> bool:
        """Did `side` send a FIN?"""
        return self._fin_seq[side] != _UNSET

    @property
    def syn_count(self) -> list[int]:
        return [self._syn_count[0], self._syn_count[1]]

    @property
    def synack_count(self) -> list[int]:
        return [self._synack_count[0], self._synack_count[1]]

    @property
    def syn_ts(self) -> list[int | None]:
        return [_opt(self._syn_ts[0]), _opt(self._syn_ts[1])]

    @property
    def synack_ts(self) -> list[int | None]:
        return [_opt(self._synack_ts[0]), _opt(self._synack_ts[1])]

    @property
    def tw_start(self) -> list[int | None]:
        return [_opt(self._tw_start[0]), _opt(self._tw_start[1])]

    @property
    def synack_ms(self) -> float | None:
        """SYN -> SYN/ACK at the capture point, from the most recent SYN (Wireshark's first
        leg of tcp.analysis.initial_rtt), in ms; None until seen or if the clock went back."""
        return None if self._synack_ns == _UNSET else self._synack_ns / 1e6

    @property
    def ackdat_ms(self) -> float | None:
        """SYN/ACK -> the originator's ACK of it, in ms (the second leg)."""
        return None if self._ackdat_ns == _UNSET else self._ackdat_ns / 1e6

    # ------------------------------------------------------------------ the timeline
    @property
    def timeline(self) -> list[tuple[int, int | None, int, TcpState]]:
        """[(ts_ns, frame or None, endpoint 0/1, TcpState entered)] in capture order: every
        state change of either endpoint (a new list: read-only)."""
        return [self.transition(i) for i in range(self._tl_n)]

    @property
    def timeline_len(self) -> int:
        """len(timeline), without building it."""
        return self._tl_n

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def transition(self, i: int) -> tuple[int, int | None, int, TcpState]:
        """timeline[i] (0 <= i < timeline_len)."""
        if i >= _TL_INLINE:
            assert self._tl_more is not None  # (it holds the changes past _TL_INLINE)
            ts, frame, side, code = self._tl_more[i - _TL_INLINE]
        else:
            ts, frame, side, code = (
                self._tl_ts[i],
                self._tl_frame[i],
                self._tl_side[i],
                self._tl_state[i],
            )
        return (ts, None if frame == _UNSET else frame, side, _STATES[code])

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(i=cython.int, code=cython.int, last=cython.int)
    def state_code_at(self, side: int, ts_ns: int) -> int:
        """The index in TcpState of the last state `side` entered at or before `ts_ns`, or -1
        when it had entered none by then (it is CLOSED, as at the start)."""
        last = -1
        for i in range(self._tl_n):
            if i < _TL_INLINE:
                if self._tl_ts[i] > ts_ns:
                    break
                if self._tl_side[i] == side:
                    last = self._tl_state[i]
            else:
                assert self._tl_more is not None  # (it holds the changes past _TL_INLINE)
                entry = self._tl_more[i - _TL_INLINE]
                if entry[0] > ts_ns:
                    break
                if entry[2] == side:
                    last = entry[3]
        return last

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(
        i=cython.int, ts=cython.longlong, frame=cython.longlong, side=cython.int, code=cython.int
    )
    def spells(self) -> tuple[list | None, list | None]:
        """The times a side sat in CLOSE_WAIT, and in FIN_WAIT_2: for each,
        [[side, start_ns, end_ns or None, frame or None, timed_out]] in timeline order, or None
        when there were none. A spell ends at that side's next state change, or when its timer
        ran out if sooner (an orphaned FIN_WAIT_2's tcp_fin_timeout: `_timer_end`, as `spans`
        says; `timed_out` is then True); None when it lasted to the end of the timeline. (Read from the arrays: this runs
        for every closed connection.)"""
        close_wait = fin_wait_2 = None
        open0 = open1 = None  # per side: the spell it sits in, if any
        for i in range(self._tl_n):
            if i < _TL_INLINE:
                ts, frame = self._tl_ts[i], self._tl_frame[i]
                side, code = self._tl_side[i], self._tl_state[i]
            else:
                assert self._tl_more is not None  # (it holds the changes past _TL_INLINE)
                ts, frame, side, code = self._tl_more[i - _TL_INLINE]
            if side == 0:
                if open0 is not None:
                    open0[2] = ts
                    open0 = None
            elif open1 is not None:
                open1[2] = ts
                open1 = None
            if code != _S_CLOSE_WAIT and code != _S_FIN_WAIT_2:
                continue
            spell = [side, ts, None, None if frame == _UNSET else frame, False]
            if code == _S_CLOSE_WAIT:
                if close_wait is None:
                    close_wait = []
                close_wait.append(spell)
            else:
                if fin_wait_2 is None:
                    fin_wait_2 = []
                fin_wait_2.append(spell)
            if side == 0:
                open0 = spell
            else:
                open1 = spell
        for spell in fin_wait_2 or ():
            end = self._timer_end(spell[0], _S_FIN_WAIT_2, spell[1])
            if end != _UNSET and (spell[2] is None or end < spell[2]):
                spell[2] = end
                spell[4] = True
        return close_wait, fin_wait_2

    @cython.locals(last=cython.longlong, cut=cython.longlong)
    def last_change_and_closed_after(
        self, side: int, start_ns: int
    ) -> tuple[int | None, int | None]:
        """(ts of `side`'s last state change, ts of its first change to CLOSED at or after
        `start_ns`), None for either when there is none."""
        last = self.last_change_ns(side)
        cut = self.closed_at_or_after_ns(side, start_ns)
        return (None if last == _UNSET else last), (None if cut == _UNSET else cut)

    # Each answer alone, as a C number (_UNSET, -2**62, when there is none): the port-hold
    # analysis asks them for every TCP connection.
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(i=cython.int, t=cython.longlong, s=cython.int, last=cython.longlong)
    def last_change_ns(self, side: int) -> int:
        """ts of `side`'s last state change, or _UNSET when it had none."""
        last = _UNSET
        for i in range(self._tl_n):
            if i < _TL_INLINE:
                t, s = self._tl_ts[i], self._tl_side[i]
            else:
                assert self._tl_more is not None  # (it holds the changes past _TL_INLINE)
                entry = self._tl_more[i - _TL_INLINE]
                t, s = entry[0], entry[2]
            if s == side and (last == _UNSET or t > last):
                last = t
        return last

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(i=cython.int, t=cython.longlong, s=cython.int, code=cython.int)
    def closed_at_or_after_ns(self, side: int, start_ns: int) -> int:
        """ts of `side`'s first change to CLOSED at or after `start_ns`, or _UNSET."""
        for i in range(self._tl_n):
            if i < _TL_INLINE:
                t, s, code = self._tl_ts[i], self._tl_side[i], self._tl_state[i]
            else:
                assert self._tl_more is not None  # (it holds the changes past _TL_INLINE)
                entry = self._tl_more[i - _TL_INLINE]
                t, s, code = entry[0], entry[2], entry[3]
            if s == side and code == _S_CLOSED and t >= start_ns:
                return t
        return _UNSET

    # ------------------------------------------------------------------ states over time
    # The tracker is the one owner of "which state was this endpoint in at time t" and of the
    # end of its TIME_WAIT; every command (flows, states, ladder, timeline, anomalies, report)
    # reads the accessors below. The rule, written once here:
    #
    # - A state lasts until the endpoint's next change in the timeline: a packet moved it, or
    #   the table cut a TIME_WAIT short because a new connection took the 5-tuple
    #   (`cut_time_wait`; RFC 9293 §3.10.7.4 and RFC 6191: a SYN with a higher sequence number
    #   or timestamp may reopen a connection in TIME_WAIT, which Linux does, tcp_timewait_state_process).
    # - Three states also end on a timer, the endpoint then being CLOSED without a packet (and
    #   without a timeline entry): TIME_WAIT after 2 x MSL (RFC 9293 §3.3.2 and §3.10.7.4;
    #   Linux: TCP_TIMEWAIT_LEN, 60 s), SYN_SENT when its SYN retries are spent and SYN_RECEIVED
    #   when its SYN/ACK retries are. The timers come from the table's Config
    #   (`Config.state_timers_ns`), counted from the moment the side entered the state; for
    #   SYN_SENT from the attempt's first SYN, in an earlier record too (`continue_attempt`).
    # - SYN_SENT and SYN_RECEIVED end on the evidence when the capture has it (`_syn_end`). A
    #   SYN_SENT socket sends its SYN again each time its retransmission timer fires, until it
    #   gives up (tcp_retransmit_timer -> tcp_write_timeout, net/ipv4/tcp_timer.c), and a
    #   listener's request resends its SYN/ACK each time its timer fires until it is dropped
    #   (reqsk_timer_handler, net/ipv4/inet_connection_sock.c). So when the capture shows the
    #   side's SYNs (SYN/ACKs) and runs on past the moment the next one was due without it,
    #   the socket was gone at that moment: end = its last SYN (SYN/ACK) + the RTO armed after
    #   it (`_rto_after`). There its timer fired and gave up (its retries were spent, or fewer
    #   were allowed than the model's: a lower tcp_syn_retries, a listener whose SYN queue
    #   filled up cuts tcp_synack_retries down to 2), or the application had closed it earlier,
    #   at a moment the capture cannot show (a connect() timeout). "Past the moment" allows
    #   for a late timer: 8/63 of the RTO (the timer wheel's granularity) + 100 ms
    #   (_RTX_LATE_NS). When the capture ends before that, the model holds: Linux's defaults,
    #   tcp_syn_retries = 6 (SYNs at 0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67 s, given up at 131 s
    #   on Linux 6.5+, tcp_syn_linear_timeouts = 4; at 0, 1, 3, 7, 15, 31, 63 s and 127 s
    #   before; Config.syn_sent_timeout_s) and tcp_synack_retries = 5 (SYN/ACKs at 0, 1, 3, 7,
    #   15, 31 s, the request dropped at 63 s; Config.syn_received_timeout_s) - but never
    #   before the last SYN the capture shows: a socket that sent one was still there, and
    #   Config's budget then counts from that SYN. No timer (a bare tracker, a 0 in Config)
    #   turns both the model and the evidence off.
    # - An orphaned FIN_WAIT_2 ends on a timer too: once the application has closed, Linux
    #   keeps a FIN_WAIT_2 socket whose peer never sends its FIN for net.ipv4.tcp_fin_timeout
    #   (60 s; tcp_close() in net/ipv4/tcp.c hands it to tcp_time_wait(sk, TCP_FIN_WAIT2, tmo),
    #   a timewait socket that ss still shows as FIN-WAIT-2 and that dies after tmo), counted
    #   from the side's entry into FIN_WAIT_2. A side that only shut down its sending half
    #   (shutdown(SHUT_WR)) is not an orphan and has no timer; the capture tells the two apart
    #   when the peer sends data in CLOSE_WAIT: an orphan cannot take it (Linux resets,
    #   LINUX_MIB_TCPABORTONDATA in tcp_rcv_state_process), so a side that acknowledges it is
    #   not one, and so is a side the capture shows sending after its timer would have run
    #   out. Config.fin_wait_2_timeout_s = 0 turns the model off.
    # - Every other state is held however long the connection stays quiet, to the end of the
    #   capture: Linux keeps an ESTABLISHED socket with no traffic indefinitely (keep-alives are
    #   optional and off by default, RFC 9293 §3.8.4; SO_KEEPALIVE is off unless the application
    #   sets it, and tcp_keepalive_time is then 7200 s), and a CLOSE_WAIT lasts until the
    #   application closes. The table giving up on a quiet record (its idle timeout) ends the
    #   record, not the endpoints' sockets.

    @property
    def time_wait_ns(self) -> int | None:
        """How long TIME_WAIT lasts (2 x MSL from the table's Config), ns; None: no timer."""
        return None if self._tw_ns == _UNSET else self._tw_ns

    def _limit(self, code: int) -> int:
        """How long state `code` lasts on its own, ns; _UNSET: until a packet changes it."""
        if code == _S_TIME_WAIT:
            return self._tw_ns
        if code == _S_SYN_SENT:
            return self._syn_sent_ns
        if code == _S_SYN_RECEIVED:
            return self._syn_received_ns
        if code == _S_FIN_WAIT_2:
            return self._fin_wait_2_ns
        return _UNSET

    @cython.locals(limit=cython.longlong, since=cython.longlong)
    def _timer_end(self, side: int, code: int, start: int) -> int:
        """When state `code`, entered by `side` at `start`, runs out on its own; _UNSET: never.
        A TIME_WAIT counts from the last retransmitted FIN that reached it (RFC 9293 §3.10.7.4,
        TIME-WAIT STATE: "The only thing that can arrive in this state is a retransmission of
        the remote FIN. Acknowledge it, and restart the 2 MSL timeout."; Linux re-arms the
        timer the same way, inet_twsk_reschedule(tw, TCP_TIMEWAIT_LEN) in
        tcp_timewait_state_process, net/ipv4/tcp_minisocks.c)."""
        limit = self._limit(code)
        if limit == _UNSET or start == _UNSET:
            return _UNSET
        if code == _S_SYN_SENT or code == _S_SYN_RECEIVED:
            return self._syn_end(side, code, start, limit, False)
        since = start
        if start == self._carry_ts and self._carry_since[side] != _UNSET:
            # a state carried over from the previous record (`continue_from`): its timer runs
            # from when the endpoint entered it there
            since = self._carry_since[side]
        if code == _S_FIN_WAIT_2 and (
            self._cw_sent[1 - side]
            or (self._fw2_last[side] != _UNSET and self._fw2_last[side] >= since + limit)
        ):
            # it took the peer's data after its FIN (shut down, not orphaned), or it still
            # answered after the timeout: this socket had no such timer
            return _UNSET
        if (
            code == _S_TIME_WAIT
            and start == self._tw_start[side]
            and self._tw_restart[side] != _UNSET
            and self._tw_restart[side] > since
        ):
            return self._tw_restart[side] + limit
        return since + limit

    @cython.locals(
        since=cython.longlong, rto=cython.longlong, due=cython.longlong, model=cython.longlong,
        late=cython.longlong,
    )  # fmt: skip
    def _syn_end(self, side: int, code: int, start: int, limit: int, latest: bool) -> int:
        """When `side`'s SYN_SENT or SYN_RECEIVED (`code`), entered at `start`, ends on its own
        (`limit`: the state's timer from Config), by the rule above: its last SYN (SYN/ACK) +
        the RTO armed after it when the capture ran on past that without one, else the model.
        `latest`: the latest moment the answer can still move to, for `settled_ns` (the model,
        or the end of the wait for a late retransmission if that is later)."""
        since = start
        rto = _UNSET
        if self._state[side] == code and start == self._since[side]:
            # (the side's current state: an earlier spell ended on a packet)
            if code == _S_SYN_SENT and not self._rtx_flags[side] & _RTX_SYNACK:
                if self._rtx_first[side] != _UNSET:
                    since = self._rtx_first[side]
                rto = self._rto_after(side)
            elif (
                code == _S_SYN_RECEIVED
                and self._rtx_flags[side] & _RTX_SYNACK
                and not self._rtx_flags[side] & _RTX_VOID
            ):
                rto = self._rto_after(side)
        model = since + limit
        if rto == _UNSET:
            return model
        due = self._rtx_last[side] + rto
        late = due + rto * 8 // 63 + _RTX_LATE_NS
        if self._seen_to != _UNSET and self._seen_to >= late:
            return due  # the capture went on past it: no retransmission came
        if model <= self._rtx_last[side]:
            model = self._rtx_last[side] + limit  # Config's budget was spent before its last SYN
        if latest and late > model:
            return late
        return model

    @cython.locals(n=cython.longlong, k=cython.longlong, g=cython.longlong, linear=cython.longlong)
    def _rto_after(self, side: int) -> int:
        """The RTO `side`'s timer was armed with after its last SYN (or SYN/ACK), from the
        intervals the capture showed and Linux's rules, ns; _UNSET when it showed none.

        SYN_SENT (tcp_retransmit_timer, net/ipv4/tcp_timer.c): after the first SYN the RTO is
        TCP_TIMEOUT_INIT, 1 s (RFC 6298 §2.1); each retransmission doubles it (`icsk_rto << 1`,
        at most TCP_RTO_MAX, 120 s) once more than tcp_syn_linear_timeouts were sent (Linux
        6.5+: `icsk_backoff > sysctl_tcp_syn_linear_timeouts`, 4 by default; none before). The
        intervals tell the two apart once one doubled: from then on the RTO doubles. While none
        has, k retransmissions 1 s apart mean at least k - 1 linear ones: the next interval is
        the last one again if k is within the linear count (Config's, or k - 1 if the capture
        shows more), else twice it. SYN_RECEIVED (reqsk_timer_handler,
        net/ipv4/inet_connection_sock.c): the request's timer is `req->timeout <<
        req->num_timeout` (at most TCP_RTO_MAX), `req->timeout` = TCP_TIMEOUT_INIT: 1 s after
        the first SYN/ACK, then twice each interval."""
        n = self._rtx_n[side]
        if n <= 0:
            return _UNSET
        if n == 1:
            return _TIMEOUT_INIT_NS
        g = self._rtx_gap[side]
        if not self._rtx_flags[side] & (_RTX_DOUBLED | _RTX_SYNACK):
            k = n - 1  # retransmissions seen, every interval the same so far
            linear = self._syn_linear if self._syn_linear > k - 1 else k - 1
            if k <= linear:
                return g
        return _RTO_MAX_NS if 2 * g > _RTO_MAX_NS else 2 * g

    @cython.locals(gap=cython.longlong, last=cython.longlong)
    def _rtx_seen(self, side: int, ts_ns: int, synack: bool) -> None:
        """`side` sent a SYN (`synack` False) or a SYN/ACK at `ts_ns`: its retransmission
        schedule so far (see `_rto_after`). Only one kind per side is kept: the first it sent."""
        if self._rtx_n[side] and bool(self._rtx_flags[side] & _RTX_SYNACK) != synack:
            return  # (a simultaneous open: its SYN first, then a SYN/ACK)
        last = self._rtx_last[side]
        if last == _UNSET:
            self._rtx_first[side] = ts_ns
            if synack:
                self._rtx_flags[side] |= _RTX_SYNACK
        else:
            gap = ts_ns - last
            if gap < _RTX_DUP_NS:
                return  # the same segment seen twice
            if self._rtx_gap[side] != _UNSET and 2 * gap >= 3 * self._rtx_gap[side]:
                self._rtx_flags[side] |= _RTX_DOUBLED
            self._rtx_gap[side] = gap
        self._rtx_last[side] = ts_ns
        self._rtx_n[side] += 1

    def capture_ran_to(self, ts_ns: int) -> None:
        """The capture is known to have gone on to `ts_ns` (the connection table's clock when
        the record ends, and at any packet that takes its 5-tuple over): how far the evidence
        for the end of SYN_SENT and SYN_RECEIVED reaches (see `_syn_end`)."""
        if self._seen_to == _UNSET or ts_ns > self._seen_to:
            self._seen_to = ts_ns

    def syn_attempt(self) -> tuple[int, int, int, int, int] | None:
        """The originator's SYN schedule so far, for the record that continues its attempt
        after Zeek's attempt timer ended this one (`continue_attempt`): (first SYN ts_ns, last
        SYN ts_ns, last interval or constants.UNSET, SYNs, flags), or None without SYNs."""
        if self._rtx_n[0] == 0 or self._rtx_flags[0] & _RTX_SYNACK:
            return None
        return (
            self._rtx_first[0],
            self._rtx_last[0],
            self._rtx_gap[0],
            self._rtx_n[0],
            self._rtx_flags[0],
        )

    def continue_attempt(self, attempt: tuple[int, int, int, int, int] | None) -> None:
        """This record continues the connection attempt of an earlier one on the 5-tuple (a
        SYN with the same ISN after Zeek's attempt timer ended it: ConnectionTable._open_tcp):
        its originator's SYNs there (`syn_attempt`) count as this side's, before its own."""
        if attempt is None or self._rtx_n[0]:
            return
        self._rtx_first[0], self._rtx_last[0], self._rtx_gap[0] = attempt[0], attempt[1], attempt[2]
        self._rtx_n[0], self._rtx_flags[0] = attempt[3], attempt[4]

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(
        i=cython.int, code=cython.int, c=cython.int, s=cython.int, t=cython.longlong,
        start=cython.longlong, end=cython.longlong,
    )  # fmt: skip
    def state_index_at(self, side: int, ts_ns: int) -> int:
        """`state_at` as the state's index in TcpState (a C int, for the callers in C)."""
        if self._timeline_max_ns <= ts_ns:
            # no change after ts_ns (the usual question: the end of the record)
            code, start = self._state[side], self._since[side]
        else:
            code, start = _S_CLOSED, _UNSET
            for i in range(self._tl_n):
                if i < _TL_INLINE:
                    t, s, c = self._tl_ts[i], self._tl_side[i], self._tl_state[i]
                else:
                    assert self._tl_more is not None  # (it holds the changes past _TL_INLINE)
                    entry = self._tl_more[i - _TL_INLINE]
                    t, s, c = entry[0], entry[2], entry[3]
                if t > ts_ns:
                    break
                if s == side:
                    code, start = c, t
        end = self._timer_end(side, code, start)
        if end != _UNSET and ts_ns >= end:
            return _S_CLOSED
        return code

    def state_at(self, side: int, ts_ns: int) -> TcpState:
        """The TCP state of `side` (0 orig, 1 resp) at `ts_ns`, by the rule above: the last
        state it entered at or before then (CLOSED before its first), CLOSED once that state's
        timer (TIME_WAIT, SYN_SENT, SYN_RECEIVED, an orphaned FIN_WAIT_2) has run out."""
        return _STATES[self.state_index_at(side, ts_ns)]

    @cython.locals(
        i=cython.int, t=cython.longlong, s=cython.int, c=cython.int, seen=cython.bint,
        start=cython.longlong, end=cython.longlong,
    )  # fmt: skip
    def _tw_end(self, side: int) -> int:
        """`time_wait_end_ns` as a C number (_UNSET: none)."""
        start = self._tw_start[side]
        if start == _UNSET:
            return _UNSET
        end = self._timer_end(side, _S_TIME_WAIT, start)
        if self._state[side] != _S_TIME_WAIT:
            # it left TIME_WAIT in the timeline (cut short on reuse, or a RST): the change
            # after its TIME_WAIT entry is the end, unless the timer ran out sooner
            seen = False
            for i in range(self._tl_n):
                if i < _TL_INLINE:
                    t, s, c = self._tl_ts[i], self._tl_side[i], self._tl_state[i]
                else:
                    assert self._tl_more is not None  # (it holds the changes past _TL_INLINE)
                    entry = self._tl_more[i - _TL_INLINE]
                    t, s, c = entry[0], entry[2], entry[3]
                if s != side:
                    continue
                if seen:
                    if end != _UNSET and end < t:
                        return end
                    return t
                if c == _S_TIME_WAIT and t == start:
                    seen = True
        return end

    def time_wait_end_ns(self, side: int) -> int | None:
        """When `side`'s TIME_WAIT ends: 2 x MSL after it began (or after the last retransmitted
        FIN that reached it, which restarts the timer), or sooner when the table cut
        it short (a new connection on the 5-tuple) or a RST ended it; None when the side never
        entered TIME_WAIT (or the tracker has no TIME_WAIT timer)."""
        end = self._tw_end(side)
        return None if end == _UNSET else end

    def time_wait_spell(self, side: int) -> tuple[int, int | None] | None:
        """(start_ns, end_ns) of `side`'s TIME_WAIT (the end as `time_wait_end_ns`, None
        without a timer), or None when it never entered TIME_WAIT: the one answer the port
        arithmetic asks of every TCP connection, without building `spans`."""
        start = self._tw_start[side]
        if start == _UNSET:
            return None
        end = self._tw_end(side)
        return (start, None if end == _UNSET else end)

    @cython.locals(code=cython.int, since=cython.longlong, end=cython.longlong, e=cython.longlong)
    def held_until_ns(self, side: int, open_end_ns: int) -> int:
        """Until when `side` held its socket (its local port), by the rule above: the end of
        its TIME_WAIT; its last change when it closed without one; the moment a timed state
        gave up, if before `open_end_ns`; else `open_end_ns` (the caller's end of the record:
        the socket was still open then). The same answer as `spans`, as a C number."""
        if self._tw_start[side] != _UNSET:
            e = self._tw_end(side)
            return open_end_ns if e == _UNSET else e
        code = self._state[side]
        since = self._since[side]
        if since == _UNSET:
            return open_end_ns  # it never changed state
        if code == _S_CLOSED:
            return since
        end = self._timer_end(side, code, since)
        if end != _UNSET and end < open_end_ns:
            return end
        return open_end_ns

    @property
    def tw_restart(self) -> list[int | None]:
        """[orig, resp] ts_ns of the last retransmitted FIN that restarted each side's TIME_WAIT
        timer (RFC 9293 §3.10.7.4), or None."""
        return [_opt(self._tw_restart[0]), _opt(self._tw_restart[1])]

    @property
    def time_wait_start(self) -> list[int | None]:
        """[orig, resp] ts_ns each side entered TIME_WAIT, or None (the same as `tw_start`)."""
        return self.tw_start

    @cython.locals(s=cython.int, code=cython.int, e=cython.longlong, end=cython.longlong)
    def settled_ns(self) -> int | None:
        """When the last running timer of either endpoint's current state runs out (from then
        on neither changes state without a packet), or None when neither is in a timed state:
        the table keeps a record until then, so that its end states are final."""
        end = _UNSET
        for s in range(2):
            code = self._state[s]
            if (code == _S_SYN_SENT or code == _S_SYN_RECEIVED) and self._since[s] != _UNSET:
                e = self._limit(code)
                if e != _UNSET:
                    e = self._syn_end(s, code, self._since[s], e, True)
            else:
                e = self._timer_end(s, code, self._since[s])
            if e != _UNSET and (end == _UNSET or e > end):
                end = e
        return None if end == _UNSET else end

    @cython.locals(side=cython.int, start=cython.longlong)
    def cut_time_wait(self, ts_ns: int, frame: int) -> None:
        """A new connection takes the 5-tuple at `ts_ns` (packet `frame`): a side still in
        TIME_WAIT then leaves it for CLOSED (the kernel recycles it, RFC 6191), and
        `tw_cut_short` says so; a side still in SYN_SENT or SYN_RECEIVED (an attempt that the new
        record continues) leaves it for CLOSED there too."""
        self.capture_ran_to(ts_ns)
        for side in range(2):
            if self._state[side] == _S_TIME_WAIT:
                start = self._tw_start[side]
                if start != _UNSET and (
                    self._tw_ns == _UNSET or ts_ns < self._timer_end(side, _S_TIME_WAIT, start)
                ):
                    self.tw_cut_short = True
                    self._set(side, _S_CLOSED, ts_ns, frame)
            elif self._state[side] == _S_SYN_SENT or self._state[side] == _S_SYN_RECEIVED:
                # an attempt the next record carries on (Zeek's attempt timer split it): the one
                # socket is counted there from now on, unless its timer ran out already
                if self.state_index_at(side, ts_ns) != _S_CLOSED:
                    self._set(side, _S_CLOSED, ts_ns, frame)

    @cython.locals(
        i=cython.int, n=cython.int, t=cython.longlong, f=cython.longlong, s=cython.int,
        c=cython.int, e=cython.longlong,
    )  # fmt: skip
    def spans(self) -> list[tuple[int, TcpState, int, int | None, int | None, bool]]:
        """Every state each endpoint entered, as it lasted, by the rule above:
        [(side, state, start_ns, end_ns or None, frame or None, timed_out)] in timeline order.

        `end_ns` is the side's next change, or the state's timer if that runs out sooner
        (`timed_out`: the side then entered CLOSED, with no packet and no timeline entry);
        None when the side still held the state at the end of the timeline. `frame` is the
        packet that caused the change (None: the table's cut). The CLOSED a side is in before
        its first change is not listed. The states view, the timeline's and ladder's "TIME_WAIT
        over" rows and the anomaly detector's port holds all read this one walk."""
        out: list[list] = []  # (each span a list while its end is found, then a tuple)
        last = [-1, -1]  # per side: index in `out` of the span it sits in
        n = self._tl_n
        for i in range(n):
            if i < _TL_INLINE:
                t, f, s, c = self._tl_ts[i], self._tl_frame[i], self._tl_side[i], self._tl_state[i]
            else:
                assert self._tl_more is not None  # (it holds the changes past _TL_INLINE)
                t, f, s, c = self._tl_more[i - _TL_INLINE]
            if last[s] >= 0:
                out[last[s]][3] = t
            last[s] = len(out)
            out.append([s, c, t, None, None if f == _UNSET else f, False])
        for span in out:
            e = self._timer_end(span[0], span[1], span[2])
            if e != _UNSET and (span[3] is None or e < span[3]):
                span[3] = e
                span[5] = True
            span[1] = _STATES[span[1]]
        return [tuple(span) for span in out]

    # ------------------------------------------------------------------ transitions
    def set_state(self, side: int, new: TcpState, ts_ns: int, frame: int | None) -> None:
        self._set(side, _CODE[new], ts_ns, _UNSET if frame is None else frame)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(n=cython.int)
    def _set(self, side: int, new: int, ts_ns: int, frame: int) -> None:
        """`side` enters state `new` (a TcpState index) at `ts_ns`, caused by packet `frame`
        (_UNSET: by none); recorded in the timeline when it is a change."""
        if self._state[side] != new:
            self._state[side] = new
            n = self._tl_n
            if n < _TL_INLINE:
                self._tl_ts[n] = ts_ns
                self._tl_frame[n] = frame
                self._tl_side[n] = side
                self._tl_state[n] = new
            elif self._tl_more is None:
                self._tl_more = [(ts_ns, frame, side, new)]
            else:
                self._tl_more.append((ts_ns, frame, side, new))
            self._tl_n = n + 1
            if ts_ns > self._timeline_max_ns:
                self._timeline_max_ns = ts_ns
            self._since[side] = ts_ns
            if new == _S_TIME_WAIT:
                self._tw_start[side] = ts_ns
                self._tw_restart[side] = _UNSET

    @cython.locals(i=cython.int)
    def swap(self) -> None:
        """Exchange the roles of the two endpoints (the originator was chosen wrongly, e.g.
        a SYN/ACK was the first packet seen); every per-side fact moves with its endpoint."""
        self._state[0], self._state[1] = self._state[1], self._state[0]
        self._isn[0], self._isn[1] = self._isn[1], self._isn[0]
        self._fin_seq[0], self._fin_seq[1] = self._fin_seq[1], self._fin_seq[0]
        self._fin_acked[0], self._fin_acked[1] = self._fin_acked[1], self._fin_acked[0]
        self._fin_acked_by_fin[0], self._fin_acked_by_fin[1] = (
            self._fin_acked_by_fin[1],
            self._fin_acked_by_fin[0],
        )
        self._syn_count[0], self._syn_count[1] = self._syn_count[1], self._syn_count[0]
        self._synack_count[0], self._synack_count[1] = self._synack_count[1], self._synack_count[0]
        self._syn_ts[0], self._syn_ts[1] = self._syn_ts[1], self._syn_ts[0]
        self._synack_ts[0], self._synack_ts[1] = self._synack_ts[1], self._synack_ts[0]
        self._tw_start[0], self._tw_start[1] = self._tw_start[1], self._tw_start[0]
        self._tw_restart[0], self._tw_restart[1] = self._tw_restart[1], self._tw_restart[0]
        self._snd_max[0], self._snd_max[1] = self._snd_max[1], self._snd_max[0]
        self._cw_sent[0], self._cw_sent[1] = self._cw_sent[1], self._cw_sent[0]
        self._fw2_last[0], self._fw2_last[1] = self._fw2_last[1], self._fw2_last[0]
        self._late_fin[0], self._late_fin[1] = self._late_fin[1], self._late_fin[0]
        self._carry_since[0], self._carry_since[1] = self._carry_since[1], self._carry_since[0]
        self._last_ack[0], self._last_ack[1] = self._last_ack[1], self._last_ack[0]
        self._last_win[0], self._last_win[1] = self._last_win[1], self._last_win[0]
        self._wscale[0], self._wscale[1] = self._wscale[1], self._wscale[0]
        self._synack_ack[0], self._synack_ack[1] = self._synack_ack[1], self._synack_ack[0]
        self._rtx_first[0], self._rtx_first[1] = self._rtx_first[1], self._rtx_first[0]
        self._rtx_last[0], self._rtx_last[1] = self._rtx_last[1], self._rtx_last[0]
        self._rtx_gap[0], self._rtx_gap[1] = self._rtx_gap[1], self._rtx_gap[0]
        self._rtx_n[0], self._rtx_n[1] = self._rtx_n[1], self._rtx_n[0]
        self._rtx_flags[0], self._rtx_flags[1] = self._rtx_flags[1], self._rtx_flags[0]
        if self.rst_ignored is not None:
            ts, frame, side, why = self.rst_ignored
            self.rst_ignored = (ts, frame, 1 - side, why)
        if self._notes is not None:
            self._notes = [(t, f, 1 - s, k, x) for t, f, s, k, x in self._notes]
        self._since[0], self._since[1] = self._since[1], self._since[0]
        for i in range(min(self._tl_n, _TL_INLINE)):
            self._tl_side[i] = 1 - self._tl_side[i]
        if self._tl_more is not None:
            self._tl_more = [(t, f, 1 - s, code) for t, f, s, code in self._tl_more]
        if self.first_close is not None:
            self.first_close = (1 - self.first_close[0], self.first_close[1])
        if self.reset_by is not None:
            self.reset_by = 1 - self.reset_by

    @cython.locals(s=cython.int, o=cython.int, code=cython.int)
    def continue_from(self, old: TcpTracker, flip: bool, ts_ns: int, frame: int) -> bool:
        """This record continues the endpoints of `old`, the previous record on the 5-tuple,
        which Zeek's delete timer ended while its close was still under way (a FIN retransmitted,
        or the last ACK, more than tcp_close_delay after the close completed: Zeek starts a new
        connection, TCPSessionAdapter::ConnectionClosed -> ConnDeleteTimer; the kernel's sockets
        go on in LAST_ACK and TIME_WAIT). Each endpoint takes over the state `old` had it in at
        `ts_ns` (its timers counting from when it entered that state there), with what later
        packets are checked against (ISNs, FINs, what it sent and acknowledged), and `old`'s
        endpoints are CLOSED there, so that one record holds each socket at a time (as
        `cut_time_wait` does for an attempt). `flip`: this record's originator is `old`'s
        responder. False (nothing carried: the record starts as a capture that began
        mid-connection) unless a close is under way then: an endpoint in FIN_WAIT_1/2,
        CLOSE_WAIT, CLOSING, LAST_ACK or TIME_WAIT, and neither in SYN_SENT or SYN_RECEIVED."""
        closing = False
        for s in range(2):
            code = old.state_index_at(s, ts_ns)
            if code == _S_SYN_SENT or code == _S_SYN_RECEIVED:
                return False
            if code != _S_CLOSED and code != _S_ESTABLISHED:
                closing = True
        if not closing:
            return False
        self.midstream = True  # (no SYN opened this record: its idle timeout is an open one's)
        self._carry_ts = ts_ns
        for s in range(2):
            o = 1 - s if flip else s
            code = old.state_index_at(o, ts_ns)
            self._isn[s] = old._isn[o]
            self._fin_seq[s] = old._fin_seq[o]
            self._fin_acked[s] = old._fin_acked[o]
            self._fin_acked_by_fin[s] = old._fin_acked_by_fin[o]
            self._snd_max[s] = old._snd_max[o]
            self._last_ack[s] = old._last_ack[o]
            self._last_win[s] = old._last_win[o]
            self._wscale[s] = old._wscale[o]
            self._cw_sent[s] = old._cw_sent[o]
            self._fw2_last[s] = old._fw2_last[o]
            self._late_fin[s] = old._late_fin[o]
            if code == _S_CLOSED:
                continue
            self._carry_since[s] = old._since[o]
            self._set(s, code, ts_ns, frame)
            if code == _S_TIME_WAIT:
                self._tw_restart[s] = old._tw_restart[o]
        if old.first_close is not None:
            self.first_close = (
                (1 - old.first_close[0]) if flip else old.first_close[0],
                old.first_close[1],
            )
        self.fin_style = old.fin_style
        old.hand_over(ts_ns, frame)
        return True

    @cython.locals(side=cython.int)
    def hand_over(self, ts_ns: int, frame: int) -> None:
        """The next record took this one's endpoints over at `ts_ns` (`continue_from`): any
        side not CLOSED by then leaves for CLOSED there, in this record."""
        for side in range(2):
            if self.state_index_at(side, ts_ns) != _S_CLOSED:
                self._set(side, _S_CLOSED, ts_ns, frame)

    def start_midstream(self, ts_ns: int, frame: int) -> None:
        """The capture begins inside the connection: both endpoints are taken as ESTABLISHED."""
        self.midstream = True
        self._set(0, _S_ESTABLISHED, ts_ns, frame)
        self._set(1, _S_ESTABLISHED, ts_ns, frame)

    @cython.locals(shift=cython.int)
    def window_scale(self, side: int, shift: int) -> None:
        """The window scale option (RFC 7323 §2.2) of `side`'s SYN: a shift of at most 14
        (§2.3: a larger one is taken as 14), or -1 when its SYN had none. The connection table
        hands it over from each SYN's options."""
        self._wscale[side] = 14 if shift > 14 else shift

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(peer=cython.int, s=cython.int, end=cython.longlong)
    def packet(
        self,
        side: int,
        flags: int,
        seq: int,
        ack: int,
        plen: int,
        ts_ns: int,
        frame: int,
        win: int = -1,
    ):
        """Advance both endpoints for one packet sent by `side` (0 orig, 1 resp); `win` is its
        window field (-1: not known, every RST then passes the window check)."""
        peer = 1 - side
        if flags & _RST:
            if not self._rst_valid(side, flags, seq, ack, ts_ns, frame):
                return
            if self.first_close is None:
                self.first_close = (side, "R")
            if (
                side == 1
                and self._synack_count[1] == 0
                and self._syn_count[0]
                and self._state[0] == _S_SYN_SENT
            ):
                self.rejected = True
            if self.reset_by is None and not self._fully_closed():
                self.reset_by = side
            self._set(side, _S_CLOSED, ts_ns, frame)
            if self._state[peer] != _S_CLOSED:
                self._set(peer, _S_CLOSED, ts_ns, frame)
            self._note_closed(ts_ns)
            return
        if self.rst_ignored is not None and self.rst_ignored_then is None:
            self.rst_ignored_then = frame  # the connection went on after the ignored RST
        if plen and self._state[side] == _S_CLOSE_WAIT:
            self._cw_sent[side] += plen
        elif self._state[side] == _S_FIN_WAIT_2:
            self._fw2_last[side] = ts_ns
            if self._late_fin[side] != _UNSET:
                # it answers (no RST) the FIN that came after its orphan timer would have run
                # out: the socket had no such timer (see _timer_end), so that FIN reached it
                # and it entered TIME_WAIT then (as _fin would have done), known only now
                self._set(
                    side, _S_TIME_WAIT,
                    self._late_fin[side] if self._late_fin[side] >= self._timeline_max_ns
                    else ts_ns, frame,
                )  # fmt: skip
                self._late_fin[side] = _UNSET
        # what the window check of a later RST needs (RFC 9293 §3.10.7.4): how far each side
        # sent, and what it last acknowledged and advertised
        end = (seq + plen + (1 if flags & _SYN else 0) + (1 if flags & _FIN else 0)) & 0xFFFFFFFF
        if self._snd_max[side] == _UNSET or seq_gt(end, self._snd_max[side]):
            self._snd_max[side] = end
        if flags & _ACK:
            self._last_ack[side] = ack
            # RFC 7323 §2.2-2.3: the window field is shifted by the sender's scale once both
            # SYNs offered the option, and never in a SYN segment itself
            if win > 0 and not flags & _SYN and self._wscale[0] >= 0 and self._wscale[1] >= 0:
                win <<= self._wscale[side]
            self._last_win[side] = win
        if flags & _SYN:
            if flags & _ACK:
                self._synack_count[side] += 1
                if self._isn[side] == _UNSET:
                    self._isn[side] = seq
                if self._synack_ack[side] == _UNSET:
                    self._synack_ack[side] = ack
                if side == 1 and self._synack_ts[1] == _UNSET and self._syn_ts[0] != _UNSET:
                    self._synack_ns = _leg_ns(self._syn_ts[0], ts_ns)
                self._synack_ts[side] = ts_ns
                if not self._syn_count[side]:
                    self._rtx_seen(side, ts_ns, True)
                s = self._state[side]
                if s == _S_CLOSED or s == _S_SYN_SENT:
                    self._set(side, _S_SYN_RECEIVED, ts_ns, frame)
                s = self._state[peer]
                if s == _S_SYN_SENT or s == _S_SYN_RECEIVED:
                    self._set(peer, _S_ESTABLISHED, ts_ns, frame)
                # A SYN/ACK no SYN in the capture asked for leaves a CLOSED receiver CLOSED: a
                # CLOSED endpoint answers it with a RST or not at all (RFC 9293 §3.10.7.1), as
                # the victim of a SYN/ACK reflection or the source of backscatter does. When
                # the capture only began after the SYN, the receiver's ACK of it shows that it
                # was in SYN_SENT (see _ack: ESTABLISHED, inferred).
                return
            self._syn_count[side] += 1
            if not self._synack_count[side]:
                self._rtx_seen(side, ts_ns, False)
            if self._synack_count[peer]:
                # the peer's SYN/ACKs after this SYN answer it (tcp_check_req resends one for
                # a retransmitted SYN and re-arms the timer without backing off): they are not
                # its timer's schedule any more
                self._rtx_flags[peer] |= _RTX_VOID
            if self._isn[side] == _UNSET:
                self._isn[side] = seq
            if self._synack_ts[peer] == _UNSET:
                self._syn_ts[side] = ts_ns  # most recent SYN before the SYN/ACK
            if self._state[side] == _S_CLOSED:
                self._set(side, _S_SYN_SENT, ts_ns, frame)
            if self._state[peer] == _S_SYN_SENT:  # simultaneous open: the SYNs crossed
                self._set(peer, _S_SYN_RECEIVED, ts_ns, frame)
                self._set(side, _S_SYN_RECEIVED, ts_ns, frame)
            return
        if flags & _ACK:
            self._ack(side, flags, ack, ts_ns, frame)
        if flags & _FIN:
            self._fin(side, flags, seq + plen, ack, ts_ns, frame)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(peer=cython.int, current=cython.int)
    def _ack(self, side: int, flags: int, ack: int, ts_ns: int, frame: int) -> None:
        peer = 1 - side
        if self._synack_count[peer]:
            if (
                self._state[side] == _S_CLOSED
                and not self._syn_count[side]
                and self._isn[peer] != _UNSET
                and seq_gt(ack, self._isn[peer])
                and self._tl_n
            ):
                # it acknowledges a SYN/ACK whose SYN the capture missed: it was in SYN_SENT
                # and that SYN/ACK made it ESTABLISHED (RFC 9293 §3.10.7.3, SYN-SENT: "If
                # SND.UNA > ISS (our SYN has been ACKed), change the connection state to
                # ESTABLISHED, form an ACK segment ... and send it")
                self._infer(
                    side, ts_ns, frame, "ESTABLISHED inferred: it acknowledged the SYN/ACK "
                    "(its SYN was before the capture)",
                )  # fmt: skip
        elif self._state[side] == _S_SYN_SENT or self._state[peer] == _S_SYN_SENT:
            self._synack_missing(side, ack, ts_ns, frame)
        if (
            self._synack_count[side]
            and self._state[peer] == _S_CLOSED
            and not self._syn_count[peer]
            and self._synack_ack[side] != _UNSET
            and seq_gt(ack, self._synack_ack[side])
            and self._tl_n
        ):
            # the SYN/ACK's sender acknowledges data from a peer the capture saw no SYN from
            # (and maybe nothing at all: a one-way capture): the peer sends data only once
            # ESTABLISHED, so it got the SYN/ACK (RFC 9293 §3.10.7.3), and so is the sender,
            # which got the peer's ACK (§3.10.7.4, SYN-RECEIVED, the ACK field)
            self._infer(
                peer, ts_ns, frame, "ESTABLISHED inferred: the SYN/ACK's sender acknowledged "
                "data from it (its SYN and ACK were before or outside the capture)",
            )  # fmt: skip
            if self._state[side] == _S_SYN_RECEIVED:
                self._infer(side, ts_ns, frame, "ESTABLISHED inferred (the same evidence)")
        if self._state[peer] == _S_SYN_RECEIVED and self._isn[peer] != _UNSET:
            if seq_gt(ack, self._isn[peer]):
                self._set(peer, _S_ESTABLISHED, ts_ns, frame)
                if side == 0 and not self.handshake_acked and self._synack_ts[1] != _UNSET:
                    self.handshake_acked = True
                    self._ackdat_ns = _leg_ns(self._synack_ts[1], ts_ns)
        elif side == 0 and not self.handshake_acked and self._synack_ts[1] != _UNSET:
            if self._isn[1] != _UNSET and seq_gt(ack, self._isn[1]):
                self.handshake_acked = True
                self._ackdat_ns = _leg_ns(self._synack_ts[1], ts_ns)
        if self._state[side] == _S_SYN_SENT and self._synack_count[peer]:
            self._set(side, _S_ESTABLISHED, ts_ns, frame)
        if (
            self._fin_seq[peer] != _UNSET
            and not self._fin_acked[peer]
            and seq_gt(ack, self._fin_seq[peer])
        ):
            self._fin_acked[peer] = True
            self._fin_acked_by_fin[peer] = bool(flags & _FIN)
            current = self._state[peer]
            if current == _S_FIN_WAIT_1:
                self._set(peer, _S_FIN_WAIT_2, ts_ns, frame)
            elif current == _S_CLOSING:
                self._set(peer, _S_TIME_WAIT, ts_ns, frame)
            elif current == _S_LAST_ACK:
                self._set(peer, _S_CLOSED, ts_ns, frame)
            self._note_closed(ts_ns)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(peer=cython.int, saw_peer_fin=cython.bint, s=cython.int)
    def _fin(self, side: int, flags: int, fin_seq: int, ack: int, ts_ns: int, frame: int) -> None:
        peer = 1 - side
        if self._fin_seq[side] != _UNSET:
            # A retransmitted FIN: the peer's final ACK was lost (or is late). In TIME_WAIT the
            # peer acknowledges it and restarts its 2 x MSL (RFC 9293 §3.10.7.4; Linux
            # tcp_timewait_state_process re-arms TCP_TIMEWAIT_LEN): TIME_WAIT then ends 2 x MSL
            # after the last FIN's arrival. In any other state it changes nothing.
            if (
                self._state[peer] == _S_TIME_WAIT
                and self.state_index_at(peer, ts_ns) == _S_TIME_WAIT
            ):
                self._tw_restart[peer] = ts_ns
            return
        self._fin_seq[side] = fin_seq
        if self.first_close is None:
            self.first_close = (side, "F")
        if self._fin_seq[peer] == _UNSET:
            # First FIN: the sender starts an active close, the receiver learns of it.
            s = self._state[side]
            if s == _S_ESTABLISHED or s == _S_SYN_RECEIVED or s == _S_SYN_SENT or s == _S_CLOSED:
                self._set(side, _S_FIN_WAIT_1, ts_ns, frame)
            s = self._state[peer]
            if s == _S_ESTABLISHED or s == _S_SYN_RECEIVED or s == _S_SYN_SENT:
                self._set(peer, _S_CLOSE_WAIT, ts_ns, frame)
            return
        # Second FIN. Did its sender already have the first FIN? Its ACK field says.
        saw_peer_fin = bool(flags & _ACK) and seq_gt(ack, self._fin_seq[peer])
        if saw_peer_fin:
            # 3-way when this very FIN carried the first ACK of the peer's FIN (FIN+ACK).
            self.fin_style = "3way" if self._fin_acked_by_fin[peer] else "4way"
            self._set(side, _S_LAST_ACK, ts_ns, frame)
            s = self._state[peer]
            if s == _S_FIN_WAIT_1 or s == _S_CLOSING:
                # The FIN (and, in the 3-way case, its ACK) reaches the active closer.
                self._set(peer, _S_TIME_WAIT, ts_ns, frame)
            elif s == _S_FIN_WAIT_2:
                self._fin_reaches(peer, ts_ns, frame)
        else:
            # Simultaneous close: this FIN left before the peer's FIN arrived.
            self.fin_style = "simultaneous"
            self._set(side, _S_CLOSING, ts_ns, frame)
            s = self._state[peer]
            if s == _S_FIN_WAIT_1 or s == _S_CLOSE_WAIT or s == _S_ESTABLISHED:
                self._set(peer, _S_CLOSING, ts_ns, frame)
            elif s == _S_FIN_WAIT_2:
                self._fin_reaches(peer, ts_ns, frame)
        self._note_closed(ts_ns)

    def _fin_reaches(self, side: int, ts_ns: int, frame: int) -> None:
        """The peer's FIN arrives at `side`, in FIN_WAIT_2: TIME_WAIT (RFC 9293 §3.10.7.4,
        FIN-WAIT-2 STATE: "Enter the TIME-WAIT state"), unless `side` was an orphan whose
        tcp_fin_timeout had run out by then (see `_timer_end`). That socket is gone: the FIN
        finds no TCB, the CLOSED state of RFC 9293 §3.10.7.1 ("An incoming segment not
        containing a RST causes a RST to be sent in response"), as Linux does (tcp_v4_rcv finds
        no socket and calls tcp_v4_send_reset); `side` stays as it was, its FIN_WAIT_2 ending
        on the timer (`state_at`, `spans`, `spells`). Should it answer the FIN all the same
        (not with a RST), it had no such timer and enters TIME_WAIT then (`packet`)."""
        if self.state_index_at(side, ts_ns) == _S_CLOSED:
            self._late_fin[side] = ts_ns
            return
        self._set(side, _S_TIME_WAIT, ts_ns, frame)

    @cython.locals(peer=cython.int, r=cython.int, lo=cython.longlong, span=cython.longlong)
    def _rst_valid(self, side: int, flags: int, seq: int, ack: int, ts_ns: int, frame: int) -> bool:
        """Would the receiver of this RST (sent by `side`) accept it? When not, it changes no
        state: it is kept as `rst_ignored` (the first one) and as a note on the timeline.

        - Receiver in SYN_SENT (RFC 9293 §3.10.7.3; Linux tcp_rcv_synsent_state_process): the
          RST must acknowledge the SYN, ISS < SEG.ACK =< SND.NXT (ISN + 1, more for a SYN with
          data), and without the ACK bit it is dropped.
        - Receiver in a synchronized state (RFC 9293 §3.10.7.4, first check; RFC 5961 §3.2,
          as Linux tcp_validate_incoming does it): RFC 5961 resets only on SEG.SEQ = RCV.NXT
          and answers any other RST in the window with a challenge ACK (Linux:
          tcp_send_challenge_ack), changing nothing. RCV.NXT is taken from the receiver's
          latest ACK. When that ACK covers everything the RST's sender was seen to send
          (SND.NXT as seen: nothing in flight), RCV.NXT is known exactly and the RST must
          carry it. Otherwise (segments in flight, or data the capture missed) the capture
          point cannot know RCV.NXT to the byte, and any RST in the receive window counts,
          RCV.NXT =< SEG.SEQ < RCV.NXT + RCV.WND: the window the receiver advertised with
          that ACK, scaled by the shift its SYN offered when both SYNs offered one (RFC 7323
          §2.3; `window_scale`; unscaled when the capture missed a SYN), stretched to how far
          the RST's sender was seen to send (a scaled window is at least that wide).
          Either way, Linux also resets on SEG.SEQ = RCV.NXT - 1 when the receiver is in
          CLOSE_WAIT, LAST_ACK or CLOSING (tcp_reset_check, "extend to match against
          (RCV.NXT - 1) after a FIN": the peer's RST may carry its FIN's sequence number),
          even though that is just below the window. (Linux also resets on the end of the
          right-most SACK block it holds; that needs data received out of order, i.e. segments
          in flight, where the window rule accepts it anyway.) Lenient where the capture knows
          nothing: a receiver that sent no ACK yet accepts every RST, and so does one whose
          RCV.NXT is not exact when no window was handed in.
        - Any other receiver state (CLOSED, LISTEN): the RST is the sender's own business.
        """
        peer = 1 - side
        r = self._state[peer]
        why = None
        if r == _S_SYN_SENT:
            if self._isn[peer] == _UNSET or self._snd_max[peer] == _UNSET:
                return True
            if not flags & _ACK:
                why = "RST without ACK in SYN_SENT"
            elif not seq_gt(ack, self._isn[peer]) or seq_gt(ack, self._snd_max[peer]):
                why = f"RST in SYN_SENT does not acknowledge the SYN (ACK {ack}, ISN+1 {(self._isn[peer] + 1) & 0xFFFFFFFF})"
        elif r != _S_CLOSED:
            lo = self._last_ack[peer]
            if lo == _UNSET:
                return True
            if seq == ((lo - 1) & 0xFFFFFFFF) and (
                r == _S_CLOSE_WAIT or r == _S_LAST_ACK or r == _S_CLOSING
            ):
                return True  # Linux tcp_reset_check: RCV.NXT - 1 after the peer's FIN
            if self._last_win[peer] >= 0:
                span = self._last_win[peer]
                if self._snd_max[side] != _UNSET and seq_gt(self._snd_max[side], lo):
                    span += (self._snd_max[side] - lo) & 0xFFFFFFFF
                if ((seq - lo) & 0xFFFFFFFF) > span:
                    why = f"RST outside the receive window (SEQ {seq}, window {lo}+{span})"
            if why is None and self._snd_max[side] == lo and seq != lo:
                # RCV.NXT known exactly: RFC 5961 §3.2, only SEG.SEQ = RCV.NXT resets
                why = (
                    f"RST in the window but not at RCV.NXT (SEQ {seq}, RCV.NXT {lo}): "
                    "answered with a challenge ACK (RFC 5961 §3.2)"
                )
        if why is None:
            return True
        if self.rst_ignored is None:
            self.rst_ignored = (ts_ns, frame, side, why)
        if self._notes is None:
            self._notes = []
        self._notes.append((ts_ns, frame, side, "rst_ignored", why))
        return False

    def _infer(self, side: int, ts_ns: int, frame: int, why: str) -> None:
        """`side` enters ESTABLISHED on evidence, not on a packet that would move it by the
        RFC's machine: a timeline entry like any other, and a note saying why."""
        self._set(side, _S_ESTABLISHED, ts_ns, frame)
        if self._notes is None:
            self._notes = []
        self._notes.append((ts_ns, frame, side, "inferred", why))

    @cython.locals(x=cython.int, y=cython.int)
    def _synack_missing(self, side: int, ack: int, ts_ns: int, frame: int) -> None:
        """A SYN was seen, its SYN/ACK was not (asymmetric routing, a capture that missed it),
        and an ACK-bearing segment (no SYN, no RST) came from one side. The SYN's sender X in
        SYN_SENT sends nothing but its SYN until a SYN/ACK reaches it (RFC 9293 §3.10.7.3),
        and the peer Y acknowledges X's SYN only once it answered it with its SYN/ACK and is
        synchronized (§3.10.7.2, LISTEN: a SYN is answered with SYN,ACK). So when X has sent
        an ACK-bearing segment and Y has acknowledged X's ISN + 1, both are ESTABLISHED
        (inferred, at the packet that completes the evidence)."""
        x = side if self._state[side] == _S_SYN_SENT else 1 - side
        y = 1 - x
        if self._isn[x] == _UNSET or self._syn_count[y] or self._synack_count[x]:
            return  # (simultaneous open has SYNs both ways: the machine handles it)
        if self._last_ack[x] == _UNSET or self._last_ack[y] == _UNSET:
            return
        if not seq_gt(self._last_ack[y], self._isn[x]):
            return
        why = (
            "ESTABLISHED inferred: the SYN/ACK is missing from the capture, but both sides "
            "acknowledged each other"
        )
        self._infer(x, ts_ns, frame, why)
        s = self._state[y]
        if s == _S_CLOSED or s == _S_SYN_RECEIVED:
            self._infer(y, ts_ns, frame, "ESTABLISHED inferred (the same evidence)")

    def _inferred(self) -> bool:
        """Was a state change inferred (see `notes`)?"""
        return self._notes is not None and any(n[3] == "inferred" for n in self._notes)

    @property
    def notes_len(self) -> int:
        """len(notes), without building it."""
        return 0 if self._notes is None else len(self._notes)

    @property
    def notes(self) -> list[tuple[int, int | None, int, str, str]]:
        """[(ts_ns, frame or None, endpoint 0/1, kind, text)]: what the timeline shows beside
        the state changes (`rst_ignored`: a RST its receiver would not accept, so no state
        changed; `inferred`: a state change the capture did not show but other evidence
        proves). A new list."""
        return [] if self._notes is None else list(self._notes)

    # ------------------------------------------------------------------ summaries
    @cython.locals(a=cython.int, b=cython.int)
    def _fully_closed(self) -> bool:
        a, b = self._state[0], self._state[1]
        return (
            (a == _S_CLOSED or a == _S_TIME_WAIT)
            and (b == _S_CLOSED or b == _S_TIME_WAIT)
            and self._tl_n > 0
        )

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
            if self.reset_by is None and not self._inferred():
                return "unanswered"
            return "incomplete"  # (a SYN/ACK the capture missed: see _synack_missing)
        if (
            self._syn_count[0]
            or self._synack_count[1]
            or self._synack_count[0]
            or self._syn_count[1]
        ):
            return "incomplete"
        return "missing"

    def teardown(self) -> str:
        """`4way`, `3way`, `simultaneous`, `half_closed`, `reset_orig`, `reset_resp` or `open`."""
        if self.reset_by is not None:
            return "reset_orig" if self.reset_by == 0 else "reset_resp"
        if self.fin_style is not None:
            return self.fin_style
        if self._fin_seq[0] != _UNSET or self._fin_seq[1] != _UNSET:
            return "half_closed"
        return "open"

    def close_initiator(self) -> str | None:
        if self.first_close is None:
            return None
        return "orig" if self.first_close[0] == 0 else "resp"

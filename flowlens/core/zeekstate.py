"""Zeek's view of one connection: endpoint states, `history`, sizes, gaps and `conn_state`.

This is a reimplementation, written from reading Zeek's source (zeek/zeek, 8.x), of what Zeek's
TCP analyzer keeps per connection and what `base/protocols/conn/main.zeek` logs from it, so that
flowlens's `conn_state`, `history`, `orig_bytes`/`resp_bytes` and `missed_bytes` mean exactly
what they mean in a Zeek conn.log. The Zeek files each rule comes from, by short name:

- *Adapter*: src/packet_analysis/protocol/tcp/TCPSessionAdapter.cc (Process, init_endpoint,
  get_relative_seq, update_history, update_window, update_last_seq, the Update*State machine,
  FlipRoles, SetPartialStatus).
- *TCP.cc*: src/packet_analysis/protocol/tcp/TCP.cc (WantConnection: who is the originator;
  DeliverPacket/ValidateChecksum: a bad checksum scores 'C'/'c' and the packet goes no further).
- *Endpoint*: src/analyzer/protocol/tcp/TCP_Endpoint.{h,cc} (Size, NoDataAcked, ChecksumError,
  DidRxmit, ZeroWindow, Gap, CheckHistory/AddHistory with the responder's bits shifted by 16).
- *Reassembler*: src/analyzer/protocol/tcp/TCP_Reassembler.cc and src/Reassem.cc (DataSent,
  AckReceived, TrimToSeq/Undelivered, Gap: where 'G'/'g' and missed_bytes come from).
- *Conn*: src/Conn.{h,cc} (CheckHistory, ScaledHistoryEntry: 'c','g','t','w' at counts 1, 10,
  100, ...; FlipRoles appends '^').
- *UDP*: src/packet_analysis/protocol/udp/UDP.cc and UDPSessionAdapter.cc.
- *main.zeek*: scripts/base/protocols/conn/main.zeek (conn_state(), set_conn()).

Where flowlens cannot reproduce Zeek exactly, the comment at that spot says so (search for
"Not exact").

Cython compiles this module (see setup.py); zeekstate.pxd gives the C types: the classes become
extension types, the helpers C functions. The `cython.*` annotations are for that and do
nothing in plain Python.
"""

from __future__ import annotations

from collections.abc import Collection
from enum import IntEnum

import cython

from .constants import TH_ACK, TH_FIN, TH_RST, TH_SYN

if not cython.compiled:  # (compiled: cimported in zeekstate.pxd, inline C)
    from .constants import seq_add, seq_diff

__all__ = [
    "ZeekState",
    "ZeekTcp",
    "ZeekUdp",
    "udp_conn_state",
    "icmp_conn_state",
    "zeek_flips",
    "ZEEK_LIKELY_SERVER_PORTS_TCP",
    "ZEEK_LIKELY_SERVER_PORTS_UDP",
]


class ZeekState(IntEnum):
    """Zeek's TCP endpoint states, with Zeek's numbers (TCP_Endpoint.h, EndpointState)."""

    INACTIVE = 0  # nothing seen from this side
    SYN_SENT = 1  # SYN seen, no SYN/ACK
    SYN_ACK_SENT = 2  # SYN/ACK seen from an endpoint that had sent nothing before
    PARTIAL = 3  # data seen without a SYN
    ESTABLISHED = 4  # handshake completed (or implied)
    CLOSED = 5  # FIN seen
    RESET = 6  # RST seen


# Plain ints on the hot path: IntEnum members compare slower than small ints.
_INACTIVE = 0
_SYN_SENT = 1
_SYN_ACK_SENT = 2
_PARTIAL = 3
_ESTABLISHED = 4
_CLOSED = 5
_RESET = 6

_M32 = 0xFFFFFFFF  # (for truncating Zeek's int64 start_seq to 32 bits)
_M64 = 0xFFFFFFFFFFFFFFFF
_TOO_LARGE_SEQ_DELTA = 1048576  # TCPSessionAdapter.cc TOO_LARGE_SEQ_DELTA

_SFR = TH_SYN | TH_FIN | TH_RST

# History bits, TCP_Endpoint.h HistoryMasks; the responder's are shifted left by 16.
_HIST_SYN = 0x1
_HIST_FIN = 0x2
_HIST_RST = 0x4
_HIST_FIN_RST = 0x8
_HIST_DATA = 0x10
_HIST_ACK = 0x20
_HIST_MULTI_FLAG = 0x40

# What one packet did to the state machine.
_DO_CLOSE = 1
_FLIPPED = 2

# first_packet_seen bits (TCPSessionAdapter.cc ORIG/RESP).
_SEEN_ORIG = 1
_SEEN_RESP = 2


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _log_threshold(n: cython.longlong) -> cython.bint:
    """Connection::ScaledHistoryEntry adds the letter when its counter reaches 1, 10, 100, ...
    (thresholds are uint32, so the sequence stops at 10**9)."""
    t: cython.longlong = 1
    for _ in range(10):
        if n == t:
            return True
        t *= 10
    return False


class _Endpoint:
    """One side of a TCP connection: Zeek's TCP_Endpoint plus its TCP_Reassembler's bookkeeping.

    Sequence fields follow TCP_Endpoint.h: `start` is the initial sequence number (as Zeek's
    int64 start_seq), `last` one past the highest sequence sent, `ack` the highest sequence the
    peer has acknowledged, `*_wraps` how often each wrapped 2**32. The `r_*` fields are the
    reassembler's: `r_last` (last_reassem_seq) and `r_trim` (trim_seq) are relative sequence
    numbers, `r_ooo` holds received-but-undelivered ranges above `r_last` as a flat sorted list
    [start0, end0, start1, end1, ...] (None while empty, which is nearly always).
    """

    __slots__ = (
        "is_orig",
        "state",
        "prev_state",
        "start",
        "last",
        "ack",
        "seq_wraps",
        "ack_wraps",
        "fin_cnt",
        "rst_cnt",
        "fin_seq",
        "hist_syn",
        "hist_fin",
        "hist_rst",
        "chk_cnt",
        "rxmt_cnt",
        "win0_cnt",
        "gap_cnt",
        "pkts",
        "r_last",
        "r_trim",
        "r_ooo",
        "r_skip",
        "did_close",
    )

    def __init__(self, is_orig: bool) -> None:
        self.is_orig = is_orig
        self.state = _INACTIVE
        self.prev_state = _INACTIVE
        self.start = 0
        self.last = 0
        self.ack = 0
        self.seq_wraps = 0
        self.ack_wraps = 0
        self.fin_cnt = 0
        self.rst_cnt = 0
        self.fin_seq = 0
        self.hist_syn = 0
        self.hist_fin = 0
        self.hist_rst = 0
        self.chk_cnt = 0
        self.rxmt_cnt = 0
        self.win0_cnt = 0
        self.gap_cnt = 0
        self.pkts = 0
        self.r_last = 1  # TCP_Reassembler starts at relative sequence 1 (just past the SYN)
        self.r_trim = 1
        self.r_ooo: list[int] | None = None
        self.r_skip = False
        self.did_close = False  # TCP_Endpoint::did_close: its close was reported

    def set_state(self, new_state: cython.int) -> None:
        """TCP_Endpoint::SetState: prev_state only moves when the state really changes."""
        if new_state != self.state:
            self.prev_state = self.state
            self.state = new_state

    def init_seqs(self, start: cython.longlong, last: cython.longlong) -> None:
        """InitStartSeq/InitAckSeq(start) and InitLastSeq(last); the wrap counters stay."""
        self.start = start
        self.ack = start
        self.last = last

    def acked_rel(self) -> cython.ulonglong:
        """How far the peer has acknowledged, relative to `start` (ToRelativeSeqSpace)."""
        return (((self.ack_wraps << 32) + self.ack) - self.start) & _M64

    def no_data_acked(self) -> bool:
        """TCP_Endpoint::NoDataAcked: nothing beyond (at most) the SYN octet acknowledged."""
        ack: cython.longlong = (self.ack_wraps << 32) + self.ack
        start: cython.longlong = self.start  # a 32-bit ISN: `& _M64` changes nothing
        return ack == start or ack == start + 1

    def size(self, peer: _Endpoint) -> cython.ulonglong:
        """TCP_Endpoint::Size, the payload bytes Zeek logs as orig_bytes/resp_bytes.

        Taken from sequence space: max(last sent, last acked) - ISN, less the SYN octet and
        (once a FIN was seen) the FIN octet. Zero for a half-open connection that was aborted
        (SYN, then RST, peer silent) with a bogus ack.
        """
        if (
            self.prev_state == _SYN_SENT
            and self.state == _RESET
            and peer.state == _INACTIVE
            and not self.no_data_acked()
        ):
            return 0
        last64: cython.longlong = (self.seq_wraps << 32) + self.last
        ack64: cython.longlong = (self.ack_wraps << 32) + self.ack
        size: cython.ulonglong = ((last64 if last64 > ack64 else ack64) - self.start) & _M64
        if size:
            size -= 1
        if self.fin_cnt > 0 and size:
            size -= 1
        return size


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _relative_seq(
    ep: _Endpoint, cur: cython.longlong, last: cython.longlong, wraps: cython.longlong
) -> tuple[cython.ulonglong, cython.bint]:
    """TCPSessionAdapter.cc get_relative_seq: `cur` relative to ep's ISN, as Zeek's uint64.

    Returns (relative sequence, underflow). A sequence below the ISN underflows and, as in
    Zeek, comes back as a huge unsigned number.
    """
    delta: cython.longlong = seq_diff(cur, last)
    if delta < 0:
        if wraps and cur > last:
            wraps -= 1
    elif delta > 0:
        if cur < last:
            wraps += 1
    if wraps == 0:
        delta = seq_diff(cur, ep.start & _M32)
        if delta < 0:
            return delta & _M64, True
        return delta, False
    return (((wraps << 32) + cur) - ep.start) & _M64, False


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _is_clean(e: _Endpoint) -> cython.bint:
    """TCP_Reassembler.cc is_clean: established, or closed straight from established."""
    return e.state == _ESTABLISHED or (e.state == _CLOSED and e.prev_state == _ESTABLISHED)


class ZeekTcp:
    """Zeek's TCP analyzer view of one connection (TCPSessionAdapter.cc, TCP_Endpoint.cc,
    TCP_Reassembler.cc, Conn.cc; conn_state from base/protocols/conn/main.zeek).

    Feed every TCP packet of the connection in capture order with `packet()`, with `is_orig`
    in the roles as they stand when the packet arrives. Zeek itself swaps the roles in two cases
    (`packet()` then returns True and the caller must swap its own orig/resp): a SYN answering
    an earlier SYN/ACK (the SYN/SYN-ACK reversal, history "Hs^...") and an ACK or data segment
    right after a connection's first packet was a SYN/ACK (Zeek PR #2191, history "^h...").
    The originator chosen when the connection is created comes from `zeek_flips()`: when it
    says so, call `flip()` before the first packet.

    Tunables are class attributes (Zeek's script-level constants from init-bare.zeek); change
    them on a subclass to mirror a Zeek run that redefined them. Each instance reads them once,
    when it is created.
    """

    # init-bare.zeek defaults.
    MAX_INITIAL_WINDOW = 16384  # tcp_max_initial_window
    MAX_ABOVE_HOLE_WITHOUT_ANY_ACKS = 16384  # tcp_max_above_hole_without_any_acks
    # tcp_excessive_data_without_further_acks
    EXCESSIVE_DATA_WITHOUT_FURTHER_ACKS = 10 * 1024 * 1024
    REPORT_GAPS_FOR_PARTIAL = False  # report_gaps_for_partial (BifConst)

    __slots__ = (
        "_orig",
        "_resp",
        "_history",
        "_hist_seen",
        "_is_partial",
        "_first_seen",
        "_missed",
        "_close_complete",
        "_max_initial_window",
        "_max_above_hole",
        "_excessive_data",
        "_report_gaps_for_partial",
    )

    def __init__(self) -> None:
        self._orig = _Endpoint(True)
        self._resp = _Endpoint(False)
        self._history = ""
        self._hist_seen = 0  # Connection::hist_seen
        self._is_partial = False  # TCPSessionAdapter::is_partial
        self._first_seen = 0  # TCPSessionAdapter::first_packet_seen
        self._missed = 0  # sum of content_gap lengths (main.zeek missed_bytes)
        self._close_complete = False
        # The tunables as C fields: a class attribute is a dictionary lookup when compiled.
        self._max_initial_window = self.MAX_INITIAL_WINDOW
        self._max_above_hole = self.MAX_ABOVE_HOLE_WITHOUT_ANY_ACKS
        self._excessive_data = self.EXCESSIVE_DATA_WITHOUT_FURTHER_ACKS
        self._report_gaps_for_partial = self.REPORT_GAPS_FOR_PARTIAL

    # -- history helpers (Conn.h CheckHistory / ScaledHistoryEntry, TCP_Endpoint.cc) --------

    def _check(self, ep: _Endpoint, mask: cython.int, code: str) -> bool:
        """CheckHistory: record `code` the first time; True if it had been seen already."""
        if not ep.is_orig:
            mask <<= 16
        if self._hist_seen & mask:
            return True
        self._hist_seen |= mask
        self._history += code if ep.is_orig else code.lower()
        return False

    def _add(self, ep: _Endpoint, code: str) -> None:
        self._history += code if ep.is_orig else code.lower()

    # -- role flips -------------------------------------------------------------------------

    def flip(self) -> None:
        """Swap originator and responder, as Zeek's Connection::FlipRoles (Conn.cc), which
        appends '^' to the history, and TCPSessionAdapter::FlipRoles, which swaps the
        endpoints, their is_orig, the first-packet bits and clears is_partial. The history bits
        already recorded are not swapped (Zeek keeps hist_seen as it is)."""
        self._history += "^"
        self._swap()

    def _swap(self) -> None:
        o, r = self._orig, self._resp
        self._orig, self._resp = r, o
        r.is_orig = True
        o.is_orig = False
        fs = self._first_seen
        self._first_seen = (_SEEN_RESP if fs & _SEEN_ORIG else 0) | (
            _SEEN_ORIG if fs & _SEEN_RESP else 0
        )
        self._is_partial = False

    # -- the packet path --------------------------------------------------------------------

    def packet(
        self,
        is_orig: cython.bint,
        flags: cython.int,
        seq: cython.longlong,
        ack: cython.longlong,
        plen: cython.longlong,
        win: cython.int,
        bad_checksum: cython.bint,
        truncated: cython.bint = False,
    ) -> bool:
        """One TCP packet in capture order, as TCPAnalyzer::DeliverPacket and
        TCPSessionAdapter::Process handle it.

        flags: TCP flags byte (TH_* bits). seq/ack: raw 32-bit numbers. plen: payload bytes
        per the IP length. win: raw, unscaled window (only "is it zero" matters to Zeek's
        history). bad_checksum: True when the checksum was verified bad; such a packet only
        scores 'C'/'c' (logarithmically) and is otherwise ignored, not even counted (TCP.cc
        ValidateChecksum). truncated: the payload was not fully captured, so Zeek's reassembler
        never sees it (TCP_Endpoint::DataSent) and an ack covering it reveals a content gap.
        bad_checksum may be None (not verified), which counts as False.

        Returns True when Zeek swapped the roles while handling this packet; the caller must
        then swap its notion of originator and responder too.
        """
        orig: _Endpoint = self._orig
        ep: _Endpoint
        if bad_checksum:
            ep = orig if is_orig else self._resp
            ep.chk_cnt += 1
            if _log_threshold(ep.chk_cnt):
                self._add(ep, "C")
            return False

        flipped: cython.bint = False
        resp: _Endpoint = self._resp
        # TCP_Endpoint::CheckHistory: when the history is still exactly "H" (the connection
        # began with the originator's SYN/ACK, repeated or not, and nothing else) and a packet
        # scores 'A' or 'D' (update_history: no SYN/FIN/RST, data or an ACK), in either
        # direction, Zeek flips the roles, replaces the history with "^h" and marks the
        # originator's first packet seen; stealth scans answer with RSTs or nothing. The packet
        # is then handled in the new roles (the endpoint objects swap with the roles).
        if self._history == "H" and not flags & _SFR and (flags & TH_ACK or plen > 0):
            self._history = "^h"
            self._swap()
            self._first_seen |= _SEEN_ORIG  # SetFirstPacketSeen(true)
            orig, resp = self._orig, self._resp
            is_orig = not is_orig
            flipped = True

        ep = orig if is_orig else resp
        peer: _Endpoint = resp if is_orig else orig
        syn: cython.int = flags & TH_SYN
        fin: cython.int = flags & TH_FIN
        rst: cython.int = flags & TH_RST
        ackf: cython.int = flags & TH_ACK

        # SetPartialStatus
        if ep.is_orig:
            if not self._first_seen & _SEEN_ORIG:
                self._is_partial = not syn or bool(ackf)
        elif not self._first_seen & _SEEN_RESP and not self._is_partial:
            self._is_partial = not syn

        # get_segment_len: SYN and FIN take one sequence octet; a RST's payload takes none.
        seg_len: cython.longlong = plen
        if syn:
            seg_len += 1
        if fin:
            seg_len += 1
        if rst:
            seg_len -= plen
        seq_end: cython.longlong = seq_add(seq, seg_len)

        # init_endpoint
        st: cython.int = ep.state
        if st == _INACTIVE:
            if syn:
                ep.init_seqs(seq, seq_end)
            else:
                # A partial connection: pretend a SYN came just before this packet, and start
                # last_seq at this packet so it does not look like a retransmission.
                ep.init_seqs(seq_add(seq, -1), seq)
        elif syn:
            if st == _SYN_SENT or st == _SYN_ACK_SENT:
                if seq != ep.start & _M32:
                    ep.init_seqs(seq, seq_end)  # SYN_seq_jump
            elif st == _ESTABLISHED or st == _PARTIAL:
                ep.init_seqs(seq, seq_end)  # SYN_inside_connection: assume this SYN is the real one
            elif st == _RESET and ep.prev_state == _INACTIVE:
                ep.init_seqs(seq, seq_end)  # the earlier RST was likely injected

        rel_seq: cython.ulonglong
        seq_underflow: cython.bint
        rel_seq, seq_underflow = _relative_seq(ep, seq, ep.last, ep.seq_wraps)

        # update_history
        nbits: cython.int = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        if nbits > 1:
            if fin and rst:
                self._check(ep, _HIST_FIN_RST, "I")
            else:
                self._check(ep, _HIST_MULTI_FLAG, "Q")
        elif nbits == 1:
            if syn:
                code = "H" if ackf else "S"
                if self._check(ep, _HIST_SYN, code) and rel_seq != ep.hist_syn:
                    self._add(ep, code)
                ep.hist_syn = rel_seq
            elif fin:
                # A FIN's sequence number counts at the end of its data.
                fin_at: cython.ulonglong = (rel_seq + plen) & _M64
                if self._check(ep, _HIST_FIN, "F") and fin_at != ep.hist_fin:
                    self._add(ep, "F")
                ep.hist_fin = fin_at
            else:
                if self._check(ep, _HIST_RST, "R") and rel_seq != ep.hist_rst:
                    self._add(ep, "R")
                ep.hist_rst = rel_seq
        elif plen:
            self._check(ep, _HIST_DATA, "D")
        elif ackf:
            self._check(ep, _HIST_ACK, "A")

        # update_window: a zero window (scaling cannot make it non-zero) is boring with or
        # after a RST, or once the peer has sent a FIN.
        if win == 0 and not rst and peer.state != _CLOSED and ep.state != _RESET:
            ep.win0_cnt += 1
            if _log_threshold(ep.win0_cnt):
                self._add(ep, "W")

        if fin:
            ep.fin_cnt += 1
            ep.fin_seq = (rel_seq + seg_len) & _M64
        if rst:
            ep.rst_cnt += 1

        rel_ack: cython.ulonglong = 0
        ack_underflow: cython.bint
        delta_ack: cython.longlong
        if ackf:
            if peer.state == _INACTIVE:
                # init_peer: number the silent peer's bytes as if its SYN had been seen.
                rel_ack = 1
                a1 = seq_add(ack, -1)
                peer.init_seqs(a1, a1)
            else:
                rel_ack, ack_underflow = _relative_seq(peer, ack, peer.ack, peer.ack_wraps)
                if ack_underflow:
                    rel_ack = 0
                elif not rst:
                    # update_ack_seq; acks in RSTs are not trusted.
                    delta_ack = seq_diff(ack, peer.ack)
                    if not (ack == 0 and delta_ack > _TOO_LARGE_SEQ_DELTA) and delta_ack > 0:
                        if ack < peer.ack:
                            peer.ack_wraps += 1
                        peer.ack = ack

        # update_last_seq
        delta_last: cython.longlong = seq_diff(seq_end, ep.last)
        if (syn or rst) and not -_TOO_LARGE_SEQ_DELTA <= delta_last <= _TOO_LARGE_SEQ_DELTA:
            pass
        elif fin and ep.last == seq_add(ep.start, 1):
            ZeekTcp._update_last(ep, seq_end)  # > 2 GB connections seen only as SYN and FIN
        elif ep.state == _RESET:
            pass  # no sequence numbers are trusted after a RST
        elif delta_last > 0:
            ZeekTcp._update_last(ep, seq_end)
        elif plen > 0:
            ep.rxmt_cnt += 1  # DidRxmit
            if _log_threshold(ep.rxmt_cnt):
                self._add(ep, "T")

        outcome: cython.int = self._state_machine(ep, peer, seq, plen, is_orig, flags)
        if outcome & _FLIPPED:
            flipped = True

        if ackf:
            # After the state machine, so a gap revealed by a FIN's or RST's ack is judged
            # with the closing states (TCPSessionAdapter::Process).
            self._ack_received(peer, rel_ack)

        # CheckPIA_FirstPacket, with the packet's is_orig as Process had it.
        self._first_seen |= _SEEN_ORIG if is_orig else _SEEN_RESP

        if plen > 0 and not rst and not seq_underflow and not truncated:
            self._data_sent(ep, (rel_seq + 1) & _M64 if syn else rel_seq, plen)

        if outcome & _DO_CLOSE and not ep.did_close:
            # TCPSessionAdapter::ConnectionClosed. Not exact: Zeek defers this while the
            # reassembler still holds undelivered data (DataPending) until that side's EOF.
            ep.did_close = True
            if ep.state == _RESET or peer.did_close or peer.state == _INACTIVE:
                self._close_complete = True

        # ConnSize counts the packet in the roles as they are after processing (Zeek PR #5047).
        ep.pkts += 1
        return flipped

    @staticmethod
    def _update_last(ep: _Endpoint, seq: cython.longlong) -> None:
        """TCP_Endpoint::UpdateLastSeq: count a wrap when the new value is numerically lower."""
        if seq < ep.last:
            ep.seq_wraps += 1
        ep.last = seq

    def _state_machine(
        self,
        ep: _Endpoint,
        peer: _Endpoint,
        seq: cython.longlong,
        plen: cython.longlong,
        is_orig: cython.bint,
        flags: cython.int,
    ) -> cython.int:
        """TCPSessionAdapter::UpdateStateMachine and the Update*State functions, reduced to their
        effect on states, roles and do_close (the events and weirds they raise are not
        modelled). Returns _DO_CLOSE when Zeek would report the sender's side closed (do_close)
        and/or _FLIPPED when the roles were flipped (the SYN/SYN-ACK reversal)."""
        st: cython.int = ep.state
        syn: cython.int = flags & TH_SYN
        fin: cython.int = flags & TH_FIN
        rst: cython.int = flags & TH_RST
        ackf: cython.int = flags & TH_ACK
        flipped: cython.bint = False
        do_close: cython.bint = False
        if st == _INACTIVE:
            if syn:
                if is_orig:
                    ep.set_state(_SYN_ACK_SENT if ackf else _SYN_SENT)
                else:
                    if not ackf and peer.state == _SYN_ACK_SENT and seq == ep.start & _M32:
                        # SYN/SYN-ACK reversal (e.g. two capture interfaces): the SYN/ACK came
                        # first, so flip and establish.
                        self._is_partial = False
                        self.flip()
                        flipped = True
                        peer.set_state(_ESTABLISHED)
                        self._first_seen |= _SEEN_ORIG  # SetFirstPacketSeen(true)
                    if peer.state == _SYN_SENT:
                        peer.set_state(_ESTABLISHED)
                    ep.set_state(_ESTABLISHED)
            if fin:
                ep.set_state(_CLOSED)
                do_close = True
            if rst:
                ep.set_state(_RESET)
                do_close = True
            if ep.state == _INACTIVE:
                if not is_orig and plen == 0 and self._orig.state == _SYN_SENT:
                    pass  # an ack of the SYN before the SYN/ACK: not a partial connection
                elif ackf and peer.state == _ESTABLISHED:
                    # SYN/ACK seen but the SYN missed: establish rather than call it partial.
                    ep.set_state(_ESTABLISHED)
                    self._is_partial = False
                    self._first_seen |= _SEEN_ORIG if is_orig else _SEEN_RESP
                else:
                    ep.set_state(_PARTIAL)
        elif st == _SYN_SENT or st == _SYN_ACK_SENT:
            if fin:
                ep.set_state(_CLOSED)
                do_close = True
            if rst:
                ep.set_state(_RESET)
                do_close = True
        elif st == _ESTABLISHED or st == _PARTIAL:
            if syn and st == _PARTIAL and peer.state == _INACTIVE and not ackf:
                ep.set_state(_SYN_SENT)  # SYN_after_partial
            if fin and not rst:
                ep.set_state(_CLOSED)
                if peer.state == _RESET and peer.prev_state == _CLOSED:
                    # FIN, RST, then the peer's FIN: that was a normal close after all.
                    peer.set_state(_CLOSED)
                do_close = True
            if rst:
                ep.set_state(_RESET)
                do_close = True
        elif st == _CLOSED:
            # After a FIN a RST only counts while the peer has not closed too.
            if rst and peer.state != _CLOSED:
                ep.set_state(_RESET)
                do_close = True  # "RST after FIN"; a no-op once did_close
        # _RESET: nothing changes any more.
        return (_FLIPPED if flipped else 0) | (_DO_CLOSE if do_close else 0)

    # -- reassembly bookkeeping (TCP_Reassembler.cc, Reassem.cc) ----------------------------

    def _data_sent(self, ep: _Endpoint, seq: cython.ulonglong, length: cython.longlong) -> None:
        """TCP_Reassembler::DataSent and Reassembler::NewBlock/BlockInserted, keeping only the
        ranges (never the bytes): what was delivered in order, and what waits above a hole."""
        if ep.r_skip:
            return
        upper: cython.ulonglong = seq + length
        acked: cython.ulonglong = ep.acked_rel()
        if seq < acked:
            if upper <= acked:
                return  # already delivered and acknowledged
            seq = acked
        if upper <= ep.r_trim:
            return
        if seq < ep.r_trim:
            seq = ep.r_trim
        # Everything in [trim, r_last) was delivered and is still held, so only the part at or
        # above r_last can be new.
        r_last: cython.ulonglong = ep.r_last
        if seq < r_last:
            seq = r_last
        if seq < upper:
            ooo = ep.r_ooo
            if seq == r_last:
                r_last = upper
                if ooo is not None:
                    # Deliver whatever was waiting and is now contiguous.
                    while ooo and ooo[0] <= r_last:
                        if ooo[1] > r_last:
                            r_last = ooo[1]
                        del ooo[0:2]
                    if not ooo:
                        ep.r_ooo = None
                ep.r_last = r_last
                if ep.no_data_acked() and self._max_initial_window:
                    peer: _Endpoint = self._resp if ep is self._orig else self._orig
                    if ep.size(peer) > self._max_initial_window:
                        # No acks seen for a full initial window: stop holding delivered data.
                        ep.r_trim = r_last
            else:
                ep.r_ooo = _merge(ooo, seq, upper)

        if ep.r_ooo is not None:
            if (
                self._max_above_hole
                and ep.no_data_acked()
                and ep.r_ooo[-1] - ep.r_last > self._max_above_hole
            ):
                ZeekTcp._give_up(ep)  # above_hole_data_without_any_acks
                return
        if self._excessive_data:
            # Not exact: Zeek sums the blocks it holds; a block straddling the trim point is
            # counted whole there but only from the trim point here.
            held: cython.ulonglong = ep.r_last - ep.r_trim if ep.r_last > ep.r_trim else 0
            ooo = ep.r_ooo
            if ooo is not None:
                for i in range(0, len(ooo), 2):
                    held += ooo[i + 1] - ooo[i]
            if held > self._excessive_data:
                ZeekTcp._give_up(ep)  # excessive_data_without_further_acks

    @staticmethod
    def _give_up(ep: _Endpoint) -> None:
        """ClearBlocks and skip_deliveries: this side's gaps are no longer reported."""
        ep.r_ooo = None
        ep.r_skip = True
        if ep.r_trim < ep.r_last:
            ep.r_trim = ep.r_last

    def _ack_received(self, ep: _Endpoint, seq: cython.ulonglong) -> None:
        """TCP_Reassembler::AckReceived for the endpoint whose data `seq` acknowledges."""
        if ep.fin_cnt > 0 and seq >= ep.fin_seq:
            if ep.fin_seq == 0:
                return  # the seq would be -1 (below r_trim), not the unsigned 2**64 - 1
            seq = ep.fin_seq - 1  # the FIN octet is not data
        if seq <= ep.r_trim:
            return
        # Reassembler::TrimToSeq / DataBlockList::Trim
        if seq > ep.r_last:
            self._undelivered(ep, seq)
        ooo = ep.r_ooo
        if ooo is not None and ooo[0] == ep.r_last:
            ep.r_last = ooo[1]
            del ooo[0:2]
            if not ooo:
                ep.r_ooo = None
        ep.r_trim = seq

    def _undelivered(self, ep: _Endpoint, up_to: cython.ulonglong) -> None:
        """TCP_Reassembler::Undelivered: the peer acknowledged data never seen, so report gaps."""
        if up_to <= 2 and self._is_partial:
            # Faked ISN of a partial connection, or a keep-alive: ignore. (Zeek leaves
            # last_reassem_seq where it was here.)
            return
        if not ep.r_skip:
            ooo = ep.r_ooo
            while ooo is not None and ooo and ooo[0] < up_to:
                self._gap(ep, ooo[0] - ep.r_last)
                ep.r_last = ooo[1]
                del ooo[0:2]
            if ooo is not None and not ooo:
                ep.r_ooo = None
            if up_to > ep.r_last:
                self._gap(ep, up_to - ep.r_last)
        if up_to > ep.r_last:
            ep.r_last = up_to

    def _gap(self, ep: _Endpoint, length: cython.longlong) -> None:
        """TCP_Reassembler::Gap: 'G'/'g' (logarithmic) and missed_bytes, but only while both
        sides are established or closing cleanly; missed_bytes also without that when
        report_gaps_for_partial is set."""
        peer: _Endpoint = self._resp if ep is self._orig else self._orig
        clean: cython.bint = _is_clean(ep) and _is_clean(peer)
        if clean:
            ep.gap_cnt += 1
            if _log_threshold(ep.gap_cnt):
                self._add(ep, "G")
        if clean or self._report_gaps_for_partial:
            self._missed += length

    # -- results ----------------------------------------------------------------------------

    @property
    def history(self) -> str:
        """Zeek's history letters (uppercase: originator; see main.zeek for the alphabet)."""
        return self._history

    # reads for the connection table (C calls when compiled: cpdef in zeekstate.pxd)
    def record_sizes(self) -> tuple:
        """(orig_bytes, resp_bytes, missed_bytes, history): what the record prints, at once."""
        return self._orig.size(self._resp), self._resp.size(self._orig), self._missed, self._history

    def is_closed(self) -> cython.bint:
        """`close_complete`, as a C call."""
        return self._close_complete

    def endpoint_state(self, side: cython.int) -> cython.int:
        """Zeek's EndpointState (TCP_Endpoint.h) of side 0 (orig) or 1 (resp), as an int."""
        return self._orig.state if side == 0 else self._resp.state

    def endpoint_prev_state(self, side: cython.int) -> cython.int:
        """The state that endpoint was in before its current one (TCP_Endpoint::prev_state)."""
        return self._orig.prev_state if side == 0 else self._resp.prev_state

    def endpoint_closed(self, side: cython.int) -> cython.bint:
        """Did that endpoint close (a FIN or RST seen: TCP_Endpoint's did_close)?"""
        return self._orig.did_close if side == 0 else self._resp.did_close

    def conn_state(self) -> str:
        """conn_state exactly as base/protocols/conn/main.zeek's conn_state() computes it."""
        os_, rs = self._orig.state, self._resp.state
        o_inactive = os_ == _INACTIVE or os_ == _PARTIAL
        r_inactive = rs == _INACTIVE or rs == _PARTIAL
        if rs == _RESET:
            if (
                os_ == _SYN_SENT
                or os_ == _SYN_ACK_SENT
                or (os_ == _RESET and self.orig_bytes == 0 and self.resp_bytes == 0)
            ):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os_ == _RESET:
            if r_inactive:
                return "RSTOS0" if _rstos0_history(self._history) else "OTH"
            return "RSTO"
        if rs == _CLOSED and os_ == _CLOSED:
            return "SF"
        if os_ == _CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == _CLOSED:
            return "SHR" if o_inactive else "S3"
        if os_ == _SYN_SENT and rs == _INACTIVE:
            return "S0"
        if os_ == _ESTABLISHED and rs == _ESTABLISHED:
            return "S1"
        return "OTH"

    @property
    def orig_bytes(self) -> int:
        """Originator's TCP_Endpoint::Size(). Zeek logs it only when duration > 0 (set_conn)."""
        return self._orig.size(self._resp)

    @property
    def resp_bytes(self) -> int:
        """Responder's TCP_Endpoint::Size(). Zeek logs it only when duration > 0 (set_conn)."""
        return self._resp.size(self._orig)

    @property
    def missed_bytes(self) -> int:
        """Bytes in content gaps (main.zeek sums content_gap lengths)."""
        return self._missed

    @property
    def orig_pkts(self) -> int:
        """Packets from the originator that Zeek counts (bad checksums are not)."""
        return self._orig.pkts

    @property
    def resp_pkts(self) -> int:
        """Packets from the responder that Zeek counts (bad checksums are not)."""
        return self._resp.pkts

    @property
    def both_closed(self) -> bool:
        """Both sides' closes were reported (TCPSessionAdapter::BothClosed). Zeek moves a
        connection's last-activity time (hence its duration) only on packets that arrive while
        this is False: check it *before* passing the packet."""
        return self._orig.did_close and self._resp.did_close

    @property
    def close_complete(self) -> bool:
        """Zeek considers the connection over (ConnectionClosed's close_complete: a RST, or a
        close after the peer's, or a close while the peer never spoke) and deletes it
        tcp_close_delay (5 s) after its last activity; a later packet of the same 5-tuple
        starts a new connection."""
        return self._close_complete

    @property
    def orig_state(self) -> ZeekState:
        """The originator's Zeek endpoint state (c$orig$state)."""
        return ZeekState(self._orig.state)

    @property
    def resp_state(self) -> ZeekState:
        """The responder's Zeek endpoint state (c$resp$state)."""
        return ZeekState(self._resp.state)


def _merge(ooo: list[int] | None, start: int, end: int) -> list[int]:
    """Add [start, end) to a flat sorted list of disjoint ranges, joining touching ones."""
    if ooo is None:
        return [start, end]
    out: list[int] = []
    i, n = 0, len(ooo)
    while i < n and ooo[i + 1] < start:
        out += (ooo[i], ooo[i + 1])
        i += 2
    while i < n and ooo[i] <= end:
        if ooo[i] < start:
            start = ooo[i]
        if ooo[i + 1] > end:
            end = ooo[i + 1]
        i += 2
    out += (start, end)
    out += ooo[i:]
    ooo[:] = out
    return ooo


def _rstos0_history(history: str) -> bool:
    """main.zeek: `/\\^?S[^HAFGIQ]*R.*/ == c$history` (a whole-string match)."""
    i = 1 if history.startswith("^") else 0
    if history[i : i + 1] != "S":
        return False
    for ch in history[i + 1 :]:
        if ch == "R":
            return True
        if ch in "HAFGIQ":
            return False
    return False


# -- UDP and ICMP ---------------------------------------------------------------------------


def udp_conn_state(orig_pkts: int, resp_pkts: int) -> str:
    """conn_state for UDP (main.zeek): a side is active once it sent a packet that passed the
    checksum check (UDPSessionAdapter request_len/reply_len >= 0). Pass those counts, which
    differ from the logged orig_pkts/resp_pkts when checksums were bad (see ZeekUdp)."""
    if orig_pkts:
        return "SF" if resp_pkts else "S0"
    return "SHR" if resp_pkts else "OTH"


def icmp_conn_state() -> str:
    """conn_state for ICMP and any other non-TCP, non-UDP flow: always "OTH" (main.zeek)."""
    return "OTH"


class ZeekUdp:
    """Zeek's UDP view of one flow (UDP.cc, UDPSessionAdapter.cc): history 'D'/'d' once per
    side, 'C'/'c' logarithmically for bad checksums, '^' on flip, packet counts, conn_state.

    Unlike TCP, a bad-checksum UDP packet is still counted in the packet totals (ConnSize sees
    it before the checksum is checked) but does not make its side active. Not exact: flips that
    Zeek's application analyzers make later (DNS, NTP, ... on a reply seen first) are not
    modelled.
    """

    __slots__ = (
        "_history",
        "_orig_pkts",
        "_resp_pkts",
        "_orig_good",
        "_resp_good",
        "_orig_chk",
        "_resp_chk",
    )

    def __init__(self) -> None:
        self._history = ""
        self._orig_pkts = self._resp_pkts = 0
        self._orig_good = self._resp_good = 0
        self._orig_chk = self._resp_chk = 0

    def flip(self) -> None:
        """Connection::FlipRoles: swap sides and append '^'."""
        self._history += "^"
        self._orig_pkts, self._resp_pkts = self._resp_pkts, self._orig_pkts
        self._orig_good, self._resp_good = self._resp_good, self._orig_good
        self._orig_chk, self._resp_chk = self._resp_chk, self._orig_chk

    def limit_reached(self) -> None:
        """Connection::CheckHistory(HIST_ANALYZER_LIMIT_REACHED, 'X'), once per flow: a tunnel
        analyzer met a datagram past Tunnel::max_depth (packet.limit_reached)."""
        if "X" not in self._history:
            self._history += "X"

    def packet(self, is_orig: cython.bint, bad_checksum: cython.bint) -> None:
        """One UDP datagram in capture order (bad_checksum None: not verified, as False)."""
        if is_orig:
            self._orig_pkts += 1
            if bad_checksum:
                self._orig_chk += 1
                if _log_threshold(self._orig_chk):
                    self._history += "C"
                return
            if not self._orig_good:
                self._history += "D"  # CheckHistory(HIST_ORIG_DATA_PKT, 'D')
            self._orig_good += 1
        else:
            self._resp_pkts += 1
            if bad_checksum:
                self._resp_chk += 1
                if _log_threshold(self._resp_chk):
                    self._history += "c"
                return
            if not self._resp_good:
                self._history += "d"
            self._resp_good += 1

    @property
    def history(self) -> str:
        return self._history

    @property
    def orig_pkts(self) -> int:
        return self._orig_pkts

    @property
    def resp_pkts(self) -> int:
        return self._resp_pkts

    def conn_state(self) -> str:
        return udp_conn_state(self._orig_good, self._resp_good)


# -- who is the originator ------------------------------------------------------------------

# Zeek's likely_server_ports as the default (non-bare) configuration fills it: each script in
# base/protocols and base/frameworks/tunnels adds its analyzer's ports with
# `redef likely_server_ports += { ports }`. Not exact: compiled by hand from those scripts, and
# a Zeek run with -b loads only some of them (then pass the set that run had).
ZEEK_LIKELY_SERVER_PORTS_TCP: frozenset[int] = frozenset(
    {
        21, 22, 25, 79, 80, 81, 88, 110, 135, 139, 143, 389, 443, 445, 502, 563, 585, 587,
        614, 631, 636, 989, 990, 992, 993, 995, 1080, 1434, 1883, 2811, 3128, 3268, 3306,
        3389, 5222, 5223, 5269, 5432, 6379, 6666, 6667, 6668, 6669, 8000, 8080, 8888, 20000,
    }
)  # fmt: skip
ZEEK_LIKELY_SERVER_PORTS_UDP: frozenset[int] = frozenset(
    {
        53, 67, 68, 88, 123, 137, 161, 162, 389, 443, 514, 546, 547, 1812, 2123, 2152, 3544,
        4789, 5060, 5072, 5353, 5355, 6081, 20000,
    }
)  # fmt: skip


def zeek_flips(
    first_flags: int,
    src_port: int,
    dst_port: int,
    *,
    proto: str = "tcp",
    likely_server_ports: Collection[int] | None = None,
    dst_is_broadcast: bool = False,
) -> bool:
    """Whether Zeek makes the *destination* of a connection's first packet its originator.

    first_flags: TCP flags of the first packet (ignored for UDP). src_port/dst_port: that
    packet's ports. likely_server_ports: Zeek's likely_server_ports for this proto (default:
    the full default configuration's, see ZEEK_LIKELY_SERVER_PORTS_*). dst_is_broadcast: the
    destination address is a broadcast address, which Zeek never makes an originator.

    TCP (TCP.cc WantConnection): a first packet that is a pure SYN keeps its sender as
    originator. Otherwise (SYN/ACK, or no SYN at all) flip when the source port is a likely
    server port and the destination port is not; when both are, flip only for a packet without
    SYN whose source port is the lower. UDP (UDP.cc WantConnection): flip when the source port
    is a likely server port and the destination port is not. ICMP flows are never flipped
    here (Zeek's ICMP analyzer orders them by message type, which is the caller's business).
    IPBasedAnalyzer::NewConn skips the flip when the destination is a broadcast address.

    Zeek can also flip later, inside its TCP analyzer; ZeekTcp.packet() reports those.
    """
    if dst_is_broadcast:
        return False
    if proto == "udp":
        ports = ZEEK_LIKELY_SERVER_PORTS_UDP if likely_server_ports is None else likely_server_ports
        return src_port in ports and dst_port not in ports
    if proto != "tcp":
        return False
    if first_flags & TH_SYN and not first_flags & TH_ACK:
        return False
    ports = ZEEK_LIKELY_SERVER_PORTS_TCP if likely_server_ports is None else likely_server_ports
    if src_port not in ports:
        return False
    if dst_port in ports:
        return not first_flags & TH_SYN and src_port < dst_port
    return True

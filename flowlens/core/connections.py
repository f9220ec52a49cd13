# cython: annotation_typing=False
# (C types come from connections.pxd; the annotations here are documentation only)
"""The connection table: 5-tuple keys, port-reuse splitting, originator choice, expiry.

Packets go in, finished `Connection`s come out as soon as they end (closed and lingered, TIME_WAIT
run out, idle too long, or replaced by a new connection on the same 5-tuple), so memory follows
the number of *open* connections, not the capture's length.

A reused 5-tuple is several connections: a SYN whose ISN differs from the one stored for that
side starts a new one, as does any packet after the old one expired (Zeek's
`TCPSessionAdapter::IsReuse` follows the same rule). The originator is the sender of the first
SYN; a SYN/ACK seen first makes its receiver the originator; without either, a port heuristic
decides and the record says the originator was inferred.
"""

from __future__ import annotations

import _socket
from collections.abc import Iterable
from dataclasses import dataclass

import cython

from ..errors import UsageError
from .analyzer import Analyzer, resolve
from .community_id import community_id, icmp_ports
from .constants import NEVER, UNSET
from .decode import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TH_ACK,
    TH_FIN,
    TH_RST,
    TH_SYN,
    Packet,
    window_scale,
)
from .services import TCP_SERVICES, UDP_SERVICES, is_well_known, service_name
from .tcpstate import TcpState, TcpTracker
from .timers import TimerHeap
from .zeekstate import ZEEK_LIKELY_SERVER_PORTS_TCP as _ZEEK_TCP
from .zeekstate import ZeekState, ZeekTcp, ZeekUdp, icmp_conn_state, zeek_flips

__all__ = ["Config", "Connection", "ConnectionTable", "format_addr", "PROTO_NAMES"]

PROTO_NAMES = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp", IPPROTO_ICMPV6: "icmp"}
_PROTO_NAMES = cython.declare(dict, PROTO_NAMES)  # (typed: looked up as C when compiled)
# services.service_name's tables, for to_record
_TCP_SERVICES = cython.declare(dict, TCP_SERVICES)
_UDP_SERVICES = cython.declare(dict, UDP_SERVICES)

# ICMP message types and their counterparts, which form one flow (Zeek's ICMP4_counterpart and
# ICMP6_counterpart, src/packet_analysis/protocol/icmp/ICMP.cc): echo, timestamp, information,
# router solicitation/advertisement, address mask; ICMPv6 echo, router and neighbour discovery,
# MLD query/report, node information, home agent address discovery. Either direction: the
# first message's sender is the originator, its type orig_p and the counterpart resp_p.
_ICMP4_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_COUNTERPART = {
    128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130,
    139: 140, 140: 139, 144: 145, 145: 144,
}  # fmt: skip

#: TcpState, and its name, by the index TcpTracker keeps for it (`.value` and an enum's hash
#: are slow Python-level code)
_STATE_NAMES = tuple(s.value for s in TcpState)
#: Zeek's endpoint states (zeekstate.ZeekState: TCP_Endpoint.h EndpointState), as C ints
_Z_INACTIVE = cython.declare(cython.int, int(ZeekState.INACTIVE))
_Z_SYN_SENT = cython.declare(cython.int, int(ZeekState.SYN_SENT))
_Z_SYN_ACK_SENT = cython.declare(cython.int, int(ZeekState.SYN_ACK_SENT))

#: "None" in TcpTracker's arrays (constants.UNSET)
_UNSET = cython.declare(cython.longlong, UNSET)
#: connections the table remembers by their ports, to find a packet's without its key
_RECENT_SLOTS = cython.declare(cython.int, 256)
#: a deadline after every capture's (the table's `_due` when nothing is scheduled)
_NEVER = cython.declare(cython.longlong, NEVER)

#: Tunnel::ip_tunnel_timeout (init-bare.zeek): an IP tunnel silent this long is a new one
_IP_TUNNEL_TIMEOUT_NS = cython.declare(cython.longlong, 24 * 3600 * 1_000_000_000)

_B62 = cython.declare(bytes, b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

# C constants when compiled (the imported names are Python objects)
_FIN = cython.declare(cython.int, TH_FIN)
_SYN = cython.declare(cython.int, TH_SYN)
_RST = cython.declare(cython.int, TH_RST)
_ACK = cython.declare(cython.int, TH_ACK)
_TCP = cython.declare(cython.int, IPPROTO_TCP)
_UDP = cython.declare(cython.int, IPPROTO_UDP)
_ICMP = cython.declare(cython.int, IPPROTO_ICMP)
_ICMPV6 = cython.declare(cython.int, IPPROTO_ICMPV6)

# from _socket, the C module under socket: importing socket costs every run ~3 ms
_AF_INET = _socket.AF_INET
_AF_INET6 = _socket.AF_INET6
_inet_ntop = _socket.inet_ntop
# address text by packed address: a capture has few distinct hosts, and every record formats two
_ADDR_TEXT: dict = {}


@cython.ccall  # (compiled: called from to_record as C)
def format_addr(addr: bytes) -> str:
    """Packed IPv4/IPv6 address -> text (`192.0.2.1`, `2001:db8::1`)."""
    text = _ADDR_TEXT.get(addr)
    if text is None:
        text = _inet_ntop(_AF_INET if len(addr) == 4 else _AF_INET6, addr)
        if len(_ADDR_TEXT) >= 65536:
            _ADDR_TEXT.clear()
        _ADDR_TEXT[addr] = text
    return text


_M64 = cython.declare(cython.ulonglong, 0xFFFFFFFFFFFFFFFF)
_M32 = cython.declare(cython.ulonglong, 0xFFFFFFFF)
_GOLDEN = cython.declare(cython.ulonglong, 0x9E3779B97F4A7C15)
_FMIX1 = cython.declare(cython.ulonglong, 0xFF51AFD7ED558CCD)
_FMIX2 = cython.declare(cython.ulonglong, 0xC4CEB9FE1A85EC53)
_SEED1 = cython.declare(cython.ulonglong, 0x243F6A8885A308D3)
_SEED2 = cython.declare(cython.ulonglong, 0x13198A2E03707344)


@cython.cfunc
@cython.inline
@cython.returns(cython.ulonglong)
@cython.locals(h=cython.ulonglong, v=cython.ulonglong)
def _mix(h, v) -> cython.ulonglong:
    """One step of the uid hash: fold a 64-bit value in, then scramble (MurmurHash3's fmix64;
    the masks make plain Python compute what C's wrapping arithmetic does)."""
    h = ((h ^ v) * _GOLDEN) & _M64
    h ^= h >> 33
    h = (h * _FMIX1) & _M64
    h ^= h >> 33
    h = (h * _FMIX2) & _M64
    h ^= h >> 33
    return h


@cython.cfunc
@cython.returns(cython.ulonglong)
@cython.locals(
    h=cython.ulonglong,
    v=cython.ulonglong,
    j=cython.Py_ssize_t,
    n=cython.Py_ssize_t,
    p=cython.p_uchar,
)
def _mix_addr(h, addr: bytes) -> cython.ulonglong:
    """Fold a packed address into the uid hash, 8 bytes at a time (after its length)."""
    n = len(addr)
    p = addr  # (compiled: a pointer to the bytes; plain Python indexes the bytes the same way)
    h = _mix(h, n)
    v = 0
    for j in range(n):
        v = ((v << 8) | p[j]) & _M64
        if j % 8 == 7:
            h = _mix(h, v)
            v = 0
    return _mix(h, v)


@cython.cfunc
@cython.locals(
    h1=cython.ulonglong,
    h2=cython.ulonglong,
    w0=cython.ulonglong,
    w1=cython.ulonglong,
    w2=cython.ulonglong,
    cur=cython.ulonglong,
    r=cython.ulonglong,
    i=cython.int,
    ts_ns=cython.longlong,
    frame=cython.longlong,
    proto=cython.int,
    a=bytes,
    pa=cython.int,
    b=bytes,
    pb=cython.int,
)
def _uid(ts_ns, frame, proto, a, pa, b, pb) -> str:
    """ "C" + 17 base-62 digits (least significant first) of a 96-bit hash of the connection's
    first packet (timestamp, frame number and 5-tuple key); the number is divided as three
    32-bit limbs. Plain arithmetic on the fields, so compiled it makes no Python objects."""
    h1 = _mix(_mix(_SEED1, ts_ns & _M64), frame & _M64)
    h2 = _mix(_mix(_SEED2, ts_ns & _M64), frame & _M64)
    h1 = _mix(_mix(_mix(_mix_addr(_mix_addr(_mix(h1, proto), a), b), pa), pb), 0)
    h2 = _mix(_mix(_mix(_mix_addr(_mix_addr(_mix(h2, proto), a), b), pa), pb), 1)
    w0 = h1 >> 32
    w1 = h1 & _M32
    w2 = h2 & _M32
    chars = bytearray(b"C" * 18)
    for i in range(17):
        cur = w0
        w0 = cur // 62
        cur = ((cur % 62) << 32) | w1
        w1 = cur // 62
        cur = ((cur % 62) << 32) | w2
        w2 = cur // 62
        r = cur % 62
        chars[i + 1] = _B62[r]
    return chars.decode("ascii")


@dataclass(frozen=True, slots=True)
class Config:
    """Timers of the connection table, in seconds of capture time."""

    #: maximum segment lifetime; TIME_WAIT lasts 2 x MSL (Linux: 60 s)
    msl_s: float = 30.0
    #: an unanswered connection attempt (SYN_SENT) gives up this long after its first SYN,
    #: unless the capture shows it ending sooner (its SYN retransmissions stop: see
    #: TcpTracker, "states over time"). Linux's default, tcp_syn_retries = 6: on Linux 6.5+
    #: (tcp_syn_linear_timeouts = 4) SYNs at 0, 1, 2, 3, 4, 5, 7, 11, 19, 35, 67 s and the
    #: give-up at 131 s; before 6.5 SYNs at 0, 1, 3, 7, 15, 31, 63 s and 127 s. 131 s is the
    #: default because 6.5 (2023) and later is what current distributions run, and it is the
    #: later of the two: on an older kernel the capture's schedule (intervals doubling from
    #: the first, 1, 2, 4 ... s) shows the socket gone at 127 s when the capture runs on past
    #: it, while 127 s would end a 6.5+ attempt 4 s early whenever the capture stops sooner.
    #: 0: no timer (SYN_SENT lasts until a packet ends it, evidence or not)
    syn_sent_timeout_s: float = 131.0
    #: SYN retransmissions 1 s apart before the RTO starts doubling (Linux 6.5+:
    #: net.ipv4.tcp_syn_linear_timeouts = 4; 0 before 6.5 and on other systems): what
    #: TcpTracker assumes when an attempt's SYN intervals cannot tell (one retransmission, or
    #: the capture cut short before one doubled)
    syn_linear_timeouts: int = 4
    #: a SYN_RECEIVED without the handshake's ACK gives up this long after its first SYN/ACK
    #: unless the capture shows its SYN/ACK retransmissions stopping sooner (Linux:
    #: tcp_synack_retries = 5: SYN/ACKs at 0, 1, 3, 7, 15, 31 s, the request dropped at 63 s);
    #: 0: no timer
    syn_received_timeout_s: float = 63.0
    #: an orphaned FIN_WAIT_2 (its application closed; the peer never sent its FIN) is dropped
    #: this long after it entered FIN_WAIT_2 (Linux: net.ipv4.tcp_fin_timeout = 60 s; see
    #: TcpTracker); 0: no timer, FIN_WAIT_2 lasts until a packet ends it
    fin_wait_2_timeout_s: float = 60.0
    #: an established TCP connection with no packet for this long is emitted (Zeek: 5 min)
    tcp_idle_s: float = 300.0
    #: a connection attempt that never got established (SYN/ACK seen, no ACK)
    attempt_idle_s: float = 60.0
    #: an attempt whose responder was never heard from ends this long after its SYN, and a
    #: later packet (a SYN retry too) starts a new record (Zeek's tcp_attempt_delay, init-bare.zeek;
    #: TCPSessionAdapter::AttemptTimer)
    attempt_delay_s: float = 5.0
    udp_idle_s: float = 60.0
    #: DNS flows (UDP port 53) end sooner: one query/answer exchange (Zeek's dns_session_timeout)
    dns_idle_s: float = 10.0
    icmp_idle_s: float = 60.0
    #: a closed or reset connection is emitted this long after the packet that closed it; later
    #: packets until then still belong to it (Zeek's tcp_close_delay, init-bare.zeek:
    #: TCPSessionAdapter::ConnectionClosed sets its delete timer at close time + delay)
    close_linger_s: float = 5.0
    #: verify checksums (bad ones are flagged, never dropped)
    verify_checksums: bool = True
    #: a BPF read filter in tcpdump's syntax (`tcp port 5432`), run by libpcap on each frame
    #: before it is decoded (flowlens.core.bpf); frames it turns away are counted, not analysed
    read_filter: str | None = None
    #: seed of every record's `community_id` (Community ID v1, 0..65535; the spec's default 0):
    #: the value Zeek's CommunityID::seed or Suricata's community-id-seed is set to, so that
    #: the hashes match theirs
    community_id_seed: int = 0
    #: encapsulations decoded at most, tunnels in tunnels (Zeek's Tunnel::max_depth,
    #: init-bare.zeek); 0 decodes no tunnel (the outer packets are analysed as they are)
    tunnel_max_depth: int = 4
    #: the VLAN ids (802.1Q, and QinQ's inner one) are part of the connection key, as with
    #: Zeek's policy/frameworks/conn_key/vlan_fivetuple.zeek: the same 5-tuple on two VLANs is
    #: two connections (off: VLANs are ignored, as Zeek's default five-tuple key does)
    vlan_key: bool = False

    def __post_init__(self) -> None:
        seed = self.community_id_seed
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 0xFFFF:
            raise UsageError(f"community_id_seed must be an integer 0..65535, not {seed!r}")

    @property
    def time_wait_ns(self) -> int:
        return int(2 * self.msl_s * 1e9)

    @property
    def state_timers_ns(self) -> tuple[int, int | None, int | None, int | None, int]:
        """(TIME_WAIT, SYN_SENT, SYN_RECEIVED, FIN_WAIT_2 timers in ns or None: no timer,
        syn_linear_timeouts): what the table hands each TcpTracker, which owns what they
        mean."""
        return (
            self.time_wait_ns,
            int(self.syn_sent_timeout_s * 1e9) if self.syn_sent_timeout_s > 0 else None,
            int(self.syn_received_timeout_s * 1e9) if self.syn_received_timeout_s > 0 else None,
            int(self.fin_wait_2_timeout_s * 1e9) if self.fin_wait_2_timeout_s > 0 else None,
            self.syn_linear_timeouts,
        )


class Connection:
    """One connection (TCP) or flow (UDP, ICMP): the record `flowlens flows` prints.

    Index 0 of the per-side lists is the originator, 1 the responder.
    """

    __slots__ = (
        "uid",  # stable id within the capture: "C" + 17 base-62 characters
        "key",  # canonical table key
        "proto",  # IP protocol number
        "orig_h",  # packed addresses and ports of originator and responder
        "orig_p",
        "resp_h",
        "resp_p",
        "first_ts_ns",
        "last_ts_ns",
        "first_frame",
        "last_frame",
        "_pkts",  # [orig, resp] packets (C arrays when compiled: see the `pkts` property)
        "_payload",  # [orig, resp] transport payload bytes
        "_ip_bytes",  # [orig, resp] IP-level bytes
        "tcp",  # TcpTracker (TCP only)
        "zeek",  # ZeekTcp (TCP only)
        "udp",  # ZeekUdp (UDP only): Zeek's history letters and conn_state
        "originator_inferred",
        "flipped",  # the first packet came from the responder
        # segments the TCP analysis (flowlens.analyzers.tcpanalysis, Wireshark's rules) flagged
        # as retransmitted (retransmission, fast or spurious), and as out of order: it counts
        # them here as it classifies them; 0 when it did not run (and for UDP/ICMP)
        "retransmissions",
        "out_of_order",
        # the protocol the first payload bytes speak (flowlens.analyzers.service_id's
        # ServiceAnalyzer writes them as the connection ends; None when it did not run):
        # Zeek's service names (comma-separated) or None, the parsed facts (dict) or None, and
        # the frames of the first data each way (the evidence of a finding)
        "service",
        "app",
        "service_frames",
        "bad_checksums",
        "icmp_errors",  # [(ts_ns, frame, type, code, reporter)] ICMP errors quoting this flow
        "vlan",  # the first packet's outermost 802.1Q VLAN id, or None
        "inner_vlan",  # its second (QinQ) VLAN id, or None
        # uids of the tunnels this connection's packets came out of (Zeek's tunnel_parents:
        # each packet's innermost encapsulation), a set; None when it was not tunnelled
        "tunnel_parents",
        "end_ts_ns",  # capture time the record was closed at (capture end or expiry)
        "prev_uid",  # uid of the connection this one reused the 5-tuple of
        "reused_in_time_wait",  # ... while that connection still had a side in TIME_WAIT
        "closed_by",  # why the record ended: "closed", "idle", "reused", "capture_end", or
        # "continued" (the next record on the 5-tuple took its closing endpoints over)
        "states",  # [state per analyzer] by Analyzer.slot (None before the first packet): read
        # them through each analyzer's `state_of(conn)`
        "zeek_last_ns",  # Zeek's last_time: what its `duration` ends at (see _count)
        "_close_ns",  # when the connection was first seen closed (_UNSET before)
        "_syn_carried",  # SYN retries of the same attempt in earlier records (see _open_tcp)
        "_done",
        "_held",
        "_closing",  # closed, and rescheduled for the shorter close linger
        "community_id_seed",  # the table's Config.community_id_seed, for the record's hash
    )

    @cython.locals(pkt=Packet)
    def __init__(
        self,
        key,
        proto,
        orig_h,
        orig_p,
        resp_h,
        resp_p,
        pkt: Packet,
        cfg: Config,
        timers=None,
    ):
        self.key = key
        self.proto = proto
        self.orig_h, self.orig_p, self.resp_h, self.resp_p = orig_h, orig_p, resp_h, resp_p
        self.first_ts_ns = self.last_ts_ns = pkt.ts_ns
        self.first_frame = self.last_frame = pkt.frame
        self._pkts = [0, 0]
        self._payload = [0, 0]
        self._ip_bytes = [0, 0]
        self.tcp: TcpTracker | None
        if proto == _TCP:
            # (the table passes its Config's timers; computing them per connection is slow)
            self.tcp = TcpTracker(*(cfg.state_timers_ns if timers is None else timers))
        else:
            self.tcp = None
        self.zeek = ZeekTcp() if proto == _TCP else None
        self.udp: ZeekUdp | None = None
        self.originator_inferred = False
        self.flipped = False
        self.retransmissions = 0
        self.out_of_order = 0
        self.service: str | None = None
        self.app: dict | None = None
        self.service_frames: tuple[int, ...] | None = None
        self.bad_checksums = 0
        self.icmp_errors: list[tuple[int, int, int, int, bytes]] | None = None
        self.vlan = pkt.vlan
        self.inner_vlan = pkt.inner_vlan
        self.tunnel_parents: set[str] | None = None
        self.end_ts_ns: int | None = None
        self.prev_uid: str | None = None
        self.reused_in_time_wait = False
        self.closed_by: str | None = None
        self.states: list | None = None
        self.zeek_last_ns = pkt.ts_ns
        self._close_ns = _UNSET
        self._syn_carried = 0
        self._done = False
        self._held = False
        self._closing = False
        self.community_id_seed = cfg.community_id_seed
        # stable id: "C" + 17 base-62 characters
        self.uid = _uid(pkt.ts_ns, pkt.frame, key[0], key[1], key[2], key[3], key[4])

    # ------------------------------------------------------------------ derived fields
    # scalar reads for other modules (C calls when compiled: cpdef in connections.pxd)
    def pkts_sent(self, side: int) -> int:
        """Packets `side` (0 orig, 1 resp) sent."""
        return self._pkts[side]

    def payload_sent(self, side: int) -> int:
        """Transport payload bytes `side` sent (each segment's length: retransmissions count)."""
        return self._payload[side]

    @property
    def held(self) -> bool:
        """It closed and left the live table, but was kept on its 5-tuple until its TIME_WAIT
        (or SYN_SENT) ran out (`ConnectionTable._hold`). A held record that a new one on its
        5-tuple ends ("reused", "continued") leaves after that one opened."""
        return self._held

    @property
    def pkts(self) -> list[int]:
        """[orig, resp] packets (a new list: read-only)."""
        return [self._pkts[0], self._pkts[1]]

    @property
    def payload(self) -> list[int]:
        """[orig, resp] transport payload bytes (a new list: read-only)."""
        return [self._payload[0], self._payload[1]]

    @property
    def ip_bytes(self) -> list[int]:
        """[orig, resp] IP-level bytes (a new list: read-only)."""
        return [self._ip_bytes[0], self._ip_bytes[1]]

    @property
    def proto_name(self) -> str:
        return PROTO_NAMES.get(self.proto, str(self.proto))

    @property
    def ts(self) -> float:
        """First packet, epoch seconds."""
        return self.first_ts_ns / 1e9

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last packet; never negative (clock jumps)."""
        return max(0, self.last_ts_ns - self.first_ts_ns) / 1e9

    @property
    def zeek_duration_s(self) -> float:
        """Zeek's `duration` (the record's): first packet to Zeek's last_time (see _count)."""
        return max(0, self.zeek_last_ns - self.first_ts_ns) / 1e9

    @property
    def port_service(self) -> str | None:
        """The responder's port's name in the built-in table (a convention, not a proof)."""
        return service_name(self.proto_name, self.resp_p)

    @property
    def history(self) -> str | None:
        """Zeek's history letters (TCP and UDP; None for ICMP, which Zeek logs as `-`)."""
        if self.zeek is not None:
            return self.zeek.history
        if self.udp is not None:
            return self.udp.history
        return None

    @property
    def conn_state(self) -> str:
        if self.zeek is not None:
            return self.zeek.conn_state()
        if self.udp is not None:
            return self.udp.conn_state()
        return icmp_conn_state()

    def swap_roles(self) -> None:
        """Originator and responder trade places, with every per-side count and state."""
        self.orig_h, self.resp_h = self.resp_h, self.orig_h
        self.orig_p, self.resp_p = self.resp_p, self.orig_p
        self._pkts[0], self._pkts[1] = self._pkts[1], self._pkts[0]
        self._payload[0], self._payload[1] = self._payload[1], self._payload[0]
        self._ip_bytes[0], self._ip_bytes[1] = self._ip_bytes[1], self._ip_bytes[0]
        self.flipped = not self.flipped
        if self.tcp is not None:
            self.tcp.swap()

    @property
    def orig_bytes(self) -> int:
        return self.zeek.orig_bytes if self.zeek is not None else self._payload[0]

    @property
    def resp_bytes(self) -> int:
        return self.zeek.resp_bytes if self.zeek is not None else self._payload[1]

    @property
    def missed_bytes(self) -> int:
        return self.zeek.missed_bytes if self.zeek is not None else 0

    def state_at(self, side: int, ts_ns: int) -> TcpState | None:
        """TCP state of `side` (0 orig, 1 resp) at `ts_ns` (`TcpTracker.state_at`); None for
        UDP/ICMP."""
        if self.tcp is None:
            return None
        return self.tcp.state_at(side, ts_ns)

    @cython.locals(end=cython.longlong, tcp=TcpTracker)
    def _end_states(self) -> tuple[str, str]:
        """(orig_state, resp_state) for the record: the tracker's state of both sides when the
        record ended, as names."""
        end = self.end_ts_ns if self.end_ts_ns is not None else self.last_ts_ns
        tcp = self.tcp
        assert tcp is not None  # (called for TCP records only)
        return _STATE_NAMES[tcp.state_index_at(0, end)], _STATE_NAMES[tcp.state_index_at(1, end)]

    @property
    def orig_state(self) -> str | None:
        """The originator's TCP state when the capture ended (or the record was closed)."""
        return self._end_state(0)

    @property
    def resp_state(self) -> str | None:
        return self._end_state(1)

    def _end_state(self, side: int) -> str | None:
        if self.tcp is None:
            return None
        return self._end_states()[side]

    @property
    def handshake(self) -> str | None:
        return self.tcp.handshake() if self.tcp is not None else None

    @property
    def teardown(self) -> str | None:
        return self.tcp.teardown() if self.tcp is not None else None

    @property
    def close_initiator(self) -> str | None:
        return self.tcp.close_initiator() if self.tcp is not None else None

    @property
    def synack_ms(self) -> float | None:
        return self.tcp.synack_ms if self.tcp is not None else None

    @property
    def ackdat_ms(self) -> float | None:
        return (
            self.tcp.ackdat_ms if self.tcp is not None and self.tcp.synack_ms is not None else None
        )

    @property
    def irtt_ms(self) -> float | None:
        if self.tcp is None or self.tcp.synack_ms is None or self.tcp.ackdat_ms is None:
            return None
        return self.tcp.synack_ms + self.tcp.ackdat_ms

    @property
    def syn_retries(self) -> int:
        """Retransmitted SYNs of this attempt, counting those of earlier records that Zeek's
        attempt timer ended (see ConnectionTable._open_tcp)."""
        return max(0, self.tcp.syns_sent(0) - 1) + self._syn_carried if self.tcp is not None else 0

    @property
    def timeline(self) -> list[tuple[int, int | None, str, str]]:
        """[(ts_ns, frame or None, "orig"/"resp", state name)]: the tracker's timeline, with
        the CLOSED a timed state (TIME_WAIT, SYN_SENT, SYN_RECEIVED) ran out into (frame None)
        when that fell before the end of the record (`TcpTracker.spans`)."""
        if self.tcp is None:
            return []
        out = [(t, f, "orig" if s == 0 else "resp", st.value) for t, f, s, st in self.tcp.timeline]
        end = self.end_ts_ns if self.end_ts_ns is not None else self.last_ts_ns
        for side, _state, _start, stop, _frame, timed_out in self.tcp.spans():
            if timed_out and stop <= end:
                out.append((stop, None, "orig" if side == 0 else "resp", "CLOSED"))
        out.sort(key=lambda e: e[0])
        return out

    @cython.locals(
        tcp=TcpTracker,
        zeek=ZeekTcp,
        udp=ZeekUdp,
        duration=cython.longlong,
        synack_ns=cython.longlong,
        ackdat_ns=cython.longlong,
    )
    def to_record(self) -> dict:
        """The record with Zeek's dotted field names (DESIGN.md, connection record).

        Built for every connection, so the properties above are inlined here (same values)."""
        tcp = self.tcp
        zeek = self.zeek
        udp = self.udp
        proto_name = _PROTO_NAMES.get(self.proto)
        if proto_name is None:
            proto_name = str(self.proto)
        # Zeek's duration: Conn.cc (conn_val duration = last_time - start_time), last_time as
        # _count keeps it
        duration = self.zeek_last_ns - self.first_ts_ns
        if duration < 0:
            duration = 0
        if zeek is not None:
            # ZeekTcp's orig_bytes, resp_bytes, missed_bytes and history properties, read as C
            orig_bytes, resp_bytes, missed, history = zeek.record_sizes()
            conn_state = zeek.conn_state()
        else:
            orig_bytes, resp_bytes, missed = self._payload[0], self._payload[1], 0
            if udp is not None:
                history, conn_state = udp.history, udp.conn_state()
            else:
                history, conn_state = None, icmp_conn_state()
        orig_state: str | None  # (None for UDP and ICMP)
        resp_state: str | None
        handshake: str | None
        teardown: str | None
        if tcp is not None:
            orig_state, resp_state = self._end_states()
            handshake, teardown, close_initiator = (
                tcp.handshake(),
                tcp.teardown(),
                tcp.close_initiator(),
            )
            synack_ns, ackdat_ns = tcp.synack_leg_ns(), tcp.ackdat_leg_ns()
            synack = _ms3(synack_ns)
            ackdat = _ms3(ackdat_ns) if synack_ns != _UNSET else None
            irtt = (
                _ms3(synack_ns + ackdat_ns) if synack_ns != _UNSET and ackdat_ns != _UNSET else None
            )
            syn_retries = max(0, tcp.syns_sent(0) - 1) + self._syn_carried
        else:
            orig_state = resp_state = handshake = teardown = close_initiator = None
            synack = ackdat = irtt = None
            syn_retries = 0
        return {
            "uid": self.uid,
            "ts": _s6(self.first_ts_ns),
            "duration": _s6(duration),
            "proto": proto_name,
            "id.orig_h": format_addr(self.orig_h),
            "id.orig_p": self.orig_p,
            "id.resp_h": format_addr(self.resp_h),
            "id.resp_p": self.resp_p,
            "community_id": _community_id(
                self.proto,
                self.orig_h,
                self.orig_p,
                self.resp_h,
                self.resp_p,
                self.community_id_seed,
            ),
            "service": self.service,
            "port_service": (
                _TCP_SERVICES.get(self.resp_p)
                if self.proto == _TCP
                else _UDP_SERVICES.get(self.resp_p)
                if self.proto == _UDP
                else None
            ),  # service_name
            "app": self.app,
            "orig_pkts": self._pkts[0],
            "resp_pkts": self._pkts[1],
            "orig_bytes": orig_bytes,
            "resp_bytes": resp_bytes,
            "orig_ip_bytes": self._ip_bytes[0],
            "resp_ip_bytes": self._ip_bytes[1],
            "missed_bytes": missed,
            "conn_state": conn_state,
            "history": history,
            "tunnel_parents": (
                sorted(self.tunnel_parents) if self.tunnel_parents is not None else None
            ),
            "vlan": self.vlan,
            "inner_vlan": self.inner_vlan,
            "orig_state": orig_state,
            "resp_state": resp_state,
            "handshake": handshake,
            "teardown": teardown,
            "close_initiator": close_initiator,
            "originator_inferred": self.originator_inferred,
            "synack_ms": synack,
            "ackdat_ms": ackdat,
            "irtt_ms": irtt,
            "retransmissions": self.retransmissions,
            "out_of_order": self.out_of_order,
            "syn_retries": syn_retries,
        }

    def __repr__(self) -> str:
        return (
            f"Connection({self.uid} {self.proto_name} {format_addr(self.orig_h)}:{self.orig_p} -> "
            f"{format_addr(self.resp_h)}:{self.resp_p} {self.conn_state} {self.history})"
        )


@cython.cfunc
@cython.inline
@cython.returns(cython.longlong)
@cython.locals(ns=cython.longlong)
def _us(ns):
    """Nanoseconds rounded to whole microseconds (half up), as an integer: exact, and much
    cheaper than round() on a float. Records give times to the microsecond, as Zeek's logs."""
    return (ns + 500) // 1000


@cython.cfunc
@cython.locals(ns=cython.longlong)
def _s6(ns) -> float:
    """Nanoseconds -> seconds, to the microsecond."""
    return _us(ns) / 1e6


@cython.cfunc
@cython.locals(ns=cython.longlong)
def _ms3(ns) -> object:
    """Nanoseconds -> milliseconds, to the microsecond; None for _UNSET."""
    return None if ns == _UNSET else _us(ns) / 1e3


RECORD_FIELDS = tuple(
    [
        "uid",
        "ts",
        "duration",
        "proto",
        "id.orig_h",
        "id.orig_p",
        "id.resp_h",
        "id.resp_p",
        "community_id",
        "service",
        "port_service",
        "app",
        "orig_pkts",
        "resp_pkts",
        "orig_bytes",
        "resp_bytes",
        "orig_ip_bytes",
        "resp_ip_bytes",
        "missed_bytes",
        "conn_state",
        "history",
        "tunnel_parents",
        "vlan",
        "inner_vlan",
        "orig_state",
        "resp_state",
        "handshake",
        "teardown",
        "close_initiator",
        "originator_inferred",
        "synack_ms",
        "ackdat_ms",
        "irtt_ms",
        "retransmissions",
        "out_of_order",
        "syn_retries",
    ]
)


def _community_id(
    proto: int, orig_h: bytes, orig_p: int, resp_h: bytes, resp_p: int, seed: int = 0
) -> str:
    """The record's Community ID v1 with `seed` (Config.community_id_seed; core/community_id.py:
    the spec's rules; for ICMP the record's ports are the message type and, for a message
    without a reply type, its code)."""
    if proto == _ICMP or proto == _ICMPV6:
        sport, dport, one_way = icmp_ports(proto, orig_p, resp_p)
        return community_id(proto, orig_h, sport, resp_h, dport, seed, one_way)
    return community_id(proto, orig_h, orig_p, resp_h, resp_p, seed)


def _first_seen(c: Connection) -> tuple:
    # one packet can start a tunnel's outer flow and the connection inside it: the tunnel
    # first, then the uid, so that the order is the connections' own, not the table's
    # (flowlens.core.shard merges shards by it)
    return (c.first_ts_ns, c.first_frame, c.tunnel_parents is not None, c.uid)


#: the heap is pruned of finished connections' entries once it holds this many, and then
#: again each time it has doubled
_HEAP_PRUNE_MIN = 4096


@cython.locals(c=Connection)
def _not_done(c) -> bool:
    """Whether connection `c` is still in the table (`ConnectionTable._prune` keeps its timers)."""
    return not c._done


def _likely_server(proto: str, port: int, other: int) -> bool:
    """Port heuristic for an originator no SYN names: is `port` the server's side?

    A well-known or registered service port beats a port that is not; otherwise the lower port
    is the server's (ephemeral ports are high on every common system).
    """
    a, b = is_well_known(proto, port), is_well_known(proto, other)
    if a != b:
        return a
    return port < other


class ConnectionTable:
    """Feed packets in capture order; finished connections come out of `add` and `flush`.

    `analyzers` (`flowlens.core.analyzer.Analyzer`s, with their dependencies added and ordered
    by `resolve`) are told of each connection's start, packets, role flips and end (see
    core/analyzer.py for the hooks and their order); each keeps its per-connection state in its
    slot of `conn.states`, which is freed with the connection. `finish` is the pipeline's to call.
    """

    def __init__(self, config: Config | None = None, analyzers: Iterable = ()) -> None:
        self.config = config or Config()
        self.analyzers = resolve(analyzers)
        self._n_analyzers = len(self.analyzers)
        self._table: dict[tuple, Connection] = {}
        # closed connections kept until their TIME_WAIT runs out (see _hold)
        self._held: dict[tuple, Connection] = {}
        self._heap = TimerHeap()  # deadlines of the open and held connections
        # recent packets' connections, by their ports (see _recent)
        self._recent_slots = [None] * _RECENT_SLOTS
        self._spare: list[Connection] = []  # the list `add` fills next (see there)
        self._due = _NEVER  # the earliest deadline in _heap (`_heap.due()`), kept as a C number
        self._heap_prune_at = _HEAP_PRUNE_MIN
        self.now_ns = 0
        self.connections_seen = 0
        self.open_peak = 0
        cfg = self.config
        self._linger = int(cfg.close_linger_s * 1e9)
        self._tcp_idle = int(cfg.tcp_idle_s * 1e9)
        self._attempt_idle = int(cfg.attempt_idle_s * 1e9)
        self._attempt_delay = int(cfg.attempt_delay_s * 1e9)
        # attempts Zeek's attempt timer ended, by key: (originator's ISN, SYN retries, uid),
        # so that a retry after it continues the count (see _open_tcp)
        self._attempts: dict[tuple, tuple] = {}
        # IP tunnels (IP-in-IP, GRE) by their address pair: [uid, last packet's ns] (see
        # _ip_tunnel_uid), and the sides of each Teredo flow that carried Teredo (by uid)
        self._ip_tunnels: dict[tuple, list] = {}
        self._teredo_sides: dict[str, int] = {}
        self._vlan_key = cfg.vlan_key
        self._udp_idle = int(cfg.udp_idle_s * 1e9)
        self._dns_idle = int(min(cfg.dns_idle_s, cfg.udp_idle_s) * 1e9)
        self._icmp_idle = int(cfg.icmp_idle_s * 1e9)
        self._timers = cfg.state_timers_ns  # handed to every TcpTracker

    def __len__(self) -> int:
        """Connections in memory: open ones and closed ones still in TIME_WAIT."""
        return len(self._table) + len(self._held)

    # ------------------------------------------------------------------ expiry
    def _closed(self, c: Connection) -> bool:
        # (`_close_complete` is what ZeekTcp.close_complete returns: a C field when compiled)
        assert c.tcp is not None and c.zeek is not None  # (TCP connections only)
        return c.tcp.closed_ts is not None or c.zeek.is_closed()

    @cython.locals(t=TcpTracker, d=cython.longlong, z=ZeekTcp)
    def _deadline(self, c: Connection) -> int:
        if c._held:
            assert c.tcp is not None  # (only TCP connections are held)
            return c.tcp.settled_ns() or c.last_ts_ns
        if c.tcp is not None:
            if self._closed(c):
                # TCPSessionAdapter::ConnectionClosed: once the close is complete the delete
                # timer is set at the connection's last_time + tcp_close_delay, and packets
                # after that do not move it
                if c._close_ns == _UNSET:
                    c._close_ns = c.zeek_last_ns
                return c._close_ns + self._linger
            z = c.zeek
            assert z is not None  # (a TCP connection has both trackers)
            if (
                (z.endpoint_state(0) == _Z_SYN_SENT or z.endpoint_state(0) == _Z_SYN_ACK_SENT)
                and z.endpoint_prev_state(0) == _Z_INACTIVE
                and z.endpoint_state(1) == _Z_INACTIVE
            ):
                # TCPSessionAdapter::UpdateInactiveState sets the attempt timer at the
                # originator's first SYN (the connection's first packet, as the responder is
                # silent) + tcp_attempt_delay; AttemptTimer removes the connection if the
                # originator is still in SYN_SENT/SYN_ACK_SENT and the responder INACTIVE
                return c.first_ts_ns + self._attempt_delay
            t = c.tcp
            if t.handshake_acked or t.midstream:
                return c.last_ts_ns + self._tcp_idle
            d = c.last_ts_ns + self._attempt_idle
            # an attempt is kept until its endpoints gave up on it (SYN_SENT, SYN_RECEIVED
            # timers: TcpTracker), so that the record's end states are final, as a held
            # TIME_WAIT is (a later `states --at` agrees with `flows`)
            settled = t.settled_ns()
            if settled is not None and settled > d:
                d = settled
            return d
        if c.proto == _UDP:
            if c.resp_p == 53 or c.orig_p == 53:
                return c.last_ts_ns + self._dns_idle
            return c.last_ts_ns + self._udp_idle
        return c.last_ts_ns + self._icmp_idle

    @cython.locals(d=cython.longlong)
    def _schedule(self, c: Connection, deadline: int | None = None) -> None:
        d = self._deadline(c) if deadline is None else deadline
        self._heap.push(d, c)
        if d < self._due:
            self._due = d
        if len(self._heap) >= self._heap_prune_at:
            self._prune()

    def compact(self) -> None:
        """Drop finished connections' timer entries now (`_prune`), as the table does from time
        to time anyway: nothing it yields changes; a snapshot of the table (batch's rotation-set
        checkpoints) then pickles only what is open."""
        self._prune()

    def _prune(self) -> None:
        """Drop the entries of finished connections from the heap. A connection's first entry
        (its idle deadline) outlives it when it closes sooner; left there, it would keep the
        finished connection and its analyzers' state alive for the whole idle timeout, and
        memory would follow the connections of the last minutes rather than the open ones."""
        heap = self._heap
        heap.keep(_not_done)
        self._due = heap.due()
        self._heap_prune_at = max(_HEAP_PRUNE_MIN, 2 * len(heap))

    def _finish(self, c: Connection, end_ns: int, why: str) -> Connection:
        """Every way out of the table ends here: the record is final, the analyzers' `on_end`."""
        c._done = True
        c.end_ts_ns = end_ns
        c.closed_by = why
        if c.tcp is not None:
            # how far the capture went: the evidence for the end of SYN_SENT/SYN_RECEIVED
            c.tcp.capture_ran_to(self.now_ns)
        if self._table.get(c.key) is c:
            del self._table[c.key]
        if self._held.get(c.key) is c:
            del self._held[c.key]
        if self._n_analyzers:
            self._end(c)
        return c

    def _hold(self, c: Connection, tw_end: int, out: list) -> None:
        """A closed connection (or an attempt Zeek's attempt timer ended) leaves the live table
        (the next packet on its 5-tuple starts a new record, as in Zeek) but is kept until its
        TIME_WAIT (or SYN_SENT) runs out, so that a SYN reusing the port in the meantime is seen
        for what it is and the record's end state is final."""
        del self._table[c.key]
        older = self._held.get(c.key)
        if older is not None:
            out.append(self._finish(older, c.first_ts_ns, "reused"))
        self._held[c.key] = c
        c._held = True
        self._schedule(c, tw_end)

    @cython.locals(heap=TimerHeap, c=Connection, d=cython.longlong, out=list)
    def expire(self, now_ns: int) -> list[Connection]:
        """Emit every connection whose deadline is at or before `now_ns`."""
        out = []
        heap = self._heap
        while heap.due() <= now_ns:
            c = heap.pop()
            if c._done:
                continue
            d = self._deadline(c)
            if d > now_ns:
                self._schedule(c, d)
                continue
            if c._held:
                out.append(self._finish(c, d, "closed"))
                continue
            if c.tcp is not None and self._closed(c):
                tw_end = c.tcp.settled_ns()  # when its TIME_WAIT runs out
                if tw_end is not None and tw_end > d:
                    self._hold(c, tw_end, out)
                    continue
                out.append(self._finish(c, d, "closed"))
            else:
                if (
                    c.tcp is not None
                    and c.zeek is not None  # (a TCP connection has both trackers)
                    and c.zeek.endpoint_state(1) == _Z_INACTIVE
                ):
                    # Zeek's attempt timer ended the record (a retry starts a new one); the
                    # originator's socket is still in SYN_SENT until it gives up, so the record
                    # is held as a closed one is held in TIME_WAIT: a retry on its 5-tuple takes
                    # the socket over (_retire cuts the old SYN_SENT there), and only one
                    # socket per 5-tuple is ever counted
                    self._remember_attempt(c)
                    settled = c.tcp.settled_ns()
                    if settled is not None and settled > d:
                        self._hold(c, settled, out)
                        continue
                out.append(self._finish(c, d, "idle"))
        self._due = heap.due()
        return out

    @cython.locals(t=TcpTracker)
    def _remember_attempt(self, c: Connection) -> None:
        """An attempt ended by Zeek's attempt timer: keep its ISN and SYN count, so that a retry
        of the same SYN (a new record, as in Zeek) still counts as a retry (`syn_retries`)."""
        t = c.tcp
        assert t is not None  # (TCP connections only)
        if t.isn_of(0) == _UNSET:
            return
        if len(self._attempts) >= 65536:
            self._attempts.clear()
        self._attempts[c.key] = (
            t.isn_of(0),
            max(0, t.syns_sent(0) - 1) + c._syn_carried,
            c.uid,
            t.syn_attempt(),
        )

    def flush(self) -> list[Connection]:
        """The capture ended: emit everything still open or held, in order of first packet."""
        rest = sorted(
            list(self._table.values()) + list(self._held.values()),
            key=_first_seen,
        )
        end = self.now_ns
        out = [self._finish(c, end, "capture_end") for c in rest]
        self._heap.clear()
        self._due = _NEVER
        return out

    # ------------------------------------------------------------------ packets
    @cython.locals(pkt=Packet, ts=cython.longlong, done=list, proto=cython.int)
    def add(self, pkt: Packet) -> list[Connection] | None:
        """Apply one packet; returns the connections that finished before it, or None when
        none did (most packets: no list is made for them)."""
        ts = pkt.ts_ns
        done = self._spare  # an empty list, the caller's only if something is put in it
        if ts > self.now_ns:
            self.now_ns = ts
            if self._due <= ts:
                done.extend(self.expire(ts))
        proto = pkt.proto
        if proto == _TCP:
            self._tcp(pkt, done)
        elif proto == _UDP:
            self._flow(pkt)
        elif proto == _ICMP or proto == _ICMPV6:
            self._icmp(pkt)
        if not done:
            return None
        self._spare = []
        return done

    @cython.locals(ts=cython.longlong)
    def advance(self, ts_ns: int) -> list[Connection] | None:
        """The clock part of `add` alone: a packet at `ts_ns` that this table does not own
        (another shard's, `flowlens.core.shard`) still moves time on, so that every
        connection ends at the same packet as it would in one table holding them all."""
        ts = ts_ns
        if ts > self.now_ns:
            self.now_ns = ts
            if self._due <= ts:
                return self.expire(ts)
        return None

    def attach_icmp_error(self, pkt: Packet) -> None:
        """Only the part of `add` for an ICMP error that quotes one of this table's flows (a
        shard that holds the quoted flow but not the error's own ICMP flow)."""
        self._attach_icmp_error(pkt)

    # ------------------------------------------------------------------ tunnels
    @cython.locals(
        pkt=Packet, layer=object, out=list, chain=list, parent=object, inner=cython.bint,
        done=list,
    )  # fmt: skip
    def add_encapsulated(self, pkt: Packet, inner: bool = True) -> list[Connection] | None:
        """`add` for a packet the decoder took out of a tunnel (`pkt.encap` is set): first the
        UDP datagrams that carried it, outermost first, as the flows they are (Zeek logs the
        outer UDP connection of VXLAN, Geneve, GTPv1, Teredo and AYIYA too), then the packet.

        Each connection's `tunnel_parents` collects the uid of the tunnel its packets came
        straight out of (Zeek's conn/main.zeek: the last EncapsulatingConn's uid, at
        new_connection and tunnel_changed): the outer UDP flow's uid, or, for IP-in-IP and GRE,
        the uid the table gives that tunnel (`_ip_tunnel_uid`: Zeek's tunnel.log uid; no
        connection record of its own, as Zeek's conn.log has none).

        `inner=False` adds the tunnel layers only (a shard that does not own the carried
        connection still keeps every tunnel whole, so that the parents' uids are the same in
        every shard: flowlens.core.shard)."""
        chain = []
        layer = pkt.encap
        while layer is not None:
            chain.append(layer)
            layer = layer.encap
        out: list[Connection] = []
        parent = None
        for layer in reversed(chain):
            if isinstance(layer, Packet):
                parent = self._add_layer(layer, parent, out)
            else:
                parent = self._ip_tunnel_uid(layer, pkt)
        if inner:
            self._add_layer(pkt, parent, out)
        else:  # (an IP tunnel has no flow of its own whose packet would move the clock)
            done = self.advance(pkt.ts_ns)
            if done:
                out.extend(done)
        return out or None

    @cython.locals(pkt=Packet, c=Connection, done=list, side=cython.int)
    def _add_layer(self, pkt: Packet, parent: str | None, out: list) -> str | None:
        """Add one packet of a tunnel's chain; the uid its connection gives what it carries."""
        done = self.add(pkt)
        if done:
            out.extend(done)
        c = self.connection_of(pkt)
        if c is None:
            return parent
        if parent is not None:
            if c.tunnel_parents is None:
                c.tunnel_parents = set()
            c.tunnel_parents.add(parent)
        kind = pkt.tunnel
        if kind is not None and c.service is None:
            # Zeek's AnalyzerConfirmation names the flow's service after the tunnel; Teredo's
            # only once both sides sent Teredo (Tunnel::delay_teredo_confirmation = T)
            if kind == "teredo":
                side = 1 if pkt.src == c.orig_h and pkt.sport == c.orig_p else 2
                sides = self._teredo_sides.get(c.uid, 0) | side
                if len(self._teredo_sides) >= 65536:
                    self._teredo_sides.clear()
                self._teredo_sides[c.uid] = sides
                if sides == 3:
                    c.service = kind
            else:
                c.service = kind
        return c.uid

    @cython.locals(pkt=Packet, entry=list, now=cython.longlong)
    def _ip_tunnel_uid(self, tunnel, pkt: Packet) -> str:
        """The uid of an IP tunnel (decode.IpTunnel), named by its address pair either way
        round (IPTunnel.cc `ip_tunnels`), new after Tunnel::ip_tunnel_timeout (24 hours) of
        silence. A hash of its first packet, as connections' uids are."""
        a, b = tunnel.src, tunnel.dst
        key = (a, b) if a <= b else (b, a)
        now = pkt.ts_ns
        entry = self._ip_tunnels.get(key)
        if entry is None or now - entry[1] >= _IP_TUNNEL_TIMEOUT_NS:
            if len(self._ip_tunnels) >= 65536:
                self._ip_tunnels.clear()
            proto = 47 if tunnel.kind == "GRE" else 4
            entry = [_uid(now, pkt.frame, proto, key[0], 0, key[1], 0), now]
            self._ip_tunnels[key] = entry
        else:
            entry[1] = now
        return entry[0]

    @cython.locals(pkt=Packet, c=Connection, proto=cython.int)
    def connection_of(self, pkt: Packet) -> Connection | None:
        """The open connection `pkt` went to, after `add`; None for what the table keeps no
        connection for (other IP protocols)."""
        proto = pkt.proto
        if proto == _TCP or proto == _UDP:
            c = self._recent(proto, pkt.src, pkt.sport, pkt.dst, pkt.dport)
            if c is not None:
                return c
            src, dst = pkt.src, pkt.dst
            if src < dst or (src == dst and pkt.sport <= pkt.dport):
                key: tuple = (proto, src, pkt.sport, dst, pkt.dport)
            else:
                key = (proto, dst, pkt.dport, src, pkt.sport)
            if self._vlan_key:
                key = key + (pkt.vlan, pkt.inner_vlan)
        elif proto == _ICMP or proto == _ICMPV6:
            key = self._icmp_key(pkt)
        else:
            return None
        return self._table.get(key)

    @cython.locals(c=Connection, n=cython.Py_ssize_t)
    def _new(self, key, proto, orig_h, orig_p, resp_h, resp_p, pkt) -> Connection:
        c = Connection(key, proto, orig_h, orig_p, resp_h, resp_p, pkt, self.config, self._timers)
        self._table[key] = c
        self.connections_seen += 1
        n = len(self._table) + len(self._held)
        if n > self.open_peak:
            self.open_peak = n
        self._schedule(c)
        return c

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(z=ZeekTcp)
    def _count(self, c: Connection, pkt: Packet, side: int) -> None:
        """Count a packet (before the state machines see it) and move the record's times.

        Zeek's rules: a packet whose checksum was verified bad goes no further than its
        history letter (TCP.cc TCPAnalyzer::DeliverPacket returns when ValidateChecksum fails,
        before the conn-size analyzer's DeliverPacket counts it; ICMP.cc and UDP.cc likewise
        return before SetLastTime), so it is neither counted (TCP) nor moves `zeek_last_ns`.
        The conn-size analyzer counts every other packet with its IP total length
        (ConnSize.cc DeliverPacket). Zeek's last_time moves on every such packet, except that
        TCP stops moving it once both sides' closes were reported (TCPSessionAdapter::Process:
        `if ( ! orig->did_close || ! resp->did_close ) SetLastTime`); `duration` ends there.
        flowlens's own first-to-last-packet span (`last_ts_ns`) takes every packet."""
        if pkt.ts_ns > c.last_ts_ns:
            c.last_ts_ns = pkt.ts_ns
        c.last_frame = pkt.frame
        if pkt.bad_checksum:
            c.bad_checksums += 1
            if c.proto != _UDP:
                return  # (UDP: see ZeekUdp, which counts them as Zeek's conn.log shows)
        elif c.proto == _TCP:
            z = c.zeek
            assert z is not None  # (a TCP connection has both trackers)
            if not (z.endpoint_closed(0) and z.endpoint_closed(1)):
                c.zeek_last_ns = pkt.ts_ns
        else:
            c.zeek_last_ns = pkt.ts_ns
        c._pkts[side] += 1
        c._payload[side] += pkt.plen
        c._ip_bytes[side] += pkt.ip_len

    @cython.boundscheck(False)  # indexes are sides (0, 1); `done[-1]` needs wraparound
    @cython.locals(
        sport=cython.int,
        dport=cython.int,
        flags=cython.int,
        syn_only=cython.bint,
        c=Connection,
        prev=Connection,
        from_orig=cython.bint,
        side=cython.int,
        seq=cython.longlong,
        plen=cython.longlong,
    )
    def _tcp(self, pkt: Packet, done: list) -> None:
        src, dst, sport, dport = pkt.src, pkt.dst, pkt.sport, pkt.dport
        c = self._recent(_TCP, src, sport, dst, dport)
        if c is not None:
            key = c.key
        else:
            # (src, sport) <= (dst, dport), without building the tuples
            if src < dst or (src == dst and sport <= dport):
                key = (IPPROTO_TCP, src, sport, dst, dport)
            else:
                key = (IPPROTO_TCP, dst, dport, src, sport)
            if self._vlan_key:
                key = key + (pkt.vlan, pkt.inner_vlan)
            c = self._table.get(key)
        flags = pkt.flags
        syn_only = flags & _SYN and not flags & _ACK
        if c is not None and syn_only:
            if self._is_reuse(c, 0 if (src == c.orig_h and sport == c.orig_p) else 1, pkt):
                done.append(self._retire(c, pkt))
                c = None
        if c is None:
            held = self._held.get(key)
            if held is not None and not syn_only and self._closed(held):
                c = self._open_tcp(key, pkt, held)
                if c.prev_uid is not None and c.prev_uid == held.uid:
                    # its endpoints go on in this record (TcpTracker.continue_from)
                    done.append(self._finish(held, pkt.ts_ns, "continued"))
            else:
                c = self._open_tcp(key, pkt, None)
                if held is not None and syn_only:
                    done.append(self._retire(held, pkt))
            if done and done[-1].key == key and done[-1].closed_by == "reused":
                prev = done[-1]
                c.prev_uid = prev.uid
                c.reused_in_time_wait = prev.tcp.tw_cut_short
        self._recent_slots[(sport ^ dport) & (_RECENT_SLOTS - 1)] = c
        from_orig = src == c.orig_h and sport == c.orig_p
        side = 0 if from_orig else 1
        self._count(c, pkt, side)
        seq, plen = pkt.seq, pkt.plen
        if flags & _SYN and pkt.raw_options is not None:  # (the decoder keeps SYNs' options)
            c.tcp.window_scale(side, window_scale(pkt.raw_options))
        c.tcp.packet(side, flags, seq, pkt.ack, plen, pkt.ts_ns, pkt.frame, pkt.win)
        if c.zeek.packet(
            from_orig, flags, seq, pkt.ack, plen, pkt.win, pkt.bad_checksum, pkt.caplen_short > 0
        ):
            c.swap_roles()  # Zeek's analyzer found the roles reversed (a SYN/ACK came first)
            from_orig = not from_orig
            if c.states is not None:
                self._flip(c)
        if not c._closing and self._closed(c):
            # the deadline just moved earlier (idle timeout -> close linger): the heap entry
            # pushed at creation would fire too late, so push one for the new deadline
            c._closing = True
            self._schedule(c)
        if self._n_analyzers:
            self._notify(c, pkt, from_orig)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(c=Connection)
    def _recent(
        self, proto: int, src: bytes, sport: int, dst: bytes, dport: int
    ) -> Connection | None:
        """The connection of a recent packet with the same ports (either way round) when this
        packet belongs to it too (most do), else None: saves building the key and the dict
        lookup. A connection is in `_table` under its key until `_finish` (which sets `_done`)
        or `_hold` (`_held`) takes it out."""
        if self._vlan_key:
            return None  # (the slots know ports and addresses, not VLANs)
        c = self._recent_slots[(sport ^ dport) & (_RECENT_SLOTS - 1)]
        if c is None or c._done or c._held or c.proto != proto:
            return None
        if sport == c.orig_p and dport == c.resp_p and src == c.orig_h and dst == c.resp_h:
            return c
        if sport == c.resp_p and dport == c.orig_p and src == c.resp_h and dst == c.orig_h:
            return c
        return None

    @cython.locals(t=TcpTracker)
    def _is_reuse(self, c: Connection, side: int, pkt: Packet) -> bool:
        """Does this SYN (no ACK) start a new connection on an open 5-tuple?

        TCPSessionAdapter::IsReuse: once either side's close was reported (IsClosed: a FIN or
        RST), any SYN starts a new connection, a retransmitted one too (a SYN retried after a
        REJ is a new REJ record); before that, a SYN with the stored ISN is a retransmission."""
        t = c.tcp
        assert t is not None and c.zeek is not None  # (TCP connections only)
        if c.zeek.endpoint_closed(0) or c.zeek.endpoint_closed(1):
            return True
        if t.isn_of(side) != _UNSET:
            return pkt.seq != t.isn_of(side)  # same ISN: a retransmitted SYN
        if side == 1 and t.syns_sent(0) and not t.synacks_sent(1) and not c._pkts[1]:
            return False  # the responder's own SYN: simultaneous open
        if side == 0 and not t.syns_sent(0) and t.synacks_sent(1):
            return (
                False  # the SYN behind a SYN/ACK seen first (Zeek: connection_originator_SYN_ack)
            )
        return True

    def _retire(self, old: Connection, pkt: Packet) -> Connection:
        """A new connection takes the 5-tuple: the old one ends here; a TIME_WAIT left on it is
        cut short, and a SYN_SENT/SYN_RECEIVED handed over to the new record
        (`TcpTracker.cut_time_wait`)."""
        assert old.tcp is not None  # (TCP connections only)
        old.tcp.cut_time_wait(pkt.ts_ns, pkt.frame)
        return self._finish(old, pkt.ts_ns, "reused")

    @cython.locals(
        c=Connection, flags=cython.int, sport=cython.int, dport=cython.int, has_syn=cython.bint
    )
    def _open_tcp(self, key, pkt: Packet, held: Connection | None) -> Connection:
        """A new record for `pkt`. `held`: the closed record still held on this 5-tuple (its
        TIME_WAIT or LAST_ACK not over) when `pkt` is no SYN: Zeek's delete timer ended that
        record tcp_close_delay after its close completed (TCPSessionAdapter::ConnectionClosed ->
        ConnDeleteTimer), so Zeek starts a new connection here too (init-bare.zeek:
        tcp_close_delay = 5 s), but the endpoints' sockets are the same ones, still closing
        (a FIN retransmitted into TIME_WAIT, a late final ACK): the new record takes their
        states over (`TcpTracker.continue_from`, prev_uid the held record) instead of starting
        them ESTABLISHED as a capture that began mid-connection would."""
        flags = pkt.flags
        src, dst, sport, dport = pkt.src, pkt.dst, pkt.sport, pkt.dport
        has_syn = bool(flags & _SYN)
        flipped = zeek_flips(flags, sport, dport, proto="tcp")
        if not has_syn and not flipped and sport not in _ZEEK_TCP and dport not in _ZEEK_TCP:
            # Ports Zeek has no opinion on: flowlens still guesses the server side.
            flipped = _likely_server("tcp", sport, dport)
        if flipped:
            c = self._new(key, IPPROTO_TCP, dst, dport, src, sport, pkt)
            c.flipped = True
            c.zeek.flip()
        else:
            c = self._new(key, IPPROTO_TCP, src, sport, dst, dport, pkt)
        c.originator_inferred = not has_syn
        if not has_syn:
            if held is not None and c.tcp.continue_from(
                held.tcp, c.orig_p != held.orig_p or c.orig_h != held.orig_h, pkt.ts_ns, pkt.frame
            ):
                c.prev_uid = held.uid
            else:
                c.tcp.start_midstream(pkt.ts_ns, pkt.frame)
            return c
        # Zeek's attempt timer (see _deadline): the entry pushed by _new was for the idle
        # timeout, as nothing had been seen yet
        self._schedule(c, pkt.ts_ns + self._attempt_delay)
        if self._attempts:
            attempt = self._attempts.pop(key, None)
            if attempt is not None and not flags & _ACK and attempt[0] == pkt.seq:
                # the same SYN again after Zeek's attempt timer ended the record: a new record
                # (as in Zeek), and one more retry of the same attempt
                c._syn_carried = attempt[1] + 1
                c.prev_uid = attempt[2]
                c.tcp.continue_attempt(attempt[3])  # its SYN schedule goes on too
        return c

    @cython.locals(
        c=Connection, sport=cython.int, dport=cython.int, proto=cython.int, from_orig=cython.bint
    )
    def _flow(self, pkt: Packet) -> Connection | None:
        src, dst, sport, dport = pkt.src, pkt.dst, pkt.sport, pkt.dport
        proto = pkt.proto
        c = self._recent(proto, src, sport, dst, dport)
        if c is None:
            if src < dst or (src == dst and sport <= dport):  # (src, sport) <= (dst, dport)
                key: tuple = (proto, src, sport, dst, dport)
            else:
                key = (proto, dst, dport, src, sport)
            if self._vlan_key:
                key = key + (pkt.vlan, pkt.inner_vlan)
            c = self._table.get(key)
        if c is None:
            # the first datagram's sender opened the flow, unless it came from a service port
            # to a non-service port: a reply whose request came before the capture (Zeek's rule)
            if zeek_flips(0, sport, dport, proto="udp"):
                c = self._new(key, proto, dst, dport, src, sport, pkt)
                c.flipped = c.originator_inferred = True
            else:
                c = self._new(key, proto, src, sport, dst, dport, pkt)
            c.udp = ZeekUdp()
            if c.flipped:
                c.udp.flip()
        self._recent_slots[(sport ^ dport) & (_RECENT_SLOTS - 1)] = c
        from_orig = src == c.orig_h and sport == c.orig_p
        self._count(c, pkt, 0 if from_orig else 1)
        c.udp.packet(from_orig, pkt.bad_checksum)
        if pkt.limit_reached:
            c.udp.limit_reached()
        if self._n_analyzers:
            self._notify(c, pkt, from_orig)
        return c

    @cython.locals(c=Connection, from_orig=cython.bint, itype=cython.int, counter=cython.int)
    def _icmp(self, pkt: Packet) -> None:
        """ICMP.cc ICMPAnalyzer::InitConnKey: the flow of a message is (sender, type, receiver,
        counterpart type), keyed either way round so that the counterpart joins it (the
        IPBasedConnKey canonical order); a one-way message (no counterpart: errors,
        redirects, ...) has its code as the responder's "port" and a key of its own direction.
        The first message's sender is the originator, whatever its type: Zeek makes no ICMP
        flips (an echo reply seen first is logged 0 > 8)."""
        itype = pkt.sport
        src, dst = pkt.src, pkt.dst
        key = self._icmp_key(pkt)
        # the responder's "port": the counterpart type, or a one-way message's code
        counter = key[4] if key[1] == src and key[2] == itype else key[2]
        c = self._table.get(key)
        if c is None:
            c = self._new(key, pkt.proto, src, itype, dst, counter, pkt)
        from_orig = src == c.orig_h and (itype == c.orig_p or src != c.resp_h)
        self._count(c, pkt, 0 if from_orig else 1)
        if pkt.quote is not None:
            self._attach_icmp_error(pkt)
        if self._n_analyzers:
            self._notify(c, pkt, from_orig)

    @cython.locals(pkt=Packet, itype=cython.int, counter=cython.int)
    def _icmp_key(self, pkt: Packet) -> tuple:
        """The table key of an ICMP message's flow (see _icmp)."""
        itype = pkt.sport
        src, dst = pkt.src, pkt.dst
        counterpart = (_ICMP6_COUNTERPART if pkt.proto == _ICMPV6 else _ICMP4_COUNTERPART).get(
            itype
        )
        if counterpart is None:  # one way
            key: tuple = (pkt.proto, src, itype, dst, pkt.dport)
        else:
            counter = counterpart
            if src < dst or (src == dst and itype <= counter):
                key = (pkt.proto, src, itype, dst, counter)
            else:
                key = (pkt.proto, dst, counter, src, itype)
        if self._vlan_key:
            key = key + (pkt.vlan, pkt.inner_vlan)
        return key

    # The hooks are C calls when compiled (cpdef in analyzer.pxd), in the resolved order:
    # dependencies first.
    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(states=list, analyzers=list, a=Analyzer, i=cython.Py_ssize_t)
    def _notify(self, c: Connection, pkt: Packet, from_orig: bool) -> None:
        """Show the packet to every analyzer with a state for `c`; on the connection's first
        packet, each analyzer's `on_start` first decides (and returns) that state."""
        analyzers = self.analyzers
        states = c.states
        if states is None:
            states = c.states = [None] * self._n_analyzers
            for i in range(self._n_analyzers):
                a = analyzers[i]
                st = a.on_start(c, pkt)
                if st is not None:
                    states[i] = st
                    a.on_packet(c, pkt, from_orig)
            return
        for i in range(self._n_analyzers):
            if states[i] is not None:
                a = analyzers[i]
                a.on_packet(c, pkt, from_orig)

    @cython.boundscheck(False)
    @cython.wraparound(False)
    @cython.locals(states=list, a=Analyzer, i=cython.Py_ssize_t)
    def _flip(self, c: Connection) -> None:
        """The roles of a started connection were swapped: tell the analyzers that hold state."""
        states = c.states
        assert states is not None  # (set at its first packet)
        for i in range(self._n_analyzers):
            if states[i] is not None:
                a = self.analyzers[i]
                a.on_flip(c)

    @cython.locals(a=Analyzer, i=cython.Py_ssize_t)
    def _end(self, c: Connection) -> None:
        """`c` finished: every analyzer's `on_end`, in order."""
        for i in range(self._n_analyzers):
            a = self.analyzers[i]
            a.on_end(c)

    @cython.locals(target=Connection)
    def _attach_icmp_error(self, pkt: Packet) -> None:
        assert pkt.quote is not None  # (ICMP errors only)
        proto, qsrc, qdst, qsport, qdport = pkt.quote
        if (qsrc, qsport) <= (qdst, qdport):
            key = (proto, qsrc, qsport, qdst, qdport)
        else:
            key = (proto, qdst, qdport, qsrc, qsport)
        target = self._table.get(key)
        if target is None:
            return
        if target.icmp_errors is None:
            target.icmp_errors = []
        if len(target.icmp_errors) < 64:
            target.icmp_errors.append((pkt.ts_ns, pkt.frame, pkt.sport, pkt.dport, pkt.src))

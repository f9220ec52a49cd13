"""Frame bytes -> compact packet records; the only module that knows header layouts.

A `Packet` holds header fields and payload *lengths*; a copy of the first payload bytes only when
the decoder is asked for it (`Decoder(payload=N)`, an analyzer's Needs.PAYLOAD). Frames that
cannot be decoded are counted by reason in `Decoder.skipped` and yield `None`: a malformed packet
is data, not an error.

The link layers follow tcpdump's LINKTYPE_ registry; IPv4 is RFC 791, IPv6 RFC 8200 (extension
header chain), TCP RFC 9293 (options: RFC 7323 window scale and timestamps, RFC 2018 SACK),
ICMP RFC 792 and ICMPv6 RFC 4443 (errors quote the offending datagram, whose 5-tuple is kept in
`Packet.quote` so the error can be attached to its flow).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from struct import Struct
from typing import TYPE_CHECKING, NamedTuple

import cython

from flowlens.core import constants as K  # (absolute: decode.pxd cimports it under this name)

from .capture import FrameRef

__all__ = [
    "Packet",
    "TcpOptions",
    "Decoder",
    "IpTunnel",
    "LINKTYPE_NAMES",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "IPPROTO_ICMP",
    "IPPROTO_ICMPV6",
    "flags_text",
]

# The shared numbers (flag bits, protocol numbers, link types, ethertypes, option kinds) are
# defined once in constants.py; when compiled, `K.NAME` is a C constant (decode.pxd cimports
# the module as K). TH_* and IPPROTO_* are re-exported here for existing importers.
from .constants import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TH_ACK,
    TH_CWR,
    TH_ECE,
    TH_FIN,
    TH_PUSH,
    TH_RST,
    TH_SYN,
    TH_URG,
)

# LINKTYPE_ values (https://www.tcpdump.org/linktypes.html) and the names users know them by.
LINKTYPE_NAMES = {
    K.LINKTYPE_NULL: "NULL",
    K.LINKTYPE_ETHERNET: "EN10MB",
    K.LINKTYPE_PPP: "PPP",
    K.LINKTYPE_FDDI: "FDDI",
    K.DLT_RAW_12: "RAW",
    K.DLT_RAW_14: "RAW",
    K.LINKTYPE_RAW: "RAW",
    K.LINKTYPE_LOOP: "LOOP",
    K.LINKTYPE_LINUX_SLL: "LINUX_SLL",
    K.LINKTYPE_IPV4: "IPV4",
    K.LINKTYPE_IPV6: "IPV6",
    K.LINKTYPE_LINUX_SLL2: "LINUX_SLL2",
}

_U16 = Struct("!H")
_U32 = Struct("!I")
_IPV4 = Struct("!BBHHHBBH4s4s")  # ver/ihl tos len id frag ttl proto csum src dst
_IPV6 = Struct("!IHBB16s16s")  # ver/tc/flow plen nh hlim src dst
_TCP = Struct("!HHIIBBHHH")  # sport dport seq ack off flags win csum urp
_UDP = Struct("!HHHH")
_MAX_PENDING_DATAGRAMS = 4096

# ICMP error types whose body quotes the offending IP header + 8 bytes.
_ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))
_ICMP6_ERRORS = frozenset((1, 2, 3, 4))

_FLAG_LETTERS = (
    (TH_SYN, "S"),
    (TH_FIN, "F"),
    (TH_RST, "R"),
    (TH_PUSH, "P"),
    (TH_URG, "U"),
    (TH_ECE, "E"),
    (TH_CWR, "W"),
)


def flags_text(flags: int) -> str:
    """tcpdump's flag notation: `S`, `S.`, `.`, `P.`, `F.`, `R.`; `.` is ACK, `none` for 0."""
    text = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    if flags & TH_ACK:
        text += "."
    return text or "none"


@dataclass(slots=True, frozen=True)
class TcpOptions:
    """The TCP options flowlens uses; None where the option was absent."""

    mss: int | None = None
    #: window scale shift count (RFC 7323 §2), only meaningful on SYN and SYN/ACK
    wscale: int | None = None
    sack_permitted: bool = False
    #: SACK blocks as (left, right) absolute sequence numbers (RFC 2018)
    sack: tuple[tuple[int, int], ...] = ()
    #: RFC 7323 timestamps, raw 32-bit values
    tsval: int | None = None
    tsecr: int | None = None


_EMPTY_OPTIONS = TcpOptions()
_NOP_NOP_TS = b"\x01\x01\x08\x0a"
_TS_PAIR = Struct("!II")


def tcp_timestamps(raw: bytes) -> tuple[int, int] | None:
    """(TSval, TSecr) from TCP option bytes, or None: the per-packet fast path for RTT.

    Most stacks send NOP, NOP, Timestamps first on every segment after the SYN; that layout is
    read directly, anything else goes through `parse_tcp_options`.
    """
    if raw[:4] == _NOP_NOP_TS and len(raw) >= 12:
        return _TS_PAIR.unpack_from(raw, 4)
    if b"\x08\x0a" not in raw:  # the kind/length pair must appear somewhere
        return None
    opts = parse_tcp_options(raw)
    if opts.tsval is None or opts.tsecr is None:  # (both or neither)
        return None
    return (opts.tsval, opts.tsecr)


def parse_tcp_options(raw: bytes) -> TcpOptions:
    """Parse TCP option bytes; a malformed option ends parsing (what was read is kept)."""
    mss = wscale = tsval = tsecr = None
    sack_permitted = False
    sack: list[tuple[int, int]] = []
    i, n = 0, len(raw)
    while i < n:
        kind = raw[i]
        if kind == K.TCP_OPT_EOL:
            break
        if kind == K.TCP_OPT_NOP:
            i += 1
            continue
        if i + 1 >= n:
            break
        length = raw[i + 1]
        if length < 2 or i + length > n:
            break
        body = raw[i + 2 : i + length]
        if kind == K.TCP_OPT_MSS and length == 4:
            mss = _U16.unpack(body)[0]
        elif kind == K.TCP_OPT_WSCALE and length == 3:
            wscale = body[0]
        elif kind == K.TCP_OPT_SACKOK and length == 2:
            sack_permitted = True
        elif kind == K.TCP_OPT_SACK and length >= 10 and (length - 2) % 8 == 0:
            for j in range(0, length - 2, 8):
                sack.append((_U32.unpack_from(body, j)[0], _U32.unpack_from(body, j + 4)[0]))
        elif kind == K.TCP_OPT_TIMESTAMP and length == 10:
            tsval, tsecr = _U32.unpack_from(body, 0)[0], _U32.unpack_from(body, 4)[0]
        i += length
    return TcpOptions(mss, wscale, sack_permitted, tuple(sack), tsval, tsecr)


class Packet:
    """One decoded IP packet: header fields and lengths; the first payload bytes only when the
    decoder was asked for them (`payload`).

    Addresses are packed bytes (4 or 16); `flowlens.core.connections.format_addr` prints them.
    For ICMP, `sport` and `dport` hold the ICMP type and code, as Zeek logs them.
    """

    __slots__ = (
        "frame",  # 1-based frame number in capture order (tcpdump -#, Wireshark)
        "ts_ns",  # capture timestamp, integer nanoseconds since the epoch
        "version",  # 4 or 6
        "src",
        "dst",
        "proto",  # IP protocol number (6 tcp, 17 udp, 1 icmp, 58 icmpv6)
        "sport",
        "dport",
        "flags",  # TCP flags byte (TH_* bits); 0 for other protocols
        "seq",
        "ack",
        "win",  # raw 16-bit window, not scaled
        "plen",  # transport payload length in bytes, from the IP length (not the snaplen)
        "ip_len",  # IP datagram length (header + payload) in bytes
        "caplen_short",  # bytes of the transport payload missing from the capture (snaplen)
        "raw_options",  # TCP option bytes (<= 40), parsed on demand by `options`
        "bad_checksum",  # True/False when verified, None when not (disabled or truncated)
        "quote",  # ICMP error: (proto, src, dst, sport, dport) of the quoted datagram
        "fragment",  # 1 when the packet was reassembled from IP fragments (lengths only)
        "vlan",  # outermost 802.1Q VLAN id, or None
        "inner_vlan",  # the next (QinQ) VLAN id, or None (a third tag overwrites it, as in Zeek)
        "udp_head",  # UDP to/from a DNS port: first 4 payload bytes (query id, flags), else None
        "tsval",  # TCP timestamps option (RFC 7323), read when the decoder is asked to
        "tsecr",  # (Decoder(timestamps=True)); -1 when absent or not read
        "payload",  # TCP/UDP: the first payload bytes captured (at most Decoder.payload of
        # them), when the decoder is asked to (an analyzer's Needs.PAYLOAD); else None
        "encap",  # None, or what this packet was decapsulated from (see `Decoder`, tunnels):
        # the enclosing UDP packet (VXLAN, Geneve, GTPv1, Teredo, AYIYA) or an `IpTunnel`
        "tunnel",  # on a UDP packet that carried a tunnel: its kind ("vxlan", "teredo", ...)
        "_options",
    )
    if TYPE_CHECKING:  # the fields' types for mypy (decode.pxd gives the C ones)
        frame: int
        ts_ns: int
        version: int
        src: bytes
        dst: bytes
        proto: int
        sport: int
        dport: int
        flags: int
        seq: int
        ack: int
        win: int
        plen: int
        ip_len: int
        caplen_short: int
        raw_options: bytes
        bad_checksum: bool | None
        quote: tuple | None
        fragment: int
        vlan: int | None
        inner_vlan: int | None
        udp_head: bytes | None
        tsval: int
        tsecr: int
        payload: bytes | None
        encap: Packet | IpTunnel | None
        tunnel: str | None
        _options: TcpOptions | None

    def __init__(self) -> None:
        self.raw_options = b""
        self.quote = None
        self.fragment = 0
        self.vlan = None
        self.inner_vlan = None
        self.udp_head = None
        self.sport = self.dport = 0  # protocols without ports keep 0, as compiled code does
        self.flags = 0
        self.seq = self.ack = self.win = 0
        self.caplen_short = 0
        self.bad_checksum = None
        self.tsval = self.tsecr = -1
        self.payload = None
        self.encap = None
        self.tunnel = None
        self._options = None

    @property
    def options(self) -> TcpOptions:
        """TCP options, parsed on first use."""
        opts = self._options
        if opts is None:
            opts = parse_tcp_options(self.raw_options) if self.raw_options else _EMPTY_OPTIONS
            self._options = opts
        return opts

    def as_tuple(self) -> tuple:
        """Every field as a tuple (used by the differential tests against dpkt)."""
        return (
            self.frame, self.ts_ns, self.version, self.src, self.dst, self.proto, self.sport,
            self.dport, self.flags, self.seq, self.ack, self.win, self.plen, self.ip_len,
            self.caplen_short, self.raw_options, self.bad_checksum, self.quote, self.fragment,
            self.vlan,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"Packet(frame={self.frame}, proto={self.proto}, {self.sport}->{self.dport}, flags={flags_text(self.flags)}, plen={self.plen})"


# ---------------------------------------------------------------- byte access
# Compiled, the decoder reads a frame through a C pointer (`d: cython.p_uchar`) into the
# captured bytes; as plain Python `d` is a memoryview. `d[i]` is a byte in both, so the
# layout code below is shared; where a header has several fields, plain Python reads them
# with one struct call (faster there) and compiled code with byte arithmetic.


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _be16(d: cython.p_uchar, i: cython.Py_ssize_t) -> cython.uint:
    """The big-endian 16-bit word at `d[i]`."""
    return (cython.cast(cython.uint, d[i]) << 8) | d[i + 1]


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _be32(d: cython.p_uchar, i: cython.Py_ssize_t) -> cython.uint:
    """The big-endian 32-bit word at `d[i]`."""
    return (
        (cython.cast(cython.uint, d[i]) << 24)
        | (cython.cast(cython.uint, d[i + 1]) << 16)
        | (cython.cast(cython.uint, d[i + 2]) << 8)
        | d[i + 3]
    )


@cython.cfunc
@cython.locals(i=cython.Py_ssize_t, found=cython.Py_ssize_t, k=cython.uint, length=cython.uint)
def _last_option(
    d: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t, kind: cython.uint,
    size: cython.uint,
) -> cython.Py_ssize_t:  # fmt: skip
    """Where the last option `kind` of `size` bytes starts in the option list d[start:end], or
    -1: the walk of `parse_tcp_options` (a malformed option ends it), read in place."""
    found = -1
    i = start
    while i < end:
        k = d[i]
        if k == K.TCP_OPT_EOL:
            break
        if k == K.TCP_OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            break
        length = d[i + 1]
        if length < 2 or i + length > end:
            break
        if k == kind and length == size:
            found = i
        i += length
    return found


@cython.cfunc
@cython.locals(i=cython.Py_ssize_t)
def _read_timestamps(
    p: Packet, d: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t
) -> None:
    """`tcp_timestamps` of the option bytes d[start:end], into p.tsval and p.tsecr, read in
    place (the same answer: NOP, NOP, Timestamps first; else the last well-formed one)."""
    if (
        end - start >= 12 and d[start] == K.TCP_OPT_NOP and d[start + 1] == K.TCP_OPT_NOP
        and d[start + 2] == K.TCP_OPT_TIMESTAMP
        and d[start + 3] == 10
    ):  # fmt: skip
        i = start + 2
    else:
        i = _last_option(d, start, end, K.TCP_OPT_TIMESTAMP, 10)
    if i >= 0:
        p.tsval, p.tsecr = _be32(d, i + 2), _be32(d, i + 6)


@cython.locals(i=cython.Py_ssize_t)
def window_scale(raw: bytes) -> cython.int:
    """The window scale shift in TCP option bytes, -1 when absent (what
    `parse_tcp_options(raw).wscale` says, without building the whole TcpOptions)."""
    i = _last_option(raw, 0, len(raw), 3, 3)
    return raw[i + 2] if i >= 0 else -1


@cython.cfunc
@cython.inline
def _bytes(d: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t) -> bytes:
    """A copy of `d[start:end]` (addresses, option bytes)."""
    if cython.compiled:
        return d[start:end]  # slicing a C pointer makes a bytes object
    return bytes(d[start:end])


#: slots in the decoder's cache of recently seen addresses (see _addr)
_ADDR_SLOTS = cython.declare(cython.Py_ssize_t, 1024)


@cython.cfunc
@cython.inline
@cython.boundscheck(False)
@cython.wraparound(False)
@cython.locals(h=cython.Py_ssize_t, size=cython.Py_ssize_t, slot=bytes, a=bytes)
def _addr(
    cache: list, d: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t
) -> bytes:
    """The address `d[start:end]` as bytes. Compiled, an address seen recently comes back as
    the same bytes object (a capture has few hosts): no allocation, and its hash is cached for
    the connection table's lookups. `cache` holds _ADDR_SLOTS addresses, by their low bytes."""
    if not cython.compiled:
        return bytes(d[start:end])
    size = end - start
    h = (d[end - 1] ^ (d[end - 2] << 2) ^ (d[end - 3] << 4) ^ (size << 3)) & (_ADDR_SLOTS - 1)
    slot = cache[h]
    if (
        slot is not None
        and len(slot) == size
        and memcmp(cython.cast(cython.p_char, slot), d + start, size) == 0  # type: ignore[name-defined]  # (cimported in decode.pxd)
    ):
        return slot
    a = d[start:end]
    cache[h] = a
    return a


@cython.cfunc
@cython.inline
def _ones_complement_ok(total: cython.longlong) -> cython.bint:
    """True when a one's complement sum (computed mod 0xFFFF) verifies as 0xFFFF."""
    return total % 0xFFFF == 0


@cython.cfunc
@cython.exceptval(check=False)
def _sum16(d: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t) -> cython.longlong:
    """Sum of the 16-bit big-endian words of `d[start:end]`, modulo 0xFFFF (RFC 1071).

    2**16 ≡ 1 (mod 0xFFFF), so the whole buffer read as one big integer is congruent to the
    sum of its 16-bit words (and to the sum of its 32-bit words). Compiled: a C loop over
    32-bit words; plain Python: one C-level conversion of the whole buffer.
    """
    if cython.compiled:
        total: cython.ulonglong = 0  # < 2**32 per word: no overflow below 2**32 words
        i: cython.Py_ssize_t = start
        while i + 4 <= end:
            total += _be32(d, i)
            i += 4
        if i + 2 <= end:
            total += _be16(d, i)
            i += 2
        if i < end:
            total += cython.cast(cython.uint, d[i]) << 8  # pad the odd byte with a zero
        return total % 0xFFFF
    data = d[start:end]
    value = int.from_bytes(data, "big")
    if len(data) & 1:
        value <<= 8  # pad the odd byte with a zero, as RFC 1071 says
    return value % 0xFFFF


@cython.cfunc
def _new_packet(
    frame: cython.longlong, ts_ns: cython.longlong, version: cython.int, src, dst, vlan, encap
) -> Packet:
    """A Packet with `__init__`'s defaults and the IP-layer fields set."""
    p: Packet
    if cython.compiled:
        # tp_new without __init__: C ints start at 0 and objects at None, as __init__ sets them,
        # all but raw_options
        p = Packet.__new__(Packet)
        p.raw_options = b""
        p.tsval = p.tsecr = -1
    else:
        p = Packet()
    p.frame = frame
    p.ts_ns = ts_ns
    p.version = version
    p.src = src
    p.dst = dst
    p.vlan = vlan
    p.encap = encap
    return p


class IpTunnel(NamedTuple):
    """An IP tunnel a packet came out of: IP-in-IP (protocols 4 and 41) or GRE (47, and GRE
    over UDP port 4754). Zeek names such a tunnel by its two addresses, either way round
    (IPTunnel.cc: `ip_tunnels`, keyed by the address pair), and gives it a uid of its own in
    tunnel.log; flowlens's connection table does the same (`ConnectionTable.add_encapsulated`)."""

    #: Zeek's Tunnel::Type name: "IP" or "GRE"
    kind: str
    #: the outer header's source and destination addresses (packed)
    src: bytes
    dst: bytes
    #: what the outer packet was itself inside (a UDP `Packet`, an `IpTunnel`), or None
    encap: object


# the tunnels a UDP datagram can carry (the `kind` of Decoder._udp_tunnel)
_T_VXLAN = cython.declare(cython.int, 1)
_T_GENEVE = cython.declare(cython.int, 2)
_T_GTPV1 = cython.declare(cython.int, 3)
_T_TEREDO = cython.declare(cython.int, 4)
_T_AYIYA = cython.declare(cython.int, 5)
_T_GRE = cython.declare(cython.int, 6)
#: what follows a tunnel header (Decoder._inner)
_INNER_IP = cython.declare(cython.int, 0)
_INNER_ETHERNET = cython.declare(cython.int, 1)
# IP::ParsePacket's answers (Zeek's src/packet_analysis/protocol/ip/IP.cc), see _ip_fit
_FIT_OK = cython.declare(cython.int, 0)
_FIT_BAD_PROTOCOL = cython.declare(cython.int, 1)
_FIT_TOO_SMALL = cython.declare(cython.int, 2)
_FIT_TOO_LARGE = cython.declare(cython.int, 3)


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _tunnel_port(port: cython.uint) -> cython.int:
    """The tunnel Zeek decapsulates on UDP `port` (its default `*_ports` sets), 0 for none.
    One range test turns away almost every port (DNS, ephemeral ports) before any compare."""
    if port < K.PORT_GTPV1_C or port > K.PORT_GENEVE:
        return 0
    if port == K.PORT_VXLAN:
        return _T_VXLAN
    if port == K.PORT_GENEVE:
        return _T_GENEVE
    if port == K.PORT_GTPV1_U or port == K.PORT_GTPV1_C:
        return _T_GTPV1
    if port == K.PORT_TEREDO:
        return _T_TEREDO
    if port == K.PORT_AYIYA:
        return _T_AYIYA
    if port == K.PORT_GRE:
        return _T_GRE
    return 0


@cython.cfunc
@cython.exceptval(check=False)
@cython.locals(n=cython.Py_ssize_t, i=cython.Py_ssize_t, b0=cython.uint, val=cython.uint)
def _detect_tunnel(d: cython.p_uchar, pos: cython.Py_ssize_t, end: cython.Py_ssize_t) -> cython.int:
    """Zeek's protocol detection for UDP datagrams on no tunnel port (packet_analysis
    Analyzer::DetectInnerAnalyzer: AYIYA, then Teredo, as scripts/base/packet-protocols loads
    them): AYIYA.cc AYIYAAnalyzer::DetectProtocol and Teredo.cc TeredoAnalyzer::DetectProtocol,
    the second's old DPD pattern read as byte tests. A few byte compares for ordinary UDP."""
    n = end - pos
    if n >= 3 and d[pos + 1] == 0x52 and d[pos + 2] == 0x11:
        return _T_AYIYA
    if n < 40:
        return 0
    b0 = d[pos]
    if b0 >> 4 != 6 and (b0 != 0 or (d[pos + 1] != 0 and d[pos + 1] != 1)):
        return 0
    # the pattern (matched from the start: Specific_RE_Matcher::Match stops at the first
    # accepting state, so a prefix of 40 bytes): an IPv6 header whose source or destination is
    # in the Teredo prefix 2001:0000::/32
    if b0 >> 4 == 6:
        if d[pos + 8] == 0x20 and d[pos + 9] == 0x01 and d[pos + 10] == 0 and d[pos + 11] == 0:
            return _T_TEREDO
        if d[pos + 24] == 0x20 and d[pos + 25] == 0x01 and d[pos + 26] == 0 and d[pos + 27] == 0:
            return _T_TEREDO
    val = d[pos + 1]
    i = pos
    if val == 1:  # an authentication header: its lengths, a nonce and a confirmation byte
        if n < 13 + d[i + 2] + d[i + 3]:
            return 0
        n -= 13 + d[i + 2] + d[i + 3]
        i += 13 + d[i + 2] + d[i + 3]
        if n < 40:
            return 0
        val = _be16(d, i)
    if val == 0:  # an origin indication (8 bytes), then an IPv6 header
        n -= 8
        i += 8
        if n >= 40 and d[i] >> 4 == 6:
            return _T_TEREDO
    return 0


@cython.cfunc
@cython.exceptval(check=False)
@cython.locals(length=cython.Py_ssize_t, total=cython.Py_ssize_t)
def _ip_fit(
    d: cython.p_uchar, off: cython.Py_ssize_t, end: cython.Py_ssize_t, version: cython.int
) -> cython.int:
    """Zeek's IP::ParsePacket (IP.cc) of the IP packet at d[off:end] inside a tunnel: is it
    IPv`version`, and does it fill the tunnel's payload exactly (_FIT_*)?"""
    length = end - off
    if version == 6:
        if length < 40:
            return _FIT_TOO_SMALL
        if d[off] >> 4 != 6:
            return _FIT_BAD_PROTOCOL
        total = 40 + _be16(d, off + 4)
    else:
        if length < 20 or d[off] >> 4 != 4:
            return _FIT_BAD_PROTOCOL
        total = _be16(d, off + 2)
    if length != total:
        return _FIT_TOO_SMALL if length < total else _FIT_TOO_LARGE
    return _FIT_OK


def _flow_key(kind: int, p: Packet) -> tuple:
    """A UDP flow's key either way round, with the tunnel kind (Decoder._violated)."""
    if (p.src, p.sport) <= (p.dst, p.dport):
        return (kind, p.src, p.sport, p.dst, p.dport)
    return (kind, p.dst, p.dport, p.src, p.sport)


@cython.cclass
class Decoder:
    """Decode frames into `Packet`s, counting what it skips.

    `verify_checksums` checks IPv4 header and TCP/UDP/ICMP checksums when the whole segment was
    captured (Zeek does the same; Wireshark does not by default). A bad checksum is flagged on the
    packet, never a reason to drop it.
    """

    # C attributes when compiled (a plain class attribute, unused, in Python)
    verify_checksums = cython.declare(cython.bint, visibility="public")
    keep_options = cython.declare(cython.bint, visibility="public")
    timestamps = cython.declare(cython.bint, visibility="public")
    payload = cython.declare(cython.Py_ssize_t, visibility="public")
    skipped = cython.declare(object, visibility="public")
    offloaded = cython.declare(cython.longlong, visibility="public")
    non_ip = cython.declare(object, visibility="public")
    max_depth = cython.declare(cython.int, visibility="public")
    tunnel_errors = cython.declare(object, visibility="public")
    _frags = cython.declare(dict)
    _addrs = cython.declare(list)
    _depth = cython.declare(cython.int)
    _encap = cython.declare(object)
    _inner_vlan = cython.declare(object)
    _violated = cython.declare(set)

    def __init__(
        self,
        verify_checksums: bool = True,
        keep_options: bool = True,
        timestamps: bool = False,
        payload: int = 0,
        max_depth: int = K.TUNNEL_MAX_DEPTH,
    ) -> None:
        self.verify_checksums = verify_checksums
        #: keep every TCP packet's option bytes (`raw_options`); False keeps only SYNs' (the
        #: connection table reads none; the analyzers read SYNs')
        self.keep_options = keep_options
        #: read the timestamps option of every TCP packet into `tsval`/`tsecr` (RTT), without
        #: copying the option bytes
        self.timestamps = timestamps
        #: copy at most this many of each TCP/UDP packet's first payload bytes into `payload`
        #: (service identification, Needs.PAYLOAD); 0 copies none. Datagrams reassembled from
        #: IP fragments get none (only lengths are reassembled)
        self.payload = payload
        #: frames skipped, by reason ("unsupported link type 105", "truncated IPv4 header", ...)
        self.skipped = Counter()
        #: TCP/UDP packets whose checksum was left to the NIC (offload) and so not verifiable
        self.offloaded = 0
        #: non-IP frames (ARP, LLDP...) that were ignored, by kind
        self.non_ip = Counter()
        # datagrams being reassembled: key -> [first packet, bytes seen, total, header bytes]
        self._frags = {}
        # recently seen addresses, reused as objects when compiled (see _addr)
        self._addrs = [None] * _ADDR_SLOTS
        #: encapsulations decoded at most (Zeek's Tunnel::max_depth); 0 decodes no tunnel
        self.max_depth = max_depth
        #: tunnel headers that were not decapsulated, by reason (Zeek's weirds and analyzer
        #: violations: "VXLAN 'I' flag not set", "exceeded tunnel max depth", ...); the packet
        #: that carried one is still analysed as what it is (a UDP datagram)
        self.tunnel_errors = Counter()
        # while an inner packet is decoded: how deep, and the layer it is inside (see _inner)
        self._depth = 0
        self._encap = None
        # the frame's second VLAN tag (QinQ), for its packet's `inner_vlan`
        self._inner_vlan = None
        # (tunnel kind, flow) pairs whose tunnel analysis failed: like Zeek's
        # AnalyzerViolated(session), no later packet of that flow is decapsulated
        self._violated = set()

    # ---------------------------------------------------------------- link layer
    def decode(
        self, frame: cython.longlong, ts_ns: cython.longlong, linktype: cython.int, buf
    ) -> Packet | None:
        """Decode one frame; returns None (and counts the reason) when it has no IP packet."""
        if cython.compiled:  # borrow the bytes through the buffer protocol: no copy
            view: Py_buffer  # type: ignore[name-defined]  # (cimported in decode.pxd)
            try:
                PyObject_GetBuffer(buf, cython.address(view), PyBUF_SIMPLE)  # type: ignore[name-defined]  # (cimported in decode.pxd)
            except BufferError:  # not contiguous
                buf = bytes(buf)
                PyObject_GetBuffer(buf, cython.address(view), PyBUF_SIMPLE)  # type: ignore[name-defined]  # (cimported in decode.pxd)
            try:
                return self._link(
                    frame, ts_ns, linktype, cython.cast(cython.p_uchar, view.buf), view.len
                )
            finally:
                PyBuffer_Release(cython.address(view))  # type: ignore[name-defined]  # (cimported in decode.pxd)
        mv = memoryview(buf)
        return self._link(frame, ts_ns, linktype, mv, len(mv))

    def decode_frame(self, ref: FrameRef) -> Packet | None:
        """`decode` for a frame from `Capture.frames()`, read in place in its block."""
        d: cython.p_uchar
        if cython.compiled:
            d = ref.buf  # a bytes object coerces to a pointer to its contents
            return self._link(
                ref.frame, ref.ts_ns, ref.linktype, d + ref.start, ref.end - ref.start
            )
        mv = memoryview(ref.buf)[ref.start : ref.end]
        return self._link(ref.frame, ref.ts_ns, ref.linktype, mv, len(mv))

    @cython.cfunc
    def _link(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        linktype: cython.int,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
    ):
        off: cython.Py_ssize_t
        self._inner_vlan = None
        if linktype == K.LINKTYPE_ETHERNET:
            return self._ethernet(frame, ts_ns, d, n, 0, None)
        if linktype == K.LINKTYPE_FDDI:
            # Zeek's FDDI.cc: the 13-byte FDDI header and an 8-byte LLC/SNAP header are skipped
            # and the rest read as IP (by its version), the SNAP type unread
            if n <= 21:
                return self._skip("truncated FDDI header")
            return self._ip_by_version(frame, ts_ns, d, n, 21, None)
        if (
            linktype == K.LINKTYPE_RAW
            or linktype == K.DLT_RAW_12
            or linktype == K.DLT_RAW_14
            or linktype == K.LINKTYPE_IPV4
            or linktype == K.LINKTYPE_IPV6
        ):  # raw IP
            return self._ip_by_version(frame, ts_ns, d, n, 0, None)
        if (
            linktype == K.LINKTYPE_NULL or linktype == K.LINKTYPE_LOOP
        ):  # BSD loopback: 4-byte address family (host or network order)
            if n < 4:
                return self._skip("truncated loopback header")
            return self._ip_by_version(frame, ts_ns, d, n, 4, None)
        if linktype == K.LINKTYPE_LINUX_SLL:  # Linux cooked capture v1 (tcpdump -i any)
            if n < 16:
                return self._skip("truncated Linux SLL header")
            return self._ethertype(frame, ts_ns, d, n, 16, (d[14] << 8) | d[15], None)
        if linktype == K.LINKTYPE_LINUX_SLL2:  # Linux cooked capture v2
            if n < 20:
                return self._skip("truncated Linux SLL2 header")
            return self._ethertype(frame, ts_ns, d, n, 20, (d[0] << 8) | d[1], None)
        if linktype == K.LINKTYPE_PPP:  # PPP (RFC 1661) in HDLC-like framing or bare protocol field
            off = 2 if n >= 2 and d[0] == 0xFF and d[1] == 0x03 else 0
            if n < off + 2:
                return self._skip("truncated PPP header")
            return self._ppp(frame, ts_ns, d, n, off, None)
        return self._skip(f"unsupported link type {linktype}")

    @cython.cfunc
    def _ethernet(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
        vlan,
    ):
        """An Ethernet frame at `off`: the link type, and Ethernet inside a tunnel (GRE's
        transparent bridging and ERSPAN, VXLAN, Geneve), 802.1ah and MPLS pseudowires."""
        etype: cython.uint
        if n < off + 14:
            return self._skip("truncated Ethernet header")
        if d[off + 12] == 0x89 and d[off + 13] == 0x03:
            # Cisco FabricPath (ethertype 0x8903): a 16-byte outer header before the classic
            # Ethernet frame (Zeek's Ethernet.cc skips it the same way)
            if n <= off + 16 + 14:
                return self._skip("truncated Cisco FabricPath header")
            off += 16
        etype = (d[off + 12] << 8) | d[off + 13]
        off += 14
        if etype <= 1500:  # 802.3 length field: only LLC/SNAP carries IP
            if n >= off + 8 and d[off] == 0xAA and d[off + 1] == 0xAA and d[off + 2] == 3:
                etype = (d[off + 6] << 8) | d[off + 7]
                off += 8
            else:
                self.non_ip["802.3 LLC"] += 1
                return None
        return self._ethertype(frame, ts_ns, d, n, off, etype, vlan)

    @cython.cfunc
    def _ethertype(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
        etype: cython.uint,
        vlan,
    ):
        while True:
            if etype in (
                K.ETH_TYPE_8021Q,
                K.ETH_TYPE_8021AD,
                K.ETH_TYPE_QINQ1,
                K.ETH_TYPE_QINQ2,
            ):  # 802.1Q / QinQ: TCI then the inner type
                if n < off + 4:
                    return self._skip("truncated VLAN tag")
                if vlan is None:
                    vlan = ((d[off] << 8) | d[off + 1]) & 0x0FFF
                else:  # VLAN.cc: the second tag is inner_vlan; a third overwrites it
                    self._inner_vlan = ((d[off] << 8) | d[off + 1]) & 0x0FFF
                etype = (d[off + 2] << 8) | d[off + 3]
                off += 4
            elif etype == K.ETHERTYPE_VNTAG:
                # Cisco VN-Tag: 4 bytes of tag, then the inner type; Zeek's VNTag.cc forwards
                # only to its VLAN analyzer (scripts/base/packet-protocols/vntag/main.zeek
                # registers 0x8100, 0x88A8, 0x9100), so anything else after it is not analysed
                if n <= off + 6:
                    return self._skip("truncated VN-Tag header")
                etype = (d[off + 4] << 8) | d[off + 5]
                off += 6
                if etype not in (K.ETH_TYPE_8021Q, K.ETH_TYPE_8021AD, K.ETH_TYPE_QINQ1):
                    self.non_ip[f"ethertype 0x{etype:04x} after VN-Tag"] += 1
                    return None
            else:
                break
        if etype == K.ETHERTYPE_PBB:
            # 802.1ah provider backbone bridging: the 4-byte I-TAG, then the customer's
            # Ethernet header (Zeek's PBB.cc: PBB_C_DST_OFF 4; shorter than 18 is truncated)
            if n <= off + 18:
                return self._skip("truncated 802.1ah PBB header")
            return self._ethernet(frame, ts_ns, d, n, off + 4, vlan)
        if etype == K.ETH_TYPE_IP:
            return self._ipv4(frame, ts_ns, d, n, off, vlan)
        if etype == K.ETH_TYPE_IP6:
            return self._ipv6(frame, ts_ns, d, n, off, vlan)
        if etype in (
            K.ETH_TYPE_MPLS,
            K.ETH_TYPE_MPLS_MCAST,
        ):  # MPLS: pop labels to the bottom of the stack, then guess by version
            while True:
                if n < off + 4:
                    return self._skip("truncated MPLS label")
                bottom = d[off + 2] & 0x01
                off += 4
                if bottom:
                    break
            if n > off and d[off] >> 4 == 0:  # pseudowire control word, then an Ethernet frame
                off += 4
                if n < off + 14:
                    return self._skip("truncated Ethernet over MPLS")
                return self._ethertype(
                    frame, ts_ns, d, n, off + 14, (d[off + 12] << 8) | d[off + 13], vlan
                )
            return self._ip_by_version(frame, ts_ns, d, n, off, vlan)
        if etype == K.ETH_TYPE_PPPoE:
            if n < off + 8:
                return self._skip("truncated PPPoE header")
            return self._ppp(frame, ts_ns, d, n, off + 6, vlan)
        self.non_ip[f"ethertype 0x{etype:04x}"] += 1
        return None

    @cython.cfunc
    def _ppp(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
        vlan,
    ):
        proto: cython.uint = (d[off] << 8) | d[off + 1]
        if proto == K.PPP_IP:
            return self._ipv4(frame, ts_ns, d, n, off + 2, vlan)
        if proto == K.PPP_IP6:
            return self._ipv6(frame, ts_ns, d, n, off + 2, vlan)
        self.non_ip[f"PPP protocol 0x{proto:04x}"] += 1
        return None

    @cython.cfunc
    def _ip_by_version(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
        vlan,
    ):
        if n <= off:
            return self._skip("frame too short for an IP header")
        version: cython.int = d[off] >> 4
        if version == 4:
            return self._ipv4(frame, ts_ns, d, n, off, vlan)
        if version == 6:
            return self._ipv6(frame, ts_ns, d, n, off, vlan)
        return self._skip(f"IP version {version}")

    # ---------------------------------------------------------------- network layer
    @cython.cfunc
    @cython.locals(vihl=cython.uint, total=cython.Py_ssize_t, ident=cython.uint, frag=cython.uint,
                   proto=cython.int, ihl=cython.Py_ssize_t, captured=cython.Py_ssize_t,
                   offset=cython.Py_ssize_t, pseudo=cython.longlong, p=Packet)  # fmt: skip
    def _ipv4(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
        vlan,
    ):
        if n < off + 20:
            return self._skip("truncated IPv4 header")
        if cython.compiled:
            vihl = d[off]
            total = _be16(d, off + 2)
            ident = _be16(d, off + 4)
            frag = _be16(d, off + 6)
            proto = d[off + 9]
            src = _addr(self._addrs, d, off + 12, off + 16)
            dst = _addr(self._addrs, d, off + 16, off + 20)
        else:
            vihl, _tos, total, ident, frag, _ttl, proto, _csum, src, dst = _IPV4.unpack_from(d, off)
        if vihl >> 4 != 4:
            return self._skip("bad IPv4 version")
        ihl = (vihl & 0x0F) * 4
        if ihl < 20 or n < off + ihl:
            return self._skip("bad IPv4 header length")
        captured = n - off
        if total == 0:  # TSO/GSO on the capturing host leaves 0 here; trust the capture
            total = captured
        elif total < ihl:
            return self._skip("IPv4 total length shorter than header")
        elif total < captured:
            captured = total  # Ethernet padding beyond the datagram
        p = _new_packet(frame, ts_ns, 4, src, dst, vlan, self._encap)
        p.inner_vlan = self._inner_vlan
        p.proto = proto
        p.ip_len = total
        if self.verify_checksums and not _ones_complement_ok(_sum16(d, off, off + ihl)):
            if d[off + 10] == 0 and d[off + 11] == 0:
                # left to the NIC (TSO/checksum offload on the capturing host): as for TCP/UDP
                # (see _check_transport), recognised, counted in `offloaded`, not called bad
                self.offloaded += 1
            else:
                # Zeek drops it before any connection sees it (IP.cc IPAnalyzer::AnalyzePacket,
                # "bad_IP_checksum")
                return self._skip("bad IPv4 header checksum")
        offset = (frag & 0x1FFF) * 8
        if offset or frag & 0x2000:  # a fragment: reassemble lengths, not bytes
            return self._fragment(
                (4, src, dst, ident, proto), p, d, off + ihl, off + captured, offset,
                frag & 0x2000, total - ihl, ihl,
            )  # fmt: skip
        pseudo = -1  # none: checksums not verified
        if self.verify_checksums and not p.fragment:
            # the pseudo-header (RFC 9293 §3.1): addresses, protocol, transport length
            pseudo = _sum16(d, off + 12, off + 20) + proto + (total - ihl)
        return self._transport(p, d, off + ihl, off + captured, total - ihl, pseudo)

    @cython.cfunc
    @cython.locals(vtf=cython.uint, plen=cython.Py_ssize_t, nh=cython.int, end=cython.Py_ssize_t,
                   captured_end=cython.Py_ssize_t, pos=cython.Py_ssize_t, frag_off=cython.Py_ssize_t,
                   more=cython.uint, ident=cython.uint, length=cython.Py_ssize_t,
                   pseudo=cython.longlong, p=Packet)  # fmt: skip
    def _ipv6(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
        vlan,
    ):
        if n < off + 40:
            return self._skip("truncated IPv6 header")
        if cython.compiled:
            vtf = _be32(d, off)
            plen = _be16(d, off + 4)
            nh = d[off + 6]
            src = _addr(self._addrs, d, off + 8, off + 24)
            dst = _addr(self._addrs, d, off + 24, off + 40)
        else:
            vtf, plen, nh, _hlim, src, dst = _IPV6.unpack_from(d, off)
        if vtf >> 28 != 6:
            return self._skip("bad IPv6 version")
        p = _new_packet(frame, ts_ns, 6, src, dst, vlan, self._encap)
        p.inner_vlan = self._inner_vlan
        end = off + 40 + plen
        captured_end = min(n, end)
        p.ip_len = 40 + plen
        pos = off + 40
        # extension headers walked to the transport header (RFC 8200 §4): hop-by-hop 0,
        # routing 43, fragment 44, AH 51, destination options 60, mobility 135, HIP 139, shim6 140
        while nh in (0, 43, 44, 51, 60, 135, 139, 140):
            if captured_end < pos + 8:
                return self._skip("truncated IPv6 extension header")
            if nh == K.IPPROTO_FRAGMENT:
                frag_off = ((d[pos + 2] << 8) | d[pos + 3]) & 0xFFF8
                more = d[pos + 3] & 1
                ident = _be32(d, pos + 4)
                nh = d[pos]
                pos += 8
                if frag_off or more:  # RFC 6946 atomic fragments (offset 0, M=0) are whole
                    p.proto = nh
                    return self._fragment(
                        (6, src, dst, ident, nh), p, d, pos, captured_end, frag_off, more,
                        end - pos, pos - off,
                    )  # fmt: skip
                continue
            length = (d[pos + 1] + 2) * 4 if nh == K.IPPROTO_AH else (d[pos + 1] + 1) * 8
            nh = d[pos]
            pos += length
        if nh == 59:  # no next header
            self.non_ip["IPv6 no next header"] += 1
            return None
        if pos > end:
            return self._skip("IPv6 extension headers longer than the payload")
        p.proto = nh
        pseudo = -1  # none: checksums not verified
        if self.verify_checksums and not p.fragment:
            pseudo = _sum16(d, off + 8, off + 40) + nh + (end - pos)
        return self._transport(p, d, pos, captured_end, end - pos, pseudo)

    # ---------------------------------------------------------------- tunnels
    # Zeek's rules, read from its source (zeek/zeek, src/packet_analysis/protocol/): ip/IP.cc
    # hands protocols 4 and 41 to iptunnel/IPTunnel.cc and 47 to gre/GRE.cc; udp/UDP.cc hands a
    # datagram to the analyzer registered for its responder's port (vxlan/VXLAN.cc,
    # geneve/Geneve.cc, gtpv1/, teredo/Teredo.cc, ayiya/AYIYA.cc, GRE), else to one whose
    # protocol detection matches (AYIYA, Teredo). Ports and depth are Zeek's defaults
    # (scripts/base/packet-protocols/*/main.zeek, init-bare.zeek Tunnel::max_depth). The inner
    # packet carries `encap` (the layer it came out of); the connection table turns that into
    # tunnel_parents. A header Zeek calls a violation or a weird is counted in `tunnel_errors`
    # (UDP: the datagram is still analysed as UDP) or, for IP tunnels, in `skipped`.

    @cython.cfunc
    def _inner(
        self,
        layer,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
        how: cython.int,
    ):
        """Decode the packet inside a tunnel header (at d[off:n]) as a new packet, as Zeek's
        build_inner_packet does: no VLAN of the outer frame; `layer` becomes its `encap`."""
        saved, saved_vlan = self._encap, self._inner_vlan
        self._encap = layer
        self._inner_vlan = None
        self._depth += 1
        try:
            if how == _INNER_ETHERNET:
                return self._ethernet(frame, ts_ns, d, n, off, None)
            return self._ip_by_version(frame, ts_ns, d, n, off, None)
        finally:
            self._depth -= 1
            self._encap, self._inner_vlan = saved, saved_vlan

    @cython.cfunc
    @cython.locals(fit=cython.int, version=cython.int)
    def _ip_tunnel(
        self, p: Packet, d: cython.p_uchar, pos: cython.Py_ssize_t, end: cython.Py_ssize_t
    ):
        """IP-in-IP (4: IPv4 inside, 41: IPv6 inside) and GRE (47): the inner packet, or None.

        IPTunnel.cc: IP.cc leaves gre_version at -1 for IP-in-IP, so the inner header must be
        the version the protocol names and fill the payload exactly (IP::ParsePacket)."""
        if self._depth >= self.max_depth:
            return self._skip("exceeded tunnel max depth")
        if p.proto == K.IPPROTO_GRE:
            return self._gre(p, d, pos, end, p.encap)
        version = 4 if p.proto == K.IPPROTO_IPIP else 6
        fit = _ip_fit(d, pos, end, version)
        if fit == _FIT_BAD_PROTOCOL:
            return self._skip("invalid inner IP version in IP-in-IP")
        if fit == _FIT_TOO_SMALL:
            return self._skip("truncated inner IP in IP-in-IP")
        if fit == _FIT_TOO_LARGE:
            return self._skip("inner IP payload length mismatch in IP-in-IP")
        return self._inner(
            IpTunnel("IP", p.src, p.dst, p.encap), p.frame, p.ts_ns, d, end, pos, _INNER_IP
        )

    @cython.cfunc
    @cython.locals(flags=cython.uint, ptype=cython.uint, version=cython.uint, length=cython.Py_ssize_t,
                   hlen=cython.Py_ssize_t, pptp=cython.Py_ssize_t, eth=cython.Py_ssize_t,
                   erspan=cython.Py_ssize_t, how=cython.int, ppp=cython.uint, fit=cython.int,
                   off=cython.Py_ssize_t)  # fmt: skip
    def _gre(
        self, p: Packet, d: cython.p_uchar, pos: cython.Py_ssize_t, end: cython.Py_ssize_t, parent
    ):
        """GRE (RFC 2784, RFC 2890 key and sequence; RFC 2637 enhanced GRE for PPTP), by the
        rules of Zeek's GRE.cc: version 0 carries IP (read by its version, whatever the
        protocol type says), Ethernet (0x6558) or ERSPAN type I/II (0x88BE, an 8-byte header
        when the sequence bit is set) and III (0x22EB, 12 bytes, 8 more with its O bit);
        version 1 carries PPP whose protocol must be IPv4 or IPv6, filling the payload exactly.
        Routing present, reserved flags, other versions and short headers are not decoded."""
        length = end - pos
        if length < 4:
            return self._skip("truncated GRE header")
        flags = _be16(d, pos)
        ptype = _be16(d, pos + 2)
        version = flags & 0x0007
        hlen = 4
        if flags & 0x8000:  # checksum and reserved1
            hlen += 4
        if flags & 0x2000:  # key
            hlen += 4
        if flags & 0x1000:  # sequence number
            hlen += 4
        if flags & 0x0080:  # acknowledgment number (enhanced GRE)
            hlen += 4
        pptp = eth = erspan = 0
        how = _INNER_IP
        if version == 0:
            if ptype == K.ETH_TYPE_TEB:
                if length <= hlen + 14:
                    return self._skip("truncated GRE header")
                eth = 14
                how = _INNER_ETHERNET
            elif ptype == K.ETHERTYPE_ERSPAN:
                if length <= hlen + 14:
                    return self._skip("truncated GRE header")
                eth = 14
                how = _INNER_ETHERNET
                if flags & 0x1000:  # ERSPAN type II
                    erspan = 8
                    if length < hlen + eth + erspan:
                        return self._skip("truncated GRE header")
            elif ptype == K.ETHERTYPE_ERSPAN3:
                if length <= hlen + 14 + 12:
                    return self._skip("truncated GRE header")
                erspan = 12
                eth = 14
                how = _INNER_ETHERNET
                if d[pos + hlen + erspan - 1] & 0x01:  # the O bit: an optional subheader
                    if length > hlen + erspan + 8 + eth:
                        erspan += 8
                    else:
                        return self._skip("truncated GRE header")
            elif (
                ((ptype & 0x8200) == 0x8200 and (ptype & 0x0F) == 0)
                or ((ptype & 0x8300) == 0x8300 and (ptype & 0x0F) == 0 and ptype <= 0x8370)
                or ptype == 0x9000
            ):  # Aruba's 802.11 in GRE, which Zeek hands to its 802.11 analyzer
                self.non_ip["802.11 in GRE (Aruba)"] += 1
                return None
        elif version == 1:
            if ptype != K.ETH_TYPE_PPP:
                return self._skip("enhanced GRE protocol type not PPP")
            pptp = 4  # PPP address, control and protocol
        else:
            return self._skip("unknown GRE version")
        if flags & 0x4000:
            return self._skip("GRE routing present")
        if flags & 0x0078:
            return self._skip("unknown GRE flags")
        if length < hlen + pptp + eth + erspan:
            return self._skip("truncated GRE header")
        off = pos + hlen + pptp + erspan
        if version == 1:
            ppp = _be16(d, pos + hlen + 2)
            if ppp != K.PPP_IP and ppp != K.PPP_IP6:
                self.non_ip[f"PPP protocol 0x{ppp:04x} in GRE"] += 1
                return None
            fit = _ip_fit(d, off, end, 4 if ppp == K.PPP_IP else 6)
            if fit == _FIT_BAD_PROTOCOL:
                return self._skip("invalid inner IP version in GRE")
            if fit == _FIT_TOO_SMALL:
                return self._skip("truncated inner IP in GRE")
            if fit == _FIT_TOO_LARGE:
                return self._skip("inner IP payload length mismatch in GRE")
        return self._inner(
            IpTunnel("GRE", p.src, p.dst, parent), p.frame, p.ts_ns, d, end, off, how
        )

    @cython.cfunc
    def _violation(self, kind: cython.int, p: Packet, reason: str):
        """Zeek's AnalyzerViolation: counted, and no later packet of the flow is decapsulated
        (Analyzer::AnalyzerViolated(session) ends each tunnel analyzer's AnalyzePacket)."""
        self.tunnel_errors[reason] += 1
        if len(self._violated) >= 65536:  # bounded: a long capture's flows come and go
            self._violated.clear()
        self._violated.add(_flow_key(kind, p))
        return p

    @cython.cfunc
    @cython.locals(length=cython.Py_ssize_t, hlen=cython.Py_ssize_t, off=cython.Py_ssize_t,
                   how=cython.int, i=cython.Py_ssize_t, flags=cython.uint, size=cython.Py_ssize_t,
                   nxt=cython.uint, ptype=cython.uint, fit=cython.int, version=cython.int,
                   origin=cython.bint, auth=cython.bint, tag=cython.uint, nh=cython.uint)  # fmt: skip
    def _udp_tunnel(
        self, kind: cython.int, p: Packet, d: cython.p_uchar, pos: cython.Py_ssize_t,
        end: cython.Py_ssize_t,
    ):  # fmt: skip
        """The datagram `p` (payload d[pos:end]) on a tunnel port or detected as a tunnel:
        the inner packet, or `p` itself when there is none to decode."""
        if p.bad_checksum:
            return p  # UDP.cc: a bad checksum ends the datagram's analysis before forwarding
        if self._violated and _flow_key(kind, p) in self._violated:
            return p
        if kind == _T_GRE:  # GRE over UDP (RFC 8086): an IP tunnel between the UDP endpoints
            if self._depth >= self.max_depth:
                self.tunnel_errors["exceeded tunnel max depth"] += 1
                return p
            inner = self._gre(p, d, pos, end, p)
            return p if inner is None else inner
        if self._depth >= self.max_depth:
            # Zeek also marks the flow's history 'X' (HIST_ANALYZER_LIMIT_REACHED)
            self.tunnel_errors["exceeded tunnel max depth"] += 1
            return p
        length = end - pos
        off = pos
        how = _INNER_IP
        name = None
        if kind == _T_VXLAN:  # RFC 7348: flags (I bit: the VNI is valid), VNI; Ethernet inside
            if length < 8:
                return self._violation(kind, p, "VXLAN header truncation")
            if not d[pos] & 0x08:
                return self._violation(kind, p, "VXLAN 'I' flag not set")
            off = pos + 8
            how = _INNER_ETHERNET
            name = "vxlan"
        elif kind == _T_GENEVE:  # RFC 8926: version 0, options, protocol type, VNI
            if length < 8:
                return self._violation(kind, p, "Geneve header truncation")
            if d[pos] >> 6 != 0:
                self.tunnel_errors["Geneve version not 0"] += 1
                return p
            hlen = 8 + (d[pos] & 0x3F) * 4
            if length < hlen:
                return self._violation(kind, p, "Geneve option header truncation")
            name = "geneve"
            ptype = _be16(d, pos + 2)
            off = pos + hlen
            if off < end:
                if ptype == K.ETH_TYPE_TEB:
                    how = _INNER_ETHERNET
                elif ptype != K.ETH_TYPE_IP and ptype != K.ETH_TYPE_IP6:
                    # geneve/main.zeek maps 0x6558, IPv4, IPv6 and ARP, nothing else
                    p.tunnel = name
                    self.non_ip[f"protocol 0x{ptype:04x} in Geneve"] += 1
                    return p
        elif kind == _T_GTPV1:
            # 3GPP TS 29.281; Zeek's gtpv1-protocol.pac and gtpv1-analyzer.pac: version 1 with
            # the PT bit, an optional 4-byte field when E, S or PN is set, extension headers
            # (4 x length bytes each, until a next type of 0), and only G-PDUs (type 255) hold
            # a packet, which must be IPv4 or IPv6 and fill the rest exactly
            if length < 8:
                return self._violation(kind, p, "Truncated GTPv1")
            outer = self._encap
            if isinstance(outer, Packet) and cython.cast(Packet, outer).tunnel == "gtpv1":
                return self._violation(kind, p, "GTP-in-GTP")
            flags = d[pos]
            if flags >> 5 != 1:
                return self._violation(kind, p, "GTPv1 bad Version")
            if not flags & 0x10:
                return p  # GTP' (charging): not a tunnel
            hlen = 8
            if flags & 0x07:
                hlen += 4
            if length < hlen:
                return self._violation(kind, p, "Truncated GTPv1")
            if flags & 0x04:
                i = pos + hlen
                while True:
                    if i >= end or d[i] == 0:
                        return self._violation(kind, p, "Truncated GTPv1")
                    size = d[i] * 4
                    if i + size > end:
                        return self._violation(kind, p, "Truncated GTPv1")
                    nxt = d[i + size - 1]
                    i += size
                    if nxt == 0:
                        break
                hlen = i - pos
            if d[pos + 1] != 255:
                return p  # signalling (create/update/delete PDP context ...): no packet inside
            off = pos + hlen
            if end - off < 20:
                return self._violation(kind, p, "Truncated GTPv1")
            version = d[off] >> 4
            if version != 4 and version != 6:
                return self._violation(kind, p, "non-IP packet in GTPv1")
            fit = _ip_fit(d, off, end, version)
            if fit == _FIT_TOO_SMALL:
                return self._violation(kind, p, "Truncated GTPv1")
            if fit != _FIT_OK:
                return self._violation(kind, p, "GTPv1 payload length")
            name = "gtpv1"
        elif kind == _T_TEREDO:
            # RFC 4380 section 5.1.1; Teredo.cc TeredoEncapsulation::DoParse: an optional
            # authentication header, then an optional origin indication, then IPv6
            i = pos
            origin = auth = False
            while True:
                if end - i < 2:
                    return self._violation(kind, p, "Bad Teredo encapsulation")
                tag = _be16(d, i)
                if tag == 0 and not origin and end - i >= 8:
                    origin = True
                    i += 8
                elif tag == 1 and not origin and not auth and end - i >= 4:
                    size = 4 + d[i + 2] + d[i + 3] + 8 + 1
                    if end - i < size:
                        return self._violation(kind, p, "Bad Teredo encapsulation")
                    auth = True
                    i += size
                elif tag >> 12 == 6 and end - i >= 40:
                    break
                else:
                    return self._violation(kind, p, "Bad Teredo encapsulation")
            fit = _ip_fit(d, i, end, 6)
            if fit == _FIT_TOO_LARGE:
                if not (d[i + 6] == 59 and _be16(d, i + 4) == 0):  # a bubble may have a tail
                    return self._violation(kind, p, "Teredo payload length")
            elif fit != _FIT_OK:
                return self._violation(kind, p, "Truncated Teredo or invalid inner IP version")
            off = i
            name = "teredo"
        else:  # AYIYA (draft-massar-v6ops-ayiya): identity, signature, opcode, next header
            if length < 8:
                return self._violation(kind, p, "Truncated AYIYA")
            hlen = 8 + (1 << (d[pos] >> 4)) + (d[pos + 1] >> 4) * 4
            if length < hlen:
                return self._violation(kind, p, "Truncated AYIYA")
            if d[pos + 2] & 0x0F != 1:
                return p  # not "forward": nothing inside
            nh = d[pos + 3]
            off = pos + hlen
            name = "ayiya"
            if off < end and nh != K.IPPROTO_IPIP and nh != K.IPPROTO_IPV6:
                p.tunnel = name
                self.non_ip[f"protocol {nh} in AYIYA"] += 1
                return p
        p.tunnel = name
        if off >= end:
            self.tunnel_errors[f"{name} header without a packet"] += 1
            return p
        inner = self._inner(p, p.frame, p.ts_ns, d, end, off, how)
        return p if inner is None else inner

    # ---------------------------------------------------------------- fragments
    @cython.cfunc
    def _fragment(
        self,
        key,
        p: Packet,
        d: cython.p_uchar,
        pos: cython.Py_ssize_t,
        cap_end: cython.Py_ssize_t,
        offset: cython.Py_ssize_t,
        more: cython.uint,
        frag_len: cython.Py_ssize_t,
        ip_hdr_len: cython.Py_ssize_t,
    ):
        """Account one IP fragment; returns the whole datagram's packet when it is complete.

        Only lengths are reassembled (flowlens never keeps payload): the first fragment gives
        the transport header, the last one the total length, and the datagram is emitted, as
        one packet with the completing fragment's time and frame, once every byte has arrived.
        """
        frags = self._frags
        st = frags.get(key)
        if st is None:
            if len(frags) >= _MAX_PENDING_DATAGRAMS:  # bound memory against fragment floods
                frags.pop(next(iter(frags)))
                self.skipped["IP fragments of a datagram that never completed"] += 1
            st = frags[key] = [None, 0, None, 0]  # [first packet, bytes seen, total, header]
        st[1] += frag_len
        if not more:
            st[2] = offset + frag_len
        if offset == 0:
            p.fragment = 1
            first = self._transport(p, d, pos, cap_end, frag_len, -1)
            if first is None:
                del frags[key]
                return None
            st[0] = first
            st[3] = frag_len - first.plen  # transport header bytes
        first, seen, total, hdr = st
        if first is None or total is None or seen < total:
            return None
        del frags[key]
        if total < hdr:  # the last fragment ends inside the first one's transport header
            return self._skip("IP fragments whose lengths do not add up")
        first.plen = total - hdr
        first.ip_len = ip_hdr_len + total
        first.frame, first.ts_ns = p.frame, p.ts_ns
        # inside a tunnel: the datagram comes out of the completing fragment's outer packet
        # (the first fragment's was analysed with its own frame)
        first.encap = p.encap
        first.caplen_short = 0
        return first

    @property
    def pending_fragments(self) -> int:
        """Datagrams still waiting for fragments (reported when a capture ends)."""
        return len(self._frags)

    # ---------------------------------------------------------------- transport layer
    @cython.cfunc
    @cython.locals(proto=cython.int, avail=cython.Py_ssize_t, whole=cython.bint, hlen=cython.Py_ssize_t,
                   offb=cython.uint, flags=cython.uint, csum=cython.longlong, ulen=cython.uint,
                   icmp_type=cython.int, total=cython.longlong, kind=cython.int)  # fmt: skip
    def _transport(
        self,
        p: Packet,
        d: cython.p_uchar,
        pos: cython.Py_ssize_t,
        cap_end: cython.Py_ssize_t,
        seg_len: cython.Py_ssize_t,
        pseudo: cython.longlong,
    ):
        """Fill `p` from the transport header at `pos`; `seg_len` is the length the IP header
        claims, `cap_end` where the captured bytes stop, `pseudo` the pseudo-header sum (or -1
        when checksums are not verified)."""
        proto = p.proto
        avail = cap_end - pos
        whole = avail >= seg_len
        if proto == K.IPPROTO_TCP:
            if avail < 20:
                return self._skip("truncated TCP header")
            if cython.compiled:
                p.sport = _be16(d, pos)
                p.dport = _be16(d, pos + 2)
                p.seq = _be32(d, pos + 4)
                p.ack = _be32(d, pos + 8)
                offb = d[pos + 12]
                flags = d[pos + 13]
                p.win = _be16(d, pos + 14)
                csum = _be16(d, pos + 16)
            else:
                p.sport, p.dport, p.seq, p.ack, offb, flags, p.win, csum, _u = _TCP.unpack_from(
                    d, pos
                )
            hlen = (offb >> 4) * 4
            if hlen < 20 or (hlen > seg_len and not p.fragment):
                return self._skip("bad TCP header length")
            p.flags = flags
            if hlen > 20:
                # options cut by the snaplen are kept as far as they go
                if self.keep_options or flags & K.TH_SYN:
                    p.raw_options = _bytes(d, pos + 20, pos + min(hlen, avail))
                if self.timestamps:
                    _read_timestamps(p, d, pos + 20, pos + min(hlen, avail))
            p.plen = seg_len - hlen
            if not whole:
                p.caplen_short = seg_len - max(avail, hlen)
            if self.payload and p.fragment == 0 and seg_len > hlen and avail > hlen:
                p.payload = _bytes(d, pos + hlen, pos + min(seg_len, avail, hlen + self.payload))
            if pseudo >= 0 and whole and p.fragment == 0:
                self._check_transport(p, d, pos, seg_len, pseudo, csum)
        elif proto == K.IPPROTO_UDP:
            if avail < 8:
                return self._skip("truncated UDP header")
            if cython.compiled:
                p.sport = _be16(d, pos)
                p.dport = _be16(d, pos + 2)
                csum = _be16(d, pos + 6)
            else:
                p.sport, p.dport, ulen, csum = _UDP.unpack_from(d, pos)
            # DNS, mDNS, LLMNR: the first payload bytes are a DNS header
            if avail >= 12 and (p.sport in (53, 5353, 5355) or p.dport in (53, 5353, 5355)):
                p.udp_head = _bytes(d, pos + 8, pos + 12)  # the id that pairs query and answer
            p.plen = seg_len - 8
            if not whole:
                p.caplen_short = seg_len - avail
            if self.payload and p.fragment == 0 and seg_len > 8 and avail > 8:
                p.payload = _bytes(d, pos + 8, pos + min(seg_len, avail, 8 + self.payload))
            if pseudo >= 0 and whole and csum and p.fragment == 0:
                self._check_transport(p, d, pos, seg_len, pseudo, csum)
            if avail > 8 and p.fragment == 0:
                # a tunnel: by port (either way: Zeek looks at the responder's), else by
                # Zeek's detection of AYIYA and Teredo; a few C compares for other datagrams
                kind = _tunnel_port(p.dport)
                if kind == 0:
                    kind = _tunnel_port(p.sport)
                    if kind == 0:
                        kind = _detect_tunnel(d, pos + 8, cap_end)
                if kind != 0 and self.max_depth > 0:
                    return self._udp_tunnel(kind, p, d, pos + 8, cap_end)
        elif proto == K.IPPROTO_ICMP or proto == K.IPPROTO_ICMPV6:
            if avail < 4:
                return self._skip("truncated ICMP header")
            icmp_type = d[pos]
            p.sport, p.dport = icmp_type, d[pos + 1]
            p.plen = seg_len - 8 if seg_len >= 8 else 0
            if pseudo >= 0 and whole:
                total = _sum16(d, pos, pos + seg_len)
                if proto == K.IPPROTO_ICMPV6:  # only ICMPv6 covers a pseudo-header
                    total += pseudo
                p.bad_checksum = (p.bad_checksum or False) or not _ones_complement_ok(total)
            errors = _ICMP4_ERRORS if proto == K.IPPROTO_ICMP else _ICMP6_ERRORS
            if icmp_type in errors and p.fragment == 0:
                p.quote = self._quoted(d, pos + 8, cap_end)
        elif (
            proto == K.IPPROTO_IPIP or proto == K.IPPROTO_IPV6 or proto == K.IPPROTO_GRE
        ) and p.fragment == 0:
            p.plen = seg_len
            return self._ip_tunnel(p, d, pos, cap_end)
        else:
            p.plen = seg_len
        return p

    @cython.cfunc
    def _check_transport(
        self,
        p: Packet,
        d: cython.p_uchar,
        pos: cython.Py_ssize_t,
        seg_len: cython.Py_ssize_t,
        pseudo: cython.longlong,
        csum: cython.longlong,
    ):
        """Verify a TCP/UDP checksum; recognise offloaded ones instead of calling them bad.

        A sender that leaves the checksum to its NIC (and Linux on loopback, CHECKSUM_PARTIAL)
        puts only the pseudo-header sum in the field, so a capture taken on that host shows
        every outgoing packet "incorrect" (Wireshark: "maybe caused by checksum offload"). A
        field equal to the pseudo-header sum is that case, exactly: such a packet is counted in
        `offloaded` and left unverified (None), not flagged bad.
        """
        if csum % 0xFFFF == pseudo % 0xFFFF:  # checked first: it spares summing 64 KB segments
            self.offloaded += 1
            return
        if (pseudo + _sum16(d, pos, pos + seg_len)) % 0xFFFF == 0:  # _ones_complement_ok
            if p.bad_checksum is None:
                p.bad_checksum = False
            return
        p.bad_checksum = True

    @cython.cfunc
    def _quoted(self, d: cython.p_uchar, pos: cython.Py_ssize_t, end: cython.Py_ssize_t):
        """The 5-tuple of the datagram an ICMP error quotes, or None if it is cut short."""
        if end - pos < 20:
            return None
        tpos: cython.Py_ssize_t
        version: cython.int = d[pos] >> 4
        if version == 4:
            ihl = (d[pos] & 0x0F) * 4
            proto = d[pos + 9]
            src, dst = _bytes(d, pos + 12, pos + 16), _bytes(d, pos + 16, pos + 20)
            tpos = pos + ihl
        elif version == 6 and end - pos >= 40:
            proto = d[pos + 6]
            src, dst = _bytes(d, pos + 8, pos + 24), _bytes(d, pos + 24, pos + 40)
            tpos = pos + 40
        else:
            return None
        if (proto == K.IPPROTO_TCP or proto == K.IPPROTO_UDP) and end - tpos >= 4:
            return (proto, src, dst, (d[tpos] << 8) | d[tpos + 1], (d[tpos + 2] << 8) | d[tpos + 3])
        return (proto, src, dst, 0, 0)

    @cython.cfunc
    def _skip(self, reason: str):
        self.skipped[reason] += 1
        return None

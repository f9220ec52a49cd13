"""Frame bytes -> compact packet records: `Decoder` and `Packet`, the IP and transport layers.

A `Packet` holds header fields and payload *lengths*; a copy of the first payload bytes only when
the decoder is asked for it (`Decoder(payload=N)`, an analyzer's Needs.PAYLOAD). Frames that
cannot be decoded are counted by reason in `Decoder.skipped` and yield `None`: a malformed packet
is data, not an error.

`Decoder` is the top of a class chain, one layer per module: `LinkDecoder` (core/links.py: the
link layers, VLAN/QinQ/MPLS/PPPoE) -> `TunnelDecoder` (core/tunnels.py: decapsulation) ->
`FragmentDecoder` (core/fragments.py: IP reassembly, lengths only) -> `Decoder` (here: IPv4
RFC 791, IPv6 RFC 8200 with its extension header chain, TCP
RFC 9293, UDP, ICMP RFC 792 and ICMPv6 RFC 4443, whose errors quote the offending datagram:
its 5-tuple is kept in `Packet.quote` so the error can be attached to its flow). `Packet`'s
fields are declared in core/packet.py (`PacketFields`); TCP options are parsed in
core/tcpoptions.py. Compiled, a call from one layer to the next is a cdef method call through
the class's table of C function pointers wherever the method lives, as it was when the chain
was one class; the byte readers (`K.be16`, `_sum16`, `_addr` ...) are inline.
"""

from __future__ import annotations

from struct import Struct

import cython

from flowlens.core import constants as K  # (absolute: decode.pxd cimports it under this name)

from .fragments import FragmentDecoder
from .frame import FrameRef
from .links import LINKTYPE_NAMES
from .packet import PacketFields
from .tcpoptions import EMPTY_OPTIONS, TcpOptions, flags_text, parse_tcp_options, tcp_timestamps
from .tunnels import IpTunnel

if not cython.compiled:  # compiled, decode.pxd cimports it: a C call
    from .tunnels import detect_tunnel

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
    "parse_tcp_options",
    "tcp_timestamps",
    "window_scale",
]

# The shared numbers (flag bits, protocol numbers, link types, ethertypes, option kinds) are
# defined once in constants.py; when compiled, `K.NAME` is a C constant (decode.pxd cimports
# the module as K). TH_* and IPPROTO_* are re-exported here for existing importers.
from .constants import (  # noqa: F401 (re-exported, as they always were)
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

_IPV4 = Struct("!BBHHHBBH4s4s")  # ver/ihl tos len id frag ttl proto csum src dst
_IPV6 = Struct("!IHBB16s16s")  # ver/tc/flow plen nh hlim src dst
_TCP = Struct("!HHIIBBHHH")  # sport dport seq ack off flags win csum urp
_UDP = Struct("!HHHH")

# ICMP error types whose body quotes the offending IP header + 8 bytes.
_ICMP4_ERRORS = frozenset((3, 4, 5, 11, 12))
_ICMP6_ERRORS = frozenset((1, 2, 3, 4))


class Packet(PacketFields):
    """One decoded IP packet: header fields and lengths; the first payload bytes only when the
    decoder was asked for them (`payload`). The fields are `PacketFields`' (core/packet.py).

    Addresses are packed bytes (4 or 16); `flowlens.core.connections.format_addr` prints them.
    For ICMP, `sport` and `dport` hold the ICMP type and code, as Zeek logs them.
    """

    __slots__ = ()

    @property
    def options(self) -> TcpOptions:
        """TCP options, parsed on first use."""
        opts = self._options
        if opts is None:
            opts = parse_tcp_options(self.raw_options) if self.raw_options else EMPTY_OPTIONS
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
# The header words: K.be16 and K.be32 (constants.pxd's inline functions).


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
    p: PacketFields, d: cython.p_uchar, start: cython.Py_ssize_t, end: cython.Py_ssize_t
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
        p.tsval, p.tsecr = K.be32(d, i + 2), K.be32(d, i + 6)


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
            total += K.be32(d, i)
            i += 4
        if i + 2 <= end:
            total += K.be16(d, i)
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


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _tunnel_port(port: cython.uint) -> cython.int:
    """The tunnel Zeek decapsulates on UDP `port` (its default `*_ports` sets), 0 for none.
    One range test turns away almost every port (DNS, ephemeral ports) before any compare."""
    if port < K.PORT_GTPV1_C or port > K.PORT_GENEVE:
        return 0
    if port == K.PORT_VXLAN:
        return K.TUNNEL_VXLAN
    if port == K.PORT_GENEVE:
        return K.TUNNEL_GENEVE
    if port == K.PORT_GTPV1_U or port == K.PORT_GTPV1_C:
        return K.TUNNEL_GTPV1
    if port == K.PORT_TEREDO:
        return K.TUNNEL_TEREDO
    if port == K.PORT_AYIYA:
        return K.TUNNEL_AYIYA
    if port == K.PORT_GRE:
        return K.TUNNEL_GRE
    return 0


@cython.cfunc
@cython.inline
@cython.exceptval(check=False)
def _udp_tunnel_kind(
    sport: cython.uint, dport: cython.uint, d: cython.p_uchar, pos: cython.Py_ssize_t,
    end: cython.Py_ssize_t,
) -> cython.int:  # fmt: skip
    """The tunnel a UDP datagram (payload d[pos:end]) carries, 0 for none: by port (either
    way: Zeek looks at the responder's), else by Zeek's detection of AYIYA and Teredo; a few
    C compares for other datagrams."""
    kind: cython.int = _tunnel_port(dport)
    if kind == 0:
        kind = _tunnel_port(sport)
        if kind == 0:
            kind = detect_tunnel(d, pos, end)
    return kind


@cython.cclass
class Decoder(FragmentDecoder):
    """Decode frames into `Packet`s, counting what it skips (`skipped`, `non_ip`,
    `tunnel_errors`: see `TunnelDecoder`, the base class that decapsulates tunnels).

    `verify_checksums` checks IPv4 header and TCP/UDP/ICMP checksums when the whole segment was
    captured (Zeek does the same; Wireshark does not by default). A bad checksum is flagged on the
    packet, never a reason to drop it.
    """

    # C attributes when compiled (a plain class attribute, unused, in Python); the base class's
    # are in tunnels.pxd
    verify_checksums = cython.declare(cython.bint, visibility="public")
    keep_options = cython.declare(cython.bint, visibility="public")
    timestamps = cython.declare(cython.bint, visibility="public")
    payload = cython.declare(cython.Py_ssize_t, visibility="public")
    offloaded = cython.declare(cython.longlong, visibility="public")
    _addrs = cython.declare(list)

    def __init__(
        self,
        verify_checksums: bool = True,
        keep_options: bool = True,
        timestamps: bool = False,
        payload: int = 0,
        max_depth: int = K.TUNNEL_MAX_DEPTH,
    ) -> None:
        super().__init__(max_depth)  # the counters, and the tunnels' depth limit and state
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
        #: TCP/UDP packets whose checksum was left to the NIC (offload) and so not verifiable
        self.offloaded = 0
        # recently seen addresses, reused as objects when compiled (see _addr)
        self._addrs = [None] * _ADDR_SLOTS

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
            total = K.be16(d, off + 2)
            ident = K.be16(d, off + 4)
            frag = K.be16(d, off + 6)
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
            vtf = K.be32(d, off)
            plen = K.be16(d, off + 4)
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
                ident = K.be32(d, pos + 4)
                nh = d[pos]
                pos += 8
                if frag_off or more:  # RFC 6946 atomic fragments (offset 0, M=0) are whole
                    p.proto = nh
                    # the reassembled datagram has the headers before the fragment header,
                    # not the fragment header itself (RFC 8200 §4.5; Zeek's Frag.cc:
                    # proto_hdr_len = ip->HdrLen() - 8), so its ip_len is 8 less
                    return self._fragment(
                        (6, src, dst, ident, nh), p, d, pos, captured_end, frag_off, more,
                        end - pos, pos - off - 8,
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

    # ---------------------------------------------------------------- transport layer
    @cython.cfunc
    @cython.locals(proto=cython.int, avail=cython.Py_ssize_t, whole=cython.bint, hlen=cython.Py_ssize_t,
                   offb=cython.uint, flags=cython.uint, csum=cython.longlong, ulen=cython.uint,
                   icmp_type=cython.int, total=cython.longlong, kind=cython.int)  # fmt: skip
    def _transport(
        self,
        p: PacketFields,
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
                p.sport = K.be16(d, pos)
                p.dport = K.be16(d, pos + 2)
                p.seq = K.be32(d, pos + 4)
                p.ack = K.be32(d, pos + 8)
                offb = d[pos + 12]
                flags = d[pos + 13]
                p.win = K.be16(d, pos + 14)
                csum = K.be16(d, pos + 16)
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
                p.sport = K.be16(d, pos)
                p.dport = K.be16(d, pos + 2)
                csum = K.be16(d, pos + 6)
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
                kind = _udp_tunnel_kind(p.sport, p.dport, d, pos + 8, cap_end)
                if kind != 0 and self.max_depth > 0:
                    return self._udp_tunnel(kind, p, d, pos + 8, cap_end, cap_end)
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
    @cython.locals(kind=cython.int, n=cython.Py_ssize_t, missing=cython.Py_ssize_t)
    def _reassembled_udp(self, p: PacketFields, head: bytes, whole: cython.Py_ssize_t):
        """A UDP datagram reassembled from IP fragments (FragmentDecoder._fragment), its first
        bytes `head` (UDP header first) of `whole`: decapsulated as `_transport` does a whole
        one, the tunnel's lengths from the datagram, its bytes from `head`. The inner packet
        lacks no byte of the capture: the ones not kept were reassembled, not missing. A
        checksum over bytes not kept (the outer UDP one, which Zeek's UDP.cc verifies before it
        forwards; the inner TCP/UDP one) is not verified."""
        if self.max_depth <= 0:
            return p
        n = len(head)
        d: cython.p_uchar
        if cython.compiled:
            d = head
        else:
            d = memoryview(head)  # type: ignore[assignment]  # (a pointer when compiled)
        kind = _udp_tunnel_kind(p.sport, p.dport, d, 8, n)
        if kind == 0:
            return p
        inner = self._udp_tunnel(kind, p, d, 8, n, whole)
        if inner is not p:
            missing = whole - n
            q = cython.cast(PacketFields, inner)
            q.caplen_short = q.caplen_short - missing if q.caplen_short > missing else 0
        return inner

    @cython.cfunc
    def _check_transport(
        self,
        p: PacketFields,
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

"""Tunnels as Zeek decapsulates them: IP-in-IP, GRE (with ERSPAN, PPTP and Aruba's 802.11),
and in UDP VXLAN, Geneve, GTPv1-U, Teredo, AYIYA and GRE; the inner packet's `encap` names the
layer it came out of, to Zeek's Tunnel::max_depth.

`TunnelDecoder` is one layer of `flowlens.core.decode.Decoder`'s class chain (LinkDecoder ->
TunnelDecoder -> FragmentDecoder -> Decoder): the state tunnels keep (depth, the enclosing
layer, the flows whose tunnel analysis failed, `tunnel_errors`) and the tunnel methods; it
reads the outer packet through `PacketFields` (core/packet.py). Compiled, the calls between
the layers are cdef method calls through the class's table of C function pointers, as calls
between Decoder's own methods are; the per-packet Ethernet/IP/TCP path never enters here.

Zeek's rules, read from its source (zeek/zeek, src/packet_analysis/protocol/): ip/IP.cc
hands protocols 4 and 41 to iptunnel/IPTunnel.cc and 47 to gre/GRE.cc; udp/UDP.cc hands a
datagram to the analyzer registered for its responder's port (vxlan/VXLAN.cc,
geneve/Geneve.cc, gtpv1/, teredo/Teredo.cc, ayiya/AYIYA.cc, GRE), else to one whose
protocol detection matches (AYIYA, Teredo). Ports and depth are Zeek's defaults
(scripts/base/packet-protocols/*/main.zeek, init-bare.zeek Tunnel::max_depth). The inner
packet carries `encap` (the layer it came out of); the connection table turns that into
tunnel_parents. A header Zeek calls a violation or a weird is counted in `tunnel_errors`
(UDP: the datagram is still analysed as UDP) or, for IP tunnels, in `skipped`.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, NamedTuple

import cython

from flowlens.core import constants as K  # (absolute: tunnels.pxd cimports it under this name)

from .links import LinkDecoder
from .packet import PacketFields

if TYPE_CHECKING:
    from .decode import Packet

__all__ = ["TunnelDecoder", "IpTunnel", "detect_tunnel"]


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
    encap: Packet | IpTunnel | None


#: what follows a tunnel header (Decoder._inner)
_INNER_IP = cython.declare(cython.int, 0)
_INNER_ETHERNET = cython.declare(cython.int, 1)
_INNER_IEEE802_11 = cython.declare(cython.int, 2)
# IP::ParsePacket's answers (Zeek's src/packet_analysis/protocol/ip/IP.cc), see _ip_fit
_FIT_OK = cython.declare(cython.int, 0)
_FIT_BAD_PROTOCOL = cython.declare(cython.int, 1)
_FIT_TOO_SMALL = cython.declare(cython.int, 2)
_FIT_TOO_LARGE = cython.declare(cython.int, 3)


@cython.cfunc
@cython.exceptval(check=False)
@cython.locals(n=cython.Py_ssize_t, i=cython.Py_ssize_t, b0=cython.uint, val=cython.uint)
def detect_tunnel(d: cython.p_uchar, pos: cython.Py_ssize_t, end: cython.Py_ssize_t) -> cython.int:
    """Zeek's protocol detection for UDP datagrams on no tunnel port (packet_analysis
    Analyzer::DetectInnerAnalyzer: AYIYA, then Teredo, as scripts/base/packet-protocols loads
    them): AYIYA.cc AYIYAAnalyzer::DetectProtocol and Teredo.cc TeredoAnalyzer::DetectProtocol,
    the second's old DPD pattern read as byte tests. A few byte compares for ordinary UDP."""
    n = end - pos
    if n >= 3 and d[pos + 1] == 0x52 and d[pos + 2] == 0x11:
        return K.TUNNEL_AYIYA
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
            return K.TUNNEL_TEREDO
        if d[pos + 24] == 0x20 and d[pos + 25] == 0x01 and d[pos + 26] == 0 and d[pos + 27] == 0:
            return K.TUNNEL_TEREDO
    val = d[pos + 1]
    i = pos
    if val == 1:  # an authentication header: its lengths, a nonce and a confirmation byte
        if n < 13 + d[i + 2] + d[i + 3]:
            return 0
        n -= 13 + d[i + 2] + d[i + 3]
        i += 13 + d[i + 2] + d[i + 3]
        if n < 40:
            return 0
        val = K.be16(d, i)
    if val == 0:  # an origin indication (8 bytes), then an IPv6 header
        n -= 8
        i += 8
        if n >= 40 and d[i] >> 4 == 6:
            return K.TUNNEL_TEREDO
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
        total = 40 + K.be16(d, off + 4)
    else:
        if length < 20 or d[off] >> 4 != 4:
            return _FIT_BAD_PROTOCOL
        total = K.be16(d, off + 2)
    if length != total:
        return _FIT_TOO_SMALL if length < total else _FIT_TOO_LARGE
    return _FIT_OK


def _flow_key(kind: int, p: PacketFields) -> tuple:
    """A UDP flow's key either way round, with the tunnel kind (Decoder._violated)."""
    if (p.src, p.sport) <= (p.dst, p.dport):
        return (kind, p.src, p.sport, p.dst, p.dport)
    return (kind, p.dst, p.dport, p.src, p.sport)


@cython.cclass
class TunnelDecoder(LinkDecoder):
    """The decoder's tunnels (see the module docstring), over its link layers; `Decoder`
    adds the IP and transport layers."""

    if TYPE_CHECKING:  # the attributes' types for mypy (tunnels.pxd gives the C ones)
        max_depth: int
        tunnel_errors: Counter[str]
        _depth: int
        _encap: object
        _violated: set[tuple]

    def __init__(self, max_depth: int = K.TUNNEL_MAX_DEPTH) -> None:
        super().__init__()
        #: encapsulations decoded at most (Zeek's Tunnel::max_depth); 0 decodes no tunnel
        self.max_depth = max_depth
        #: tunnel headers that were not decapsulated, by reason (Zeek's weirds and analyzer
        #: violations: "VXLAN 'I' flag not set", "exceeded tunnel max depth", ...); the packet
        #: that carried one is still analysed as what it is (a UDP datagram)
        self.tunnel_errors = Counter()
        # while an inner packet is decoded: how deep, and the layer it is inside (see _inner)
        self._depth = 0
        self._encap = None
        # (tunnel kind, flow) pairs whose tunnel analysis failed: like Zeek's
        # AnalyzerViolated(session), no later packet of that flow is decapsulated
        self._violated = set()

    # ---------------------------------------------------------------- tunnels
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
            if how == _INNER_IEEE802_11:
                return self._ieee802_11(frame, ts_ns, d, n, off)
            return self._ip_by_version(frame, ts_ns, d, n, off, None)
        finally:
            self._depth -= 1
            self._encap, self._inner_vlan = saved, saved_vlan

    @cython.cfunc
    @cython.locals(fit=cython.int, version=cython.int)
    def _ip_tunnel(
        self, p: PacketFields, d: cython.p_uchar, pos: cython.Py_ssize_t, end: cython.Py_ssize_t
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
        self,
        p: PacketFields,
        d: cython.p_uchar,
        pos: cython.Py_ssize_t,
        end: cython.Py_ssize_t,
        parent,
    ):
        """GRE (RFC 2784, RFC 2890 key and sequence; RFC 2637 enhanced GRE for PPTP), by the
        rules of Zeek's GRE.cc: version 0 carries IP (read by its version, whatever the
        protocol type says), Ethernet (0x6558) or ERSPAN type I/II (0x88BE, an 8-byte header
        when the sequence bit is set) and III (0x22EB, 12 bytes, 8 more with its O bit),
        Aruba's 802.11 frames (0x8200 and the other types GRE.cc's ARUBA test names);
        version 1 carries PPP whose protocol must be IPv4 or IPv6, filling the payload exactly.
        Routing present, reserved flags, other versions and short headers are not decoded."""
        length = end - pos
        if length < 4:
            return self._skip("truncated GRE header")
        flags = K.be16(d, pos)
        ptype = K.be16(d, pos + 2)
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
            ):  # Aruba's 802.11 in GRE: Zeek sets gre_link_type to DLT_IEEE802_11, and
                # IPTunnel.cc decodes the rest as a new packet of that link type
                if length <= hlen:
                    return self._skip("truncated GRE header")
                how = _INNER_IEEE802_11
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
            ppp = K.be16(d, pos + hlen + 2)
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
    def _violation(self, kind: cython.int, p: PacketFields, reason: str):
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
        self, kind: cython.int, p: PacketFields, d: cython.p_uchar, pos: cython.Py_ssize_t,
        end: cython.Py_ssize_t, whole: cython.Py_ssize_t,
    ):  # fmt: skip
        """The datagram `p` (payload d[pos:end]) on a tunnel port or detected as a tunnel:
        the inner packet, or `p` itself when there is none to decode. `whole` is where the
        datagram ends: `end`, or beyond it for one reassembled from IP fragments, of which only
        the first bytes are kept (FragmentDecoder): the inner packet must fill it."""
        if p.bad_checksum:
            return p  # UDP.cc: a bad checksum ends the datagram's analysis before forwarding
        if self._violated and _flow_key(kind, p) in self._violated:
            return p
        if kind == K.TUNNEL_GRE:  # GRE over UDP (RFC 8086): an IP tunnel between the UDP endpoints
            if self._depth >= self.max_depth:
                self.tunnel_errors["exceeded tunnel max depth"] += 1
                return p
            inner = self._gre(p, d, pos, end, p)
            return p if inner is None else inner
        if self._depth >= self.max_depth:
            # VXLAN.cc, Geneve.cc, Teredo.cc, AYIYA.cc: packet->session->CheckHistory(
            # HIST_ANALYZER_LIMIT_REACHED, 'X') before the exceeded_tunnel_max_depth weird
            self.tunnel_errors["exceeded tunnel max depth"] += 1
            p.limit_reached = 1
            return p
        length = end - pos
        off = pos
        how = _INNER_IP
        name = None
        if (
            kind == K.TUNNEL_VXLAN
        ):  # RFC 7348: flags (I bit: the VNI is valid), VNI; Ethernet inside
            if length < 8:
                return self._violation(kind, p, "VXLAN header truncation")
            if not d[pos] & 0x08:
                return self._violation(kind, p, "VXLAN 'I' flag not set")
            off = pos + 8
            how = _INNER_ETHERNET
            name = "vxlan"
        elif kind == K.TUNNEL_GENEVE:  # RFC 8926: version 0, options, protocol type, VNI
            if length < 8:
                return self._violation(kind, p, "Geneve header truncation")
            if d[pos] >> 6 != 0:
                self.tunnel_errors["Geneve version not 0"] += 1
                return p
            hlen = 8 + (d[pos] & 0x3F) * 4
            if length < hlen:
                return self._violation(kind, p, "Geneve option header truncation")
            name = "geneve"
            ptype = K.be16(d, pos + 2)
            off = pos + hlen
            if off < end:
                if ptype == K.ETH_TYPE_TEB:
                    how = _INNER_ETHERNET
                elif ptype != K.ETH_TYPE_IP and ptype != K.ETH_TYPE_IP6:
                    # geneve/main.zeek maps 0x6558, IPv4, IPv6 and ARP, nothing else
                    p.tunnel = name
                    self.non_ip[f"protocol 0x{ptype:04x} in Geneve"] += 1
                    return p
        elif kind == K.TUNNEL_GTPV1:
            # 3GPP TS 29.281; Zeek's gtpv1-protocol.pac and gtpv1-analyzer.pac: version 1 with
            # the PT bit, an optional 4-byte field when E, S or PN is set, extension headers
            # (4 x length bytes each, until a next type of 0), and only G-PDUs (type 255) hold
            # a packet, which must be IPv4 or IPv6 and fill the rest exactly
            if length < 8:
                return self._violation(kind, p, "Truncated GTPv1")
            outer = self._encap
            if (
                isinstance(outer, PacketFields)
                and cython.cast(PacketFields, outer).tunnel == "gtpv1"
            ):
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
            fit = _ip_fit(d, off, whole, version)
            if fit == _FIT_TOO_SMALL:
                return self._violation(kind, p, "Truncated GTPv1")
            if fit != _FIT_OK:
                return self._violation(kind, p, "GTPv1 payload length")
            name = "gtpv1"
        elif kind == K.TUNNEL_TEREDO:
            # RFC 4380 section 5.1.1; Teredo.cc TeredoEncapsulation::DoParse: an optional
            # authentication header, then an optional origin indication, then IPv6
            i = pos
            origin = auth = False
            while True:
                if end - i < 2:
                    return self._violation(kind, p, "Bad Teredo encapsulation")
                tag = K.be16(d, i)
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
            fit = _ip_fit(d, i, whole, 6)
            if fit == _FIT_TOO_LARGE:
                if not (d[i + 6] == 59 and K.be16(d, i + 4) == 0):  # a bubble may have a tail
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

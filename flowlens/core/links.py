"""Link layers: a frame's bytes down to its IP header, by tcpdump's LINKTYPE_ registry.

Ethernet (with Cisco FabricPath, 802.3 LLC/SNAP), FDDI, Linux SLL and SLL2, PPP, raw IP, BSD
and OpenBSD loopback, 802.11 (bare, and after a radiotap header); inside them 802.1Q/QinQ VLAN
tags, Cisco VN-Tag, 802.1ah PBB, MPLS (with Ethernet pseudowires) and PPPoE, as Zeek's packet
analyzers take them apart (src/packet_analysis/protocol/: ethernet/, fddi/, linux_sll/,
linux_sll2/, ppp/, null/, ieee802_11/, ieee802_11_radio/, vlan/VLAN.cc, vntag/VNTag.cc,
pbb/PBB.cc, mpls/MPLS.cc, pppoe/).

`LinkDecoder` is the bottom of `flowlens.core.decode.Decoder`'s class chain (LinkDecoder ->
TunnelDecoder -> Decoder): the counters every layer adds to and the link methods; the IP
layer (`_ipv4`, `_ipv6`) is Decoder's. Compiled, every call between these methods, in this
module or across the chain, is a cdef method call through the class's table of C function
pointers, exactly as when they were one class in one module.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import cython

from flowlens.core import constants as K  # (absolute: links.pxd cimports it under this name)

__all__ = ["LinkDecoder", "LINKTYPE_NAMES"]

# LINKTYPE_ values (https://www.tcpdump.org/linktypes.html) and the names users know them by.
LINKTYPE_NAMES = {
    K.LINKTYPE_NULL: "NULL",
    K.LINKTYPE_ETHERNET: "EN10MB",
    K.LINKTYPE_PPP: "PPP",
    K.LINKTYPE_FDDI: "FDDI",
    K.DLT_RAW_12: "RAW",
    K.DLT_RAW_14: "RAW",
    K.LINKTYPE_RAW: "RAW",
    K.LINKTYPE_IEEE802_11: "IEEE802_11",
    K.LINKTYPE_LOOP: "LOOP",
    K.LINKTYPE_LINUX_SLL: "LINUX_SLL",
    K.LINKTYPE_IEEE802_11_RADIOTAP: "IEEE802_11_RADIO",
    K.LINKTYPE_IPV4: "IPV4",
    K.LINKTYPE_IPV6: "IPV6",
    K.LINKTYPE_LINUX_SLL2: "LINUX_SLL2",
}


@cython.cclass
class LinkDecoder:
    """The link layers of `Decoder` (see the module docstring) and the counts of what it skips."""

    if TYPE_CHECKING:  # the attributes' types for mypy (links.pxd gives the C ones)
        skipped: Counter[str]
        non_ip: Counter[str]
        frame_rest: list | None
        _inner_vlan: int | None

    def __init__(self) -> None:
        #: frames skipped, by reason ("unsupported link type 105", "truncated IPv4 header", ...)
        self.skipped = Counter()
        #: non-IP frames (ARP, LLDP...) that were ignored, by kind
        self.non_ip = Counter()
        # the frame's second VLAN tag (QinQ), for its packet's `inner_vlan`
        self._inner_vlan = None
        #: the packets of the last decoded frame after the one `decode` returned (an 802.11
        #: A-MSDU carries several), in order, or None; the pipeline takes them (and sets None)
        self.frame_rest = None

    @cython.cfunc
    def _skip(self, reason: str):
        """Count a frame that cannot be decoded, by `reason`; its packet is None."""
        self.skipped[reason] += 1
        return None

    # ---------------------------------------------------------------- what Decoder provides
    @cython.cfunc
    def _ipv4(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
        vlan,
    ):
        """The IPv4 packet at d[off:n] (Decoder overrides it)."""
        raise NotImplementedError

    @cython.cfunc
    def _ipv6(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
        vlan,
    ):
        """The IPv6 packet at d[off:n] (Decoder overrides it)."""
        raise NotImplementedError

    # ---------------------------------------------------------------- link layers
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
        self.frame_rest = None
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
        if linktype == K.LINKTYPE_IEEE802_11_RADIOTAP:
            # Zeek's IEEE802_11_Radio.cc: the radiotap header says its own length (it_len,
            # little-endian, bytes 2-3) and is skipped whole; an 802.11 frame follows (its
            # fields are not read). 3 bytes or fewer, or a length reaching the frame's end,
            # is Zeek's truncated_radiotap_header.
            if n <= 3:
                return self._skip("truncated radiotap header")
            off = d[2] | (d[3] << 8)
            if off >= n:
                return self._skip("truncated radiotap header")
            return self._ieee802_11(frame, ts_ns, d, n, off)
        if linktype == K.LINKTYPE_IEEE802_11:  # 802.11 without a radio header (monitor mode)
            return self._ieee802_11(frame, ts_ns, d, n, 0)
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
    @cython.locals(length=cython.Py_ssize_t, hlen=cython.Py_ssize_t, fc=cython.uint,
                   flags=cython.uint, amsdu=cython.bint)  # fmt: skip
    def _ieee802_11(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
    ):
        """An 802.11 frame at `off` (the link type, after radiotap, or in Aruba's GRE), by the
        rules of Zeek's IEEE802_11.cc: only data frames that carry data; a 24-byte header, 6
        more for the fourth address when To DS and From DS are both set, 2 more for QoS
        Control; LLC/SNAP with a zero OUI, then IPv4/IPv6 (scripts/base/packet-protocols/
        ieee802_11/main.zeek registers 0x0800 and 0x86DD with the IP analyzer, ARP's two types
        with ARP, nothing else); an A-MSDU (QoS Control's A-MSDU Present bit) is several
        packets (`_amsdu`). Zeek reads no HT Control field (the Order bit is not looked at), so
        neither does flowlens."""
        length = n - off
        hlen = 24  # frame control, duration, three addresses, sequence control
        if length < 2:
            return self._skip("truncated 802.11 header")
        fc = d[off]  # frame control, first byte: protocol version, type (bits 2-3), subtype
        flags = d[off + 1]  # To DS 0x01, From DS 0x02, ..., Protected 0x40, Order 0x80
        if not (fc >> 2) & 0x02:  # type 0 (management) or 1 (control): Zeek returns
            return self._skip(
                "802.11 management frame" if not (fc >> 2) & 0x03 else "802.11 control frame"
            )
        # (Zeek tests the 24 bytes before the type, so a 10-byte ACK is its truncated header:
        # skipped either way; flowlens counts it under what it is)
        if hlen >= length:
            return self._skip("truncated 802.11 header")
        if (fc >> 4) & 0x04:  # subtypes without data (Null, QoS Null, CF-Ack/Poll only)
            return self._skip("802.11 data frame without data")
        if flags & 0x03 == 0x03:  # To DS and From DS: the fourth address (Packet::L2_ADDR_LEN)
            hlen += 6
            if hlen >= length:
                return self._skip("truncated 802.11 header")
        amsdu = False
        if (fc >> 4) & 0x08:  # QoS data: the QoS Control field
            if flags & 0x40:  # Protected: encrypted, Zeek goes no further
                return self._skip("802.11 protected frame")
            amsdu = (d[off + hlen] & 0x80) != 0  # A-MSDU Present: several packets follow
            hlen += 2
            if hlen >= length:
                return self._skip("truncated 802.11 header")
        off += hlen
        if not amsdu:
            return self._llc_snap(frame, ts_ns, d, n, off, flags)
        return self._amsdu(frame, ts_ns, d, n, off)

    @cython.cfunc
    @cython.locals(size=cython.Py_ssize_t, first=object, p=object)  # fmt: skip
    def _amsdu(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
    ):
        """An A-MSDU's subframes at `off` (IEEE802_11.cc): each a 14-byte header (DA, SA,
        length), that many bytes from LLC/SNAP on, then `length % 4` bytes of padding when the
        frame has them (Zeek's reckoning, which the last subframe's missing padding does not
        trip). Each is a packet of its own (the first returned, the others in `frame_rest`);
        Zeek stops at a short or undecodable subframe, keeping those before it (flowlens also
        at one that is not IP, where Zeek goes on after ARP)."""
        first = None
        rest = None
        while off < n:
            if n - off < 14:
                self._skip("truncated 802.11 A-MSDU header")
                break
            size = (d[off + 12] << 8) | d[off + 13]
            if n - off < size + 14:
                self._skip("truncated 802.11 A-MSDU subframe")
                break
            off += 14
            p = self._llc_snap(frame, ts_ns, d, off + size, off, 0)
            if p is None:  # (counted by its own reason: Zeek's invalid_802_11_amsdu_inner_packet)
                break
            if first is None:
                first = p
            elif rest is None:
                rest = [p]
            else:
                rest.append(p)
            off += size
            if n - off >= size % 4:
                off += size % 4
        self.frame_rest = rest
        return first

    @cython.cfunc
    @cython.locals(etype=cython.uint)
    def _llc_snap(
        self,
        frame: cython.longlong,
        ts_ns: cython.longlong,
        d: cython.p_uchar,
        n: cython.Py_ssize_t,
        off: cython.Py_ssize_t,
        flags: cython.uint,
    ):
        """IEEE802_11.cc HandleInnerPacket: LLC/SNAP at `off` (DSAP, SSAP 0xAA, control 0x03,
        OUI 0), then the ethertype; `flags`: the 802.11 header's second byte."""
        if n - off < 8:
            return self._skip("truncated 802.11 LLC header")
        if not (
            d[off] == 0xAA
            and d[off + 1] == 0xAA
            and d[off + 2] == 0x03
            and d[off + 3] == 0
            and d[off + 4] == 0
            and d[off + 5] == 0
        ):
            if flags & 0x40:
                # Protected without QoS: Zeek tries the LLC header, which ciphertext fails
                return self._skip("802.11 protected frame")
            self.non_ip["802.11 LLC"] += 1
            return None
        etype = (d[off + 6] << 8) | d[off + 7]
        if etype == K.ETH_TYPE_IP or etype == K.ETH_TYPE_IP6:
            # Zeek's IP analyzer takes either type and reads the header by its version (IP.cc)
            return self._ip_by_version(frame, ts_ns, d, n, off + 8, None)
        self.non_ip[f"ethertype 0x{etype:04x}"] += 1
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

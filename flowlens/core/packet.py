"""The fields of one decoded IP packet: `PacketFields`, the base class of decode's `Packet`.

Every field is declared and documented here; `flowlens.core.decode.Packet` adds the accessors
(`options` ...) and is the name everything else uses. The fields live in a module of their own so
that the decoder's lower layers (core/tunnels.py, below decode in the class chain) read them as C
fields when compiled; `Packet` itself stays in decode because Cython requires a compiled module
that cimports a type (`from flowlens.core.decode cimport Packet` in connections.pxd and the
analyzers' .pxd files) to import it in Python from the module that declares it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .decode import Packet
    from .tcpoptions import TcpOptions
    from .tunnels import IpTunnel

__all__ = ["PacketFields"]


class PacketFields:
    """The header fields and lengths of one decoded IP packet (see `flowlens.core.decode.Packet`)."""

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
        "limit_reached",  # 1: it carried a tunnel past Tunnel::max_depth, not decapsulated
        # (Zeek's HIST_ANALYZER_LIMIT_REACHED: the flow's history gets an 'X')
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
        limit_reached: int
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
        self.limit_reached = 0
        self._options = None

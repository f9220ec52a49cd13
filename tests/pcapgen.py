"""Build tiny captures with dpkt's writers: one scripted conversation per behaviour.

Tests call these builders directly; scripts/make_sample_pcaps.py writes the same scenarios into
sample_pcaps/. Addresses come from the documentation ranges (RFC 5737, RFC 3849) and every
timestamp is fixed, so the captures are byte-for-byte reproducible.

    conv = Conversation()
    conv.handshake()
    conv.client(PSH | ACK, b"GET / HTTP/1.0\\r\\n\\r\\n")
    conv.close(first="client")
    write_pcap(path, conv.frames)
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import socket
import struct
from dataclasses import dataclass, field

import dpkt
from dpkt.tcp import TH_ACK, TH_FIN, TH_PUSH, TH_RST, TH_SYN

SYN, ACK, FIN, RST, PSH = TH_SYN, TH_ACK, TH_FIN, TH_RST, TH_PUSH

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
CLIENT4, SERVER4 = "192.0.2.10", "198.51.100.20"
CLIENT6, SERVER6 = "2001:db8::10", "2001:db8::20"

_MAC_C = b"\x02\x00\x00\x00\x00\x01"
_MAC_S = b"\x02\x00\x00\x00\x00\x02"


def _addr(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def ip_packet(src: str, dst: str, transport, proto: int, ident: int = 1, ttl: int = 64):
    """An IPv4 or IPv6 packet (dpkt object) around a transport object; lengths and checksums
    are filled in by dpkt when it is serialized."""
    if ":" in src:
        ip = dpkt.ip6.IP6(src=_addr(src), dst=_addr(dst), nxt=proto, hlim=ttl, data=transport)
        ip.plen = len(bytes(transport))
        return ip
    return dpkt.ip.IP(src=_addr(src), dst=_addr(dst), p=proto, id=ident, ttl=ttl, data=transport)


def ethernet(ip, from_client: bool = True) -> bytes:
    etype = (
        dpkt.ethernet.ETH_TYPE_IP6 if isinstance(ip, dpkt.ip6.IP6) else dpkt.ethernet.ETH_TYPE_IP
    )
    src, dst = (_MAC_C, _MAC_S) if from_client else (_MAC_S, _MAC_C)
    return bytes(dpkt.ethernet.Ethernet(src=src, dst=dst, type=etype, data=ip))


def tcp_segment(src, dst, sport, dport, flags, seq, ack, data=b"", win=65535, opts=b""):
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win, data=data)
    if opts:
        seg.opts = opts
        seg.off = 5 + len(opts) // 4
    ip = ip_packet(src, dst, seg, dpkt.ip.IP_PROTO_TCP)
    return ip


@dataclass
class Conversation:
    """A scripted TCP conversation that tracks sequence numbers like a real stack would.

    Each call appends one frame (Ethernet by default) `dt` seconds after the previous one.
    """

    client: str = CLIENT4
    server: str = SERVER4
    cport: int = 40000
    sport: int = 80
    t: float = T0
    isn_c: int = 1000
    isn_s: int = 5000
    frames: list = field(default_factory=list)
    c_next: int = 0
    s_next: int = 0

    def __post_init__(self) -> None:
        self.c_next = self.isn_c
        self.s_next = self.isn_s

    def send(
        self,
        from_client: bool,
        flags: int,
        data: bytes = b"",
        dt: float = 0.001,
        seq: int | None = None,
        ack: int | None = None,
        win: int = 65535,
        opts: bytes = b"",
    ) -> None:
        self.t += dt
        if from_client:
            src, dst, sp, dp = self.client, self.server, self.cport, self.sport
            s = self.c_next if seq is None else seq
            a = self.s_next if ack is None else ack
        else:
            src, dst, sp, dp = self.server, self.client, self.sport, self.cport
            s = self.s_next if seq is None else seq
            a = self.c_next if ack is None else ack
        if not flags & ACK and ack is None:
            a = 0
        ip = tcp_segment(src, dst, sp, dp, flags, s & 0xFFFFFFFF, a & 0xFFFFFFFF, data, win, opts)
        self.frames.append((self.t, ethernet(ip, from_client)))
        used = len(data) + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
        end = (s + used) & 0xFFFFFFFF
        if from_client and seq is None:
            self.c_next = end
        elif not from_client and seq is None:
            self.s_next = end
        elif from_client:
            self.c_next = max(self.c_next, end)
        else:
            self.s_next = max(self.s_next, end)

    def c(self, flags: int, data: bytes = b"", dt: float = 0.001, **kw) -> None:
        self.send(True, flags, data, dt, **kw)

    def s(self, flags: int, data: bytes = b"", dt: float = 0.001, **kw) -> None:
        self.send(False, flags, data, dt, **kw)

    def handshake(self, synack_dt: float = 0.010, ack_dt: float = 0.0005) -> None:
        self.c(SYN, dt=0.0)
        self.s(SYN | ACK, dt=synack_dt)
        self.c(ACK, dt=ack_dt)

    def exchange(
        self,
        request: bytes = b"GET / HTTP/1.0\r\n\r\n",
        response: bytes = b"HTTP/1.0 200 OK\r\n\r\nhello",
    ) -> None:
        self.c(PSH | ACK, request)
        self.s(ACK)
        self.s(PSH | ACK, response)
        self.c(ACK)

    def close(self, first: str = "client", combined: bool = False) -> None:
        """4-way close (FIN, ACK, FIN, ACK), or 3-way when `combined` (FIN, FIN+ACK, ACK)."""
        a, b = (self.c, self.s) if first == "client" else (self.s, self.c)
        a(FIN | ACK)
        if not combined:
            b(ACK)
        b(FIN | ACK)
        a(ACK)


# ---------------------------------------------------------------- scenarios (list of frames)


def clean_close(**kw) -> list:
    """Handshake, one request/response, 4-way close started by the client."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.exchange()
    conv.close("client")
    return conv.frames


def close_3way(**kw) -> list:
    """The server answers the client's FIN with a combined FIN+ACK."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.exchange()
    conv.close("client", combined=True)
    return conv.frames


def server_close(**kw) -> list:
    conv = Conversation(**kw)
    conv.handshake()
    conv.exchange()
    conv.close("server")
    return conv.frames


def simultaneous_open(**kw) -> list:
    """Both sides send a SYN (RFC 9293 figure 8), then each SYN/ACKs the other."""
    conv = Conversation(**kw)
    conv.c(SYN, dt=0.0)
    conv.s(SYN, ack=0)
    conv.c(SYN | ACK, seq=conv.isn_c, dt=0.001)
    conv.s(SYN | ACK, seq=conv.isn_s, dt=0.0001)
    conv.c(ACK)
    conv.close("client")
    return conv.frames


def simultaneous_close(**kw) -> list:
    """Each FIN leaves before the other arrives (RFC 9293 figure 13): both end in TIME_WAIT."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.exchange()
    c_fin_ack, s_fin_ack = conv.s_next, conv.c_next
    conv.c(FIN | ACK, ack=c_fin_ack)
    conv.s(FIN | ACK, ack=s_fin_ack, dt=0.0001)
    conv.c(ACK)
    conv.s(ACK, dt=0.0001)
    return conv.frames


def half_close(**kw) -> list:
    """The client shuts down its sending side; the server keeps sending and never closes."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.c(PSH | ACK, b"upload done")
    conv.c(FIN | ACK)
    conv.s(ACK)
    for _ in range(3):
        conv.s(PSH | ACK, b"x" * 100, dt=0.05)
        conv.c(ACK)
    return conv.frames


def close_wait_leak(**kw) -> list:
    """The client closes; the server acknowledges and never closes (an application leak)."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.exchange()
    conv.c(FIN | ACK)
    conv.s(ACK)
    conv.t += 120.0  # two quiet minutes later the capture ends with one more keep-alive probe
    conv.s(ACK, dt=0.0, seq=conv.s_next - 1)
    conv.c(ACK)
    return conv.frames


def refused(**kw) -> list:
    """SYN answered by RST/ACK: nothing listens on the port."""
    conv = Conversation(**kw)
    conv.c(SYN, dt=0.0)
    conv.s(RST | ACK, seq=0, dt=0.0002)
    return conv.frames


def syn_schedule(retries: int, linear: int) -> tuple[list[float], float]:
    """When Linux sends a connect()'s SYN again (s after the first) and when it gives up, as
    net/ipv4/tcp_timer.c does it from a 1 s initial RTO (TCP_TIMEOUT_INIT): the RTO doubles
    after each retransmission once more than `linear` were sent (tcp_retransmit_timer: `tp->
    total_rto > sysctl_tcp_syn_linear_timeouts`, Linux 6.5+; 0 before), and tcp_write_timeout
    gives up at the first timer with `retries + linear` retransmissions sent, or
    ((2 << retries) - 1) s after the first SYN (retransmits_timed_out, tcp_model_timeout)."""
    t, rto, sent, out = 0.0, 1.0, 0, []
    while True:
        t += rto
        if sent >= retries + linear or t >= (2 << retries) - 1:
            return out, t
        sent += 1
        out.append(t)
        if sent > linear:
            rto *= 2


def unanswered_syn(retries=(1.0, 2.0, 4.0), **kw) -> list:
    """A SYN and its retransmissions (same ISN) with no answer: filtered or host down."""
    conv = Conversation(**kw)
    conv.c(SYN, dt=0.0)
    for gap in retries:
        conv.c(SYN, seq=conv.isn_c, dt=gap)
    return conv.frames


def rst_abort(by: str = "client", **kw) -> list:
    """An established connection ended by a RST from one side (SO_LINGER 0, a crash)."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.exchange()
    (conv.c if by == "client" else conv.s)(RST | ACK)
    return conv.frames


def lost_final_ack(retries=(0.2, 0.4, 0.8), ack_seen: bool = True, **kw) -> list:
    """The client closes first; its final ACK is lost beyond the capture point, so the server
    (LAST_ACK) retransmits its FIN after each RTO and the client (TIME_WAIT) ACKs each again."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.exchange()
    conv.c(FIN | ACK)
    conv.s(ACK)
    conv.s(FIN | ACK)
    fin_seq = conv.s_next - 1
    if ack_seen:
        conv.c(ACK)
    for gap in retries:
        conv.s(FIN | ACK, seq=fin_seq, dt=gap)
        conv.c(ACK)
    return conv.frames


def injected_rst_syn_sent(**kw) -> list:
    """A RST+ACK answers the SYN with ACK = the client's ISN (not ISN+1), so the client ignores
    it (RFC 9293 §3.10.7.3); the real SYN/ACK follows and the connection goes on."""
    conv = Conversation(**kw)
    conv.c(SYN, dt=0.0)
    conv.s(RST | ACK, seq=0, ack=conv.isn_c, dt=0.0002)
    conv.s(SYN | ACK, dt=0.010)
    conv.c(ACK)
    conv.exchange()
    conv.close("client")
    return conv.frames


def blind_rst(offset: int = 10_000_000, **kw) -> list:
    """In an established connection, a RST whose sequence number is far outside the client's
    receive window (a blind RST, RFC 5961 §3) arrives from the server's address; the client
    ignores it and the exchange goes on to a clean close."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.exchange()
    s_next = conv.s_next
    conv.s(RST, seq=conv.s_next + offset, ack=0, dt=0.001)
    conv.s_next = s_next  # (the real server's numbers go on)
    conv.exchange()
    conv.close("client")
    return conv.frames


def synack_reflection(count: int = 5, answered_every: int = 2, **kw) -> list:
    """A SYN/ACK reflection seen at the victim: reflectors answer SYNs spoofed with the
    victim's address, so SYN/ACKs arrive that no SYN of the victim asked for; the victim's
    closed ports answer every `answered_every`-th with a RST (RFC 9293 §3.10.7.1), the rest
    not at all."""
    frames = []
    t = kw.pop("t", T0)
    for i in range(count):
        conv = Conversation(
            client=CLIENT4, server=f"203.0.113.{10 + i}", cport=20000 + i, sport=80,
            t=t + i * 0.001, isn_c=7000 + i, isn_s=900000 + 1000 * i, **kw,
        )  # fmt: skip
        # the spoofed SYN's ISN + 1 is what the SYN/ACK acknowledges
        conv.s(SYN | ACK, ack=conv.isn_c + 1, dt=0.0)
        if answered_every and i % answered_every == 0:
            conv.c(RST, seq=conv.isn_c + 1, ack=0, dt=0.0001)
        frames.extend(conv.frames)
    frames.sort(key=lambda f: f[0])
    return frames


def synack_missing(**kw) -> list:
    """The SYN/ACK never reached the capture point (asymmetric routing): SYN, then the
    client's ACK of the server's ISN + 1, a request and a response, and a clean close."""
    conv = Conversation(**kw)
    conv.c(SYN, dt=0.0)
    conv.s_next = conv.isn_s + 1  # the SYN/ACK the capture did not see
    conv.t += 0.010
    conv.c(ACK)
    conv.exchange()
    conv.close("client")
    return conv.frames


def port_reuse(gap: float = 2.0, **kw) -> list:
    """Two connections on the same 5-tuple: the second SYN (new ISN) arrives `gap` seconds after
    the first closed, while the client's TIME_WAIT (60 s) would still hold the port."""
    first = Conversation(**kw)
    first.handshake()
    first.exchange()
    first.close("client")
    second = Conversation(t=first.t + gap, isn_c=first.isn_c + 1_000_000, isn_s=90000, **kw)
    second.handshake()
    second.exchange()
    second.close("client")
    return first.frames + second.frames


def midstream(**kw) -> list:
    """The capture starts inside an established connection: data, acks, then a close."""
    conv = Conversation(**kw)
    conv.s(PSH | ACK, b"y" * 500, dt=0.0)
    conv.c(ACK)
    conv.s(PSH | ACK, b"y" * 500)
    conv.c(ACK)
    conv.close("client")
    return conv.frames


def retransmission(**kw) -> list:
    """A data segment sent twice (the first copy lost after the capture point)."""
    conv = Conversation(**kw)
    conv.handshake()
    seq = conv.c_next
    conv.c(PSH | ACK, b"a" * 100)
    conv.c(PSH | ACK, b"a" * 100, seq=seq, dt=0.2)
    conv.s(ACK)
    conv.close("client")
    return conv.frames


def time_wait_pileup(count: int = 20, interval: float = 0.01, **kw) -> list:
    """`count` short connections from consecutive client ports, each closed by the client."""
    frames = []
    t = kw.pop("t", T0)
    for i in range(count):
        conv = Conversation(cport=40000 + i, t=t + i * interval, isn_c=1000 + i * 7919, **kw)
        conv.handshake()
        conv.exchange()
        conv.close("client")
        frames.extend(conv.frames)
    frames.sort(key=lambda f: f[0])
    return frames


def udp_exchange(src=CLIENT4, dst=SERVER4, sport=53000, dport=53, t=T0) -> list:
    """A DNS-like query and its answer."""
    q = dpkt.udp.UDP(sport=sport, dport=dport, data=b"\x12\x34\x01\x00" + b"\x00" * 8)
    r = dpkt.udp.UDP(sport=dport, dport=sport, data=b"\x12\x34\x81\x80" + b"\x00" * 20)
    return [
        (t, ethernet(ip_packet(src, dst, q, dpkt.ip.IP_PROTO_UDP), True)),
        (t + 0.004, ethernet(ip_packet(dst, src, r, dpkt.ip.IP_PROTO_UDP), False)),
    ]


def udp_port_unreachable(src=CLIENT4, dst=SERVER4, sport=54000, dport=9999, t=T0) -> list:
    """A UDP datagram to a closed port and the ICMP port unreachable quoting it."""
    u = dpkt.udp.UDP(sport=sport, dport=dport, data=b"ping")
    ip = ip_packet(src, dst, u, dpkt.ip.IP_PROTO_UDP)
    quoted = bytes(ip)[:28]
    icmp = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=quoted))
    back = ip_packet(dst, src, icmp, dpkt.ip.IP_PROTO_ICMP)
    return [(t, ethernet(ip, True)), (t + 0.0003, ethernet(back, False))]


def icmp_echo(src=CLIENT4, dst=SERVER4, t=T0, count: int = 2) -> list:
    frames = []
    for i in range(count):
        req = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=7, seq=i, data=b"x" * 16))
        rep = dpkt.icmp.ICMP(type=0, code=0, data=dpkt.icmp.ICMP.Echo(id=7, seq=i, data=b"x" * 16))
        frames.append((t + i, ethernet(ip_packet(src, dst, req, dpkt.ip.IP_PROTO_ICMP), True)))
        frames.append(
            (t + i + 0.002, ethernet(ip_packet(dst, src, rep, dpkt.ip.IP_PROTO_ICMP), False))
        )
    return frames


SCENARIOS = {
    "clean-close": clean_close,
    "close-3way": close_3way,
    "server-close": server_close,
    "simultaneous-open": simultaneous_open,
    "simultaneous-close": simultaneous_close,
    "half-close": half_close,
    "close-wait": close_wait_leak,
    "refused": refused,
    "unanswered-syn": unanswered_syn,
    "rst-abort-client": lambda **kw: rst_abort("client", **kw),
    "rst-abort-server": lambda **kw: rst_abort("server", **kw),
    "port-reuse": port_reuse,
    "midstream": midstream,
    "retransmission": retransmission,
    "time-wait-pileup": time_wait_pileup,
    "udp-dns": lambda **kw: udp_exchange(),
    "udp-unreachable": lambda **kw: udp_port_unreachable(),
    "icmp-echo": lambda **kw: icmp_echo(),
}


# ---------------------------------------------------------------- link layers


def strip_ethernet(frame: bytes) -> tuple[int, bytes]:
    """(ethertype, IP bytes) of an Ethernet frame built above."""
    return struct.unpack("!H", frame[12:14])[0], frame[14:]


def relink(frames: list, linktype: int) -> list:
    """Re-wrap Ethernet frames in another link layer (VLAN/QinQ stay Ethernet, linktype 1)."""
    out = []
    for ts, frame in frames:
        etype, ip = strip_ethernet(frame)
        if linktype == dpkt.pcap.DLT_EN10MB:
            out.append((ts, frame))
        elif linktype in (101, 12, 14, 228, 229):
            out.append((ts, ip))
        elif linktype == dpkt.pcap.DLT_NULL:
            family = 2 if etype == 0x0800 else 30
            out.append((ts, struct.pack("<I", family) + ip))
        elif linktype == 108:  # LOOP: network byte order
            family = 2 if etype == 0x0800 else 30
            out.append((ts, struct.pack("!I", family) + ip))
        elif linktype == 113:  # Linux SLL: type, arphrd, addr len, addr(8), protocol
            out.append((ts, struct.pack("!HHH8sH", 0, 1, 6, frame[6:12] + b"\0\0", etype) + ip))
        elif linktype == 276:  # Linux SLL2: protocol, reserved, ifindex, arphrd, type, len, addr
            out.append(
                (ts, struct.pack("!HHIHBB8s", etype, 0, 2, 1, 0, 6, frame[6:12] + b"\0\0") + ip)
            )
        else:
            raise ValueError(f"no builder for link type {linktype}")
    return out


def vlan(frames: list, vids=(100,)) -> list:
    """Insert 802.1Q tags (two for QinQ: outer 0x88a8, inner 0x8100)."""
    out = []
    for ts, frame in frames:
        tags = b""
        for i, vid in enumerate(vids):
            tpid = 0x88A8 if (len(vids) > 1 and i == 0) else 0x8100
            tags += struct.pack("!HH", tpid, vid)
        out.append((ts, frame[:12] + tags + frame[12:]))
    return out


# ---------------------------------------------------------------- containers


def pcap_bytes(
    frames: list,
    linktype: int = 1,
    nano: bool = False,
    big_endian: bool = False,
    snaplen: int = 262144,
) -> bytes:
    """A classic pcap file, written by dpkt's Writer."""
    import io

    buf = io.BytesIO()
    writer = dpkt.pcap.Writer(buf, snaplen=snaplen, linktype=linktype, nano=nano)
    for ts, frame in frames:
        writer.writepkt(frame, ts=ts)
    data = buf.getvalue()
    if big_endian:
        data = _swap_pcap(data)
    return data


def _swap_pcap(data: bytes) -> bytes:
    """Rewrite a little-endian pcap as big-endian (dpkt writes host order)."""
    out = bytearray()
    magic, vmaj, vmin, zone, sig, snap, lt = struct.unpack_from("<IHHiIII", data, 0)
    out += struct.pack(">IHHiIII", magic, vmaj, vmin, zone, sig, snap, lt)
    pos = 24
    while pos < len(data):
        sec, frac, cap, wire = struct.unpack_from("<IIII", data, pos)
        out += struct.pack(">IIII", sec, frac, cap, wire)
        out += data[pos + 16 : pos + 16 + cap]
        pos += 16 + cap
    return bytes(out)


def pcapng_bytes(parts: list[tuple[int, list]], tsresol: int | None = None) -> bytes:
    """A pcapng file with one interface per (linktype, frames) part, packets merged by time.

    dpkt's pcapng Writer handles one interface; the extra IDBs are written with its block
    classes so the file can mix link types the way `tcpdump -i any`+dumpcap files do.
    """
    import io

    buf = io.BytesIO()
    shb = dpkt.pcapng.SectionHeaderBlockLE()
    buf.write(bytes(shb))
    for linktype, _frames in parts:
        idb = dpkt.pcapng.InterfaceDescriptionBlockLE(linktype=linktype, snaplen=262144)
        if tsresol is not None:
            idb.opts = [
                dpkt.pcapng.PcapngOptionLE(
                    code=dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL, data=bytes([tsresol])
                ),
                dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_ENDOFOPT),
            ]
        buf.write(bytes(idb))
    merged = sorted(
        ((ts, iface, frame) for iface, (_lt, frames) in enumerate(parts) for ts, frame in frames),
        key=lambda x: x[0],
    )
    scale = 10 ** (tsresol if tsresol is not None else 6)
    for ts, iface, frame in merged:
        ticks = round(ts * scale)
        epb = dpkt.pcapng.EnhancedPacketBlockLE(
            iface_id=iface, ts_high=ticks >> 32, ts_low=ticks & 0xFFFFFFFF,
            caplen=len(frame), pkt_len=len(frame), pkt_data=frame,
        )  # fmt: skip
        buf.write(bytes(epb))
    return buf.getvalue()


def compress(data: bytes, kind: str) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, mtime=0)
    if kind == "bzip2":
        return bz2.compress(data)
    if kind == "xz":
        return lzma.compress(data)
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    raise ValueError(kind)


def write_pcap(path, frames: list, **kw) -> str:
    with open(path, "wb") as f:
        f.write(pcap_bytes(frames, **kw))
    return str(path)


# ---------------------------------------------------------------- the showcase capture


def incident(**_kw) -> list:
    """A two-minute story for the README: an app server (192.0.2.10) opens a new connection to
    its API backend (198.51.100.20:8080) for every request (4 a second) and closes first, piling
    up about 240 ports in TIME_WAIT; its database (198.51.100.30:5432) refuses connections; a cache
    (198.51.100.40:6379) never answers; a CLOSE_WAIT leaks on the backend; one request is
    retransmitted; a DNS lookup and a ping complete normally."""
    frames = []
    api = dict(client=CLIENT4, server=SERVER4, sport=8080)
    for i in range(480):  # four requests a second, each on a fresh ephemeral port
        conv = Conversation(
            cport=33000 + i,
            t=T0 + i * 0.25,
            isn_c=10_000 + i * 104_729,
            isn_s=70_000 + i * 7_919,
            **api,
        )
        conv.handshake(synack_dt=0.0021 + (i % 7) * 0.0001)
        conv.exchange(
            b"GET /v1/items HTTP/1.1\r\nHost: api\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
        )
        conv.close("client")
        frames += conv.frames
    for i in range(3):  # the database is down: RST for every attempt
        frames += refused(
            client=CLIENT4, server="198.51.100.30", cport=41000 + i, sport=5432, t=T0 + 30 + i * 10
        )
    frames += unanswered_syn(
        client=CLIENT4,
        server="198.51.100.40",
        cport=42000,
        sport=6379,
        t=T0 + 45,
        retries=(1.0, 2.0, 4.0, 8.0),
    )
    frames += close_wait_leak(client=CLIENT4, server=SERVER4, cport=43000, sport=9000, t=T0 + 5)
    frames += retransmission(client=CLIENT4, server=SERVER4, cport=44000, sport=8080, t=T0 + 60.5)
    frames += udp_exchange(t=T0 + 0.2)
    frames += icmp_echo(t=T0 + 90)
    frames.sort(key=lambda f: f[0])
    return frames


SCENARIOS["incident"] = incident


# ---------------------------------------------------------------- lifecycle views (ladder, states)


def bulk_download(segments: int = 200, mss: int = 536, **kw) -> list:
    """A download long enough for the ladder to collapse: request, `segments` full segments from
    the server (the client ACKs every second one), one segment retransmitted after a 200 ms
    stall, the client's receive window closing to zero for 50 ms, then a client-first close."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.c(PSH | ACK, b"GET /big HTTP/1.1\r\n\r\n")
    conv.s(ACK)
    chunk = b"z" * mss
    for i in range(segments):
        if i == segments // 2:
            seq = conv.s_next
            conv.s(ACK, chunk, dt=0.0001)
            conv.s(ACK, chunk, seq=seq, dt=0.2)  # the first copy was lost past the capture point
        else:
            conv.s(ACK, chunk, dt=0.0001)
        if i % 2:
            conv.c(ACK, dt=0.00005)
        if i == segments * 3 // 4:
            conv.c(ACK, win=0)  # the application stopped reading
            conv.c(ACK, dt=0.05)  # ... and drained its buffer
    conv.c(ACK)
    conv.close("client")
    return conv.frames


SCENARIOS["bulk-download"] = bulk_download


# ---------------------------------------------------------------- round-trip times (flowlens rtt)


def ts_option(tsval: int, tsecr: int) -> bytes:
    """NOP, NOP, Timestamps (RFC 7323): the layout Linux puts on every segment after the SYN."""
    return b"\x01\x01\x08\x0a" + struct.pack("!II", tsval, tsecr)


def rtt_exchange(**kw) -> list:
    """Known round trips at the capture point: handshake legs 10 ms (to the server) and 0.5 ms
    (to the client); a request ACKed 20 ms later; two response segments ACKed together 3 ms after
    the second; a request answered (data + ACK) 30 ms later and that answer ACKed after 4 ms."""
    conv = Conversation(**kw)
    conv.handshake(synack_dt=0.010, ack_dt=0.0005)
    conv.c(PSH | ACK, b"a" * 100)
    conv.s(ACK, dt=0.020)
    conv.s(PSH | ACK, b"b" * 1000)
    conv.s(PSH | ACK, b"c" * 500, dt=0.002)
    conv.c(ACK, dt=0.003)
    conv.c(PSH | ACK, b"d" * 10, dt=0.1)
    conv.s(PSH | ACK, b"e" * 10, dt=0.030)
    conv.c(ACK, dt=0.004)
    conv.close("client")
    return conv.frames


def rtt_retransmission_ts(**kw) -> list:
    """Timestamps on every segment; a request's first copy is lost past the capture point and
    sent again 200 ms later with a new TSval, which the server's ACK (15 ms after the second
    copy) echoes; then a response ACKed after 2 ms."""
    conv = Conversation(**kw)
    conv.c(SYN, dt=0.0, opts=ts_option(100, 0))
    conv.s(SYN | ACK, dt=0.010, opts=ts_option(5000, 100))
    conv.c(ACK, dt=0.0005, opts=ts_option(101, 5000))
    seq = conv.c_next
    conv.c(PSH | ACK, b"q" * 50, opts=ts_option(102, 5000))
    conv.c(PSH | ACK, b"q" * 50, seq=seq, dt=0.2, opts=ts_option(302, 5000))
    conv.s(ACK, dt=0.015, opts=ts_option(5215, 302))
    conv.s(PSH | ACK, b"r" * 20, opts=ts_option(5216, 302))
    conv.c(ACK, dt=0.002, opts=ts_option(305, 5216))
    return conv.frames


def _udp_frame(t: float, src, dst, sport, dport, payload: bytes, from_client: bool):
    u = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    return (t, ethernet(ip_packet(src, dst, u, dpkt.ip.IP_PROTO_UDP), from_client))


def rtt_dns(src=CLIENT4, dst=SERVER4, sport=53001, t=T0) -> list:
    """One resolver flow: queries 0x1111 and 0x2222 in flight together, answered out of order
    (0x2222 after 3 ms, 0x1111 after 8 ms); query 0x3333 sent again 1 s later with the same id
    and answered 2 ms after the second copy (Karn: no sample)."""

    def q(qid: int) -> bytes:
        return struct.pack("!HH", qid, 0x0100) + b"\x00\x01\x00\x00\x00\x00\x00\x00"

    def r(qid: int) -> bytes:
        return struct.pack("!HH", qid, 0x8180) + b"\x00\x01\x00\x01\x00\x00\x00\x00" + b"\x00" * 16

    out, c, s = [], (src, dst, sport, 53), (dst, src, 53, sport)
    for dt, ends, payload, fc in (
        (0.000, c, q(0x1111), True), (0.001, c, q(0x2222), True), (0.004, s, r(0x2222), False),
        (0.008, s, r(0x1111), False), (0.010, c, q(0x3333), True), (1.010, c, q(0x3333), True),
        (1.012, s, r(0x3333), False),
    ):  # fmt: skip
        out.append(_udp_frame(t + dt, *ends, payload, fc))
    return out


def rtt_udp_request_reply(src=CLIENT4, dst=SERVER4, sport=41000, dport=7000, t=T0) -> list:
    """A request/reply protocol on a port with no known service: replies 5 ms and 7 ms after
    their requests, then two requests in a row and one reply (ambiguous: no sample)."""
    c, s = (src, dst, sport, dport), (dst, src, dport, sport)
    out = []
    for dt, ends, fc in ((0.0, c, True), (0.005, s, False), (0.1, c, True), (0.107, s, False),
                         (0.2, c, True), (0.3, c, True), (0.302, s, False)):  # fmt: skip
        out.append(_udp_frame(t + dt, *ends, b"ping" if fc else b"pong", fc))
    return out


# ---------------------------------------------------------------- anomalies and TCP analysis

SCANNER4 = "203.0.113.66"  # RFC 5737 TEST-NET-3


def wscale_option(shift: int) -> bytes:
    """NOP, window scale (RFC 7323 §2.2)."""
    return bytes([1, 3, 3, shift])


def exhausted_ports(ports: int = 10, count: int = 30, interval: float = 0.05, **kw) -> list:
    """A client held to `ports` source ports (40000 ...) opens `count` short connections to one
    server port, one after the other, each closed by the client (its side goes to TIME_WAIT).
    From the (ports + 1)-th on, every SYN reuses a port whose connection is still in TIME_WAIT,
    with a higher ISN, as Linux does with tcp_tw_reuse once its range is used up."""
    frames = []
    t = kw.pop("t", T0)
    for i in range(count):
        conv = Conversation(cport=40000 + i % ports, t=t + i * interval, isn_c=1000 + i * 7_000_000,
                            isn_s=500_000 + i * 3_000_000, **kw)  # fmt: skip
        conv.handshake()
        conv.exchange()
        conv.close("client")
        frames.extend(conv.frames)
    frames.sort(key=lambda f: f[0])
    return frames


def syn_flood(count: int = 300, duration: float = 0.5, answered_every: int = 2, **kw) -> list:
    """`count` SYNs from as many sources (198.18.0.0/15, RFC 2544) to the server's port 80 in
    `duration` seconds; the server answers every `answered_every`-th with SYN/ACK and no final
    ACK ever comes (half-open connections)."""
    t = kw.pop("t", T0)
    frames = []
    for i in range(count):
        src = f"198.18.{i // 250}.{i % 250 + 1}"
        conv = Conversation(
            client=src, cport=1024 + i, t=t + i * duration / count, isn_c=i * 977, **kw
        )
        conv.c(SYN, dt=0.0)
        if answered_every and i % answered_every == 0:
            conv.s(SYN | ACK, dt=0.0002)
        frames.extend(conv.frames)
    frames.sort(key=lambda f: f[0])
    return frames


def port_scan(
    kind: str = "SYN", ports=range(20, 45), open_ports=(22, 25, 80), filtered=(23, 30, 31), **kw
) -> list:
    """A scanner (203.0.113.66, source port 45000) probing `ports` of the server, nmap style.

    kind "SYN": SYN; an open port answers SYN/ACK and the scanner resets; a closed one answers
    RST/ACK; a filtered one nothing. "XMAS": FIN|PSH|URG; closed ports answer RST/ACK, open and
    filtered ones nothing. "connect": the handshake completes, then the scanner resets.
    """
    t = kw.pop("t", T0)
    frames = []
    for i, port in enumerate(ports):
        conv = Conversation(
            client=SCANNER4, cport=45000, sport=port, t=t + i * 0.002, isn_c=77_000 + i, **kw
        )
        if kind == "XMAS":
            conv.c(FIN | PSH | 0x20, dt=0.0, ack=0)
            if port not in open_ports and port not in filtered:
                conv.s(RST | ACK, seq=0, dt=0.0002)
        else:
            conv.c(SYN, dt=0.0)
            if port in open_ports:
                conv.s(SYN | ACK, dt=0.0002)
                if kind == "connect":
                    conv.c(ACK, dt=0.0001)
                    conv.c(RST | ACK, dt=0.0001)
                else:
                    conv.c(RST, dt=0.0001, ack=0)
            elif port not in filtered:
                conv.s(RST | ACK, seq=0, dt=0.0002)
        frames.extend(conv.frames)
    frames.sort(key=lambda f: f[0])
    return frames


def udp_scan(hosts: int = 12, port: int = 161, silent=(3, 7), t=T0) -> list:
    """A horizontal UDP scan: one empty datagram from the scanner to `port` on `hosts` hosts
    (198.51.100.1 ...); each answers ICMP port unreachable, except the `silent` ones."""
    frames = []
    for i in range(hosts):
        dst = f"198.51.100.{i + 1}"
        u = dpkt.udp.UDP(sport=50000, dport=port, data=b"")
        ip = ip_packet(SCANNER4, dst, u, dpkt.ip.IP_PROTO_UDP)
        frames.append((t + i * 0.01, ethernet(ip, True)))
        if i not in silent:
            icmp = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=bytes(ip)[:28]))
            frames.append(
                (
                    t + i * 0.01 + 0.0005,
                    ethernet(ip_packet(dst, SCANNER4, icmp, dpkt.ip.IP_PROTO_ICMP), False),
                )
            )
    return frames


def lossy_download(segments: int = 30, mss: int = 1000, **kw) -> list:
    """A download captured at the client: server segment 10 is lost before the capture point
    (the next one shows a gap), the client sends three duplicate ACKs, the server fast-
    retransmits it 2 ms later; segment 20 is retransmitted twice by timeout (300 ms, 600 ms),
    and a copy of segment 5 arrives after the client had ACKed it (spurious)."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.c(PSH | ACK, b"GET /file HTTP/1.1\r\n\r\n")
    chunk = b"d" * mss
    lost_seq = None
    spurious = None
    for i in range(segments):
        seq = conv.s_next
        if i == 5:
            spurious = seq
        if i == 10:
            lost_seq = seq
            conv.s_next += mss  # never captured
            continue
        conv.s(ACK, chunk, dt=0.0005)
        if lost_seq is not None and 10 < i <= 13:
            conv.c(ACK, ack=lost_seq, dt=0.0001)  # duplicate ACKs for the hole
            if i == 13:
                conv.s(ACK, chunk, seq=lost_seq, dt=0.002)  # fast retransmission
                conv.c(ACK, dt=0.0001)
        elif i == 20:
            conv.s(ACK, chunk, seq=seq, dt=0.3)  # timeout
            conv.s(ACK, chunk, seq=seq, dt=0.6)
            conv.c(ACK, dt=0.0001)
        elif i % 2:
            conv.c(ACK, dt=0.0001)
        if i == 25:
            conv.s(ACK, chunk, seq=spurious, dt=0.001)
    conv.c(ACK)
    conv.close("client")
    return conv.frames


def zero_window_stall(**kw) -> list:
    """The client stops reading: its window falls to 1000 bytes, the server fills it (window
    full), the client advertises a zero window; the server probes with one byte every 0.5 s and
    the client answers each with a zero window; 2.1 s later it reopens the window."""
    conv = Conversation(**kw)
    conv.c(SYN, dt=0.0, opts=wscale_option(0))
    conv.s(SYN | ACK, dt=0.010, opts=wscale_option(0))
    conv.c(ACK, dt=0.0005, win=1000)
    conv.c(PSH | ACK, b"GET /stream HTTP/1.1\r\n\r\n", win=1000)
    conv.s(ACK, b"s" * 1000)  # exactly the client's window: window full
    conv.c(ACK, win=0)  # zero window
    for _ in range(4):
        conv.s(ACK, b"p", dt=0.5)  # zero-window probe (one byte at the next sequence number)
        conv.s_next -= 1  # the probe's byte is not taken
        conv.c(ACK, win=0, dt=0.0002)  # zero-window probe ACK
    conv.c(ACK, win=65535, dt=0.1)  # window update: the application read again
    conv.s(PSH | ACK, b"s" * 500)
    conv.c(ACK)
    conv.close("client")
    return conv.frames


def linux_zero_window_probe(probes: int = 3, garbage: bool = False, **kw) -> list:
    """The client stops reading and advertises a zero window; the server, with data queued,
    probes the way Linux's persist timer does (tcp_xmit_probe_skb: SEQ = SND.UNA - 1, no data),
    backing off 0.2, 0.4, 0.8 s, and the client answers each with the same zero window; then it
    reads and reopens the window, and the server sends the rest. Every byte sent was
    acknowledged before the probes, so each probe looks exactly like a keep-alive. `garbage`:
    each probe carries the already acknowledged last byte again (a BSD-style keep-alive's one
    garbage octet, RFC 9293 §3.8.4), the other form of the same segment."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.c(PSH | ACK, b"GET /big HTTP/1.1\r\n\r\n")
    conv.s(ACK, b"s" * 1000)
    conv.c(ACK, win=0)  # zero window: everything acknowledged, the buffer is full
    for i in range(probes):
        conv.s(ACK, b"s" if garbage else b"", seq=conv.s_next - 1, dt=0.2 * 2**i)  # the probe
        conv.c(ACK, win=0, dt=0.0003)  # still zero
    conv.c(ACK, win=65535, dt=0.05)  # window update: the application read
    conv.s(PSH | ACK, b"s" * 500)
    conv.c(ACK)
    conv.close("client")
    return conv.frames


def keep_alive_idle(probes: int = 3, interval: float = 15.0, **kw) -> list:
    """After one exchange the connection idles; the client sends a TCP keep-alive (no data,
    sequence number one below the next) every `interval` seconds and the server answers each."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.exchange()
    for _ in range(probes):
        conv.c(ACK, seq=conv.c_next - 1, dt=interval)
        conv.s(ACK, dt=0.0003)
    conv.close("client")
    return conv.frames


def one_byte_retransmission(**kw) -> list:
    """A one-byte request the server does not acknowledge; the client's retransmission timer
    sends the byte again 206 ms later (seq = SND.NXT-1, like a keep-alive) and the server ACKs
    it 10 ms after that copy. RFC 9293 §3.8.4: a retransmission, not a keep-alive (Wireshark
    says keep-alive); RFC 6298 §3 (Karn): that ACK gives no RTT sample."""
    conv = Conversation(**kw)
    conv.handshake()
    seq = conv.c_next
    conv.c(PSH | ACK, b"x")
    conv.c(PSH | ACK, b"x", seq=seq, dt=0.206)
    conv.s(ACK, dt=0.010)
    conv.s(PSH | ACK, b"ok")
    conv.c(ACK)
    conv.close("client")
    return conv.frames


def lost_upstream_ts(segments: int = 10, lost=(3, 6), later_ts: bool = True, **kw) -> list:
    """A download with TCP timestamps on every segment: the server's segments `lost` (0-based)
    are lost before the capture point, and each is sent again 1 ms after the next segment, so
    Wireshark's timing rule (within 3 ms of the highest segment) calls it out-of-order. With
    `later_ts` the copy carries a TSval later than the segment after the hole (RFC 7323 §3: it
    was sent after it: a retransmission); without, the same TSval as its first place in the
    stream (reordered on the path)."""
    conv = Conversation(**kw)
    conv.c(SYN, dt=0.0, opts=ts_option(100, 0))
    conv.s(SYN | ACK, dt=0.010, opts=ts_option(5000, 100))
    conv.c(ACK, dt=0.0005, opts=ts_option(101, 5000))
    conv.c(PSH | ACK, b"GET /file HTTP/1.1\r\n\r\n", opts=ts_option(102, 5000))
    tsval = 5010
    held = None
    for i in range(segments):
        tsval += 1
        if i in lost:
            held = (conv.s_next, tsval)
            conv.s_next += 1000
            continue
        conv.s(ACK, b"d" * 1000, opts=ts_option(tsval, 102))
        if held is not None:
            seq, first_ts = held
            again = tsval + 1 if later_ts else first_ts
            conv.s(ACK, b"d" * 1000, seq=seq, opts=ts_option(again, 102))
            held = None
    conv.c(ACK, opts=ts_option(103, tsval))
    return conv.frames


def linux_ports_run_out(low: int = 40000, ports: int = 16, interval: float = 0.01, **kw) -> list:
    """A Linux client whose ip_local_port_range is `ports` ports from `low` opens one short
    client-closed connection after another until connect() fails with EADDRNOTAVAIL: ports are
    taken as net/ipv4/inet_hashtables.c __inet_hash_connect takes them, every port of the low
    parity first (hashed offset, step 2), then the other parity; no SYN after the last."""
    order = list(range(low, low + ports, 2))[3:] + list(range(low, low + ports, 2))[:3]
    order += list(range(low + 1, low + ports, 2))[::-1]
    frames = []
    t = kw.pop("t", T0)
    for i, port in enumerate(order):
        conv = Conversation(cport=port, t=t + i * interval, isn_c=1000 + i * 7_000_000, **kw)
        conv.handshake()
        conv.exchange()
        conv.close("client")
        frames.extend(conv.frames)
    frames.sort(key=lambda f: f[0])
    return frames


def rst_after_fin(**kw) -> list:
    """A request and its answer, the client's FIN ACKed, the server's FIN answered by a bare
    RST (no ACK bit) from the client: no data was in flight either way, only the server's FIN
    was unacknowledged (a FIN is no data, RFC 9293 §3.4)."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.exchange()
    conv.c(FIN | ACK)
    conv.s(ACK)
    conv.s(FIN | ACK)
    conv.c(RST, dt=0.0002)
    return conv.frames


def rst_abort_in_flight(**kw) -> list:
    """The server sends two data segments the client never acknowledges; the client resets
    the connection: 2,000 bytes were in flight."""
    conv = Conversation(**kw)
    conv.handshake()
    conv.c(PSH | ACK, b"GET /big HTTP/1.1\r\n\r\n")
    conv.s(ACK, b"x" * 1000)
    conv.s(ACK, b"x" * 1000)
    conv.c(RST | ACK, ack=conv.isn_s + 1, dt=0.0002)
    return conv.frames


def reordered(**kw) -> list:
    """Two client segments swapped on the way: the second arrives first (previous segment not
    captured), the first 1 ms later (out-of-order); the server then ACKs data it never sent
    (ACKed unseen) and updates its window."""
    conv = Conversation(**kw)
    conv.handshake()
    first = conv.c_next
    conv.c_next += 100
    conv.c(PSH | ACK, b"b" * 100)
    conv.c(PSH | ACK, b"a" * 100, seq=first)
    conv.s(ACK)
    conv.s(ACK, ack=conv.c_next, win=32000)  # window update
    conv.s(ACK, ack=conv.c_next + 50, win=32000, dt=0.002)  # ACKs 50 bytes never captured
    conv.close("client")
    return conv.frames


SCENARIOS.update({
    "exhausted-ports": exhausted_ports,
    "syn-flood": syn_flood,
    "syn-scan": lambda **kw: port_scan("SYN", **kw),
    "xmas-scan": lambda **kw: port_scan("XMAS", **kw),
    "udp-scan": lambda **kw: udp_scan(),
    "lossy-download": lossy_download,
    "zero-window": zero_window_stall,
    "keep-alive": keep_alive_idle,
    "one-byte-retransmission": one_byte_retransmission,
    "lost-upstream-ts": lost_upstream_ts,
    "linux-ports-run-out": linux_ports_run_out,
    "rst-after-fin": rst_after_fin,
    "rst-abort-in-flight": rst_abort_in_flight,
    "reordered": reordered,
})  # fmt: skip


def random_conversation(seed: int) -> list:
    """A random TCP conversation for differential tests against tshark's TCP analysis: data
    both ways with segments missing from the capture, duplicated, retransmitted, reordered;
    duplicate ACKs, ACKs of unseen data, zero and changing windows, keep-alives, zero-window
    probes, FINs, window scaling or not, and gaps of 0 to 1 s around the 3 ms and 20 ms
    thresholds of the rules. Same seed, same frames."""
    import random

    rng = random.Random(seed)
    c = Conversation(
        cport=rng.randint(30000, 60000),
        isn_c=rng.randint(0, 2**32 - 1),
        isn_s=rng.randint(0, 2**32 - 1),
    )
    frames = []
    t = T0

    def emit(from_c, flags, seq, ack, data=b"", win=65535, opts=b""):
        nonlocal t
        t += rng.choice([0.0, 0.00001, 0.0005, 0.002, 0.004, 0.015, 0.025, 0.2, 1.0])
        src, dst, sp, dp = (
            (c.client, c.server, c.cport, c.sport)
            if from_c
            else (c.server, c.client, c.sport, c.cport)
        )
        ip = tcp_segment(
            src,
            dst,
            sp,
            dp,
            flags,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF if flags & ACK else 0,
            data,
            win,
            opts,
        )
        frames.append((t, ethernet(ip, from_c)))

    cs, ss = c.isn_c, c.isn_s
    ws_c, ws_s = rng.choice([None, 0, 2, 7]), rng.choice([None, 0, 2, 7])
    if rng.random() < 0.8:
        syn_opts = bytes([3, 3, ws_c, 1]) if ws_c is not None else b""
        emit(True, SYN, cs, 0, opts=syn_opts)
        if rng.random() < 0.2:
            emit(True, SYN, cs, 0, opts=syn_opts)
        emit(False, SYN | ACK, ss, cs + 1, win=rng.choice([100, 5000, 65535]),
             opts=bytes([3, 3, ws_s, 1]) if ws_s is not None else b"")  # fmt: skip
        cs += 1
        ss += 1
        emit(True, ACK, cs, ss)
    sent = {True: [], False: []}
    nxt = {True: cs, False: ss}
    acked = {True: ss, False: cs}
    win = {True: 65535, False: 65535}
    for _ in range(rng.randint(5, 60)):
        side = rng.random() < 0.5
        r = rng.random()
        if r < 0.45:  # new data, sometimes not captured, sometimes twice
            n = rng.choice([1, 10, 100, 1448])
            seg = (nxt[side], n)
            nxt[side] += n
            sent[side].append(seg)
            if rng.random() < 0.1:
                continue
            emit(side, ACK | PSH, seg[0], acked[side], b"d" * n, win=win[side])
            if rng.random() < 0.1:
                emit(side, ACK | PSH, seg[0], acked[side], b"d" * n, win=win[side])
        elif r < 0.6 and sent[side]:  # a retransmission of a recent segment
            seq, n = rng.choice(sent[side][-5:])
            emit(side, ACK | PSH, seq, acked[side], b"d" * n, win=win[side])
        elif r < 0.8:  # an ACK, maybe partial, maybe of unseen data, maybe repeated
            peer = not side
            if sent[peer]:
                seq, n = rng.choice(sent[peer][-3:])
                acked[side] = max(acked[side], seq + rng.choice([0, n, n // 2]))
            if rng.random() < 0.1:
                acked[side] += rng.choice([1, 1000])
            win[side] = rng.choice([win[side]] * 4 + [0, 100, 30000])
            emit(side, ACK, nxt[side], acked[side], win=win[side])
            if rng.random() < 0.3:
                for _ in range(rng.randint(1, 4)):
                    emit(side, ACK, nxt[side], acked[side], win=win[side])
        elif r < 0.88:  # a keep-alive or a zero-window probe
            if rng.random() < 0.5:
                emit(side, ACK, nxt[side] - 1, acked[side], rng.choice([b"", b"k"]), win=win[side])
            else:
                emit(side, ACK, nxt[side], acked[side], b"p", win=win[side])
                nxt[side] += rng.choice([0, 1])
        elif r < 0.93:  # a window change
            win[side] = rng.choice([1000, 65535, 0, 20000])
            emit(side, ACK, nxt[side], acked[side], win=win[side])
        else:  # a FIN, sometimes twice
            emit(side, ACK | FIN, nxt[side], acked[side], win=win[side])
            if rng.random() < 0.3:
                emit(side, ACK | FIN, nxt[side], acked[side], win=win[side])
            nxt[side] += 1
    for _ in range(rng.randint(0, 3)):  # swap neighbours, keeping timestamps in order
        if len(frames) > 3:
            i = rng.randrange(1, len(frames) - 1)
            (ta, fa), (tb, fb) = frames[i], frames[i + 1]
            frames[i], frames[i + 1] = (ta, fb), (tb, fa)
    return frames


# ---------------------------------------------------------------- tunnels (tests/test_tunnels.py)

#: the tunnel's endpoints (RFC 5737 TEST-NET-3), apart from the conversation's own addresses
TUNNEL_A4, TUNNEL_B4 = "203.0.113.1", "203.0.113.2"
#: the outer UDP flow's ports: the tunnel's client side, and each tunnel's port (Zeek's defaults)
TUNNEL_CPORT = 50000
TUNNEL_PORTS = {
    "vxlan": 4789,
    "geneve": 6081,
    "gtpv1": 2152,
    "teredo": 3544,
    "ayiya": 5072,
    "gre-udp": 4754,
}


def _from_client(frame: bytes) -> bool:
    return frame[6:12] == _MAC_C


def gre_header(
    proto: int, version: int = 0, key: int | None = None, seq: int | None = None,
    checksum: bool = False, ack: int | None = None,
) -> bytes:  # fmt: skip
    """A GRE header (RFC 2784; RFC 2890 key and sequence; RFC 2637 enhanced GRE's ack)."""
    flags = version
    opt = b""
    if checksum:
        flags |= 0x8000
        opt += b"\x00\x00\x00\x00"  # checksum and reserved1 (not verified by Zeek or flowlens)
    if key is not None:
        flags |= 0x2000
        opt += struct.pack("!I", key)
    if seq is not None:
        flags |= 0x1000
        opt += struct.pack("!I", seq)
    if ack is not None:
        flags |= 0x0080
        opt += struct.pack("!I", ack)
    return struct.pack("!HH", flags, proto) + opt


def tunnel_payload(kind: str, frame: bytes, n: int = 0) -> tuple[int, bytes]:
    """(outer IP protocol or UDP port, tunnel header + inner bytes) for one Ethernet `frame`
    of a conversation: the inner IP packet, or the whole Ethernet frame for the tunnels that
    carry Ethernet. `n` numbers the frame (sequence fields)."""
    ip = frame[14:]
    if kind == "ipip" or kind == "6in4":
        return (4 if ip[0] >> 4 == 4 else 41), ip
    if kind == "gre":
        return 47, gre_header(0x0800 if ip[0] >> 4 == 4 else 0x86DD) + ip
    if kind == "gre-keyed":  # checksum, key and sequence present
        return 47, gre_header(0x0800, key=7, seq=n, checksum=True) + ip
    if kind == "gre-eth":  # transparent Ethernet bridging
        return 47, gre_header(0x6558, key=1) + frame
    if kind == "erspan1":  # ERSPAN type I: no sequence number, no ERSPAN header
        return 47, gre_header(0x88BE) + frame
    if kind == "erspan2":  # type II: sequence number, an 8-byte header (version 1, VLAN, id)
        return 47, gre_header(0x88BE, seq=n) + struct.pack("!HHI", 0x1000, 0x0001, 0) + frame
    if kind == "erspan3":  # type III: 12 bytes (version 2, ..., timestamp, SGT, flags)
        return 47, gre_header(0x22EB, seq=n) + struct.pack("!HHIHH", 0x2000, 1, 0, 0, 0) + frame
    if kind == "pptp":  # enhanced GRE (version 1): key = payload length | call id; PPP inside
        ppp = b"\xff\x03" + struct.pack("!H", 0x0021 if ip[0] >> 4 == 4 else 0x0057) + ip
        return 47, gre_header(0x880B, version=1, key=(len(ppp) << 16) | 9, seq=n) + ppp
    if kind == "vxlan":  # RFC 7348: I flag, VNI 42
        return TUNNEL_PORTS[kind], struct.pack("!II", 0x08000000, 42 << 8) + frame
    if kind == "geneve":  # RFC 8926: version 0, no options, Ethernet, VNI 42
        return TUNNEL_PORTS[kind], struct.pack("!HHI", 0, 0x6558, 42 << 8) + frame
    if kind == "gtpv1":  # TS 29.281: version 1, PT, G-PDU (255), length, TEID
        return TUNNEL_PORTS[kind], struct.pack("!BBHI", 0x30, 255, len(ip), 0x1234) + ip
    if kind == "teredo":  # RFC 4380: IPv6 straight after UDP
        return TUNNEL_PORTS[kind], ip
    if kind == "ayiya":  # identity 16 bytes (type 1), signature 20 (SHA1), forward, next header
        nh = 4 if ip[0] >> 4 == 4 else 41
        head = bytes([(4 << 4) | 1, (5 << 4) | 2, (2 << 4) | 1, nh]) + struct.pack("!I", n)
        return TUNNEL_PORTS[kind], head + b"\x20" * 16 + b"\x5a" * 20 + ip
    if kind == "gre-udp":  # GRE in UDP (RFC 8086)
        return TUNNEL_PORTS[kind], gre_header(0x0800 if ip[0] >> 4 == 4 else 0x86DD) + ip
    raise ValueError(kind)


def outer_ip(src: str, dst: str, proto: int, payload: bytes, ident: int = 1) -> bytes:
    """An IPv4/IPv6 header (lengths and header checksum filled in) before raw `payload`."""
    if ":" in src:
        return (
            struct.pack("!IHBB", 6 << 28, len(payload), proto, 64)
            + _addr(src)
            + _addr(dst)
            + payload
        )
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0, 64, proto, 0, _addr(src), _addr(dst)
    )
    head = head[:10] + struct.pack("!H", dpkt.in_cksum(head)) + head[12:]
    return head + payload


def encapsulate(frames: list, kind: str, a: str = TUNNEL_A4, b: str = TUNNEL_B4) -> list:
    """Ethernet frames of a conversation, each carried in tunnel `kind` between `a` (the
    client's side) and `b`: IP-in-IP, GRE (several forms), or UDP (VXLAN, Geneve, GTPv1,
    Teredo, AYIYA, GRE-in-UDP) from `a`:TUNNEL_CPORT to `b`:the tunnel's port and back. The
    outer frames are Ethernet."""
    out = []
    for n, (ts, frame) in enumerate(frames):
        fc = _from_client(frame)
        src, dst = (a, b) if fc else (b, a)
        what, payload = tunnel_payload(kind, frame, n)
        if kind in TUNNEL_PORTS:
            sport, dport = (TUNNEL_CPORT, what) if fc else (what, TUNNEL_CPORT)
            u = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
            u.ulen = 8 + len(payload)
            ip = ip_packet(src, dst, u, dpkt.ip.IP_PROTO_UDP, ident=n + 1)
            out.append((ts, ethernet(ip, fc)))
        else:
            raw = outer_ip(src, dst, what, payload, ident=n + 1)
            etype = struct.pack("!H", 0x86DD if ":" in src else 0x0800)
            macs = (_MAC_S + _MAC_C) if fc else (_MAC_C + _MAC_S)
            out.append((ts, macs + etype + raw))
    return out


# ---------------------------------------------------------------- 802.11 (tests/test_wifi.py)

BSSID = b"\x02\x00\x00\x00\x00\xaa"
SNAP = b"\xaa\xaa\x03\x00\x00\x00"  # LLC: DSAP/SSAP SNAP, UI; OUI 0 (an ethertype follows)
TO_DS, FROM_DS, PROTECTED, ORDER = 0x01, 0x02, 0x40, 0x80
DATA, QOS_DATA, NULL_DATA = 0x08, 0x88, 0x48  # frame control byte 0: subtype << 4 | type << 2
BEACON, ACK_FRAME = 0x80, 0xD4


def dot11(
    frame: bytes, *, fc: int = DATA, flags: int | None = None, four: bool = False,
    qos: int = 0, llc: bytes = SNAP,
) -> bytes:  # fmt: skip
    """One Ethernet frame of the conversation as an 802.11 data frame. Addresses by IEEE
    802.11 §9.3.2.1: To DS (BSSID, SA, DA), From DS (DA, BSSID, SA); with `four`, a frame
    between access points (RA, TA, DA, SA: both DS bits). `qos`: the QoS Control field."""
    dst, src, etype = frame[0:6], frame[6:12], frame[12:14]
    if four:
        ds = TO_DS | FROM_DS
        addrs = b"\x02\x00\x00\x00\x00\xbb" + BSSID + dst + src
    elif _from_client(frame):
        ds, addrs = TO_DS, BSSID + src + dst
    else:
        ds, addrs = FROM_DS, dst + BSSID + src
    head = struct.pack("<BBH", fc, ds if flags is None else flags, 0) + addrs[:18]
    head += struct.pack("<H", 0x0010) + addrs[18:]  # sequence control, then address 4
    if fc & 0x80:  # QoS subtypes
        head += struct.pack("<H", qos)
    return head + llc + etype + frame[14:]


def radiotap(frame: bytes) -> bytes:
    """A radiotap header (version 0) with TSFT, flags and rate: 18 bytes, its length field
    being the only way to the 802.11 frame."""
    return struct.pack("<BBHIQBB", 0, 0, 18, 0x07, 123456, 0x00, 12) + frame


def aruba(frames: list, ptype: int = 0x8200) -> list:
    """The conversation as an Aruba controller carries it: each 802.11 frame (no radio header)
    in GRE version 0 with protocol type `ptype`, between the access point and the controller,
    in IPv4 over Ethernet."""
    out = []
    for n, (ts, frame) in enumerate(frames):
        fc = _from_client(frame)
        src, dst = (TUNNEL_A4, TUNNEL_B4) if fc else (TUNNEL_B4, TUNNEL_A4)
        raw = outer_ip(src, dst, 47, gre_header(ptype) + dot11(frame), ident=n + 1)
        out.append((ts, frame[:12] + b"\x08\x00" + raw))
    return out


def amsdu(frames: list) -> bytes:
    """Ethernet frames of one direction as one 802.11 QoS data frame whose QoS Control says
    A-MSDU Present: a subframe each (DA, SA, length; LLC/SNAP, ethertype, IP), each but the
    last padded by `length % 4` bytes, as Zeek's IEEE802_11.cc reads them."""
    head = dot11(frames[0], fc=QOS_DATA, qos=0x0080)[:26]
    body = []
    for frame in frames:
        sub = SNAP + frame[12:]
        body.append(frame[0:12] + struct.pack("!H", len(sub)) + sub)
        body.append(b"\0" * (len(sub) % 4))
    return head + b"".join(body[:-1])

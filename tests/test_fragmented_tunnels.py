"""Tunnels carried in fragmented outer IP datagrams: the outer datagram is reassembled (lengths,
and its first bytes: fragments.HEAD_BYTES) and decapsulated as Zeek does (Frag.cc, then the UDP
tunnel analyzers on the whole payload), so the inner connection counts every packet and byte
as if the outer datagrams had not been fragmented, and names the outer flow in tunnel_parents.

Each capture is one TCP conversation with a 1,400-byte response carried in a UDP tunnel
(tests/pcapgen.py's `encapsulate`), whose large outer datagrams are then cut into IPv4
fragments (RFC 791 §3.2) or IPv6 fragment headers (RFC 8200 §4.5) here.
"""

from __future__ import annotations

import io
import struct

import pcapgen as g
import pytest

from flowlens import Config, analyze
from flowlens.core.decode import Decoder

#: the fields of a connection that fragmenting the outer datagrams must not change
SAME = (
    "proto", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "conn_state", "history",
    "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "orig_ip_bytes", "resp_ip_bytes",
    "duration", "service",
)  # fmt: skip
TUNNEL_A6, TUNNEL_B6 = "2001:db8:ffff::1", "2001:db8:ffff::2"
BIG = b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 1400


def _conversation() -> list:
    conv = g.Conversation()
    conv.handshake()
    conv.exchange(response=BIG)
    conv.close("client")
    return conv.frames


def _fragment4(frame: bytes, sizes: tuple[int, ...], order: str) -> list[bytes]:
    """The Ethernet frame's IPv4 datagram cut into fragments of `sizes` payload bytes (each a
    multiple of 8; the rest goes in a last one), in `order` ("forward" or "reverse")."""
    eth, ip = frame[:14], frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    header, payload = bytearray(ip[:ihl]), ip[ihl:]
    out, offset = [], 0
    for size in (*sizes, len(payload)):
        chunk = payload[offset : offset + size]
        more = offset + len(chunk) < len(payload)
        h = bytearray(header)
        struct.pack_into("!H", h, 2, ihl + len(chunk))
        struct.pack_into("!H", h, 6, (0x2000 if more else 0) | offset // 8)
        struct.pack_into("!H", h, 10, 0)
        struct.pack_into("!H", h, 10, _checksum(bytes(h)))
        out.append(eth + bytes(h) + chunk)
        offset += len(chunk)
        if not more:
            break
    return out[::-1] if order == "reverse" else out


def _fragment6(frame: bytes, sizes: tuple[int, ...], order: str) -> list[bytes]:
    """As _fragment4, for an IPv6 packet without extension headers: a fragment header each."""
    eth, ip = frame[:14], frame[14:]
    nh, payload = ip[6], ip[40:]
    out, offset = [], 0
    for size in (*sizes, len(payload)):
        chunk = payload[offset : offset + size]
        more = offset + len(chunk) < len(payload)
        h = bytearray(ip[:40])
        struct.pack_into("!H", h, 4, 8 + len(chunk))
        h[6] = 44  # a fragment header follows
        frag = struct.pack("!BBHI", nh, 0, offset | (1 if more else 0), 0x1234)
        out.append(eth + bytes(h) + frag + chunk)
        offset += len(chunk)
        if not more:
            break
    return out[::-1] if order == "reverse" else out


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _fragmented(frames: list, sizes=(600,), order="forward", v6=False) -> list:
    """Every outer datagram longer than the first fragment size, fragmented (same time)."""
    cut = _fragment6 if v6 else _fragment4
    out = []
    for ts, frame in frames:
        if len(frame) - 14 - (40 if v6 else 20) > sizes[0]:
            out.extend((ts, f) for f in cut(frame, sizes, order))
        else:
            out.append((ts, frame))
    return out


def _run(frames):
    return analyze(io.BytesIO(g.pcap_bytes(frames)), config=Config())


def _records(analysis) -> dict[str, dict]:
    return {r["proto"]: r for r in (c.to_record() for c in analysis.connections)}


def _tunnelled(kind: str, v6: bool = False) -> list:
    if v6:
        return g.encapsulate(_conversation(), kind, a=TUNNEL_A6, b=TUNNEL_B6)
    return g.encapsulate(_conversation(), kind)


@pytest.mark.parametrize("kind", ["gtpv1", "vxlan"])
@pytest.mark.parametrize(
    ("sizes", "order"),
    [((600,), "forward"), ((600,), "reverse"), ((504, 504), "forward"), ((504, 504), "reverse"),
     ((32, 48), "forward"), ((32, 48), "reverse"), ((8, 600), "reverse")],
)  # fmt: skip
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_connection_inside_a_fragmented_udp_tunnel(kind, sizes, order, v6):
    whole = _tunnelled(kind, v6)
    frames = _fragmented(whole, sizes, order, v6)
    assert len(frames) > len(whole)  # the 1,400-byte response was fragmented
    plain, got = _records(_run(whole)), _records(_run(frames))
    assert set(got) == {"udp", "tcp"}
    # (IPv6: the reassembled datagram has no fragment header, as Zeek's Frag.cc rebuilds it)
    for proto in ("tcp", "udp"):  # the inner connection and the outer flow, as if whole
        assert {f: got[proto][f] for f in SAME} == {f: plain[proto][f] for f in SAME}
    assert got["tcp"]["tunnel_parents"] == [got["udp"]["uid"]]
    assert got["tcp"]["resp_bytes"] == len(BIG)


def test_the_fragmented_response_is_in_the_inner_connection():
    """The server's 1,400-byte response travels in a fragmented outer datagram: it is the
    inner connection's fifth server packet, and its data shows in the history (before the
    datagram was decapsulated it was an outer UDP packet only, and the inner side had 4)."""
    got = _records(_run(_fragmented(_tunnelled("gtpv1"))))
    assert got["tcp"]["resp_pkts"] == 5 and "d" in got["tcp"]["history"]
    assert got["tcp"]["resp_bytes"] == len(BIG)


def test_fragments_that_never_complete_emit_nothing_inner():
    """A fragmented datagram missing its last fragment: no inner packet, no outer datagram,
    and the pending datagram is counted as before."""
    whole = _tunnelled("gtpv1")
    frames = _fragmented(whole, (504, 504))
    last = [i for i, (_ts, f) in enumerate(frames) if not f[20] & 0x20 and f[21] != 0]
    (i,) = last
    del frames[i]
    plain, got = _records(_run(whole)), _records(_run(frames))
    assert got["tcp"]["resp_pkts"] == plain["tcp"]["resp_pkts"] - 1
    assert got["udp"]["resp_pkts"] == plain["udp"]["resp_pkts"] - 1
    decoder = Decoder()
    out = [decoder.decode(n, int(ts * 1e9), 1, f) for n, (ts, f) in enumerate(frames)]
    assert decoder.pending_fragments == 1 and not decoder.tunnel_errors
    assert sum(p is None for p in out) == 2  # the two fragments that arrived


def test_a_fragmented_datagram_on_no_tunnel_port_is_one_udp_packet():
    """Ordinary UDP (DNS-like, port 9999) fragmented: one datagram of the whole length, no
    inner connection, exactly as before the tunnels were decoded from kept bytes."""
    u = g.dpkt.udp.UDP(sport=40000, dport=9999, data=b"y" * 1500)
    u.ulen = 8 + len(u.data)
    frame = g.ethernet(g.ip_packet(g.CLIENT4, g.SERVER4, u, 17, ident=7))
    frames = [(g.T0, f) for f in _fragment4(frame, (504, 504), "reverse")]
    (rec,) = [c.to_record() for c in _run(frames).connections]
    assert (rec["proto"], rec["orig_pkts"], rec["orig_bytes"]) == ("udp", 1, 1500)
    assert rec["orig_ip_bytes"] == 20 + 8 + 1500 and rec["tunnel_parents"] is None

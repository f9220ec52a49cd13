"""The link layers Zeek decodes beyond Ethernet's usual ones: FDDI (LINKTYPE_FDDI 10), 802.1ah
provider backbone bridging (ethertype 0x88E7), Cisco VN-Tag (0x8926) and Cisco FabricPath
(0x8903): the connection inside is the same connection as over plain Ethernet."""

from __future__ import annotations

import io
import struct

import pcapgen as g
import pytest

from flowlens import analyze

FIELDS = ("proto", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "conn_state", "history",
          "orig_pkts", "resp_pkts", "orig_ip_bytes", "resp_ip_bytes")  # fmt: skip


def _records(frames, linktype: int = 1) -> list[dict]:
    analysis = analyze(io.BytesIO(g.pcap_bytes(frames, linktype=linktype)))
    assert not analysis.skipped, analysis.skipped
    return [{f: r[f] for f in FIELDS} for r in (c.to_record() for c in analysis.connections)]


def _rewrap(frames: list, wrap) -> list:
    return [(ts, wrap(frame)) for ts, frame in frames]


def fddi(frame: bytes) -> bytes:
    """FDDI: frame control, destination, source; then LLC/SNAP (AA AA 03, OUI 0, ethertype)."""
    return b"\x50" + frame[0:6] + frame[6:12] + b"\xaa\xaa\x03\x00\x00\x00" + frame[12:]


def pbb(frame: bytes) -> bytes:
    """802.1ah: backbone addresses, 0x88E7 and the I-TAG, then the customer's whole frame."""
    return b"\x0a" * 6 + b"\x0b" * 6 + struct.pack("!HI", 0x88E7, 0x00010203) + frame


def vntag(frame: bytes) -> bytes:
    """VN-Tag (0x8926, 4 bytes), then an 802.1Q tag (VLAN 7), then the frame's own type."""
    return frame[:12] + struct.pack("!HIHH", 0x8926, 0x80010002, 0x8100, 7) + frame[12:]


def fabricpath(frame: bytes) -> bytes:
    """FabricPath: outer addresses, 0x8903, 2 bytes of FTag/TTL (16 bytes), then the frame."""
    return b"\x0c" * 6 + b"\x0d" * 6 + struct.pack("!HH", 0x8903, 0x0001) + frame


@pytest.mark.parametrize(
    "wrap, linktype",
    [(fddi, 10), (pbb, 1), (vntag, 1), (fabricpath, 1)],
    ids=lambda v: getattr(v, "__name__", str(v)),  # (a function's name, not its address)
)
def test_connection_over_the_link_layer_is_the_plain_one(wrap, linktype):
    frames = g.clean_close()
    plain = _records(frames)
    assert _records(_rewrap(frames, wrap), linktype) == plain
    assert plain[0]["history"] == "ShADadFf"


def test_vn_tag_without_a_vlan_tag_after_it_is_not_ip_as_in_zeek():
    """vntag/main.zeek hands VN-Tag only to the VLAN analyzer (0x8100, 0x88A8, 0x9100)."""
    frames = _rewrap(g.clean_close(), lambda f: f[:12] + struct.pack("!HI", 0x8926, 1) + f[12:])
    analysis = analyze(io.BytesIO(g.pcap_bytes(frames)))
    assert analysis.connections == []
    assert analysis.non_ip == {"ethertype 0x0800 after VN-Tag": len(frames)}


def test_truncated_link_headers_are_counted():
    short = [(g.T0, b"\x50" + b"\0" * 12), (g.T0 + 1, b"\0" * 12 + b"\x88\xe7" + b"\0" * 10)]
    analysis = analyze(io.BytesIO(g.pcap_bytes(short[:1], linktype=10)))
    assert analysis.skipped == {"truncated FDDI header": 1}
    analysis = analyze(io.BytesIO(g.pcap_bytes(short[1:])))
    assert analysis.skipped == {"truncated 802.1ah PBB header": 1}

"""802.11 as Zeek decodes it: bare 802.11 frames (LINKTYPE_IEEE802_11 105), 802.11 after a
radiotap header (LINKTYPE_IEEE802_11_RADIOTAP 127) and Aruba's 802.11 in GRE (protocol type
0x8200 ...), by the rules of Zeek's IEEE802_11.cc, IEEE802_11_Radio.cc and GRE.cc: the data
frames' connection is the one the same packets make over Ethernet; the frames Zeek does not
decode (management, control, data without data, protected) are counted; an A-MSDU's
subframes are packets of their own.

Each capture is tests/pcapgen.py's clean close (handshake, request, response, 4-way close),
its Ethernet frames re-wrapped: the client's frames go to the distribution system (To DS),
the server's come from it (From DS), as on a station's Wi-Fi.
"""

from __future__ import annotations

import io
import json
import struct

import dpkt
import pcapgen as g
import pytest
from click.testing import CliRunner

from flowlens import analyze
from flowlens.cli import cli

FIELDS = ("proto", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "conn_state", "history",
          "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "orig_ip_bytes",
          "resp_ip_bytes", "duration")  # fmt: skip


def _rewrap(frames: list, wrap) -> list:
    return [(ts, wrap(frame)) for ts, frame in frames]


def _analysis(frames: list, linktype: int):
    return analyze(io.BytesIO(g.pcap_bytes(frames, linktype=linktype)))


def _records(analysis) -> list[dict]:
    return [{f: r[f] for f in FIELDS} for r in (c.to_record() for c in analysis.connections)]


@pytest.fixture(scope="module")
def plain() -> list[dict]:
    recs = _records(_analysis(g.clean_close(), 1))
    assert [r["history"] for r in recs] == ["ShADadFf"]
    return recs


def test_builders_make_what_dpkt_reads_as_802_11():
    """The frames are what dpkt's radiotap and 802.11 parsers see as data frames with LLC."""
    (ts, frame), *_ = g.clean_close()
    rt = dpkt.radiotap.Radiotap(g.radiotap(g.dot11(frame)))
    assert rt.length == 18
    wifi = dpkt.ieee80211.IEEE80211(g.dot11(frame))
    assert (wifi.type, wifi.subtype, wifi.to_ds, wifi.from_ds) == (2, 0, 1, 0)
    assert bytes(wifi.data)[:6] == g.SNAP


@pytest.mark.parametrize(
    "wrap, linktype",
    [
        (lambda f: g.radiotap(g.dot11(f)), dpkt.pcap.DLT_IEEE802_11_RADIO),
        (g.dot11, dpkt.pcap.DLT_IEEE802_11),
        (lambda f: g.dot11(f, four=True), dpkt.pcap.DLT_IEEE802_11),
        (lambda f: g.dot11(f, fc=g.QOS_DATA, qos=5), dpkt.pcap.DLT_IEEE802_11),
        (
            lambda f: g.radiotap(g.dot11(f, fc=g.QOS_DATA, four=True)),
            dpkt.pcap.DLT_IEEE802_11_RADIO,
        ),
    ],
    ids=["radiotap", "802.11", "4-address", "QoS", "radiotap-QoS-4-address"],
)
def test_connection_over_802_11_is_the_plain_one(plain, wrap, linktype):
    analysis = _analysis(_rewrap(g.clean_close(), wrap), linktype)
    assert _records(analysis) == plain
    assert not analysis.skipped and not analysis.non_ip


def test_ipv6_over_802_11():
    frames = g.clean_close(client=g.CLIENT6, server=g.SERVER6)
    want = _records(_analysis(frames, 1))
    assert _records(_analysis(_rewrap(frames, g.dot11), 105)) == want


def test_frames_zeek_does_not_decode_are_counted_by_reason(plain):
    """IEEE802_11.cc decodes data frames that carry data; a QoS frame with the Protected bit
    is encrypted (Zeek returns there), and a protected frame without QoS fails the LLC/g.SNAP
    test with its ciphertext. None of them stops the conversation around them."""
    frames = _rewrap(g.clean_close(), g.dot11)
    (ts, first) = g.clean_close()[0]
    beacon = (
        struct.pack("<BBH", g.BEACON, 0, 0) + b"\xff" * 6 + g.BSSID * 2 + b"\0" * 2 + b"\0" * 12
    )
    ack = struct.pack("<BBH", g.ACK_FRAME, 0, 0) + g.BSSID  # 10 bytes: a control frame
    null = g.dot11(first, fc=g.NULL_DATA)[:24]  # power management: no frame body
    qos_protected = g.dot11(first, fc=g.QOS_DATA, flags=g.TO_DS | g.PROTECTED)
    ccmp = g.dot11(first, flags=g.TO_DS | g.PROTECTED, llc=b"\x01\x00\x00\x20\x00\x00\x00\x00")
    extra = [beacon, ack, null + b"\0", qos_protected, ccmp, b"\x08"]
    analysis = _analysis([(ts - 1 + i * 0.01, f) for i, f in enumerate(extra)] + frames, 105)
    assert _records(analysis) == plain
    assert analysis.skipped == {
        "802.11 management frame": 1,
        "802.11 control frame": 1,
        "802.11 data frame without data": 1,
        "802.11 protected frame": 2,
        "truncated 802.11 header": 1,
    }


def test_llc_other_than_snap_and_arp_are_not_ip():
    """HandleInnerPacket wants AA AA 03 with a zero OUI; ARP (0x0806) goes to Zeek's ARP."""
    (ts, first) = g.clean_close()[0]
    stp = g.dot11(first, llc=b"\x42\x42\x03\x00\x00\x00")
    arp = g.dot11(first[:12] + b"\x08\x06" + b"\0" * 28)
    analysis = _analysis([(ts, stp), (ts + 1, arp)], 105)
    assert analysis.connections == [] and not analysis.skipped
    assert analysis.non_ip == {"802.11 LLC": 1, "ethertype 0x0806": 1}


def test_the_order_bit_is_not_read_as_zeek_does_not():
    """IEEE802_11.cc reads no HT Control field: with the Order bit set on a QoS frame and the
    4 bytes of HT Control before LLC, the LLC/g.SNAP test fails there too."""
    (ts, first) = g.clean_close()[0]
    qos = g.dot11(first, fc=g.QOS_DATA)
    ht = qos[:24] + qos[24:26] + b"\0\0\0\0" + qos[26:]
    ht = ht[:1] + bytes([g.TO_DS | g.ORDER]) + ht[2:]
    analysis = _analysis([(ts, ht)], 105)
    assert analysis.connections == [] and analysis.non_ip == {"802.11 LLC": 1}


def test_a_msdu_subframes_are_packets_of_their_own(plain):
    """IEEE802_11.cc: with QoS Control's A-MSDU Present bit, each subframe is a packet (at the
    frame's time); runs of one side's frames as one A-MSDU make the same connection."""
    frames = g.clean_close()
    runs: list[list] = []
    for ts, f in frames:
        if runs and g._from_client(runs[-1][-1][1]) == g._from_client(f):
            runs[-1].append((ts, f))
        else:
            runs.append([(ts, f)])
    assert max(len(r) for r in runs) > 1  # (else nothing is aggregated)
    wifi = [(run[0][0], g.amsdu([f for _, f in run])) for run in runs]
    analysis = _analysis(wifi, 105)
    same = [f for f in FIELDS if f != "duration"]
    assert [{f: r[f] for f in same} for r in _records(analysis)] == [
        {f: r[f] for f in same} for r in plain
    ]
    assert not analysis.skipped and not analysis.non_ip
    # in Aruba's GRE too (gre-aruba-amsdu.pcap's form: protocol type 0x8240)
    gre = [(ts, b"\x02" * 12 + b"\x08\x00" + _gre_wrap(f)) for ts, f in wifi]
    assert _records(_analysis(gre, 1)) == _records(analysis)


def _gre_wrap(wifi: bytes) -> bytes:
    return g.outer_ip(g.TUNNEL_A4, g.TUNNEL_B4, 47, g.gre_header(0x8240) + wifi)


def test_a_msdu_padding_is_zeeks_length_mod_4():
    """IEEE802_11.cc skips `length % 4` bytes after a subframe (802.11 pads the subframe, 14 +
    length, to a multiple of 4: for this 66-byte one, Zeek skips 2 where 802.11 pads none)."""
    frames = g.clean_close()
    request, ack = frames[3][1], frames[2][1]
    assert (len(request) - 14 + 8) % 4 == 2  # (the subframe's length: LLC/SNAP, type, IP)
    analysis = _analysis([(frames[3][0], g.amsdu([request, ack]))], 105)
    ((pkts, ip_bytes),) = [(c.to_record()["orig_pkts"], c.to_record()["orig_ip_bytes"])
                           for c in analysis.connections]  # fmt: skip
    assert (pkts, ip_bytes) == (2, len(request) + len(ack) - 28)
    assert not analysis.skipped


def test_a_msdu_stops_at_a_short_subframe():
    (ts, first), (ts2, second) = g.clean_close()[:2]
    frame = g.amsdu([first, first])
    analysis = _analysis([(ts, frame[:-5])], 105)  # the second subframe cut short
    assert analysis.skipped == {"truncated 802.11 A-MSDU subframe": 1}
    assert [r["orig_pkts"] for r in _records(analysis)] == [1]


def test_short_headers_are_counted():
    (ts, first) = g.clean_close()[0]
    short_rt = struct.pack("<BBHI", 0, 0, 200, 0) + g.dot11(first)  # length past the frame
    assert _analysis([(ts, short_rt), (ts + 1, b"\0\0\x08")], 127).skipped == {
        "truncated radiotap header": 2
    }
    llc_cut = g.dot11(first)[:28]
    assert _analysis([(ts, llc_cut)], 105).skipped == {"truncated 802.11 LLC header": 1}


@pytest.mark.parametrize("ptype", [0x8200, 0x8210, 0x8300, 0x8380, 0xA200, 0x9000])
def test_aruba_802_11_in_gre(plain, ptype):
    """GRE.cc: these protocol types are Aruba's 802.11 (gre_link_type DLT_IEEE802_11), which
    IPTunnel.cc decodes as a new packet inside the GRE tunnel: the inner connection is the
    plain one, its tunnel_parents the tunnel's uid (one for both directions), and the GRE
    packets themselves are no connection. (GRE.cc's test is a mask: any type with bits 0x8200
    set and a zero low nibble, so 0x8380 and 0xA200 too; its 0x8370 bound limits a clause the
    first already covers.)"""
    analysis = _analysis(g.aruba(g.clean_close(), ptype), 1)
    assert _records(analysis) == plain
    ((parent,),) = [c.to_record()["tunnel_parents"] for c in analysis.connections]
    assert parent.startswith("C") and parent != analysis.connections[0].uid
    assert not analysis.skipped and not analysis.non_ip


@pytest.mark.parametrize("ptype", [0x8201, 0x8100])
def test_gre_types_outside_the_aruba_mask_are_not_802_11(ptype):
    """A low nibble, or bit 0x0200 clear: forwarded by type (read as IP, which an 802.11
    header is not), so no connection and nothing counted as 802.11."""
    analysis = _analysis(g.aruba(g.clean_close(), ptype), 1)
    assert analysis.connections == [] and analysis.skipped
    assert "802.11" not in str(analysis.skipped)


def test_aruba_protected_frames_are_counted():
    """Protected QoS data in Aruba's GRE 0x8300, as in Zeek's gre-aruba-ccmp.pcap."""
    qos = []
    for n, (ts, frame) in enumerate(g.clean_close()):
        inner = g.dot11(frame, fc=g.QOS_DATA, flags=g.TO_DS | g.PROTECTED)
        raw = g.outer_ip(g.TUNNEL_A4, g.TUNNEL_B4, 47, g.gre_header(0x8300) + inner, ident=n)
        qos.append((ts, frame[:12] + b"\x08\x00" + raw))
    analysis = _analysis(qos, 1)
    assert analysis.connections == []
    assert analysis.skipped == {"802.11 protected frame": len(qos)}


def test_flows_command_on_radiotap_and_aruba(tmp_path, plain):
    """`flowlens flows --format json` prints the connection and names the skipped frames on
    stderr."""
    (ts, first) = g.clean_close()[0]
    beacon = struct.pack("<BBH", g.BEACON, 0, 0) + b"\xff" * 6 + g.BSSID * 2 + b"\0" * 14
    wifi = g.write_pcap(
        tmp_path / "radiotap.pcap",
        [(ts - 1, g.radiotap(beacon))] + _rewrap(g.clean_close(), lambda f: g.radiotap(g.dot11(f))),
        linktype=127,
    )
    gre = g.write_pcap(tmp_path / "aruba.pcap", g.aruba(g.clean_close()))
    runner = CliRunner()
    res = runner.invoke(cli, ["flows", "--format", "json", wifi])
    assert res.exit_code == 0, res.output
    (rec,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert {f: rec[f] for f in FIELDS} == plain[0] and rec["tunnel_parents"] is None
    assert "skipped 1 undecodable frame (1 802.11 management frame)" in res.stderr
    res = runner.invoke(cli, ["flows", "--format", "json", gre])
    assert res.exit_code == 0, res.output
    (rec,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert {f: rec[f] for f in FIELDS} == plain[0] and len(rec["tunnel_parents"]) == 1
    assert "skipped" not in res.stderr and "not IP" not in res.stderr


def test_aruba_gre_header_with_nothing_after_it_is_truncated():
    """GRE.cc's ARUBA branch: a payload no longer than the GRE header is truncated_GRE."""
    (ts, first) = g.clean_close()[0]
    raw = g.outer_ip(g.TUNNEL_A4, g.TUNNEL_B4, 47, g.gre_header(0x8200))
    analysis = _analysis([(ts, first[:12] + b"\x08\x00" + raw)], 1)
    assert analysis.connections == [] and analysis.skipped == {"truncated GRE header": 1}

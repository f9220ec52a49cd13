"""Tunnels: the connection inside each encapsulation Zeek decodes is analysed as if it had not
been tunnelled, and names its tunnel in `tunnel_parents`; a UDP tunnel's outer flow is a record
of its own; the depth limit and malformed tunnel headers are counted, never fatal.

Each capture is one TCP conversation (handshake, request, response, 4-way close) carried in the
tunnel, built by tests/pcapgen.py's `encapsulate`.
"""

from __future__ import annotations

import io
import json
import struct

import pcapgen as g
import pytest
from click.testing import CliRunner

from flowlens import Config, analyze
from flowlens.analyzers.service_id import ServiceAnalyzer
from flowlens.cli import cli

#: tunnels carried by an IP protocol (IP-in-IP, GRE): no record of their own
IP_TUNNELS = ["ipip", "gre", "gre-keyed", "gre-eth", "erspan1", "erspan2", "erspan3", "pptp"]
#: tunnels carried in UDP, and the service their outer flow gets (GRE in UDP gets none: Zeek
#: confirms no analyzer on the UDP flow for it)
UDP_TUNNELS = {
    "vxlan": "vxlan",
    "geneve": "geneve",
    "gtpv1": "gtpv1",
    "ayiya": "ayiya",
    "teredo": "teredo",
    "gre-udp": None,
}
#: what each carries inside: Teredo carries only IPv6
IPV6_ONLY = {"teredo", "6in4"}

#: the fields of the inner connection that must not change for being tunnelled
SAME = (
    "proto", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "conn_state", "history",
    "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "orig_ip_bytes", "resp_ip_bytes",
    "duration", "handshake", "teardown", "orig_state", "resp_state",
)  # fmt: skip


def _run(frames, **cfg):
    return analyze(io.BytesIO(g.pcap_bytes(frames)), config=Config(**cfg))


def _conversation(kind: str) -> list:
    if kind in IPV6_ONLY:
        return g.clean_close(client=g.CLIENT6, server=g.SERVER6)
    return g.clean_close()


def _records(analysis) -> dict[str, dict]:
    return {r["proto"]: r for r in (c.to_record() for c in analysis.connections)}


def _plain(kind: str) -> dict:
    (rec,) = [c.to_record() for c in _run(_conversation(kind)).connections]
    assert rec["conn_state"] == "SF" and rec["history"] == "ShADadFf"
    return rec


@pytest.mark.parametrize("kind", IP_TUNNELS + ["6in4"])
def test_connection_inside_an_ip_tunnel(kind):
    analysis = _run(g.encapsulate(_conversation(kind), kind))
    recs = [c.to_record() for c in analysis.connections]
    assert len(recs) == 1, recs  # the tunnel itself is no connection (as in Zeek's conn.log)
    (inner,) = recs
    plain = _plain(kind)
    assert {f: inner[f] for f in SAME} == {f: plain[f] for f in SAME}
    (parent,) = inner["tunnel_parents"]
    assert parent.startswith("C") and len(parent) == 18 and parent != inner["uid"]
    assert not analysis.skipped


def test_an_ip_tunnel_is_one_uid_for_both_directions_and_every_connection():
    """IPTunnel.cc names a tunnel by its address pair either way round: two connections through
    the same GRE tunnel share the parent uid; another pair of endpoints is another tunnel."""
    first = g.encapsulate(g.clean_close(), "gre")
    second = g.encapsulate(g.clean_close(cport=40001, t=g.T0 + 1), "gre")
    other = g.encapsulate(g.clean_close(cport=40002, t=g.T0 + 2), "gre", a="203.0.113.9")
    recs = [c.to_record() for c in _run(first + second + other).connections]
    parents = [r["tunnel_parents"] for r in recs]
    assert parents[0] == parents[1] != parents[2]


@pytest.mark.parametrize("kind", sorted(UDP_TUNNELS))
def test_connection_inside_a_udp_tunnel(kind):
    frames = _conversation(kind)
    analysis = _run(g.encapsulate(frames, kind))
    recs = _records(analysis)
    assert set(recs) == {"udp", "tcp"}
    inner, outer = recs["tcp"], recs["udp"]
    plain = _plain(kind)
    assert {f: inner[f] for f in SAME} == {f: plain[f] for f in SAME}
    # the outer flow: one datagram per inner packet, each way, from the tunnel's client side
    assert (outer["id.orig_h"], outer["id.orig_p"]) == (g.TUNNEL_A4, g.TUNNEL_CPORT)
    assert (outer["id.resp_h"], outer["id.resp_p"]) == (g.TUNNEL_B4, g.TUNNEL_PORTS[kind])
    assert (outer["orig_pkts"], outer["resp_pkts"]) == (plain["orig_pkts"], plain["resp_pkts"])
    assert outer["history"] == "Dd" and outer["tunnel_parents"] is None
    assert outer["service"] == UDP_TUNNELS[kind]
    if kind == "gre-udp":  # GRE in UDP is an IP tunnel between the UDP endpoints
        assert inner["tunnel_parents"] != [outer["uid"]] and len(inner["tunnel_parents"]) == 1
    else:
        assert inner["tunnel_parents"] == [outer["uid"]]
    assert not analysis.skipped and not analysis.warnings


@pytest.mark.parametrize("kind", sorted(k for k, name in UDP_TUNNELS.items() if name))
def test_service_detection_leaves_a_tunnel_flow_to_the_tunnel_name(kind):
    """One writer of `service`: the outer flow of a tunnel the decoder confirmed keeps the
    table's tunnel name, and the ServiceAnalyzer adds no `unidentified` app to it (nor reads
    the carried packets as the flow's protocol); the inner connection is identified as usual."""
    frames = g.encapsulate(_conversation(kind), kind)
    analysis = analyze(io.BytesIO(g.pcap_bytes(frames)), analyzers=[ServiceAnalyzer()])
    recs = _records(analysis)
    assert (recs["udp"]["service"], recs["udp"]["app"]) == (UDP_TUNNELS[kind], None)
    assert recs["tcp"]["service"] == "http"


def test_flows_services_on_a_vxlan_capture(tmp_path):
    path = tmp_path / "vxlan.pcap"
    g.write_pcap(path, g.encapsulate(g.clean_close(), "vxlan"))
    result = CliRunner().invoke(cli, ["flows", str(path), "--format", "json", "--services"])
    assert result.exit_code == 0, result.output
    recs = {r["proto"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert (recs["udp"]["service"], recs["udp"]["app"]) == ("vxlan", None)
    assert recs["tcp"]["service"] == "http"


def test_teredo_service_waits_for_both_sides():
    """Tunnel::delay_teredo_confirmation: a Teredo flow heard one way only is no `teredo` yet."""
    frames = [f for f in _conversation("teredo") if g._from_client(f[1])]
    recs = _records(_run(g.encapsulate(frames, "teredo")))
    assert recs["udp"]["service"] is None
    assert recs["tcp"]["tunnel_parents"] == [recs["udp"]["uid"]]


def test_teredo_is_detected_on_any_port_as_zeek_does():
    """Teredo.cc DetectProtocol: an origin indication then IPv6 is Teredo on any UDP port."""
    frames = []
    for ts, frame in _conversation("teredo"):
        fc = g._from_client(frame)
        origin = struct.pack("!HH4s", 0, 0xFFFF ^ 3544, b"\xff" * 4)  # tag 0, port, address
        sport, dport = (41000, 41001) if fc else (41001, 41000)
        u = g.dpkt.udp.UDP(sport=sport, dport=dport, data=origin + frame[14:])
        ip = g.ip_packet(*((g.TUNNEL_A4, g.TUNNEL_B4) if fc else (g.TUNNEL_B4, g.TUNNEL_A4)), u, 17)
        frames.append((ts, g.ethernet(ip, fc)))
    recs = _records(_run(frames))
    assert recs["tcp"]["tunnel_parents"] == [recs["udp"]["uid"]]
    assert recs["udp"]["service"] == "teredo"


def test_ordinary_udp_on_other_ports_is_not_decapsulated():
    recs = [c.to_record() for c in _run(g.udp_exchange()).connections]
    assert [r["proto"] for r in recs] == ["udp"] and recs[0]["tunnel_parents"] is None


def test_tunnel_in_tunnel_and_the_depth_limit():
    """VXLAN inside GRE: both decoded (depth 2), the VXLAN flow's parent is the GRE tunnel;
    with Tunnel::max_depth 1 the VXLAN datagrams are analysed as UDP, the inner TCP not at all,
    and the limit is counted."""
    frames = g.encapsulate(g.encapsulate(g.clean_close(), "vxlan"), "gre")
    recs = _records(_run(frames))
    (gre_uid,) = recs["udp"]["tunnel_parents"]
    assert recs["tcp"]["tunnel_parents"] == [recs["udp"]["uid"]] != [gre_uid]
    assert recs["tcp"]["history"] == "ShADadFf"

    limited = _run(frames, tunnel_max_depth=1)
    recs = _records(limited)
    assert set(recs) == {"udp"} and recs["udp"]["tunnel_parents"] == [gre_uid]
    assert any("exceeded tunnel max depth" in w for w in limited.warnings)

    off = _run(frames, tunnel_max_depth=0)  # no decapsulation: the GRE packets are no flow
    assert off.connections == []


def _corrupt_udp(frames: list, offset: int, value: int) -> list:
    """Set byte `offset` of each UDP payload (Ethernet + IPv4 + UDP = 42 bytes before it)."""
    out = []
    for ts, frame in frames:
        raw = bytearray(frame)
        raw[42 + offset] = value
        raw[40:42] = b"\0\0"  # the UDP checksum: left out rather than made wrong
        out.append((ts, bytes(raw)))
    return out


@pytest.mark.parametrize(
    "kind, offset, value, reason",
    [
        ("vxlan", 0, 0x00, "VXLAN 'I' flag not set"),
        ("gtpv1", 0, 0x50, "GTPv1 bad Version"),
        ("teredo", 0, 0x50, "Bad Teredo encapsulation"),
        ("ayiya", 0, 0xF1, "Truncated AYIYA"),  # an identity of 2**15 bytes
    ],
)
def test_malformed_udp_tunnel_header_is_counted_and_the_flow_kept(kind, offset, value, reason):
    frames = g.encapsulate(_conversation(kind), kind)
    analysis = _run(_corrupt_udp(frames, offset, value))
    recs = [c.to_record() for c in analysis.connections]
    assert [r["proto"] for r in recs] == ["udp"], recs
    assert recs[0]["orig_pkts"] + recs[0]["resp_pkts"] == len(frames)
    warning = [w for w in analysis.warnings if "tunnel headers not decapsulated" in w]
    assert warning and reason in warning[0]


def test_malformed_gre_is_skipped_with_its_reason():
    frames = g.encapsulate(g.clean_close(), "gre")
    bad = []
    for ts, frame in frames:
        raw = bytearray(frame)
        raw[34 + 1] |= 0x03  # GRE version 3
        bad.append((ts, bytes(raw)))
    analysis = _run(bad)
    assert analysis.connections == []
    assert analysis.skipped == {"unknown GRE version": len(frames)}


def test_ip_in_ip_whose_inner_length_disagrees_is_skipped():
    """IPTunnel.cc (IP::ParsePacket): the inner packet must fill the outer payload exactly."""
    frames = [(ts, f + b"\0\0\0\0") for ts, f in g.encapsulate(g.clean_close(), "ipip")]
    fixed = []
    for ts, f in frames:  # lengthen the outer datagram by the 4 bytes (and fix its checksum)
        raw = bytearray(f)
        raw[16:18] = struct.pack("!H", len(raw) - 14)
        raw[24:26] = b"\0\0"
        raw[24:26] = struct.pack("!H", g.dpkt.in_cksum(bytes(raw[14:34])))
        fixed.append((ts, bytes(raw)))
    analysis = _run(fixed)
    assert analysis.connections == []
    assert analysis.skipped == {"inner IP payload length mismatch in IP-in-IP": len(frames)}


def test_tunnel_parents_in_every_output_format():
    from flowlens.core.connections import RECORD_FIELDS
    from flowlens.reports.zeeklog import write_zeek

    analysis = _run(g.encapsulate(g.clean_close(), "vxlan"))
    recs = [c.to_record() for c in analysis.connections]
    assert "tunnel_parents" in RECORD_FIELDS
    out = io.StringIO()
    write_zeek(recs, out, "conn", RECORD_FIELDS)
    lines = out.getvalue().splitlines()
    fields = lines[6].split("\t")[1:]
    types = dict(zip(fields, lines[7].split("\t")[1:]))
    assert types["tunnel_parents"] == "set[string]"
    # Zeek's conn.log position: after resp_ip_bytes, before ip_proto
    assert fields.index("tunnel_parents") == fields.index("resp_ip_bytes") + 1
    rows = [dict(zip(fields, ln.split("\t"))) for ln in lines[8:-1]]
    by_proto = {r["proto"]: r for r in rows}
    assert by_proto["tcp"]["tunnel_parents"] == by_proto["udp"]["uid"]
    assert by_proto["udp"]["tunnel_parents"] == "-"


def test_parquet_schema_has_tunnel_parents():
    pa = pytest.importorskip("pyarrow")
    from flowlens.batch.task import CONNECTION_SCHEMA

    assert CONNECTION_SCHEMA.field("tunnel_parents").type == pa.list_(pa.string())


def test_fragmented_inner_datagram_comes_out_of_the_last_fragments_tunnel_packet():
    """An IP datagram fragmented inside a VXLAN tunnel: each outer datagram is counted once,
    and the reassembled inner one (whole when its last fragment arrives) names the tunnel."""
    import dpkt

    ip = g.ip_packet(
        g.CLIENT4, g.SERVER4, dpkt.udp.UDP(sport=5000, dport=7000, data=b"x" * 400), 17
    )
    raw = bytes(ip)
    head, body = raw[:20], raw[20:]
    frames = []
    for n, (off, chunk, more) in enumerate(((0, body[:208], 1), (208, body[208:], 0))):
        h = bytearray(head)
        h[2:4] = struct.pack("!H", 20 + len(chunk))
        h[6:8] = struct.pack("!H", (more << 13) | (off // 8))
        h[10:12] = b"\0\0"
        h[10:12] = struct.pack("!H", dpkt.in_cksum(bytes(h)))
        eth = g._MAC_S + g._MAC_C + b"\x08\x00" + bytes(h) + chunk
        frames.append((g.T0 + n * 0.001, eth))
    tunnelled = g.encapsulate(frames, "vxlan")
    outer = [c.to_record() for c in _run(tunnelled).connections]
    vx = [r for r in outer if r["id.resp_p"] == 4789]
    assert len(vx) == 1 and vx[0]["orig_pkts"] == 2
    assert vx[0]["orig_ip_bytes"] == sum(len(f) - 14 for _, f in tunnelled)  # each one once
    assert vx[0]["duration"] == 0.001
    inner = [r for r in outer if r["id.resp_p"] == 7000]
    assert len(inner) == 1 and inner[0]["orig_bytes"] == 400
    assert inner[0]["tunnel_parents"] == [vx[0]["uid"]]


def test_a_tunnel_past_max_depth_marks_its_flow_X(tmp_path):
    """VXLAN in VXLAN in VXLAN with Tunnel::max_depth = 2: the two outer layers are taken out,
    the third is not, and the UDP flow that carried it gets Zeek's 'X' once
    (HIST_ANALYZER_LIMIT_REACHED: VXLAN.cc, before the exceeded_tunnel_max_depth weird)."""
    frames = g.clean_close()
    for a, b in (("10.1.0.1", "10.1.0.2"), ("10.2.0.1", "10.2.0.2"), ("10.3.0.1", "10.3.0.2")):
        frames = g.encapsulate(frames, "vxlan", a, b)
    path = tmp_path / "vxlan3.pcap"
    g.write_pcap(path, frames)
    shallow = analyze(str(path), config=Config(tunnel_max_depth=2)).connections
    marked = [c for c in shallow if "X" in (c.history or "")]
    assert len(marked) == 1, [(c.proto_name, c.history) for c in shallow]
    assert marked[0].proto_name == "udp" and marked[0].history.count("X") == 1
    assert marked[0].tunnel_parents  # the flow inside the second tunnel
    assert not [c for c in shallow if c.proto_name == "tcp"]  # (never reached)
    deep = analyze(str(path)).connections  # the default depth, 4: all three come out
    assert not [c for c in deep if "X" in (c.history or "")]
    assert [c.conn_state for c in deep if c.proto_name == "tcp"] == ["SF"]

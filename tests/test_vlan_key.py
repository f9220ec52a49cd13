"""`--vlan-key` (Config.vlan_key): VLAN ids are part of the connection key, as with Zeek's
policy/frameworks/conn_key/vlan_fivetuple.zeek (the outer 802.1Q tag and QinQ's inner one);
off by default, when the same 5-tuple on two VLANs is one connection (Zeek's five-tuple key)."""

from __future__ import annotations

import io

import pcapgen as g
from click.testing import CliRunner

from flowlens import Config, analyze
from flowlens.cli import cli


def _two_vlans(vids_a=(10,), vids_b=(20,)) -> list:
    """One conversation whose client half travels on one VLAN (or QinQ pair), its server half
    on another: the same 5-tuple seen on two VLANs."""
    frames = g.clean_close()
    a = g.vlan([f for f in frames if g._from_client(f[1])], vids_a)
    b = g.vlan([f for f in frames if not g._from_client(f[1])], vids_b)
    return sorted(a + b)


def _records(frames, **cfg) -> list[dict]:
    analysis = analyze(io.BytesIO(g.pcap_bytes(frames)), config=Config(**cfg))
    return [c.to_record() for c in analysis.connections]


def test_without_vlan_key_the_vlans_are_one_connection():
    (rec,) = _records(_two_vlans())
    assert rec["conn_state"] == "SF" and rec["history"] == "ShADadFf"
    # the first packet's tags (Zeek's vlan-logging.zeek: `vlan`, `inner_vlan`)
    assert (rec["vlan"], rec["inner_vlan"]) == (10, None)


def test_with_vlan_key_each_vlan_is_its_own_connection():
    recs = _records(_two_vlans(), vlan_key=True)
    assert len(recs) == 2
    assert sorted((r["orig_pkts"], r["resp_pkts"]) for r in recs) == [(0, 5), (6, 0)]
    # each record says which VLAN it is (the key's part a reader needs to tell them apart)
    assert sorted((r["vlan"], r["orig_pkts"]) for r in recs) == [(10, 6), (20, 0)]


def test_vlan_key_counts_the_inner_qinq_tag_too():
    recs = _records(_two_vlans((10, 1), (10, 2)), vlan_key=True)
    assert sorted((r["vlan"], r["inner_vlan"]) for r in recs) == [(10, 1), (10, 2)]
    (rec,) = _records(_two_vlans((10, 1), (10, 1)), vlan_key=True)
    assert rec["history"] == "ShADadFf"


def test_vlan_key_option(tmp_path):
    path = tmp_path / "two-vlans.pcap"
    path.write_bytes(g.pcap_bytes(_two_vlans()))
    runner = CliRunner()
    one = runner.invoke(cli, ["flows", "--format", "csv", str(path)])
    two = runner.invoke(cli, ["flows", "--format", "csv", "--vlan-key", str(path)])
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    assert len(one.stdout.splitlines()) == 2 and len(two.stdout.splitlines()) == 3


def test_the_zeek_log_writes_the_vlans(tmp_path):
    path = tmp_path / "two-vlans.pcap"
    path.write_bytes(g.pcap_bytes(_two_vlans((10, 1), (20, 2))))
    out = CliRunner().invoke(cli, ["flows", "--format", "zeek", "--vlan-key", str(path)])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    names = next(x for x in lines if x.startswith("#fields")).split("\t")[1:]
    types = next(x for x in lines if x.startswith("#types")).split("\t")[1:]
    assert (types[names.index("vlan")], types[names.index("inner_vlan")]) == ("int", "int")
    rows = [dict(zip(names, x.split("\t"))) for x in lines if not x.startswith("#")]
    assert sorted((r["vlan"], r["inner_vlan"]) for r in rows) == [("10", "1"), ("20", "2")]

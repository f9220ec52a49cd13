"""Community ID v1 against the specification's sample results and the reference package."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import communityid
import dpkt
import pcapgen
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlens import Config, analyze
from flowlens.cli import cli
from flowlens.core.community_id import community_id, icmp_ports
from flowlens.errors import UsageError


def _packed(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


# From the spec's baseline/README.md "Default settings" and "Seed 1" tables.
SPEC = [
    (6, "1.2.3.4", 1122, "5.6.7.8", 3344, 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
    (6, "5.6.7.8", 3344, "1.2.3.4", 1122, 0, "1:wCb3OG7yAFWelaUydu0D+125CLM="),
    (17, "1.2.3.4", 1122, "5.6.7.8", 3344, 0, "1:0Mu9InQx6z4ZiCZM/7HXi2WMhOg="),
    (132, "1.2.3.4", 1122, "5.6.7.8", 3344, 0, "1:EKt4MsxuyaE6mL+hmrEkQ9csDD8="),
]
SPEC_ICMP = [
    (1, "1.2.3.4", "5.6.7.8", 8, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),  # echo request
    (1, "5.6.7.8", "1.2.3.4", 0, 0, "1:crodRHL2FEsHjbv3UkRrfbs4bZ0="),  # ... and its reply
    (1, "1.2.3.4", "5.6.7.8", 11, 0, "1:f/YiSyWqczrTgfUCZlBUnvHRcPk="),  # one-way
    (58, "fe80:1:203:405:607:809:a0b:c0d", "fe80:1011:1213:1415:1617:1819:1a1b:1c1d", 128, 0,
     "1:0bf7hyMJUwt3fMED7z8LIfRpBeo="),
]  # fmt: skip


@pytest.mark.parametrize("proto, src, sport, dst, dport, seed, expected", SPEC)
def test_spec_sample_results(proto, src, sport, dst, dport, seed, expected):
    assert community_id(proto, _packed(src), sport, _packed(dst), dport, seed) == expected


@pytest.mark.parametrize("proto, src, dst, itype, code, expected", SPEC_ICMP)
def test_spec_icmp_sample_results(proto, src, dst, itype, code, expected):
    sport, dport, one_way = icmp_ports(proto, itype, code)
    assert (
        community_id(proto, _packed(src), sport, _packed(dst), dport, one_way=one_way) == expected
    )


def _reference(proto, src, sport, dst, dport, seed):
    cid = communityid.CommunityID(seed)
    if proto == 6:
        tpl = communityid.FlowTuple.make_tcp(src, dst, sport, dport)
    elif proto == 17:
        tpl = communityid.FlowTuple.make_udp(src, dst, sport, dport)
    elif proto == 132:
        tpl = communityid.FlowTuple.make_sctp(src, dst, sport, dport)
    elif proto == 1:
        tpl = communityid.FlowTuple.make_icmp(src, dst, sport, dport)
    elif proto == 58:
        tpl = communityid.FlowTuple.make_icmp6(src, dst, sport, dport)
    else:
        tpl = communityid.FlowTuple(proto, src, dst)
    return cid.calc(tpl)


v4 = st.ip_addresses(v=4).map(str)
v6 = st.ip_addresses(v=6).map(str)
port = st.integers(0, 65535)


@settings(max_examples=400, deadline=None)
@given(
    proto=st.sampled_from([6, 17, 132, 1, 58, 47, 50]),
    pair=st.one_of(st.tuples(v4, v4), st.tuples(v6, v6), v4.map(lambda a: (a, a))),
    sport=port,
    dport=port,
    seed=st.integers(0, 65535),
)
def test_agrees_with_the_reference_package(proto, pair, sport, dport, seed):
    src, dst = pair
    if proto in (1, 58):
        if proto == 58 and ":" not in src:
            return
        if proto == 1 and ":" in src:
            return
        itype, code = sport % 256, dport % 256
        cid = communityid.CommunityID(seed)
        make = communityid.FlowTuple.make_icmp if proto == 1 else communityid.FlowTuple.make_icmp6
        ref = cid.calc(make(src, dst, itype, code))
        sp, dp, one_way = icmp_ports(proto, itype, code)
        mine = community_id(proto, _packed(src), sp, _packed(dst), dp, seed, one_way)
    else:
        ref = _reference(proto, src, sport, dst, dport, seed)
        mine = community_id(proto, _packed(src), sport, _packed(dst), dport, seed)
    assert mine == ref


SAMPLES = sorted((Path(__file__).resolve().parents[1] / "sample_pcaps").glob("*.pcap*"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_record_carries_the_reference_packages_community_id(path):
    """flows' community_id equals what the reference package computes from the record's own
    5-tuple (for ICMP: its type and code, as Zeek keys the flow)."""
    for conn in analyze(str(path), analyzers=()).connections:
        r = conn.to_record()
        src, dst, sp, dp = r["id.orig_h"], r["id.resp_h"], r["id.orig_p"], r["id.resp_p"]
        if conn.proto in (1, 58):
            make = (
                communityid.FlowTuple.make_icmp
                if conn.proto == 1
                else communityid.FlowTuple.make_icmp6
            )
            # the record keeps the request type and the reply type (or the code): the request's
            # own message is what the reference hashes
            tpl = make(src, dst, sp, dp if sp not in (8, 128, 13, 15, 17, 10, 133, 135) else 0)
        else:
            tpl = communityid.FlowTuple(conn.proto, src, dst, sp, dp)
        assert r["community_id"] == communityid.CommunityID().calc(tpl), r


# -- a seed other than 0 (--community-id-seed, Config.community_id_seed) ---------------------

SEED = 4242


def _icmp6_echo(src: str = pcapgen.CLIENT6, dst: str = pcapgen.SERVER6, t: float = pcapgen.T0):
    """An ICMPv6 echo request (128) and its reply (129)."""
    frames = []
    for i, (itype, a, b) in enumerate(((128, src, dst), (129, dst, src))):
        echo = dpkt.icmp6.ICMP6.Echo(id=9, seq=1, data=b"y" * 8)
        msg = dpkt.icmp6.ICMP6(type=itype, code=0, data=echo)
        ip = pcapgen.ip_packet(a, b, msg, dpkt.ip.IP_PROTO_ICMP6)
        frames.append((t + i * 0.001, pcapgen.ethernet(ip, from_client=i == 0)))
    return frames


@pytest.fixture(scope="module")
def mixed_pcap(tmp_path_factory):
    """One TCP connection (v4 and v6), a UDP exchange, an ICMP echo and an ICMPv6 echo."""
    frames = (
        pcapgen.clean_close()
        + pcapgen.clean_close(client=pcapgen.CLIENT6, server=pcapgen.SERVER6, t=pcapgen.T0 + 1)
        + pcapgen.udp_exchange(t=pcapgen.T0 + 2)
        + pcapgen.icmp_echo(t=pcapgen.T0 + 3, count=1)
        + _icmp6_echo(t=pcapgen.T0 + 4)
    )
    frames.sort(key=lambda f: f[0])
    return pcapgen.write_pcap(tmp_path_factory.mktemp("cid") / "mixed.pcap", frames)


def _reference_of_record(r: dict, seed: int) -> str:
    src, dst, sp, dp = r["id.orig_h"], r["id.resp_h"], r["id.orig_p"], r["id.resp_p"]
    cid = communityid.CommunityID(seed)
    if r["proto"] == "icmp":
        make = communityid.FlowTuple.make_icmp6 if ":" in src else communityid.FlowTuple.make_icmp
        # the record keeps (request type, reply type); the reference hashes the request's own
        # (type, code)
        return cid.calc(make(src, dst, sp, 0))
    proto = {"tcp": 6, "udp": 17}[r["proto"]]
    return cid.calc(communityid.FlowTuple(proto, src, dst, sp, dp))


def test_the_cli_seed_reaches_every_record(mixed_pcap):
    out = CliRunner().invoke(
        cli, ["flows", mixed_pcap, "--format", "json", "--community-id-seed", str(SEED)]
    )
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in out.stdout.splitlines()]
    kinds = {(r["proto"], ":" in r["id.orig_h"]) for r in records}
    assert kinds == {("tcp", False), ("tcp", True), ("udp", False), ("icmp", False), ("icmp", True)}
    for r in records:
        assert r["community_id"] == _reference_of_record(r, SEED), r
        # the seed changes the hash: a record still carrying seed 0's would fail here
        assert r["community_id"] != _reference_of_record(r, 0), r


def test_the_config_seed_reaches_the_library_and_batch(mixed_pcap, tmp_path):
    records = analyze(mixed_pcap, config=Config(community_id_seed=SEED), analyzers=()).records()
    assert [r.community_id for r in records] == [
        _reference_of_record(r.to_dict(), SEED) for r in records
    ]
    out = CliRunner().invoke(
        cli,
        ["batch", mixed_pcap, "-o", str(tmp_path / "out"), "-j", "1", "--no-report",
         "--community-id-seed", str(SEED)],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    table = pq.read_table(tmp_path / "out" / "connections").to_pylist()
    assert sorted(r["community_id"] for r in table) == sorted(
        _reference_of_record(r, SEED) for r in table
    )


@pytest.mark.parametrize("proto", [47, 50, 132], ids=["gre", "esp", "sctp"])
def test_a_seed_for_other_ip_protocols(proto):
    """flowlens keeps TCP, UDP and ICMP flows only (docs/zeek-conformance.md), so the other
    protocols' hash is checked at the function every record goes through."""
    src, dst = "2001:db8::1", "192.0.2.1"
    for s, d in ((src, "2001:db8::2"), ("192.0.2.2", dst)):
        cid = communityid.CommunityID(SEED)
        tpl = (
            communityid.FlowTuple.make_sctp(s, d, 5000, 6000)
            if proto == 132
            else communityid.FlowTuple(proto, s, d)
        )
        sport, dport = (5000, 6000) if proto == 132 else (None, None)
        assert community_id(proto, _packed(s), sport, _packed(d), dport, SEED) == cid.calc(tpl)


@pytest.mark.parametrize("seed", [-1, 65536, 1.5, True, "1"])
def test_a_seed_outside_0_to_65535_is_refused(seed):
    with pytest.raises(UsageError, match="community_id_seed must be an integer 0..65535"):
        Config(community_id_seed=seed)


def test_the_cli_refuses_a_seed_out_of_range(mixed_pcap):
    out = CliRunner().invoke(cli, ["flows", mixed_pcap, "--community-id-seed", "65536"])
    assert out.exit_code == 2
    assert "65536 is not in the range 0<=x<=65535" in out.stderr

"""Community ID v1 against the specification's sample results and the reference package."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import communityid
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowlens import analyze
from flowlens.core.community_id import community_id, icmp_ports


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

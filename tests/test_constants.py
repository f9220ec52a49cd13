"""flowlens.core.constants: one definition of the shared numbers, the same in the plain-Python
module and in the C declarations compiled modules cimport, and equal to dpkt's."""

from __future__ import annotations

import re
from pathlib import Path

import dpkt
from hypothesis import given
from hypothesis import strategies as st

from flowlens.core import constants as K

PXD = Path(K.__file__).with_suffix(".pxd")


def _pxd_values() -> dict[str, int]:
    """NAME -> value as constants.pxd declares it: enum members and the #defines behind the
    `const long long` externs."""
    text = PXD.read_text()
    values = {}
    enum = text[text.index("cdef enum:") :]
    for name, value in re.findall(r"^\s+(\w+) = (0x[0-9A-Fa-f]+|\d+)\s*$", enum, re.M):
        values[name] = int(value, 0)
    defines = dict(re.findall(r"#define (\w+) \(?(-?0x[0-9A-Fa-f]+|-?\d+)LL\)?", text))
    for name, macro in re.findall(r'const long long (\w+) "(\w+)"', text):
        values[name] = int(defines[macro], 0)
    return values


def test_pxd_declares_every_constant_with_the_py_value():
    py = {n: v for n, v in vars(K).items() if n[0].isupper() and isinstance(v, int)}
    pxd = _pxd_values()
    assert pxd == py


def test_names_and_values_are_dpkt_s():
    for name in ("TH_FIN", "TH_SYN", "TH_RST", "TH_PUSH", "TH_ACK", "TH_URG", "TH_ECE", "TH_CWR"):
        assert getattr(K, name) == getattr(dpkt.tcp, name), name
    for name in (n for n in vars(K) if n.startswith("TCP_OPT_")):
        assert getattr(K, name) == getattr(dpkt.tcp, name), name
    for name in (n for n in vars(K) if n.startswith("ETH_TYPE_")):
        assert getattr(K, name) == getattr(dpkt.ethernet, name), name
    for ours, theirs in [
        ("IPPROTO_ICMP", "IP_PROTO_ICMP"),
        ("IPPROTO_TCP", "IP_PROTO_TCP"),
        ("IPPROTO_UDP", "IP_PROTO_UDP"),
        ("IPPROTO_FRAGMENT", "IP_PROTO_FRAGMENT"),
        ("IPPROTO_AH", "IP_PROTO_AH"),
        ("IPPROTO_ICMPV6", "IP_PROTO_ICMP6"),
    ]:
        assert getattr(K, ours) == getattr(dpkt.ip, theirs), ours
    assert (K.PPP_IP, K.PPP_IP6) == (dpkt.ppp.PPP_IP, dpkt.ppp.PPP_IP6)
    for ours, theirs in [
        ("LINKTYPE_NULL", "DLT_NULL"),
        ("LINKTYPE_ETHERNET", "DLT_EN10MB"),
        ("LINKTYPE_PPP", "DLT_PPP"),
        ("LINKTYPE_LOOP", "DLT_LOOP"),
        ("LINKTYPE_LINUX_SLL", "DLT_LINUX_SLL"),
        ("LINKTYPE_LINUX_SLL2", "DLT_LINUX_SLL2"),
        ("LINKTYPE_IEEE802_11", "DLT_IEEE802_11"),
        ("LINKTYPE_IEEE802_11_RADIOTAP", "DLT_IEEE802_11_RADIO"),
    ]:
        assert getattr(K, ours) == getattr(dpkt.pcap, theirs), ours


def test_decoder_exports_the_same_flag_bits():
    from flowlens.core import decode

    for name in ("TH_FIN", "TH_SYN", "TH_RST", "TH_PUSH", "TH_ACK", "TH_URG", "TH_ECE", "TH_CWR"):
        assert getattr(decode, name) == getattr(K, name)


_SEQ = st.integers(0, 2**32 - 1)


def _signed(a: int, b: int) -> int:
    """RFC 9293 section 3.4's reading of a - b: the representative in [-2**31, 2**31)."""
    d = (a - b) % 2**32
    return d - 2**32 if d >= 2**31 else d


@given(_SEQ, _SEQ)
def test_sequence_comparison_is_modulo_2_32(a, b):
    d = _signed(a, b)
    assert K.seq_diff(a, b) == d
    assert K.seq_gt(a, b) == (0 < d < 2**31)
    assert K.seq_ge(a, b) == (0 <= d < 2**31)
    assert K.seq_lt(a, b) == K.seq_gt(b, a)
    assert K.seq_le(a, b) == K.seq_ge(b, a)


@given(_SEQ, st.integers(-(2**32), 2**32))
def test_seq_add_wraps(a, n):
    assert K.seq_add(a, n) == (a + n) % 2**32


def test_sequence_helpers_across_the_wrap():
    assert K.seq_gt(5, 0xFFFFFFF0) and K.seq_lt(0xFFFFFFF0, 5)
    assert K.seq_diff(5, 0xFFFFFFF0) == 21
    assert not K.seq_gt(7, 7) and K.seq_ge(7, 7) and K.seq_le(7, 7)

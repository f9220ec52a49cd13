"""Community ID v1: the flow hash that Zeek, Suricata, Arkime and Elastic share.

From the specification (corelight/community-id-spec, README "Pseudo code" and "Technical
details"): SHA-1 over seed (2 bytes), the two addresses, the IP protocol (1 byte), a zero pad
byte and, for protocols with ports, the two ports (2 bytes each), all in network byte order,
with the endpoints ordered so that the smaller (address, port) comes first; the digest in
base64, after "1:". ICMP and ICMPv6 use Zeek's mapping of type and code to ports
(src/analyzer/protocol/icmp/ICMP.cc: ICMP4_counterpart / ICMP6_counterpart): a request and
its reply become one two-way flow (type, counterpart type); any other message is one-way
(type, code) and is hashed in the sender's order, without reordering.
"""

from __future__ import annotations

import struct
from binascii import b2a_base64
from hashlib import sha1

__all__ = ["community_id", "icmp_ports"]

IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
#: protocols whose flows carry ports in the hash
_PORTED = frozenset((IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMP, IPPROTO_ICMPV6))

# Zeek's ICMP4_counterpart: echo, router solicitation/advertisement, timestamp, information,
# address mask
_ICMP4 = {8: 0, 0: 8, 10: 9, 9: 10, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17}
# Zeek's ICMP6_counterpart: echo, MLD query/report, router and neighbour discovery, node
# information (who-are-you), home agent address discovery
_ICMP6 = {
    128: 129, 129: 128, 130: 131, 131: 130, 133: 134, 134: 133, 135: 136, 136: 135,
    139: 140, 140: 139, 144: 145, 145: 144,
}  # fmt: skip

# the hashed bytes in one pack each (seed, addresses, protocol, pad, ports): one call instead of
# five concatenations, which matters at a million records
_WITH_PORTS = {4: struct.Struct("!H4s4sBxHH").pack, 16: struct.Struct("!H16s16sBxHH").pack}
_NO_PORTS = {4: struct.Struct("!H4s4sBx").pack, 16: struct.Struct("!H16s16sBx").pack}


def icmp_ports(proto: int, icmp_type: int, icmp_code: int) -> tuple[int, int, bool]:
    """(source port, destination port, one-way) that ICMP/ICMPv6 `icmp_type`/`icmp_code` stand
    for in the hash (Zeek's counterpart mapping)."""
    pairs = _ICMP6 if proto == IPPROTO_ICMPV6 else _ICMP4
    other = pairs.get(icmp_type)
    if other is None:
        return icmp_type, icmp_code, True
    return icmp_type, other, False


def community_id(
    proto: int,
    saddr: bytes,
    sport: int | None,
    daddr: bytes,
    dport: int | None,
    seed: int = 0,
    one_way: bool = False,
) -> str:
    """Community ID v1 of a flow. Addresses are packed (4 or 16 bytes); ports are ignored for
    protocols without them; for ICMP pass the port equivalents of `icmp_ports` (and its
    one-way flag). `seed` is 0..65535."""
    ported = proto in _PORTED and sport is not None and dport is not None
    if not one_way and (daddr < saddr or (daddr == saddr and ported and dport < sport)):  # type: ignore[operator]
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    n = len(saddr)
    if ported:
        data = _WITH_PORTS[n](seed, saddr, daddr, proto, sport, dport)
    else:
        data = _NO_PORTS[n](seed, saddr, daddr, proto)
    return "1:" + b2a_base64(sha1(data).digest(), newline=False).decode("ascii")

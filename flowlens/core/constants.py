"""The numbers flowlens shares between modules: sentinels, TCP flag bits, link types,
ethertypes, IP protocol numbers, TCP option kinds, and 32-bit sequence-number comparison.

One definition of each. Names follow dpkt's (`dpkt.tcp.TH_SYN`, `dpkt.tcp.TCP_OPT_MSS`,
`dpkt.ethernet.ETH_TYPE_IP`, `dpkt.ip.IP_PROTO_TCP`) and libpcap's LINKTYPE_* registry
(https://www.tcpdump.org/linktypes.html); tests/test_constants.py checks the values against
dpkt's, so running flowlens does not import dpkt.

`constants.pxd` declares the same names for compiled modules: the integers as a C `enum` and
`#define`s, the sequence helpers as `cdef inline` functions, so a module that cimports them
compiles them to C constants and inline arithmetic (no call, no Python object). This module
is never compiled itself: the plain-Python side reads the values here, and the test checks
that the `.pxd` says the same.
"""

from __future__ import annotations

# -- sentinels (C long long) ------------------------------------------------------------------
#: "no value yet" for an ISN, a sequence number or a timestamp in ns (no real one is that)
UNSET = -0x4000000000000000
#: "no deadline": later than every timestamp
NEVER = 0x7FFFFFFFFFFFFFFF

# -- TCP header flag bits (RFC 9293 section 3.1; RFC 3168 for ECE/CWR; dpkt.tcp.TH_*) --------
TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PUSH = 0x08
TH_ACK = 0x10
TH_URG = 0x20
TH_ECE = 0x40
TH_CWR = 0x80

# -- TCP option kinds (RFC 9293 section 3.2, RFC 7323, RFC 2018; dpkt.tcp.TCP_OPT_*) ---------
TCP_OPT_EOL = 0
TCP_OPT_NOP = 1
TCP_OPT_MSS = 2
TCP_OPT_WSCALE = 3
TCP_OPT_SACKOK = 4
TCP_OPT_SACK = 5
TCP_OPT_TIMESTAMP = 8

# -- IP protocol numbers (IANA; dpkt.ip.IP_PROTO_*, and the socket module's IPPROTO_*) -------
IPPROTO_ICMP = 1
IPPROTO_IPIP = 4  # IPv4 encapsulation (RFC 2003): IP-in-IP
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41  # IPv6 encapsulation (RFC 2473, RFC 4213): 6in4, 6in6
IPPROTO_FRAGMENT = 44  # IPv6 Fragment header (RFC 8200 section 4.5)
IPPROTO_GRE = 47  # Generic Routing Encapsulation (RFC 2784, RFC 2890; RFC 2637 for PPTP)
IPPROTO_AH = 51  # Authentication Header (RFC 4302), an IPv6 extension header
IPPROTO_ICMPV6 = 58

# -- ethertypes (IEEE registry; dpkt.ethernet.ETH_TYPE_*) ------------------------------------
ETH_TYPE_IP = 0x0800
ETH_TYPE_IP6 = 0x86DD
ETH_TYPE_8021Q = 0x8100  # 802.1Q VLAN tag
ETH_TYPE_8021AD = 0x88A8  # 802.1ad (QinQ outer tag)
ETH_TYPE_QINQ1 = 0x9100  # legacy QinQ
ETH_TYPE_QINQ2 = 0x9200  # legacy QinQ
ETH_TYPE_MPLS = 0x8847
ETH_TYPE_MPLS_MCAST = 0x8848
ETH_TYPE_PPPoE = 0x8864  # PPPoE session stage (RFC 2516)
ETH_TYPE_PPP = 0x880B  # PPP: the protocol type of enhanced GRE (PPTP, RFC 2637 section 4.1)
ETH_TYPE_TEB = 0x6558  # transparent Ethernet bridging: Ethernet in GRE, in Geneve

# -- ethertypes dpkt does not name (IEEE registry; Zeek's packet analyzers) ------------------
ETHERTYPE_PBB = 0x88E7  # 802.1ah provider backbone bridging (I-TAG)
ETHERTYPE_ERSPAN = 0x88BE  # ERSPAN type I and II (Cisco), in GRE
ETHERTYPE_ERSPAN3 = 0x22EB  # ERSPAN type III, in GRE
ETHERTYPE_VNTAG = 0x8926  # Cisco VN-Tag (802.1Qbh)
ETHERTYPE_FABRICPATH = 0x8903  # Cisco FabricPath: a 16-byte outer header, then Ethernet

# -- PPP protocol field values (RFC 1661, RFC 1332, RFC 5072; dpkt.ppp.PPP_IP/PPP_IP6) -------
PPP_IP = 0x0021
PPP_IP6 = 0x0057

# -- link types (libpcap's LINKTYPE_* registry, https://www.tcpdump.org/linktypes.html) ------
LINKTYPE_NULL = 0  # BSD loopback: 4-byte address family in host byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_PPP = 9
LINKTYPE_FDDI = 10
DLT_RAW_12 = 12  # DLT_RAW on most BSDs, written as is by some tools (LINKTYPE_RAW's meaning)
DLT_RAW_14 = 14  # DLT_RAW on OpenBSD (LINKTYPE_RAW's meaning)
LINKTYPE_RAW = 101
LINKTYPE_IEEE802_11 = 105  # 802.11 frames without a radio header (dpkt.pcap.DLT_IEEE802_11)
LINKTYPE_LOOP = 108  # OpenBSD loopback: address family in network byte order
LINKTYPE_LINUX_SLL = 113  # Linux cooked capture v1 (tcpdump -i any)
LINKTYPE_IEEE802_11_RADIOTAP = 127  # radiotap header, then 802.11 (dpkt's DLT_IEEE802_11_RADIO)
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276  # Linux cooked capture v2

# -- tunnels: Zeek's defaults (scripts/base/packet-protocols/*/main.zeek; init-bare.zeek) -----
#: Tunnel::max_depth: encapsulations decoded before giving up ("exceeded_tunnel_max_depth")
TUNNEL_MAX_DEPTH = 4
#: UDP ports Zeek decapsulates on: VXLAN::vxlan_ports, Geneve::geneve_ports, GTPV1::gtpv1_ports
#: (user plane 2152, control 2123), TEREDO::teredo_ports, AYIYA::ayiya_ports, GRE::gre_ports
PORT_VXLAN = 4789
PORT_GENEVE = 6081
PORT_GTPV1_U = 2152
PORT_GTPV1_C = 2123
PORT_TEREDO = 3544
PORT_AYIYA = 5072
PORT_GRE = 4754
#: the tunnels a UDP datagram can carry (what decode's port test and tunnels' detection answer)
TUNNEL_VXLAN = 1
TUNNEL_GENEVE = 2
TUNNEL_GTPV1 = 3
TUNNEL_TEREDO = 4
TUNNEL_AYIYA = 5
TUNNEL_GRE = 6

# -- 32-bit sequence-number space (RFC 9293 section 3.4) --------------------------------------
#: sequence numbers (and TCP timestamps, RFC 7323 section 5.2) live modulo 2**32
SEQ_MASK = 0xFFFFFFFF
#: half the space: a distance below this is "after", at or above it "before"
SEQ_HALF = 0x80000000


def seq_lt(a: int, b: int) -> bool:
    """`a < b` in sequence space (RFC 9293 section 3.4: modulo 2**32, within half the space)."""
    return 0 < ((b - a) & 0xFFFFFFFF) < 0x80000000


def seq_le(a: int, b: int) -> bool:
    """`a <= b` in sequence space."""
    return ((b - a) & 0xFFFFFFFF) < 0x80000000


def seq_gt(a: int, b: int) -> bool:
    """`a > b` in sequence space."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


def seq_ge(a: int, b: int) -> bool:
    """`a >= b` in sequence space."""
    return ((a - b) & 0xFFFFFFFF) < 0x80000000


def seq_diff(a: int, b: int) -> int:
    """The signed distance `a - b` in sequence space, in [-2**31, 2**31)."""
    return ((a - b + 0x80000000) & 0xFFFFFFFF) - 0x80000000


def seq_add(a: int, n: int) -> int:
    """`a + n` wrapped into sequence space [0, 2**32)."""
    return (a + n) & 0xFFFFFFFF


# -- header words (network byte order) in a frame's bytes -------------------------------------
# decode.py and tunnels.py read `d` as a C pointer when compiled (constants.pxd's inline
# functions) and as a memoryview in plain Python (these).


def be16(d: bytes | memoryview, i: int) -> int:
    """The big-endian 16-bit word at `d[i]`."""
    return (d[i] << 8) | d[i + 1]


def be32(d: bytes | memoryview, i: int) -> int:
    """The big-endian 32-bit word at `d[i]`."""
    return (d[i] << 24) | (d[i + 1] << 16) | (d[i + 2] << 8) | d[i + 3]


def u32(d: bytes | memoryview, i: int, little: bool) -> int:
    """The unsigned 32-bit word at `d[i]`, little- or big-endian (a capture file's byte order)."""
    if little:
        return (d[i + 3] << 24) | (d[i + 2] << 16) | (d[i + 1] << 8) | d[i]
    return be32(d, i)

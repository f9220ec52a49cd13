# C declarations of constants.py for compiled modules (see constants.py: every value here must
# equal the one there; tests/test_constants.py checks). Nothing here needs constants.py to be
# compiled: enum values, #defines and inline functions live in the cimporting module's C code.
#
# Use, in a compiled module's .pxd:   from flowlens.core.constants cimport TH_SYN, seq_gt
# and in its .py, for plain Python:   if not cython.compiled: from .constants import ...
# or as a module:  .pxd `from flowlens.core cimport constants as K`, .py
# `from flowlens.core import constants as K`, then `K.TH_SYN` is a C constant when compiled.

cdef extern from *:
    """
    #define FLOWLENS_UNSET (-0x4000000000000000LL)
    #define FLOWLENS_NEVER 0x7FFFFFFFFFFFFFFFLL
    #define FLOWLENS_SEQ_MASK 0xFFFFFFFFLL
    #define FLOWLENS_SEQ_HALF 0x80000000LL
    """
    const long long UNSET "FLOWLENS_UNSET"
    const long long NEVER "FLOWLENS_NEVER"
    const long long SEQ_MASK "FLOWLENS_SEQ_MASK"
    const long long SEQ_HALF "FLOWLENS_SEQ_HALF"

cdef enum:
    TH_FIN = 0x01
    TH_SYN = 0x02
    TH_RST = 0x04
    TH_PUSH = 0x08
    TH_ACK = 0x10
    TH_URG = 0x20
    TH_ECE = 0x40
    TH_CWR = 0x80

    TCP_OPT_EOL = 0
    TCP_OPT_NOP = 1
    TCP_OPT_MSS = 2
    TCP_OPT_WSCALE = 3
    TCP_OPT_SACKOK = 4
    TCP_OPT_SACK = 5
    TCP_OPT_TIMESTAMP = 8

    IPPROTO_ICMP = 1
    IPPROTO_IPIP = 4
    IPPROTO_TCP = 6
    IPPROTO_UDP = 17
    IPPROTO_IPV6 = 41
    IPPROTO_FRAGMENT = 44
    IPPROTO_GRE = 47
    IPPROTO_AH = 51
    IPPROTO_ICMPV6 = 58

    ETH_TYPE_IP = 0x0800
    ETH_TYPE_IP6 = 0x86DD
    ETH_TYPE_8021Q = 0x8100
    ETH_TYPE_8021AD = 0x88A8
    ETH_TYPE_QINQ1 = 0x9100
    ETH_TYPE_QINQ2 = 0x9200
    ETH_TYPE_MPLS = 0x8847
    ETH_TYPE_MPLS_MCAST = 0x8848
    ETH_TYPE_PPPoE = 0x8864
    ETH_TYPE_PPP = 0x880B
    ETH_TYPE_TEB = 0x6558

    ETHERTYPE_PBB = 0x88E7
    ETHERTYPE_ERSPAN = 0x88BE
    ETHERTYPE_ERSPAN3 = 0x22EB
    ETHERTYPE_VNTAG = 0x8926
    ETHERTYPE_FABRICPATH = 0x8903

    PPP_IP = 0x0021
    PPP_IP6 = 0x0057

    LINKTYPE_NULL = 0
    LINKTYPE_ETHERNET = 1
    LINKTYPE_PPP = 9
    LINKTYPE_FDDI = 10
    DLT_RAW_12 = 12
    DLT_RAW_14 = 14
    LINKTYPE_RAW = 101
    LINKTYPE_IEEE802_11 = 105
    LINKTYPE_LOOP = 108
    LINKTYPE_LINUX_SLL = 113
    LINKTYPE_IEEE802_11_RADIOTAP = 127
    LINKTYPE_IPV4 = 228
    LINKTYPE_IPV6 = 229
    LINKTYPE_LINUX_SLL2 = 276

    TUNNEL_MAX_DEPTH = 4
    PORT_VXLAN = 4789
    PORT_GENEVE = 6081
    PORT_GTPV1_U = 2152
    PORT_GTPV1_C = 2123
    PORT_TEREDO = 3544
    PORT_AYIYA = 5072
    PORT_GRE = 4754
    TUNNEL_VXLAN = 1
    TUNNEL_GENEVE = 2
    TUNNEL_GTPV1 = 3
    TUNNEL_TEREDO = 4
    TUNNEL_AYIYA = 5
    TUNNEL_GRE = 6


# RFC 9293 section 3.4: sequence numbers compare modulo 2**32, within half the space. (The
# mask and the half are the long long constants above: a bare 0xFFFFFFFF or 0x80000000 does
# not fit a C int, and Cython would compute with Python integers.)
cdef inline bint seq_lt(long long a, long long b) noexcept:
    return 0 < ((b - a) & SEQ_MASK) < SEQ_HALF

cdef inline bint seq_le(long long a, long long b) noexcept:
    return ((b - a) & SEQ_MASK) < SEQ_HALF

cdef inline bint seq_gt(long long a, long long b) noexcept:
    return 0 < ((a - b) & SEQ_MASK) < SEQ_HALF

cdef inline bint seq_ge(long long a, long long b) noexcept:
    return ((a - b) & SEQ_MASK) < SEQ_HALF

cdef inline long long seq_diff(long long a, long long b) noexcept:
    return ((a - b + SEQ_HALF) & SEQ_MASK) - SEQ_HALF

cdef inline long long seq_add(long long a, long long n) noexcept:
    return (a + n) & SEQ_MASK

# big-endian header words at d[i] (decode.py, tunnels.py; constants.py has the Python twins)
cdef inline unsigned int be16(const unsigned char* d, Py_ssize_t i) noexcept:
    return (<unsigned int>d[i] << 8) | d[i + 1]

cdef inline unsigned int be32(const unsigned char* d, Py_ssize_t i) noexcept:
    return ((<unsigned int>d[i] << 24) | (<unsigned int>d[i + 1] << 16)
            | (<unsigned int>d[i + 2] << 8) | d[i + 3])

# the unsigned 32-bit word at d[i] in a capture file's byte order (capture.py, pcapng.py)
cdef inline unsigned int u32(const unsigned char* d, Py_ssize_t i, bint little) noexcept:
    if little:
        return ((<unsigned int>d[i + 3] << 24) | (<unsigned int>d[i + 2] << 16)
                | (<unsigned int>d[i + 1] << 8) | d[i])
    return be32(d, i)

# C declarations for tunnels.py when Cython compiles it (see setup.py); tunnels.py stays the
# source of truth and runs unchanged as plain Python. Attribute meanings are documented there.
# decode.pxd cimports TunnelDecoder (Decoder's base class) and detect_tunnel.

from flowlens.core.links cimport LinkDecoder
from flowlens.core.packet cimport PacketFields

# the shared constants: K.NAME is a C constant, K.be16 an inline function (see constants.pxd)
from flowlens.core cimport constants as K

cdef class TunnelDecoder(LinkDecoder):
    cdef public int max_depth
    cdef public object tunnel_errors
    cdef int _depth
    cdef object _encap
    cdef set _violated

    # `p`: the outer packet (a decode.Packet), read through its fields' base class
    cdef _inner(self, layer, long long frame, long long ts_ns, unsigned char* d, Py_ssize_t n,
                Py_ssize_t off, int how)
    cdef _ip_tunnel(self, PacketFields p, unsigned char* d, Py_ssize_t pos, Py_ssize_t end)
    cdef _gre(self, PacketFields p, unsigned char* d, Py_ssize_t pos, Py_ssize_t end, parent)
    cdef _violation(self, int kind, PacketFields p, str reason)
    cdef _udp_tunnel(self, int kind, PacketFields p, unsigned char* d, Py_ssize_t pos, Py_ssize_t end,
                     Py_ssize_t whole)

cdef int detect_tunnel(unsigned char* d, Py_ssize_t pos, Py_ssize_t end) noexcept

# C declarations for fragments.py when Cython compiles it (see setup.py); fragments.py stays
# the source of truth and runs unchanged as plain Python. decode.pxd cimports FragmentDecoder.

from flowlens.core.packet cimport PacketFields
from flowlens.core.tunnels cimport TunnelDecoder

# the shared constants: K.NAME is a C constant (see constants.pxd)
from flowlens.core cimport constants as K

cdef class FragmentDecoder(TunnelDecoder):
    cdef dict _frags

    # Decoder overrides it (the transport layer)
    cdef _transport(self, PacketFields p, unsigned char* d, Py_ssize_t pos, Py_ssize_t cap_end,
                    Py_ssize_t seg_len, long long pseudo)
    # Decoder overrides it (the UDP tunnels' ports and detection)
    cdef _reassembled_udp(self, PacketFields p, bytes head, Py_ssize_t whole)
    cdef _fragment(self, key, PacketFields p, unsigned char* d, Py_ssize_t pos,
                   Py_ssize_t cap_end, Py_ssize_t offset, unsigned int more, Py_ssize_t frag_len,
                   Py_ssize_t ip_hdr_len)

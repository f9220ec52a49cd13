# C declarations for decode.py when Cython compiles it (see setup.py); decode.py stays the
# source of truth and runs unchanged as plain Python. Field meanings are documented there.

# the decoder borrows a frame's bytes through the buffer protocol (used only when compiled)
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from flowlens.core.capture cimport FrameRef
# Decoder's base class (links <- tunnels <- Decoder) and the UDP tunnel detection: a C call
from flowlens.core.tunnels cimport TunnelDecoder, detect_tunnel

# the shared constants: K.NAME is a C constant, K.be16 an inline function (see constants.pxd)
from flowlens.core cimport constants as K

# the address cache compares bytes in place (used only when compiled)
from libc.string cimport memcmp

cdef class Packet:
    cdef public long long frame
    cdef public long long ts_ns
    cdef public int version
    cdef public object src
    cdef public object dst
    cdef public int proto
    cdef public int sport
    cdef public int dport
    cdef public int flags
    cdef public long long seq
    cdef public long long ack
    cdef public int win
    cdef public long long plen
    cdef public long long ip_len
    cdef public long long caplen_short
    cdef public object raw_options
    cdef public object bad_checksum
    cdef public object quote
    cdef public int fragment
    cdef public object vlan
    cdef public object inner_vlan
    cdef public object udp_head
    cdef public long long tsval
    cdef public long long tsecr
    cdef public object payload
    cdef public object encap
    cdef public object tunnel
    cdef public object _options


cpdef int window_scale(bytes raw) except? -2


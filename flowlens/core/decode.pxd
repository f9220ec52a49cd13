# C declarations for decode.py when Cython compiles it (see setup.py); decode.py stays the
# source of truth and runs unchanged as plain Python. Field meanings are documented there.

# the decoder borrows a frame's bytes through the buffer protocol (used only when compiled)
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from flowlens.core.frame cimport FrameRef
from flowlens.core.packet cimport PacketFields
# Decoder's base class (links <- tunnels <- fragments <- Decoder) and the UDP tunnel
# detection: a C call
from flowlens.core.fragments cimport FragmentDecoder
from flowlens.core.tunnels cimport detect_tunnel

# the shared constants: K.NAME is a C constant, K.be16 an inline function (see constants.pxd)
from flowlens.core cimport constants as K

# the address cache compares bytes in place (used only when compiled)
from libc.string cimport memcmp

# the fields are PacketFields' (packet.pxd); Packet is declared here, where everything cimports it
cdef class Packet(PacketFields):
    pass


cpdef int window_scale(bytes raw) except? -2


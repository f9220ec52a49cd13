# C declarations for analyzer.py when Cython compiles it (see setup.py): the hooks are cpdef, so
# the compiled connection table calls a compiled analyzer's hooks as C calls (a Python subclass
# overrides them as usual). `conn` is untyped here: connections.pxd cimports this file.

from flowlens.core.decode cimport Packet


cdef class Analyzer:
    cdef public Py_ssize_t slot
    cpdef object state_of(self, object conn)
    cpdef object on_start(self, object conn, Packet pkt)
    cpdef void on_packet(self, object conn, Packet pkt, bint from_orig)
    cpdef void on_flip(self, object conn)
    cpdef void on_end(self, object conn)

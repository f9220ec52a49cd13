# C types for holds.py when Cython compiles it (see setup.py): OpenStarts hears of every TCP
# connection's start and end (a C call from the table and from AnomalyDetector.parts), so it
# and its per-pair entries are extension types. holds.py stays plain Python (annotation typing
# off); the types are named in its @cython.locals.

from flowlens.core.analyzer cimport Analyzer
from flowlens.core.connections cimport Connection
from flowlens.core.decode cimport Packet


cdef class _Pair:
    cdef public dict open
    cdef public object starts
    cdef public Py_ssize_t head
    cdef public dict gone
    cdef public long long latest
    cdef public bint unordered


cdef class OpenStarts(Analyzer):
    cdef public dict pairs
    cpdef object on_start(self, object conn, Packet pkt)
    cpdef long long done(self, object conn) except? -1

# C declarations for frame.py when Cython compiles it (see setup.py); frame.py stays the
# source of truth and runs unchanged as plain Python. Field meanings are documented there.
# capture.pxd, pcapng.pxd, decode.pxd and pipeline.pxd cimport FrameRef from here.

cimport cython


@cython.final
cdef class FrameRef:
    cdef public long long frame
    cdef public long long ts_ns
    cdef public int linktype
    cdef public bytes buf
    cdef public Py_ssize_t start
    cdef public Py_ssize_t end
    cdef public long long wirelen
    cdef public Py_ssize_t rec_start
    cdef public Py_ssize_t rec_end

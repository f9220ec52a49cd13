# C declarations for packetlog.py when Cython compiles it (see setup.py); packetlog.py stays the
# source of truth and runs unchanged as plain Python. Field meanings are documented there. A
# method declared here must keep exactly these types in packetlog.py's annotations.

cimport cpython.array

from flowlens.core.connections cimport Connection
from flowlens.core.analyzer cimport Analyzer
from flowlens.core.decode cimport Packet
from flowlens.core.tcpstate cimport TcpTracker

# constants: C integers in the compiled module (so not attributes of it)
cdef int TH_ACK, TH_FIN, TH_RST, TH_SYN
cdef long long _M32
cdef dict _STATE_CODE
cdef list _STATE_NAMES
cdef Py_ssize_t _WIDTH, _FRAME, _TS, _FROM_ORIG, _PROTO, _FLAGS, _SEQ, _ACK, _WIN, _PLEN, _ORIG, _RESP, _TL0, _TL1


cdef class ConnLog:
    cdef public object _ackdat_ms
    cdef public list _breaks
    cdef cpython.array.array _cells
    cdef public object _changes
    cdef public Py_ssize_t _codes_at
    cdef public long long _end_ns
    cdef public bint _ended
    cdef public dict _found
    cdef public object _items
    cdef public Py_ssize_t _notes_len
    cdef public long long _orig_code
    cdef public object _owner
    cdef public dict _rare
    cdef public bint _rejected
    cdef public bint _reset_seen
    cdef public long long _resp_code
    cdef public long long _retrans
    cdef public object _synack_ms
    cdef public object _tcp
    cdef public Py_ssize_t _tl_len
    cdef public list _zero_win
    cdef public list base_seq
    cdef public long long packets
    cdef public str uid


cdef class PacketCollector(Analyzer):
    cdef public object wants
    cdef public bint full
    cdef public Py_ssize_t collapse_after
    cdef public Py_ssize_t max_findings
    cdef public frozenset pinned
    cdef public object breaks
    cdef public object tcp
    cdef public long long kept
    # the hooks (C calls from the table; see flowlens/core/analyzer.py)
    cpdef object on_start(self, object conn, Packet pkt)
    cpdef void on_packet(self, object conn, Packet pkt, bint from_orig)
    cpdef void on_flip(self, object conn)
    cpdef void on_end(self, object conn)
    cdef void _add(self, ConnLog log, Connection conn, Packet pkt, bint from_orig)
    cdef list _core_findings(self, ConnLog log, Connection conn, Packet pkt, int side)

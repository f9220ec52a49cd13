# C declarations for rtt.py when Cython compiles it (see setup.py); rtt.py stays the source of
# truth and runs unchanged as plain Python. Field meanings are documented there. A method
# declared here must keep exactly these types in rtt.py's annotations.

cimport cpython.array
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memmove

from flowlens.core.connections cimport Connection
from flowlens.core.analyzer cimport Analyzer
from flowlens.core.decode cimport Packet

# RFC 9293 section 3.4 sequence arithmetic: inline C (see constants.pxd)
from flowlens.core.constants cimport seq_add, seq_diff, seq_ge, seq_gt

# constants: C integers in the compiled module (so not attributes of it)
cdef int TH_ACK, TH_FIN, TH_RST, TH_SYN
cdef int IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP
cdef int SRC_ACK, SRC_TS, SRC_DNS, SRC_UDP, SRC_ICMP


cdef class Samples:
    cdef cpython.array.array _data  # (see Samples.data)
    cdef long long _first[5]
    cdef public long long n
    cdef public long long cap
    cdef long long _src[5]  # samples per source (by_source)
    cdef public object _agg
    cdef public object _rng
    cdef public object _seed
    cdef public int _leg
    cpdef void add(self, long long ts_ns, long long rtt_ns, long long frame,
                   long long answer_frame, int source)
    # public accessors (reports/rtt.py reads a leg through these)
    cpdef bint past_cap(self)
    cpdef long long single_rtt_ns(self)
    cpdef long long source_count(self, int source)


cdef class _Sender:
    cdef long long *segs
    cdef Py_ssize_t seg_size
    cdef long long _inline[12]  # segs until more than 4 segments are in flight
    cdef public Py_ssize_t seg_head
    cdef public Py_ssize_t seg_tail
    cdef public long long nxt
    cdef public long long karn_start
    cdef public long long karn_end
    cdef public object tsq
    cdef public object last_tsval
    cdef public long long untracked
    cdef public bint zero_window


cdef class ConnectionRtt:
    cdef Samples _samples0, _samples1
    cdef long long _karn0, _karn1
    cdef _Sender _sender0, _sender1
    cdef public object pending
    cdef public long long _cap
    cdef public object _uid
    cdef void _add(self, int leg, long long ts_ns, long long rtt_ns, long long frame,
                   long long answer_frame, int src)
    # public accessors (reports/rtt.py reads the legs through these)
    cpdef Samples leg_samples(self, int leg)
    cpdef long long leg_karn_skipped(self, int leg)


cdef class RttCollector(Analyzer):
    cdef public object config
    cdef public long long _timeout_ns
    cdef public long long _max_outstanding
    cdef public long long _max_tsvals
    cdef public long long _dup_ns
    cdef public long long _max_samples
    # the hooks (C calls from the table; see flowlens/core/analyzer.py)
    cpdef object state_of(self, object conn)
    cpdef object on_start(self, object conn, Packet pkt)
    cpdef void on_packet(self, object conn, Packet pkt, bint from_orig)
    cdef void _tcp(self, ConnectionRtt st, Packet pkt, int side)
    cdef void _timestamps(self, ConnectionRtt st, Packet pkt, int side, _Sender me, _Sender peer,
                          bint sampled, bint retransmitted)
    cdef void _dns(self, ConnectionRtt st, Packet pkt, int side)
    cdef void _reply(self, ConnectionRtt st, Packet pkt, bint from_orig, int src)

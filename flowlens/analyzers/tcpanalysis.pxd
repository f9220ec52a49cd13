# C declarations for tcpanalysis.py when Cython compiles it (see setup.py); tcpanalysis.py stays
# the source of truth and runs unchanged as plain Python. Field meanings are documented there.

from flowlens.core.connections cimport Connection
from flowlens.core.analyzer cimport Analyzer
from flowlens.core.decode cimport Packet, window_scale

# constants: C integers in the compiled module (so not attributes of it)
cdef int TH_ACK, TH_FIN, TH_RST, TH_SYN
cdef long long _M, _H

# RFC 9293 section 3.4 sequence comparison: inline C (see constants.pxd)
from flowlens.core.constants cimport seq_ge, seq_gt
cdef int _SFR, _SF
cdef int RETRANS, FAST, SPURIOUS, OOO, LOST, ACKED_UNSEEN, WINDOW_UPDATE, WINDOW_FULL
cdef int KEEP_ALIVE, KEEP_ALIVE_ACK, DUP_ACK, ZWP, ZERO_WINDOW, ZWP_ACK, _ANY_RETRANS
cdef long long _OOO_DEFAULT_NS, _FAST_WINDOW_NS


cdef class DirectionStats:
    cdef public long long nextseq
    cdef public long long nextseq_ts
    cdef public long long nextseq_frame
    cdef public long long nextseq_tsval
    cdef public long long fin_next
    cdef public long long maxseqtobeacked
    cdef public long long lastack
    cdef public long long lastack_ts
    cdef public long long window
    cdef public int win_scale
    cdef public int last_was_syn
    cdef public long long dupacknum
    cdef public long long lastnondupack
    cdef public int lastflags
    cdef public object counts
    cdef public long long data_segments
    cdef public long long data_bytes
    cdef public long long retrans_segments
    cdef public long long retrans_bytes
    cdef public long long retrans_syn
    cdef public long long retrans_fin
    cdef public long long resent_ooo
    cdef public long long resent_ooo_bytes
    cdef public long long zero_window_ns
    cdef public long long zero_window_max_ns
    cdef public object zero_window_since_ns
    cdef public long long zero_window_spells
    cdef public object keep_alive_first_ns
    cdef public object keep_alive_last_ns
    cdef public long long window_probes
    cdef public object evidence
    cdef public object first_ns


cdef class TcpaState:
    cdef public tuple dirs
    cdef public int first_flags
    cdef public bint first_from_orig
    cdef public long long first_rtt_ns
    cdef public long long mru_syn_ns
    cdef public object reply_flags
    cdef public object rst
    cdef public int syn_side
    cdef public object syns


cdef class TcpAnalyzer(Analyzer):
    cdef public bint keep_frames
    cdef public object wants
    cdef public dict _frames
    # the hooks (C calls from the table; see flowlens/core/analyzer.py)
    cpdef object state_of(self, object conn)
    cpdef object on_start(self, object conn, Packet pkt)
    cpdef void on_packet(self, object conn, Packet pkt, bint from_orig)
    cpdef void on_flip(self, object conn)

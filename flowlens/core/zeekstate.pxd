# C declarations for zeekstate.py when Cython compiles it (see setup.py); zeekstate.py stays the
# source of truth and runs unchanged as plain Python. What each field and method means is
# documented there.
#
# Sequence numbers: raw TCP seq/ack values (32 bits) and Zeek's int64 start_seq are long long;
# relative sequence numbers, which the Python code masks to Zeek's uint64 (`& _M64`), are
# unsigned long long, so C's wrap-around is the mask. Counters and byte counts are long long.
#
# For another compiled module: `from flowlens.core.zeekstate cimport ZeekTcp, ZeekUdp`, then
# `z.packet(...)` on a variable typed ZeekTcp/ZeekUdp is a C call, and the fields below can be
# read directly (e.g. `z._close_complete`, what the `close_complete` property returns).

cimport cython

# RFC 9293 section 3.4 sequence arithmetic (Zeek's seq_delta is seq_diff): inline C
from flowlens.core.constants cimport seq_add, seq_diff

# Module constants (plain ints in the .py).
cdef int _INACTIVE, _SYN_SENT, _SYN_ACK_SENT, _PARTIAL, _ESTABLISHED, _CLOSED, _RESET
cdef long long _M32, _TOO_LARGE_SEQ_DELTA
cdef unsigned long long _M64
cdef int TH_ACK, TH_FIN, TH_RST, TH_SYN, _SFR
cdef int _HIST_SYN, _HIST_FIN, _HIST_RST, _HIST_FIN_RST, _HIST_DATA, _HIST_ACK, _HIST_MULTI_FLAG
cdef int _DO_CLOSE, _FLIPPED, _SEEN_ORIG, _SEEN_RESP


@cython.final
cdef class _Endpoint:
    cdef bint is_orig
    cdef int state
    cdef int prev_state
    cdef long long start
    cdef long long last
    cdef long long ack
    cdef long long seq_wraps
    cdef long long ack_wraps
    cdef long long fin_cnt
    cdef long long rst_cnt
    cdef unsigned long long fin_seq
    cdef unsigned long long hist_syn
    cdef unsigned long long hist_fin
    cdef unsigned long long hist_rst
    cdef long long chk_cnt
    cdef long long rxmt_cnt
    cdef long long win0_cnt
    cdef long long gap_cnt
    cdef long long pkts
    cdef unsigned long long r_last
    cdef unsigned long long r_trim
    cdef list r_ooo
    cdef bint r_skip
    cdef bint did_close

    cdef void set_state(self, int new_state) noexcept
    cdef void init_seqs(self, long long start, long long last) noexcept
    cdef unsigned long long acked_rel(self) noexcept
    cdef bint no_data_acked(self) noexcept
    cdef unsigned long long size(self, _Endpoint peer) noexcept


cdef class ZeekTcp:
    cdef _Endpoint _orig
    cdef _Endpoint _resp
    cdef str _history
    cdef int _hist_seen
    cdef bint _is_partial
    cdef int _first_seen
    cdef long long _missed
    cdef bint _close_complete
    # the class-level tunables (Zeek counts: uint64), read once per connection
    cdef unsigned long long _max_initial_window
    cdef unsigned long long _max_above_hole
    cdef unsigned long long _excessive_data
    cdef bint _report_gaps_for_partial

    cdef bint _check(self, _Endpoint ep, int mask, str code) except -1
    cdef void _add(self, _Endpoint ep, str code)
    cpdef void flip(self)
    cpdef tuple record_sizes(self)
    cpdef bint is_closed(self)
    cpdef int endpoint_state(self, int side)
    cpdef int endpoint_prev_state(self, int side)
    cpdef bint endpoint_closed(self, int side)
    cpdef str conn_state(self)
    cdef void _swap(self) noexcept
    cpdef bint packet(self, bint is_orig, int flags, long long seq, long long ack, long long plen,
                      int win, bint bad_checksum, bint truncated=*) except -1
    @staticmethod
    cdef void _update_last(_Endpoint ep, long long seq) noexcept
    cdef int _state_machine(self, _Endpoint ep, _Endpoint peer, long long seq, long long plen,
                            bint is_orig, int flags) except -1
    cdef void _data_sent(self, _Endpoint ep, unsigned long long seq, long long length)
    @staticmethod
    cdef void _give_up(_Endpoint ep) noexcept
    cdef void _ack_received(self, _Endpoint ep, unsigned long long seq)
    cdef void _undelivered(self, _Endpoint ep, unsigned long long up_to)
    cdef void _gap(self, _Endpoint ep, long long length)


cdef class ZeekUdp:
    cdef str _history
    cdef long long _orig_pkts
    cdef long long _resp_pkts
    cdef long long _orig_good
    cdef long long _resp_good
    cdef long long _orig_chk
    cdef long long _resp_chk

    cpdef void flip(self)
    cpdef str conn_state(self)
    cpdef void packet(self, bint is_orig, bint bad_checksum)
    cpdef void limit_reached(self)

# C declarations for tcpstate.py when Cython compiles it (see setup.py); tcpstate.py stays the
# source of truth and runs unchanged as plain Python. Attribute meanings are documented there.
# Signatures here must match the .py ones (tcpstate.py sets annotation_typing=False, so its
# annotations are documentation only and the C types come from this file).

cimport cython

# RFC 9293 section 3.4 sequence comparison: inline C (see constants.pxd)
from flowlens.core.constants cimport seq_gt


@cython.final
cdef class TcpTracker:
    # per-side facts: C arrays, read from Python through the properties without the underscore
    cdef int _state[2]
    cdef long long _isn[2]
    cdef long long _fin_seq[2]
    cdef bint _fin_acked[2]
    cdef bint _fin_acked_by_fin[2]
    cdef long long _syn_count[2]
    cdef long long _synack_count[2]
    cdef long long _syn_ts[2]
    cdef long long _synack_ts[2]
    cdef long long _tw_start[2]
    cdef long long _tw_restart[2]
    cdef long long _snd_max[2]
    cdef long long _last_ack[2]
    cdef long long _last_win[2]
    cdef int _wscale[2]
    cdef long long _synack_ack[2]
    cdef long long _cw_sent[2]
    cdef long long _fw2_last[2]
    cdef long long _late_fin[2]
    cdef long long _carry_ts
    cdef long long _carry_since[2]
    cdef public object rst_ignored
    cdef public object rst_ignored_then
    cdef list _notes
    cdef long long _since[2]
    cdef long long _tw_ns
    cdef long long _syn_sent_ns
    cdef long long _syn_received_ns
    cdef long long _fin_wait_2_ns
    cdef long long _syn_linear
    cdef long long _rtx_first[2]
    cdef long long _rtx_last[2]
    cdef long long _rtx_gap[2]
    cdef long long _rtx_n[2]
    cdef int _rtx_flags[2]
    cdef long long _seen_to
    # the timeline: _TL_INLINE (tcpstate.py) changes in arrays, the rest in _tl_more
    cdef int _tl_n
    cdef long long _tl_ts[12]
    cdef long long _tl_frame[12]
    cdef short _tl_side[12]  # (not char: Cython pickles a char array as a C string)
    cdef short _tl_state[12]
    cdef list _tl_more
    cdef long long _timeline_max_ns
    cdef long long _synack_ns
    cdef long long _ackdat_ns
    cdef public bint handshake_acked
    cdef public bint rejected
    cdef public object first_close
    cdef public object fin_style
    cdef public object reset_by
    cdef public object closed_ts
    cdef public bint midstream
    cdef public bint tw_cut_short

    cpdef void set_state(self, int side, object new, long long ts_ns, object frame)
    cpdef tuple transition(self, int i)
    cpdef int state_code_at(self, int side, long long ts_ns)
    cpdef tuple spells(self)
    cpdef tuple last_change_and_closed_after(self, int side, long long start_ns)
    cpdef long long last_change_ns(self, int side)
    cpdef long long closed_at_or_after_ns(self, int side, long long start_ns)
    cdef void _set(self, int side, int new, long long ts_ns, long long frame)
    cdef long long _limit(self, int code)
    cpdef long long syns_sent(self, int side)
    cpdef long long synacks_sent(self, int side)
    cpdef long long sent_in_close_wait(self, int side)
    cpdef bint fin_sent(self, int side)
    cpdef long long isn_of(self, int side)
    cpdef long long synack_leg_ns(self)
    cpdef long long ackdat_leg_ns(self)
    cdef long long _timer_end(self, int side, int code, long long start)
    cdef long long _syn_end(self, int side, int code, long long start, long long limit, bint latest)
    cdef long long _rto_after(self, int side)
    cdef void _rtx_seen(self, int side, long long ts_ns, bint synack)
    cpdef void capture_ran_to(self, long long ts_ns)
    cpdef object syn_attempt(self)
    cpdef void continue_attempt(self, object attempt)
    cpdef int state_index_at(self, int side, long long ts_ns)
    cpdef object state_at(self, int side, long long ts_ns)
    cdef long long _tw_end(self, int side)
    cpdef object time_wait_end_ns(self, int side)
    cpdef object time_wait_spell(self, int side)
    cpdef long long held_until_ns(self, int side, long long open_end_ns)
    cpdef object settled_ns(self)
    cpdef void cut_time_wait(self, long long ts_ns, long long frame)
    cpdef list spans(self)
    cpdef bint continue_from(self, TcpTracker old, bint flip, long long ts_ns, long long frame)
    cpdef void hand_over(self, long long ts_ns, long long frame)
    cpdef void start_midstream(self, long long ts_ns, long long frame)
    cpdef void window_scale(self, int side, int shift)
    cpdef void packet(self, int side, int flags, long long seq, long long ack, long long plen, long long ts_ns, long long frame, long long win=*)
    cdef bint _rst_valid(self, int side, int flags, long long seq, long long ack, long long ts_ns, long long frame)
    cdef void _ack(self, int side, int flags, long long ack, long long ts_ns, long long frame)
    cdef void _infer(self, int side, long long ts_ns, long long frame, str why)
    cdef bint _inferred(self)
    cdef void _synack_missing(self, int side, long long ack, long long ts_ns, long long frame)
    cdef void _fin_reaches(self, int side, long long ts_ns, long long frame)
    cdef void _fin(self, int side, int flags, long long fin_seq, long long ack, long long ts_ns, long long frame)
    cpdef bint _fully_closed(self)
    cdef void _note_closed(self, long long ts_ns)
    cpdef str handshake(self)
    cpdef str teardown(self)
    cpdef str close_initiator(self)

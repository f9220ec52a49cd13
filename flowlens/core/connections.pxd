# C declarations for connections.py when Cython compiles it (see setup.py); connections.py stays
# the source of truth and runs unchanged as plain Python. Attribute meanings are documented there.
# Signatures here must match the .py ones (connections.py sets annotation_typing=False, so its
# annotations are documentation only and the C types come from this file).

cimport cython

from flowlens.core.analyzer cimport Analyzer
from flowlens.core.decode cimport Packet, window_scale
from flowlens.core.tcpstate cimport TcpTracker
from flowlens.core.timers cimport TimerHeap
from flowlens.core.zeekstate cimport ZeekTcp, ZeekUdp


@cython.final
cdef class Connection:
    cdef public str uid
    cdef public tuple key
    cdef public int proto
    cdef public object orig_h
    cdef public int orig_p
    cdef public object resp_h
    cdef public int resp_p
    cdef public long long first_ts_ns
    cdef public long long last_ts_ns
    cdef public long long first_frame
    cdef public long long last_frame
    cdef long long _pkts[2]
    cdef long long _payload[2]
    cdef long long _ip_bytes[2]
    cdef public TcpTracker tcp
    cdef public ZeekTcp zeek
    cdef public ZeekUdp udp
    cdef public bint originator_inferred
    cdef public bint flipped
    cdef public long long retransmissions
    cdef public long long out_of_order
    cdef public object service
    cdef public object app
    cdef public object service_frames
    cdef public long long bad_checksums
    cdef public object icmp_errors
    cdef public object vlan
    cdef public object inner_vlan
    cdef public object tunnel_parents
    cdef public object end_ts_ns
    cdef public object prev_uid
    cdef public bint reused_in_time_wait
    cdef public object closed_by
    cdef public list states
    cdef public long long zeek_last_ns
    cdef public long long _close_ns
    cdef public long long _syn_carried
    cdef public bint _done
    cdef public bint _held
    cdef public bint _closing
    cdef public int community_id_seed

    cpdef long long pkts_sent(self, int side)
    cpdef long long payload_sent(self, int side)
    cpdef void swap_roles(self)
    cpdef object state_at(self, int side, long long ts_ns)
    cdef tuple _end_states(self)
    cdef str _end_state(self, int side)
    cpdef dict to_record(self)


@cython.final
cdef class ConnectionTable:
    cdef public object config
    cdef public list analyzers
    cdef public Py_ssize_t _n_analyzers
    cdef public dict _table
    cdef public dict _held
    cdef TimerHeap _heap
    cdef public long long now_ns
    cdef public long long connections_seen
    cdef public long long open_peak
    cdef public long long _linger
    cdef public long long _tcp_idle
    cdef public long long _attempt_idle
    cdef public long long _attempt_delay
    cdef public dict _attempts
    cdef public dict _ip_tunnels
    cdef public dict _teredo_sides
    cdef public bint _vlan_key
    cdef public long long _udp_idle
    cdef public long long _dns_idle
    cdef public long long _icmp_idle
    cdef tuple _timers
    cdef list _recent_slots
    cdef list _spare
    cdef long long _due
    cdef Py_ssize_t _heap_prune_at

    cdef bint _closed(self, Connection c) except -1
    cdef void _notify(self, Connection c, Packet pkt, bint from_orig)
    cdef void _flip(self, Connection c)
    cdef void _end(self, Connection c)
    cdef void _prune(self)
    cpdef void compact(self)
    cdef long long _deadline(self, Connection c) except *
    cdef void _schedule(self, Connection c, object deadline=*)
    cdef Connection _finish(self, Connection c, long long end_ns, str why)
    cdef void _remember_attempt(self, Connection c)
    cdef void _hold(self, Connection c, long long tw_end, list out)
    cpdef list expire(self, long long now_ns)
    cpdef list flush(self)
    cpdef list add(self, Packet pkt)
    cpdef list advance(self, long long ts_ns)
    cpdef void attach_icmp_error(self, Packet pkt)
    cpdef list add_encapsulated(self, Packet pkt, bint inner=*)
    cpdef Connection connection_of(self, Packet pkt)
    cdef object _add_layer(self, Packet pkt, object parent, list out)
    cdef str _ip_tunnel_uid(self, object tunnel, Packet pkt)
    cdef tuple _icmp_key(self, Packet pkt)
    cdef Connection _new(self, tuple key, int proto, object orig_h, int orig_p, object resp_h, int resp_p, Packet pkt)
    cdef void _count(self, Connection c, Packet pkt, int side)
    cdef void _tcp(self, Packet pkt, list done)
    cdef Connection _recent(self, int proto, object src, int sport, object dst, int dport)
    cdef bint _is_reuse(self, Connection c, int side, Packet pkt) except -1
    cdef Connection _retire(self, Connection old, Packet pkt)
    cdef Connection _open_tcp(self, tuple key, Packet pkt, Connection held)
    cdef Connection _flow(self, Packet pkt)
    cdef void _icmp(self, Packet pkt)
    cdef void _attach_icmp_error(self, Packet pkt)

# C declarations for packet.py when Cython compiles it (see setup.py); packet.py stays the
# source of truth and runs unchanged as plain Python. Field meanings are documented there.
# decode.pxd declares Packet(PacketFields); tunnels.pxd reads the fields through this base.

cimport cython


# a freelist: most packets die as soon as the table and the analyzers have read them, and
# Packet (decode.pxd) adds no fields, so its objects are recycled by this base class
@cython.freelist(64)
cdef class PacketFields:
    cdef public long long frame
    cdef public long long ts_ns
    cdef public int version
    cdef public object src
    cdef public object dst
    cdef public int proto
    cdef public int sport
    cdef public int dport
    cdef public int flags
    cdef public long long seq
    cdef public long long ack
    cdef public int win
    cdef public long long plen
    cdef public long long ip_len
    cdef public long long caplen_short
    cdef public object raw_options
    cdef public object bad_checksum
    cdef public object quote
    cdef public int fragment
    cdef public object vlan
    cdef public object inner_vlan
    cdef public object udp_head
    cdef public long long tsval
    cdef public long long tsecr
    cdef public object payload
    cdef public object encap
    cdef public object tunnel
    cdef public bint limit_reached
    cdef public object _options

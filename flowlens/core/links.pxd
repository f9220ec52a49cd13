# C declarations for links.py when Cython compiles it (see setup.py); links.py stays the
# source of truth and runs unchanged as plain Python. Attribute meanings are documented there.
# tunnels.pxd cimports LinkDecoder (TunnelDecoder's base class, and so Decoder's).

# the shared constants: K.NAME is a C constant (see constants.pxd)
from flowlens.core cimport constants as K

cdef class LinkDecoder:
    cdef public object skipped
    cdef public object non_ip
    cdef public list frame_rest
    cdef object _inner_vlan

    cdef _skip(self, str reason)
    # Decoder overrides these two (the IP layer)
    cdef _ipv4(self, long long frame, long long ts_ns, unsigned char* d, Py_ssize_t n,
               Py_ssize_t off, vlan)
    cdef _ipv6(self, long long frame, long long ts_ns, unsigned char* d, Py_ssize_t n,
               Py_ssize_t off, vlan)
    cdef _link(self, long long frame, long long ts_ns, int linktype, unsigned char* d,
               Py_ssize_t n)
    cdef _ethernet(self, long long frame, long long ts_ns, unsigned char* d, Py_ssize_t n,
                   Py_ssize_t off, vlan)
    cdef _ethertype(self, long long frame, long long ts_ns, unsigned char* d, Py_ssize_t n,
                    Py_ssize_t off, unsigned int etype, vlan)
    cdef _ppp(self, long long frame, long long ts_ns, unsigned char* d, Py_ssize_t n,
              Py_ssize_t off, vlan)
    cdef _ieee802_11(self, long long frame, long long ts_ns, unsigned char* d, Py_ssize_t n,
                     Py_ssize_t off)
    cdef _amsdu(self, long long frame, long long ts_ns, unsigned char* d, Py_ssize_t n,
                Py_ssize_t off)
    cdef _llc_snap(self, long long frame, long long ts_ns, unsigned char* d, Py_ssize_t n,
                   Py_ssize_t off, unsigned int flags)
    cdef _ip_by_version(self, long long frame, long long ts_ns, unsigned char* d, Py_ssize_t n,
                        Py_ssize_t off, vlan)

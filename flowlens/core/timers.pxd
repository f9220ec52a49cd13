# C declarations for timers.py when Cython compiles it (see setup.py); timers.py stays the
# source of truth and runs unchanged as plain Python. connections.pxd cimports TimerHeap.

cimport cpython.array


cdef class TimerHeap:
    cdef cpython.array.array _d
    cdef cpython.array.array _n
    cdef cpython.array.array _s
    cdef list _objects
    cdef cpython.array.array _free
    cdef long long _pushed

    cpdef long long due(self)
    cpdef push(self, long long deadline, object obj)
    cpdef object pop(self)
    cpdef keep(self, object test)
    cpdef clear(self)
    cdef _fill(self, list entries)


# the sift both push and pop end with (C pointers into the heap's arrays)
cdef void _place(long long* dp, long long* np_, long long* sp, Py_ssize_t k, long long d,
                 long long n, long long s) noexcept

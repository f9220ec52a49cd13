# C types for host_findings.py when Cython compiles it (see setup.py): HostFacts.parts reads the
# fields of every finished connection. host_findings.py stays plain Python (annotation typing
# off); the types are named in its @cython.locals.

cimport cpython.array
cimport cpython.bytes

from flowlens.core.connections cimport Connection
from flowlens.core.tcpstate cimport TcpTracker

# HostFacts.add_parts writes each hold straight into its array
cdef int _hold_into(cpython.array.array holds, bytes hold) except -1
cdef long long _hold_field(bytes hold, Py_ssize_t i) except? -2

# C types for scans.py when Cython compiles it (see setup.py): probe_of and answer_part read the
# fields of every finished connection (HostFacts.parts). scans.py stays plain Python (annotation
# typing off); the types are named in its @cython.locals.

from flowlens.core.connections cimport Connection
from flowlens.analyzers.tcpanalysis cimport TcpaState

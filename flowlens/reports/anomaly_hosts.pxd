# C types for anomaly_hosts.py when Cython compiles it (see setup.py): HostFacts.add reads the
# fields of every finished connection. anomaly_hosts.py stays plain Python (annotation typing
# off); the types are named in its @cython.locals.

from flowlens.connections cimport Connection
from flowlens.tcpanalysis cimport TcpaState
from flowlens.tcpstate cimport TcpTracker

# C types for reports/rtt.py when Cython compiles it (see setup.py): connection_rows reads the
# RTT state's C fields directly. reports/rtt.py stays plain Python (annotation_typing=False:
# the C types of its locals are given by @cython.locals).

from flowlens.core.connections cimport Connection
from flowlens.analyzers.rtt cimport ConnectionRtt, RttCollector, Samples
from flowlens.core.tcpstate cimport TcpTracker

# C types for detector.py when Cython compiles it (see setup.py): AnomalyDetector.on_end reads the
# fields of every finished connection. detector.py stays plain Python (annotation typing off);
# the types are named in its @cython.locals.

from flowlens.core.connections cimport Connection
from flowlens.analyzers.tcpanalysis cimport DirectionStats, TcpaState
from flowlens.core.tcpstate cimport TcpTracker

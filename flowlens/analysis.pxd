# C declarations for analysis.py when Cython compiles it (see setup.py): the per-packet loop in
# Pipeline.__iter__ calls ConnectionTable.add directly.

from flowlens.capture cimport FrameRef
from flowlens.connections cimport ConnectionTable
from flowlens.decode cimport Packet

# C declarations for pipeline.py when Cython compiles it (see setup.py): the per-packet loop in
# Pipeline._frames calls ConnectionTable.add directly.

from flowlens.core.frame cimport FrameRef
from flowlens.core.connections cimport Connection, ConnectionTable
from flowlens.core.decode cimport Packet
from flowlens.core.links cimport LinkDecoder

# C declarations for capture.py when Cython compiles it (see setup.py); capture.py stays the
# source of truth and runs unchanged as plain Python. The frame it yields is frame.pxd's.

from flowlens.core.frame cimport FrameRef

# the shared constants: K.u32 is an inline function (see constants.pxd)
from flowlens.core cimport constants as K

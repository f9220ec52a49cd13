# C declarations for pcapng.py when Cython compiles it (see setup.py); pcapng.py stays the
# source of truth and runs unchanged as plain Python.

from flowlens.core.frame cimport FrameRef

# the shared constants: K.u32 is an inline function (see constants.pxd)
from flowlens.core cimport constants as K

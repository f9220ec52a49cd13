# C declarations for capture.py when Cython compiles it (see setup.py); capture.py stays the
# source of truth and runs unchanged as plain Python.

# the pcap reader reads record headers in place (used only when compiled)
from cpython.bytes cimport PyBytes_AS_STRING

"""flowlens: read tcpdump captures offline and tell the life story of every connection.

>>> import flowlens
>>> a = flowlens.analyze("capture.pcap")                 # doctest: +SKIP
>>> [(c.uid, c.conn_state, c.orig_state) for c in a.connections]
"""

from .core.analyzer import Analyzer, Needs
from .core.capture import CaptureStats, open_capture
from .core.connections import RECORD_FIELDS, Config, Connection, ConnectionTable, format_addr
from .core.decode import Decoder, Packet, TcpOptions
from .core.filters import Selection
from .core.pipeline import Analysis, Pipeline, analyze
from .core.tcpstate import TcpState
from .errors import (
    CaptureError,
    EmptyCaptureError,
    FlowlensError,
    NotACaptureError,
    TruncatedHeaderError,
    UsageError,
)

__all__ = [
    "analyze",
    "Analysis",
    "Pipeline",
    "open_capture",
    "CaptureStats",
    "Config",
    "Connection",
    "ConnectionTable",
    "RECORD_FIELDS",
    "format_addr",
    "Decoder",
    "Packet",
    "Analyzer",
    "Needs",
    "TcpOptions",
    "TcpState",
    "Selection",
    "FlowlensError",
    "CaptureError",
    "NotACaptureError",
    "EmptyCaptureError",
    "TruncatedHeaderError",
    "UsageError",
]

__version__ = "0.1.0"

"""flowlens: read tcpdump captures offline and tell the life story of every connection.

    >>> import flowlens
    >>> a = flowlens.analyze("sample_pcaps/clean-close.pcap")
    >>> [(c.conn_state, c.orig_state, c.resp_state) for c in a.connections]
    [('SF', 'TIME_WAIT', 'CLOSED')]

The library's front door is `analyze` (flowlens/api.py; docs/api.md); the layers under it are
flowlens.core, flowlens.analyzers, flowlens.reports and flowlens.batch (docs/architecture.md).
"""

from .api import Analysis, analyze, default_analyzers
from .core.analyzer import Analyzer, Needs
from .core.capture import CaptureStats, open_capture
from .core.connections import RECORD_FIELDS, Config, Connection, ConnectionTable, format_addr
from .core.decode import Decoder, Packet, TcpOptions
from .core.filters import Selection
from .core.pipeline import Pipeline
from .core.record import ConnectionRecord
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
    "default_analyzers",
    "Analysis",
    "ConnectionRecord",
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

"""flowlens: read tcpdump captures offline and tell the life story of every connection.

    >>> import flowlens
    >>> a = flowlens.analyze("sample_pcaps/clean-close.pcap")
    >>> [(c.conn_state, c.orig_state, c.resp_state) for c in a.connections]
    [('SF', 'TIME_WAIT', 'CLOSED')]

The library's front door is `analyze` (flowlens/api.py; docs/api.md); the layers under it are
flowlens.core, flowlens.analyzers, flowlens.reports and flowlens.batch (docs/architecture.md).
"""

from importlib import import_module
from typing import TYPE_CHECKING

# Each name is imported when first used (PEP 562), so that `flowlens flows`, whose commands
# import flowlens.core directly, does not pay at startup for the API's analyzers (anomaly
# detection, service identification) it does not run.
_HOME = {
    "analyze": ".api",
    "default_analyzers": ".api",
    "Analysis": ".api",
    "Analyzer": ".core.analyzer",
    "Needs": ".core.analyzer",
    "CaptureStats": ".core.capture",
    "open_capture": ".core.capture",
    "RECORD_FIELDS": ".core.connections",
    "Config": ".core.connections",
    "Connection": ".core.connections",
    "ConnectionTable": ".core.connections",
    "format_addr": ".core.connections",
    "Decoder": ".core.decode",
    "Packet": ".core.decode",
    "TcpOptions": ".core.decode",
    "Selection": ".core.filters",
    "Pipeline": ".core.pipeline",
    "ConnectionRecord": ".core.record",
    "TcpState": ".core.tcpstate",
    "FlowlensError": ".errors",
    "CaptureError": ".errors",
    "NotACaptureError": ".errors",
    "EmptyCaptureError": ".errors",
    "TruncatedHeaderError": ".errors",
    "UsageError": ".errors",
}

if TYPE_CHECKING:  # what type checkers and IDEs see
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


def __getattr__(name: str):
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'flowlens' has no attribute {name!r}")
    value = getattr(import_module(home, __name__), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


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

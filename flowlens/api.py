"""The library's front door: `flowlens.analyze(source, ...)` reads a capture once and returns an
`Analysis` from which everything a command prints can be reached.

    >>> import flowlens
    >>> a = flowlens.analyze("sample_pcaps/incident.pcap")
    >>> len(a.connections), a.connections[0].conn_state
    (490, 'SF')
    >>> sorted({f.kind for f in a.findings()})[:3]
    ['close_wait', 'connection_refused', 'fin_wait_2']

Every option is keyword-only. `source` is a path (`str` or `os.PathLike`), a binary file object
open for reading, or a list of paths read as one stream (a rotation set). `analyzers` picks the
per-connection analyzers that run (by default the TCP analysis, service identification, RTT and
anomaly detection, so that `records()` name protocols and `findings()` and `rtt()` have
something to say; pass `analyzers=()` for the bare
connection table, the fastest). Times are integer nanoseconds since the epoch in `*_ns`
attributes, seconds (float) in records; durations say their unit in their name.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, BinaryIO

from .analyzers.anomalies.detector import Anomaly, AnomalyDetector, Thresholds
from .analyzers.rtt import RttCollector
from .analyzers.tcpanalysis import TcpAnalyzer
from .core.analyzer import Analyzer
from .core.connections import Config
from .core.pipeline import Analysis as _CoreAnalysis
from .core.pipeline import ProgressFn
from .core.pipeline import analyze as _analyze
from .core.record import ConnectionRecord
from .errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import pandas
    import pyarrow

__all__ = ["Analysis", "analyze", "default_analyzers"]

Source = str | os.PathLike | BinaryIO | Sequence[str | os.PathLike]


def default_analyzers(
    config: Config | None = None, thresholds: Thresholds | None = None
) -> list[Analyzer]:
    """The analyzers `analyze` runs when none are named: TCP analysis, service identification
    from the first payload bytes, RTT, anomaly detection (`config` is accepted for symmetry with
    analyze; the analyzers read the table's timers from the connections themselves)."""
    return [TcpAnalyzer(), RttCollector(), AnomalyDetector(thresholds)]


@dataclass(slots=True)
class Analysis(_CoreAnalysis):
    """What one pass learned (see `flowlens.core.pipeline.Analysis` for the fields), with the
    views the commands print: `records()` (`flows`), `findings()` (`anomalies`), `rtt()`
    (`rtt`), and `to_pandas()` / `to_arrow()` of any of them."""

    def analyzer(self, kind: type) -> Any:
        """The analyzer of class `kind` that ran (UsageError when none did)."""
        for a in self.results:
            if isinstance(a, kind):
                return a
        raise UsageError(f"{self.path}: no {kind.__name__} ran (pass it in analyze(analyzers=...))")

    def records(self) -> list[ConnectionRecord]:
        """One `ConnectionRecord` per connection, in order of first packet (`flowlens flows`)."""
        return [ConnectionRecord.from_dict(c.to_record()) for c in self.connections]

    def findings(self) -> list[Anomaly]:
        """The anomaly detector's findings, most severe first (`flowlens anomalies`)."""
        return list(self.results[self.analyzer(AnomalyDetector)] or [])

    def rtt(self) -> list[dict]:
        """Per-connection, per-leg RTT rows (`flowlens rtt`)."""
        from .reports.rtt import connection_rows

        collector = self.analyzer(RttCollector)
        return [row for c in self.connections for row in connection_rows(c, collector)]

    def _rows(self, what: str) -> list[dict]:
        if what == "connections":
            return [c.to_record() for c in self.connections]
        if what == "findings":
            return [a.to_record() for a in self.findings()]
        if what == "rtt":
            return self.rtt()
        raise UsageError(f"unknown table {what!r}: connections, findings or rtt")

    def to_pandas(self, what: str = "connections") -> pandas.DataFrame:
        """`what` (connections, findings or rtt) as a pandas DataFrame, one row per record."""
        from .reports.frames import records_frame

        return records_frame(self._rows(what), what)

    def to_arrow(self, what: str = "connections") -> pyarrow.Table:
        """`what` (connections, findings or rtt) as a pyarrow Table with the schema
        `--format parquet` writes (core/arrow.py) without its capture columns: connections and
        findings as in batch's Parquet datasets, rtt as `flowlens rtt`'s rows."""
        from .analyzers.anomalies.detector import ANOMALY_FIELDS
        from .core.arrow import arrow_table, schema
        from .core.connections import RECORD_FIELDS
        from .reports.rtt import CONNECTION_FIELDS

        rows = self._rows(what)  # (UsageError for an unknown `what`)
        fields = {"connections": RECORD_FIELDS, "findings": ANOMALY_FIELDS}.get(
            what, CONNECTION_FIELDS
        )
        return arrow_table(rows, schema(fields, capture_columns=False))


def analyze(
    source: Source,
    *,
    config: Config | None = None,
    analyzers: Iterable[Analyzer] | None = None,
    thresholds: Thresholds | None = None,
    progress: ProgressFn | None = None,
) -> Analysis:
    """Read `source` once and return its connections, in order of first packet, with the
    results of `analyzers` (default: `default_analyzers(config, thresholds)`). Raises
    `flowlens.CaptureError` (and its subclasses) when the source cannot be read at all; damage
    inside a readable capture is counted in `Analysis.warnings`, not raised."""
    chosen = list(default_analyzers(config, thresholds) if analyzers is None else analyzers)
    core = _analyze(source, config, analyzers=chosen, progress=progress)
    return Analysis(**{f.name: getattr(core, f.name) for f in fields(core)})

# cython: annotation_typing=False
# (C types come from analysis.pxd; the annotations here are documentation only)
"""One pass over a capture: capture -> decode -> connections, with counts of what was skipped.

`Pipeline` streams finished connections (memory follows open connections); `analyze` collects
them into an `Analysis` for scripts and reports that want everything at once.
"""

from __future__ import annotations

import gc
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import cython

from .capture import CaptureStats, FrameRef, open_capture
from .connections import Config, Connection, ConnectionTable
from .decode import LINKTYPE_NAMES, Decoder, Packet

__all__ = ["Pipeline", "Analysis", "analyze", "ProgressFn"]

#: progress callback: (frames read, bytes of the file consumed, file size or None)
ProgressFn = Callable[[int, int, "int | None"], None]

_PROGRESS_EVERY = 8192
_COLLECT_EVERY = 256 * _PROGRESS_EVERY  # frames (about 2 million)


class Pipeline:
    """Read `path` once and yield each connection when it ends.

    `observers` are callables `(conn, pkt, from_orig)` that see every packet (see
    `ConnectionTable`); an observer that reads the TCP options (`pkt.raw_options`) of SYNs only
    says so with a true attribute `syn_options_only` (other segments' are then not copied out),
    and one that reads every segment's timestamps (`pkt.tsval`, `pkt.tsecr`) with a true
    `reads_timestamps`.
    After iteration, `stats` (the capture), `skipped` (frames that could not be decoded, by
    reason), `non_ip` and `table` (peak of open connections) describe the run.
    """

    def __init__(
        self,
        path: str,
        config: Config | None = None,
        observers: Iterable = (),
        progress: ProgressFn | None = None,
    ) -> None:
        self.path = path
        self.config = config or Config()
        self.table = ConnectionTable(self.config, observers)
        # copying every segment's TCP options out costs; the table reads none, and observers
        # that read only SYNs' say so with a true `syn_options_only`
        keep_options = any(not getattr(o, "syn_options_only", False) for o in self.table.observers)
        # ... and those that read every segment's TCP timestamps get them as numbers
        timestamps = any(getattr(o, "reads_timestamps", False) for o in self.table.observers)
        self.decoder = Decoder(
            verify_checksums=self.config.verify_checksums,
            keep_options=keep_options,
            timestamps=timestamps,
        )
        self.progress = progress
        self._capture = open_capture(path)  # raises CaptureError before any work
        self.stats: CaptureStats = self._capture.stats

    @property
    def skipped(self) -> Counter:
        return self.decoder.skipped

    @property
    def non_ip(self) -> Counter:
        return self.decoder.non_ip

    @cython.locals(table=ConnectionTable, pkt=Packet, finished=list, ref=FrameRef)
    def __iter__(self) -> Iterator[Connection]:
        decode = self.decoder.decode_frame
        table = self.table  # compiled: `table.add` is a direct C call
        progress = self.progress
        raw = self._capture._raw
        size = None
        if progress is not None:
            try:
                size = os.fstat(raw.fileno()).st_size or None
            except (OSError, ValueError, AttributeError):
                size = None
        # The collector's passes over tens of thousands of live connections cost a third of the
        # run, yet the pipeline makes hardly any reference cycles (a run with the collector off
        # keeps the same peak memory): switch it off during the pass, and collect once every
        # _COLLECT_EVERY frames so that an observer that does make cycles stays bounded.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with self._capture as cap:
                for ref in cap.frames():
                    pkt = decode(ref)
                    if pkt is not None:
                        finished = table.add(pkt)
                        if finished:
                            yield from finished
                    if ref.frame % _PROGRESS_EVERY == 0:
                        if progress is not None:
                            progress(ref.frame, _tell(raw), size)
                        if ref.frame % _COLLECT_EVERY == 0:
                            gc.collect()
                if progress is not None:
                    progress(self.stats.frames, _tell(raw), size)
            yield from self.table.flush()
        finally:
            if gc_was_enabled:
                gc.enable()

    def summary_lines(self) -> list[str]:
        """Diagnostics for stderr: damage, skipped frames by reason, clock jumps."""
        lines = self.stats.warnings()
        if self.skipped:
            total = sum(self.skipped.values())
            reasons = ", ".join(f"{n} {why}" for why, n in self.skipped.most_common())
            lines.append(f"{self.path}: skipped {total} undecodable frames ({reasons})")
        pending = self.decoder.pending_fragments
        if pending:
            lines.append(
                f"{self.path}: {pending} fragmented IP datagrams never completed "
                f"(fragments missing from the capture; not analysed)"
            )
        return lines


def _tell(raw) -> int:
    try:
        return raw.tell()
    except (OSError, ValueError, AttributeError):
        return 0


@dataclass(slots=True)
class Analysis:
    """Everything one pass learned: connections in order of first packet, and the capture's facts."""

    path: str
    connections: list[Connection]
    stats: CaptureStats
    skipped: Counter = field(default_factory=Counter)
    non_ip: Counter = field(default_factory=Counter)
    open_peak: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def linktype_names(self) -> list[str]:
        return [LINKTYPE_NAMES.get(lt, str(lt)) for lt in sorted(self.stats.linktypes)]

    def connection(self, uid: str) -> Connection:
        """The connection whose uid is `uid` (or starts with it, if that is unambiguous)."""
        from ..errors import UsageError

        hits = [c for c in self.connections if c.uid == uid] or [
            c for c in self.connections if c.uid.startswith(uid)
        ]
        if len(hits) == 1:
            return hits[0]
        if not hits:
            raise UsageError(f"{self.path}: no connection with uid {uid}")
        raise UsageError(f"{self.path}: uid prefix {uid} matches {len(hits)} connections")


def analyze(
    path: str,
    config: Config | None = None,
    observers: Iterable = (),
    progress: ProgressFn | None = None,
) -> Analysis:
    """Read a capture and return all its connections, ordered by first packet.

    >>> a = analyze("sample_pcaps/clean-close.pcap")   # doctest: +SKIP
    >>> a.connections[0].conn_state
    'SF'
    """
    pipe = Pipeline(path, config, observers, progress)
    conns = list(pipe)
    conns.sort(key=lambda c: (c.first_ts_ns, c.first_frame))
    return Analysis(
        path=path,
        connections=conns,
        stats=pipe.stats,
        skipped=pipe.skipped,
        non_ip=pipe.non_ip,
        open_peak=pipe.table.open_peak,
        warnings=pipe.summary_lines(),
    )

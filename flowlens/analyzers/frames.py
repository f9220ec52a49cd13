"""Which frames belong to chosen connections: their packets and the ICMP errors quoting them.

`flowlens extract` writes the packets of some connections to a new capture. Whether a
connection is wanted is often known only when it ends (its end state, the findings about it),
so the frames are found in a pipeline pass and copied in a second read of the file
(`flowlens.core.capture_writer.copy_frames`):

- `FrameRecorder` (an analyzer) notes the frame number of every packet the connection table
  gives each connection while it is open (one 8-byte number per packet of an open connection),
  and when the connection ends either adds them, with the frames of the ICMP errors the table
  attached to it (`Connection.icmp_errors`), to one `FrameSet` (a bit per frame of the capture)
  or drops them. Memory follows the open connections and the capture's frame count, not the
  number of packets selected.
- `select_frames` runs that pass; with finding kinds (`--finding close_wait`) it first runs the
  anomaly detector over the capture, since a finding is known only when the capture ends: the
  connections a finding names are its `uid`, the `uids` (and `previous_uids`) of its details,
  and the connections holding one of its evidence frames.

Frame numbers are the ones the reader gives and every report uses (1-based, as tcpdump -# and
Wireshark count). A datagram reassembled from IP fragments is one packet numbered by its last
fragment (core/decode.py): the earlier fragments' frames are not selected.
"""

from __future__ import annotations

import dataclasses
import os
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import BinaryIO

from ..core.analyzer import Analyzer
from ..core.capture_writer import FrameSet
from ..core.connections import Config, Connection
from ..core.decode import Packet
from ..core.filters import Selection
from ..core.pipeline import Pipeline, ProgressFn

__all__ = ["ConnFrames", "FrameRecorder", "FrameSelection", "finding_targets", "select_frames"]


class ConnFrames:
    """The frame numbers of one open connection's packets, and whether one of them is marked
    (an evidence frame of a wanted finding)."""

    __slots__ = ("frames", "marked")

    def __init__(self) -> None:
        self.frames = array("Q")
        self.marked = False


class FrameRecorder(Analyzer):
    """Analyzer collecting the frames of the connections it keeps into `selected`.

    `wants(conn)` is asked on a connection's first packet (only what is known then: addresses,
    ports, protocol, uid); `keep(conn, marked)` when it ends, with `marked` true when one of its
    packets is in `marks`. A kept connection's packets and the ICMP errors quoting it join
    `selected`, and its uid `uids`.
    """

    def __init__(
        self,
        wants: Callable[[Connection], bool] | None = None,
        keep: Callable[[Connection, bool], bool] | None = None,
        *,
        marks: FrameSet | None = None,
    ) -> None:
        super().__init__()
        self.wants = wants
        self.keep = keep
        self.marks = marks
        #: the frames of the kept connections
        self.selected = FrameSet()
        #: uids of the kept connections, in the order they ended
        self.uids: list[str] = []
        #: ICMP error frames among `selected`
        self.icmp_errors = 0

    def frames_of(self, conn: Connection) -> ConnFrames | None:
        """The frames recorded for `conn` (None when it was not wanted)."""
        return self.state_of(conn)

    def on_start(self, conn: Connection, pkt: Packet) -> ConnFrames | None:
        if self.wants is not None and not self.wants(conn):
            return None
        return ConnFrames()

    def on_packet(self, conn: Connection, pkt: Packet, from_orig: bool) -> None:
        st = self.state_of(conn)
        st.frames.append(pkt.frame)
        if self.marks is not None and pkt.frame in self.marks:
            st.marked = True

    def on_end(self, conn: Connection) -> None:
        st = self.state_of(conn)
        if st is None:
            return
        if self.keep is None or self.keep(conn, st.marked):
            self.selected.update(st.frames)
            errors: list[tuple] = conn.icmp_errors or []  # (ts_ns, frame, type, code, reporter)
            for error in errors:
                frame = error[1]
                if frame not in self.selected:
                    self.icmp_errors += 1
                    self.selected.add(frame)
            self.uids.append(conn.uid)
        st.frames = array("Q")  # the connection object may outlive its end: free the frames

    def finish(self, end_ns=None) -> FrameSet:
        return self.selected


@dataclass(slots=True)
class FrameSelection:
    """What `select_frames` found."""

    #: the frames to copy
    frames: FrameSet
    #: uids of the selected connections, in the order they ended
    uids: list[str]
    #: ICMP error frames among `frames` (errors quoting a selected connection)
    icmp_errors: int
    #: pipeline passes over the capture (2 with finding kinds)
    passes: int
    #: the capture's damage, for stderr (Pipeline.summary_lines)
    warnings: list[str] = field(default_factory=list)
    #: frames in the capture
    capture_frames: int = 0


def finding_targets(findings: Iterable, kinds: Iterable[str]) -> tuple[set[str], FrameSet]:
    """(uids, evidence frames) of the findings (`Anomaly` records) of `kinds`: the connections
    they name, by uid (`uid`, and the `uids` and `previous_uids` lists of `details`, which the
    detector caps at 20 per finding) and by the frames they cite as evidence."""
    wanted = set(kinds)
    uids: set[str] = set()
    frames = FrameSet()
    for a in findings:
        if a.kind not in wanted:
            continue
        if a.uid is not None:
            uids.add(a.uid)
        for key in ("uids", "previous_uids"):
            uids.update(u for u in a.details.get(key, ()) if u)
        frames.update(f for f in a.evidence if f is not None and f > 0)
    return uids, frames


def _findings(source, config: Config, selection: Selection, kinds, progress):
    """The anomaly detector's findings over `source` (the connections `selection` matches, as
    `flowlens anomalies` looks at them), and the pipeline that found them."""
    from .anomalies.detector import AnomalyDetector
    from .service_id import ServiceAnalyzer

    detector = AnomalyDetector(selection=selection)
    analyzers: list[Analyzer] = [detector]
    if "service_port_mismatch" in kinds:
        analyzers.insert(0, ServiceAnalyzer())
    pipe = Pipeline(source, config, analyzers=analyzers, progress=progress)
    for _conn in pipe:
        pass  # the detector takes each connection as it ends
    return pipe.results[detector], pipe


def select_frames(
    source: str | os.PathLike | BinaryIO,
    config: Config | None = None,
    selection: Selection | None = None,
    *,
    finding_kinds: Iterable[str] = (),
    progress: ProgressFn | None = None,
) -> FrameSelection:
    """The frames of the connections of `source` that `selection` matches (and, with
    `finding_kinds`, that a finding of one of those kinds names), with the ICMP errors quoting
    them. `source` must be readable twice when `finding_kinds` are given (a path, or a
    seekable file object positioned at its start).

    A `--uid` value keeps every connection whose uid starts with it, as in the other commands.
    """
    config = config or Config()
    selection = selection or Selection()
    kinds = tuple(finding_kinds)
    passes = 0
    keep_uids: set[str] | None = None
    marks: FrameSet | None = None
    if kinds:
        findings, _pipe = _findings(source, config, selection, kinds, progress)
        passes += 1
        keep_uids, marks = finding_targets(findings, kinds)
        if hasattr(source, "seek"):
            source.seek(0)  # type: ignore[union-attr]

    # the part of the selection known on a connection's first packet (uid, addresses, ports,
    # protocol) decides what is recorded; the end state is checked when the connection ends
    early = dataclasses.replace(selection, states=set())

    def keep(conn: Connection, marked: bool) -> bool:
        if not selection.matches(conn):
            return False
        return keep_uids is None or marked or conn.uid in keep_uids

    recorder = FrameRecorder(early.matches if early else None, keep, marks=marks)
    pipe = Pipeline(source, config, analyzers=[recorder], progress=progress)
    for _conn in pipe:
        pass  # the recorder takes each connection as it ends
    passes += 1
    warnings = list(pipe.summary_lines())
    return FrameSelection(
        recorder.selected,
        recorder.uids,
        recorder.icmp_errors,
        passes,
        warnings,
        pipe.stats.frames,
    )

# cython: annotation_typing=False
# (C types come from pipeline.pxd; the annotations here are documentation only)
"""One pass over a capture (or a rotation set): capture -> decode -> connections -> analyzers.

`Pipeline` streams finished connections (memory follows open connections); `analyze` collects
them into an `Analysis` for scripts and reports that want everything at once.
"""

from __future__ import annotations

import gc
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, cast

import cython

from ..errors import FlowlensError, UsageError
from .analyzer import Analyzer, Needs, needs_of
from .capture import Capture, CaptureStats, open_capture
from .connections import Config, Connection, ConnectionTable
from .decode import LINKTYPE_NAMES, Decoder, Packet
from .frame import FrameRef

__all__ = ["Pipeline", "FileRun", "Analysis", "analyze", "ProgressFn"]

#: progress callback: (frames read, bytes of the file consumed, file size or None)
ProgressFn = Callable[[int, int, "int | None"], None]

#: payload bytes the decoder copies per TCP/UDP packet for an analyzer that declares
#: Needs.PAYLOAD (service identification keeps the first 512 of each direction: issue 20)
PAYLOAD_BYTES = 512
_PROGRESS_EVERY = 8192
_COLLECT_EVERY = 256 * _PROGRESS_EVERY  # frames (about 2 million)


@dataclass(slots=True)
class FileRun:
    """What reading one file of a pipeline's source saw."""

    path: str
    #: frames of the files before this one (its frame n is `frame_offset + n` in the stream)
    frame_offset: int = 0
    #: the file's capture facts; None when it could not be opened (see `error`)
    stats: CaptureStats | None = None
    #: frames of this file that could not be decoded
    undecodable: int = 0
    #: diagnostics for stderr about this file (damage, skipped frames, clock jumps)
    warnings: list[str] = field(default_factory=list)
    #: why the file could not be opened (a rotation set goes on without it), or None
    error: str | None = None


class Pipeline:
    """Read one capture, or a rotation set read as one stream, once; yield each connection when
    it ends.

    `source` is a path (`str` or `os.PathLike`; `-` for stdin), a binary file object open for
    reading, or a sequence of paths: a rotation set, read in order
    through one decoder and one connection table, frame numbers continuing from file to file. A
    single file that cannot be opened raises `CaptureError` here, before any work; a member of a
    set that cannot be opened is skipped (its `FileRun.error` says why), and `FlowlensError` is
    raised when no member could be read.

    `analyzers` (see flowlens.core.analyzer) are resolved by the table (dependencies added and
    ordered first) and see every hook; the decoder copies out what their `needs` ask for and
    nothing more. When the last connection has been yielded, each analyzer's `finish` runs (in
    the same order) and `results[analyzer]` keeps what it returned.

    After iteration, `stats` (the capture; a set's merged), `files` (one `FileRun` per file),
    `skipped` (frames that could not be decoded, by reason), `non_ip`, `results` and `table`
    (peak of open connections) describe the run.
    """

    def __init__(
        self,
        source: str | os.PathLike | BinaryIO | Sequence[str | os.PathLike],
        config: Config | None = None,
        *,
        analyzers: Iterable[Analyzer] = (),
        progress: ProgressFn | None = None,
    ) -> None:
        self.config = config or Config()
        self.table = ConnectionTable(self.config, analyzers)
        self.analyzers: list[Analyzer] = self.table.analyzers
        needs = needs_of(self.analyzers)
        # copying every segment's TCP options out costs; the table reads none, and SYNs' are
        # always copied (Needs.SYN_OPTIONS costs nothing more)
        self.decoder = Decoder(
            verify_checksums=self.config.verify_checksums,
            keep_options=bool(needs & Needs.ALL_OPTIONS),
            timestamps=bool(needs & Needs.TIMESTAMPS),
            # each packet's first PAYLOAD_BYTES payload bytes, only when some analyzer reads them
            payload=PAYLOAD_BYTES if needs & Needs.PAYLOAD else 0,
            max_depth=self.config.tunnel_max_depth,
        )
        self.progress = progress
        self.results: dict[Analyzer, object] = {}
        #: the read filter (Config.read_filter), compiled by libpcap; None without one
        self.bpf = None
        if self.config.read_filter:
            from .bpf import BpfFilter, check_filter

            check_filter(self.config.read_filter)  # a bad expression fails before any work
            self.bpf = BpfFilter(self.config.read_filter)
        #: the capture opened here (one file), handed to the first pass; None for a set
        self._capture: Capture | None = None
        if isinstance(source, (str, os.PathLike)) or hasattr(source, "read"):
            # one path, or a binary file object (the capture names it by its .name); a
            # hasattr test does not narrow the union for mypy, hence the cast
            one = cast("str | os.PathLike | BinaryIO", source)
            cap = open_capture(one)  # raises CaptureError before any work
            self._capture = cap
            self.path = cap.path
            self.paths = [self.path]
            self._rotation = False
            self.stats: CaptureStats = cap.stats
        else:
            self.paths = [os.fspath(p) for p in source]
            if not self.paths:
                raise UsageError("an empty rotation set")
            self.path = self.paths[0]
            self._rotation = True
            self.stats = CaptureStats(self.path)
        self.files: list[FileRun] = []

    @property
    def skipped(self) -> Counter:
        return self.decoder.skipped

    @property
    def non_ip(self) -> Counter:
        return self.decoder.non_ip

    @property
    def filtered_out(self) -> int:
        """Frames the read filter turned away (0 without one)."""
        return self.bpf.rejected if self.bpf is not None else 0

    def __iter__(self) -> Iterator[Connection]:
        # The collector's passes over tens of thousands of live connections cost a third of the
        # run, yet the pipeline makes hardly any reference cycles (a run with the collector off
        # keeps the same peak memory): switch it off during the pass, and collect once every
        # _COLLECT_EVERY frames so that an analyzer that does make cycles stays bounded.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            offset = 0
            for path in self.paths:
                run = FileRun(path, frame_offset=offset)
                self.files.append(run)
                cap = self._capture
                self._capture = None
                if cap is None:
                    try:
                        cap = open_capture(path)
                    except FlowlensError as exc:
                        run.error = str(exc)  # the set goes on without this file
                        continue
                before = sum(self.decoder.skipped.values())
                yield from self._frames(cap, offset)
                run.stats = cap.stats
                run.undecodable = sum(self.decoder.skipped.values()) - before
                offset += cap.stats.frames
                if self._rotation:
                    run.warnings = cap.stats.warnings()
                    if run.undecodable:
                        n = run.undecodable
                        run.warnings.append(
                            f"{path}: skipped {n} undecodable frame{'' if n == 1 else 's'}"
                        )
            if self._rotation:
                if all(f.stats is None for f in self.files):
                    raise FlowlensError(
                        self.files[0].error or "no file of the rotation set could be read"
                    )
                self.stats = _merged([f.stats for f in self.files if f.stats is not None])
            yield from self.table.flush()
            if not self._rotation:
                self.files[0].warnings = self.summary_lines()
            end_ns = self.stats.last_ts_ns
            for a in self.analyzers:
                self.results[a] = a.finish(end_ns)
        finally:
            if gc_was_enabled:
                gc.enable()

    @cython.locals(
        table=ConnectionTable, pkt=Packet, finished=list, ref=FrameRef, offset=cython.longlong
    )
    def _frames(self, cap, offset: int) -> Iterator[Connection]:
        """Decode one file's frames into the table, yielding the connections that finish."""
        decode = self.decoder.decode_frame
        table = self.table  # compiled: `table.add` is a direct C call
        progress = self.progress
        bpf = self.bpf
        raw = cap.raw
        size = None
        if progress is not None:
            try:
                size = os.fstat(raw.fileno()).st_size or None
            except (OSError, ValueError, AttributeError):
                size = None
        with cap:
            for ref in cap.frames():
                if offset:
                    ref.frame += offset  # (the reader sets it afresh for each frame)
                if bpf is None or bpf.matches(
                    ref.linktype, ref.buf[ref.start : ref.end], ref.wirelen
                ):
                    pkt = decode(ref)
                else:
                    pkt = None  # turned away by the read filter (counted in bpf.rejected)
                if pkt is not None:
                    if pkt.encap is None:
                        finished = table.add(pkt)
                    else:  # out of a tunnel: the outer UDP flows first, then tunnel_parents
                        finished = table.add_encapsulated(pkt)
                    if finished:
                        yield from finished
                if ref.frame % _PROGRESS_EVERY == 0:
                    if progress is not None:
                        progress(ref.frame, _tell(raw), size)
                    if ref.frame % _COLLECT_EVERY == 0:
                        gc.collect()
            if progress is not None:
                progress(offset + cap.stats.frames, _tell(raw), size)

    def notes(self) -> list[str]:
        """Facts about the capture that are no damage (CaptureStats.notes): said once, by the
        commands that summarise a capture (flows, the report), not as a warning by every one."""
        if self._rotation:
            return [line for f in self.files if f.stats is not None for line in f.stats.notes()]
        return self.stats.notes()

    def summary_lines(self) -> list[str]:
        """Diagnostics for stderr: damage, skipped frames by reason, clock jumps."""
        if self._rotation:
            lines = [line for f in self.files for line in f.warnings]
            lines += [f"{f.path}: {f.error}" for f in self.files if f.error]
        else:
            lines = self.stats.warnings()
        if self.skipped and not self._rotation:
            total = sum(self.skipped.values())
            reasons = ", ".join(f"{n} {why}" for why, n in self.skipped.most_common())
            lines.append(
                f"{self.path}: skipped {total} undecodable frame{'' if total == 1 else 's'} "
                f"({reasons})"
            )
        errors = self.decoder.tunnel_errors
        if errors:
            reasons = ", ".join(f"{n} {why}" for why, n in errors.most_common())
            lines.append(
                f"{self.path}: {sum(errors.values())} tunnel headers not decapsulated ({reasons}); "
                f"their UDP datagrams are analysed as UDP"
            )
        pending = self.decoder.pending_fragments
        if pending:
            lines.append(
                f"{self.path}: {pending} fragmented IP datagrams never completed "
                f"(fragments missing from the capture; not analysed)"
            )
        return lines


def _merged(parts: list[CaptureStats]) -> CaptureStats:
    """One CaptureStats for the files of a rotation set, read as one stream."""
    out = CaptureStats(parts[0].path, container=parts[0].container)
    out.resolution_ns = parts[0].resolution_ns
    for st in parts:
        out.frames += st.frames
        out.bytes += st.bytes
        out.linktypes.update(st.linktypes)
        out.clock_jumps += st.clock_jumps
        if st.clock_jump_max_ns > out.clock_jump_max_ns:
            out.clock_jump_max_ns, out.clock_jump_frame = st.clock_jump_max_ns, st.clock_jump_frame
        out.oddities.update(st.oddities)
        if st.first_ts_ns is not None and (
            out.first_ts_ns is None or st.first_ts_ns < out.first_ts_ns
        ):
            out.first_ts_ns = st.first_ts_ns
        if st.last_ts_ns is not None and (out.last_ts_ns is None or st.last_ts_ns > out.last_ts_ns):
            out.last_ts_ns = st.last_ts_ns
        if st.stopped and out.stopped is None:
            out.stopped, out.stopped_frame, out.stopped_offset = (
                st.stopped, st.stopped_frame, st.stopped_offset,
            )  # fmt: skip
    return out


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
    #: facts about the capture that are no damage (Pipeline.notes: small clock steps back)
    notes: list[str] = field(default_factory=list)
    #: what each analyzer's `finish` returned (see Pipeline.results)
    results: dict = field(default_factory=dict)

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
    path: str | os.PathLike | BinaryIO | Sequence[str | os.PathLike],
    config: Config | None = None,
    *,
    analyzers: Iterable[Analyzer] = (),
    progress: ProgressFn | None = None,
) -> Analysis:
    """Read a capture and return all its connections, ordered by first packet.

    >>> a = analyze("sample_pcaps/clean-close.pcap")   # doctest: +SKIP
    >>> a.connections[0].conn_state
    'SF'
    """
    pipe = Pipeline(path, config, analyzers=analyzers, progress=progress)
    conns = list(pipe)
    conns.sort(key=lambda c: (c.first_ts_ns, c.first_frame))
    return Analysis(
        path=pipe.path,
        connections=conns,
        stats=pipe.stats,
        skipped=pipe.skipped,
        non_ip=pipe.non_ip,
        open_peak=pipe.table.open_peak,
        warnings=pipe.summary_lines(),
        notes=pipe.notes(),
        results=pipe.results,
    )

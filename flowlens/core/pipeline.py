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
from .links import LinkDecoder

__all__ = [
    "Pipeline",
    "FileRun",
    "Analysis",
    "analyze",
    "ProgressFn",
    "route",
    "quote_route",
    "owner",
    "member_warnings",
]

#: progress callback: (frames read, bytes of the file consumed, file size or None)
ProgressFn = Callable[[int, int, "int | None"], None]

#: payload bytes the decoder copies per TCP/UDP packet for an analyzer that declares
#: Needs.PAYLOAD (service identification keeps the first 512 of each direction: issue 20)
PAYLOAD_BYTES = 512
# (C constants when compiled: the per-frame loop tests them, and a module global there is a
# dict lookup and Python arithmetic on every frame)
_PROGRESS_EVERY = cython.declare(cython.longlong, 8192)
_COLLECT_EVERY = cython.declare(cython.longlong, 256 * 8192)  # frames (about 2 million)


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
        shard: tuple[int, int] | None = None,
        checkpoint: Callable[[Pipeline, int], None] | None = None,
    ) -> None:
        self.config = config or Config()
        #: a rotation set's `checkpoint(pipeline, i)` runs when member i has been read and every
        #: connection it finished has been yielded, before the next member is opened: the moment
        #: `snapshot()` describes (flowlens.batch's incremental rotation sets)
        self.checkpoint = checkpoint
        #: (k, n), or (k, n, first): own only the connections of shard k of n (route; shard 0
        #: owning `first` of the hash's SLOTS slots, an even share without it); every frame is
        #: still read and decoded, and moves the table's clock
        self.shard = shard
        #: the frame whose packet ended the connections being yielded (the capture's frame
        #: count + 1 for those the capture's end closes): with the canonical order within one
        #: packet's batch (_batch_key), the key that merges shards into one stream
        self.emit_frame = 0
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

    def close(self) -> None:
        """Close the capture of a pipeline that will not be iterated (one opened only to
        check that it can be read)."""
        if self._capture is not None:
            self._capture.close()
            self._capture = None

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
            if self.files:  # restored (`restore`): the members before are read already
                last = self.files[-1]
                offset = last.frame_offset + (last.stats.frames if last.stats is not None else 0)
            for index in range(len(self.files), len(self.paths)):
                path = self.paths[index]
                run = FileRun(path, frame_offset=offset)
                self.files.append(run)
                cap = self._capture
                self._capture = None
                if cap is None:
                    try:
                        cap = open_capture(path)
                    except FlowlensError as exc:
                        run.error = str(exc)  # the set goes on without this file
                        if self.checkpoint is not None:
                            self.checkpoint(self, index)
                        continue
                before = sum(self.decoder.skipped.values())
                yield from self._frames(cap, offset)
                run.stats = cap.stats
                run.undecodable = sum(self.decoder.skipped.values()) - before
                offset += cap.stats.frames
                if self._rotation:
                    run.warnings = member_warnings(path, cap.stats, run.undecodable)
                if self.checkpoint is not None:
                    self.checkpoint(self, index)
            if self._rotation:
                if all(f.stats is None for f in self.files):
                    raise FlowlensError(
                        self.files[0].error or "no file of the rotation set could be read"
                    )
                self.stats = _merged([f.stats for f in self.files if f.stats is not None])
            self.emit_frame = offset + 1
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
        table=ConnectionTable, pkt=Packet, finished=list, got=list, rest=list, decoder=LinkDecoder,
        ref=FrameRef, offset=cython.longlong, k=cython.int, n=cython.int, first=cython.int,
        r=cython.int, placed=cython.bint,
    )  # fmt: skip
    def _frames(self, cap, offset: int) -> Iterator[Connection]:
        """Decode one file's frames into the table, yielding the connections that finish."""
        decode = self.decoder.decode_frame
        decoder = self.decoder
        table = self.table  # compiled: `table.add` is a direct C call
        progress = self.progress
        bpf = self.bpf
        k, n, first = _shard_spec(self.shard)
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
                finished = None
                placed = False  # (peek_route found this frame's packet ours: no route again)
                if bpf is not None and not bpf.matches(
                    ref.linktype, ref.buf[ref.start : ref.end], ref.wirelen
                ):
                    pkt = None  # turned away by the read filter (counted in bpf.rejected)
                elif n == 1:
                    pkt = decode(ref)
                else:
                    r = peek_route(ref, n, first)
                    if r == k:
                        pkt = decode(ref)
                        placed = True
                    elif r >= 0:  # another shard's segment: not decoded here, the clock moves
                        pkt = None
                        finished = table.advance(ref.ts_ns)
                    elif k == 0:  # shard 0 counts what the decoder counts of such frames
                        pkt = decode(ref)
                    else:
                        pkt = self._decode_uncounted(ref)
                if pkt is not None:
                    # the frame's further packets (an 802.11 A-MSDU's subframes), or None
                    rest = decoder.frame_rest
                    decoder.frame_rest = None
                    while True:
                        if (
                            n > 1
                            and not placed
                            and route(pkt, n, first) != k
                            and (pkt.encap is not None or pkt.proto != 17)
                        ):
                            # another shard's (every shard keeps every UDP flow, so that a
                            # tunnel's outer flow is whole, and its uid the same, wherever its
                            # contents go)
                            if pkt.encap is None:  # only the clock moves
                                got = table.advance(pkt.ts_ns)
                            else:  # the tunnels that carried it, not what they carried
                                got = table.add_encapsulated(pkt, False)
                            if pkt.quote is not None and quote_route(pkt, n, first) == k:
                                table.attach_icmp_error(pkt)  # an error about one of ours
                        elif pkt.encap is None:
                            got = table.add(pkt)
                        else:  # out of a tunnel: the outer UDP flows first, then tunnel_parents
                            got = table.add_encapsulated(pkt)
                        if got:
                            finished = got if not finished else finished + got
                        if not rest:
                            break
                        pkt = rest.pop(0)
                        placed = False
                if finished:
                    if len(finished) > 1:
                        finished.sort(key=_batch_key)
                    self.emit_frame = ref.frame
                    yield from finished
                if ref.frame % _PROGRESS_EVERY == 0:
                    if progress is not None:
                        progress(ref.frame, _tell(raw), size)
                    if ref.frame % _COLLECT_EVERY == 0:
                        gc.collect()
            if progress is not None:
                progress(offset + cap.stats.frames, _tell(raw), size)

    def snapshot(self) -> dict:
        """The open state of a rotation set between two members (call it from `checkpoint`):
        the connection table with its open connections, their trackers and every analyzer's
        per-connection and cross-connection state (the analyzers themselves), the decoder (IP
        fragments waiting, its counters), the members read so far and the frame counters.
        Every object in it pickles, compiled or not; pickle it in one call, so that what the
        objects share (the analyzers the table and the connections point at) stays shared.

        A `Pipeline` over the same paths, config and analyzers' classes that is given this
        state by `restore` goes on from the next member and yields exactly what this one
        yields from here on."""
        if not self._rotation or self.shard is not None or self.bpf is not None:
            raise UsageError("only an unsharded, unfiltered rotation set can be snapshotted")
        self.table.compact()  # (finished connections' timers would be pickled with them)
        return {
            "table": self.table,
            "decoder": self.decoder,
            "files": self.files,
            "emit_frame": self.emit_frame,
        }

    def restore(self, state: dict) -> None:
        """Take over a `snapshot()` (unpickled) before iterating: reading starts at the member
        after the last one it had read. `analyzers` are the snapshot's from here on (the ones
        handed to the constructor are dropped), in the same order."""
        if not self._rotation or self.files or self.shard is not None or self.bpf is not None:
            raise UsageError("restore() needs a fresh, unsharded, unfiltered rotation set")
        files = list(state["files"])
        if [f.path for f in files] != self.paths[: len(files)]:
            raise UsageError("the snapshot is of another rotation set")
        self.table = state["table"]
        self.analyzers = self.table.analyzers
        self.decoder = state["decoder"]
        self.files = files
        self.emit_frame = state["emit_frame"]

    def _decode_uncounted(self, ref):
        """Decode a frame every shard decodes, leaving the decoder's counts as they were (shard
        0 counts it): the same packet, the same state (fragments, tunnels) in every shard."""
        d = self.decoder
        kept = d.skipped, d.non_ip, d.tunnel_errors, d.offloaded
        d.skipped, d.non_ip, d.tunnel_errors = Counter(), Counter(), Counter()
        try:
            return d.decode_frame(ref)
        finally:
            d.skipped, d.non_ip, d.tunnel_errors, d.offloaded = kept

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
        return _damage_lines(
            self.path,
            lines,
            self.skipped if not self._rotation else Counter(),
            self.decoder.tunnel_errors,
            self.decoder.pending_fragments,
        )

    def run_facts(self) -> dict:
        """What a finished one-process run says beside its connections (a command's damage
        lines, notes, frame count and first and last timestamps: the `facts` of
        commands/_stream.ConnectionStream and of reports/gather's own loop)."""
        stats = self.stats
        return {
            "damage": self.summary_lines(),
            "notes": self.notes(),
            "frames": stats.frames,
            "first_ts_ns": stats.first_ts_ns,
            "last_ts_ns": stats.last_ts_ns,
        }

    def shard_facts(self) -> dict:
        """What one shard of a sharded run (flowlens.core.shard) hands back for the run's
        diagnostics: shard 0 decoded every frame no shard could be told by its headers and
        counted what they held; the others counted only their own frames (merge_shard_facts)."""
        d = self.decoder
        return {
            "warnings": self.stats.warnings(),
            "notes": self.notes(),
            "frames": self.stats.frames,
            "first_ts_ns": self.stats.first_ts_ns,
            "last_ts_ns": self.stats.last_ts_ns,
            "skipped": d.skipped,
            "tunnel_errors": d.tunnel_errors,
            "non_ip": d.non_ip,
            "offloaded": d.offloaded,
            "pending": d.pending_fragments,
        }


def member_warnings(path: str, stats: CaptureStats, undecodable: int) -> list[str]:
    """A rotation set's member's `FileRun.warnings`: its capture's damage, then the frames of
    it that could not be decoded (a sharded run adds up its shards' counts: flowlens.batch)."""
    lines = stats.warnings()
    if undecodable:
        n = undecodable
        lines.append(f"{path}: skipped {n} undecodable frame{'' if n == 1 else 's'}")
    return lines


def merge_shard_facts(path: str, facts: list[dict]) -> dict:
    """The run's facts from its shards' `shard_facts()`: `damage` (the one pipeline's
    `summary_lines()`), `notes`, `frames`, `first_ts_ns` and `last_ts_ns`."""
    skipped: Counter = Counter()
    errors: Counter = Counter()
    for f in facts:
        skipped.update(f["skipped"])
        errors.update(f["tunnel_errors"])
    first = facts[0]  # (every shard read every frame: the capture's own facts are the same)
    return {
        "damage": _damage_lines(path, list(first["warnings"]), skipped, errors, first["pending"]),
        "notes": first["notes"],
        "frames": first["frames"],
        "first_ts_ns": first["first_ts_ns"],
        "last_ts_ns": first["last_ts_ns"],
    }


def _by_count(counts: Counter) -> list:
    # most first, ties by name: the same order whatever order the counts were made in
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def _damage_lines(
    path: str, lines: list[str], skipped: Counter, errors: Counter, pending: int
) -> list[str]:
    if skipped:
        total = sum(skipped.values())
        reasons = ", ".join(f"{n} {why}" for why, n in _by_count(skipped))
        lines.append(
            f"{path}: skipped {total} undecodable frame{'' if total == 1 else 's'} ({reasons})"
        )
    if errors:
        reasons = ", ".join(f"{n} {why}" for why, n in _by_count(errors))
        lines.append(
            f"{path}: {sum(errors.values())} tunnel headers not decapsulated ({reasons}); "
            f"their UDP datagrams are analysed as UDP"
        )
    if pending:
        lines.append(
            f"{path}: {pending} fragmented IP datagrams never completed "
            f"(fragments missing from the capture; not analysed)"
        )
    return lines


# ---------------------------------------------------------------- shards (flowlens.core.shard)
# (typed, so that the compiled hash is C arithmetic, not Python integers)
_M32 = cython.declare(cython.ulonglong, 0xFFFFFFFF)
_FNV_BASIS = cython.declare(cython.ulonglong, 2166136261)
_FNV_PRIME = cython.declare(cython.ulonglong, 16777619)
_GOLDEN = cython.declare(cython.ulonglong, 0x9E3779B1)
_MIX1 = cython.declare(cython.ulonglong, 0x85EBCA6B)
_MIX2 = cython.declare(cython.ulonglong, 0xC2B2AE35)


@cython.cfunc
@cython.inline
@cython.returns(cython.ulonglong)
@cython.locals(x=bytes, h=cython.ulonglong, i=cython.Py_ssize_t, n=cython.Py_ssize_t)
def _fnv(x: bytes) -> cython.ulonglong:
    """FNV-1a, 32 bits, of one packed address."""
    h = _FNV_BASIS
    n = len(x)
    for i in range(n):
        h = ((h ^ x[i]) * _FNV_PRIME) & _M32
    return h


@cython.cfunc
@cython.returns(cython.ulonglong)
@cython.locals(seed=cython.ulonglong)
def _pair_hash(a: bytes, b: bytes, seed: cython.ulonglong) -> cython.ulonglong:
    """The two addresses' FNV-1a summed (the same either way round), with the ports, mixed by
    MurmurHash3's fmix32 so that every bit reaches the low bits the shard is taken from (Linux
    gives connect() even ports); the same in every process, where Python's hash of bytes is
    salted per process."""
    return _mix(_fnv(a) + _fnv(b) + seed * _GOLDEN)


#: a hash's shard is taken from its low bits, in this many slots: shard 0 owns the first
#: `first` of them, the other shards split the rest evenly (`shard_split`); a C constant for
#: the routing functions, which run for every frame of a shard (a module global there is a
#: dict lookup and Python arithmetic), and SLOTS its Python name
_SLOTS = cython.declare(cython.int, 4096)
SLOTS = _SLOTS


def shard_split(n: int, first_share: float | None = None) -> int:
    """The slots (of SLOTS) shard 0 of `n` owns: an even share, or `first_share` of the hash
    (core/shard.py: shard 0 runs in the merging process, beside its merging, so a command whose
    merge costs gives it less; which shard owns a connection changes nothing in the output)."""
    if n <= 1:
        return SLOTS
    if first_share is None:
        return SLOTS // n
    return min(SLOTS, max(0, round(first_share * SLOTS)))


@cython.cfunc
@cython.inline
@cython.returns(cython.int)
@cython.locals(h=cython.ulonglong, n=cython.int, first=cython.int, s=cython.int)
def _pick(h: int, n: int, first: int) -> int:
    """The shard (0 .. n-1) of hash `h` when shard 0 owns `first` of the SLOTS slots."""
    if n <= 1:
        return 0
    s = h & (_SLOTS - 1)
    if s < first:
        return 0
    return 1 + (s - first) * (n - 1) // (_SLOTS - first)


@cython.cfunc
@cython.inline
@cython.returns(cython.ulonglong)
@cython.locals(d=cython.p_uchar, n=cython.Py_ssize_t, h=cython.ulonglong, i=cython.Py_ssize_t)
def _fnv_at(d: cython.p_uchar, n: cython.Py_ssize_t) -> cython.ulonglong:
    """_fnv over `n` bytes at `d` (an address inside a frame)."""
    h = _FNV_BASIS
    for i in range(n):
        h = ((h ^ d[i]) * _FNV_PRIME) & _M32
    return h


@cython.cfunc
@cython.inline
@cython.returns(cython.ulonglong)
@cython.locals(h=cython.ulonglong)
def _mix(h: cython.ulonglong) -> cython.ulonglong:
    h &= _M32
    h ^= h >> 16
    h = (h * _MIX1) & _M32
    h ^= h >> 13
    h = (h * _MIX2) & _M32
    h ^= h >> 16
    return h


@cython.ccall
@cython.returns(cython.int)
@cython.locals(
    ref=FrameRef, n=cython.int, first=cython.int, d=cython.p_uchar, size=cython.Py_ssize_t, off=cython.Py_ssize_t,
    lt=cython.int, etype=cython.int, ihl=cython.Py_ssize_t, a=cython.Py_ssize_t,
    alen=cython.Py_ssize_t, t=cython.Py_ssize_t, ports=cython.ulonglong,
)  # fmt: skip
def peek_route(ref: FrameRef, n: int, first: int = -1) -> int:
    """`route` of a frame's packet read off its raw headers, without decoding it, or -1 when
    the frame is anything but the common case: an unfragmented TCP segment in IPv4 (or IPv6
    with no extension header) in Ethernet (one VLAN tag at most), Linux cooked capture v1/v2,
    raw IP or BSD loopback. The same hash over the same bytes as `route`, so a shard skips the
    decoding of another shard's segments; every other frame (UDP, which every shard keeps,
    ICMP, fragments, tunnels, other link layers) is decoded by every shard. Not compiled, it
    always says -1."""
    if not cython.compiled:
        return -1
    d = ref.buf
    d += ref.start  # type: ignore[operator]  # (compiled only: a C pointer into the frame)
    size = ref.end - ref.start
    lt = ref.linktype
    if lt == 1:  # LINKTYPE_ETHERNET
        if size < 14:
            return -1
        etype = (d[12] << 8) | d[13]
        off = 14
        if etype == 0x8100:  # one 802.1Q tag
            if size < 18:
                return -1
            etype = (d[16] << 8) | d[17]
            off = 18
    elif lt == 113:  # LINKTYPE_LINUX_SLL: the protocol at 14
        if size < 16:
            return -1
        etype = (d[14] << 8) | d[15]
        off = 16
    elif lt == 276:  # LINKTYPE_LINUX_SLL2: the protocol first
        if size < 20:
            return -1
        etype = (d[0] << 8) | d[1]
        off = 20
    elif lt == 101 or lt == 12 or lt == 14 or lt == 228 or lt == 229 or lt == 0 or lt == 108:
        off = 4 if lt == 0 or lt == 108 else 0  # (BSD loopback: a 4-byte address family)
        if size <= off:
            return -1
        etype = 0x0800 if d[off] >> 4 == 4 else (0x86DD if d[off] >> 4 == 6 else 0)
    else:
        return -1
    if etype == 0x0800:
        if size < off + 20 or d[off] >> 4 != 4 or d[off + 9] != 6:
            return -1
        ihl = (d[off] & 15) * 4
        if ihl < 20 or (d[off + 6] & 0x3F) or d[off + 7]:  # (MF or an offset: a fragment)
            return -1
        a, alen, t = off + 12, 4, off + ihl
    elif etype == 0x86DD:
        if size < off + 40 or d[off] >> 4 != 6 or d[off + 6] != 6:
            return -1
        a, alen, t = off + 8, 16, off + 40
    else:
        return -1
    if size < t + 4:
        return -1
    ports = (((d[t] << 8) | d[t + 1]) ^ ((d[t + 2] << 8) | d[t + 3])) | (6 << 16)
    if first < 0:
        first = _SLOTS // n
    return _pick(_mix(_fnv_at(d + a, alen) + _fnv_at(d + a + alen, alen) + ports * _GOLDEN), n,
                 first)  # fmt: skip


@cython.ccall
@cython.returns(cython.int)
@cython.locals(pkt=Packet, n=cython.int, first=cython.int, proto=cython.int)
def route(pkt: Packet, n: int, first: int = -1) -> int:
    """The shard (0 .. n-1) that owns `pkt`'s connection: a hash of its unordered 5-tuple for
    TCP and UDP (both directions; an IP datagram reassembled from fragments is one packet
    with its ports by then), of the address pair alone for ICMP (a request and its reply have
    different types). A packet out of a tunnel is routed by its own header, not the tunnel's:
    one connection's two directions may come through different outer flows (Teredo's relays,
    VXLAN's per-direction source ports, GTP's uplink and downlink ports)."""
    if first < 0:
        first = _SLOTS // n
    proto = pkt.proto
    if proto == 6 or proto == 17:
        return _pick(_pair_hash(pkt.src, pkt.dst, (pkt.sport ^ pkt.dport) | (proto << 16)), n,
                     first)  # fmt: skip
    return _pick(_pair_hash(pkt.src, pkt.dst, 0), n, first)


@cython.ccall
@cython.returns(cython.int)
@cython.locals(c=Connection, n=cython.int, first=cython.int, proto=cython.int)
def owner(c: Connection, n: int, first: int = -1) -> int:
    """The shard that owns connection `c`: `route` of its packets. Only its owner yields it
    (a shard also keeps the tunnels that carry its connections, whoever owns those)."""
    if first < 0:
        first = _SLOTS // n
    proto = c.proto
    if proto == 6 or proto == 17:
        return _pick(_pair_hash(c.orig_h, c.resp_h, (c.orig_p ^ c.resp_p) | (proto << 16)), n,
                     first)  # fmt: skip
    return _pick(_pair_hash(c.orig_h, c.resp_h, 0), n, first)


@cython.ccall
@cython.returns(cython.int)
@cython.locals(
    pkt=Packet, n=cython.int, first=cython.int, proto=cython.int, sport=cython.int,
    dport=cython.int,
)  # fmt: skip
def quote_route(pkt: Packet, n: int, first: int = -1) -> int:
    """The shard of the flow an ICMP error quotes (-1 for a packet that is no error)."""
    if pkt.quote is None:
        return -1
    if first < 0:
        first = _SLOTS // n
    proto, qsrc, qdst, sport, dport = pkt.quote
    if proto == 6 or proto == 17:
        return _pick(_pair_hash(qsrc, qdst, (sport ^ dport) | (proto << 16)), n, first)
    return _pick(_pair_hash(qsrc, qdst, 0), n, first)


def flow_owner(a: bytes, b: bytes, pa: int, pb: int, proto: int, n: int, first: int = -1) -> int:
    """The shard that owns the TCP or UDP (`proto` 6 or 17) flow between (a, pa) and (b, pb),
    either way round: `owner` of its connection, from its addresses and ports alone."""
    return _pick(_pair_hash(a, b, (pa ^ pb) | (proto << 16)), n, SLOTS // n if first < 0 else first)


def _shard_spec(shard: tuple | None) -> tuple[int, int, int]:
    """(k, n, first) of a Pipeline's `shard`: (k, n), an even split, or (k, n, first), shard 0
    owning `first` of the SLOTS slots (shard_split)."""
    if shard is None:
        return 0, 1, SLOTS
    if len(shard) == 2:
        return shard[0], shard[1], shard_split(shard[1])
    return shard[0], shard[1], shard[2]


def _batch_key(c: Connection) -> tuple:
    """The order of the connections one packet ends (the table's timer heap breaks ties by
    when each was scheduled, which depends on every other connection in the table): by
    when each ended, then by first packet; the same whatever else the table holds, so that
    shards merge into the stream one table gives."""
    return (c.end_ts_ns, c.first_ts_ns, c.first_frame, c.tunnel_parents is not None, c.uid)


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

"""Open a capture (file or stdin), sniff its container from magic bytes, decompress, yield frames.

Opening the file and decompressing it are core/streams.py's; this module sniffs the container
and reads classic pcap, and `Capture` reads pcapng through its base class `PcapngReader`
(core/pcapng.py). The frame both yield is core/frame.py's `FrameRef`.

Frames are tuples `(frame, ts_ns, linktype, data, wirelen)`: 1-based frame number, integer
nanoseconds since the epoch (always within a signed 64-bit integer, so numpy, pandas and Parquet
can hold it), the LINKTYPE_ of *that frame's* interface (pcapng files can mix
interfaces), the captured bytes (a memoryview, valid until the next frame) and the original length.

Containers: classic pcap (microsecond and nanosecond magic, both byte orders; libpcap's
`pcap-savefile(5)`) and pcapng (draft-ietf-opsawg-pcapng: SHB, IDB, EPB, SPB, the obsolete PB;
`if_tsresol`, `if_tsoffset`; several sections), each optionally gzip, bzip2, xz or zstd compressed.
A problem before the first frame raises `CaptureError`; damage after it (a record cut short, an
absurd length) stops reading with a note in `CaptureStats`, and everything before it is kept.
"""

from __future__ import annotations

import io
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from struct import Struct
from typing import BinaryIO, cast

import cython

from flowlens.core import constants as K  # (absolute: capture.pxd cimports it under this name)

from ..errors import CaptureError, EmptyCaptureError, NotACaptureError, TruncatedHeaderError
from . import streams
from .frame import MAX_RECORD_BYTES, Frame, FrameRef
from .pcapng import PcapngReader
from .streams import (
    CHUNK,
    COMPRESSION,
    STEP,
    Prefixed,
    decompressor,
    no_data,
    open_raw,
    read_head,
    stream_problem,
)

# (FrameRef is core/frame.py's: compiled, a cimported type is not re-exported from here)
__all__ = ["CaptureStats", "Capture", "open_capture", "Frame", "MAX_RECORD_BYTES"]


#: a step back in time shorter than this is the order packets from several CPU queues reach
#: libpcap in (a note); from this on it is merged captures or a stepped clock (a warning)
CLOCK_NOTE_NS = 1_000_000


def _span(ns: int) -> str:
    """A duration for a sentence: 12 µs, 3.5 ms, 2.1 s, 3.0 h."""
    if ns < 1_000_000:
        return f"{ns / 1000:.0f} µs"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.1f} ms"
    if ns < 7200 * 10**9:
        return f"{ns / 1e9:.1f} s"
    return f"{ns / 3.6e12:.1f} h"


def _count(n: int, noun: str) -> str:
    """`1 frame`, `3 frames`: a count and its noun, for the warnings people read."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


_CHUNK = CHUNK  # (streams.py: what a decompressor is read in, too)
_STEP = STEP  # (streams.py: what one read asks a decompressor for)
#: how much more of a decompressed stream that does not start like a capture is read, to see
#: whether it is corrupt
_CORRUPT_PROBE = 2 << 20
_NS_PER_S = cython.declare(cython.longlong, 1_000_000_000)  # a C constant when compiled


_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


@dataclass(slots=True)
class CaptureStats:
    """What reading a capture saw, beyond its frames."""

    path: str
    #: "pcap" or "pcapng", with "+gzip" etc. when compressed
    container: str = ""
    #: timestamp resolution of the first interface, in nanoseconds per tick (1000 = microseconds)
    resolution_ns: int = 1000
    frames: int = 0
    #: bytes of captured frame data (not file size)
    bytes: int = 0
    #: frames per link type number
    linktypes: Counter = field(default_factory=Counter)
    first_ts_ns: int | None = None
    last_ts_ns: int | None = None
    #: frames whose timestamp is earlier than the latest before them (clock jumps, merged
    #: captures, or packets queued on different CPUs: tcpdump -i lo, -i any)
    clock_jumps: int = 0
    #: the largest of those steps back (ns) and the frame that made it
    clock_jump_max_ns: int = 0
    clock_jump_frame: int | None = None
    #: frames whose caplen exceeds their original length or the snaplen, and similar oddities
    oddities: Counter = field(default_factory=Counter)
    #: why reading stopped early, or None when the file ended cleanly
    stopped: str | None = None
    #: frame number (the first one not read) and byte offset where reading stopped early
    stopped_frame: int | None = None
    stopped_offset: int | None = None

    @property
    def duration_ns(self) -> int:
        """Span between the smallest and the largest timestamp seen, never negative."""
        if self.first_ts_ns is None or self.last_ts_ns is None:
            return 0
        return max(0, self.last_ts_ns - self.first_ts_ns)

    def notes(self) -> list[str]:
        """Facts about the capture that are no damage: timestamps stepping back by less than
        CLOCK_NOTE_NS, as packets queued on different CPUs reach libpcap out of order
        (a multi-queue NIC, `tcpdump -i lo` or `-i any`: a few microseconds)."""
        if self.clock_jumps and self.clock_jump_max_ns < CLOCK_NOTE_NS:
            return [
                f"{self.path}: timestamps stepped back {_count(self.clock_jumps, 'time')}, by at "
                f"most {_span(self.clock_jump_max_ns)} (frame {self.clock_jump_frame}): packets "
                f"queued on different CPUs, as on a multi-queue interface or tcpdump -i lo; "
                f"harmless"
            ]
        return []

    def warnings(self) -> list[str]:
        """One line per thing a user should know about the capture itself."""
        out = []
        if self.stopped:
            of = " of the decompressed data" if "+" in self.container else ""
            out.append(
                f"{self.path}: {self.stopped} at frame {self.stopped_frame} (byte offset "
                f"{self.stopped_offset}{of}); the {_count(self.frames, 'frame')} before it "
                f"{'was' if self.frames == 1 else 'were'} analysed"
            )
        if self.clock_jumps and self.clock_jump_max_ns >= CLOCK_NOTE_NS:
            out.append(
                f"{self.path}: timestamps went backwards {_count(self.clock_jumps, 'time')}, "
                f"the most by {_span(self.clock_jump_max_ns)} at frame {self.clock_jump_frame} "
                f"(merged captures, or the capturing host's clock was stepped)"
            )
        for what, count in sorted(self.oddities.items()):
            out.append(f"{self.path}: {_count(count, 'frame')} with {what}")
        return out


class Capture(PcapngReader):
    """An open capture: iterate it for frames; `stats` fills in as it is read.

    Use `open_capture(path)` rather than the constructor. Iterate once.
    """

    def __init__(
        self,
        path: str,
        stream: BinaryIO,
        container: str,
        head: bytes,
        raw: BinaryIO,
        owned: bool = True,
    ):
        self.path = path
        self.stats = CaptureStats(path=path, container=container)
        self._stream = stream
        self._read1 = getattr(stream, "read1", stream.read)
        self._step = _STEP if "+" in container else _CHUNK  # (pcap+gzip ...: a decompressor)
        self._head = head
        self._raw = raw
        #: the file was opened here (not stdin, not a file object the caller handed in)
        self._owned = owned and raw is not sys.stdin.buffer
        self._read_error: str | None = None
        #: the file's header blocks as read so far, verbatim: pcap's 24-byte file header; in
        #: pcapng the current section's header block followed by the interface description
        #: blocks of that section read so far (a packet's interface id indexes them)
        self.header_blocks: list[bytes] = [head]
        #: sections begun so far (pcapng files can hold several; a pcap file is one)
        self.section = 1

    @property
    def raw(self) -> BinaryIO:
        """The file the capture is read from (before any decompression): for progress by bytes."""
        return self._raw

    def close(self) -> None:
        if self._owned:
            try:
                self._raw.close()
            except OSError:
                pass

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        for ref in self.frames():
            yield ref.as_tuple()

    def frames(self) -> Iterator[FrameRef]:
        """The frames as one FrameRef updated in place (see there): the fast way to read."""
        if self.stats.container.startswith("pcapng"):
            return self._pcapng()
        return self._pcap()

    # ------------------------------------------------------------------ helpers
    def _stop(self, reason: str, frame: int, offset: int, read_whole: bool = False) -> None:
        """Note why reading stopped. `read_whole`: damage in data that was read whole, so a
        stream error met while reading ahead of it is not its cause."""
        if self._read_error and reason != self._read_error and not read_whole:
            reason = f"{self._read_error} ({reason})"  # the cause, then what it cut
        st = self.stats
        st.stopped, st.stopped_frame, st.stopped_offset = reason, frame, offset

    def _read(self, n: int) -> bytes:
        """Up to n bytes. A stream error ends reading, but the bytes before it are returned:
        read1 returns what one step of a decompressor gave, so a cut gzip keeps its head."""
        if self._read_error:
            return b""
        parts = []
        read1 = self._read1
        step = self._step
        try:
            chunk = read1(min(n, step))  # a buffered file: usually all of it at once
            if len(chunk) >= n or not chunk:
                return chunk
            parts.append(chunk)
            n -= len(chunk)
            while n > 0:
                chunk = read1(min(n, step))
                if not chunk:
                    break
                parts.append(chunk)
                n -= len(chunk)
        except streams.STREAM_ERRORS as exc:
            self._read_error = stream_problem(exc, self.stats.container)
        return b"".join(parts)

    # ------------------------------------------------------------------ classic pcap
    @cython.locals(
        little=cython.bint, tick_ns=cython.longlong, limit=cython.longlong, rec_size=cython.Py_ssize_t,
        pos=cython.Py_ssize_t, end=cython.Py_ssize_t, buflen=cython.Py_ssize_t, need=cython.Py_ssize_t,
        frame=cython.longlong, last_ts=cython.longlong, first_ts=cython.longlong, ts_ns=cython.longlong,
        nbytes=cython.longlong, jumps=cython.longlong, max_jump=cython.longlong,
        max_jump_frame=cython.longlong, bad_frac=cython.longlong, frac_limit=cython.longlong,
        sec=cython.uint, frac=cython.uint, caplen=cython.uint, wirelen=cython.uint, rec=cython.p_uchar,
        buf=bytes, ref=FrameRef,
    )  # fmt: skip
    def _pcap(self) -> Iterator[FrameRef]:
        head = self._head
        endian, tick_ns = _PCAP_MAGIC[head[:4]]
        _vmaj, _vmin, _zone, _sigfigs, snaplen, network = Struct(endian + "HHiIII").unpack_from(
            head, 4
        )
        linktype = network & 0x0FFFFFFF  # upper bits may carry FCS length (pcap-savefile(5))
        st = self.stats
        st.resolution_ns = tick_ns
        limit = max(snaplen, 65535) if snaplen <= MAX_RECORD_BYTES else MAX_RECORD_BYTES
        limit = max(limit, 262144)
        little = endian == "<"
        unpack_rec = Struct(endian + "IIII").unpack_from
        rec_size = 16
        self._read_error = None
        offset = 24  # file offset of buf[0]
        buf = b""
        ref = FrameRef()
        ref.linktype = linktype
        buflen = 0
        pos = 0
        frame = 0
        last_ts = -1
        first_ts = 0  # set at frame 1
        nbytes = 0
        jumps = max_jump = max_jump_frame = 0
        bad_frac = 0
        frac_limit = 1_000_000_000 // tick_ns
        while True:
            if buflen - pos < rec_size:
                more = self._read(_CHUNK)
                buf = buf[pos:] + more
                buflen = len(buf)
                offset += pos
                pos = 0
                if buflen < rec_size:
                    if buf:
                        self._stop("capture ends inside a record header", frame + 1, offset)
                    elif self._read_error:
                        self._stop(self._read_error, frame + 1, offset)
                    break
            if cython.compiled:  # the record header read in place, in the file's byte order
                rec = buf  # a bytes object coerces to a pointer to its contents
                rec += pos  # type: ignore[operator]  # (compiled: a C pointer)
                sec, frac = K.u32(rec, 0, little), K.u32(rec, 4, little)
                caplen, wirelen = K.u32(rec, 8, little), K.u32(rec, 12, little)
            else:
                sec, frac, caplen, wirelen = unpack_rec(buf, pos)
            if caplen > limit:
                self._stop(
                    f"record header claims {caplen} bytes (more than the {limit}-byte limit)",
                    frame + 1,
                    offset + pos,
                )
                break
            end = pos + rec_size + caplen
            if end > buflen:
                need = end - buflen
                more = self._read(max(need, _CHUNK))
                buf = buf[pos:] + more
                buflen = len(buf)
                offset += pos
                end -= pos
                pos = 0
                if end > buflen:
                    self._stop("capture ends inside a packet", frame + 1, offset)
                    break
            frame += 1
            if frac >= frac_limit:
                bad_frac += 1
            # < 2**32 s and < 2**32 ticks of at most 1000 ns: within a signed 64-bit integer
            ts_ns = (sec * _NS_PER_S) + frac * tick_ns
            if ts_ns < last_ts:
                jumps += 1
                if last_ts - ts_ns > max_jump:
                    max_jump, max_jump_frame = last_ts - ts_ns, frame
            else:
                last_ts = ts_ns
            if frame == 1 or ts_ns < first_ts:
                first_ts = ts_ns
            nbytes += caplen
            ref.frame, ref.ts_ns, ref.wirelen = frame, ts_ns, wirelen
            ref.buf, ref.start, ref.end = buf, pos + rec_size, end
            ref.rec_start, ref.rec_end = pos, end
            yield ref
            pos = end
        st.frames = frame
        st.bytes = nbytes
        if frame:
            st.linktypes[linktype] = frame
            st.first_ts_ns = first_ts
            st.last_ts_ns = last_ts
        st.clock_jumps = jumps
        if jumps:
            st.clock_jump_max_ns, st.clock_jump_frame = max_jump, max_jump_frame
        if bad_frac:
            st.oddities["a timestamp fraction of a second or more"] += bad_frac


def open_capture(source: str | os.PathLike | BinaryIO) -> Capture:
    """Open a capture and sniff its container; raises `CaptureError` subclasses.

    `source` is a path (`str` or `os.PathLike`; `-` is stdin) or a binary file object open for
    reading (its `name`, when it has one, labels the messages; flowlens never closes a file
    object it was given).

    The container is decided by magic bytes, never by the file name. The whole file header
    (pcap's 24 bytes, pcapng's first section header block) must be there, or this raises
    `TruncatedHeaderError`; damage after it is reported by the reader, not raised.
    """
    if hasattr(source, "read"):
        raw = cast(BinaryIO, source)
        name = getattr(raw, "name", None)
        path = name if isinstance(name, str) else "<stream>"
        owned = False
    else:
        path = os.fspath(source)
        if not isinstance(path, str):
            path = os.fsdecode(path)
        raw = open_raw(path)
        owned = True
    try:
        stream: BinaryIO = raw
        kinds: list[str] = []
        for _ in range(3):  # at most a couple of nested compressions (e.g. .tar is not handled)
            head = read_head(stream, 12, path, kinds)
            kind = next((k for magic, k in COMPRESSION if head.startswith(magic)), None)
            if kind is None:
                break
            kinds.append(kind)
            stream = decompressor(kind, io.BufferedReader(Prefixed(head, stream)), path)
        else:
            raise NotACaptureError(path, "compressed too many times over")
        suffix = "".join("+" + k for k in kinds)
        if not head:
            if kinds:
                raise TruncatedHeaderError(path, f"{kinds[-1]} stream holds no data")
            raise EmptyCaptureError(path, no_data(path, raw))
        if head[:4] in _PCAP_MAGIC:
            rest = read_head(stream, 24 - len(head), path, kinds) if len(head) < 24 else b""
            full = head + rest
            if len(full) < 24:
                raise TruncatedHeaderError(
                    path, f"pcap file header cut short ({len(full)} of 24 bytes)"
                )
            # re-feed whatever of the 12-byte sniff lies beyond the header (never: 12 < 24)
            return Capture(path, stream, "pcap" + suffix, full, raw, owned)
        if head[:4] == _PCAPNG_SHB:
            if len(head) < 12:
                raise TruncatedHeaderError(path, "pcapng section header cut short")
            if head[8:12] not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
                raise NotACaptureError(path, "pcapng section header with a bad byte-order magic")
            endian = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            (blen,) = Struct(endian + "I").unpack_from(head, 4)
            if blen < 28 or blen % 4 or blen > MAX_RECORD_BYTES:
                raise NotACaptureError(path, f"pcapng section header with a bad length ({blen})")
            # the reader gets the whole first section header, as it gets pcap's 24 bytes
            full = head + read_head(stream, blen - len(head), path, kinds)
            if len(full) < blen:
                raise TruncatedHeaderError(
                    path, f"pcapng section header cut short ({len(full)} of {blen} bytes)"
                )
            return Capture(path, stream, "pcapng" + suffix, full, raw, owned)
        if kinds:
            # a corrupt stream may give garbage before its check fails (bzip2 checks a block of
            # up to 900 KiB at its end): that failure is the better message
            try:
                for _ in range(_CORRUPT_PROBE // _STEP):
                    if not stream.read(_STEP):
                        break
            except EOFError:
                pass  # cut short: that it is no capture says more
            except streams.STREAM_ERRORS as exc:
                raise CaptureError(path, stream_problem(exc, suffix)) from exc
        if len(head) < 4:
            raise TruncatedHeaderError(path, f"too short to be a capture ({len(head)} bytes)")
        shown = " ".join(f"{b:02x}" for b in head[:4])
        raise NotACaptureError(path, f"not a pcap or pcapng capture (starts with {shown})")
    except BaseException:
        if owned and raw is not sys.stdin.buffer:
            raw.close()
        raise

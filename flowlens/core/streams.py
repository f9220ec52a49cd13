"""A capture's bytes: open a path or stdin (OS errors as `CaptureError`), recognise a
compressed stream by its magic bytes (gzip, bzip2, xz, zstd) and decompress it, and say what a
stream error mid-read means. core/capture.py sniffs the container inside and reads its frames.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import zlib
from typing import BinaryIO, cast

from ..errors import CaptureError

__all__ = [
    "CHUNK",
    "STEP",
    "COMPRESSION",
    "STREAM_ERRORS",
    "Prefixed",
    "decompressor",
    "no_data",
    "open_raw",
    "read_exactly",
    "read_head",
    "stream_problem",
]

#: the size of the reads a capture is parsed in (and of a zstd stream's buffer)
CHUNK = 1 << 20
#: what one read asks a decompressor for: a corrupt stream loses the output of the step that
#: fails, so the steps are small (the bytes before the damage are kept to within this)
STEP = 1 << 13

#: compressed streams by their magic bytes
COMPRESSION = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


class Prefixed(io.RawIOBase):
    """A raw stream that replays bytes already read from `inner` before reading on."""

    def __init__(self, prefix: bytes, inner: BinaryIO) -> None:
        self._prefix = prefix
        self._inner = inner

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._inner.read(len(b))
        n = len(data)
        b[:n] = data
        return n


def read_exactly(f: BinaryIO, n: int) -> bytes:
    """Read up to n bytes, looping over short reads (pipes, decompressors)."""
    parts = []
    while n > 0:
        chunk = f.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def open_raw(path: str) -> BinaryIO:
    """Open a path (or `-` for stdin) for binary reading, turning OS errors into CaptureError."""
    if path == "-":
        return sys.stdin.buffer
    if "://" in path:
        raise CaptureError(path, "no such file (flowlens reads local files and stdin, not URLs)")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise CaptureError(path, "no such file") from None
    except PermissionError:
        raise CaptureError(path, "permission denied") from None
    except OSError as exc:
        raise CaptureError(path, exc.strerror or str(exc)) from exc
    if stat.S_ISDIR(st.st_mode):
        raise CaptureError(path, "is a directory, not a capture file")
    if stat.S_ISFIFO(st.st_mode):
        # A FIFO without a writer would block open() forever: open non-blocking, then switch.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise CaptureError(path, exc.strerror or str(exc)) from exc
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise CaptureError(path, "is not a regular file")
    try:
        return open(path, "rb")
    except PermissionError:
        raise CaptureError(path, "permission denied") from None
    except OSError as exc:
        raise CaptureError(path, exc.strerror or str(exc)) from exc


def decompressor(kind: str, f: BinaryIO, path: str) -> BinaryIO:
    # the modules are imported here, when needed: most captures are not compressed, and every
    # run would pay for importing them
    global STREAM_ERRORS
    if kind == "gzip":
        import gzip

        return cast(BinaryIO, gzip.GzipFile(fileobj=f, mode="rb"))
    if kind == "bzip2":
        import bz2

        return cast(BinaryIO, bz2.BZ2File(f, "rb"))
    if kind == "xz":
        import lzma

        if lzma.LZMAError not in STREAM_ERRORS:
            STREAM_ERRORS += (lzma.LZMAError,)
        return cast(BinaryIO, lzma.LZMAFile(f, "rb"))
    try:
        import zstandard
    except ImportError:  # pragma: no cover - zstandard is a declared dependency
        raise CaptureError(
            path, "zstd-compressed capture, but the zstandard package is missing"
        ) from None
    return io.BufferedReader(_ZstdReader(f, zstandard), CHUNK)


class _ZstdReader(io.RawIOBase):
    """zstd frames one after another. python-zstandard's stream_reader treats input that ends
    inside a frame as a clean end; a cut capture must be reported, so this raises EOFError."""

    #: compressed bytes per step: zstd's best ratio is ~32000:1, so one step stays under 64 MiB
    _STEP = 2048

    def __init__(self, inner: BinaryIO, zstandard) -> None:
        self._inner = inner
        self._dctx = zstandard.ZstdDecompressor()
        self._error = zstandard.ZstdError
        self._obj = None  # decompressor of the current frame
        self._carry = b""  # input after the end of the previous frame
        self._out = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self._pos >= len(self._out):
            obj = self._obj
            if obj is not None and obj.eof:
                self._carry, obj, self._obj = obj.unused_data, None, None
            chunk = self._carry or self._inner.read(self._STEP)
            self._carry = b""
            if not chunk:
                if obj is not None:
                    raise EOFError("zstd stream ended inside a frame")
                return 0
            if obj is None:
                obj = self._obj = self._dctx.decompressobj()
            try:
                self._out, self._pos = obj.decompress(chunk), 0
            except self._error as exc:
                raise ValueError(f"zstd: {exc}") from exc
        n = min(len(b), len(self._out) - self._pos)
        b[:n] = self._out[self._pos : self._pos + n]
        self._pos += n
        return n


# Errors a decompressor or a dying disk raise mid-stream; they end reading, they are not fatal.
STREAM_ERRORS: tuple[type[Exception], ...] = (
    EOFError,
    OSError,
    zlib.error,
    ValueError,
)  # + lzma's, once it is imported


def stream_problem(exc: BaseException, container: str) -> str:
    """A short phrase for an error met while reading: a cut or corrupt compressed stream, or
    an I/O error."""
    kind = container.rsplit("+", 1)[1] if "+" in container else None
    if kind is None:
        return f"read error ({getattr(exc, 'strerror', None) or exc})"
    if isinstance(exc, EOFError):
        return f"{kind} stream cut short"
    return f"{kind} data corrupt ({exc})"


def read_head(stream: BinaryIO, n: int, path: str, kinds: list[str]) -> bytes:
    """Read n bytes of a file's header; a cut or corrupt stream here is a CaptureError."""
    try:
        return read_exactly(stream, n)
    except STREAM_ERRORS as exc:
        raise CaptureError(path, stream_problem(exc, "".join("+" + k for k in kinds))) from exc


def no_data(path: str, raw: BinaryIO) -> str:
    if path == "-":
        return "no data on standard input"
    try:
        if stat.S_ISFIFO(os.fstat(raw.fileno()).st_mode):
            return "no data (a FIFO that no writer has open, or one that wrote nothing)"
    except (OSError, ValueError):
        pass
    return "empty file"

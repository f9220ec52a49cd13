"""Write chosen frames of a capture to a new capture, byte for byte, in the input's container.

What a reader of the output sees is what the input held for those frames: a pcap input gives a
pcap with the same file header (magic, so the timestamp resolution, byte order, snaplen and
link type) and the frames' records unchanged; a pcapng input gives a pcapng with each section's
header block and every interface description block of that section (so each packet block's
interface id still names its interface, with its link type, snaplen, `if_tsresol` and
`if_tsoffset`), and the packet blocks unchanged, options included. The one field rewritten is
the section header's section length, set to -1 ("not specified", draft-ietf-opsawg-pcapng
§4.1), since the section no longer holds what it said. Name resolution, statistics and other
blocks are left out.

Frames are numbered by `Capture.frames()`, the same numbering every report and finding uses
(1-based, tcpdump -# and Wireshark's), so `FrameSet` can hold frame numbers from a pipeline's
pass and `copy_frames` can find them on a second read of the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from .capture import Capture, CaptureStats, open_capture
from .frame import FrameRef

__all__ = ["FrameSet", "CaptureWriter", "CopyResult", "copy_frames"]

#: the section header's "section length" field: bytes 16 to 24 of the block; all ones is -1
_SECTION_LENGTH = slice(16, 24)
_UNSPECIFIED = b"\xff" * 8


class FrameSet:
    """A set of frame numbers, one bit each: memory follows the largest frame number (an eighth
    of a byte per frame of the capture), not the number of frames in the set."""

    __slots__ = ("_bits", "count", "last")

    def __init__(self, frames: Iterable[int] = ()) -> None:
        self._bits = bytearray()
        #: frames in the set
        self.count = 0
        #: the largest frame number in the set (0 when empty)
        self.last = 0
        self.update(frames)

    def add(self, frame: int) -> None:
        if frame < 1:
            raise ValueError(f"frame numbers count from 1, not {frame}")
        byte, bit = frame >> 3, 1 << (frame & 7)
        bits = self._bits
        if byte >= len(bits):
            bits.extend(bytes(max(byte + 1 - len(bits), len(bits))))  # (amortised doubling)
        if not bits[byte] & bit:
            bits[byte] |= bit
            self.count += 1
            if frame > self.last:
                self.last = frame

    def update(self, frames: Iterable[int]) -> None:
        for frame in frames:
            self.add(frame)

    def __contains__(self, frame: object) -> bool:
        if not isinstance(frame, int) or frame < 1:
            return False
        byte = frame >> 3
        return byte < len(self._bits) and bool(self._bits[byte] & (1 << (frame & 7)))

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        bits = self._bits
        for byte, value in enumerate(bits):
            if value:
                for bit in range(8):
                    if value & (1 << bit):
                        yield (byte << 3) | bit


class CaptureWriter:
    """Writes the frames of one open `Capture` to `out` in its container, as they are read.

    Call `write(ref)` with frames from `capture.frames()` (in capture order), then `close()`,
    which writes the file header alone when no frame was written, so the output is always a
    valid capture. `out` is a binary file; it is not closed here.
    """

    def __init__(self, capture: Capture, out: BinaryIO) -> None:
        self.capture = capture
        self.out = out
        self.pcapng = capture.stats.container.startswith("pcapng")
        #: frames written
        self.frames = 0
        self._section = 0  # the input section whose header blocks were written last
        self._blocks = 0  # ... and how many of them

    def _headers(self) -> None:
        """Whatever header blocks of the current section the output lacks, in file order."""
        cap = self.capture
        blocks = cap.header_blocks
        if cap.section != self._section:
            self._section, self._blocks = cap.section, 0
        if self._blocks == len(blocks):
            return
        for i in range(self._blocks, len(blocks)):
            block = bytes(blocks[i])
            if self.pcapng and i == 0:
                block = (
                    block[: _SECTION_LENGTH.start] + _UNSPECIFIED + block[_SECTION_LENGTH.stop :]
                )
            self.out.write(block)
        self._blocks = len(blocks)

    def write(self, ref: FrameRef) -> None:
        """Append one frame (the current one of `capture.frames()`), its record unchanged."""
        self._headers()
        self.out.write(ref.record)
        self.frames += 1

    def close(self) -> None:
        """Finish the output: a capture without frames still gets its header."""
        if not self.frames:
            self._headers()


@dataclass(slots=True)
class CopyResult:
    """What `copy_frames` wrote."""

    #: frames written
    frames: int
    #: the input's container ("pcap", "pcapng+gzip" ...): the output is the same, uncompressed
    container: str
    #: the second read's capture facts (up to the last frame it needed)
    stats: CaptureStats


def copy_frames(
    source: str | os.PathLike | BinaryIO, frames: FrameSet, out: BinaryIO
) -> CopyResult:
    """Read `source` again and write the frames numbered in `frames` to `out` (see the module
    docstring); reading stops after the last of them. Raises `CaptureError` when the source
    cannot be opened. With an empty set the output is the capture's header blocks up to its
    first frame (pcapng: its interfaces)."""
    with open_capture(source) as cap:
        writer = CaptureWriter(cap, out)
        last = frames.last
        for ref in cap.frames():
            n = ref.frame
            if n > last:
                break
            if n in frames:
                writer.write(ref)
                if n == last:
                    break
        writer.close()
        return CopyResult(writer.frames, cap.stats.container, cap.stats)

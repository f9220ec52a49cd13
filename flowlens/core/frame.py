"""One frame where a reader left it: `FrameRef`, and the limits every container reader keeps.

Both readers (core/capture.py: classic pcap; core/pcapng.py) yield one FrameRef updated in
place; the decoder (core/decode.py) reads it in place. frame.pxd gives its C layout.
"""

from __future__ import annotations

__all__ = ["Frame", "FrameRef", "MAX_RECORD_BYTES", "TS_MIN", "TS_MAX"]

Frame = tuple  # (frame, ts_ns, linktype, data, wirelen)

#: the largest record flowlens accepts (Wireshark's limit for most link types is 256 KiB); a
#: header claiming more is damage, and is never allocated.
MAX_RECORD_BYTES = 262144 * 4

#: the range of a signed 64-bit nanosecond timestamp (pandas: 1677-09-21 to 2262-04-11; -2**63
#: itself is numpy's NaT)
TS_MIN, TS_MAX = -(1 << 63) + 1, (1 << 63) - 1


class FrameRef:
    """One frame where it lies in the block it was read in: `buf[start:end]`.

    `Capture.frames()` yields the same FrameRef for every frame, updated in place (no objects
    are made per frame): read it before asking for the next. `Decoder.decode_frame` decodes one
    in place; `data` and `as_tuple()` give the frame the way iterating a Capture does.
    """

    __slots__ = (
        "frame",  # 1-based frame number
        "ts_ns",  # integer nanoseconds since the epoch
        "linktype",  # LINKTYPE_ of the frame's interface
        "buf",  # the bytes block holding the frame
        "start",  # the frame's captured bytes are buf[start:end]
        "end",
        "wirelen",  # original length on the wire
        # the frame's whole record as the file holds it, buf[rec_start:rec_end]: pcap's
        # 16-byte record header and the captured bytes, or pcapng's packet block
        "rec_start",
        "rec_end",
    )

    def __init__(self) -> None:
        self.frame = self.ts_ns = self.linktype = self.wirelen = 0
        self.buf = b""
        self.start = self.end = 0
        self.rec_start = self.rec_end = 0

    @property
    def data(self) -> memoryview:
        """The captured bytes (a view of the block, valid until the next frame)."""
        return memoryview(self.buf)[self.start : self.end]

    @property
    def record(self) -> memoryview:
        """The frame's record byte for byte as the (decompressed) file holds it: a pcap record
        (its 16-byte header, then the captured bytes) or a pcapng packet block (EPB, SPB or
        the obsolete PB, options and trailing length included). A view, valid until the next
        frame; `Capture.header_blocks` holds what a file needs before it."""
        return memoryview(self.buf)[self.rec_start : self.rec_end]

    def as_tuple(self) -> Frame:
        return (self.frame, self.ts_ns, self.linktype, self.data, self.wirelen)

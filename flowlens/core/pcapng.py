"""pcapng (draft-ietf-opsawg-pcapng): section header, interface description, enhanced, simple
and the obsolete packet blocks; each interface keeps its own link type and clock (`if_tsresol`,
`if_tsoffset`); several sections.

`PcapngReader` is a base class of `flowlens.core.capture.Capture`: `Capture.frames()` returns
its `_pcapng()` for a pcapng file. It reads through the capture's `_read` and notes damage with
`_stop` (Capture's, see there), and keeps `header_blocks` and `section` up to date.
"""

from __future__ import annotations

from collections.abc import Iterator
from struct import Struct
from typing import TYPE_CHECKING

import cython

from flowlens.core import constants as K  # (absolute: pcapng.pxd cimports it under this name)

from .frame import MAX_RECORD_BYTES, TS_MAX, TS_MIN, FrameRef
from .streams import CHUNK

if TYPE_CHECKING:
    from .capture import CaptureStats

__all__ = ["PcapngReader", "idb_clock"]

_MAX_RECORD = cython.declare(cython.longlong, MAX_RECORD_BYTES)  # a C constant when compiled
_NS_PER_S = cython.declare(cython.longlong, 1_000_000_000)  # a C constant when compiled


class PcapngReader:
    """The pcapng half of `Capture` (see the module docstring)."""

    if TYPE_CHECKING:  # what Capture provides (capture.py)
        stats: CaptureStats
        header_blocks: list[bytes]
        section: int
        _head: bytes
        _read_error: str | None

        def _read(self, n: int) -> bytes: ...

        def _stop(self, reason: str, frame: int, offset: int, read_whole: bool = False) -> None: ...

    def _more(
        self, buf: bytes, pos: cython.Py_ssize_t, need: cython.Py_ssize_t, ahead: cython.Py_ssize_t
    ) -> bytes:
        """`buf` from `pos` on, followed by `need` more bytes when the stream has them, or by
        `ahead` bytes if that is more."""
        return buf[pos:] + self._read(max(need, ahead))

    @cython.locals(
        little=cython.bint, pos=cython.Py_ssize_t, ahead=cython.Py_ssize_t, buflen=cython.Py_ssize_t, bstart=cython.Py_ssize_t,
        code=cython.uint, blen=cython.uint, data_end=cython.longlong, start=cython.Py_ssize_t,
        block_offset=cython.longlong, frame=cython.longlong, nbytes=cython.longlong,
        jumps=cython.longlong, max_jump=cython.longlong, max_jump_frame=cython.longlong,
        first_ts=cython.longlong, last_ts=cython.longlong, ts_ns=cython.longlong,
        iface=cython.uint, ts_hi=cython.uint, ts_lo=cython.uint, caplen=cython.uint,
        wirelen=cython.uint, ticks=cython.ulonglong, cur_if=cython.longlong, fast=cython.bint,
        c_num=cython.ulonglong, c_den=cython.ulonglong, c_off=cython.longlong,
        c_maxticks=cython.ulonglong, c_lt=cython.longlong, run_lt=cython.longlong,
        run_n=cython.longlong, rec=cython.p_uchar, buf=bytes, ref=FrameRef,
    )  # fmt: skip
    def _pcapng(self) -> Iterator[FrameRef]:
        """Walk pcapng blocks; each interface keeps its own link type and clock.

        Blocks are read in place from 1 MiB chunks. The counters live in locals and reach
        `stats` when reading ends (or the consumer stops early); `first_ts_ns` stays up to date
        frame by frame, as it may be asked for while reading.
        """
        st = self.stats
        self._read_error = None
        # Blocks are parsed in place in chunks of about CHUNK bytes (from a decompressor in
        # steps of STEP: see _read)
        ahead = CHUNK
        buf = self._head  # the whole first section header block
        self.header_blocks, self.section = [], 0  # (the loop reads that block first)
        ref = FrameRef()
        buflen = len(buf)
        pos = 0
        offset = 0  # file offset of buf[0]
        interfaces: list[
            tuple[int, int, int, int, int]
        ] = []  # (linktype, snaplen, num, den, offset)
        little = buf[8:12] == b"\x4d\x3c\x2b\x1a"
        endian = "<" if little else ">"
        block_hdr, epb = Struct(endian + "II"), Struct(endian + "IIIII")  # redone at each section
        frame = 0
        nbytes = 0
        jumps = max_jump = max_jump_frame = 0
        first_ts = 0
        last_ts = 0  # the largest timestamp so far (valid once frame > 0)
        # the interface of the last packet, its clock in C when exact there (see below)
        cur_if = -1
        fast = False
        c_num = c_den = c_maxticks = 1
        c_off = 0
        c_lt = 0
        run_lt = -1  # frames of one link type in a row, added to stats.linktypes in order
        run_n = 0
        try:
            while True:
                if buflen - pos < 8:
                    buf = self._more(buf, pos, 8 - (buflen - pos), ahead)
                    buflen = len(buf)
                    offset += pos
                    pos = 0
                    if buflen < 8:
                        if buflen:
                            self._stop("capture ends inside a block header", frame + 1, offset)
                        elif self._read_error:
                            self._stop(self._read_error, frame + 1, offset)
                        break
                if cython.compiled:  # the block header read in place, in the section's byte order
                    rec = buf
                    rec += pos  # type: ignore[operator]  # (compiled: a C pointer)
                    code, blen = K.u32(rec, 0, little), K.u32(rec, 4, little)
                else:
                    code, blen = block_hdr.unpack_from(buf, pos)
                block_offset = offset + pos
                if code == 0x0A0D0D0A:  # Section Header Block (the same in either byte order)
                    if buflen - pos < 12:
                        buf = self._more(buf, pos, 12 - (buflen - pos), ahead)
                        buflen = len(buf)
                        offset += pos
                        pos = 0
                    if buflen - pos < 12:
                        self._stop("capture ends inside a section header", frame + 1, block_offset)
                        break
                    bom = buf[pos + 8 : pos + 12]
                    if bom == b"\x4d\x3c\x2b\x1a":
                        endian = "<"
                    elif bom == b"\x1a\x2b\x3c\x4d":
                        endian = ">"
                    else:
                        self._stop(
                            "section header with a bad byte-order magic",
                            frame + 1,
                            block_offset,
                            True,
                        )
                        break
                    little = endian == "<"
                    interfaces = []
                    cur_if = -1
                    block_hdr, epb = Struct(endian + "II"), Struct(endian + "IIIII")
                    (blen,) = Struct(endian + "I").unpack_from(buf, pos + 4)
                    if blen < 28 or blen % 4 or blen > MAX_RECORD_BYTES:
                        self._stop(
                            f"section header with a bad length ({blen})",
                            frame + 1,
                            block_offset,
                            True,
                        )
                        break
                    if buflen - pos < blen:
                        buf = self._more(buf, pos, blen - (buflen - pos), ahead)
                        buflen = len(buf)
                        offset += pos
                        pos = 0
                        if buflen < blen:
                            self._stop(
                                "capture ends inside a section header", frame + 1, block_offset
                            )
                            break
                    # a new section: its interfaces are numbered from 0 again
                    self.header_blocks = [buf[pos : pos + blen]]
                    self.section += 1
                    pos += blen
                    continue
                if blen < 12 or blen % 4 or blen > _MAX_RECORD:
                    self._stop(
                        f"block of type {code} with a bad length ({blen})",
                        frame + 1,
                        block_offset,
                        True,
                    )
                    break
                if buflen - pos < blen:
                    buf = self._more(buf, pos, blen - (buflen - pos), ahead)
                    buflen = len(buf)
                    offset += pos
                    pos = 0
                    if buflen < blen:
                        self._stop("capture ends inside a block", frame + 1, block_offset)
                        break
                bstart = pos + 8  # the block body
                pos += blen
                data_end = blen - 12  # body without the trailing length
                if code == 6 or code == 2:  # Enhanced Packet Block, obsolete Packet Block
                    if data_end < 20:
                        self._stop("packet block too short", frame + 1, block_offset, True)
                        break
                    if code == 2:
                        iface, _drops, ts_hi, ts_lo, caplen, wirelen = Struct(
                            endian + "HHIIII"
                        ).unpack_from(buf, bstart)
                    elif cython.compiled:
                        rec = buf
                        rec += bstart  # type: ignore[operator]  # (compiled: a C pointer)
                        iface, ts_hi, ts_lo = (
                            K.u32(rec, 0, little),
                            K.u32(rec, 4, little),
                            K.u32(rec, 8, little),
                        )
                        caplen, wirelen = K.u32(rec, 12, little), K.u32(rec, 16, little)
                    else:
                        iface, ts_hi, ts_lo, caplen, wirelen = epb.unpack_from(buf, bstart)
                    start = 20
                    if iface >= len(interfaces):
                        st.oddities["a packet for an undeclared interface"] += 1
                        continue
                    if start + caplen > data_end:
                        self._stop(
                            f"packet block claims {caplen} bytes but holds {data_end - start}",
                            frame + 1,
                            block_offset,
                            True,
                        )
                        break
                    if iface != cur_if:
                        # an interface's clock in C when every timestamp it can give fits:
                        # ticks * num below 2**62 and |offset| below 2**32 s keep the sum
                        # within the signed 64-bit range, and floor division of
                        # non-negative numbers is C division
                        linktype, _snap, num, den, ts_offset = interfaces[iface]
                        cur_if = iface
                        c_lt = linktype
                        fast = (
                            num <= (1 << 62)
                            and den <= (1 << 62)
                            and -(1 << 32) < ts_offset < (1 << 32)
                        )
                        if fast:
                            c_num, c_den, c_off = num, den, ts_offset * _NS_PER_S
                            c_maxticks = ((1 << 62) - 1) // num
                    ticks = (cython.cast(cython.ulonglong, ts_hi) << 32) | ts_lo
                    if fast and ticks <= c_maxticks:
                        ts_ns = c_off + cython.cast(cython.longlong, (ticks * c_num) // c_den)
                    else:
                        _lt, _snap, num, den, ts_offset = interfaces[iface]
                        big = ts_offset * 1_000_000_000 + (ticks * num) // den
                        if not TS_MIN <= big <= TS_MAX:  # if_tsresol/if_tsoffset from a damaged IDB
                            st.oddities["a timestamp beyond the 64-bit nanosecond range"] += 1
                            ts_ns = last_ts if frame else 0
                        else:
                            ts_ns = big
                elif code == 1:  # Interface Description Block
                    if data_end < 8:
                        st.oddities["an interface description that is too short"] += 1
                        continue
                    body = buf[bstart : bstart + data_end]
                    linktype, _res, snaplen = Struct(endian + "HHI").unpack_from(body)
                    num, den, ts_offset = idb_clock(body[8:], endian)
                    interfaces.append((linktype, snaplen, num, den, ts_offset))
                    self.header_blocks.append(buf[bstart - 8 : pos])
                    if len(interfaces) == 1 and frame == 0:
                        st.resolution_ns = max(1, num // den) if den else 1000
                    continue
                elif code == 3:  # Simple Packet Block: interface 0, no timestamp
                    if not interfaces or data_end < 4:
                        st.oddities["a simple packet block without an interface"] += 1
                        continue
                    (wirelen,) = Struct(endian + "I").unpack_from(buf, bstart)
                    linktype, snap, _num, _den, _off = interfaces[0]
                    caplen = min(wirelen, data_end - 4, snap or wirelen)
                    start = 4
                    ts_ns = last_ts if frame else 0
                    cur_if = -1  # the linktype below is not the cached interface's
                    c_lt = linktype
                else:
                    continue  # name resolution, statistics, custom and unknown blocks
                frame += 1
                if frame == 1:
                    first_ts = last_ts = ts_ns
                    st.first_ts_ns = first_ts
                elif ts_ns < last_ts:
                    jumps += 1
                    if last_ts - ts_ns > max_jump:
                        max_jump, max_jump_frame = last_ts - ts_ns, frame
                    if ts_ns < first_ts:
                        first_ts = ts_ns
                        st.first_ts_ns = first_ts
                else:
                    last_ts = ts_ns
                if c_lt != run_lt:
                    if run_n:
                        st.linktypes[run_lt] += run_n
                    run_lt, run_n = c_lt, 0
                run_n += 1
                nbytes += caplen
                ref.frame, ref.ts_ns, ref.linktype, ref.wirelen = frame, ts_ns, c_lt, wirelen
                ref.buf, ref.start, ref.end = buf, bstart + start, bstart + start + caplen
                ref.rec_start, ref.rec_end = bstart - 8, pos
                yield ref
        finally:  # also when the consumer stops early, as frame-by-frame stats would be
            st.frames = frame
            st.bytes = nbytes
            if frame:
                st.first_ts_ns = first_ts
                st.last_ts_ns = last_ts
            st.clock_jumps = jumps
            if jumps:
                st.clock_jump_max_ns, st.clock_jump_frame = max_jump, max_jump_frame
            if run_n:
                st.linktypes[run_lt] += run_n


def idb_clock(options: bytes, endian: str) -> tuple[int, int, int]:
    """(numerator ns, denominator, offset s) of an interface's clock from its IDB options.

    `if_tsresol` (code 9): high bit clear = 10**-n seconds, set = 2**-n seconds; default µs.
    `if_tsoffset` (code 14): seconds added to every timestamp.
    """
    num, den, ts_offset = 1000, 1, 0
    i = 0
    hdr = Struct(endian + "HH")
    while i + 4 <= len(options):
        code, length = hdr.unpack_from(options, i)
        value = options[i + 4 : i + 4 + length]
        if code == 0:
            break
        if code == 9 and length >= 1:
            res = value[0]
            if res & 0x80:
                num, den = 1_000_000_000, 1 << (res & 0x7F)
            else:
                exp = res & 0x7F
                if exp <= 9:
                    num, den = 10 ** (9 - exp), 1
                else:
                    num, den = 1, 10 ** (exp - 9)
        elif code == 14 and length == 8:
            (ts_offset,) = Struct(endian + "q").unpack_from(value)
        i += 4 + ((length + 3) & ~3)
    return num, den, ts_offset

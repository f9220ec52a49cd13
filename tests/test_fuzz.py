"""Damaged and hostile captures: every mutant ends in exit 0 (with warnings) or one `Error:` line.

Seeds are every scenario of tests/pcapgen.py (classic pcap in both byte orders and resolutions,
pcapng, other link layers), sample_pcaps/ and the captures in ../shared/corpus, each cut at a
record boundary past SEED_CAP bytes so that a mutant runs in milliseconds. The mutators know the
containers' layouts (libpcap's pcap-savefile(5), the pcapng draft), so they hit record and block
headers, lengths, timestamps and link types rather than only payload bytes.

Each mutant runs through the library (`Pipeline`: a `CaptureError` when it is opened, or a run
that never raises); a sample of them also runs through every command registered on the click
group (found when the test runs, so new commands are covered without editing this file).
Every run is guarded by a timer (a hang fails the test) and, on Linux, by an address-space limit
(a header claiming a 4 GB packet that got allocated fails the test).

    pytest tests/test_fuzz.py --fuzz-count 20000     # or FLOWLENS_FUZZ_COUNT=20000
    FLOWLENS_FUZZ_SEED=7 pytest tests/test_fuzz.py   # another random sequence
    FLOWLENS_FUZZ_SAVE=/tmp/mutants pytest ...       # keep the files of failing mutants

A failure names the mutant (index, seed capture, mutators); rerun with the same seed to get it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import signal
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import click
import pcapgen
import pytest
from click.testing import CliRunner
from corpus import CORPUS
from corpus import available as corpus_available

from flowlens.core.capture import MAX_RECORD_BYTES
from flowlens.core.connections import Config
from flowlens.core.pipeline import Pipeline
from flowlens.errors import CaptureError

try:
    import resource
except ImportError:  # pragma: no cover - not on Windows
    resource = None

TESTS = Path(__file__).resolve().parent

CORPUS_DIRS = (CORPUS / "other" / "captures", CORPUS / "zeek" / "traces")
SAMPLES = TESTS.parent / "sample_pcaps"

#: seeds longer than this are cut at the first record boundary past it
SEED_CAP = 24 * 1024
DEFAULT_COUNT = 2000
#: seconds one run may take before it counts as a hang (generous: this is not a speed test)
LIBRARY_TIMEOUT_S = 10
CLI_TIMEOUT_S = 30
#: address space a run may add before it counts as a memory blow-up
MEMORY_HEADROOM = 3 << 30

PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
BOM_LE, BOM_BE = b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"
COMPRESSIONS = ("gzip", "bzip2", "xz", "zstd")


# ---------------------------------------------------------------------------------- structure


@dataclass
class Record:
    """One pcap record or pcapng block: where it starts, its total length, and what it is."""

    offset: int
    length: int
    endian: str
    #: pcap: "rec"; pcapng: the block type number
    kind: object
    #: offset of the captured frame bytes and their length (packets only)
    data_offset: int | None = None
    caplen: int = 0


@dataclass
class Layout:
    container: str  # "pcap" or "pcapng"
    endian: str
    records: list[Record] = field(default_factory=list)
    #: byte offset where the parse stopped (the end of the last whole record)
    end: int = 0

    @property
    def packets(self) -> list[Record]:
        return [r for r in self.records if r.data_offset is not None]


def parse(data: bytes) -> Layout | None:
    """A lenient walk over pcap records or pcapng blocks; stops at the first damage."""
    if data[:4] in PCAP_MAGICS:
        return _parse_pcap(data)
    if data[:4] == PCAPNG_SHB and len(data) >= 12:
        return _parse_pcapng(data)
    return None


def _parse_pcap(data: bytes) -> Layout:
    endian = "<" if data[:4] in (PCAP_MAGICS[0], PCAP_MAGICS[2]) else ">"
    lay = Layout("pcap", endian, end=min(24, len(data)))
    pos = 24
    while pos + 16 <= len(data):
        caplen = struct.unpack_from(endian + "I", data, pos + 8)[0]
        if caplen > MAX_RECORD_BYTES or pos + 16 + caplen > len(data):
            break
        lay.records.append(Record(pos, 16 + caplen, endian, "rec", pos + 16, caplen))
        pos += 16 + caplen
        lay.end = pos
    return lay


def _parse_pcapng(data: bytes) -> Layout:
    endian = "<" if data[8:12] == BOM_LE else ">"
    lay = Layout("pcapng", endian)
    pos = 0
    while pos + 12 <= len(data):
        btype = data[pos : pos + 4]
        if btype == PCAPNG_SHB:
            bom = data[pos + 8 : pos + 12]
            if bom not in (BOM_LE, BOM_BE):
                break
            endian = "<" if bom == BOM_LE else ">"
        code, blen = struct.unpack_from(endian + "II", data, pos)
        if blen < 12 or blen % 4 or pos + blen > len(data):
            break
        rec = Record(pos, blen, endian, code)
        if code == 6 and blen >= 32 or code == 2 and blen >= 32:
            rec.caplen = struct.unpack_from(endian + "I", data, pos + 20)[0]
            rec.data_offset = pos + 28
        elif code == 3 and blen >= 16:
            rec.caplen = blen - 16
            rec.data_offset = pos + 12
        if rec.data_offset is not None and rec.data_offset + rec.caplen > pos + blen - 4:
            rec.data_offset = None
        lay.records.append(rec)
        pos += blen
        lay.end = pos
    return lay


def cap_seed(data: bytes, limit: int = SEED_CAP) -> bytes:
    """The capture cut at the first record boundary past `limit` bytes (whole if shorter)."""
    if len(data) <= limit:
        return data
    lay = parse(data)
    if lay is None:
        return data[:limit]
    for rec in lay.records:
        if rec.offset + rec.length >= limit:
            return data[: rec.offset + rec.length]
    return data[: lay.end]


def _epb(
    endian: str,
    iface: int,
    ts_ticks: int,
    frame: bytes,
    wirelen: int | None = None,
    options: bytes = b"",
) -> bytes:
    pad = (-len(frame)) % 4
    body = (
        struct.pack(
            endian + "IIIII",
            iface,
            ts_ticks >> 32,
            ts_ticks & 0xFFFFFFFF,
            len(frame),
            len(frame) if wirelen is None else wirelen,
        )
        + frame
        + b"\0" * pad
        + options
    )
    blen = 12 + len(body)
    return struct.pack(endian + "II", 6, blen) + body + struct.pack(endian + "I", blen)


def _block(endian: str, code: int, body: bytes) -> bytes:
    body += b"\0" * ((-len(body)) % 4)
    blen = 12 + len(body)
    return struct.pack(endian + "II", code, blen) + body + struct.pack(endian + "I", blen)


# ---------------------------------------------------------------------------------- seeds


@dataclass
class Seed:
    name: str
    data: bytes  # uncompressed
    #: packet records/blocks the structural walk finds (the library must read as many)
    frames: int | None = None


def _scenario_seeds() -> list[Seed]:
    seeds = []
    for i, (name, build) in enumerate(sorted(pcapgen.SCENARIOS.items())):
        frames = build()
        seeds.append(Seed(f"{name}.pcap", pcapgen.pcap_bytes(frames)))
        # every scenario once more in another dress, rotating through the variants
        variant = i % 6
        if variant == 0:
            seeds.append(
                Seed(f"{name}-nano-be.pcap", pcapgen.pcap_bytes(frames, nano=True, big_endian=True))
            )
        elif variant == 1:
            seeds.append(Seed(f"{name}.pcapng", pcapgen.pcapng_bytes([(1, frames)])))
        elif variant == 2:
            seeds.append(Seed(f"{name}-ns.pcapng", pcapgen.pcapng_bytes([(1, frames)], tsresol=9)))
        elif variant == 3:
            lt = (113, 276, 0, 108, 101)[i % 5]
            seeds.append(
                Seed(
                    f"{name}-lt{lt}.pcap",
                    pcapgen.pcap_bytes(pcapgen.relink(frames, lt), linktype=lt),
                )
            )
        elif variant == 4:
            seeds.append(
                Seed(f"{name}-qinq.pcap", pcapgen.pcap_bytes(pcapgen.vlan(frames, (10, 20))))
            )
        else:
            raw = pcapgen.relink(frames, 101)
            seeds.append(
                Seed(f"{name}-mixed.pcapng", pcapgen.pcapng_bytes([(1, frames), (101, raw)]))
            )
    six = pcapgen.clean_close(client=pcapgen.CLIENT6, server=pcapgen.SERVER6)
    seeds.append(
        Seed("clean-close-v6-sll2.pcap", pcapgen.pcap_bytes(pcapgen.relink(six, 276), linktype=276))
    )
    # 802.11: radiotap + QoS data between access points (4 addresses), and Aruba's in GRE
    wifi = [
        (ts, pcapgen.radiotap(pcapgen.dot11(f, fc=pcapgen.QOS_DATA, four=True)))
        for ts, f in pcapgen.clean_close()
    ]
    seeds.append(Seed("clean-close-radiotap.pcap", pcapgen.pcap_bytes(wifi, linktype=127)))
    seeds.append(
        Seed("clean-close-aruba.pcap", pcapgen.pcap_bytes(pcapgen.aruba(pcapgen.clean_close())))
    )
    return seeds


def _file_seeds() -> list[Seed]:
    paths = sorted(SAMPLES.glob("*")) if SAMPLES.is_dir() else []
    for d in CORPUS_DIRS:
        if d.is_dir():
            paths.extend(sorted(p for p in d.iterdir() if p.is_file()))
    seeds = []
    for p in paths:
        with open(p, "rb") as f:
            head = f.read(4 << 20)
        if head[:2] == b"\x1f\x8b":
            head = gzip.GzipFile(fileobj=io.BytesIO(head)).read(4 << 20)
        if parse(head) is None:
            continue
        seeds.append(Seed(p.name, cap_seed(head)))
    return seeds


@pytest.fixture(scope="module")
def seeds() -> list[Seed]:
    found = _scenario_seeds() + _file_seeds()
    for seed in found:
        lay = parse(seed.data)
        seed.frames = len(lay.packets) if lay is not None else None
    return found


# ---------------------------------------------------------------------------------- mutators
# Each takes (rng, data) and returns new bytes; they re-parse what they get, so they stack.


def _u32(lay_endian: str, value: int) -> bytes:
    return struct.pack(lay_endian + "I", value & 0xFFFFFFFF)


def _pick(rng: random.Random, items):
    return items[rng.randrange(len(items))] if items else None


def m_truncate(rng, data):
    return data[: rng.randrange(len(data) + 1)]


def m_truncate_in_record(rng, data):
    lay = parse(data)
    rec = _pick(rng, lay.records if lay else [])
    if rec is None:
        return m_truncate(rng, data)
    return data[: rec.offset + rng.randrange(1, rec.length)]


def m_tiny(rng, data):
    return data[: rng.randrange(0, 40)]


def m_flip_record_header(rng, data):
    lay = parse(data)
    rec = _pick(rng, lay.records if lay else [])
    if rec is None:
        return m_flip_bytes(rng, data)
    out = bytearray(data)
    span = 16 if lay.container == "pcap" else min(rec.length, 28)
    for _ in range(rng.randint(1, 4)):
        out[rec.offset + rng.randrange(span)] = rng.choice((0, 0xFF, rng.randrange(256)))
    return bytes(out)


def m_flip_packet_header(rng, data):
    """Damage link, IP and transport headers: the decoder must count, never crash."""
    lay = parse(data)
    pkts = [p for p in (lay.packets if lay else []) if p.caplen]
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        rec = _pick(rng, pkts)
        if rec is None:
            return m_flip_bytes(rng, data)
        pos = rec.data_offset + rng.randrange(min(rec.caplen, 80))
        out[pos] = rng.choice((0, 0xFF, rng.randrange(256), out[pos] ^ (1 << rng.randrange(8))))
    return bytes(out)


def m_flip_bytes(rng, data):
    out = bytearray(data)
    if not out:
        return data
    for _ in range(rng.randint(1, 16)):
        out[rng.randrange(len(out))] = rng.randrange(256)
    return bytes(out)


ABSURD = (
    0xFFFFFFFF,
    0xFFFFFFF0,
    0x80000000,
    0x7FFFFFFF,
    0x10000000,
    MAX_RECORD_BYTES + 1,
    MAX_RECORD_BYTES,
    262145,
    65536,
    3,
    1,
    0,
)


def m_absurd_length(rng, data):
    """A caplen, wire length or block length that does not fit, up to 4 GB."""
    lay = parse(data)
    rec = _pick(rng, lay.records if lay else [])
    if rec is None:
        return m_flip_bytes(rng, data)
    value = rng.choice(ABSURD + (rec.caplen + 1, rec.caplen + 7, rec.length - 1))
    out = bytearray(data)
    e = rec.endian
    if lay.container == "pcap":
        field_at = rec.offset + rng.choice((8, 8, 12))  # caplen mostly, sometimes wirelen
    else:
        choices = [rec.offset + 4, rec.offset + rec.length - 4]
        if rec.data_offset is not None and rec.kind != 3:
            choices += [rec.offset + 20, rec.offset + 24]  # EPB caplen, wirelen
        field_at = rng.choice(choices)
    out[field_at : field_at + 4] = _u32(e, value)
    return bytes(out)


def m_snaplen_cut(rng, data):
    """Frames cut short by a snaplen: caplen < wire length, both headers consistent."""
    lay = parse(data)
    if lay is None or not lay.packets:
        return m_flip_bytes(rng, data)
    chosen = {id(r) for r in lay.packets if rng.random() < 0.5}
    snap = rng.choice((0, 1, 14, 20, 34, 40, 54, 60, 68, 96))
    out = bytearray()
    pos = 0
    for rec in lay.records:
        out += data[pos : rec.offset]
        pos = rec.offset + rec.length
        raw = data[rec.offset : pos]
        if id(rec) not in chosen or rec.caplen <= snap:
            out += raw
            continue
        frame = data[rec.data_offset : rec.data_offset + snap]
        e = rec.endian
        if lay.container == "pcap":
            sec, frac, _cap, wire = struct.unpack_from(e + "IIII", raw)
            out += struct.pack(e + "IIII", sec, frac, snap, wire) + frame
        elif rec.kind == 6:
            iface, hi, lo, _cap, wire = struct.unpack_from(e + "IIIII", raw, 8)
            out += _epb(e, iface, (hi << 32) | lo, frame, wire)
        else:
            out += raw
    out += data[pos:]
    if lay.container == "pcap" and len(out) >= 24:
        out[16:20] = _u32(lay.endian, snap or 65535)
    return bytes(out)


def m_zero_length_records(rng, data):
    lay = parse(data)
    if lay is None:
        return m_flip_bytes(rng, data)
    at = _pick(rng, [r.offset for r in lay.records] + [lay.end])
    e = lay.endian
    count = rng.randint(1, 5)
    if lay.container == "pcap":
        rec = struct.pack(e + "IIII", 1_700_000_000, 0, 0, rng.choice((0, 0, 60, 0xFFFFFFFF)))
    else:
        rec = _epb(e, 0, 1_700_000_000_000_000, b"", rng.choice((0, 60)))
    return data[:at] + rec * count + data[at:]


def m_time_backwards(rng, data):
    """Clock jumps: some frames get earlier (or absurd) timestamps."""
    lay = parse(data)
    pkts = lay.packets if lay else []
    if not pkts:
        return m_flip_bytes(rng, data)
    out = bytearray(data)
    for rec in rng.sample(pkts, k=min(len(pkts), rng.randint(1, 4))):
        e = rec.endian
        if lay.container == "pcap":
            sec, frac = struct.unpack_from(e + "II", data, rec.offset)
            new_sec = rng.choice((sec - 1, sec - 3600, sec - 86400 * 365, 0, 0xFFFFFFFF, sec))
            new_frac = rng.choice((frac, 0, 999_999, 1_000_000, 0xFFFFFFFF))
            out[rec.offset : rec.offset + 8] = struct.pack(e + "II", new_sec & 0xFFFFFFFF, new_frac)
        elif rec.kind in (6, 2):
            hi, lo = struct.unpack_from(e + "II", data, rec.offset + 12)
            ticks = (hi << 32) | lo
            new = rng.choice(
                (ticks - 1_000_000, ticks - 3_600_000_000, 0, (1 << 64) - 1, ticks >> 1)
            )
            new &= (1 << 64) - 1
            out[rec.offset + 12 : rec.offset + 20] = struct.pack(
                e + "II", new >> 32, new & 0xFFFFFFFF
            )
    return bytes(out)


def m_swap_records(rng, data):
    """Reorder or duplicate records (merged captures, replayed frames)."""
    lay = parse(data)
    recs = lay.records[1:] if lay and lay.container == "pcapng" else (lay.records if lay else [])
    if len(recs) < 2:
        return m_flip_bytes(rng, data)
    a, b = sorted(rng.sample(range(len(recs)), 2))
    ra, rb = recs[a], recs[b]
    chunk_a = data[ra.offset : ra.offset + ra.length]
    chunk_b = data[rb.offset : rb.offset + rb.length]
    if rng.random() < 0.5:  # duplicate a after b
        end_b = rb.offset + rb.length
        return data[:end_b] + chunk_a + data[end_b:]
    return (
        data[: ra.offset]
        + chunk_b
        + data[ra.offset + ra.length : rb.offset]
        + chunk_a
        + data[rb.offset + rb.length :]
    )


def m_wrong_magic(rng, data):
    choices = [
        PCAP_MAGICS[0], PCAP_MAGICS[1], PCAP_MAGICS[2], PCAP_MAGICS[3], PCAPNG_SHB,
        b"\x00\x00\x00\x00", b"\x1f\x8b\x08\x00", b"BZh9", b"\xfd7zX", b"\x28\xb5\x2f\xfd",
        bytes(rng.randrange(256) for _ in range(4)), b"GET ", b"\xef\xbb\xbf#",
    ]  # fmt: skip
    out = bytearray(data)
    if len(out) >= 12 and out[:4] == PCAPNG_SHB and rng.random() < 0.3:
        out[8:12] = rng.choice(
            (BOM_BE if out[8:12] == BOM_LE else BOM_LE, b"\0\0\0\0", b"\x4d\x3c\x2b\x1b")
        )
        return bytes(out)
    out[:4] = rng.choice(choices)
    return bytes(out)


def m_link_type(rng, data):
    """Unknown, odd and mismatched link types (with pcap's FCS bits, in IDBs)."""
    lay = parse(data)
    value = rng.choice(
        (0, 1, 9, 12, 101, 105, 113, 127, 147, 228, 229, 276, 0xFFFF, rng.randrange(1 << 16))
    )
    out = bytearray(data)
    if lay is None:
        return m_flip_bytes(rng, data)
    if lay.container == "pcap":
        if len(out) >= 24:
            if rng.random() < 0.2:
                value |= 0x10000000 | (rng.randrange(16) << 28)  # FCS length bits
            out[20:24] = _u32(lay.endian, value)
        return bytes(out)
    idbs = [r for r in lay.records if r.kind == 1]
    rec = _pick(rng, idbs)
    if rec is None:
        return m_flip_bytes(rng, data)
    out[rec.offset + 8 : rec.offset + 10] = struct.pack(rec.endian + "H", value & 0xFFFF)
    return bytes(out)


def m_file_header(rng, data):
    """Odd global headers: pcap snaplen 0 or 4 GB, versions, time zone; pcapng SHB options."""
    lay = parse(data)
    if lay is None:
        return m_flip_bytes(rng, data)
    out = bytearray(data)
    e = lay.endian
    if lay.container == "pcap" and len(out) >= 24:
        at, value = rng.choice(
            (
                (16, 0),
                (16, 1),
                (16, 0xFFFFFFFF),
                (16, 64),
                (4, 0xFFFFFFFF),
                (8, 0x80000000),
                (12, 0xFFFFFFFF),
            )
        )
        out[at : at + 4] = _u32(e, value)
        return bytes(out)
    shb = lay.records[0] if lay.records else None
    if shb is None:
        return m_flip_bytes(rng, data)
    junk = bytes(rng.randrange(256) for _ in range(rng.choice((4, 8, 20))))
    body = bytes(out[shb.offset + 8 : shb.offset + 24]) + junk  # BOM, version, section length
    block = _block(e, 0x0A0D0D0A, body)
    return data[: shb.offset] + block + data[shb.offset + shb.length :]


def m_pcapng_unknown_block(rng, data):
    """Blocks a reader must skip: unknown and custom types, NRB/ISB/DSB with garbage bodies."""
    lay = parse(data)
    if lay is None or lay.container != "pcapng" or not lay.records:
        return m_flip_bytes(rng, data)
    e = lay.endian
    code = rng.choice(
        (0x0BAD, 0x40000BAD, 4, 5, 7, 8, 9, 10, 0x0A, 0x80000001, rng.randrange(1 << 32))
    )
    body = bytes(rng.randrange(256) for _ in range(rng.choice((0, 4, 7, 16, 33))))
    block = _block(e, code, body)
    at = _pick(rng, [r.offset for r in lay.records[1:]] + [lay.end])
    return data[:at] + block + data[at:]


def m_pcapng_idb_options(rng, data):
    """Interfaces with odd clocks (if_tsresol 0..255, if_tsoffset at the edges) or bad options."""
    lay = parse(data)
    idbs = [r for r in (lay.records if lay else []) if r.kind == 1]
    rec = _pick(rng, idbs)
    if rec is None:
        return m_flip_bytes(rng, data)
    e = rec.endian
    linktype, _res, snaplen = struct.unpack_from(e + "HHI", data, rec.offset + 8)
    opts = b""
    kind = rng.randrange(4)
    if kind == 0:
        opts = struct.pack(e + "HH", 9, 1) + bytes([rng.randrange(256)]) + b"\0\0\0"
    elif kind == 1:
        offset = rng.choice((-(1 << 63), (1 << 63) - 1, -1_700_000_000, 10**12))
        opts = struct.pack(e + "HHq", 14, 8, offset)
    elif kind == 2:  # an option longer than the block
        opts = struct.pack(e + "HH", 9, 0xFFFF) + b"\x06\0\0\0"
    else:
        opts = bytes(rng.randrange(256) for _ in range(12))
    if rng.random() < 0.5:
        opts += struct.pack(e + "HH", 0, 0)
    block = _block(e, 1, struct.pack(e + "HHI", linktype, 0, snaplen) + opts)
    return data[: rec.offset] + block + data[rec.offset + rec.length :]


def m_pcapng_bad_interface(rng, data):
    lay = parse(data)
    epbs = [r for r in (lay.packets if lay else []) if r.kind == 6]
    rec = _pick(rng, epbs)
    if rec is None:
        return m_flip_bytes(rng, data)
    out = bytearray(data)
    out[rec.offset + 8 : rec.offset + 12] = _u32(rec.endian, rng.choice((1, 2, 255, 0xFFFFFFFF)))
    return bytes(out)


def m_pcapng_new_section(rng, data):
    """A second section header mid-file: other byte order, no interfaces, or a bad one."""
    lay = parse(data)
    if lay is None or lay.container != "pcapng" or len(lay.records) < 2:
        return m_flip_bytes(rng, data)
    e = rng.choice("<>")
    bom = BOM_LE if e == "<" else BOM_BE
    if rng.random() < 0.2:
        bom = b"\xde\xad\xbe\xef"
    shb = (
        PCAPNG_SHB
        + struct.pack(e + "I", 28)
        + bom
        + struct.pack(e + "HHq", 1, 0, -1)
        + struct.pack(e + "I", 28)
    )
    at = _pick(rng, [r.offset for r in lay.records[1:]])
    return data[:at] + shb + data[at:]


def m_splice(rng, data, other: bytes = b""):
    """Two captures glued together (cat a.pcap b.pcap): the second header reads as a record."""
    return data + other[: rng.randrange(len(other) + 1)]


MUTATORS = {
    "truncate": m_truncate,
    "truncate_in_record": m_truncate_in_record,
    "tiny": m_tiny,
    "flip_record_header": m_flip_record_header,
    "flip_packet_header": m_flip_packet_header,
    "flip_bytes": m_flip_bytes,
    "absurd_length": m_absurd_length,
    "snaplen_cut": m_snaplen_cut,
    "zero_length_records": m_zero_length_records,
    "time_backwards": m_time_backwards,
    "swap_records": m_swap_records,
    "wrong_magic": m_wrong_magic,
    "link_type": m_link_type,
    "file_header": m_file_header,
    "pcapng_unknown_block": m_pcapng_unknown_block,
    "pcapng_idb_options": m_pcapng_idb_options,
    "pcapng_bad_interface": m_pcapng_bad_interface,
    "pcapng_new_section": m_pcapng_new_section,
}
# structure-aware mutators are picked more often than blind ones
WEIGHTS = {"tiny": 1, "flip_bytes": 2, "wrong_magic": 1, "truncate": 3, "truncate_in_record": 3}


def compress_damaged(rng, data: bytes, kind: str) -> tuple[bytes, str]:
    """Compress, then perhaps cut the stream short or corrupt it."""
    packed = pcapgen.compress(data, kind)
    how = rng.choice(("whole", "cut", "cut", "corrupt", "nested"))
    if how == "cut":
        return packed[: rng.randrange(len(packed) + 1)], f"{kind}+cut"
    if how == "corrupt":
        out = bytearray(packed)
        for _ in range(rng.randint(1, 4)):
            out[rng.randrange(len(out))] = rng.randrange(256)
        return bytes(out), f"{kind}+corrupt"
    if how == "nested":
        depth = rng.randint(1, 4)
        for _ in range(depth):
            packed = gzip.compress(packed, mtime=0)
        return packed, f"{kind}+gzip*{depth}"
    return packed, kind


def make_mutant(index: int, base_seed: int, seeds: list[Seed]) -> tuple[bytes, str]:
    """Mutant number `index`: reproducible from (base_seed, index) alone."""
    rng = random.Random(base_seed * 1_000_003 + index)
    seed = seeds[index % len(seeds)]
    data = seed.data
    names = list(MUTATORS)
    weights = [WEIGHTS.get(n, 4) for n in names]
    applied = []
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
        name = rng.choices(names, weights)[0]
        data = MUTATORS[name](rng, data)
        applied.append(name)
    if rng.random() < 0.04:
        other = seeds[rng.randrange(len(seeds))].data
        data = m_splice(rng, data, other)
        applied.append("splice")
    if rng.random() < 0.15:
        data, how = compress_damaged(rng, data, rng.choice(COMPRESSIONS))
        applied.append(how)
    return data, f"mutant {index} of {seed.name} ({', '.join(applied)})"


# ---------------------------------------------------------------------------------- guards


class Hang(Exception):
    """A run took longer than its guard allows."""


@contextlib.contextmanager
def time_guard(seconds: float, what: str):
    """Fail a run that does not end within `seconds` (SIGALRM; POSIX main thread only)."""
    if not hasattr(signal, "setitimer"):  # pragma: no cover
        yield
        return

    def fire(_sig, _frame):
        raise Hang(f"{what} did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _address_space() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


@contextlib.contextmanager
def memory_guard():
    """Cap the address space at its current size plus MEMORY_HEADROOM: allocating a claimed
    4 GB packet raises MemoryError instead of taking the machine down."""
    current = _address_space()
    if resource is None or current is None:
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = current + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _save(data: bytes, label: str) -> str:
    where = os.environ.get("FLOWLENS_FUZZ_SAVE")
    if not where:
        return ""
    os.makedirs(where, exist_ok=True)
    name = label.split(" (")[0].replace(" ", "-").replace("/", "_")
    path = os.path.join(where, name)
    with open(path, "wb") as f:
        f.write(data)
    return f" [saved as {path}]"


class Failures:
    """Failed runs, one example per distinct problem, reported together at the end."""

    def __init__(self) -> None:
        self.examples: dict[str, str] = {}
        self.total = 0

    def add(self, exc: BaseException, label: str, data: bytes) -> None:
        import traceback

        self.total += 1
        where = traceback.extract_tb(exc.__traceback__)[-1:]
        site = f"{where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno}" if where else "?"
        key = f"{type(exc).__name__} at {site}"
        if key not in self.examples:
            text = str(exc).splitlines()[0][:300] if str(exc) else ""
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-4:])
            self.examples[key] = f"{label}{_save(data, label)}\n  {key}: {text}\n{tb}"

    def check(self) -> None:
        if self.examples:
            shown = "\n".join(list(self.examples.values())[:10])
            raise AssertionError(
                f"{self.total} failed runs, {len(self.examples)} distinct problems:\n{shown}"
            )


# ---------------------------------------------------------------------------------- runs


def run_library(path: str, verify_checksums: bool = True) -> str | None:
    """Read `path` through the library and check what any run must satisfy.

    Returns the error message when the capture could not be opened, None when it was read.
    """
    try:
        pipe = Pipeline(path, Config(verify_checksums=verify_checksums))
    except CaptureError as exc:
        assert str(exc).startswith(f"{path}: "), str(exc)
        assert "\n" not in str(exc)
        return str(exc)
    conns = list(pipe)  # nothing may escape once the capture is open
    st = pipe.stats
    lines = pipe.summary_lines()
    assert all("\n" not in line for line in lines)
    if st.stopped is not None:
        assert st.stopped_frame == st.frames + 1, (st.stopped, st.stopped_frame, st.frames)
        assert st.stopped_offset is not None and st.stopped_offset >= 0
        if "+" not in st.container:
            assert st.stopped_offset <= os.path.getsize(path)
        assert any(f"at frame {st.stopped_frame} " in line for line in lines), lines
    if st.clock_jumps:  # a warning, or for a step back under a millisecond a note
        assert any("went backwards" in line for line in lines) or pipe.notes()
    assert st.duration_ns >= 0
    counted = 0
    uids = set()
    for c in conns:
        assert c.uid not in uids
        uids.add(c.uid)
        assert c.duration_s >= 0 and c.last_ts_ns >= c.first_ts_ns
        assert c.first_ts_ns > -(1 << 63) and c.last_ts_ns < (1 << 63)  # fits numpy/pandas
        assert min(c.pkts) >= 0 and min(c.payload) >= 0 and min(c.ip_bytes) >= 0, c
        counted += c.pkts[0] + c.pkts[1]
        record = c.to_record()
        json.dumps(record)
        for key in (
            "duration",
            "synack_ms",
            "ackdat_ms",
            "irtt_ms",
            "orig_bytes",
            "resp_bytes",
            "missed_bytes",
            "orig_pkts",
            "resp_pkts",
        ):
            assert record[key] is None or record[key] >= 0, (key, record)
        times = [t for t, *_ in c.timeline]
        assert times == sorted(times)
    # a frame is one packet, or, out of a tunnel, one per layer it was decoded from (its outer
    # UDP flows and the inner connection: Tunnel::max_depth + 1 at most)
    assert counted <= st.frames * (1 + Config().tunnel_max_depth)
    return None


def test_seeds_read_cleanly(seeds, tmp_path):
    """Every seed is a capture the library reads; the structural walk counts the same frames."""
    path = str(tmp_path / "seed")
    mismatched = []
    for seed in seeds:
        Path(path).write_bytes(seed.data)
        with time_guard(LIBRARY_TIMEOUT_S, seed.name):
            assert run_library(path) is None, seed.name
        pipe = Pipeline(path)
        list(pipe)
        if pipe.stats.frames != seed.frames:
            mismatched.append((seed.name, pipe.stats.frames, seed.frames))
    # the built-in seeds and sample_pcaps/ make about 95; the corpus adds its captures
    assert len(seeds) > (100 if corpus_available() else 50)
    assert not mismatched


def _fuzz_count(request) -> int:
    value = request.config.getoption("--fuzz-count", default=None)
    if value is None:
        value = int(os.environ.get("FLOWLENS_FUZZ_COUNT", DEFAULT_COUNT))
    return value


def _fuzz_seed() -> int:
    return int(os.environ.get("FLOWLENS_FUZZ_SEED", "20240613"))


def test_mutants_through_the_library(seeds, tmp_path, request):
    """At least 2,000 mutants: a clean CaptureError at open, or a run that never raises."""
    count = _fuzz_count(request)
    base = _fuzz_seed()
    path = str(tmp_path / "mutant")
    outcomes = {"read": 0, "error": 0}
    failures = Failures()
    with memory_guard():
        for i in range(count):
            data, label = make_mutant(i, base, seeds)
            with open(path, "wb") as f:
                f.write(data)
            try:
                with time_guard(LIBRARY_TIMEOUT_S, label):
                    error = run_library(path, verify_checksums=bool(i % 5))
            except (Exception, MemoryError, Hang) as exc:
                failures.add(exc, label, data)
                continue
            outcomes["error" if error else "read"] += 1
    failures.check()
    # the mutants must exercise both outcomes, or the mutators have gone blind
    assert outcomes["read"] > count // 4 and outcomes["error"] > count // 50, outcomes


# ---------------------------------------------------------------------------------- CLI

#: arguments for a command that needs more than a capture, by command name ("{n}" becomes a
#: number unique to the run); commands not named here get the first of CANDIDATE_EXTRAS that
#: works on a clean capture
CLI_EXTRA_ARGS: dict[str, list[str]] = {
    # a fresh output directory per run: batch resumes (skips) what an outdir already holds
    "batch": ["-o", "batch-out-{n}", "-j", "1", "--no-report"],
    "report": ["-o", "report-{n}.html"],
    # uids all start with "C": one connection is drawn, several are an ambiguous prefix (exit 1)
    "plot": ["--uid", "C", "-o", "plot-{n}.png"],
    "extract": ["-w", "-"],  # the capture to stdout: nothing left on disk
}
#: option sets each command is also fuzzed with ("{n}" as above), so that damaged data reaches
#: every renderer and writer: a moment before, inside and long after the capture, pictures,
#: the Markdown report beside the HTML one
CLI_VARIANTS: dict[str, list[list[str]]] = {
    "states": [
        ["--at", "end"],
        ["--at", "+0.5s"],
        ["--at", "-1s"],
        ["--at", "+1h"],
        ["--interval", "1s"],  # a damaged clock can stretch a capture over decades
        ["--plot", "states-{n}.png"],
        ["--listening"],
    ],
    "ladder": [
        ["--svg", "ladder-{n}.svg"],
        ["--png", "ladder-{n}.png"],
        ["--full", "--unicode", "--note", "2=second", "--note", "+0.01s=later"],
    ],
    "timeline": [["--absolute"]],
    "rtt": [["--by", "server"], ["--samples"], ["--plot", "rtt-{n}.png"]],
    "anomalies": [["--min-severity", "warning"]],
    "report": [["--markdown", "report-{n}.md", "--note", "3=third", "--note", "+1s=later"]],
}
#: mutants per command and option set (times --fuzz-count / DEFAULT_COUNT)
CLI_PER_VARIANT = 3
#: fewer where one run is slow (a worker process)
CLI_SAMPLE_SIZE = {"batch": 2, "plot": 3}
#: what a command that insists on a selection (ladder, timeline ...) or on somewhere to write
#: is given
CANDIDATE_EXTRAS = ([], ["--proto", "tcp"], ["--port", "80"], ["-o", "out-{n}"])


def cli_group() -> click.Group:
    from flowlens.cli import cli

    return cli


def cli_commands() -> dict[str, click.Command]:
    from flowlens.cli import all_commands

    return dict(sorted(all_commands().items()))


def _base_args(
    name: str, command: click.Command, path: str, rng: random.Random | None
) -> list[str]:
    """`NAME CAPTURE [--format F]`: the first positional argument is the capture; --format gets
    a random choice so every renderer sees damaged data."""
    args = [name]
    seen_capture = False
    for param in command.params:
        if isinstance(param, click.Argument):
            if not seen_capture:
                args.append(path)
                seen_capture = True
            elif param.required and name not in CLI_EXTRA_ARGS:
                pytest.fail(
                    f"flowlens {name} needs argument {param.name!r} besides the capture: "
                    f"add it to CLI_EXTRA_ARGS in {Path(__file__).name}"
                )
        elif isinstance(param, click.Option):
            if param.name == "fmt" and isinstance(param.type, click.Choice) and rng is not None:
                fmt = rng.choice(list(param.type.choices))
                args += [param.opts[0], fmt]
                if fmt == "parquet":  # a file, never stdout (into the test's working folder)
                    args += ["-o", "mutant.parquet"]
            elif param.required and name not in CLI_EXTRA_ARGS:
                pytest.fail(
                    f"flowlens {name} needs option {param.opts[0]} besides the capture: "
                    f"add it to CLI_EXTRA_ARGS in {Path(__file__).name}"
                )
    assert seen_capture, f"flowlens {name} takes no capture argument"
    return args


_extras_cache: dict[str, list[str]] = {}


def command_extras(name: str) -> list[str]:
    """The extra arguments `name` needs: CLI_EXTRA_ARGS, or the first candidate that makes the
    command succeed on a clean capture (click exits 2 on a missing selection)."""
    if name in _extras_cache:
        return _extras_cache[name]
    command = cli_commands()[name]
    candidates = [CLI_EXTRA_ARGS[name]] if name in CLI_EXTRA_ARGS else list(CANDIDATE_EXTRAS)
    tried = []
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "clean.pcap")
        pcapgen.write_pcap(path, pcapgen.clean_close())
        for extra in candidates:
            args = _base_args(name, command, path, None) + [
                a.replace("{n}", "probe") for a in extra
            ]
            with contextlib.chdir(d):
                result = CliRunner().invoke(cli_group(), args)
            if result.exit_code == 0:
                _extras_cache[name] = extra
                return extra
            tried.append(f"{extra}: exit {result.exit_code} {result.stderr.strip()[-200:]!r}")
    pytest.fail(
        f"flowlens {name} fails on a clean capture with every argument set tried "
        f"({'; '.join(tried)}): add what it needs to CLI_EXTRA_ARGS in {Path(__file__).name}"
    )


_run_numbers = iter(range(1 << 62))


def cli_args(name: str, path: str, rng: random.Random | None = None) -> list[str]:
    """The full argument list that runs command `name` on `path`."""
    n = str(next(_run_numbers))
    extras = [a.replace("{n}", n) for a in command_extras(name)]
    return _base_args(name, cli_commands()[name], path, rng) + extras


def check_cli_run(result, path: str, label: str) -> None:
    """Exit 0, or exit 1 with exactly one `Error: PATH: ...` line; never a traceback."""
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        raise exc
    stderr = result.stderr
    assert "Traceback" not in stderr, f"{label}:\n{stderr}"
    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    if result.exit_code == 0:
        assert not errors, f"{label}: exit 0 but {errors}"
    else:
        assert result.exit_code == 1, f"{label}: exit {result.exit_code}\n{stderr}"
        assert len(errors) == 1 and errors[0].startswith(f"Error: {path}: "), f"{label}:\n{stderr}"


def cli_variants(name: str) -> list[list[str]]:
    """The option sets `name` is fuzzed with: none, then CLI_VARIANTS's."""
    return [[], *CLI_VARIANTS.get(name, [])]


def test_variants_name_real_options():
    """CLI_VARIANTS stays in step with the commands (an option renamed fails here, not by
    making every fuzz run exit 2)."""
    commands = cli_commands()
    for name, variants in CLI_VARIANTS.items():
        opts = {o for p in commands[name].params for o in getattr(p, "opts", ())}
        for variant in variants:
            assert variant[0] in opts, (name, variant)


def test_mutants_through_every_command(seeds, tmp_path, request, monkeypatch):
    """A sample of the mutants through `flowlens COMMAND [OPTIONS]` for every command on the
    click group and every option set of CLI_VARIANTS."""
    commands = cli_commands()
    assert "flows" in commands
    count = _fuzz_count(request)
    base = _fuzz_seed()
    runner = CliRunner()
    path = str(tmp_path / "mutant.pcap")
    rng = random.Random(base)
    monkeypatch.chdir(tmp_path)  # whatever a command writes lands here
    # resolve every command's arguments on a clean capture first, so that imports happen
    # before the memory guard is set
    for name in commands:
        command_extras(name)
    failures = Failures()
    runs = 0
    index = count  # mutants the library test did not run
    with memory_guard():
        for name in commands:
            size = CLI_SAMPLE_SIZE.get(name, CLI_PER_VARIANT)
            size = max(size, size * count // DEFAULT_COUNT)
            for variant in cli_variants(name):
                for _ in range(size):
                    data, label = make_mutant(index, base, seeds)
                    index += 1
                    with open(path, "wb") as f:
                        f.write(data)
                    n = str(next(_run_numbers))
                    args = cli_args(name, path, rng) + [a.replace("{n}", n) for a in variant]
                    label = f"flowlens {' '.join(a for a in args if a != path)} on {label}"
                    try:
                        with time_guard(CLI_TIMEOUT_S, label):
                            result = runner.invoke(cli_group(), args)
                        check_cli_run(result, path, label)
                    except (Exception, MemoryError, Hang) as exc:
                        failures.add(exc, label, data)
                    runs += 1
    failures.check()
    assert runs >= len(commands) * 2


def test_a_4gb_claim_allocates_nothing_in_any_command(tmp_path, monkeypatch):
    """A record claiming 4 GB, first or later, costs no more memory than a clean run, whatever
    the command and its options (tracemalloc's peak of Python allocations)."""
    import tracemalloc

    monkeypatch.chdir(tmp_path)
    clean = pcapgen.pcap_bytes(pcapgen.clean_close())
    huge = {}
    for where in (0, 3):  # the first record, the fourth
        lay = parse(clean)
        data = bytearray(clean)
        struct.pack_into("<I", data, lay.records[where].offset + 8, 0xFFFFFFF0)
        huge[where] = bytes(data)
    path = tmp_path / "huge.pcap"
    runner = CliRunner()
    for name in cli_commands():
        for k, variant in enumerate(cli_variants(name)):
            n = str(next(_run_numbers))
            extra = [a.replace("{n}", n) for a in variant]
            path.write_bytes(clean)  # imports and first-use caches before the measurement
            runner.invoke(cli_group(), cli_args(name, str(path)) + extra)
            for where, data in huge.items():
                if k % 2 and where == 0:
                    continue  # (time: every other option set sees only the later claim)
                path.write_bytes(data)
                args = cli_args(name, str(path)) + extra
                tracemalloc.start()
                try:
                    result = runner.invoke(cli_group(), args)
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                check_cli_run(result, str(path), f"{args} (4 GB claim in record {where + 1})")
                # (a moment before the first packet is an error, after the damage lines; plot's
                # --uid names one connection, and none or several is an error)
                if name == "plot":
                    assert result.exit_code in (0, 1), (args, result.stderr)
                else:
                    assert result.exit_code == ("-1s" in variant and where > 0), (
                        args,
                        result.stderr,
                    )
                assert "4294967280" in result.stderr, (args, result.stderr)
                assert peak < 64 << 20, (args, peak)


# ---------------------------------------------------------------------------------- truncation property

#: short timers, so that connections of a small capture end (and are emitted) before a cut
SHORT_TIMERS = Config(
    msl_s=0.25,
    syn_sent_timeout_s=1.0,
    syn_received_timeout_s=1.0,
    tcp_idle_s=2.0,
    attempt_idle_s=1.0,
    attempt_delay_s=0.5,
    udp_idle_s=1.0,
    dns_idle_s=0.5,
    icmp_idle_s=1.0,
    close_linger_s=0.25,
)
#: past this long after its last packet, no timer of SHORT_TIMERS can still change a
#: connection's record: TIME_WAIT (2 x MSL) has run out, the close linger and every idle and
#: attempt timer have fired (the largest, with a margin for the clock's resolution)
SETTLED_NS = int(1e9 * (2 * max(
    2 * SHORT_TIMERS.msl_s, SHORT_TIMERS.syn_sent_timeout_s, SHORT_TIMERS.syn_received_timeout_s,
    SHORT_TIMERS.tcp_idle_s, SHORT_TIMERS.attempt_idle_s, SHORT_TIMERS.attempt_delay_s,
    SHORT_TIMERS.udp_idle_s, SHORT_TIMERS.dns_idle_s, SHORT_TIMERS.icmp_idle_s,
    SHORT_TIMERS.close_linger_s,
)))  # fmt: skip


def _story_capture() -> bytes:
    """Every pcapgen scenario, one after the other 3 s apart: closes, resets, refusals, leaks,
    port reuse, UDP and ICMP, each settled (by SHORT_TIMERS) long before the next begins ...
    but with the next one's first packets arriving before the previous one is emitted."""
    frames = []
    for i, make in enumerate(pcapgen.SCENARIOS.values()):
        frames += [(ts + 3.0 * i, frame) for ts, frame in make()]
    frames.sort(key=lambda f: f[0])  # in time order, as a capturer writes (stable: ties kept)
    return pcapgen.pcap_bytes(frames)


def _records(path: str) -> tuple[dict[str, tuple[int, dict]], int | None]:
    """{uid: (last packet's ns, record)} read with SHORT_TIMERS, and the capture's last ns."""
    pipe = Pipeline(path, SHORT_TIMERS)
    records = {c.uid: (c.last_ts_ns, c.to_record()) for c in pipe}
    return records, pipe.stats.last_ts_ns


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    path = tmp_path_factory.mktemp("story") / "story.pcap"
    data = _story_capture()
    path.write_bytes(data)
    full, _ = _records(str(path))
    return data, full


def _check_cut(data: bytes, full: dict, cut: int, path: str) -> int:
    """Cut `data` at `cut`; the connections settled before the truncated capture's last packet
    must come out of it exactly as out of the whole capture: same uid, states, history,
    durations, counts, handshake and teardown. Returns how many were compared."""
    with open(path, "wb") as f:
        f.write(data[:cut])
    cut_records, last = _records(path)
    if last is None:
        return 0
    settled = {uid for uid, (end, _r) in full.items() if end + SETTLED_NS < last}
    settled_cut = {uid for uid, (end, _r) in cut_records.items() if end + SETTLED_NS < last}
    assert settled == settled_cut, (cut, settled ^ settled_cut)
    for uid in settled:
        assert cut_records[uid][1] == full[uid][1], (cut, uid)
    return len(settled)


def test_a_truncated_capture_keeps_what_ended_before_the_cut(story, tmp_path):
    """Property over cut points (every record boundary, and points inside records): a
    truncated capture yields every connection that settled before the cut exactly as the whole
    capture does."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    data, full = story
    path = str(tmp_path / "cut.pcap")
    compared = []

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(st.integers(min_value=24, max_value=len(data)))
    def check(cut):
        compared.append(_check_cut(data, full, cut, path))

    check()
    boundaries = [r.offset for r in parse(data).records]
    for cut in boundaries[:: max(1, len(boundaries) // 12)]:
        compared.append(_check_cut(data, full, cut, path))
    assert max(compared) > len(full) // 2  # the property was tested on most connections


@pytest.mark.parametrize("name", ["incident.pcap"])  # the sample long enough to settle in
def test_a_truncated_sample_keeps_what_ended_before_the_cut(name, tmp_path):
    data = (SAMPLES / name).read_bytes()
    src = str(tmp_path / name)
    Path(src).write_bytes(data)
    full, _ = _records(src)
    records = parse(data).records
    compared = 0
    for k in range(1, 8):
        rec = records[len(records) * k // 8]
        for cut in (rec.offset, rec.offset + 5, rec.offset + rec.length - 1):
            compared += _check_cut(data, full, cut, str(tmp_path / "cut.pcap"))
    assert compared  # some connection settled before some cut

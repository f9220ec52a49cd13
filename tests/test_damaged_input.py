"""Damaged input, case by case: what was read before the damage is kept and reported, weird
paths get one clear error line, bad checksums are analysed and flagged, clock jumps are counted.
(The random mutants are in test_fuzz.py; docs/damaged-input.md describes the behaviour.)"""

from __future__ import annotations

import bz2
import contextlib
import json
import lzma
import os
import struct
import tempfile
import threading
import time
import tracemalloc
import zlib

import click
import dpkt
import pcapgen
import pytest
from click.testing import CliRunner
from corpus import CORPUS, skip_or_fail
from test_fuzz import check_cli_run, cli_args, parse, time_guard

from flowlens import analyze
from flowlens.cli import all_commands, cli
from flowlens.core.pipeline import Pipeline

CORPUS_FRAGMENTED = CORPUS / "zeek" / "traces" / "ipv4__fragmented-syn.pcap"
#: commands that read one capture (batch takes many paths and has its own rules, tested below)
COMMANDS = sorted(
    name
    for name, cmd in all_commands().items()
    if any(isinstance(p, click.Argument) and p.nargs == 1 for p in cmd.params)
)
FIFO_TIMEOUT_S = 10


def invoke(args, input=None):
    return CliRunner().invoke(cli, args, input=input)


def run_command(name: str, path: str, input=None):
    args = cli_args(name, path)
    with time_guard(FIFO_TIMEOUT_S, f"flowlens {name} {path}"):
        return invoke(args, input=input)


def expect_error(result, line: str) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, (result.exit_code, result.stderr)
    assert result.stderr == line + "\n"


# ------------------------------------------------------------------------------ weird paths


@pytest.mark.parametrize("command", COMMANDS)
def test_directory(tmp_path, command):
    expect_error(
        run_command(command, str(tmp_path)),
        f"Error: {tmp_path}: is a directory, not a capture file",
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_fifo_without_a_writer_does_not_hang(tmp_path, command):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    expect_error(
        run_command(command, str(fifo)),
        f"Error: {fifo}: no data (a FIFO that no writer has open, or one that wrote nothing)",
    )


def _fds_on(path) -> int:
    """How many of this process's file descriptors point at `path` (Linux /proc)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return count


def test_fifo_with_a_writer_is_read(tmp_path):
    """The non-blocking open that keeps a writerless FIFO from hanging still reads a live one."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to see when flowlens has opened the FIFO")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR)  # a writer that does not wait for a reader
    os.write(writer, pcapgen.pcap_bytes(pcapgen.clean_close()))

    def close_once_flowlens_reads():
        for _ in range(2000):
            if _fds_on(fifo) >= 2:
                break
            time.sleep(0.005)
        os.close(writer)  # end of the stream

    closer = threading.Thread(target=close_once_flowlens_reads)
    closer.start()
    try:
        result = run_command("flows", str(fifo))
    finally:
        closer.join()
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines()[-1].endswith(" in 11 frames")


@pytest.mark.parametrize("command", COMMANDS)
def test_dev_zero(command):
    expect_error(
        run_command(command, "/dev/zero"),
        "Error: /dev/zero: not a pcap or pcapng capture (starts with 00 00 00 00)",
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_empty_file(tmp_path, command):
    path = tmp_path / "empty.pcap"
    path.write_bytes(b"")
    expect_error(run_command(command, str(path)), f"Error: {path}: empty file")


@pytest.mark.parametrize("command", COMMANDS)
def test_url(command):
    url = "https://example.com/capture.pcap"
    expect_error(
        run_command(command, url),
        f"Error: {url}: no such file (flowlens reads local files and stdin, not URLs)",
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_nonexistent_path(tmp_path, command):
    path = tmp_path / "no" / "such.pcap"
    expect_error(run_command(command, str(path)), f"Error: {path}: no such file")


@pytest.mark.parametrize("command", COMMANDS)
def test_empty_gzip(tmp_path, command):
    path = tmp_path / "empty.pcap.gz"
    path.write_bytes(pcapgen.compress(b"", "gzip"))
    expect_error(run_command(command, str(path)), f"Error: {path}: gzip stream holds no data")


@pytest.mark.parametrize("command", COMMANDS)
def test_empty_stdin(command):
    expect_error(run_command(command, "-", input=b""), "Error: -: no data on standard input")


@contextlib.contextmanager
def unprivileged():
    """Drop the effective uid to nobody for the block when running as root (root reads
    everything, so a mode-000 file would not show the error otherwise)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.mark.parametrize("command", COMMANDS)
def test_file_without_read_permission(command):
    if not hasattr(os, "seteuid"):
        pytest.skip("needs POSIX user ids")
    with tempfile.TemporaryDirectory() as d:
        # only the file itself is unreadable; what a command writes (report -o) may be written
        os.chmod(d, 0o777)
        path = os.path.join(d, "secret.pcap")
        with open(path, "wb") as f:
            f.write(pcapgen.pcap_bytes(pcapgen.clean_close()))
        os.chmod(path, 0)
        args = cli_args(command, path)
        with contextlib.chdir(d), unprivileged():
            result = invoke(args)
        expect_error(result, f"Error: {path}: permission denied")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d[:10], "pcap file header cut short (10 of 24 bytes)"),
        (lambda d: pcapgen.compress(d, "gzip")[:15], "gzip stream cut short"),
        (lambda d: pcapgen.compress(d, "bzip2")[:40], "bzip2 stream cut short"),
        (lambda d: pcapgen.compress(d, "xz")[:30], "xz stream cut short"),
        (lambda d: pcapgen.compress(d, "zstd")[:20], "zstd stream cut short"),
        (
            lambda d: pcapgen.compress(pcapgen.compress(d, "gzip"), "gzip")[:30],
            "gzip stream cut short",
        ),
        (
            lambda d: pcapgen.pcapng_bytes([(1, pcapgen.clean_close())])[:20],
            "pcapng section header cut short (20 of 28 bytes)",
        ),
        (
            lambda d: b"\x0a\x0d\x0d\x0a\xff\xff\xff\xff\x4d\x3c\x2b\x1a",
            "pcapng section header with a bad length (4294967295)",
        ),
        (
            lambda d: pcapgen.compress(
                pcapgen.compress(pcapgen.compress(d, "gzip"), "xz"), "bzip2"
            ),
            "compressed too many times over",
        ),
    ],
    ids=[
        "pcap-header",
        "gzip",
        "bzip2",
        "xz",
        "zstd",
        "gzip-in-gzip",
        "pcapng-shb",
        "pcapng-shb-length",
        "nested",
    ],
)
def test_cut_headers_are_one_clear_error(tmp_path, make, message):
    path = tmp_path / "cut"
    path.write_bytes(make(pcapgen.pcap_bytes(pcapgen.clean_close())))
    expect_error(run_command("flows", str(path)), f"Error: {path}: {message}")


# ------------------------------------------------------------------------------ kept and reported


def _clean_seeds() -> list[tuple[str, bytes]]:
    seeds = []
    for name in ("clean-close", "port-reuse", "time-wait-pileup", "udp-dns", "icmp-echo"):
        frames = pcapgen.SCENARIOS[name]()
        seeds.append((f"{name}.pcap", pcapgen.pcap_bytes(frames)))
        seeds.append(
            (f"{name}-nano-be.pcap", pcapgen.pcap_bytes(frames, nano=True, big_endian=True))
        )
        seeds.append(
            (
                f"{name}.pcapng",
                pcapgen.pcapng_bytes([(1, frames), (101, pcapgen.relink(frames, 101))]),
            )
        )
    return seeds


def _cut_points(data: bytes) -> list[int]:
    """Cuts at a record boundary, inside a record header and inside frame data."""
    lay = parse(data)
    recs = lay.records
    points = {len(data) - 1, len(data) - 7}
    for rec in recs[1 : len(recs) : max(1, len(recs) // 4)]:
        points |= {rec.offset, rec.offset + 3, rec.offset + 16 + 1, rec.offset + rec.length - 1}
    return sorted(p for p in points if (24 if lay.container == "pcap" else 28) <= p < len(data))


def expected_after_cut(data: bytes, cut: int) -> tuple[int, int | None]:
    """(whole frames before the cut, byte offset of the first record the cut damaged or None)."""
    lay = parse(data)
    frames = 0
    for rec in lay.records:
        if rec.offset + rec.length > cut:
            return frames, (rec.offset if rec.offset < cut else None)
        frames += rec.data_offset is not None
    return frames, None


@pytest.mark.parametrize("name, data", _clean_seeds(), ids=[n for n, _ in _clean_seeds()])
def test_truncation_keeps_every_whole_frame(tmp_path, name, data):
    path = tmp_path / name
    for cut in _cut_points(data):
        path.write_bytes(data[:cut])
        pipe = Pipeline(str(path))
        conns = list(pipe)
        frames, damaged_at = expected_after_cut(data, cut)
        st = pipe.stats
        assert st.frames == frames, (cut, st.stopped)
        assert sum(c.pkts[0] + c.pkts[1] for c in conns) == frames  # all IP, all analysed
        if damaged_at is None:
            assert st.stopped is None
            continue
        assert (st.stopped_frame, st.stopped_offset) == (frames + 1, damaged_at), st.stopped
        assert st.stopped.startswith("capture ends inside a ")
        line = f"{path}: {st.stopped} at frame {frames + 1} (byte offset {damaged_at}); the " + (
            "1 frame before it was analysed"
            if frames == 1
            else f"{frames} frames before it were analysed"
        )
        assert line in pipe.summary_lines()


def _decompressed_prefix(packed: bytes, kind: str) -> bytes:
    """All the bytes streaming decompressors get out of a cut stream of concatenated streams."""
    if kind == "zstd":
        import zstandard

        fresh = lambda: zstandard.ZstdDecompressor().decompressobj()  # noqa: E731
    else:
        fresh = {
            "gzip": lambda: zlib.decompressobj(31),
            "bzip2": bz2.BZ2Decompressor,
            "xz": lzma.LZMADecompressor,
        }[kind]
    out = []
    while packed:
        d = fresh()
        out.append(d.decompress(packed))
        if not d.eof:
            break
        packed = d.unused_data
    return b"".join(out)


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
@pytest.mark.parametrize("container", ["pcap", "pcapng"])
def test_cut_compressed_stream_keeps_what_decompressed(tmp_path, kind, container):
    frames = pcapgen.time_wait_pileup(count=400)  # big enough for bzip2 and zstd blocks to end
    if container == "pcap":
        data = pcapgen.pcap_bytes(frames)
    else:
        data = pcapgen.pcapng_bytes([(1, frames)])
    if kind == "bzip2":
        packed = b"".join(bz2.compress(data[i : i + 40000]) for i in range(0, len(data), 40000))
    elif kind == "zstd":
        import zstandard

        packed = b"".join(
            zstandard.ZstdCompressor().compress(data[i : i + 40000])
            for i in range(0, len(data), 40000)
        )
    else:
        packed = pcapgen.compress(data, kind)
    path = tmp_path / "cut"
    checked = 0
    for fraction in (0.3, 0.55, 0.8, 0.999):
        cut = int(len(packed) * fraction)
        path.write_bytes(packed[:cut])
        prefix = _decompressed_prefix(packed[:cut], kind)
        if len(prefix) < (24 if container == "pcap" else 28):
            continue
        want, damaged_at = expected_after_cut(data, len(prefix))
        pipe = Pipeline(str(path))
        list(pipe)
        st = pipe.stats
        assert st.frames == want, (fraction, st.stopped)
        assert st.stopped is not None and st.stopped.startswith(f"{kind} stream cut short"), (
            st.stopped
        )
        assert st.stopped_frame == want + 1
        assert st.stopped_offset == (damaged_at if damaged_at is not None else len(prefix))
        assert any("of the decompressed data" in line for line in pipe.summary_lines())
        checked += 1
    assert checked >= 2


def _before_corruption(packed: bytes, kind: str) -> bytes:
    """What a decompressor fed one byte at a time gives before it finds a corrupt stream."""
    d = zlib.decompressobj(31) if kind == "gzip" else lzma.LZMADecompressor()
    out = []
    try:
        for i in range(len(packed)):
            out.append(d.decompress(packed[i : i + 1]))
    except (zlib.error, lzma.LZMAError):
        return b"".join(out)
    raise AssertionError("the stream was not corrupt")


@pytest.mark.parametrize("kind", ["gzip", "xz"])
@pytest.mark.parametrize("container", ["pcap", "pcapng"])
def test_corrupt_compressed_stream_keeps_nearly_all_it_gave(tmp_path, kind, container):
    """Decompressors are read in small steps (capture._STEP), both containers: of what a
    corrupt stream gave intact, at most the frames ending in the step that failed are lost."""
    from flowlens.core.capture import _STEP

    frames = pcapgen.time_wait_pileup(count=400)
    data = (
        pcapgen.pcap_bytes(frames) if container == "pcap" else pcapgen.pcapng_bytes([(1, frames)])
    )
    packed = bytearray(pcapgen.compress(data, kind))
    path = tmp_path / f"corrupt.{container}.{kind}"
    checked = 0
    for fraction in (0.3, 0.6, 0.9):
        damaged = bytearray(packed)
        at = int(len(damaged) * fraction)
        for i in range(at, at + 8):
            damaged[i] ^= 0x5A
        path.write_bytes(bytes(damaged))
        # a decompressor may give garbage before it notices: the good bytes are those equal
        # to the original's
        given = _before_corruption(bytes(damaged), kind)
        good = next((i for i, (a, b) in enumerate(zip(given, data)) if a != b), len(given))
        least, _ = expected_after_cut(data, max(0, good - _STEP))
        pipe = Pipeline(str(path))
        list(pipe)
        assert pipe.stats.frames >= least, (fraction, good, pipe.stats.stopped)
        assert pipe.stats.stopped is not None
        checked += least > 0
    assert checked >= 2


def test_corrupt_first_block_is_a_stream_error_not_a_strange_capture(tmp_path):
    """bzip2 checks a block at its end, after giving its (garbled) bytes: a corrupt first block
    reads as some unknown format at first; the stream's error is the message."""
    data = pcapgen.pcap_bytes(pcapgen.time_wait_pileup(count=300))
    packed = bytearray(bz2.compress(data))
    for i in range(len(packed) // 3, len(packed) // 3 + 16):
        packed[i] ^= 0x5A
    path = tmp_path / "corrupt.pcap.bz2"
    path.write_bytes(bytes(packed))
    with pytest.raises(OSError):
        bz2.decompress(bytes(packed))  # (the damage is real)
    expect_error(
        run_command("flows", str(path)), f"Error: {path}: bzip2 data corrupt (Invalid data stream)"
    )
    # a stream that is whole but holds no capture still says so
    other = tmp_path / "text.gz"
    other.write_bytes(pcapgen.compress(b"hello, not a capture\n" * 100, "gzip"))
    expect_error(
        run_command("flows", str(other)),
        f"Error: {other}: not a pcap or pcapng capture (starts with 68 65 6c 6c)",
    )


def test_corrupt_compressed_stream_is_reported(tmp_path):
    data = pcapgen.pcap_bytes(pcapgen.time_wait_pileup(count=200))
    packed = bytearray(pcapgen.compress(data, "gzip"))
    packed[len(packed) // 2] ^= 0xFF
    path = tmp_path / "corrupt.pcap.gz"
    path.write_bytes(bytes(packed))
    result = invoke(["flows", str(path), "--format", "json"])
    check_cli_run(result, str(path), "corrupt gzip")
    assert result.exit_code == 0
    assert "Warning: " in result.stderr and "gzip data corrupt" in result.stderr
    assert result.stdout.count("\n") > 0  # the connections before the damage are there


def test_summary_counts_skipped_frames_by_reason(tmp_path):
    eth = pcapgen.clean_close()
    odd = [(ts, b"\x00" * 30) for ts, _ in pcapgen.refused(t=pcapgen.T0 + 0.0005)]
    broken = [(ts + 0.0001, frame[:30]) for ts, frame in pcapgen.udp_exchange()]  # cut IP header
    path = tmp_path / "mixed.pcapng"
    path.write_bytes(pcapgen.pcapng_bytes([(1, eth + broken), (147, odd)]))
    result = invoke(["flows", str(path)])
    assert result.exit_code == 0
    lines = result.stderr.splitlines()
    assert (
        f"Warning: {path}: skipped 4 undecodable frames (2 truncated IPv4 header, "
        f"2 unsupported link type 147)"
    ) in lines
    assert lines[-1].endswith(f" in {len(eth) + 4} frames")


# ------------------------------------------------------------------------------ 4 GB claims


def _huge_pcap() -> bytes:
    data = bytearray(pcapgen.pcap_bytes(pcapgen.clean_close()))
    first = struct.unpack_from("<I", data, 24 + 8)[0]
    struct.pack_into("<I", data, 24 + 16 + first + 8, 0xFFFFFFF0)
    return bytes(data)


def _huge_pcapng(where: str) -> bytes:
    data = bytearray(pcapgen.pcapng_bytes([(1, pcapgen.clean_close())]))
    lay = parse(bytes(data))
    epb = [r for r in lay.records if r.kind == 6][1]
    struct.pack_into("<I", data, epb.offset + (4 if where == "block" else 20), 0xFFFFFFF0)
    return bytes(data)


@pytest.mark.parametrize(
    "make",
    [
        _huge_pcap,
        lambda: _huge_pcapng("block"),
        lambda: _huge_pcapng("caplen"),
        lambda: pcapgen.compress(_huge_pcap(), "gzip"),
        lambda: pcapgen.compress(_huge_pcapng("block"), "zstd"),
    ],
    ids=["pcap", "pcapng-block", "pcapng-caplen", "pcap-gzip", "pcapng-zstd"],
)
def test_a_4gb_claim_is_not_allocated(tmp_path, make):
    path = tmp_path / "huge"
    path.write_bytes(make())
    tracemalloc.start()
    try:
        a = analyze(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20
    assert a.stats.frames == 1 and a.stats.stopped_frame == 2
    assert "4294967280" in a.stats.stopped


# ------------------------------------------------------------------------------ checksums


def _bad_tcp_checksum(frames: list, index: int) -> list:
    """The same frames with the TCP checksum of frame `index` wrong (and not an offload value)."""
    ts, frame = frames[index]
    eth = dpkt.ethernet.Ethernet(frame)
    raw = bytearray(frame)
    csum_at = 14 + eth.data.hl * 4 + 16
    struct.pack_into("!H", raw, csum_at, struct.unpack_from("!H", raw, csum_at)[0] ^ 0x5A5A)
    out = list(frames)
    out[index] = (ts, bytes(raw))
    return out


def test_bad_checksum_is_analysed_and_flagged(tmp_path):
    frames = _bad_tcp_checksum(pcapgen.clean_close(), 3)  # the client's request
    path = tmp_path / "badsum.pcap"
    path.write_bytes(pcapgen.pcap_bytes(frames))
    a = analyze(str(path))
    (conn,) = a.connections
    assert conn.bad_checksums == 1
    assert conn.handshake == "3way" and conn.teardown == "4way"
    # flagged, not dropped: the state machines see it, but the counts are Zeek's, which leave
    # it out (TCP.cc TCPAnalyzer::DeliverPacket returns before the conn-size analyzer)
    assert conn.pkts[0] + conn.pkts[1] == len(frames) - 1

    flagged = json.loads(invoke(["flows", str(path), "--format", "json"]).stdout)
    assert "C" in flagged["history"]  # Zeek: the originator sent a bad checksum
    assert flagged["conn_state"] == "SF"
    unchecked = json.loads(invoke(["flows", str(path), "--format", "json", "-C"]).stdout)
    assert "C" not in unchecked["history"] and unchecked["conn_state"] == "SF"


def test_good_checksums_are_not_flagged(tmp_path):
    path = tmp_path / "good.pcap"
    path.write_bytes(pcapgen.pcap_bytes(pcapgen.clean_close()))
    (conn,) = analyze(str(path)).connections
    assert conn.bad_checksums == 0 and "C" not in conn.history and "c" not in conn.history


# ------------------------------------------------------------------------------ clock jumps


def _jumping(frames: list) -> list:
    """Frame 2 (the SYN/ACK) stamped 10 s before the SYN, frame 6 an hour back."""
    out = list(frames)
    out[1] = (frames[0][0] - 10.0, frames[1][1])
    out[5] = (frames[5][0] - 3600.0, frames[5][1])
    return out


@pytest.mark.parametrize("container", ["pcap", "pcapng"])
def test_clock_jumps_are_counted_and_durations_stay_positive(tmp_path, container):
    frames = _jumping(pcapgen.clean_close())
    path = tmp_path / f"jumps.{container}"
    if container == "pcap":
        path.write_bytes(pcapgen.pcap_bytes(frames))
    else:  # pcapgen's pcapng writer sorts by time; keep capture order by writing EPBs directly
        data = pcapgen.pcapng_bytes([(1, frames[:1])])
        for ts, frame in frames[1:]:
            ticks = round(ts * 1e6)
            data += bytes(
                dpkt.pcapng.EnhancedPacketBlockLE(
                    iface_id=0,
                    ts_high=ticks >> 32,
                    ts_low=ticks & 0xFFFFFFFF,
                    caplen=len(frame),
                    pkt_len=len(frame),
                    pkt_data=frame,
                )
            )
        path.write_bytes(data)
    a = analyze(str(path))
    assert a.stats.frames == len(frames)
    assert a.stats.clock_jumps == 2
    assert a.stats.clock_jump_frame == 6 and 3599e9 < a.stats.clock_jump_max_ns <= 3600e9
    assert any(
        w.startswith(f"{path}: timestamps went backwards 2 times, the most by 3600.0 s at frame 6")
        for w in a.warnings
    ), a.warnings
    assert a.notes == []
    assert a.stats.duration_ns >= 0
    (conn,) = a.connections
    assert conn.duration_s >= 0
    assert conn.synack_ms is None and conn.irtt_ms is None  # a negative RTT is no measurement
    times = [t for t, *_ in conn.timeline]
    assert times == sorted(times)
    record = json.loads(invoke(["flows", str(path), "--format", "json"]).stdout)
    assert record["duration"] >= 0 and record["synack_ms"] is None


def test_batch_lists_each_unreadable_capture_and_goes_on(tmp_path):
    """batch takes many paths: each unreadable one is one `Error: FILE: problem` line, the
    readable ones are analysed, and the exit code says something failed."""
    good = tmp_path / "good.pcap"
    good.write_bytes(pcapgen.pcap_bytes(pcapgen.clean_close()))
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(pcapgen.compress(pcapgen.pcap_bytes(pcapgen.clean_close()), "gzip")[:15])
    out = tmp_path / "out"
    with time_guard(60, "flowlens batch"):
        result = invoke(
            ["batch", str(empty), str(cut), str(good), "-o", str(out), "-j", "1", "--no-report"]
        )
    assert result.exit_code == 1, result.stderr
    errors = sorted(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert errors == [f"Error: {cut}: gzip stream cut short", f"Error: {empty}: empty file"]
    assert "1 analysed" in result.stderr


def test_absurd_interface_clock_is_an_oddity(tmp_path):
    """An IDB whose if_tsoffset puts packets past the year 2262: the frames are read, their
    timestamps stay in the signed 64-bit nanosecond range, and the summary says so."""
    frames = pcapgen.clean_close()
    data = bytearray(pcapgen.pcapng_bytes([(1, frames)]))
    lay = parse(bytes(data))
    idb = next(r for r in lay.records if r.kind == 1)
    opts = struct.pack("<HHq", 14, 8, (1 << 63) - 1) + struct.pack("<HH", 0, 0)
    body = struct.pack("<HHI", 1, 0, 262144) + opts
    block = struct.pack("<II", 1, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    path = tmp_path / "future.pcapng"
    path.write_bytes(bytes(data[: idb.offset]) + block + bytes(data[idb.offset + idb.length :]))
    a = analyze(str(path))
    assert a.stats.frames == len(frames)
    assert a.stats.oddities["a timestamp beyond the 64-bit nanosecond range"] == len(frames)
    assert (
        f"{path}: {len(frames)} frames with a timestamp beyond the 64-bit nanosecond range"
        in a.warnings
    )
    assert all(abs(c.first_ts_ns) < 1 << 63 for c in a.connections)


def test_incomplete_fragmented_datagram_is_reported(tmp_path):
    """A datagram whose last fragment is not in the capture is not silently dropped."""
    src = CORPUS_FRAGMENTED
    if not src.is_file():
        skip_or_fail()
    data = src.read_bytes()
    lay = parse(data)
    first = lay.records[0]
    path = tmp_path / "half.pcap"
    path.write_bytes(data[: first.offset + first.length])  # only the first fragment
    pipe = Pipeline(str(path))
    assert list(pipe) == []
    assert (
        f"{path}: 1 fragmented IP datagrams never completed (fragments missing from the capture; not analysed)"
        in pipe.summary_lines()
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_reports_damage(tmp_path, monkeypatch, command):
    """Whatever the command, a cut capture and undecodable frames show up on stderr."""
    monkeypatch.chdir(tmp_path)  # commands that write files (report) write them here
    frames = pcapgen.clean_close() + [(pcapgen.T0 + 1, b"\x02" * 10)]  # a runt Ethernet frame
    data = pcapgen.pcap_bytes(frames) + pcapgen.pcap_bytes(pcapgen.clean_close())[24:60]
    path = tmp_path / "damaged.pcap"
    path.write_bytes(data)
    result = run_command(command, str(path))
    check_cli_run(result, str(path), command)
    assert result.exit_code == 0, result.stderr
    stopped = len(frames) + 1
    assert (
        f"Warning: {path}: capture ends inside a packet at frame {stopped} (byte offset "
        f"{len(data) - 36}); the {len(frames)} frames before it were analysed"
    ) in result.stderr
    assert (
        f"Warning: {path}: skipped 1 undecodable frame (1 truncated Ethernet header)"
        in result.stderr
    )


# ------------------------------------------------------------------------------ every command, every damage


def _first_record_claims(caplen: int) -> bytes:
    """A pcap whose first record claims `caplen` bytes (the rest follows unchanged)."""
    data = bytearray(pcapgen.pcap_bytes(pcapgen.clean_close()))
    struct.pack_into("<I", data, 24 + 8, caplen)
    return bytes(data)


def _zero_length_records() -> bytes:
    """Records 2 and 5 keep their header but capture nothing (caplen 0), as a snaplen-0 or
    broken capturer writes them."""
    frames = pcapgen.clean_close()
    out = bytearray(pcapgen.pcap_bytes([]))
    for i, (ts, frame) in enumerate(frames):
        kept = b"" if i in (1, 4) else frame
        sec, usec = int(ts), round((ts - int(ts)) * 1e6)
        out += struct.pack("<IIII", sec, usec, len(kept), len(frame)) + kept
    return bytes(out)


def _pcapng_bad_block() -> bytes:
    """A pcapng whose fourth packet block has a total length that is not a multiple of 4."""
    data = bytearray(pcapgen.pcapng_bytes([(1, pcapgen.clean_close())]))
    epb = [r for r in parse(bytes(data)).records if r.kind == 6][3]
    struct.pack_into("<I", data, epb.offset + 4, epb.length + 2)
    return bytes(data)


def _gzip_cut_mid_stream() -> bytes:
    packed = pcapgen.compress(pcapgen.pcap_bytes(pcapgen.time_wait_pileup()), "gzip")
    return packed[: len(packed) * 2 // 3]


#: damage inside a readable file: every command exits 0 and prints the library's lines
DAMAGED = {
    "4gb-first-record": _first_record_claims(0xFFFFFFF0),
    "4gb-second-record": _huge_pcap(),
    "zero-length-records": _zero_length_records(),
    "truncated-last-record": pcapgen.pcap_bytes(pcapgen.clean_close())[:-5],
    "pcapng-bad-block": _pcapng_bad_block(),
    "gzip-cut-mid-stream": _gzip_cut_mid_stream(),
    "header-only": pcapgen.pcap_bytes([]),
}
#: damage that leaves nothing readable: one `Error: PATH: problem` line and exit 1
UNREADABLE = {
    "missing": (None, "no such file"),
    "empty": (b"", "empty file"),
    "bad-magic": (b"GIF89a" + bytes(40), "not a pcap or pcapng capture (starts with 47 49 46 38)"),
    "truncated-header": (
        pcapgen.pcap_bytes(pcapgen.clean_close())[:20],
        "pcap file header cut short (20 of 24 bytes)",
    ),
    "gzip-cut-in-header": (
        pcapgen.compress(pcapgen.pcap_bytes(pcapgen.clean_close()), "gzip")[:15],
        "gzip stream cut short",
    ),
}


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Warning: ")]


@pytest.mark.parametrize("damage", DAMAGED)
def test_every_command_prints_the_same_damage_lines(tmp_path, monkeypatch, damage):
    """The Warning lines of `flowlens COMMAND damaged` are the library's `Analysis.warnings`,
    whatever the command (batch included), and a run with nothing to show says so and exits 0."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "damaged.pcap"
    path.write_bytes(DAMAGED[damage])
    a = analyze(str(path))
    want = [f"Warning: {line}" for line in a.warnings]
    if damage != "header-only":
        assert want, damage  # the damage is seen at all
    for command in [*COMMANDS, "batch"]:
        if command == "batch":
            args = ["batch", str(path), "-o", str(tmp_path / "out"), "-j", "1", "--no-report"]
            with time_guard(60, "flowlens batch"):
                result = invoke(args)
        else:
            result = run_command(command, str(path))
        check_cli_run(result, str(path), f"{command} on {damage}")
        if command == "plot" and "matches" in result.stderr.splitlines()[-1]:
            # plot draws one connection: the fuzz's --uid C names several here (an error,
            # after the same damage lines)
            assert result.exit_code == 1, (command, result.stderr)
        else:
            assert result.exit_code == 0, (command, result.stderr)
        assert _warnings(result.stderr) == want, (command, result.stderr)
        if not a.stats.frames and command != "batch":
            assert f"{path}: no packets" in result.stderr.splitlines(), (command, result.stderr)


def test_a_4gb_first_record_reads_the_same_everywhere(tmp_path, monkeypatch):
    """The case of issue 18: with a first record claiming 4 GB, every command warns the same
    and says there are no packets (states and report used to fail, ladder to stay silent)."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "huge.pcap"
    path.write_bytes(_first_record_claims(0xFFFFFFF0))
    line = (
        f"Warning: {path}: record header claims 4294967280 bytes (more than the 262144-byte "
        f"limit) at frame 1 (byte offset 24); the 0 frames before it were analysed"
    )
    for command in COMMANDS:
        result = run_command(command, str(path))
        assert result.exit_code == 0, (command, result.stderr)
        lines = result.stderr.splitlines()
        assert lines[0] == line, (command, lines)
        assert lines[1] == f"{path}: no packets", (command, lines)


@pytest.mark.parametrize("damage", UNREADABLE)
@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_what_cannot_be_read(tmp_path, monkeypatch, command, damage):
    monkeypatch.chdir(tmp_path)
    data, problem = UNREADABLE[damage]
    path = tmp_path / "no" / "such.pcap" if data is None else tmp_path / "bad.pcap"
    if data is not None:
        path.write_bytes(data)
    expect_error(run_command(command, str(path)), f"Error: {path}: {problem}")


#: a filter that keeps nothing, per command (every command takes --port but states' socket
#: filter; report has no filters)
NO_MATCH = ["--port", "1"]


@pytest.mark.parametrize(
    "command, fmt",
    [
        (c, f)
        for c in ("flows", "anomalies", "rtt", "states", "timeline")
        for f in ("table", "json", "csv")
    ]
    + [("ladder", None)],
)
def test_nothing_matched_is_said_and_output_stays_well_formed(tmp_path, command, fmt):
    path = tmp_path / "clean.pcap"
    path.write_bytes(pcapgen.pcap_bytes(pcapgen.clean_close()))
    args = [command, str(path), *NO_MATCH] + (["--format", fmt] if fmt else [])
    result = invoke(args)
    assert result.exit_code == 0, result.stderr
    assert f"{path}: no connection matches the filters" in result.stderr.splitlines() or (
        command == "states"
        and f"{path}: no TCP connection matches the filters" in result.stderr.splitlines()
    ), result.stderr
    assert "Error" not in result.stderr
    out = result.stdout
    if fmt == "json" or fmt is None:
        assert out == ""
    else:  # a table's or a CSV file's header, and nothing else
        assert len(out.splitlines()) == 1 and out.endswith("\n"), out
        assert out.split()[0].split(",")[0] in ("uid", "ts", "kind", "severity", "time_s", "frame")


def test_a_few_microseconds_back_is_a_note_said_once(tmp_path):
    """Packets from several CPU queues reach libpcap out of order (tcpdump -i lo, a multi-queue
    NIC): a step back of microseconds is no damage. It is a note, in flows' summary and the
    report, never a Warning line of every command (issue 17)."""
    frames = list(pcapgen.clean_close())
    frames[3] = (frames[2][0] - 5e-6, frames[3][1])  # 5 µs before the frame ahead of it
    path = tmp_path / "multiqueue.pcap"
    pcapgen.write_pcap(path, frames)
    a = analyze(str(path))
    assert a.stats.clock_jumps == 1 and a.warnings == []
    assert a.notes == [
        f"{path}: timestamps stepped back 1 time, by at most 5 µs (frame 4): packets queued on "
        "different CPUs, as on a multi-queue interface or tcpdump -i lo; harmless"
    ]
    flows = invoke(["flows", str(path)])
    assert flows.exit_code == 0 and "Warning" not in flows.stderr
    assert flows.stderr.count("Note: ") == 1 and "stepped back 1 time" in flows.stderr
    for command in ("anomalies", "rtt", "states"):
        result = invoke([command, str(path)])
        assert result.exit_code == 0 and "stepped back" not in result.stderr, command

"""Containers: pcap (µs/ns, both byte orders), pcapng (mixed interfaces), compression, damage."""

from __future__ import annotations

import io

import dpkt
import pcapgen
import pytest
from corpus import CORPUS, needs_corpus

from flowlens import analyze
from flowlens.core.capture import open_capture
from flowlens.errors import CaptureError, EmptyCaptureError, NotACaptureError, TruncatedHeaderError


def _frames(path):
    with open_capture(str(path)) as cap:
        return [(f, ts, lt, bytes(d), w) for f, ts, lt, d, w in cap], cap.stats


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_resolutions_and_byte_orders(tmp_path, nano, big_endian):
    frames = pcapgen.clean_close()
    path = tmp_path / "c.pcap"
    path.write_bytes(pcapgen.pcap_bytes(frames, nano=nano, big_endian=big_endian))
    got, stats = _frames(path)
    assert [g[3] for g in got] == [f for _, f in frames]
    assert [g[0] for g in got] == list(range(1, len(frames) + 1))
    # timestamps are integer nanoseconds; µs files are exact to the µs
    assert got[0][1] == round(frames[0][0] * 1_000_000) * 1000
    assert stats.resolution_ns == (1 if nano else 1000)
    assert stats.container == "pcap"


def test_nanosecond_timestamps_are_kept(tmp_path):
    path = tmp_path / "n.pcap"
    data = bytearray(
        pcapgen.pcap_bytes([(1_700_000_000.0, pcapgen.clean_close()[0][1])], nano=True)
    )
    data[28:32] = (123_456_789).to_bytes(4, "little")  # floats cannot carry this; patch the record
    path.write_bytes(bytes(data))
    got, _ = _frames(path)
    assert got[0][1] == 1_700_000_000_123_456_789


@pytest.mark.parametrize("kind", ["gzip", "bzip2", "xz", "zstd"])
def test_compressed_containers_are_sniffed_by_magic(tmp_path, kind):
    path = tmp_path / "capture.bin"  # the name says nothing
    path.write_bytes(pcapgen.compress(pcapgen.pcap_bytes(pcapgen.clean_close()), kind))
    got, stats = _frames(path)
    assert len(got) == len(pcapgen.clean_close())
    assert stats.container == f"pcap+{kind}"


def test_pcapng_mixed_interfaces_keep_their_link_types(tmp_path):
    eth = pcapgen.clean_close()
    raw = pcapgen.relink(pcapgen.refused(cport=41000, t=pcapgen.T0 + 0.0005), 101)
    path = tmp_path / "multi.pcapng"
    path.write_bytes(pcapgen.pcapng_bytes([(1, eth), (101, raw)]))
    got, stats = _frames(path)
    assert stats.linktypes == {1: len(eth), 101: len(raw)}
    assert [g[2] for g in got if g[3] in {f for _, f in raw}] == [101] * len(raw)
    a = analyze(str(path))
    states = sorted(c.conn_state for c in a.connections)
    assert states == ["REJ", "SF"]


def test_pcapng_nanosecond_resolution(tmp_path):
    path = tmp_path / "ns.pcapng"
    t = 1_700_000_000.000000123
    path.write_bytes(pcapgen.pcapng_bytes([(1, [(t, pcapgen.clean_close()[0][1])])], tsresol=9))
    got, stats = _frames(path)
    assert got[0][1] == round(t * 1e9)
    assert stats.resolution_ns == 1


@needs_corpus
def test_pcap_reader_matches_dpkt_on_corpus():
    """The block reader yields exactly dpkt's frames and timestamps on every classic pcap."""
    files = sorted((CORPUS / "zeek" / "traces").glob("*.pcap")) + sorted(
        (CORPUS / "other" / "captures").glob("*.pcap")
    )
    assert files, "corpus missing"
    checked = 0
    for path in files:
        with open(path, "rb") as f:
            try:
                reader = dpkt.pcap.Reader(f)
                theirs = []
                for ts, buf in reader:
                    theirs.append((buf, ts))
            except (ValueError, dpkt.NeedData):
                pass  # dpkt stops at damage too; compare what it read
        ours, _ = _frames(path)
        n = min(len(ours), len(theirs))
        assert n >= len(theirs) - 1, path.name
        for (frame, ts_ns, _lt, data, _w), (buf, ts) in zip(ours[:n], theirs[:n]):
            assert data == bytes(buf), (path.name, frame)
            assert abs(ts_ns / 1e9 - float(ts)) < 1e-6, (path.name, frame)
        checked += 1
    assert checked >= 60


def test_truncated_tail_keeps_connections(tmp_path):
    data = pcapgen.pcap_bytes(pcapgen.port_reuse())
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-30])  # tcpdump killed mid-packet
    a = analyze(str(path))
    assert len(a.connections) == 2
    assert a.stats.stopped == "capture ends inside a packet"
    assert a.stats.stopped_frame == len(pcapgen.port_reuse())
    assert any("capture ends inside a packet at frame" in w for w in a.warnings)


def test_absurd_record_length_stops_without_allocating(tmp_path):
    data = bytearray(pcapgen.pcap_bytes(pcapgen.clean_close()))
    # second record header: caplen = 4 GB - 1
    first_len = int.from_bytes(data[24 + 8 : 24 + 12], "little")
    off = 24 + 16 + first_len
    data[off + 8 : off + 12] = (0xFFFFFFFF).to_bytes(4, "little")
    path = tmp_path / "huge.pcap"
    path.write_bytes(bytes(data))
    a = analyze(str(path))
    assert a.stats.frames == 1
    assert a.stats.stopped_offset == off
    assert "claims 4294967295 bytes" in a.stats.stopped


@pytest.mark.parametrize(
    "content, error, message",
    [
        (b"", EmptyCaptureError, "empty file"),
        (
            b"hello world, not a capture",
            NotACaptureError,
            "not a pcap or pcapng capture (starts with 68 65 6c 6c)",
        ),
        (
            b"\xd4\xc3\xb2\xa1\x02\x00",
            TruncatedHeaderError,
            "pcap file header cut short (6 of 24 bytes)",
        ),
        (
            b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x00\x00\x00\x00",
            NotACaptureError,
            "pcapng section header with a bad byte-order magic",
        ),
    ],
)
def test_unreadable_files_raise_one_clear_error(tmp_path, content, error, message):
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(error) as info:
        open_capture(str(path))
    assert str(info.value) == f"{path}: {message}"


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(CaptureError, match="no such file"):
        open_capture(str(tmp_path / "nope.pcap"))
    with pytest.raises(CaptureError, match="is a directory"):
        open_capture(str(tmp_path))


def test_stdin(monkeypatch):
    data = pcapgen.compress(pcapgen.pcap_bytes(pcapgen.clean_close()), "gzip")
    fake = io.TextIOWrapper(io.BytesIO(data))
    monkeypatch.setattr("sys.stdin", fake)
    a = analyze("-")
    assert [c.conn_state for c in a.connections] == ["SF"]


def test_open_capture_takes_a_path_like_and_a_binary_file(tmp_path):
    """A path as str or os.PathLike, or a binary file object the caller keeps open."""
    path = tmp_path / "clean.pcap"
    path.write_bytes(pcapgen.pcap_bytes(pcapgen.clean_close()))
    with open_capture(path) as cap:
        by_pathlike = [f[:3] for f in cap]
    with open(path, "rb") as f:
        with open_capture(f) as cap:
            assert cap.path == str(path)  # the file object's name labels the messages
            by_file = [fr[:3] for fr in cap]
        assert not f.closed  # flowlens never closes a file object it was given
    data = io.BytesIO(path.read_bytes())
    with open_capture(data) as cap:
        assert cap.path == "<stream>"
        by_bytes = [fr[:3] for fr in cap]
    assert by_pathlike == by_file == by_bytes and len(by_file) == len(pcapgen.clean_close())


def test_open_capture_on_a_file_object_that_is_no_capture():
    with pytest.raises(NotACaptureError, match="<stream>: not a pcap or pcapng capture"):
        open_capture(io.BytesIO(b"hello world, this is text"))

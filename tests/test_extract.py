"""`flowlens extract`: the selected connections' frames, byte for byte, in the input's container.

Each capture is built here with pcapgen's dpkt writers. The expected frames are found from
the packets themselves (their ports, read back with dpkt), never from flowlens's own pass; the
output is read back with dpkt, with a small block walker, and with tshark when it is installed.
"""

from __future__ import annotations

import concurrent.futures
import functools
import io
import shutil
import struct
import subprocess

import corpus
import dpkt
import pcapgen
import pytest
from click.testing import CliRunner
from pcapgen import ACK, SYN, T0, Conversation

import flowlens
from flowlens.cli import cli
from flowlens.core.capture_writer import FrameSet

TSHARK = shutil.which("tshark")


def run(*args, input=None):
    return CliRunner().invoke(cli, ["extract", *[str(a) for a in args]], input=input)


# ---------------------------------------------------------------- reading captures back


def pcap_records(data: bytes) -> tuple[bytes, list[bytes]]:
    """(file header, [whole record]) of a classic pcap, walked by hand."""
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, pos = [], 24
    while pos + 16 <= len(data):
        (caplen,) = struct.unpack_from(endian + "I", data, pos + 8)
        if pos + 16 + caplen > len(data):
            break  # a cut last record
        out.append(data[pos : pos + 16 + caplen])
        pos += 16 + caplen
    return data[:24], out


def pcapng_blocks(data: bytes) -> list[tuple[int, bytes]]:
    """[(block type, whole block)] of a little-endian pcapng file."""
    out, pos = [], 0
    while pos + 8 <= len(data):
        code, blen = struct.unpack_from("<II", data, pos)
        out.append((code, data[pos : pos + blen]))
        pos += blen
    return out


def packet_ports(frame: bytes, linktype: int = 1) -> tuple[int, int] | None:
    """(sport, dport) of a TCP/UDP frame, read with dpkt; None for anything else."""
    ip = dpkt.ethernet.Ethernet(frame).data if linktype == 1 else dpkt.ip.IP(frame)
    if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) and isinstance(
        ip.data, (dpkt.tcp.TCP, dpkt.udp.UDP)
    ):
        return ip.data.sport, ip.data.dport
    return None


def dpkt_pcap(path) -> list[tuple[float, bytes]]:
    with open(path, "rb") as f:
        return [(ts, bytes(buf)) for ts, buf in dpkt.pcap.Reader(f)]


#: what tshark need not dissect to print fields of the frame layer alone (the frame
#: dissector sets them before it hands the frame on): half of tshark's time on the corpus
_BEYOND_FRAME = ("eth", "sll", "null", "raw", "ip", "ipv6", "arp")


def tshark_fields(
    path, *fields: str, display_filter: str | None = None, frame_only: bool = False
) -> list[str]:
    # (frame.md5_hash: a digest of each frame's captured bytes, computed by tshark)
    cmd = [TSHARK, "-n", "-o", "frame.generate_md5_hash:TRUE", "-r", str(path), "-T", "fields"]
    if frame_only:
        for proto in _BEYOND_FRAME:
            cmd += ["--disable-protocol", proto]
    for name in fields:
        cmd += ["-e", name]
    if display_filter:
        cmd += ["-Y", display_filter]
    done = subprocess.run(cmd, capture_output=True, text=True)
    # (a capture cut short or damaged: tshark prints the frames before it, then exits 2)
    assert done.returncode == 0 or "appears to" in done.stderr, done.stderr
    return done.stdout.splitlines()


def tshark_matches(src, out, frames: list[int]) -> None:
    """tshark reads the output's frames as the input's `frames`: time, lengths, interface,
    link type and the bytes themselves."""
    fields = (
        "frame.time_epoch", "frame.len", "frame.cap_len", "frame.interface_id",
        "frame.encap_type", "frame.protocols", "frame.md5_hash",
    )  # fmt: skip
    wanted = tshark_fields(
        src, *fields, display_filter="frame.number in {" + ",".join(map(str, frames)) + "}"
    )
    got = tshark_fields(out, *fields)
    assert got == wanted
    assert len(got) == len(frames)


# ---------------------------------------------------------------- captures


def two_clients() -> list:
    """Two connections to port 80 (client ports 40000 and 40001) interleaved with a DNS
    exchange: a selection must pick frames out of the middle of others."""
    a = Conversation(cport=40000)
    a.handshake()
    a.exchange()
    a.close("client")
    b = Conversation(cport=40001, t=T0 + 0.0005, isn_c=77000)
    b.handshake()
    b.exchange()
    b.close("server")
    frames = a.frames + b.frames + pcapgen.udp_exchange(t=T0 + 0.0012)
    frames.sort(key=lambda f: f[0])
    return frames


def uid_of(path, port: int) -> str:
    (uid,) = [
        c.uid for c in flowlens.analyze(str(path)).connections if port in (c.orig_p, c.resp_p)
    ]
    return uid


def frames_with_port(frames: list, port: int, linktype: int = 1) -> list[int]:
    return [i + 1 for i, (_ts, f) in enumerate(frames) if port in (packet_ports(f, linktype) or ())]


# ---------------------------------------------------------------- pcap


def test_pcap_by_uid_is_byte_for_byte(tmp_path):
    frames = two_clients()
    src = tmp_path / "in.pcap"
    pcapgen.write_pcap(src, frames, snaplen=1500)
    out = tmp_path / "out.pcap"
    result = run(src, "--uid", uid_of(src, 40001), "-w", out)
    assert result.exit_code == 0, result.output
    wanted = frames_with_port(frames, 40001)
    assert 0 < len(wanted) < len(frames)
    head, records = pcap_records(src.read_bytes())
    # the same file header (snaplen 1500, Ethernet, microseconds) and the same records
    assert out.read_bytes() == head + b"".join(records[n - 1] for n in wanted)
    assert [buf for _ts, buf in dpkt_pcap(out)] == [frames[n - 1][1] for n in wanted]
    assert result.stdout == ""
    assert result.stderr == (
        f"Wrote {len(wanted)} of {len(frames)} frames (1 connection) to {out} (pcap)\n"
    )
    if TSHARK:
        tshark_matches(src, out, wanted)


def test_pcap_by_port_keeps_the_link_type_and_big_endian_header(tmp_path):
    frames = pcapgen.relink(two_clients(), 101)  # raw IP
    src = tmp_path / "in.pcap"
    src.write_bytes(pcapgen.pcap_bytes(frames, linktype=101, big_endian=True))
    out = tmp_path / "out.pcap"
    result = run(src, "--port", 40000, "-w", out)
    assert result.exit_code == 0, result.output
    wanted = frames_with_port(frames, 40000, linktype=101)
    head, records = pcap_records(src.read_bytes())
    assert head[:4] == b"\xa1\xb2\xc3\xd4"
    assert out.read_bytes() == head + b"".join(records[n - 1] for n in wanted)
    if TSHARK:
        tshark_matches(src, out, wanted)


def test_nanosecond_pcap_stays_nanosecond(tmp_path):
    frames = two_clients()
    data = bytearray(pcapgen.pcap_bytes(frames, nano=True))
    # give every record a timestamp with odd nanoseconds, which a microsecond file cannot hold
    pos = 24
    for i in range(len(frames)):
        sec, frac, caplen, wirelen = struct.unpack_from("<IIII", data, pos)
        struct.pack_into("<II", data, pos, sec, (frac // 1000) * 1000 + 1 + 37 * i)
        pos += 16 + caplen
    src = tmp_path / "in.pcap"
    src.write_bytes(bytes(data))
    out = tmp_path / "out.pcap"
    result = run(src, "--uid", uid_of(src, 40000), "-w", out)
    assert result.exit_code == 0, result.output
    wanted = frames_with_port(frames, 40000)
    head, records = pcap_records(bytes(data))
    assert out.read_bytes()[:4] == b"\x4d\x3c\xb2\xa1"
    assert out.read_bytes() == head + b"".join(records[n - 1] for n in wanted)
    if TSHARK:
        times = tshark_fields(out, "frame.time_epoch")
        assert all(len(t.split(".")[1]) == 9 for t in times)  # nanoseconds shown
        assert {t[-1] for t in times} != {"0"}
        tshark_matches(src, out, wanted)


def test_port_reuse_gives_each_connection_its_own_frames(tmp_path):
    frames = pcapgen.port_reuse()
    src = tmp_path / "in.pcap"
    pcapgen.write_pcap(src, frames)
    conns = flowlens.analyze(str(src)).connections
    assert len(conns) == 2 and conns[0].key == conns[1].key  # one 5-tuple, two connections
    # the second connection begins at the second SYN (the one with the new ISN)
    syns = [
        i + 1
        for i, (_ts, f) in enumerate(frames)
        if dpkt.ethernet.Ethernet(f).data.data.flags & (SYN | ACK) == SYN
    ]
    assert len(syns) == 2
    split = syns[1]
    head, records = pcap_records(src.read_bytes())
    for conn, wanted in zip(conns, (range(1, split), range(split, len(frames) + 1))):
        out = tmp_path / f"{conn.uid}.pcap"
        result = run(src, "--uid", conn.uid, "-w", out)
        assert result.exit_code == 0, result.output
        assert out.read_bytes() == head + b"".join(records[n - 1] for n in wanted)


def test_icmp_error_quoting_a_selected_flow_is_included(tmp_path):
    frames = pcapgen.udp_exchange() + pcapgen.udp_port_unreachable(t=T0 + 1)
    src = tmp_path / "in.pcap"
    pcapgen.write_pcap(src, frames)
    out = tmp_path / "out.pcap"
    result = run(src, "--port", 9999, "-w", out)
    assert result.exit_code == 0, result.output
    got = dpkt_pcap(out)
    assert [buf for _ts, buf in got] == [frames[2][1], frames[3][1]]
    icmp = dpkt.ethernet.Ethernet(got[1][1]).data.data
    assert isinstance(icmp, dpkt.icmp.ICMP) and icmp.type == 3  # port unreachable
    assert "and 1 ICMP errors quoting them" in result.stderr
    # the ICMP error alone is a flow of its own too; the DNS exchange is not selected
    assert frames[0][1] not in [buf for _ts, buf in got]


def test_selection_by_state_and_by_finding(tmp_path):
    leak = pcapgen.close_wait_leak(cport=41000)
    clean = pcapgen.clean_close(cport=42000, t=T0 + 0.5)
    refused = pcapgen.refused(cport=43000, t=T0 + 0.7)
    frames = sorted(leak + clean + refused, key=lambda f: f[0])
    src = tmp_path / "in.pcap"
    pcapgen.write_pcap(src, frames)
    head, records = pcap_records(src.read_bytes())
    expected = {
        ("--state", "close-wait"): frames_with_port(frames, 41000),
        ("--finding", "close_wait"): frames_with_port(frames, 41000),
        ("--finding", "connection_refused"): frames_with_port(frames, 43000),
        ("--state", "SF"): frames_with_port(frames, 42000),
    }
    for (option, value), wanted in expected.items():
        assert wanted
        out = tmp_path / f"{value}.pcap"
        result = run(src, option, value, "-w", out)
        assert result.exit_code == 0, (option, value, result.output)
        assert out.read_bytes() == head + b"".join(records[n - 1] for n in wanted), (option, value)
    # findings and other filters are AND-ed
    out = tmp_path / "none.pcap"
    result = run(src, "--finding", "close_wait", "--port", 43000, "-w", out)
    assert result.exit_code == 0
    assert out.read_bytes() == head
    assert f"{src}: no connection matches the filters" in result.stderr.splitlines()


def test_unknown_finding_kind_is_a_usage_error(tmp_path):
    src = tmp_path / "in.pcap"
    pcapgen.write_pcap(src, two_clients())
    result = run(src, "--finding", "no_such_kind", "-w", tmp_path / "o.pcap")
    assert result.exit_code == 2
    assert "'no_such_kind' is not one of" in result.stderr


# ---------------------------------------------------------------- pcapng


def two_interfaces(tsresol: int | None = 9) -> tuple[bytes, list]:
    """A pcapng with an Ethernet interface (0) and a raw-IP one (1), nanosecond clocks; returns
    the file and its frames in file order as (ts, frame, interface)."""
    eth = two_clients()
    raw = pcapgen.relink(pcapgen.clean_close(cport=45000, t=T0 + 0.0003), 101)
    data = pcapgen.pcapng_bytes([(1, eth), (101, raw)], tsresol=tsresol)
    merged = sorted(
        [(ts, f, 0) for ts, f in eth] + [(ts, f, 1) for ts, f in raw], key=lambda x: x[0]
    )
    return data, merged


def test_pcapng_keeps_interfaces_and_interface_ids(tmp_path):
    data, frames = two_interfaces()
    src = tmp_path / "in.pcapng"
    src.write_bytes(data)
    out = tmp_path / "out.pcapng"
    # one connection on each interface
    result = run(src, "--port", 45000, "--port", 40000, "-w", out)
    assert result.exit_code == 0, result.output
    wanted = [
        i + 1
        for i, (_ts, f, iface) in enumerate(frames)
        if {45000, 40000} & set(packet_ports(f, 1 if iface == 0 else 101) or ())
    ]
    assert {frames[n - 1][2] for n in wanted} == {0, 1}
    blocks = pcapng_blocks(data)
    assert [code for code, _b in blocks[:3]] == [0x0A0D0D0A, 1, 1]
    packets = [b for code, b in blocks if code == 6]
    got = pcapng_blocks(out.read_bytes())
    # the section header (its section length now "unspecified"), both interfaces as they were,
    # then the selected packet blocks unchanged
    shb = blocks[0][1]
    assert got[0][1] == shb[:16] + b"\xff" * 8 + shb[24:]
    assert [b for _c, b in got[1:3]] == [blocks[1][1], blocks[2][1]]
    assert [b for _c, b in got[3:]] == [packets[n - 1] for n in wanted]
    if TSHARK:
        tshark_matches(src, out, wanted)
        assert set(tshark_fields(out, "frame.interface_id")) == {"0", "1"}


def test_compressed_pcapng_gives_uncompressed_output(tmp_path):
    data, _frames = two_interfaces(tsresol=None)
    plain, packed = tmp_path / "in.pcapng", tmp_path / "in.pcapng.gz"
    plain.write_bytes(data)
    packed.write_bytes(pcapgen.compress(data, "gzip"))
    outputs = []
    for src in (plain, packed):
        out = tmp_path / f"{src.name}.out"
        result = run(src, "--port", 45000, "-w", out)
        assert result.exit_code == 0, result.output
        assert result.stderr.endswith("(pcapng)\n")
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0][:4] == b"\x0a\x0d\x0d\x0a"
    # dpkt reads it: the raw-IP connection's packets, on interface 1
    with io.BytesIO(outputs[0]) as f:
        got = [bytes(buf) for _ts, buf in dpkt.pcapng.Reader(f)]
    raw = pcapgen.relink(pcapgen.clean_close(cport=45000, t=T0 + 0.0003), 101)
    assert got == [f for _ts, f in raw]


def test_several_sections(tmp_path):
    first, _ = two_interfaces()
    second = pcapgen.pcapng_bytes([(1, pcapgen.udp_port_unreachable(t=T0 + 5))])
    src = tmp_path / "in.pcapng"
    src.write_bytes(first + second)
    out = tmp_path / "out.pcapng"
    result = run(src, "--port", 9999, "--port", 40000, "-w", out)
    assert result.exit_code == 0, result.output
    codes = [code for code, _b in pcapng_blocks(out.read_bytes())]
    n_first = len(frames_with_port(two_clients(), 40000))
    # the first section with its two interfaces, then the second with its one
    assert codes == [0x0A0D0D0A, 1, 1] + [6] * n_first + [0x0A0D0D0A, 1, 6, 6]
    if TSHARK:
        assert len(tshark_fields(out, "frame.number")) == n_first + 2


# ---------------------------------------------------------------- edges


def test_empty_selection_writes_a_valid_empty_capture(tmp_path):
    frames = two_clients()
    for name, data in (
        ("in.pcap", pcapgen.pcap_bytes(frames)),
        ("in.pcapng", two_interfaces()[0]),
    ):
        src = tmp_path / name
        src.write_bytes(data)
        out = tmp_path / f"empty-{name}"
        result = run(src, "--port", 1, "-w", out)
        assert result.exit_code == 0, result.output
        kind = name.split(".")[1]
        assert result.stderr == (
            f"{src}: no connection matches the filters\nWrote an empty {kind} capture to {out}\n"
        )

        if kind == "pcap":
            assert out.read_bytes() == data[:24]
            assert dpkt_pcap(out) == []
        else:
            assert [c for c, _b in pcapng_blocks(out.read_bytes())] == [0x0A0D0D0A, 1, 1]
        if TSHARK:
            assert tshark_fields(out, "frame.number") == []


def test_uid_values_are_filters(tmp_path):
    """As everywhere (`--uid` keeps every connection its value starts): an unknown uid matches
    nothing, a prefix every uid shares keeps them all."""
    frames = two_clients()
    src = tmp_path / "in.pcap"
    pcapgen.write_pcap(src, frames)
    out = tmp_path / "out.pcap"
    result = run(src, "--uid", "Cnosuchuid", "-w", out)
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"{src}: no connection matches the filters",
        f"Wrote an empty pcap capture to {out}",
    ]
    result = run(src, "--uid", "C", "-w", out)  # every uid starts with C
    assert result.exit_code == 0
    assert out.read_bytes() == src.read_bytes()


def test_bad_output_paths(tmp_path):
    src = tmp_path / "in.pcap"
    pcapgen.write_pcap(src, two_clients())
    missing = tmp_path / "nope" / "out.pcap"
    result = run(src, "-w", missing)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {missing}: no such directory {tmp_path / 'nope'}\n"
    result = run(src, "-w", tmp_path)
    assert (result.exit_code, result.stderr) == (1, f"Error: {tmp_path}: is a directory\n")
    result = run(src, "-w", src)
    assert result.exit_code == 1
    assert result.stderr == f"Error: {src}: is the input capture; write to another file\n"
    assert result.stdout == ""
    assert not (tmp_path / "nope").exists()
    result = CliRunner().invoke(cli, ["extract", str(src)])
    assert result.exit_code == 2 and "Missing option '-w'" in result.stderr


def test_damaged_input_warns_like_other_commands(tmp_path):
    frames = two_clients()
    data = pcapgen.pcap_bytes(frames)
    src = tmp_path / "cut.pcap"
    src.write_bytes(data[:-10])  # the last packet cut short
    out = tmp_path / "out.pcap"
    result = run(src, "--port", 80, "-w", out)
    assert result.exit_code == 0, result.output
    flows = CliRunner().invoke(cli, ["flows", str(src)])
    warnings = [line for line in flows.stderr.splitlines() if line.startswith("Warning:")]
    assert warnings and "capture ends inside a packet" in warnings[0]
    assert [line for line in result.stderr.splitlines() if line.startswith("Warning:")] == warnings
    # every complete frame of the two TCP connections (the cut one was never read)
    head, records = pcap_records(data[:-10])
    assert len(records) == len(frames) - 1
    wanted = [n for n in frames_with_port(frames, 80) if n <= len(records)]
    assert out.read_bytes() == head + b"".join(records[n - 1] for n in wanted)


def test_stdin_and_stdout(tmp_path):
    frames = two_clients()
    data = pcapgen.pcap_bytes(frames)
    src = tmp_path / "in.pcap"
    src.write_bytes(data)
    uid = uid_of(src, 40000)
    out = tmp_path / "file.pcap"
    assert run(src, "--uid", uid, "-w", out).exit_code == 0
    # stdin is spooled to a temporary file (read twice), stdout gets the bytes
    result = run("-", "--uid", uid, "-w", "-", input=data)
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == out.read_bytes()
    assert result.stderr.endswith("to standard output (pcap)\n")
    # with findings (three reads of the spooled copy)
    leak = pcapgen.pcap_bytes(pcapgen.close_wait_leak())
    result = run("-", "--finding", "close_wait", "-w", "-", input=leak)
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == leak


def test_frame_set():
    s = FrameSet([5, 1, 5, 1000, 9])
    assert (len(s), s.last, list(s)) == (4, 1000, [1, 5, 9, 1000])
    assert 5 in s and 6 not in s and 0 not in s and 10**9 not in s
    with pytest.raises(ValueError):
        s.add(0)


def test_listed_in_help_and_readme():
    result = CliRunner().invoke(cli, ["extract", "--help"])
    assert result.exit_code == 0
    assert "flowlens extract capture.pcap --uid" in result.output
    assert "extract" in CliRunner().invoke(cli, ["--help"]).output


def test_hint_lines_point_to_extract(tmp_path):
    src = tmp_path / "in.pcap"
    pcapgen.write_pcap(src, two_clients())
    uid = uid_of(src, 40000)
    hint = f"extract these frames: flowlens extract {src} --uid {uid} -w {uid}.pcap"
    for command in ("ladder", "timeline"):
        result = CliRunner().invoke(cli, [command, str(src), "--uid", uid])
        assert result.exit_code == 0, result.output
        assert result.stderr.splitlines() == [hint], command
        assert "flowlens extract" not in result.stdout
        # the hint's command does what it says
        words = hint.split(": ", 1)[1].split()
        assert words[:2] == ["flowlens", "extract"]
        out = tmp_path / words[-1]
        result = run(*words[2:-1], out)
        assert result.exit_code == 0
        assert [buf for _ts, buf in dpkt_pcap(out)] == [
            two_clients()[n - 1][1] for n in frames_with_port(two_clients(), 40000)
        ]
    result = CliRunner().invoke(cli, ["timeline", str(src), "--uid", uid, "--format", "json"])
    assert "flowlens extract" not in result.stderr  # data formats: no hint
    # one line per connection shown (up to MAX_HINTS: test_hints_past_the_limit)
    result = CliRunner().invoke(cli, ["ladder", str(src)])
    assert sorted(result.stderr.splitlines()) == sorted(
        f"extract these frames: flowlens extract {src} --uid {c.uid} -w {c.uid}.pcap"
        for c in flowlens.analyze(str(src)).connections
    )


def test_hints_past_the_limit():
    from flowlens.reports.hints import MAX_HINTS, extract_hints

    uids = [f"C{i}" for i in range(MAX_HINTS)]
    lines = extract_hints("my capture.pcapng", uids, 12, "pcapng+gzip")
    assert (
        lines[0]
        == "extract these frames: flowlens extract 'my capture.pcapng' --uid C0 -w C0.pcapng"
    )
    assert len(lines) == MAX_HINTS + 1
    assert (
        lines[-1]
        == f"extract these frames: ... and {12 - MAX_HINTS} more connections, the same way with their uids"
    )


def test_report_points_to_extract(tmp_path):
    src = tmp_path / "in.pcap"
    pcapgen.write_pcap(src, pcapgen.close_wait_leak())
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    result = CliRunner().invoke(cli, ["report", str(src), "-o", str(html), "--markdown", str(md)])
    assert result.exit_code == 0, result.output
    (uid,) = [c.uid for c in flowlens.analyze(str(src)).connections]
    command = f"flowlens extract {src} --uid {uid} -w {uid}.pcap"
    assert f"Extract these frames: `{command}`" in md.read_text()
    assert f"Extract these frames: <code>{command}</code>" in html.read_text()


# ---------------------------------------------------------------- samples and the corpus


def test_every_sample_capture_extracts_to_itself(tmp_path):
    """Without a filter every frame of a sample capture belongs to a connection: the output is
    the (decompressed) input, byte for byte."""
    import gzip
    from pathlib import Path

    samples = sorted((Path(__file__).resolve().parents[1] / "sample_pcaps").glob("*.pcap*"))
    assert len(samples) > 20
    for src in samples:
        out = tmp_path / (src.name + ".out")
        result = run(src, "-w", out)
        assert result.exit_code == 0, (src.name, result.output)
        data = src.read_bytes()
        if src.suffix == ".gz":
            data = gzip.decompress(data)
        assert out.read_bytes() == data, src.name


def _tshark_rows(path) -> list[str]:
    return tshark_fields(
        path, "frame.time_epoch", "frame.len", "frame.cap_len", "frame.interface_id",
        "frame.encap_type", "frame.md5_hash", frame_only=True,
    )  # fmt: skip


#: an input's rows, read once for both selections of the corpus test below
_input_rows = functools.lru_cache(maxsize=None)(_tshark_rows)


@pytest.mark.slow
@corpus.needs_corpus
@pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
@pytest.mark.parametrize("selection", [["--proto", "tcp"], ["--proto", "udp", "--proto", "icmp"]])
def test_corpus_frames_as_tshark_numbers_them(tmp_path, selection):
    """On every corpus capture, the output is the input's frames flowlens selected, as tshark
    reads them by number in the input (time, lengths, interface, link type, bytes' digest):
    flowlens numbers frames as Wireshark does, and copies them unchanged."""
    from flowlens.analyzers.frames import select_frames
    from flowlens.core.filters import Selection

    paths = sorted(
        p
        for folder in (corpus.OTHER_CAPTURES, corpus.ZEEK_TRACES)
        for p in folder.iterdir()
        if p.suffix in (".pcap", ".pcapng", ".cap", ".trace")
    )
    assert len(paths) > 30
    protos = [v for k, v in zip(selection[::2], selection[1::2]) if k == "--proto"]
    made = []  # (input, output, the frames flowlens selected)
    for i, src in enumerate(paths):
        try:
            found = select_frames(str(src), selection=Selection.build(protos=protos))
        except flowlens.errors.FlowlensError:
            continue  # not a capture flowlens reads (test_damaged_input's business)
        out = tmp_path / f"out-{i}"
        result = run(src, *selection, "-w", out)
        assert result.exit_code == 0, (src.name, result.output)
        made.append((src, out, found.frames))

    def read(job):  # (tshark's own start is most of its time: two at once)
        src, out, _frames = job
        got = _tshark_rows(out)
        return got, (_input_rows(src) if got else None)

    checked = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        for (src, _out, frames), (got, rows) in zip(made, pool.map(read, made)):
            assert len(got) == len(frames), src.name
            if not got:
                continue
            assert got == [rows[n - 1] for n in frames], src.name
            checked += 1
    assert checked > 10


def test_an_interface_declared_after_packets(tmp_path):
    """pcapng lets an interface block come after packets of another interface: it reaches the
    output before the first selected packet that follows it, so interface ids stay right."""
    data, frames = two_interfaces()
    blocks = pcapng_blocks(data)
    shb, idb0, idb1 = (b for _c, b in blocks[:3])
    packets = [b for c, b in blocks if c == 6]
    first_on_1 = next(i for i, (_ts, _f, iface) in enumerate(frames) if iface == 1)
    assert first_on_1 > 0
    src = tmp_path / "late.pcapng"
    src.write_bytes(
        shb + idb0 + b"".join(packets[:first_on_1]) + idb1 + b"".join(packets[first_on_1:])
    )
    out = tmp_path / "out.pcapng"
    result = run(src, "--port", 45000, "-w", out)  # the raw-IP connection, on interface 1
    assert result.exit_code == 0, result.output
    wanted = [i + 1 for i, (_ts, _f, iface) in enumerate(frames) if iface == 1]
    got = [b for _c, b in pcapng_blocks(out.read_bytes())]
    assert got[1:3] == [idb0, idb1]
    assert got[3:] == [packets[n - 1] for n in wanted]
    if TSHARK:
        tshark_matches(src, out, wanted)

"""`flowlens ladder`: golden text ladders, collapsing, notes, the SVG/PNG picture, CLI errors."""

from __future__ import annotations

import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pcapgen
import pytest
from click.testing import CliRunner

from flowlens.analyzers.packetlog import PacketCollector, collect, first_packet_filter
from flowlens.cli import cli
from flowlens.core.filters import Selection
from flowlens.core.pipeline import analyze
from flowlens.reports.ladder import WIDTH, Note, build_ladder, render_text
from flowlens.reports.ladder_plot import draw_figure

GOLDEN = Path(__file__).parent / "golden"
ARROW_ROW = re.compile(r"^\s*(\d+)\s+\d+\.\d+ .*\|(?:--|<)")


def capture(tmp_path, name: str, frames=None) -> str:
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(
        pcapgen.pcap_bytes(frames if frames is not None else pcapgen.SCENARIOS[name]())
    )
    return str(path)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def arrow_frames(text: str) -> list[int]:
    return [int(m.group(1)) for line in text.splitlines() if (m := ARROW_ROW.match(line))]


# ---------------------------------------------------------------- goldens


@pytest.mark.parametrize("scenario", ["clean-close", "refused", "simultaneous-close", "port-reuse"])
def test_golden_ladder(tmp_path, request, scenario):
    result = invoke("ladder", capture(tmp_path, scenario))
    assert result.exit_code == 0, result.output
    golden = GOLDEN / f"ladder-{scenario}.txt"
    if request.config.getoption("--update-goldens"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text(), (
        f"differs from {golden} (pytest --update-goldens, then review the diff)"
    )


@pytest.mark.parametrize(
    "scenario", ["clean-close", "refused", "simultaneous-close", "port-reuse", "bulk-download"]
)
@pytest.mark.parametrize("unicode", [False, True])
def test_fits_100_columns_and_ascii_unless_asked(tmp_path, scenario, unicode):
    args = ["ladder", capture(tmp_path, scenario)] + (["--unicode"] if unicode else [])
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert result.stdout.isascii() != unicode


def test_the_refused_ladder_tells_the_story(tmp_path):
    text = invoke("ladder", capture(tmp_path, "refused")).stdout
    assert "[S] seq 0" in text and "[R.] seq 1 ack 1" in text
    assert "SYN answered by RST: connection refused" in text
    assert "handshake rejected" in text


def test_simultaneous_close_shows_closing_on_both_sides(tmp_path):
    text = invoke("ladder", capture(tmp_path, "simultaneous-close")).stdout
    row = next(line for line in text.splitlines() if line.lstrip().startswith("9 "))
    assert row.split()[2] == "CLOSING" and row.rstrip().endswith("CLOSING")
    assert "orig stays in TIME_WAIT" in text and "resp stays in TIME_WAIT" in text


def test_port_reuse_gives_two_ladders_and_says_why(tmp_path):
    text = invoke("ladder", capture(tmp_path, "port-reuse")).stdout
    assert arrow_frames(text) == list(range(1, 23))
    assert "TIME_WAIT cut short: the 5-tuple was reused" in text
    assert "while that connection's TIME_WAIT was still running" in text


# ---------------------------------------------------------------- content


def test_relative_and_absolute_numbers(tmp_path):
    path = capture(tmp_path, "clean-close")
    rel = invoke("ladder", path).stdout
    assert "[S.] seq 0 ack 1 win 65535" in rel and "[P.] seq 1:19 ack 1 len 18" in rel
    raw = invoke("ladder", path, "--absolute").stdout
    assert "[S.] seq 5000 ack 1001 win 65535" in raw and "[P.] seq 1001:1019 ack 5001 len 18" in raw


def test_handshake_legs_are_annotated(tmp_path):
    text = invoke("ladder", capture(tmp_path, "clean-close")).stdout
    assert "* SYN -> SYN/ACK 10.000 ms" in text
    assert "* SYN/ACK -> ACK 0.500 ms (iRTT 10.500 ms)" in text


def test_long_data_phase_collapses_unless_full(tmp_path):
    path = capture(tmp_path, "bulk-download")
    short = invoke("ladder", path).stdout
    full = invoke("ladder", path, "--full").stdout
    frames = arrow_frames(full)
    assert frames == list(range(1, len(frames) + 1)) and len(frames) == 313
    shown = arrow_frames(short)
    assert len(short.splitlines()) < 60
    # handshake and teardown packet by packet, and the findings where they happen
    assert shown[:3] == [1, 2, 3] and shown[-4:] == [310, 311, 312, 313]
    assert 157 in shown and 233 in shown and 234 in shown
    assert re.search(r"(?i)retransmission", short.split("\n   157 ")[1].split("\n")[1])
    assert "win 0" in short and "153 segments over 0.014 s (frames 4-156)" in short
    assert "resp -> orig: 102 segments, 54.1 kB" in short


def test_collapsed_log_stays_small():
    """The collector folds the data phase as it streams: memory does not follow the packets."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bulk.pcap"
        path.write_bytes(pcapgen.pcap_bytes(pcapgen.bulk_download(segments=2000)))
        collector = PacketCollector(full=False)
        a = analyze(str(path), analyzers=[collector])
    log = collector.log_of(a.connections[0])
    assert log.packets > 3000
    assert len(log.items) < 20


def test_collector_keeps_only_the_wanted_connections(tmp_path):
    path = capture(tmp_path, "incident")
    selection = Selection.build(ports=[5432])
    collector = PacketCollector(first_packet_filter(selection))
    from flowlens.core.pipeline import Pipeline

    pairs = collect(Pipeline(path, analyzers=[collector]), selection, collector, path)
    assert collector.kept == 3 and len(pairs) == 3
    assert all(conn.resp_p == 5432 for conn, _log in pairs)


def test_notes_by_frame_and_by_time(tmp_path):
    path = capture(tmp_path, "clean-close")
    result = invoke(
        "ladder", path, "--note", "3=handshake done", "--note", "+0.0152s=app calls close()"
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    i = next(n for n, line in enumerate(lines) if line.lstrip().startswith("3 "))
    assert "NOTE: handshake done" in lines[i + 2]  # under the handshake-leg finding
    j = next(n for n, line in enumerate(lines) if "NOTE: app calls close()" in line)
    assert lines[j].split()[0] == "0.015200" and lines[j + 1].lstrip().startswith("8 ")
    # only the pointer to `flowlens extract` (tests/test_extract.py)
    assert result.stderr.startswith("extract these frames: flowlens extract ")
    assert len(result.stderr.splitlines()) == 1


def test_a_note_on_no_packet_is_a_warning(tmp_path):
    result = invoke("ladder", capture(tmp_path, "clean-close"), "--note", "99=nowhere")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[-1:] == [
        "Warning: note 'nowhere': frame 99 falls on no shown connection"
    ]
    assert not [line for line in result.stderr.splitlines()[:-1] if "extract these" not in line]


def test_filters_select_ladders(tmp_path):
    path = capture(tmp_path, "port-reuse")
    result = invoke("ladder", path, "--state", "time-wait")
    assert arrow_frames(result.stdout) == list(range(12, 23))


# ---------------------------------------------------------------- pictures


def test_svg_parses_and_holds_the_same_arrows(tmp_path):
    path = capture(tmp_path, "port-reuse")
    svg = tmp_path / "ladder.svg"
    result = invoke("ladder", path, "--svg", svg, "--note", "12=the port is reused")
    assert result.exit_code == 0, result.output
    root = ET.parse(svg).getroot()
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    frames = arrow_frames(result.stdout)
    assert {f"arrow-{f}" for f in frames} <= ids
    assert not {i for i in ids if i.startswith("arrow-")} - {f"arrow-{f}" for f in frames}
    texts = ["".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text")]
    for label in (
        "[S] seq 0 win 65535",
        "[F.] seq 19 ack 25",
        "the port is reused",
        "TIME_WAIT",
        "CLOSE_WAIT",
    ):
        assert any(label in t for t in texts), label


def test_svg_keeps_the_spacing_of_its_text(tmp_path):
    """An SVG viewer collapses runs of spaces unless xml:space says otherwise: the header's
    two-space gaps (and any aligned column) survive because the root preserves them."""
    path = capture(tmp_path, "clean-close")
    svg = tmp_path / "ladder.svg"
    assert invoke("ladder", path, "--svg", svg).exit_code == 0
    root = ET.parse(svg).getroot()
    assert root.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"
    texts = ["".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text")]
    assert any(re.search(r"UTC  duration \d", t) for t in texts)


def test_figure_arrows_match_the_text(tmp_path):
    from matplotlib.patches import FancyArrowPatch

    path = capture(tmp_path, "bulk-download")
    collector = PacketCollector(full=False)
    a = analyze(path, analyzers=[collector])
    conn = a.connections[0]
    ladder = build_ladder(conn, collector.log_of(conn), [Note("stall", frame=157)])
    fig = draw_figure([ladder])
    patches = [p for p in fig.axes[0].patches if isinstance(p, FancyArrowPatch)]
    assert [p.get_gid() for p in patches] == [
        f"arrow-{f}" for f in arrow_frames(render_text(ladder))
    ]
    labels = {t.get_gid(): t.get_text() for t in fig.axes[0].texts if t.get_gid()}
    assert labels["label-157"] == "[.] seq 53601:54137 ack 22 len 536"
    assert any(t.get_text() == "stall" for t in fig.axes[0].texts)


def test_png_is_written(tmp_path):
    png = tmp_path / "ladder.png"
    result = invoke("ladder", capture(tmp_path, "clean-close"), "--png", png)
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------- errors


def test_unknown_uid_matches_nothing(tmp_path):
    """--uid is a filter, as in `flows`: nothing matched is said on stderr, exit 0."""
    path = capture(tmp_path, "clean-close")
    result = invoke("ladder", path, "--uid", "Cnope")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == f"{path}: no connection matches the filters\n"


def test_uid_prefix_keeps_every_connection_it_starts(tmp_path):
    path = capture(tmp_path, "port-reuse")
    result = invoke("ladder", path, "--uid", "C")
    assert result.exit_code == 0, result.stderr
    heads = [
        line for line in result.stdout.splitlines() if line.startswith("C") and " tcp " in line
    ]
    assert len(heads) == 2, result.stdout  # both connections of the reused 5-tuple


def test_nothing_matching_is_said_not_an_error(tmp_path):
    path = capture(tmp_path, "clean-close")
    png = tmp_path / "l.png"
    result = invoke("ladder", path, "--port", "443", "--png", png)
    assert result.exit_code == 0
    assert result.stdout == ""
    assert result.stderr == (
        f"{path}: no connection matches the filters\n{png}: not written (no connection to draw)\n"
    )
    assert not png.exists()


@pytest.mark.parametrize("note", ["no-equals", "=text", "0=frame zero", "soon=text"])
def test_bad_note_exits_2(tmp_path, note):
    result = invoke("ladder", capture(tmp_path, "clean-close"), "--note", note)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1].startswith("Error: Invalid value for '--note': ")


# ---------------------------------------------------------------- against tshark


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize(
    "scenario", ["bulk-download", "refused", "midstream", "port-reuse", "simultaneous-open"]
)
def test_relative_numbers_agree_with_tshark(tmp_path, scenario):
    import json

    path = capture(tmp_path, scenario)
    out = subprocess.run(
        ["tshark", "-r", path, "-T", "fields", "-e", "frame.number", "-e", "tcp.seq", "-e", "tcp.ack",
         "-e", "tcp.flags.ack"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    want = {}
    for line in out.splitlines():
        frame, seq, ack, has_ack = line.split("\t")
        want[int(frame)] = (int(seq), int(ack) if has_ack in ("1", "True") else None)
    result = invoke("timeline", path, "--proto", "tcp", "--format", "json")
    got = {
        r["frame"]: (r["seq"], r["ack"])
        for r in map(json.loads, result.stdout.splitlines())
        if r["frame"]
    }
    assert got == want

"""Every output path is checked before the work starts: one line, exit 1, nothing created."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_damaged_input import unprivileged

from flowlens.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(ROOT / "sample_pcaps" / "incident.pcap")

#: every option that names a file to write: (arguments before the path, the file's extension,
#: the picture formats it accepts or None when it is not a picture)
COMMANDS = {
    "ladder --png": (["ladder", SAMPLE, "--port", "9000", "--png"], "png", ("png",)),
    "ladder --svg": (["ladder", SAMPLE, "--port", "9000", "--svg"], "svg", ("svg",)),
    "states --plot": (["states", SAMPLE, "--plot"], "png", "png, svg"),
    "rtt --plot": (["rtt", SAMPLE, "--plot"], "png", "png, svg"),
    "report --markdown": (["report", SAMPLE, "--markdown"], "md", None),
    "report -o": (["report", SAMPLE, "-o"], "html", None),
    "flows --format parquet -o": (["flows", SAMPLE, "--format", "parquet", "-o"], "parquet", None),
    "anomalies --format json -o": (["anomalies", SAMPLE, "--format", "json", "-o"], "json", None),
    "rtt --format parquet -o": (["rtt", SAMPLE, "--format", "parquet", "-o"], "parquet", None),
    "states -o": (["states", SAMPLE, "-o"], "csv", None),
    "extract -w": (["extract", SAMPLE, "--port", "9000", "-w"], "pcap", None),
}
PICTURES = [name for name, (_args, _ext, formats) in COMMANDS.items() if formats]


@pytest.fixture
def open_dir():
    """A folder everyone may write (pytest's tmp_path is root's alone), removed afterwards."""
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o777)
        yield Path(d)


def _bad_paths(tmp: Path, ext: str) -> dict[str, tuple[str, str]]:
    """name -> (path, the problem flowlens must name)."""
    locked = tmp / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    readonly = tmp / f"readonly.{ext}"
    readonly.write_text("keep me\n")
    os.chmod(readonly, 0o444)
    return {
        "missing folder": (str(tmp / "nope" / f"out.{ext}"), f"no such directory {tmp / 'nope'}"),
        "a folder": (str(tmp), "is a directory"),
        "folder without write permission": (str(locked / f"out.{ext}"), "permission denied"),
        "file without write permission": (str(readonly), "permission denied"),
    }


def invoke(args):
    return CliRunner().invoke(cli, args)


def expect_error(result, line: str, what) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, (what, result.output)
    assert result.stderr == line + "\n", what
    assert result.stdout == "", what  # nothing printed: the work never started


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_output_paths(command, open_dir):
    args, ext, _formats = COMMANDS[command]
    invoke([args[0], "--help"])  # imports the command's modules
    for name, (path, problem) in _bad_paths(open_dir, ext).items():
        with unprivileged():
            result = invoke([*args, path])
        expect_error(result, f"Error: {path}: {problem}", name)
    assert not (open_dir / "nope").exists()  # no folder created for the user
    assert (open_dir / f"readonly.{ext}").read_text() == "keep me\n"


@pytest.mark.parametrize("command", PICTURES)
def test_unknown_picture_format(command, tmp_path):
    args, _ext, formats = COMMANDS[command]
    path = str(tmp_path / "s.jpgx")
    result = invoke([*args, path])
    assert result.exit_code == 1
    assert result.stdout == ""  # the table is not printed first
    use = ", ".join(formats) if isinstance(formats, tuple) else formats
    line = result.stderr.splitlines()
    assert len(line) == 1 and line[0].startswith(
        f"Error: {path}: unknown picture format ('.jpgx'; use {use}"
    ), result.stderr
    assert not os.path.exists(path)


@pytest.mark.parametrize(
    "option, name, message",
    [
        ("--png", "ladder.svg", "this option writes png, not '.svg'"),
        ("--svg", "ladder.png", "this option writes svg, not '.png'"),
        ("--png", "ladder", "unknown picture format (no extension; use png)"),
    ],
)
def test_ladder_picture_named_for_another_format(tmp_path, option, name, message):
    path = str(tmp_path / name)
    result = invoke(["ladder", SAMPLE, "--port", "9000", option, path])
    expect_error(result, f"Error: {path}: {message}", name)


def test_batch_outdir(open_dir):
    """batch creates its output folder, never the folders above it."""
    not_a_dir = open_dir / "file"
    not_a_dir.write_text("")
    locked = open_dir / "locked"
    locked.mkdir()
    os.chmod(locked, 0o555)
    invoke(["batch", "--help"])
    cases = {
        "missing parent": (open_dir / "nope" / "out", f"no such directory {open_dir / 'nope'}"),
        "a file": (not_a_dir, "not a directory"),
        "locked parent": (locked / "out", "permission denied"),
        "locked folder": (locked, "permission denied"),
    }
    for name, (path, problem) in cases.items():
        with unprivileged():
            result = invoke(["batch", SAMPLE, "-o", str(path), "-j", "1", "--no-report"])
        expect_error(result, f"Error: {path}: {problem}", name)
    assert not (open_dir / "nope").exists()

"""Every output path is checked before the work starts: one line, exit 1, nothing created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowlens.cli import cli

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = str(ROOT / "sample_pcaps" / "incident.pcap")


def _bad_paths(tmp: Path) -> dict[str, tuple[str, str]]:
    """name -> (path, the problem flowlens must name)."""
    locked = tmp / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    return {
        "missing folder": (str(tmp / "nope" / "out.png"), f"no such directory {tmp / 'nope'}"),
        "a folder": (str(tmp), "is a directory"),
        "no permission": (str(locked / "out.png"), "permission denied"),
    }


COMMANDS = {
    "ladder --png": ["ladder", SAMPLE, "--port", "9000", "--png"],
    "ladder --svg": ["ladder", SAMPLE, "--port", "9000", "--svg"],
    "states --plot": ["states", SAMPLE, "--plot"],
    "report --markdown": ["report", SAMPLE, "--markdown"],
    "report -o": ["report", SAMPLE, "-o"],
    "extract -w": ["extract", SAMPLE, "--port", "9000", "-w"],
}


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_output_paths(command, tmp_path):
    for name, (path, problem) in _bad_paths(tmp_path).items():
        if name == "no permission" and os.access(os.path.dirname(path), os.W_OK):
            continue  # root may write anywhere: access(2) says so, and so does flowlens
        result = CliRunner().invoke(cli, [*COMMANDS[command], path])
        if name == "a folder" and result.exit_code == 2:
            continue  # click's own Path(dir_okay=False) check: a bad argument, exit 2
        assert result.exit_code == 1, (name, result.output)
        assert result.stderr == f"Error: {path}: {problem}\n", name
        assert result.stdout == ""  # nothing printed: the work never started
    assert not (tmp_path / "nope").exists()  # no folder created for the user


def test_states_plot_with_an_unknown_picture_format(tmp_path):
    path = str(tmp_path / "s.jpgx")
    result = CliRunner().invoke(cli, ["states", SAMPLE, "--plot", path])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {path}: unknown picture format ('.jpgx'; use png, svg")
    assert result.stdout == ""  # the table is not printed first
    assert not os.path.exists(path)

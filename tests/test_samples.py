"""sample_pcaps/ is exactly what scripts/make_sample_pcaps.py writes, and every file is documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_samples_are_current():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_sample_pcaps.py"), "--check"],
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_every_sample_has_a_readme_line():
    readme = (ROOT / "sample_pcaps" / "README.md").read_text()
    files = [p.name for p in (ROOT / "sample_pcaps").iterdir() if p.name != "README.md"]
    assert files
    assert [f for f in files if f"`{f}`" not in readme] == []


def test_readme_connection_counts_are_what_flows_prints():
    """sample_pcaps/README.md's `connections` column: the rows `flowlens flows` prints."""
    import json
    import re

    from click.testing import CliRunner

    from flowlens.cli import cli

    readme = (ROOT / "sample_pcaps" / "README.md").read_text()
    claimed = {m[0]: int(m[1]) for m in re.findall(r"^\| `([^`]+)` \| (\d+) \|", readme, re.M)}
    files = sorted(p.name for p in (ROOT / "sample_pcaps").iterdir() if p.name != "README.md")
    assert sorted(claimed) == files
    counted = {}
    for name in files:
        result = CliRunner().invoke(
            cli, ["flows", str(ROOT / "sample_pcaps" / name), "--format", "json"]
        )
        assert result.exit_code == 0, result.output
        counted[name] = len([json.loads(line) for line in result.stdout.splitlines()])
    assert counted == claimed

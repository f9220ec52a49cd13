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

"""The compiled hot path and the plain-Python one give the same output.

setup.py compiles flowlens.compiled.MODULES with Cython; the same sources also run as plain
Python (no compiler, or FLOWLENS_PURE_PYTHON=1 at install). This runs every command that reads
a capture over the sample captures and the shared corpus twice, once as installed and once from
a copy of the package without its compiled modules, and compares the outputs byte for byte.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import CORPUS

from flowlens.compiled import MODULES, compiled_modules, describe

ROOT = Path(__file__).resolve().parents[1]

# One process walks every capture through the CLI (click's runner) and prints what each
# command wrote, so the comparison costs two interpreter starts, not hundreds.
DRIVER = r"""
import json, sys
from click.testing import CliRunner
from flowlens.cli import cli
import flowlens.compiled

runs = {"__compiled__": flowlens.compiled.compiled_modules()}
for path in sys.argv[1:]:
    for args in (["flows", "--format", "json"], ["anomalies", "--format", "json"],
                 ["rtt", "--format", "json"], ["states", "--format", "csv"],
                 ["timeline", "--format", "csv"], ["extract", "-w", "-"]):
        result = CliRunner().invoke(cli, [args[0], path, *args[1:]])
        runs[path + " " + " ".join(args)] = [result.exit_code, result.stdout]
json.dump(runs, sys.stdout)
"""


def captures() -> list[str]:
    paths = sorted((ROOT / "sample_pcaps").glob("*.pcap*"))
    for sub in ("other/captures", "zeek/traces"):
        folder = CORPUS / sub
        if folder.is_dir():
            paths += sorted(p for p in folder.iterdir() if p.suffix in (".pcap", ".pcapng"))
    return [str(p) for p in paths]


def start_driver(pythonpath: Path | None, paths: list[str], cwd: Path) -> subprocess.Popen:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    # cwd: `python -c` puts the working directory first on sys.path, before PYTHONPATH
    return subprocess.Popen([sys.executable, "-c", DRIVER, *paths], stdout=subprocess.PIPE,
                            text=True, env=env, cwd=cwd)  # fmt: skip


def driver_runs(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, f"the driver exited with {proc.returncode}"
    return json.loads(out)


@pytest.mark.slow
def test_compiled_and_pure_python_agree(tmp_path):
    if not compiled_modules():
        pytest.skip("flowlens is installed without its compiled modules: nothing to compare")
    pure = tmp_path / "pure"
    shutil.copytree(
        ROOT / "flowlens", pure / "flowlens", ignore=shutil.ignore_patterns("*.so", "__pycache__")
    )
    paths = captures()
    # three drivers at once (the plain-Python one, the slow side, in two halves): the
    # comparison takes the wall time of half a plain-Python run, not of both runs in turn
    drivers = [start_driver(None, paths, tmp_path)] + [
        start_driver(pure, half, tmp_path) for half in (paths[0::2], paths[1::2])
    ]
    try:
        compiled, *halves = [driver_runs(proc) for proc in drivers]
    finally:
        for proc in drivers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert compiled.pop("__compiled__") == compiled_modules()
    plain: dict = {}
    for half in halves:
        assert half.pop("__compiled__") == []
        plain.update(half)
    assert compiled.keys() == plain.keys()
    differ = [key for key in compiled if compiled[key] != plain[key]]
    assert not differ, f"{len(differ)} runs differ, first: {differ[:3]}"
    # the comparison is worth something only if the runs produced output
    assert sum(1 for code, out in compiled.values() if code == 0 and out) > len(paths) * 3


def test_ci_builds_the_compiled_hot_path():
    """CI installs with a C compiler: a failed compile would silently fall back to plain Python
    (optional extensions), so say so here instead of only in the benchmark."""
    if not os.environ.get("CI"):
        pytest.skip("only CI promises a compiler")
    assert compiled_modules() == list(MODULES), describe()


def test_version_says_how_flowlens_runs():
    from click.testing import CliRunner

    from flowlens.cli import cli

    out = CliRunner().invoke(cli, ["--version"], prog_name="flowlens").stdout
    assert out.startswith("flowlens ") and describe() in out

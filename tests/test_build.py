"""setup.py's build is all-or-nothing: every module in flowlens.compiled.MODULES compiles, or
none is installed compiled and the build says so on stderr (issue 15, item 6).

Run on a copy of the project whose MODULES are two tiny modules, one of which does not
compile, so that the check takes seconds rather than the real build's minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("gcc") is None and shutil.which("cc") is None, reason="needs a C compiler"
    ),
]
pytest.importorskip("Cython")


def _project(tmp_path: Path) -> Path:
    """A copy of setup.py and a flowlens package with MODULES = core.good, core.other."""
    proj = tmp_path / "proj"
    (proj / "flowlens" / "core").mkdir(parents=True)
    shutil.copy(ROOT / "setup.py", proj / "setup.py")
    (proj / "flowlens" / "__init__.py").write_text("")
    (proj / "flowlens" / "core" / "__init__.py").write_text("")
    compiled = (ROOT / "flowlens" / "compiled.py").read_text()
    start = compiled.index("MODULES = (")
    end = compiled.index(")\n", start) + 2
    compiled = compiled[:start] + 'MODULES = ("core.good", "core.other")\n' + compiled[end:]
    (proj / "flowlens" / "compiled.py").write_text(compiled)
    for name in ("good", "other"):
        (proj / "flowlens" / "core" / f"{name}.py").write_text(f"def f():\n    return {name!r}\n")
    return proj


def _break(proj: Path, how: str) -> None:
    """Make core.other fail to build: in the C compiler ("c") or in Cython ("cython")."""
    other = proj / "flowlens" / "core" / "other.py"
    if how == "c":  # Cython translates it, the C compiler rejects it
        other.with_suffix(".pxd").write_text(
            'cdef extern from "no_such_header_flowlens.h":\n    int no_such_function()\n'
        )
        other.write_text(
            "import cython\n\n\ndef f():\n    return no_such_function() if cython.compiled else 0\n"
        )
    else:
        other.write_text("import cython\n\n\ndef f():\n    x: cython.int = 'text'\n    return x\n")


def _build(proj: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FLOWLENS_PURE_PYTHON"} | env_extra
    return subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"],
        cwd=proj,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _compiled(proj: Path) -> list[str]:
    return sorted(p.name.split(".")[0] for p in (proj / "flowlens").rglob("*.so"))


def test_every_module_compiles_when_all_can(tmp_path):
    proj = _project(tmp_path)
    run = _build(proj)
    assert run.returncode == 0, run.stderr
    assert _compiled(proj) == ["good", "other"]
    assert "NOT COMPILING" not in run.stderr and "FAILED" not in run.stderr


@pytest.mark.parametrize("how", ["c", "cython"])
def test_one_failure_installs_none_compiled_and_says_so(tmp_path, how):
    proj = _project(tmp_path)
    assert _build(proj).returncode == 0 and _compiled(proj) == ["good", "other"]
    _break(proj, how)
    run = _build(proj)
    assert run.returncode == 0, run.stderr  # the install goes on, as plain Python
    assert _compiled(proj) == []  # good's extension too, and the earlier build's
    assert ("COMPILING FAILED" if how == "c" else "NOT COMPILING") in run.stderr
    assert "other" in run.stderr


def test_pure_python_on_request(tmp_path):
    proj = _project(tmp_path)
    assert _build(proj).returncode == 0 and _compiled(proj) == ["good", "other"]
    run = _build(proj, FLOWLENS_PURE_PYTHON="1")
    assert run.returncode == 0, run.stderr
    assert _compiled(proj) == []  # the earlier build's extensions are gone
    assert "FLOWLENS_PURE_PYTHON" in run.stderr


def _call(proj: Path, module: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", f"import flowlens.core.{module} as m; print(m.f(), m.__file__)"],
        cwd=proj,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_a_second_build_of_the_same_sources_reuses_the_first(tmp_path):
    """The README's second command builds again (an editable install, in a fresh build
    environment and build folder): the same sources are not translated or compiled twice."""
    proj = _project(tmp_path)
    assert _build(proj).returncode == 0 and _compiled(proj) == ["good", "other"]
    for so in (proj / "flowlens").rglob("*.so"):
        so.unlink()
    shutil.rmtree(proj / "build" / "cython")  # where Cython writes the C it translates
    assert _build(proj).returncode == 0 and _compiled(proj) == ["good", "other"]
    assert not (proj / "build" / "cython").exists()  # nothing translated again
    assert _call(proj, "good").startswith("good ") and ".so" in _call(proj, "good")
    # a changed source is built afresh, the unchanged one comes from the cache
    (proj / "flowlens" / "core" / "good.py").write_text("def f():\n    return 'changed'\n")
    assert _build(proj).returncode == 0 and _compiled(proj) == ["good", "other"]
    assert _call(proj, "good").startswith("changed ")
    assert _call(proj, "other").startswith("other ")

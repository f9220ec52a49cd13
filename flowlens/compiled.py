"""Which of flowlens's hot-path modules run compiled (Cython) and which as plain Python.

setup.py compiles the modules in `MODULES` when a C compiler and Cython are there; the same
source runs unchanged as Python otherwise. This module imports nothing from flowlens, so
setup.py can read `MODULES` from it before the package is built.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
from pathlib import Path

#: modules compiled when possible (dotted names within flowlens): the per-packet path, and the
#: reports that run once per connection
MODULES = (
    "core.streams",
    "core.frame",
    "core.pcapng",
    "core.capture",
    "core.packet",
    "core.tcpoptions",
    "core.links",
    "core.tunnels",
    "core.fragments",
    "core.decode",
    "core.tcpstate",
    "core.zeekstate",
    "core.analyzer",
    "core.timers",
    "core.connections",
    "core.pipeline",
    "analyzers.tcpanalysis",
    "analyzers.rtt",
    "analyzers.packetlog",
    "analyzers.anomalies.detector",
    "analyzers.anomalies.endpoint_findings",
    "analyzers.anomalies.host_findings",
    "analyzers.anomalies.scans",
    "analyzers.anomalies.port_findings",
    "analyzers.anomalies.holds",
    "analyzers.anomalies.connection_findings",
    "reports.rtt",
    "reports.spantable",
    "reports.gather",
)

_HERE = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """The names in MODULES whose import resolves to an extension module."""
    out = []
    for name in MODULES:
        spec = importlib.util.find_spec(f"flowlens.{name}")
        if spec is not None and isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            out.append(name)
    return out


def stale_modules() -> list[str]:
    """Compiled modules older than their .py, their .pxd, or a .pxd that one cimports (edited
    since the last build: Python would still import the old compiled one, so rebuild with
    `pip install -e .`)."""
    stale = []
    for name in MODULES:
        path = name.replace(".", "/")
        for so in _HERE.glob(f"{path}.*.so"):
            built = so.stat().st_mtime
            sources = [_HERE / f"{path}.py", *_pxd_closure(name)]
            if any(src.stat().st_mtime > built for src in sources):
                stale.append(name)
    return stale


def _pxd_closure(name: str) -> list[Path]:
    """The module's .pxd and every flowlens .pxd it cimports, directly or not."""
    seen: list[Path] = []
    todo = [name]
    while todo:
        pxd = _HERE / f"{todo.pop().replace('.', '/')}.pxd"
        if pxd.exists() and pxd not in seen:
            seen.append(pxd)
            todo += re.findall(r"^\s*from\s+flowlens\.([\w.]+)\s+cimport", pxd.read_text(), re.M)
    return seen


def describe() -> str:
    """One line for `flowlens --version`."""
    done = compiled_modules()
    if len(done) == len(MODULES):
        return "compiled hot path"
    if not done:
        return "pure Python (no compiled hot path: slower, same output)"
    missing = ", ".join(m for m in MODULES if m not in done)
    return f"partly compiled (pure Python: {missing})"

"""Read Zeek's test baselines from ../shared/corpus/zeek and compare flowlens with them.

Used by scripts/zeek_conformance.py (`--corpus`, and tests/test_zeek_conformance.py through it),
which compares flowlens with them.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from corpus import CORPUS

ZEEK = CORPUS / "zeek"

# The four RST traces whose "history, conn_state" Zeek's conn_state-RST-behavior test prints.
RST_TRACES = [
    "tcp__single-rst.pcap",
    "tcp__syn-then-rst.pcap",
    "tcp__syn-then-ack-then-rst.pcap",
    "tcp__syn-then-stuff-then-rst.pcap",
]
FIELDS = ("history", "conn_state")


@dataclass
class Baseline:
    trace: str
    rows: list[dict]
    invocation: str

    @property
    def has_ids(self) -> bool:
        return bool(self.rows) and "id.orig_h" in self.rows[0]


def _manifest() -> list[dict]:
    with open(ZEEK / "MANIFEST.tsv", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _parse_log(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    lines = [ln for ln in lines if not ln.startswith("### ")]
    fields = None
    rows = []
    for ln in lines:
        if ln.startswith("#fields"):
            fields = ln.split("\t")[1:]
            continue
        if ln.startswith("#") or not ln.strip():
            continue
        parts = ln.split("\t")
        if fields is None:  # zeek-cut -m: the first line names the columns
            fields = parts
            continue
        rows.append(dict(zip(fields, parts)))
    return rows


def baselines() -> list[Baseline]:
    """Every baseline that holds history or conn_state, plus the RST traces from aux/."""
    out = []
    for entry in _manifest():
        rel = entry["baseline_path"]
        if rel == "none":
            continue
        rows = _parse_log(ZEEK / rel)
        if not rows or not any(f in rows[0] for f in FIELDS):
            continue
        out.append(Baseline(entry["trace_file"], rows, entry["baseline_invocation"]))
    aux = (
        ZEEK
        / "baselines"
        / "aux"
        / "tcp__single-rst.pcap.scripts.base.protocols.conn.conn_state-RST-behavior.out"
    )
    lines = [ln for ln in aux.read_text().splitlines() if not ln.startswith("###") and ln.strip()]
    for trace, line in zip(RST_TRACES, lines):
        history, state = (x.strip() for x in line.split(","))
        out.append(Baseline(trace, [{"history": history, "conn_state": state}], "zeek -b -C"))
    return out

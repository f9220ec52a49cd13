"""Read Zeek's test baselines from ../shared/corpus/zeek and compare flowlens with them.

Used by tests/test_zeek_conformance.py and by scripts/zeek_conformance.py (which prints the
per-trace table that docs/zeek-conformance.md is written from).
"""

from __future__ import annotations

import csv
from collections import Counter
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


@dataclass
class Difference:
    trace: str
    conn: str  # "proto orig_h:orig_p > resp_h:resp_p" or "(no ids)"
    field: str
    zeek: str
    ours: str


def _zeek_text(value) -> str:
    """How Zeek's ASCII log writes a value: unset fields are `-`."""
    return "-" if value is None or value == "" else str(value)


def _key(proto, oh, op, rh, rp) -> tuple:
    a, b = (oh, str(op)), (rh, str(rp))
    return (proto,) + (a + b if a <= b else b + a)


def compare(baseline: Baseline, records: list[dict]) -> tuple[Counter, Counter, list[Difference]]:
    """(agreements per field, totals per field, differences) for one trace."""
    agree, total, diffs = Counter(), Counter(), []
    fields = [f for f in FIELDS if f in baseline.rows[0]]
    if "tcp port 25" in baseline.invocation:
        records = [
            r for r in records if r["proto"] == "tcp" and 25 in (r["id.orig_p"], r["id.resp_p"])
        ]
    if baseline.has_ids:
        ours_by_key: dict[tuple, list[dict]] = {}
        for r in records:
            k = _key(r["proto"], r["id.orig_h"], r["id.orig_p"], r["id.resp_h"], r["id.resp_p"])
            ours_by_key.setdefault(k, []).append(r)
        for row in baseline.rows:
            proto = row.get("proto", "tcp")
            k = _key(proto, row["id.orig_h"], row["id.orig_p"], row["id.resp_h"], row["id.resp_p"])
            label = f"{proto} {row['id.orig_h']}:{row['id.orig_p']} > {row['id.resp_h']}:{row['id.resp_p']}"
            candidates = ours_by_key.get(k) or []
            ours = candidates.pop(0) if candidates else None
            for f in fields:
                total[f] += 1
                mine = "(missing)" if ours is None else _zeek_text(ours[f])
                if mine == row[f]:
                    agree[f] += 1
                else:
                    diffs.append(Difference(baseline.trace, label, f, row[f], mine))
        return agree, total, diffs
    # No connection ids: compare as multisets (Zeek's rows are in order of removal).
    for f in fields:
        theirs = Counter(row[f] for row in baseline.rows)
        mine = Counter(_zeek_text(r[f]) for r in records)
        hit = sum((theirs & mine).values())
        total[f] += sum(theirs.values())
        agree[f] += hit
        for value, n in (theirs - mine).items():
            extra = sorted((mine - theirs).elements())
            for _ in range(n):
                diffs.append(
                    Difference(
                        baseline.trace, "(no ids)", f, value, extra.pop(0) if extra else "(missing)"
                    )
                )
    return agree, total, diffs

"""The batch HTML report reads like a table: whole counts, one precision per column, times that
do not wrap, one colour per finding kind (issue 18)."""

from __future__ import annotations

import re

import pandas as pd

from flowlens.analyzers.anomalies.detector import KINDS
from flowlens.reports.archive import KIND_COLORS, archive_report, trend_figure, trend_tables


def _summary() -> list[dict]:
    ok = {"capture": "a.pcap", "capture_path": "/x/a.pcap", "status": "ok", "error": None,
          "first_ts": 1700000000.25, "last_ts": 1700000060.5, "duration_s": 60.25,
          "packets": 313, "connections": 12, "anomalies": 3,
          "anomalies_by_kind": {"close_wait": 3}}  # fmt: skip
    slow = dict(ok, capture="b.pcap", capture_path="/x/b.pcap", duration_s=0.875, packets=5)
    failed = {"capture": "c.pcap", "capture_path": "/x/c.pcap", "status": "failed",
              "error": "/x/c.pcap: not a capture", "first_ts": None, "last_ts": None,
              "duration_s": None, "packets": None, "connections": None, "anomalies": None,
              "anomalies_by_kind": None}  # fmt: skip
    return [ok, slow, failed]


def _captures_rows(page: str) -> list[list[str]]:
    table = page.split("<h2>Captures</h2>")[1]
    rows = re.findall(r"<tr>(.*?)</tr>", table)[1:]  # after the header row
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in rows]


def test_counts_are_whole_and_each_column_has_one_precision(tmp_path):
    page = archive_report(str(tmp_path), _summary())
    rows = _captures_rows(page)
    # pandas holds packets as floats once a failed capture leaves a gap: still 313, not 313.0
    assert [r[4] for r in rows] == ["313", "5", "-"]
    assert [r[5] for r in rows] == ["12", "12", "-"]
    assert [r[3] for r in rows] == ["60.250000", "0.875000", "-"]  # duration_s: microseconds


def test_time_cells_do_not_wrap(tmp_path):
    page = archive_report(str(tmp_path), _summary())
    assert "td.time{white-space:nowrap" in page
    assert "<td class=time>2023-11-14 22:13:20</td>" in page


def test_every_finding_kind_has_its_own_colour():
    assert set(KIND_COLORS) == set(KINDS)
    assert len(set(KIND_COLORS.values())) == len(KINDS)
    rows = pd.DataFrame(
        {"kind": list(KINDS), "ts": [1700000000.0 + i for i in range(len(KINDS))],
         "severity": "info", "uid": None, "summary": "", "capture": "a"}
    )  # fmt: skip
    table = trend_tables(pd.DataFrame(), rows, "1min")["anomalies"]
    fig = trend_figure(table, "t", "findings", "bar")
    colours = {}
    for container in fig.axes[0].containers:
        colours[container.get_label()] = container.patches[0].get_facecolor()
    assert len(colours) == len(KINDS) and len(set(colours.values())) == len(KINDS)

"""What the report's pass keeps lean (issue 21) still says what it said.

The table's rows are kept as tuples of `to_record()`'s values; a kept connection drops its
analyzers' states once its part is made, and the pipelines' side drops its kept logs once the
ladders are drawn; a packet log reads the endpoints' states again only when the tracker's
timeline grew, and its state changes without a packet only when its items are built; the SVG
charts map their points in batches. Each is checked against the slower form it replaced (the
page's bytes are compared with main's install by /tmp/cmprep.sh-style runs and, for --jobs,
by tests/test_jobs_report.py).
"""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path

import pytest

from flowlens.analyzers.packetlog import PacketCollector
from flowlens.analyzers.tcpanalysis import TcpAnalyzer
from flowlens.core.connections import RECORD_FIELDS
from flowlens.core.pipeline import Pipeline, analyze
from flowlens.reports.gather import row_record, row_values
from flowlens.reports.ladder import build_ladder, render_text
from flowlens.reports.postmortem import ReportOptions, build_report
from flowlens.reports.svg import Axes, Canvas, number, points_path

SAMPLES = Path(__file__).resolve().parents[1] / "sample_pcaps"


def test_a_row_kept_as_values_is_the_record_again():
    conns = analyze(str(SAMPLES / "incident.pcap")).connections
    assert {c.proto_name for c in conns} >= {"tcp", "udp", "icmp"}
    for c in conns:
        record = c.to_record()
        assert tuple(record) == RECORD_FIELDS
        back = row_record(row_values(c))
        assert back == record and list(back) == list(record)


@pytest.mark.parametrize(
    "sample", ["incident.pcap", "port-reuse.pcap", "zero-window.pcap", "lossy-download.pcap"]
)
def test_the_reports_ladders_are_those_of_the_whole_connections(sample):
    # the report draws its ladders from connections whose analyzer states it dropped; the
    # same ladders drawn from a pipeline that kept everything
    path = str(SAMPLES / sample)
    report = build_report(path, options=ReportOptions())
    assert report.ladders
    tcp = TcpAnalyzer(keep_frames=True)
    collector = PacketCollector(full=False, tcp=tcp)
    whole = {c.uid: (c, collector.log_of(c)) for c in Pipeline(path, analyzers=[tcp, collector])}
    for view in report.ladders:
        conn, log = whole[view.uid]
        assert view.text == render_text(build_ladder(conn, log))
        assert view.record == conn.to_record()


@pytest.mark.parametrize(
    "sample", ["midstream.pcap", "simultaneous-open.pcap", "port-reuse.pcap", "incident.pcap"]
)
def test_each_rows_states_are_the_trackers(sample):
    # the log reads the endpoints' states only when the timeline grew: each row's states are
    # still the tracker's at that packet (rows sharing a timestamp are left out: state_at
    # gives the state after the last of them)
    tcp = TcpAnalyzer(keep_frames=True)
    collector = PacketCollector(tcp=tcp)
    checked = 0
    for c in Pipeline(str(SAMPLES / sample), analyzers=[tcp, collector]):
        log = collector.log_of(c)
        if c.tcp is None or log is None:
            continue
        rows = log.rows()
        at = Counter(r.ts_ns for r in rows)
        for r in rows:
            if at[r.ts_ns] == 1:
                want = tuple(c.state_at(side, r.ts_ns).value for side in (0, 1))
                assert (r.orig_state, r.resp_state) == want, (c.uid, r.frame)
                checked += 1
    assert checked


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("lim", [(0.0, 1.0), (0.013, 742.5), (1e-5, 3.3), (5.0, 5.0)])
def test_batch_pixel_mapping_is_the_one_point_mapping(log, lim):
    ax = Axes(Canvas(1000, 600), (80, 34, 890, 330), lim, lim, xlog=log, ylog=log)
    rng = random.Random(7)
    values = [rng.uniform(-1, 1000) for _ in range(5000)] + [0, 0.0, -0.0, lim[0], lim[1], 1e-9]
    assert ax.xs(values) == [ax.x(v) for v in values]
    assert ax.ys(values) == [ax.y(v) for v in values]


def _number_before(v: float) -> str:  # svg.number as it was written before
    text = f"{v:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def test_number_spells_coordinates_as_before():
    rng = random.Random(3)
    values = [rng.uniform(-5000, 5000) for _ in range(20000)]
    values += [round(rng.uniform(-50, 50), 1) for _ in range(5000)]
    values += [0, 0.0, -0.0, -0.04, 0.04, -0.05, 0.05, 0.95, -0.96, 10, 100, 1000.0, 1e20]
    values += [math.inf, -math.inf, math.nan]
    for v in values:
        assert number(v) == _number_before(v), v
    pts = [(rng.choice(values[:50]), rng.choice(values[:50])) for _ in range(300)]
    want = "".join(
        f"{'M' if i == 0 else 'L'}{_number_before(x)} {_number_before(y)}"
        for i, (x, y) in enumerate(pts)
    )
    assert points_path(pts) == want
    assert points_path([]) == ""

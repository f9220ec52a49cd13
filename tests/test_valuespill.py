"""Columns written to a temporary file past their budget, and their exact order statistics
(reports/valuespill.py), against sorted(), numpy and statistics on random data."""

from __future__ import annotations

import dataclasses
import random
import statistics
from pathlib import Path

import numpy as np
import pytest

from flowlens.analyzers.rtt import percentile_ranks, stats_at, stats_of
from flowlens.reports import valuespill
from flowlens.reports.rtt import Aggregator
from flowlens.reports.valuespill import ValuePool, order_statistics


def _filled(pool: ValuePool, typecode: str, values: list) -> valuespill.Column:
    col = pool.column(typecode)
    for i in range(0, len(values), 7):  # (extend and append both)
        col.extend(values[i : i + 6])
        if i + 6 < len(values):
            col.append(values[i + 6])
    return col


def test_column_keeps_order_across_spills():
    pool = ValuePool(limit=100)
    a = _filled(pool, "q", list(range(1000)))
    b = _filled(pool, "d", [i / 3 for i in range(500)])
    assert pool.spilled and not a.in_memory() and not b.in_memory()
    assert pool.held <= 100
    assert np.concatenate(list(a.chunks())).tolist() == list(range(1000))
    assert np.concatenate(list(b.chunks())).tolist() == [i / 3 for i in range(500)]
    assert len(a) == 1000 and len(b) == 500
    pool.close()


def test_in_memory_below_the_budget():
    pool = ValuePool(limit=1000)
    col = _filled(pool, "q", [5, 3, 9])
    assert not pool.spilled and col.in_memory()
    assert order_statistics(col, [0, 1, 2]) == {0: 3, 1: 5, 2: 9}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("typecode", ["q", "d"])
def test_order_statistics_exact(monkeypatch, seed, typecode):
    # small buckets and collections: several counting passes, and buckets of one value
    monkeypatch.setattr(valuespill, "BUCKETS", 8)
    monkeypatch.setattr(valuespill, "COLLECT_MAX", 50)
    rng = random.Random(seed)
    n = rng.randrange(500, 3000)
    if typecode == "q":
        kinds = [
            lambda: rng.randrange(10_000, 50_000_000),  # RTTs in ns
            lambda: rng.choice((7, 7, 7, 123_456_789)),  # few distinct values, many equal
            lambda: rng.randrange(-(2**63), 2**63),  # the whole int64 range
        ]
    else:
        kinds = [
            lambda: rng.lognormvariate(0, 2),  # ms, spread wide
            lambda: rng.choice((0.0, 0.25, 0.25, 1e300, -3.5)),
            lambda: rng.uniform(-1e6, 1e6),
        ]
    values = [kinds[seed % 3]() for _ in range(n)]
    pool = ValuePool(limit=rng.randrange(50, 400))
    col = _filled(pool, typecode, values)
    assert not col.in_memory()
    ranks = sorted({0, n - 1, n // 2, *(rng.randrange(n) for _ in range(8)), *percentile_ranks(n)})
    got = order_statistics(col, ranks)
    ordered = sorted(values)
    assert got == {r: ordered[r] for r in ranks}
    assert all(type(v) is type(ordered[0]) for v in got.values())
    pool.close()


@pytest.mark.parametrize("seed", range(4))
def test_percentiles_as_numpy_and_statistics(monkeypatch, seed):
    monkeypatch.setattr(valuespill, "COLLECT_MAX", 64)
    rng = random.Random(100 + seed)
    values = [rng.randrange(50_000, 80_000_000) for _ in range(rng.randrange(2000, 5000))]
    pool = ValuePool(limit=256)
    col = _filled(pool, "q", values)
    n = len(values)
    at = order_statistics(col, percentile_ranks(n))
    st = stats_at(at.__getitem__, n, n, sum(values), sum(v * v for v in values), min(values),
                  max(values))  # fmt: skip
    assert st == stats_of(values)
    for p, got in ((50, st.p50_ms), (90, st.p90_ms), (99, st.p99_ms)):
        assert got == pytest.approx(np.percentile(values, p) / 1e6, rel=1e-12)
    assert st.p50_ms == pytest.approx(statistics.median(values) / 1e6, rel=1e-12)
    assert st.stdev_ms == pytest.approx(statistics.stdev(values) / 1e6, rel=1e-9)
    pool.close()


def _agg_parts(rng: random.Random, conns: int) -> list[list[tuple]]:
    """Aggregator parts of `conns` connections toward three servers (Aggregator.parts' shape)."""
    out = []
    for _ in range(conns):
        server = bytes([192, 0, 2, rng.randrange(3)])
        rtts = [rng.randrange(100_000, 30_000_000) for _ in range(rng.randrange(0, 4))]
        hs = rng.choice((None, round(rng.uniform(0.05, 40.0), 6)))
        if not rtts:
            out.append([((server, 1), hs, 0, None, None, None)])
            continue
        totals = (len(rtts), sum(rtts), sum(v * v for v in rtts), min(rtts), max(rtts))
        out.append([((server, 1), hs, rng.randrange(2), totals, rtts, [len(rtts), 0, 0, 0, 0])])
    return out


def test_aggregator_rows_same_whether_spilled(monkeypatch):
    rng = random.Random(7)
    parts = _agg_parts(rng, 3000)
    whole = Aggregator("server", None)
    for p in parts:
        whole.add_parts(p)
    assert not whole.pool.spilled
    monkeypatch.setattr(valuespill, "SPILL_VALUES", 100)
    monkeypatch.setattr(valuespill, "COLLECT_MAX", 40)
    small = Aggregator("server", None)
    for p in parts:
        small.add_parts(p)
    assert small.pool.spilled
    assert small.rows() == whole.rows()


@pytest.mark.parametrize("seed", range(5))
def test_by_time_is_a_stable_sort(monkeypatch, seed):
    # small runs and merge blocks: many runs, slabs of one instant across blocks
    monkeypatch.setattr(valuespill, "RUN", 64)
    monkeypatch.setattr(valuespill, "MERGE_PAIRS", 16)
    rng = random.Random(seed)
    pool = ValuePool(limit=rng.randrange(30, 200))
    sources, pairs = [], []
    for _ in range(rng.randrange(1, 4)):
        t, v = pool.column("d"), pool.column("d")
        for _ in range(rng.randrange(0, 40)):  # (the pool spills between the two columns)
            k = rng.randrange(1, 30)
            ts = [rng.choice((1.5, 2.0, float(rng.randrange(100)))) for _ in range(k)]
            vs = [rng.random() for _ in range(k)]
            t.extend(ts)
            v.extend(vs)
            pairs += zip(ts, vs)
        sources.append((t, v))
    out_t, out_v = valuespill.by_time(sources, pool)
    order = sorted(range(len(pairs)), key=lambda i: pairs[i][0])
    assert list(out_t) == [pairs[i][0] for i in order]
    assert list(out_v) == [pairs[i][1] for i in order]
    pool.close()


def test_spilled_rtt_chart_draws_the_same_svg(monkeypatch):
    """The report's RTT chart from lines written to the temporary file (read back a block at a
    time, ordered by an external merge sort) is the same SVG as from the lines in memory."""
    from flowlens.reports.rtt import Series
    from flowlens.reports.svg_charts import rtt_svg

    monkeypatch.setattr(valuespill, "RUN", 500)
    monkeypatch.setattr(valuespill, "MERGE_PAIRS", 300)
    monkeypatch.setattr(valuespill, "READ_BLOCK", 128)
    rng = random.Random(3)
    for wide in (False, True):
        lines = {}
        for k in range(11):  # more than max_lines: an "other" line of several
            n = rng.randrange(1, 900 if k < 3 else 40)
            ts = [1_700_000_000 + rng.uniform(0, 60) for _ in range(n)]
            hi = 600.0 if wide else 3.0
            lines[f"192.0.2.{k} cap>resp>cap"] = (ts, [rng.uniform(0.05, hi) for _ in range(n)])
        memory = [Series(label, ts, rtt) for label, (ts, rtt) in lines.items()]
        pool = ValuePool(limit=200)
        spilled = []
        for label, (ts, rtt) in lines.items():
            s = Series(label, pool.column("d"), pool.column("d"))
            for i in range(0, len(ts), 50):
                s.ts_s.extend(ts[i : i + 50])
                s.rtt_ms.extend(rtt[i : i + 50])
            spilled.append(s)
        assert pool.spilled
        assert rtt_svg(spilled, max_lines=8) == rtt_svg(memory, max_lines=8)
        pool.close()


def _many_connections(tmp_path) -> str:
    """Connections to three servers, each with a handshake and a few RTT samples, written as
    a capture (their samples out of time order across connections: they overlap)."""
    from pcapgen import SERVER4, Conversation, pcap_bytes

    frames = []
    rng = random.Random(11)
    for i in range(90):
        server = ("192.0.2.80", "192.0.2.81", SERVER4)[i % 3]
        conv = Conversation(server=server, cport=30000 + i, t=1_700_000_000 + i * 0.05)
        conv.handshake()
        for _ in range(rng.randrange(1, 4)):
            conv.exchange()
        conv.close("client")
        frames += conv.frames
    frames.sort(key=lambda f: f[0])
    path = tmp_path / "many.pcap"
    path.write_bytes(pcap_bytes(frames))
    return str(path)


def test_report_written_out_is_the_same_page(monkeypatch, tmp_path):
    """A report whose RTT groups and chart lines went to the temporary file has the same HTML
    and Markdown as one that kept them in memory."""
    from flowlens.reports.html import write_html
    from flowlens.reports.markdown import write_markdown
    from flowlens.reports.postmortem import build_report

    path = _many_connections(tmp_path)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")

    def pages(tag: str) -> tuple[str, dict, list]:
        report = dataclasses.replace(build_report(path), generated="-")
        html = tmp_path / f"{tag}.html"
        with open(html, "w", encoding="utf-8") as f:
            write_html(report, f)
        md = tmp_path / tag / "r.md"
        md.parent.mkdir()
        files = write_markdown(report, str(md))
        pictures = {Path(p).name: Path(p).read_bytes() for p in files}
        return html.read_text(), pictures, report.rtt_rows

    spilled_pools = []
    kept = pages("memory")
    monkeypatch.setattr(valuespill, "SPILL_VALUES", 16)
    monkeypatch.setattr(valuespill, "RUN", 40)
    monkeypatch.setattr(valuespill, "MERGE_PAIRS", 30)
    real_spill = ValuePool.spill

    def spill(self):
        spilled_pools.append(self)
        real_spill(self)

    monkeypatch.setattr(ValuePool, "spill", spill)
    written = pages("spilled")
    assert len({id(p) for p in spilled_pools}) >= 2  # the groups' pool and the chart's
    rows = kept[2]
    assert len(rows) == 3 and sum(r["count"] for r in rows) > 3 * 16  # (past the budget)
    assert any(name.endswith(".svg") and b"RTT" in data for name, data in kept[1].items())
    assert written == kept

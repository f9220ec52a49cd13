"""SpanTable past SPILL_SPANS: the spans go to a temporary file and every question, the
`states` output and the report's page are what they are with every span in memory."""

from __future__ import annotations

import gc
import json
import pickle
import re

import numpy as np
import pcapgen
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from test_jobs_report import made

from flowlens.cli import cli
from flowlens.core.pipeline import analyze
from flowlens.reports import spantable, spill
from flowlens.reports.spantable import OPEN_END, SpanTable
from flowlens.reports.states import SocketStates, states_chart, tick_times


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A few hundred connections: a SYN flood's 300 sources, a TIME_WAIT pile-up, a
    CLOSE_WAIT leak and the incident (refusals, resets, retransmissions)."""
    frames = (
        pcapgen.syn_flood(count=300, duration=3.0)
        + pcapgen.time_wait_pileup(count=150)
        + pcapgen.close_wait_leak()
        + pcapgen.incident()
    )
    frames.sort(key=lambda f: f[0])
    path = tmp_path_factory.mktemp("spill") / "mixed.pcap"
    path.write_bytes(pcapgen.pcap_bytes(frames))
    return str(path)


def table(conns, monkeypatch, spill_at: int | None, cls=SocketStates):
    if spill_at is not None:
        monkeypatch.setattr(spantable, "SPILL_SPANS", spill_at)
    t = cls()
    for c in conns:
        t.add(c)
    monkeypatch.undo()
    return t


def answers(t: SpanTable, first: int, last: int) -> dict:
    times = tick_times(first, last + 70_000_000_000, 0.5)
    hosts = t.host_list()
    return {
        "len": len(t),
        "hosts": hosts,
        "sockets": t.sockets,
        "busy": t.busy_hosts(),
        "horizon": t.time_wait_horizon(),
        "horizon_some": t.time_wait_horizon(hosts[::3]),
        "points": t.change_points(first, last + 70_000_000_000),
        "points_capped": t.change_points(first, last, 40),
        "points_under_cap": t.change_points(first, last, 100_000),
        "counts": [t.counts_at(x) for x in times[::9]],
        "series": t.series(times),
        "series_some": t.series(times[::2], hosts[:4]),
        "active": list(t.iter_active(times)),
        "peaks": t.peaks(times),
        "peaks_early": t.peaks(times[:6]),
        "brief": t.brief_close_waits(hosts, times),
        "chart": states_chart(t, first, last),
        "chart_few_points": states_chart(t, first, last, max_points=50),
        "subset_chart": states_chart(t.subset(hosts[:3] + hosts[-2:]), first, last),
    }


@pytest.mark.parametrize("spill_at", [40, 1000])
def test_every_question_is_answered_the_same_from_the_file(mixed, monkeypatch, spill_at):
    a = analyze(mixed)
    first, last = a.stats.first_ts_ns, a.stats.last_ts_ns
    kept = table(a.connections, monkeypatch, None)
    spilled = table(a.connections, monkeypatch, spill_at)
    assert kept._file is None and spilled._file is not None
    assert spilled._spilled >= len(spilled) - spill_at  # (at most spill_at left in memory)
    assert len(kept) > 1000
    assert answers(spilled, first, last) == answers(kept, first, last)


def test_a_plain_table_as_the_report_fills_it(mixed, monkeypatch):
    a = analyze(mixed)
    first, last = a.stats.first_ts_ns, a.stats.last_ts_ns
    kept = table(a.connections, monkeypatch, None, SpanTable)
    spilled = table(a.connections, monkeypatch, 50, SpanTable)
    assert spilled._segments
    assert answers(spilled, first, last) == answers(kept, first, last)


def test_a_spilled_table_pickles_with_every_span(mixed, monkeypatch):
    a = analyze(mixed)
    first, last = a.stats.first_ts_ns, a.stats.last_ts_ns
    spilled = table(a.connections, monkeypatch, 100)
    copy = pickle.loads(pickle.dumps(spilled))
    assert copy._file is None and len(copy) == len(spilled)
    assert answers(copy, first, last) == answers(spilled, first, last)
    copy.add_span("192.0.2.99", 2, first, OPEN_END)  # it goes on taking spans
    assert copy.counts_at(last)["192.0.2.99"] == {"ESTABLISHED": 1}


def test_the_file_is_given_back(monkeypatch):
    monkeypatch.setattr(spantable, "SPILL_SPANS", 4)
    t = SpanTable()
    for i in range(10):
        t.add_span("192.0.2.1", 2, i, i + 5)
    file = t._file
    assert file is not None and not file.closed and file.size == 8 * 33
    t.close()
    assert file.closed and len(t) == 0 and t._file is None
    t = SpanTable()
    for i in range(10):
        t.add_span("192.0.2.1", 2, i, i + 5)
    assert t._file is not None
    raw = t._file.file
    del t
    gc.collect()
    assert raw.closed  # dropping the table closes it


def _cli(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--format", "json"),
        ("--format", "csv", "--interval", "0.1s"),
        ("--at", "end"),
        ("--at", "+1.5s", "--format", "json"),
        ("--at", "+0.3s", "--host", pcapgen.CLIENT4),
        ("--host", pcapgen.SERVER4, "--format", "json"),
        ("--state", "time-wait", "--interval", "1s"),
        ("--port", "80", "--format", "json"),
        ("--listening",),
    ],
    ids=lambda a: " ".join(a) or "default",
)
def test_states_prints_the_same_from_the_file(mixed, monkeypatch, args):
    kept = _cli("states", mixed, *args)
    monkeypatch.setattr(spantable, "SPILL_SPANS", 16)
    assert _cli("states", mixed, *args) == kept
    assert kept.strip()
    if "json" in args:
        assert all(json.loads(line) for line in kept.splitlines())


def test_states_plot_draws_the_same_from_the_file(mixed, monkeypatch, tmp_path):
    _cli("states", mixed, "--plot", tmp_path / "kept.svg")
    monkeypatch.setattr(spantable, "SPILL_SPANS", 16)
    _cli("states", mixed, "--plot", tmp_path / "spilled.svg")
    kept, spilled = (
        re.sub(rb"<dc:date>.*</dc:date>", b"", (tmp_path / f"{name}.svg").read_bytes())
        for name in ("kept", "spilled")
    )  # (matplotlib writes the time it drew the picture)
    assert b"<path" in kept and spilled == kept


def test_the_report_is_the_same_page_from_the_file(mixed, monkeypatch, tmp_path):
    kept = made(tmp_path, "kept", mixed)
    monkeypatch.setattr(spantable, "SPILL_SPANS", 16)
    assert made(tmp_path, "spilled", mixed) == kept


def _runs(values: list[int], cuts: list[int]) -> list[spill.SortedRun]:
    """`values` split at `cuts` into pieces, each sorted and read as a run."""
    bounds = [0, *sorted({c % (len(values) + 1) for c in cuts}), len(values)]
    runs = []
    for lo, hi in zip(bounds, bounds[1:]):
        piece = np.sort(np.asarray(values[lo:hi], dtype=np.int64))
        runs.append(spill.SortedRun(lambda a, b, p=piece: p[a:b], len(piece)))
    return runs


@settings(max_examples=300, deadline=None)
@given(
    spans=st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12)), min_size=0, max_size=120),
    cuts=st.lists(st.integers(0, 200), max_size=6),
    until=st.one_of(st.none(), st.integers(-1, 60)),
    block=st.integers(1, 9),
)
def test_running_peak_is_the_sweep_over_every_span(spans, cuts, until, block):
    """Many spans at one instant, in blocks of a few elements and in runs of any size: the
    merged peak is the one-array sweep's (`SpanTable._peak` with everything in memory)."""
    starts = [s for s, _d in spans]
    ends = [s + d for s, d in spans]
    whole = SpanTable()
    for s, e in zip(starts, ends):
        whole.add_span("192.0.2.1", 2, s, e)
    want = whole._peak(0, until) if spans else 0
    saved = spill.MERGE_BUDGET, spill._MIN_RUN_BLOCK
    spill.MERGE_BUDGET, spill._MIN_RUN_BLOCK = block, block
    try:
        got = spill.running_peak(_runs(starts, cuts), _runs(ends, cuts[::-1]), until)
    finally:
        spill.MERGE_BUDGET, spill._MIN_RUN_BLOCK = saved
    assert got == want

"""One owner per fact: the commands that show the same fact agree on every sample and corpus capture.

- the end states counted by `flowlens states --at end` are the `orig_state`/`resp_state` of
  `flowlens flows` (both read `TcpTracker.state_at`);
- the timeline's and the ladder's state changes are the tracker's: every change no packet caused
  is `TcpTracker.state_at` at its time, and both end in the states `flows` prints;
- `flows.retransmissions` and `flows.out_of_order` are the TCP analyzer's per-connection counts
  (`TcpaState.retransmitted()`, `TcpaState.reordered()`), the ones `flowlens anomalies` reads.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from flowlens.analyzers.anomalies.detector import AnomalyDetector
from flowlens.analyzers.packetlog import (
    PacketCollector,
    StateChange,
    select_logs,
)
from flowlens.analyzers.tcpanalysis import TcpAnalyzer
from flowlens.cli import cli
from flowlens.core.connections import Config
from flowlens.core.filters import Selection
from flowlens.core.pipeline import Pipeline
from flowlens.reports.ladder import build_ladder
from flowlens.reports.states import STATES
from flowlens.reports.timeline import timeline_records

ROOT = Path(__file__).parents[1]
SAMPLES = ROOT / "sample_pcaps"
CORPUS = ROOT / ".." / "shared" / "corpus"
SUFFIXES = (".pcap", ".pcapng", ".pcap.gz")


def _captures() -> list:
    out = [
        pytest.param(p, id=p.name) for p in sorted(SAMPLES.iterdir()) if p.name.endswith(SUFFIXES)
    ]
    for folder in (CORPUS / "other" / "captures", CORPUS / "zeek" / "traces"):
        if folder.is_dir():
            out += [
                pytest.param(p, id=f"corpus/{p.name}")
                for p in sorted(folder.iterdir())
                if p.name.endswith(SUFFIXES)
            ]
    return out


CAPTURES = _captures()


def _json(*args: str) -> list[dict]:
    result = CliRunner().invoke(cli, [*args, "--format", "json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_the_corpus_is_included_when_present():
    if (CORPUS / "zeek" / "traces").is_dir():
        assert sum("corpus/" in p.id for p in CAPTURES) > 50
    assert sum("corpus/" not in p.id for p in CAPTURES) >= 30


@pytest.mark.parametrize("path", CAPTURES)
def test_states_at_end_counts_the_end_states_of_flows(path):
    flows = _json("flows", str(path))
    want: dict[str, Counter] = {}
    for r in flows:
        if r["proto"] != "tcp":
            continue
        for host, state in ((r["id.orig_h"], r["orig_state"]), (r["id.resp_h"], r["resp_state"])):
            if state in STATES:
                want.setdefault(host, Counter())[state] += 1
    if not any(r["proto"] == "tcp" for r in flows):
        return
    got = {}
    for rec in _json("states", str(path), "--at", "end"):
        counts = Counter({s: rec[s] for s in STATES if rec[s]})
        if counts:
            got[rec["host"]] = counts
    assert got == want


@pytest.mark.parametrize("path", CAPTURES)
def test_timeline_and_ladder_follow_the_tracker(path):
    collector = PacketCollector(None, full=True, tcp=TcpAnalyzer(keep_frames=True))
    pipe = Pipeline(str(path), Config(), analyzers=[collector])
    pairs = list(select_logs(pipe, Selection(), collector, str(path)))  # [] without connections
    for conn, log in pairs:
        if conn.tcp is None:
            continue
        records = list(timeline_records(conn, log))
        ends = (conn.orig_state, conn.resp_state)
        assert (records[-1]["orig_state"], records[-1]["resp_state"]) == ends, conn.uid
        for item in log.items:
            if isinstance(item, StateChange):
                assert conn.tcp.state_at(item.side, item.ts_ns).value == item.state, conn.uid
        ladder = build_ladder(conn, log)
        assert ladder.steps[-1].after == ends, conn.uid
        _check_holds(conn)


def _check_holds(conn):
    """The tracker's C answers for the port arithmetic say what its spans say."""
    t = conn.tcp
    end = conn.end_ts_ns
    spans = t.spans()
    for side in (0, 1):
        tw = [(a, b) for s, st, a, b, _f, _t in spans if s == side and st.value == "TIME_WAIT"]
        assert t.time_wait_spell(side) == (tw[-1] if tw else None)
        mine = [sp for sp in spans if sp[0] == side]
        if tw:
            want = tw[-1][1]
        elif not mine:
            want = end
        elif mine[-1][1].value == "CLOSED":
            want = mine[-1][2]
        elif mine[-1][5] and mine[-1][3] < end:
            want = mine[-1][3]
        else:
            want = end
        assert t.held_until_ns(side, end) == want, conn.uid


@pytest.mark.parametrize("path", CAPTURES)
def test_flows_retransmissions_are_the_analyzers(path):
    detector = AnomalyDetector()
    pipe = Pipeline(str(path), Config(), analyzers=[detector])
    analysis = {}
    for conn in pipe:
        st = detector.tcp.state_of(conn)  # the TCP analysis the anomalies read
        if conn.tcp is not None:
            analysis[conn.uid] = (st.retransmitted(), st.reordered()) if st is not None else (0, 0)
    got = {
        r["uid"]: (r["retransmissions"], r["out_of_order"])
        for r in _json("flows", str(path))
        if r["proto"] == "tcp"
    }
    assert got == analysis

"""`--scheduler ADDRESS`: the shards of one capture on a Dask cluster's workers (Actors,
flowlens.core.shard.DaskShardedRun), merged into the stream one process gives, byte for byte."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pcapgen
import pytest
from click.testing import CliRunner
from corpus import captures, needs_corpus
from test_jobs import COMMANDS as VARIANTS
from test_jobs import SAMPLES
from test_jobs_report import _MADE, made

from flowlens.cli import cli
from flowlens.commands._stream import ConnectionStream
from flowlens.core import cluster as cluster_module
from flowlens.core.cluster import connect
from flowlens.core.connections import Config
from flowlens.core.pipeline import Pipeline
from flowlens.core.shard import DaskShardedRun, placement
from flowlens.errors import FlowlensError
from flowlens.reports.html import render_html
from flowlens.reports.postmortem import build_report

distributed = pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
#: one output format per command (tests/test_jobs.py covers the others with --jobs: the
#: merge is the same code)
COMMANDS = [
    ("flows", "--format", "json"),
    ("anomalies", "--format", "json"),
    ("rtt", "--format", "json"),
    ("states", "--format", "json"),
]


@pytest.fixture(scope="module")
def scheduler():
    """A 2-worker cluster of processes, as a real one is (each worker its own interpreter,
    everything it runs sent to it pickled)."""
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture
def client(scheduler):
    c = connect(scheduler)
    yield c
    c.close()


def invoke(*args, input=None):
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def same_result(a, b) -> None:
    assert (a.exit_code, a.stdout_bytes, a.stderr_bytes) == (
        b.exit_code,
        b.stdout_bytes,
        b.stderr_bytes,
    )


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    for part in parts:
        assert part in result.stderr, (part, result.stderr)


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_sample_is_the_same_on_a_cluster(scheduler, sample, args):
    one = invoke(args[0], sample, *args[1:])
    assert one.exit_code == 0 and "Error" not in one.stderr, one.stderr
    same_result(one, invoke(args[0], sample, *args[1:], "--scheduler", scheduler))


@needs_corpus
@pytest.mark.parametrize("path", captures(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_corpus_capture_is_the_same_on_a_cluster(scheduler, path):
    """Every command on every corpus capture, --jobs 1 against the cluster's shards (a
    capture flowlens refuses is refused the same way, before any worker is asked)."""
    for args in COMMANDS:
        one = invoke(args[0], path, *args[1:])
        same_result(one, invoke(args[0], path, *args[1:], "--scheduler", scheduler))


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_sample_report_is_the_same_page_on_a_cluster(scheduler, sample, tmp_path):
    """The report's parts, and then its questions (frame notes, evidence frames, ladders)
    answered by the shards' actors."""
    notes = ("--note", "+1s=one second in", "--note", "3=frame three")
    one = made(tmp_path, "one", sample, *notes)
    assert made(tmp_path, "two", sample, *notes, "--scheduler", scheduler) == one


@needs_corpus
@pytest.mark.parametrize("path", captures(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_corpus_capture_report_is_the_same_on_a_cluster(scheduler, path):
    def on_cluster(make_analyzers, work, **how):
        return ConnectionStream(str(path), Config(), make_analyzers, work, 1, scheduler, **how)

    try:
        want = render_html(build_report(str(path)))
    except Exception as exc:  # noqa: BLE001 - refused the same way before the cluster is asked
        with pytest.raises(type(exc)):
            build_report(str(path), run=on_cluster)
        return
    got = render_html(build_report(str(path), run=on_cluster))
    assert _MADE.sub(b"T", got.encode()) == _MADE.sub(b"T", want.encode())


@pytest.mark.parametrize(
    "args",
    [
        *VARIANTS,
        ("flows", "--format", "csv", "--services", "--port", "8080", "--wide"),
        ("anomalies", "--format", "table", "--services", "--time-wait-min", "10"),
        ("anomalies", "--format", "json", "--min-severity", "warning", "--host", "198.51.100.20"),
    ],
    ids=" ".join,
)
def test_every_commands_options_pickle_to_the_workers(scheduler, args):
    """What each command sends to the workers (its analyzers' factory and its per-connection
    work, with the selection, thresholds, RTT grouping, socket index they close over) pickles
    and works there as here."""
    path = ROOT / "sample_pcaps" / "incident.pcap"
    one = invoke(args[0], path, *args[1:])
    assert one.exit_code == 0 and one.stdout_bytes, one.stderr
    same_result(one, invoke(args[0], path, *args[1:], "--scheduler", scheduler))


def test_plots_are_drawn_from_the_same_series(scheduler, tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    monkeypatch.setitem(matplotlib.rcParams, "svg.hashsalt", "flowlens")  # stable SVG ids
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # and a fixed date in the SVG's metadata
    path = ROOT / "sample_pcaps" / "incident.pcap"
    for cmd in ("rtt", "states"):
        assert invoke(cmd, path, "--plot", tmp_path / f"{cmd}-1.svg").exit_code == 0
        there = invoke(cmd, path, "--plot", tmp_path / f"{cmd}-2.svg", "--scheduler", scheduler)
        assert there.exit_code == 0, there.stderr
        one, two = ((tmp_path / f"{cmd}-{n}.svg").read_bytes() for n in (1, 2))
        assert b"<path" in one and one == two, cmd


def test_more_shards_than_workers_and_a_relative_path(scheduler, tmp_path, monkeypatch):
    """--jobs 3 on 2 workers (two actors share one worker); a capture named relative to this
    directory is opened by its absolute path there, and the damage lines still name it as
    the user did."""
    frames = pcapgen.time_wait_pileup(count=40) + pcapgen.refused()
    frames.sort(key=lambda f: f[0])
    pcapgen.write_pcap(tmp_path / "whole.pcap", frames)
    (tmp_path / "cut.pcap").write_bytes((tmp_path / "whole.pcap").read_bytes()[:-30])
    monkeypatch.chdir(tmp_path)
    for args in COMMANDS:
        one = invoke(args[0], "cut.pcap", *args[1:])
        assert "Warning: cut.pcap: " in one.stderr, one.stderr
        for jobs in ("1", "3"):
            same_result(one, invoke(args[0], "cut.pcap", *args[1:], "-j", jobs,
                                    "--scheduler", scheduler))  # fmt: skip


def test_an_unreachable_scheduler_is_one_line(monkeypatch):
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 0.5)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    path = ROOT / "sample_pcaps" / "clean-close.pcap"
    for cmd in ("flows", "anomalies", "rtt", "states"):
        result = invoke(cmd, path, "--scheduler", address)
        one_line_error(result, f"Error: {address}: cannot reach the Dask scheduler")
    result = invoke("flows", path, "--scheduler", "no-port-here")
    one_line_error(result, "Error: no-port-here: cannot reach the Dask scheduler")


def test_batch_says_the_same_about_an_unreachable_scheduler(tmp_path, monkeypatch):
    """batch's Dask pool connects through the same owner (core/cluster.py)."""
    monkeypatch.setattr(cluster_module, "CONNECT_TIMEOUT_S", 0.5)
    pcapgen.write_pcap(tmp_path / "a.pcap", pcapgen.clean_close())
    address = "tcp://127.0.0.1:1"
    result = invoke("batch", tmp_path / "a.pcap", "-o", tmp_path / "out", "--scheduler", address)
    one_line_error(result, f"Error: {address}: cannot reach the Dask scheduler")


def test_a_capture_the_workers_cannot_open_is_one_line(scheduler, tmp_path):
    """A path missing here may be on the workers' storage: they are asked, and say what
    they found, naming the file and the worker."""
    missing = tmp_path / "only-on-the-cluster.pcap"
    for cmd in ("flows", "states"):
        result = invoke(cmd, missing, "--scheduler", scheduler)
        one_line_error(result, f"Error: {missing}: ", "(on the Dask worker tcp://")


def test_a_damaged_capture_fails_here_before_the_cluster_is_asked(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    # (no cluster at this address: the capture's own error comes first)
    result = invoke("flows", bad, "--scheduler", "tcp://127.0.0.1:1")
    one_line_error(result, f"Error: {bad}: ")
    assert "scheduler" not in result.stderr


def test_stdin_with_a_scheduler_is_a_usage_error():
    data = (ROOT / "sample_pcaps" / "clean-close.pcap").read_bytes()
    for cmd in ("flows", "anomalies", "rtt", "states"):
        result = invoke(cmd, "-", "--scheduler", "tcp://127.0.0.1:1", input=data)
        one_line_error(result, "Error: -: --scheduler needs a capture file", "not stdin")


def test_a_scheduler_without_workers_is_one_line():
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as c:
        path = ROOT / "sample_pcaps" / "clean-close.pcap"
        result = invoke("flows", path, "--scheduler", c.scheduler_address)
    one_line_error(result, f"{c.scheduler_address}: the Dask scheduler has no workers")


def test_placement_takes_each_workers_threads_in_turn():
    threads = {"tcp://a:1": 2, "tcp://b:1": 1, "tcp://c:1": 3}
    assert placement(threads, 6) == [
        "tcp://a:1", "tcp://b:1", "tcp://c:1", "tcp://a:1", "tcp://c:1", "tcp://c:1",
    ]  # fmt: skip
    assert placement({"tcp://a:1": 1}, 3) == ["tcp://a:1"] * 3
    with pytest.raises(FlowlensError, match="no workers"):
        placement({}, 2)


def _setup(path: str):
    return lambda shard: (Pipeline(path, shard=shard), lambda c: c.to_record())


def test_shard_zeros_progress_reaches_this_process(client, tmp_path):
    """The progress bar of a terminal: shard 0's pipeline reports to its actor, each reply
    carries the latest, and this process draws it (frames read, bytes, the file's size)."""
    path = tmp_path / "pile.pcap"
    pcapgen.write_pcap(path, pcapgen.time_wait_pileup(count=400))
    seen: list[tuple] = []
    run = DaskShardedRun(
        _setup(str(path)), Pipeline.shard_facts, 2, client, lambda *p: seen.append(p)
    )
    records = list(run)
    want = [c.to_record() for c in Pipeline(str(path))]
    assert records == want and len(want) == 400
    frames = run.finished[0]["frames"]
    assert seen and seen[-1] == (frames, os.path.getsize(path), os.path.getsize(path))
    assert len(set(run.workers)) == 2  # one shard on each worker


def test_a_failing_shard_stops_the_run_with_its_traceback(client, tmp_path):
    path = tmp_path / "x.pcap"
    pcapgen.write_pcap(path, pcapgen.clean_close())

    def work(conn):
        raise ValueError("boom")

    setup = lambda shard: (Pipeline(str(path), shard=shard), work)  # noqa: E731
    with pytest.raises(RuntimeError, match="(?s)on the Dask worker.*ValueError: boom"):
        list(DaskShardedRun(setup, lambda p: None, 2, client))


class _Calls:
    """A stand-in for distributed's Client that runs each actor here and counts the calls
    made to it and not yet answered (what the merging process has asked for and may hold)."""

    def __init__(self):
        self.made: dict[int, int] = {}
        self.open: dict[int, int] = {}
        self.most_open = 0

    def nthreads(self):
        return {"tcp://a:1": 1, "tcp://b:1": 1}

    def as_current(self):
        import contextlib

        return contextlib.nullcontext()

    def cancel(self, futures):
        pass

    def submit(self, cls, *args, actor=False, **_placement):
        assert actor
        calls, k, obj = self, args[2], cls(*args)

        class Reply:
            def __init__(self, value):
                self.value = value

            def result(self):
                calls.open[k] -= 1
                return self.value

        class Proxy:
            def next_batch(self):
                calls.made[k] = calls.made.get(k, 0) + 1
                calls.open[k] = calls.open.get(k, 0) + 1
                calls.most_open = max(calls.most_open, calls.open[k])
                return Reply(obj.next_batch())

        class Made:  # (the actor's creation)
            def result(self):
                return Proxy()

        return Made()


def test_the_merging_process_asks_each_shard_for_one_batch_ahead(tmp_path):
    """The bound on this process's memory: one call per shard outstanding, made when the
    previous batch arrives; so after the first record, each shard has been asked twice (its
    first batch and the next), whatever is left to read."""
    path = tmp_path / "pile.pcap"
    pcapgen.write_pcap(path, pcapgen.time_wait_pileup(count=400))
    calls = _Calls()
    run = DaskShardedRun(_setup(str(path)), Pipeline.shard_facts, 2, calls, batch=8)
    items = iter(run)
    first = next(items)
    assert calls.made == {0: 2, 1: 2}
    rest = list(items)
    assert [first, *rest] == [c.to_record() for c in Pipeline(str(path))]
    assert calls.most_open == 1
    assert sum(calls.made.values()) >= 400 // 8  # (in many batches, each asked for in turn)

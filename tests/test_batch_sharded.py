"""Large batch tasks as hash shards (`flowlens batch --shard-above SIZE`, issue 21 item 2):
a capture or a rotation set above the threshold runs as one shard per worker
(flowlens.batch.sharded), and the batch writes exactly the Parquet datasets and summary rows
(but timings) a one-task run writes, on the local pool and on a Dask cluster."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pcapgen
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from corpus import OTHER_CAPTURES, ZEEK_TRACES, needs_corpus
from test_batch_incremental import (
    OPTS,
    TIMINGS,
    _assert_same,
    _datasets,
    _frames,
    _InlinePool,
    _write_set,
)

import flowlens.batch.run as batch_run
from flowlens.batch.run import DEFAULT_SHARD_ABOVE, BatchOptions, _task_for, run_batch
from flowlens.batch.sharded import ShardTask, merge_shards, run_shard
from flowlens.batch.task import run_task
from flowlens.cli import cli

PLAIN = BatchOptions(report=False)
NEVER = dataclasses.replace(PLAIN, shard_above=None)
ALWAYS = dataclasses.replace(PLAIN, shard_above=0)
SET_NEVER = dataclasses.replace(OPTS, shard_above=None)
SET_ALWAYS = dataclasses.replace(OPTS, shard_above=0)


def _busy_frames() -> list:
    """`_frames()` (connections that span files, cross-connection findings) plus what shards
    count apart: an undecodable frame, a tunnel (every shard keeps its outer flow), UDP and
    ICMP, many short conversations."""
    t0 = pcapgen.T0
    frames = _frames()
    frames += pcapgen.encapsulate(pcapgen.clean_close(t=t0 + 0.6, cport=41000), "vxlan")
    frames += pcapgen.udp_exchange(t=t0 + 0.7) + pcapgen.icmp_echo(t=t0 + 0.8)
    frames += pcapgen.udp_port_unreachable(t=t0 + 0.9)
    frames.append((t0 + 0.65, b"\x00\x01\x02"))  # too short for Ethernet: shard 0 counts it
    for i in range(6):  # a TCP header length of 8 bytes: counted by the segment's owner
        conv = pcapgen.Conversation(cport=50000 + i, t=t0 + 0.66 + i * 0.01)
        conv.handshake()
        ts, syn = conv.frames[0]
        bad = bytearray(syn)
        bad[14 + 20 + 12] = 0x20
        frames.append((ts, bytes(bad)))
    frames.sort(key=lambda f: f[0])
    return frames


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("one") / "busy.pcap"
    path.write_bytes(pcapgen.pcap_bytes(_busy_frames()))
    return path


@pytest.fixture(scope="module")
def rotation(tmp_path_factory) -> list[Path]:
    return _write_set(tmp_path_factory.mktemp("set") / "set", _busy_frames(), 5)


def _summary(outdir: Path):
    return pq.read_table(outdir / "summary.parquet").drop_columns(TIMINGS).to_pylist()


def _spy(monkeypatch) -> list:
    """Record every unit the pool is given (whole tasks and shards), on an in-process pool of
    as many workers as the run asks for."""
    seen: list = []
    monkeypatch.setattr(
        batch_run, "_make_pool", lambda jobs, scheduler, tasks: _Inline(min(jobs, tasks))
    )
    real = batch_run._run_unit

    def unit(item):
        seen.append(item)
        return real(item)

    monkeypatch.setattr(batch_run, "_run_unit", unit)
    return seen


def test_a_large_capture_runs_as_shards_and_writes_the_one_task_rows(capture, tmp_path):
    one = run_batch([str(capture)], str(tmp_path / "one"), NEVER, jobs=2)
    sharded = run_batch([str(capture)], str(tmp_path / "sharded"), ALWAYS, jobs=2)
    assert not one.failed and not sharded.failed
    assert (one.sharded, sharded.sharded) == (0, 1)
    _assert_same(tmp_path / "one", tmp_path / "sharded")
    rows = _summary(tmp_path / "sharded")
    # the per-file facts shards split: undecodable frames (the owner's or shard 0's) and the
    # damage line made from their sum
    assert rows[0]["undecodable"] == 7 and rows[0]["connections"] > 50
    assert any("undecodable" in w for w in rows[0]["warnings"])
    assert rows == _summary(tmp_path / "one")
    assert (sharded.packets, sharded.connections, sharded.anomalies) == (
        one.packets,
        one.connections,
        one.anomalies,
    )
    kinds = set(_datasets(tmp_path / "sharded")["anomalies"]["kind"])
    assert {"port_scan", "syn_flood"} <= kinds  # cross-connection findings, from every shard


def test_a_large_rotation_set_runs_as_shards_and_writes_the_one_task_rows(rotation, tmp_path):
    paths = [str(p) for p in rotation]
    run_batch(paths, str(tmp_path / "one"), SET_NEVER, jobs=2)
    assert run_batch(paths, str(tmp_path / "sharded"), SET_ALWAYS, jobs=2).sharded == 1
    _assert_same(tmp_path / "one", tmp_path / "sharded")
    rows = _summary(tmp_path / "sharded")
    assert len(rows) == 5 and {r["rotation_set"] for r in rows} != {None}
    assert sum(r["undecodable"] for r in rows) == 7
    # the spanning download is one record, as in the one-task run
    conns = _datasets(tmp_path / "sharded")["connections"]
    assert (conns["history"].str.startswith("ShAD") & conns["history"].str.endswith("Ff")).any()


def test_the_threshold_decides_which_tasks_are_sharded(capture, tmp_path, monkeypatch):
    small = tmp_path / "small.pcap"
    small.write_bytes(pcapgen.pcap_bytes(pcapgen.clean_close()))
    seen = _spy(monkeypatch)
    above = dataclasses.replace(PLAIN, shard_above=small.stat().st_size)
    result = run_batch([str(capture), str(small)], str(tmp_path / "out"), above, jobs=2)
    assert not result.failed and result.analysed == 2
    shards = [u for u in seen if isinstance(u, ShardTask)]
    whole = [u for u in seen if not isinstance(u, ShardTask)]
    assert sorted(s.k for s in shards) == [0, 1] and {s.n for s in shards} == {2}
    assert [m.path for m in shards[0].task.members] == [str(capture)]
    assert [m.path for t in whole for m in t.members] == [str(small)]
    # the default threshold: far above a test capture
    assert PLAIN.shard_above == DEFAULT_SHARD_ABOVE == 256 * 2**20
    assert run_batch([str(capture)], str(tmp_path / "default"), PLAIN, jobs=2).sharded == 0


def test_many_large_tasks_keep_every_worker_on_whole_ones(capture, tmp_path, monkeypatch):
    """Three large captures of about the same size for 2 workers: none holds more than a
    fair share of the bytes, so none is sharded (whole tasks keep both workers busy)."""
    copies = []
    for n in range(3):
        copy = tmp_path / f"copy{n}.pcap"
        copy.write_bytes(capture.read_bytes())
        copies.append(str(copy))
    seen = _spy(monkeypatch)
    above = dataclasses.replace(PLAIN, shard_above=1)  # (every one is large)
    result = run_batch(copies, str(tmp_path / "out"), above, jobs=2)
    assert not result.failed and result.analysed == 3 and result.sharded == 0
    assert seen and not any(isinstance(u, ShardTask) for u in seen)


def test_one_worker_never_shards(capture, tmp_path, monkeypatch):
    seen = _spy(monkeypatch)
    assert run_batch([str(capture)], str(tmp_path / "out"), ALWAYS, jobs=1).sharded == 0
    assert seen and not any(isinstance(u, ShardTask) for u in seen)


def test_a_sharded_set_and_a_resumed_run_agree(rotation, tmp_path):
    """A sharded set takes no checkpoint; the incremental run (checkpoints after 4 files, then
    the fifth read alone) writes what the sharded run of the whole set writes."""
    paths = [str(p) for p in rotation]
    out = tmp_path / "resumed"
    run_batch(paths[:4], str(out), SET_NEVER, jobs=2)
    again = run_batch(paths, str(out), SET_NEVER, jobs=2)
    assert again.resumed == 4
    sharded = run_batch(paths, str(tmp_path / "sharded"), SET_ALWAYS, jobs=2)
    assert sharded.resumed == 0 and sharded.sharded == 1
    assert not list((tmp_path / "sharded" / "_state").glob("rotation/*/*"))
    _assert_same(out, tmp_path / "sharded")
    # and a sharded re-run of a set with checkpoints reads it whole, the same rows again
    for p in rotation[-1:]:
        p.touch()
    third = run_batch(paths, str(out), SET_ALWAYS, jobs=2)
    assert third.resumed == 0 and third.analysed == 5 and third.sharded == 1
    run_batch(paths, str(tmp_path / "fresh"), SET_NEVER, jobs=2)
    _assert_same(out, tmp_path / "fresh")


def test_a_set_member_that_cannot_be_read_is_its_own_failed_row(rotation, tmp_path):
    """The shards merged give `run_task`'s result, member by member, when a member is gone
    (its row failed with its one-line error, the others read on as one stream)."""
    paths = [str(p) for p in rotation]
    paths.insert(2, str(tmp_path / "gone.pcap"))
    task = _task_for(paths, OPTS)
    one = run_task(task)
    merged = merge_shards(task, [run_shard(ShardTask(task, k, 3)) for k in range(3)])
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMINGS} for r in rows]  # noqa: E731
    assert strip(merged.captures) == strip(one.captures)
    failed = [r for r in merged.captures if r["status"] == "failed"]
    assert len(failed) == 1 and "gone.pcap" in failed[0]["error"] and "\n" not in failed[0]["error"]
    assert merged.connections.keys() == one.connections.keys()
    for cid, table in one.connections.items():
        assert merged.connections[cid].equals(table), cid
    assert merged.anomalies.keys() == one.anomalies.keys()
    for cid, table in one.anomalies.items():
        assert merged.anomalies[cid].equals(table), cid


def test_a_capture_that_cannot_be_read_fails_as_one_line(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\x00" * 6)  # cut inside the file header
    one = run_batch([str(bad)], str(tmp_path / "one"), NEVER, jobs=2)
    sharded = run_batch([str(bad)], str(tmp_path / "sharded"), ALWAYS, jobs=2)
    assert len(sharded.failed) == 1 and sharded.failed == one.failed
    error = sharded.failed[0][1]
    assert "\n" not in error and error.startswith(str(bad))
    assert _summary(tmp_path / "one") == _summary(tmp_path / "sharded")


def test_a_shard_that_cannot_open_its_file_reports_it(tmp_path):
    """A worker that cannot read the file (on a cluster: another machine's path) says so in
    one line, like the one-task run."""
    task = _task_for([str(tmp_path / "gone.pcap")], PLAIN)
    res = run_shard(ShardTask(task, 1, 2))
    assert res.error is not None and "\n" not in res.error and "gone.pcap" in res.error
    assert res.keys == {}  # (member 0 is shard 0's to hash)


def test_a_dead_shard_fails_its_task_and_the_rest_go_on(capture, tmp_path, monkeypatch):
    small = tmp_path / "small.pcap"
    small.write_bytes(pcapgen.pcap_bytes(pcapgen.clean_close()))
    real = batch_run._run_unit

    def unit(item):
        if isinstance(item, ShardTask) and item.k == 1:
            raise RuntimeError("cluster trouble")
        return real(item)

    monkeypatch.setattr(batch_run, "_run_unit", unit)
    monkeypatch.setattr(batch_run, "_make_pool", lambda jobs, scheduler, tasks: _Inline(2))
    above = dataclasses.replace(PLAIN, shard_above=small.stat().st_size)
    result = run_batch([str(capture), str(small)], str(tmp_path / "out"), above, jobs=2)
    assert result.analysed == 1 and len(result.failed) == 1
    path, error = result.failed[0]
    assert path == str(capture) and "cluster trouble" in error and "\n" not in error


class _Inline(_InlinePool):
    """test_batch_incremental's in-process executor, with more than one worker so that tasks
    are sharded."""

    def __init__(self, parallelism: int) -> None:
        self.parallelism = parallelism


def test_cli_shard_above_takes_sizes(capture, tmp_path):
    out = tmp_path / "out"
    r = CliRunner().invoke(
        cli,
        ["batch", str(capture), "-o", str(out), "--shard-above", "1K", "-j", "2", "--no-report"],
    )
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["batch", str(capture), "-o", str(out), "--shard-above", "lots"])
    assert r.exit_code == 2 and "--shard-above" in r.output


@needs_corpus
@pytest.mark.parametrize("merge", [False, True], ids=["captures", "rotation-sets"])
def test_every_corpus_capture_gives_the_same_rows_sharded(tmp_path, merge):
    """The public corpus (tunnels, fragments, IPv6, damage, other link types): every capture,
    and with --merge-consecutive every set, sharded over 2 workers gives the one-task rows."""
    roots = [str(ZEEK_TRACES), str(OTHER_CAPTURES)]
    never, always = (SET_NEVER, SET_ALWAYS) if merge else (NEVER, ALWAYS)
    one = run_batch(roots, str(tmp_path / "one"), never, jobs=2)
    sharded = run_batch(roots, str(tmp_path / "sharded"), always, jobs=2)
    assert sharded.sharded > 50 and one.analysed == sharded.analysed > 50
    # (in the order the tasks finished)
    assert sorted(one.failed) == sorted(sharded.failed)
    assert sorted(one.warned) == sorted(sharded.warned) and one.warned
    _assert_same(tmp_path / "one", tmp_path / "sharded")


@pytest.fixture(scope="module")
def scheduler():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def test_shards_on_a_dask_cluster_write_the_one_task_rows(capture, rotation, tmp_path, scheduler):
    run_batch([str(capture)], str(tmp_path / "one"), NEVER, jobs=2)
    assert run_batch([str(capture)], str(tmp_path / "dask"), ALWAYS, scheduler=scheduler).sharded
    _assert_same(tmp_path / "one", tmp_path / "dask")
    paths = [str(p) for p in rotation]
    run_batch(paths, str(tmp_path / "set-one"), SET_NEVER, jobs=2)
    assert run_batch(paths, str(tmp_path / "set-dask"), SET_ALWAYS, scheduler=scheduler).sharded
    _assert_same(tmp_path / "set-one", tmp_path / "set-dask")


@pytest.mark.parametrize("damage", ["cut-record", "gzip-cut"])
def test_a_damaged_capture_gives_the_same_warnings_sharded(tmp_path, damage):
    """Damage inside a readable capture (a record cut short, a compressed stream cut) is the
    same warning, the same frames and bytes, from the shards as from one task."""
    data = pcapgen.pcap_bytes(_busy_frames())
    if damage == "gzip-cut":
        data = pcapgen.compress(data, "gzip")
        path = tmp_path / "busy.pcap.gz"
        path.write_bytes(data[: len(data) * 2 // 3])
    else:
        path = tmp_path / "busy.pcap"
        path.write_bytes(data[:-7])
    one = run_batch([str(path)], str(tmp_path / "one"), NEVER, jobs=2)
    sharded = run_batch([str(path)], str(tmp_path / "sharded"), ALWAYS, jobs=2)
    assert sharded.sharded == 1 and not sharded.failed
    rows = _summary(tmp_path / "sharded")
    assert rows[0]["warnings"] and rows == _summary(tmp_path / "one")
    assert sharded.warned == one.warned
    _assert_same(tmp_path / "one", tmp_path / "sharded")

"""Incremental rotation sets (`flowlens batch --merge-consecutive`, issue 21 item 3).

A re-run after files were appended to a rotation set whose earlier members are unchanged goes on
from the checkpoint saved after the last unchanged member (Pipeline.snapshot pickled in the batch
store): it reads only the new files and writes exactly the Parquet datasets and summary a full
run of the whole set writes. Anything that could make the two differ (an earlier member changed,
a member cut short or failed, another flowlens or other options, an unreadable checkpoint) makes
it read the whole set, as before.

The runs here use an in-process pool, so that an audit hook sees every file the tasks open.
"""

from __future__ import annotations

import dataclasses
import pickle
import sys
from pathlib import Path

import pandas as pd
import pcapgen
import pyarrow.parquet as pq
import pytest

import flowlens.batch.run as batch_run
from flowlens.analyzers.anomalies.detector import AnomalyDetector
from flowlens.batch.run import BatchOptions, run_batch
from flowlens.core.pipeline import Pipeline
from flowlens.errors import CaptureError

OPTS = BatchOptions(report=False, merge_consecutive=True, incremental=True)
#: the summary columns that are timings: they differ between any two runs
TIMINGS = ["elapsed_s", "cpu_s"]


class _InlinePool:
    """Runs each task in this process when it is submitted (the executor interface of
    flowlens.batch.run), so that the audit hook below sees the files the tasks open."""

    parallelism = 1

    class _Done:
        def __init__(self, fn, arg):
            try:
                self._result, self._exc = fn(arg), None
            except Exception as exc:  # noqa: BLE001 - handed back as a future would
                self._result, self._exc = None, exc

        def result(self):
            if self._exc is not None:
                raise self._exc
            return self._result

    def submit(self, fn, arg):
        return self._Done(fn, arg)

    def wait(self, futures):
        return set(futures)

    def is_broken(self, exc):
        return False

    def restart(self):
        pass

    def close(self, abort):
        pass


#: paths opened while `_OPENED` is a set (sys.addaudithook cannot be removed: it records only
#: while a test asks it to)
_OPENED: set[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], str):
        _OPENED.add(args[0])


sys.addaudithook(_audit)


@pytest.fixture()
def inline(monkeypatch):
    monkeypatch.setattr(batch_run, "_make_pool", lambda jobs, scheduler, tasks: _InlinePool())


def _frames() -> list:
    """Connections that span files (a download, an attempt retrying its SYN for seconds, a
    CLOSE_WAIT leak), many short ones (TIME_WAIT per client and server), a port scan and a SYN
    flood (cross-connection findings), in time order."""
    t0 = pcapgen.T0
    frames = (
        pcapgen.bulk_download()
        + pcapgen.time_wait_pileup(count=60, interval=0.04, t=t0 + 0.1, sport=8080)
        + pcapgen.unanswered_syn(t=t0 + 0.2, cport=47000)
        + pcapgen.close_wait_leak(t=t0 + 0.3, cport=47100)
        + pcapgen.port_scan(t=t0 + 1.0)
        + pcapgen.syn_flood(t=t0 + 0.5)
    )
    frames.sort(key=lambda f: f[0])
    return frames


def _write_set(folder: Path, frames: list, files: int) -> list[Path]:
    """`frames` cut into `files` consecutive files, as tcpdump -C cuts them."""
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(frames) // files)
    paths = []
    for i in range(files):
        path = folder / f"trace-{i:04d}.pcap"
        path.write_bytes(pcapgen.pcap_bytes(frames[i * size : (i + 1) * size]))
        paths.append(path)
    return paths


def _datasets(outdir: Path) -> dict[str, pd.DataFrame]:
    """The run's datasets and summary, each read back with pyarrow and sorted the same way."""
    conns = pd.read_parquet(outdir / "connections")
    summary = pd.read_parquet(outdir / "summary.parquet").drop(columns=TIMINGS)
    out = {
        "connections": conns.sort_values(["capture", "ts", "uid"]),
        "summary": summary.sort_values(["capture_path"]),
    }
    if (outdir / "anomalies").exists():  # (no file at all when no capture has findings)
        anomalies = pd.read_parquet(outdir / "anomalies")
        out["anomalies"] = anomalies.sort_values(["capture", "ts", "kind", "uid", "summary"])
    for name, frame in out.items():
        frame = frame.reset_index(drop=True)
        for col in frame.columns:  # categorical partition columns compare as their values
            if isinstance(frame[col].dtype, pd.CategoricalDtype):
                frame[col] = frame[col].astype(str)
        out[name] = frame
    return out


def _assert_same(a: Path, b: Path) -> None:
    """The same datasets: the same files, each holding the same table (rows in the same order),
    and the same summary but for timings; then, read back and sorted, the same frames."""
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*.parquet"))
    assert files == sorted(str(p.relative_to(b)) for p in b.rglob("*.parquet"))
    for rel in files:
        if rel != "summary.parquet":
            assert pq.read_table(a / rel).equals(pq.read_table(b / rel)), rel
    da, db = _datasets(a), _datasets(b)
    assert set(da) == set(db)
    for name in da:
        pd.testing.assert_frame_equal(da[name], db[name], check_like=False, obj=name)


def _full_run(paths: list[Path], outdir: Path):
    return run_batch([str(p) for p in paths], str(outdir), OPTS)


def test_appending_one_file_to_a_24_file_set_reads_only_that_file(tmp_path, inline):
    """Issue 21's benchmark, as a count: the 24th file is the only capture the re-run opens."""
    global _OPENED
    paths = _write_set(tmp_path / "set", _frames(), 24)
    last = paths[-1].read_bytes()
    paths[-1].unlink()
    out = tmp_path / "out"
    first = run_batch([str(p) for p in paths[:-1]], str(out), OPTS)
    assert first.resumed == 0 and first.analysed == 23
    paths[-1].write_bytes(last)  # tcpdump rotated: a new file
    _OPENED = set()
    try:
        second = run_batch([str(p) for p in paths], str(out), OPTS)
        opened = {p for p in _OPENED if p.startswith(str(tmp_path / "set"))}
    finally:
        _OPENED = None
    assert second.resumed == 23 and not second.failed
    assert opened == {str(paths[-1])}
    full = _full_run(paths, tmp_path / "full")
    assert full.resumed == 0
    _assert_same(out, tmp_path / "full")
    # the spanning download is one record, and findings about the whole set are there
    conns = _datasets(out)["connections"]
    assert (conns["history"].str.startswith("ShAD") & conns["history"].str.endswith("Ff")).any()
    kinds = set(_datasets(out)["anomalies"]["kind"])
    assert {"port_scan", "syn_flood"} <= kinds


def test_worker_processes_and_a_dask_cluster_resume_alike(tmp_path):
    """The real executors: the checkpoints come back from forkserver workers, and a Dask
    cluster's worker goes on from them."""
    from dask.distributed import LocalCluster

    paths = [str(p) for p in _write_set(tmp_path / "set", _frames(), 5)]
    out = tmp_path / "out"
    assert run_batch(paths[:4], str(out), OPTS, jobs=2).resumed == 0
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        again = run_batch(paths, str(out), OPTS, scheduler=cluster.scheduler_address)
    assert again.resumed == 4
    run_batch(paths, str(tmp_path / "full"), OPTS, jobs=2)
    _assert_same(out, tmp_path / "full")


@pytest.mark.parametrize("cut", [3, 5, 9])
def test_every_cut_gives_the_full_runs_rows(tmp_path, inline, cut):
    """A connection still open at the end of file `cut` is written (once, in the file of its
    first packet) as the full run writes it, not as the first run saw it at its end."""
    paths = _write_set(tmp_path / "set", _frames(), 10)
    out = tmp_path / "out"
    run_batch([str(p) for p in paths[:cut]], str(out), OPTS)
    second = run_batch([str(p) for p in paths], str(out), OPTS)
    assert second.resumed == cut
    _full_run(paths, tmp_path / "full")
    _assert_same(out, tmp_path / "full")


def test_a_last_file_still_being_written_is_read_again(tmp_path, inline):
    """tcpdump was still writing the last file (cut inside a record): the re-run goes on from the
    checkpoint before it, reads it whole and the new one."""
    frames = _frames()
    paths = _write_set(tmp_path / "set", frames, 6)
    whole = paths[4].read_bytes()
    paths[4].write_bytes(whole[: len(whole) - 37])  # cut inside the last record
    new = paths[5].read_bytes()
    paths[5].unlink()
    out = tmp_path / "out"
    first = run_batch([str(p) for p in paths[:5]], str(out), OPTS)
    assert first.warnings == 1  # the cut is a warning, and no checkpoint is made after it
    paths[4].write_bytes(whole)
    paths[5].write_bytes(new)
    second = run_batch([str(p) for p in paths], str(out), OPTS)
    assert second.resumed == 4
    _full_run(paths, tmp_path / "full")
    _assert_same(out, tmp_path / "full")


def test_a_member_cut_short_in_the_middle_makes_a_full_run(tmp_path, inline):
    """Damage that stopped reading a member early: nothing after it is restored (only the last
    two members keep a state, so a full run), and the rows are a full run's."""
    paths = _write_set(tmp_path / "set", _frames(), 6)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) - 37])
    out = tmp_path / "out"
    run_batch([str(p) for p in paths[:5]], str(out), OPTS)
    second = run_batch([str(p) for p in paths], str(out), OPTS)
    assert second.resumed == 0
    _full_run(paths, tmp_path / "full")
    _assert_same(out, tmp_path / "full")


def test_a_failed_member_makes_a_full_run(tmp_path, inline, monkeypatch):
    """A member that could not be read is tried again, and the set is read whole."""
    import flowlens.core.pipeline as pipeline

    paths = _write_set(tmp_path / "set", _frames(), 4)
    real = pipeline.open_capture

    def failing(path, *a, **kw):
        if str(path) == str(paths[1]):
            raise CaptureError(str(path), "cannot be read (a test)")
        return real(path, *a, **kw)

    monkeypatch.setattr(pipeline, "open_capture", failing)
    out = tmp_path / "out"
    first = run_batch([str(p) for p in paths], str(out), OPTS)
    assert [p for p, _ in first.failed] == [str(paths[1])], first.failed
    monkeypatch.setattr(pipeline, "open_capture", real)
    second = run_batch([str(p) for p in paths], str(out), OPTS)
    assert second.resumed == 0 and not second.failed
    _full_run(paths, tmp_path / "full")
    _assert_same(out, tmp_path / "full")


@pytest.mark.parametrize("changed", [0, 2])
def test_a_changed_earlier_member_makes_a_full_run(tmp_path, inline, changed):
    """The first member or one in the middle rewritten (same size, other bytes): no checkpoint
    before it kept its state (only the last two do), so the whole set is read."""
    frames = _frames()
    paths = _write_set(tmp_path / "set", frames, 5)
    new = paths[4].read_bytes()
    paths[4].unlink()
    out = tmp_path / "out"
    run_batch([str(p) for p in paths[:4]], str(out), OPTS)
    data = paths[changed].read_bytes()
    paths[changed].write_bytes(data[: len(data) - 1] + bytes([data[-1] ^ 1]))  # same size
    paths[4].write_bytes(new)
    second = run_batch([str(p) for p in paths], str(out), OPTS)
    assert second.resumed == 0
    _full_run(paths, tmp_path / "full")
    _assert_same(out, tmp_path / "full")


def test_another_version_or_a_damaged_checkpoint_makes_a_full_run(tmp_path, inline, monkeypatch):
    paths = _write_set(tmp_path / "set", _frames(), 5)
    out = tmp_path / "out"
    run_batch([str(p) for p in paths[:3]], str(out), OPTS)
    monkeypatch.setattr(batch_run, "__version__", "0.0.0-other")
    second = run_batch([str(p) for p in paths[:4]], str(out), OPTS)
    assert second.resumed == 0  # another flowlens: the checkpoints' stamp differs
    states = sorted((out / "_state" / "rotation").rglob("*.state"))
    assert [p.name for p in states] == ["2.state", "3.state"]  # the last two members only
    for p in states:
        p.write_bytes(p.read_bytes()[:100])  # cut short: unreadable
    third = run_batch([str(p) for p in paths], str(out), OPTS)
    assert third.resumed == 0
    _full_run(paths, tmp_path / "full")
    _assert_same(out, tmp_path / "full")


def test_verify_resumes_on_content_not_mtime(tmp_path, inline):
    opts = BatchOptions(report=False, merge_consecutive=True, incremental=True, verify=True)
    paths = _write_set(tmp_path / "set", _frames(), 4)
    out = tmp_path / "out"
    run_batch([str(p) for p in paths[:3]], str(out), opts)
    for p in paths[:3]:
        p.touch()  # same bytes, new mtime
    second = run_batch([str(p) for p in paths], str(out), opts)
    assert second.resumed == 3
    run_batch([str(p) for p in paths], str(tmp_path / "full"), opts)
    _assert_same(out, tmp_path / "full")


def test_pipeline_snapshot_after_each_member_restores_the_same_stream(tmp_path):
    """The pipeline level: a snapshot after member i, pickled and restored into a new Pipeline,
    yields from there exactly the records and findings of one uninterrupted pass."""
    paths = [str(p) for p in _write_set(tmp_path / "set", _frames(), 5)]

    def whole():
        det = AnomalyDetector()
        pipe = Pipeline(paths, analyzers=[det])
        records = [c.to_record() for c in pipe]
        return records, [a.to_record() for a in pipe.results[det]]

    expected = whole()
    for cut in range(len(paths)):
        seen: dict = {}
        records: list = []

        def checkpoint(pipe, i, cut=cut, seen=seen, records=records):
            if i == cut:
                seen["state"] = pickle.dumps(pipe.snapshot())
                seen["n"] = len(records)

        pipe = Pipeline(paths, analyzers=[AnomalyDetector()], checkpoint=checkpoint)
        for c in pipe:
            records.append(c.to_record())
        before = records[: seen["n"]]
        again = Pipeline(paths, analyzers=[AnomalyDetector()])
        again.restore(pickle.loads(seen["state"]))
        det = next(a for a in again.analyzers if isinstance(a, AnomalyDetector))
        after = [c.to_record() for c in again]
        assert (before + after, [a.to_record() for a in again.results[det]]) == expected


def test_ip_fragments_waiting_at_a_cut_are_carried_over(tmp_path, inline):
    """The decoder's state carries over: a datagram whose fragments straddle the cut (inside a
    VXLAN tunnel, so its inner TCP segment counts) is reassembled as in one pass."""
    import test_fragmented_tunnels as ft

    frames = ft._fragmented(ft._tunnelled("vxlan"), sizes=(504, 504))
    firsts = [i for i, (_ts, f) in enumerate(frames) if f[14 + 6] & 0x20 and not f[14 + 7]]
    assert firsts  # the big response is fragmented
    cut = firsts[0] + 1  # after its first fragment
    folder = tmp_path / "set"
    folder.mkdir()
    paths = []
    for i, part in enumerate([frames[:cut], frames[cut : cut + 1], frames[cut + 1 :]]):
        paths.append(folder / f"trace-{i}.pcap")
        paths[-1].write_bytes(pcapgen.pcap_bytes(part))
    out = tmp_path / "out"
    run_batch([str(p) for p in paths[:1]] + [str(paths[1])], str(out), OPTS)
    second = run_batch([str(p) for p in paths], str(out), OPTS)
    assert second.resumed == 2
    _full_run(paths, tmp_path / "full")
    _assert_same(out, tmp_path / "full")
    conns = _datasets(out)["connections"]
    assert (conns["proto"] == "tcp").sum() == 1 and conns["resp_bytes"].max() > 1000


#: the pipeline-level round trip of the test above, run in another interpreter
_ROUND_TRIP = r"""
import pickle, sys
sys.path.insert(0, sys.argv[1])
import pcapgen
import flowlens.compiled
from flowlens.analyzers.anomalies.detector import AnomalyDetector
from flowlens.core.connections import Config
from flowlens.core.pipeline import Pipeline
from test_batch_incremental import _frames, _write_set
from pathlib import Path

paths = [str(p) for p in _write_set(Path(sys.argv[2]), _frames(), 4)]
det = AnomalyDetector()
pipe = Pipeline(paths, analyzers=[det])
expected = ([c.to_record() for c in pipe], [a.to_record() for a in pipe.results[det]])
ok = []
for cut in range(len(paths)):
    seen, records = {}, []
    def checkpoint(p, i, cut=cut):
        if i == cut:
            seen["state"], seen["n"] = pickle.dumps(p.snapshot()), len(records)
    for c in Pipeline(paths, analyzers=[AnomalyDetector()], checkpoint=checkpoint):
        records.append(c.to_record())
    again = Pipeline(paths, analyzers=[AnomalyDetector()])
    again.restore(pickle.loads(seen["state"]))
    det = next(a for a in again.analyzers if isinstance(a, AnomalyDetector))
    got = (records[: seen["n"]] + [c.to_record() for c in again],
           [a.to_record() for a in again.results[det]])
    ok.append(got == expected)
print(sorted(flowlens.compiled.compiled_modules()), ok)
"""


def test_the_snapshot_round_trips_in_plain_python_too(tmp_path):
    """The same classes uncompiled (the .so files left out): plain Python objects pickle the
    same open state. (A compiled run's state is never restored by a plain one: see
    test_the_build_stamp_tells_compiled_from_plain_code.)"""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[1]
    pure = tmp_path / "pure"
    shutil.copytree(
        root / "flowlens",
        pure / "flowlens",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"),
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(pure)}
    out = subprocess.run(
        [sys.executable, "-c", _ROUND_TRIP, str(Path(__file__).parent), str(tmp_path / "set")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[] [True, True, True, True]"


def test_a_checkpoint_of_another_build_is_not_restored(tmp_path, inline, monkeypatch):
    """The same version number, other code (a rebuilt checkout, compiled or not): the worker
    reads the whole set rather than unpickle objects into classes that may differ."""
    import flowlens.batch.task as task

    paths = _write_set(tmp_path / "set", _frames(), 4)
    out = tmp_path / "out"
    run_batch([str(p) for p in paths[:3]], str(out), OPTS)
    monkeypatch.setattr(task, "_BUILD", ["python 3; code another"])
    second = run_batch([str(p) for p in paths], str(out), OPTS)
    assert second.resumed == 0
    _full_run(paths, tmp_path / "full")
    _assert_same(out, tmp_path / "full")


def test_the_build_stamp_tells_compiled_from_plain_code(tmp_path):
    import shutil
    import subprocess

    from flowlens.batch.task import build_stamp
    from flowlens.compiled import compiled_modules

    if not compiled_modules():
        pytest.skip("needs the compiled build to compare with")
    root = Path(__file__).resolve().parents[1]
    pure = tmp_path / "pure"
    shutil.copytree(
        root / "flowlens",
        pure / "flowlens",
        ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"),
    )
    env = {**__import__("os").environ, "PYTHONPATH": str(pure)}
    code = "from flowlens.batch.task import build_stamp; print(build_stamp())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() != build_stamp() and build_stamp().startswith("python ")


def test_the_cli_says_how_many_files_were_not_read_again(tmp_path):
    from click.testing import CliRunner

    from flowlens.cli import cli

    paths = [str(p) for p in _write_set(tmp_path / "set", _frames(), 4)]
    out = str(tmp_path / "out")
    base = [
        "batch",
        "-o",
        out,
        "--merge-consecutive",
        "--incremental",
        "--no-report",
        "--jobs",
        "1",
    ]
    first = CliRunner().invoke(cli, [*base, *paths[:3]])
    assert first.exit_code == 0 and "3 analysed," in first.stderr, first.stderr
    second = CliRunner().invoke(cli, [*base, *paths])
    assert second.exit_code == 0
    assert second.stderr.startswith("4 captures: 4 analysed (3 of them not read again), 0 already")


def _pcap_pieces(path: Path, folder: Path, pieces: int) -> list[str] | None:
    """A classic pcap cut into `pieces` files at record boundaries (None for anything else)."""
    import struct

    data = path.read_bytes()
    order = {b"\xd4\xc3\xb2\xa1": "<", b"\x4d\x3c\xb2\xa1": "<"}.get(data[:4])
    order = order or {b"\xa1\xb2\xc3\xd4": ">", b"\xa1\xb2\x3c\x4d": ">"}.get(data[:4])
    if order is None or len(data) > 5_000_000:
        return None
    records, pos = [], 24
    while pos + 16 <= len(data):
        end = pos + 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
        records.append(data[pos:end])
        pos = end
    if len(records) < pieces:
        return None
    folder.mkdir(parents=True)
    size = -(-len(records) // pieces)
    out = []
    for i in range(pieces):
        out.append(str(folder / f"part-{i}.pcap"))
        Path(out[-1]).write_bytes(data[:24] + b"".join(records[i * size : (i + 1) * size]))
    return out


@pytest.mark.corpus
def test_corpus_captures_cut_in_three_restore_exactly(tmp_path):
    """Real traffic (tunnels, fragments, IPv6, damage ...): every classic pcap of the corpus
    cut into three files gives, restored after the first or the second, the records and
    findings of one pass."""
    import corpus

    tried, differ = 0, []
    for n, capture in enumerate(corpus.captures()):
        paths = _pcap_pieces(capture, tmp_path / str(n), 3)
        if paths is None:
            continue
        tried += 1
        det = AnomalyDetector()
        pipe = Pipeline(paths, analyzers=[det])
        expected = ([c.to_record() for c in pipe], [a.to_record() for a in pipe.results[det]])
        states: dict[int, tuple] = {}
        records: list = []

        def checkpoint(p, i, states=states, records=records):
            states[i] = (pickle.dumps(p.snapshot()), len(records))

        for c in Pipeline(paths, analyzers=[AnomalyDetector()], checkpoint=checkpoint):
            records.append(c.to_record())
        for cut in (0, 1):
            state, count = states[cut]
            again = Pipeline(paths, analyzers=[AnomalyDetector()])
            again.restore(pickle.loads(state))
            det = next(a for a in again.analyzers if isinstance(a, AnomalyDetector))
            after = [c.to_record() for c in again]
            got = (records[:count] + after, [a.to_record() for a in again.results[det]])
            if got != expected:
                differ.append(f"{capture.name} after part {cut}")
    assert tried > 20
    assert not differ, differ


def test_a_task_that_dies_going_on_from_a_checkpoint_forgets_it(tmp_path, inline, monkeypatch):
    """A task that could not run at all (its worker died, say while restoring) is recorded as
    failed, and its set's checkpoints are dropped: the next run reads the whole set."""
    real = batch_run.run_task

    def dies_when_resuming(task):
        if task.resume is not None:
            raise RuntimeError("the worker process died (a test)")
        return real(task)

    paths = [str(p) for p in _write_set(tmp_path / "set", _frames(), 4)]
    out = tmp_path / "out"
    run_batch(paths[:3], str(out), OPTS)
    monkeypatch.setattr(batch_run, "run_task", dies_when_resuming)
    second = run_batch(paths, str(out), OPTS)
    assert len(second.failed) == 4 and second.resumed == 0
    assert not list((out / "_state" / "rotation").rglob("*.state"))
    third = run_batch(paths, str(out), OPTS)  # (no resume offered: it would die again)
    assert third.resumed == 0 and not third.failed
    _full_run([Path(p) for p in paths], tmp_path / "full")
    _assert_same(out, tmp_path / "full")


def test_without_incremental_no_checkpoint_is_taken(tmp_path, inline):
    """Checkpoints are asked for (`--incremental`): a plain --merge-consecutive run saves
    none, and its re-run after a new file reads the whole set again."""
    paths = [str(p) for p in _write_set(tmp_path / "set", _frames(), 4)]
    plain = dataclasses.replace(OPTS, incremental=False)
    out = tmp_path / "out"
    run_batch(paths[:3], str(out), plain, jobs=1)
    assert not list((out / "_state").glob("rotation/*/*"))
    again = run_batch(paths, str(out), plain, jobs=1)
    assert again.resumed == 0 and again.analysed == 4

"""`flowlens batch`: discovery, local pool vs Dask, failures, resume after a kill, rotation sets,
progress only on a terminal, the aggregate report's numbers."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pcapgen
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from flowlens import analyze
from flowlens.batch.run import BatchOptions, discover, rotation_sets, run_batch
from flowlens.batch.store import Store, atomic_write
from flowlens.batch.task import CONNECTION_SCHEMA, probe_file
from flowlens.cli import cli
from flowlens.commands.batch import progress_for
from flowlens.core.connections import RECORD_FIELDS, Config
from flowlens.errors import FlowlensError
from flowlens.reports import archive

REPO = Path(__file__).resolve().parent.parent
CORRUPT_ERROR = "gzip stream cut short"


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


@pytest.fixture()
def archive_dir(tmp_path):
    """Six captures in nested directories (two gzipped, one pcapng, one bzip2), one corrupt
    gzip capture, and two files that are not captures."""
    root = tmp_path / "archive"
    pcap = lambda name: pcapgen.pcap_bytes(pcapgen.SCENARIOS[name]())  # noqa: E731
    _write(root / "clean-close.pcap", pcap("clean-close"))
    _write(root / "refused.pcapng", pcapgen.pcapng_bytes([(1, pcapgen.refused())]))
    _write(root / "host-a" / "close-wait.pcap.gz", pcapgen.compress(pcap("close-wait"), "gzip"))
    _write(
        root / "host-a" / "2023" / "incident.pcap.gz", pcapgen.compress(pcap("incident"), "gzip")
    )
    _write(root / "host-b" / "port-reuse.pcap.bz2", pcapgen.compress(pcap("port-reuse"), "bzip2"))
    _write(root / "host-b" / "trace-0001", pcap("retransmission"))  # tcpdump -C names: no suffix
    _write(root / "host-b" / "broken.pcap.gz", pcapgen.compress(pcap("incident"), "gzip")[:15])
    _write(root / "README.txt", b"captures from the lab\n")
    _write(root / "host-a" / "SHA256SUMS.gz", pcapgen.compress(b"abc  x.pcap\n", "gzip"))
    return root


def _relative_files(outdir: Path) -> list[str]:
    return sorted(str(p.relative_to(outdir)) for p in outdir.rglob("*.parquet"))


def _dataset(outdir: Path, name: str) -> pd.DataFrame:
    frame = pd.read_parquet(outdir / name)
    sort = ["capture", "ts", "uid"] if name == "connections" else ["capture", "ts", "kind", "uid"]
    return frame.sort_values(sort).reset_index(drop=True)


# ------------------------------------------------------------------ discovery


def test_directories_are_walked_and_files_sniffed_by_their_bytes(archive_dir):
    found = discover([str(archive_dir)])
    names = [os.path.relpath(p, archive_dir) for p in found.captures]
    assert names == [
        "clean-close.pcap",
        "host-a/2023/incident.pcap.gz",
        "host-a/close-wait.pcap.gz",
        "host-b/broken.pcap.gz",  # named like a capture: reported as failed, not skipped
        "host-b/port-reuse.pcap.bz2",
        "host-b/trace-0001",  # no suffix, but pcap magic
        "refused.pcapng",
    ]
    assert sorted(os.path.relpath(p, archive_dir) for p in found.skipped) == [
        "README.txt",
        "host-a/SHA256SUMS.gz",
    ]
    assert found.missing == []


def test_globs_expand_and_missing_paths_are_reported(archive_dir):
    found = discover(
        [
            str(archive_dir / "**" / "*.gz"),
            str(archive_dir / "clean-close.pcap"),
            str(archive_dir / "nope*"),
        ]
    )
    assert [os.path.basename(p) for p in found.captures] == [
        "clean-close.pcap",
        "incident.pcap.gz",
        "SHA256SUMS.gz",
        "close-wait.pcap.gz",
        "broken.pcap.gz",
    ]  # fmt: skip  (named by a glob: taken as given, even a checksum file)
    assert found.missing == [str(archive_dir / "nope*")]


def test_the_output_directory_is_not_walked(archive_dir):
    outdir = archive_dir / "out"
    run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1)
    assert all(
        "/out/" not in p for p in discover([str(archive_dir)], exclude=[str(outdir)]).captures
    )
    second = run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1)
    assert second.skipped_files == 2


# ------------------------------------------------------------------ one run


def test_local_pool_and_dask_cluster_write_identical_datasets(archive_dir, tmp_path):
    from dask.distributed import LocalCluster

    local, dask_out = tmp_path / "local", tmp_path / "dask"
    r1 = run_batch([str(archive_dir)], str(local), BatchOptions(report=False), jobs=2)
    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        r2 = run_batch(
            [str(archive_dir)],
            str(dask_out),
            BatchOptions(report=False),
            scheduler=cluster.scheduler_address,
        )
    assert (r1.analysed, len(r1.failed)) == (r2.analysed, len(r2.failed)) == (6, 1)
    files = _relative_files(local)
    assert files == _relative_files(dask_out)
    assert "connections/date=2023-11-14/incident.pcap.gz-" in " ".join(files)
    for rel in files:
        if rel != "summary.parquet":
            assert pq.read_table(local / rel).equals(pq.read_table(dask_out / rel)), rel
    s1, s2 = (
        pd.read_parquet(d / "summary.parquet").drop(columns=["elapsed_s", "cpu_s"])
        for d in (local, dask_out)
    )
    pd.testing.assert_frame_equal(s1, s2)


def test_rows_are_the_flows_records_of_each_capture_plus_its_name(archive_dir, tmp_path):
    outdir = tmp_path / "out"
    run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1)
    conns = pq.read_table(outdir / "connections").to_pandas()
    assert list(conns.columns) == list(RECORD_FIELDS) + ["capture", "capture_path", "date"]
    incident = str(archive_dir / "host-a" / "2023" / "incident.pcap.gz")
    expected = [c.to_record() for c in analyze(incident).connections]
    got = conns[conns["capture_path"] == incident].drop(columns=["capture", "capture_path", "date"])
    got = got.sort_values(["ts", "uid"]).to_dict("records")
    expected.sort(key=lambda r: (r["ts"], r["uid"]))
    assert [r["uid"] for r in got] == [r["uid"] for r in expected]
    assert (
        got[5]["id.resp_p"] == expected[5]["id.resp_p"]
        and got[5]["history"] == expected[5]["history"]
    )
    assert set(conns["capture"]) == {
        "clean-close.pcap", "refused.pcapng", "close-wait.pcap.gz", "incident.pcap.gz", "port-reuse.pcap.bz2", "trace-0001",
    }  # fmt: skip


def test_anomaly_rows_are_the_detectors_findings(archive_dir, tmp_path):
    from flowlens.analyzers.anomalies.detector import AnomalyDetector

    outdir = tmp_path / "out"
    run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1)
    path = str(archive_dir / "host-a" / "2023" / "incident.pcap.gz")
    detector = AnomalyDetector()
    expected = [a.to_record() for a in analyze(path, analyzers=[detector]).results[detector]]
    got = pd.read_parquet(outdir / "anomalies").query("capture_path == @path").to_dict("records")
    assert len(expected) >= 4 and len(got) == len(expected)
    key = lambda r: (r["kind"], r["uid"] or "", r["summary"])  # noqa: E731
    for g, e in zip(sorted(got, key=key), sorted(expected, key=key)):
        assert (g["kind"], g["severity"], g["summary"], g["ts"]) == (
            e["kind"],
            e["severity"],
            e["summary"],
            e["ts"],
        )
        assert list(g["evidence"]) == e["evidence"]
        assert json.loads(g["details"]) == json.loads(json.dumps(e["details"]))


def test_a_failed_capture_is_in_the_summary_and_the_batch_goes_on(archive_dir, tmp_path):
    outdir = tmp_path / "out"
    result = run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=2)
    broken = str(archive_dir / "host-b" / "broken.pcap.gz")
    assert [p for p, _ in result.failed] == [broken]
    summary = json.loads((outdir / "summary.json").read_text())
    rows = {r["capture"]: r for r in summary["captures"]}
    assert rows["broken.pcap.gz"]["status"] == "failed"
    assert CORRUPT_ERROR in rows["broken.pcap.gz"]["error"]
    assert rows["incident.pcap.gz"]["status"] == "ok"
    incident = analyze(
        str(archive_dir / "host-a" / "2023" / "incident.pcap.gz")
    )  # the sample grows
    assert rows["incident.pcap.gz"]["connections"] == len(incident.connections)
    assert rows["incident.pcap.gz"]["packets"] == incident.stats.frames
    assert summary["totals"]["failed"] == 1 and summary["totals"]["ok"] == 6
    assert summary["skipped_files"] == 2
    parquet = pd.read_parquet(outdir / "summary.parquet")
    assert list(parquet["capture_path"]) == sorted(r["capture_path"] for r in summary["captures"])


def test_cli_exit_code_and_error_lines(archive_dir, tmp_path):
    outdir = tmp_path / "out"
    result = CliRunner().invoke(cli, ["batch", str(archive_dir), "-o", str(outdir), "--jobs", "2"])
    assert result.exit_code == 1, result.output
    broken = archive_dir / "host-b" / "broken.pcap.gz"
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"Error: {broken}: {CORRUPT_ERROR}")
    assert lines[-1].startswith(
        "7 captures: 6 analysed, 0 already done, 1 failed; 2 other files skipped;"
    )
    assert result.stdout == ""
    assert (outdir / "report.html").exists()
    os.remove(broken)
    again = CliRunner().invoke(cli, ["batch", str(archive_dir), "-o", str(outdir)])
    assert again.exit_code == 0, again.output
    assert again.stderr.startswith("6 captures: 0 analysed, 6 already done, 0 failed;")


def test_cli_bad_paths_exit_2(tmp_path):
    result = CliRunner().invoke(cli, ["batch", str(tmp_path / "nope"), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert (
        f"Invalid value for PATH...: {tmp_path / 'nope'}: no such file, directory or glob match"
        in result.stderr
    )


# ------------------------------------------------------------------ resume


def test_rerun_skips_done_captures_and_redoes_changed_ones(archive_dir, tmp_path):
    outdir = tmp_path / "out"
    run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1)
    before = _dataset(outdir, "connections")
    again = run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1)
    assert (again.analysed, again.already_done) == (0, 6)  # the broken one is retried
    # a capture rewritten with other content: its rows are replaced, not added
    clean = archive_dir / "clean-close.pcap"
    clean.write_bytes(pcapgen.pcap_bytes(pcapgen.time_wait_pileup(count=3)))
    third = run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1)
    assert (third.analysed, third.already_done) == (1, 5)
    after = _dataset(outdir, "connections")
    assert len(after) == len(before) - 1 + 3
    assert not after.duplicated(["capture_path", "uid"]).any()


def test_verify_compares_content_not_mtime(archive_dir, tmp_path):
    outdir = tmp_path / "out"
    run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1)
    clean = archive_dir / "clean-close.pcap"
    st = clean.stat()
    os.utime(clean, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched, same bytes
    assert (
        run_batch(
            [str(archive_dir)], str(outdir), BatchOptions(report=False, verify=True), jobs=1
        ).analysed
        == 0
    )
    # same size and mtime, other bytes: only a content hash notices
    data = bytearray(clean.read_bytes())
    data[-1] ^= 0xFF
    st = clean.stat()
    clean.write_bytes(bytes(data))
    os.utime(clean, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (
        run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1).analysed == 0
    )
    assert (
        run_batch(
            [str(archive_dir)], str(outdir), BatchOptions(report=False, verify=True), jobs=1
        ).analysed
        == 1
    )


def test_other_options_redo_the_captures(archive_dir, tmp_path):
    outdir = tmp_path / "out"
    run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1)
    options = BatchOptions(config=Config(msl_s=1.0), report=False)
    assert run_batch([str(archive_dir)], str(outdir), options, jobs=1).analysed == 6


def _slow_archive(root: Path, count: int) -> list[str]:
    frames = pcapgen.time_wait_pileup(count=1500)
    data = pcapgen.pcap_bytes(frames)
    return [_write(root / f"rot-{i:02d}.pcap", data) for i in range(count)]


def test_a_kill_midway_then_rerun_completes_without_duplicates(tmp_path):
    paths = _slow_archive(tmp_path / "slow", 6)
    outdir = tmp_path / "out"
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowlens", "batch", str(tmp_path / "slow"), "-o", str(outdir), "--jobs", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    ledger = outdir / "_state" / "tasks"
    deadline = time.monotonic() + 60
    try:
        while not (ledger.is_dir() and any(n.endswith(".json") for n in os.listdir(ledger))):
            assert proc.poll() is None, "the batch ended before the first capture was written"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, the forkserver and its worker
        proc.wait()
    done_at_kill = len([n for n in os.listdir(ledger) if n.endswith(".json")])
    assert 1 <= done_at_kill < len(paths)
    result = run_batch([str(tmp_path / "slow")], str(outdir), BatchOptions(report=False), jobs=2)
    assert result.already_done == done_at_kill and result.analysed == len(paths) - done_at_kill
    conns = _dataset(outdir, "connections")
    assert len(conns) == 1500 * len(paths)
    assert conns.groupby("capture_path").size().to_dict() == {p: 1500 for p in paths}
    assert not conns.duplicated(["capture_path", "uid"]).any()
    assert not [p for p in outdir.rglob("*") if p.name.endswith(".tmp")]


def test_files_left_by_a_kill_between_parquet_and_ledger_are_removed(archive_dir, tmp_path):
    outdir = tmp_path / "out"
    run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1)
    before = _dataset(outdir, "connections")
    part = next((outdir / "connections").glob("date=*"))
    victim = next(part.glob("incident*.parquet"))
    ledger = outdir / "_state" / "tasks" / victim.name.replace(".parquet", ".json")
    ledger.unlink()  # as if killed after the Parquet file was renamed into place
    shutil.copy(victim, part / "stray-0123456789.parquet")  # a file no entry names
    (part / ".x.parquet.1234.tmp").write_bytes(b"PAR1 half")  # a temporary never renamed
    result = run_batch([str(archive_dir)], str(outdir), BatchOptions(report=False), jobs=1)
    assert result.analysed == 1 and result.removed_orphans == 4  # + the anomalies file
    pd.testing.assert_frame_equal(_dataset(outdir, "connections"), before)


def test_atomic_write_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "x.parquet"
    target.write_bytes(b"old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_write(str(target), boom)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.parquet"]


def test_one_batch_at_a_time_per_output_directory(tmp_path):
    with (
        Store(str(tmp_path / "out")),
        pytest.raises(FlowlensError, match="another flowlens batch is writing here"),
        Store(str(tmp_path / "out")),
    ):
        pass


def _crash_on(item):
    if item == "crash":
        os._exit(3)  # a worker killed by the OOM killer looks like this
    return item * 2


def test_a_worker_that_dies_fails_its_task_and_the_rest_go_on():
    from flowlens.batch.run import _LocalPool, _map_unordered

    pool, seen = _LocalPool(2), {}
    try:
        _map_unordered(
            pool,
            _crash_on,
            [1, 2, "crash", 3, 4],
            lambda item, res, exc: seen.setdefault(item, (res, exc)),
        )
    finally:
        pool.close(abort=False)
    assert {k: v[0] for k, v in seen.items() if k != "crash"} == {1: 2, 2: 4, 3: 6, 4: 8}
    assert "worker process died" in str(seen["crash"][1])


# ------------------------------------------------------------------ rotation sets


@pytest.fixture()
def rotation(tmp_path):
    """A download and five short connections cut into three files, as tcpdump -C would: the
    download spans all three."""
    frames = pcapgen.bulk_download() + pcapgen.time_wait_pileup(
        count=5, interval=0.05, t=pcapgen.T0 + 0.1, sport=8080
    )
    frames.sort(key=lambda f: f[0])
    third = len(frames) // 3
    root = tmp_path / "rot"
    for i, part in enumerate([frames[:third], frames[third : 2 * third], frames[2 * third :]]):
        data = pcapgen.pcap_bytes(part)
        _write(
            root / f"trace-{i}.pcap.gz" if i == 1 else root / f"trace-{i}.pcap",
            pcapgen.compress(data, "gzip") if i == 1 else data,
        )
    return root


def test_rotation_sets_chain_files_that_follow_each_other(rotation, tmp_path):
    probes = [probe_file(str(p)) for p in sorted(rotation.iterdir())]
    assert [len(s) for s in rotation_sets(probes, 1.0)] == [3]
    other = _write(tmp_path / "elsewhere" / "x.pcap", pcapgen.pcap_bytes(pcapgen.clean_close()))
    late = _write(
        rotation / "late.pcap", pcapgen.pcap_bytes(pcapgen.clean_close(t=pcapgen.T0 + 3600))
    )
    sets = rotation_sets(probes + [probe_file(other), probe_file(late)], 1.0)
    assert sorted(len(s) for s in sets) == [1, 1, 3]


def test_without_merging_a_connection_across_files_is_split(rotation, tmp_path):
    plain, merged = tmp_path / "plain", tmp_path / "merged"
    run_batch([str(rotation)], str(plain), BatchOptions(report=False), jobs=2)
    run_batch(
        [str(rotation)], str(merged), BatchOptions(report=False, merge_consecutive=True), jobs=2
    )
    a, b = _dataset(plain, "connections"), _dataset(merged, "connections")
    download = lambda f: f[(f["id.resp_p"] == 80) & (f["id.orig_p"] == 40000)]  # noqa: E731
    assert len(download(a)) == 3  # one piece per file, the later two mid-stream
    assert list(download(a)["originator_inferred"]) == [False, True, True]
    assert len(download(b)) == 1
    row = download(b).iloc[0]
    assert (row["conn_state"], row["originator_inferred"], row["capture"]) == (
        "SF",
        False,
        "trace-0.pcap",
    )
    assert len(b) == 6
    summary = pd.read_parquet(merged / "summary.parquet")
    assert summary["rotation_set"].nunique() == 1 and summary["rotation_set"].notna().all()
    assert list(summary["frame_offset"]) == [
        0,
        summary["packets"][0],
        summary["packets"][0] + summary["packets"][1],
    ]
    again = run_batch(
        [str(rotation)], str(merged), BatchOptions(report=False, merge_consecutive=True), jobs=2
    )
    assert again.already_done == 3


def test_merging_after_a_plain_run_replaces_the_pieces(rotation, tmp_path):
    outdir = tmp_path / "out"
    run_batch([str(rotation)], str(outdir), BatchOptions(report=False, verify=True), jobs=2)
    assert len(_dataset(outdir, "connections")) == 6 + 2  # the download in three pieces
    run_batch(
        [str(rotation)], str(outdir), BatchOptions(report=False, merge_consecutive=True), jobs=2
    )
    assert len(_dataset(outdir, "connections")) == 6
    run_batch([str(rotation)], str(outdir), BatchOptions(report=False), jobs=2)
    assert len(_dataset(outdir, "connections")) == 6 + 2


# ------------------------------------------------------------------ progress


def test_progress_is_drawn_only_on_a_terminal():
    assert progress_for(io.StringIO()) is None
    master, slave = pty.openpty()
    try:
        with os.fdopen(os.dup(slave), "w") as tty:
            assert progress_for(tty) is not None
    finally:
        os.close(master)
        os.close(slave)


def _run_cli(args: list[str], stderr_tty: bool) -> str:
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        COLUMNS="100",
    )
    cmd = [sys.executable, "-m", "flowlens", "batch", *args]
    if not stderr_tty:
        return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120).stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    return b"".join(chunks).decode(errors="replace")


def test_the_progress_bar_appears_on_a_tty_and_not_in_a_pipe(tmp_path):
    root = tmp_path / "caps"
    for name in ("clean-close", "refused", "close-wait"):
        _write(root / f"{name}.pcap", pcapgen.pcap_bytes(pcapgen.SCENARIOS[name]()))
    tty = _run_cli(
        [str(root), "-o", str(tmp_path / "a"), "--jobs", "1", "--no-report"], stderr_tty=True
    )
    assert "analysing:" in tty and "3/3 captures" in tty and "pkt/s" in tty
    piped = _run_cli(
        [str(root), "-o", str(tmp_path / "b"), "--jobs", "1", "--no-report"], stderr_tty=False
    )
    assert "analysing" not in piped and "\r" not in piped
    assert piped.startswith("3 captures: 3 analysed")


# ------------------------------------------------------------------ schema and report


def test_every_record_field_has_a_parquet_type():
    from flowlens.core.arrow import COLUMN_TYPES

    assert set(RECORD_FIELDS) <= set(COLUMN_TYPES)
    assert CONNECTION_SCHEMA.names[: len(RECORD_FIELDS)] == list(RECORD_FIELDS)


def test_report_tables_count_what_the_datasets_hold(archive_dir, tmp_path):
    outdir = tmp_path / "out"
    result = run_batch(
        [str(archive_dir)],
        str(outdir),
        BatchOptions(),
        jobs=2,
        report_writer=archive.archive_report,
    )
    html = Path(result.report).read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "broken.pcap.gz" in html and CORRUPT_ERROR in html
    conns, anomalies = archive.load_connections(str(outdir)), archive.load_anomalies(str(outdir))
    hosts = archive.host_table(conns, anomalies).set_index("host")
    # CLOSE_WAIT is held by the server of close-wait.pcap and of the incident's leak
    assert hosts.loc[pcapgen.SERVER4, "close_wait"] == 2
    assert hosts.loc[pcapgen.CLIENT4, "refused"] == 3 + 1  # the incident's database, refused.pcapng
    trends = archive.trend_tables(conns, anomalies, "1min")
    assert trends["connections"].sum().sum() == 2 * len(
        conns[
            conns["id.orig_h"].isin(trends["connections"].columns)
            & conns["id.resp_h"].isin(trends["connections"].columns)
        ]
    )
    assert set(trends["rtt"].columns) >= {f"{pcapgen.SERVER4}:8080"}
    kinds = archive.anomaly_kinds(anomalies)
    assert kinds["findings"].sum() == len(anomalies)


def test_time_buckets_follow_the_span():
    assert archive.bucket_for(600)[1] == "minute"
    assert archive.bucket_for(86400)[1] == "hour"
    assert archive.bucket_for(30 * 86400)[1] == "day"
    assert archive.bucket_for(400 * 86400)[1] == "week"

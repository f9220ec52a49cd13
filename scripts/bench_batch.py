"""Benchmark `flowlens batch`: the speed-up of --jobs 2 over --jobs 1 on an archive of copies of
one mid-size capture, as a ratio of medians measured in one run (these machines are noisy).

    python scripts/bench_batch.py                      # 20 copies of time_wait_pileup(count=3000)
    python scripts/bench_batch.py --copies 40 --gzip   # more, gzipped
    python scripts/bench_batch.py --capture F.pcap     # copies of an existing capture
    python scripts/bench_batch.py --incremental [--capture F.pcap]
                                                       # appending a file to a 24-file set
    python scripts/bench_batch.py --large [--capture F.pcap]
                                                       # one large set, sharded or not

Each round runs `python -m flowlens batch ARCHIVE -o FRESH_OUTDIR --jobs N --no-report` for
N = 1 and N = 2, in alternation, so both see the same machine load. The whole command is timed
(interpreter start, pool start, analysis, anomalies, Parquet), which is what a user waits for.
The task CPU time (summary.json's cpu_s) and the load average are printed beside each run, and
each round first measures the machine's ceiling (two busy loops in two processes vs one): on a
machine that other work keeps busy, --jobs 2 cannot get two cores, and the ratio then shows that
rather than flowlens's scaling. Compare the speed-up with the ceiling.

With `--incremental`, one capture (the generated one, or a plain pcap given with --capture) is
cut into a 24-file rotation set, and each round times `--merge-consecutive --jobs 1` over the
whole set in a fresh OUTDIR against the same command after a run over its first 23 files (the
24th appended, as tcpdump rotates): issue 21's "appending one file to a 24-file rotation set
re-reads only that file". The re-run's own line says how many files it did not read again.

With `--large`, one large capture (a generated one of 100,000 short connections and a download,
1.1M packets: `--connections N`; or --capture) is cut
into a 4-file rotation set (`--files N`; 1: a plain capture), the only task of the batch, and
each round times
`--merge-consecutive --jobs 2` with `--shard-above off` (one task on one worker: the other one
idles) against `--shard-above 0` (one hash shard per worker, merged by the driver): issue 21's
"batch gives each worker hash shards of a rotation set instead of whole sets when a set is
large". Both write the same rows (tests/test_batch_sharded.py). The unsharded set also saves
its checkpoints ("Incremental rotation sets" in docs/batch.md), which a sharded one does not:
`--files 1` compares the sharding alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def make_archive(folder: Path, copies: int, capture: Path | None, gzip: bool) -> tuple[int, int]:
    """`copies` files in `folder`; returns (bytes per copy, packets per copy)."""
    import pcapgen

    if capture is not None:
        data = capture.read_bytes()
        packets = None
    else:
        frames = pcapgen.time_wait_pileup(count=3000)
        data = pcapgen.pcap_bytes(frames)
        packets = len(frames)
    if gzip:
        data = pcapgen.compress(data, "gzip")
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".pcap.gz" if gzip else ".pcap"
    for i in range(copies):
        (folder / f"trace-{i:03d}{suffix}").write_bytes(data)
    return len(data), packets or 0


def run(archive: Path, outdir: Path, jobs: int) -> tuple[float, float]:
    """(wall seconds of the whole command, CPU seconds its workers spent in tasks)."""
    shutil.rmtree(outdir, ignore_errors=True)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    argv = [
        sys.executable,
        "-m",
        "flowlens",
        "batch",
        str(archive),
        "-o",
        str(outdir),
        "--jobs",
        str(jobs),
        "--no-report",
    ]
    start = time.perf_counter()
    done = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"flowlens batch failed ({done.returncode}):\n{done.stderr}")
    summary = json.loads((outdir / "summary.json").read_text())
    return elapsed, sum(c["cpu_s"] or 0 for c in summary["captures"])


def make_rotation_set(
    folder: Path, capture: Path | None, files: int = 24, connections: int = 3000
) -> int:
    """`files` consecutive pieces of one capture, as tcpdump -C cuts them; returns packets."""
    import struct

    import pcapgen

    if capture is None:
        frames = pcapgen.bulk_download(segments=2000)
        for start in range(0, connections, 20_000):  # (client ports 40000 on, per server port)
            frames += pcapgen.time_wait_pileup(
                count=min(20_000, connections - start), interval=0.002,
                t=pcapgen.T0 + 0.05 + start * 0.002, sport=8080 + start // 20_000,
            )  # fmt: skip
        frames.sort(key=lambda f: f[0])
        header, records = None, frames
    else:  # a plain pcap: its file header and its records, as they are
        data = capture.read_bytes()
        order = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        header, records, pos = data[:24], [], 24
        while pos + 16 <= len(data):
            end = pos + 16 + struct.unpack_from(order + "I", data, pos + 8)[0]
            records.append(data[pos:end])
            pos = end
    folder.mkdir(parents=True, exist_ok=True)
    size = -(-len(records) // files)
    for i in range(files):
        part = records[i * size : (i + 1) * size]
        data = pcapgen.pcap_bytes(part) if header is None else header + b"".join(part)
        (folder / f"trace-{i:04d}.pcap").write_bytes(data)
    return len(records)


def run_set(
    paths: list[Path], outdir: Path, fresh: bool = True, jobs: int = 1, extra: tuple = ()
) -> tuple[float, str]:
    """(wall seconds, the last line on stderr) of `flowlens batch --merge-consecutive` on
    `paths`, named one by one (a directory would be walked, and each file's head sniffed)."""
    if fresh:
        shutil.rmtree(outdir, ignore_errors=True)
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    )
    argv = [sys.executable, "-m", "flowlens", "batch", *map(str, paths), "-o", str(outdir)]
    argv += ["--merge-consecutive", "--jobs", str(jobs), "--no-report", *extra]
    start = time.perf_counter()
    done = subprocess.run(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"flowlens batch failed ({done.returncode}):\n{done.stderr}")
    return elapsed, done.stderr.strip().splitlines()[-1]


def incremental(capture: Path | None, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="flowlens-bench-incr-") as tmp:
        folder = Path(tmp) / "set"
        packets = make_rotation_set(folder, capture)
        paths = sorted(folder.iterdir())
        print(f"rotation set: {len(paths)} files, {packets:,} packets")
        full, again = [], []
        for r in range(rounds):
            for kind in ("full", "incremental") if r % 2 == 0 else ("incremental", "full"):
                out = Path(tmp) / f"out-{kind}"
                if kind == "full":
                    t, line = run_set(paths, out)
                    full.append(t)
                else:
                    run_set(paths[:-1], out, extra=("--incremental",))
                    t, line = run_set(paths, out, fresh=False, extra=("--incremental",))
                    again.append(t)
                print(f"  round {r + 1}: {kind:11s} {t:6.2f} s  ({line.split(';')[0]})")
        one, two = statistics.median(full), statistics.median(again)
        print(
            f"whole set: {one:.2f} s, after appending the 24th file: {two:.2f} s "
            f"(medians of {rounds}): {one / two:.1f}x"
        )


def large(capture: Path | None, rounds: int, files: int, connections: int) -> None:
    with tempfile.TemporaryDirectory(prefix="flowlens-bench-large-") as tmp:
        folder = Path(tmp) / "set"
        packets = make_rotation_set(folder, capture, files=files, connections=connections)
        paths = sorted(folder.iterdir())
        size = sum(p.stat().st_size for p in paths)
        print(f"one rotation set: {len(paths)} files, {packets:,} packets, {size / 1e6:.1f} MB")
        times: dict[str, list[float]] = {"off": [], "0": []}
        ceilings: list[float] = []
        for r in range(rounds):
            ceilings.append(ceiling())
            print(
                f"  round {r + 1}: two busy loops in 2 processes: {ceilings[-1]:.2f}x one process"
            )
            for above in ("off", "0") if r % 2 == 0 else ("0", "off"):
                out = Path(tmp) / f"out-{above}"
                t, _line = run_set(paths, out, jobs=2, extra=("--shard-above", above))
                times[above].append(t)
                summary = json.loads((out / "summary.json").read_text())
                cpu = sum(c["cpu_s"] or 0 for c in summary["captures"])
                what = "one task" if above == "off" else "2 shards"
                print(
                    f"  round {r + 1}: --jobs 2, {what}: {t:6.2f} s  (task CPU {cpu:6.2f} s, "
                    f"{cpu / t:.2f} cores busy)"
                )
        whole, shards = statistics.median(times["off"]), statistics.median(times["0"])
        print(
            f"one task: {whole:.2f} s, 2 shards: {shards:.2f} s (medians of {rounds}): "
            f"{whole / shards:.2f}x (this machine's ceiling meanwhile: "
            f"{statistics.median(ceilings):.2f}x)"
        )


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def ceiling(n: int = 10_000_000) -> float:
    """What this machine gives right now: two busy loops in two processes vs one after the
    other. Shared or oversubscribed machines (other users, autogroup scheduling) give less than
    2, and no --jobs can beat this number."""
    import multiprocessing

    start = time.perf_counter()
    _spin(n)
    _spin(n)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("forkserver").Pool(2) as pool:
        pool.map(_spin, [1, 1])  # start the workers before timing
        start = time.perf_counter()
        pool.map(_spin, [n, n])
        parallel = time.perf_counter() - start
    return serial / parallel


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=20, help="files in the archive (default 20)")
    parser.add_argument(
        "--capture", type=Path, help="copy this capture instead of the generated one"
    )
    parser.add_argument("--gzip", action="store_true", help="gzip the copies")
    parser.add_argument(
        "--rounds", type=int, default=3, help="runs per --jobs value (median is reported)"
    )
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="time a re-run after one file is appended to a 24-file rotation set instead",
    )
    parser.add_argument(
        "--large",
        action="store_true",
        help="time one large rotation set as one task vs as 2 hash shards instead",
    )
    parser.add_argument(
        "--files", type=int, default=4, help="with --large: files of the set (1: one capture)"
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=100_000,
        help="with --large: short connections in the generated capture (default 100,000)",
    )
    args = parser.parse_args()
    if args.large:
        large(args.capture, args.rounds, args.files, args.connections)
        return
    if args.incremental:
        incremental(args.capture, args.rounds)
        return

    with tempfile.TemporaryDirectory(prefix="flowlens-bench-batch-") as tmp:
        tmp = Path(tmp)
        size, packets = make_archive(tmp / "archive", args.copies, args.capture, args.gzip)
        what = f"{packets:,} packets, " if packets else ""
        print(
            f"archive: {args.copies} copies of {what}{size / 1e6:.1f} MB each; cores: {os.cpu_count()}"
        )
        times: dict[int, list[float]] = {1: [], 2: []}
        ceilings: list[float] = []
        for r in range(args.rounds):
            ceilings.append(ceiling())
            print(
                f"  round {r + 1}: two busy loops in 2 processes: {ceilings[-1]:.2f}x one process"
            )
            for jobs in (1, 2) if r % 2 == 0 else (2, 1):
                load = os.getloadavg()[0]
                t, cpu = run(tmp / "archive", tmp / f"out-{jobs}", jobs)
                times[jobs].append(t)
                # cores busy = task CPU / wall: near 2 with --jobs 2 unless other load takes a core
                print(
                    f"  round {r + 1}: --jobs {jobs}: {t:6.2f} s  (task CPU {cpu:6.2f} s, "
                    f"{cpu / t:.2f} cores busy; load average before: {load:.1f})"
                )
        # ---------------------------------------------------------------- --jobs 2 vs --jobs 1
        one, two = statistics.median(times[1]), statistics.median(times[2])
        print(f"--jobs 1: {one:.2f} s (median of {args.rounds}), --jobs 2: {two:.2f} s")
        if packets:
            total = packets * args.copies
            print(
                f"throughput: {total / one:,.0f} pkt/s with --jobs 1, {total / two:,.0f} pkt/s with --jobs 2"
            )
        print(
            f"speed-up of --jobs 2 over --jobs 1: {one / two:.2f}x "
            f"(this machine's ceiling meanwhile: {statistics.median(ceilings):.2f}x)"
        )


if __name__ == "__main__":
    main()

"""Benchmark flowlens against tcptrace and tshark on the same capture, as ratios measured in one run.

These machines are noisy, so every tool runs on the same file in the same invocation, in
alternation, and the report is the ratio of medians, never an absolute time in a test.

    python scripts/bench.py                     # make bench-out/loopback-250k.pcap if missing, then time
    python scripts/bench.py --capture F.pcap    # time on an existing capture
    python scripts/bench.py --memory            # also: peak RSS of every command at 1M and 5M packets
    python scripts/bench.py --only 'flowlens flows -j 2' --only 'flowlens flows --scheduler'
                                                # those (and `flowlens flows`, the baseline) only

What is timed (wall clock, output to /dev/null):
  flowlens flows F --format json     the whole pipeline, every connection printed (-j 1, as
                                     every baseline here: a capture of 256 MB or more would be
                                     read by every core without it)
  flowlens flows F ... -j 2          the same with two shard processes (core/shard.py); with
                                     more usable cores, also -j 4, 8 ... (the scaling curve)
  flowlens flows F ... --scheduler   the same with two shards on a Dask LocalCluster of 2 worker
                                     processes, 1 thread each, started here (core/shard.py's
                                     DaskShardedRun; the cluster's start is not timed)
  flowlens anomalies F ... -j 2      the findings, one process and two shards
  flowlens report F -o R.html        the postmortem page, against `flowlens anomalies` (time, and
                                     peak RSS measured alternately: ratios of medians)
  tcptrace -l -n F                   long output, no name lookups
  tshark -r F -q -z conv,tcp         the TCP conversation table
  read + decode                      flowlens's reader and decoder over every frame, in process
  floor                              a bare Python loop over the pcap record headers (what any
                                     pure-Python reader must at least do), for decode throughput
and the connection counts: flowlens's TCP connections vs tshark's tcp.stream count.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench-out"


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def floor_loop(path: Path) -> float:
    """Walk the pcap record headers in Python, touching nothing else."""
    start = time.perf_counter()
    with open(path, "rb") as f:
        data = f.read()
    unpack = struct.Struct("<IIII").unpack_from
    pos, n = 24, 0
    end = len(data)
    while pos + 16 <= end:
        caplen = unpack(data, pos)[2]
        pos += 16 + caplen
        n += 1
    return time.perf_counter() - start


def decode_loop(path: Path) -> float:
    """Read and decode every frame with flowlens's reader and decoder, nothing else, the way
    the pipeline does (frames read in place, every TCP option kept, as for an analyzer that needs them all)."""
    from flowlens.core.capture import open_capture
    from flowlens.core.decode import Decoder

    start = time.perf_counter()
    decode = Decoder(verify_checksums=True).decode_frame
    with open_capture(str(path)) as cap:
        for ref in cap.frames():
            decode(ref)
    return time.perf_counter() - start


def flowlens_argv(*args: str) -> list[str]:
    """The `flowlens` command users run: the console script beside this Python (the
    environment flowlens is installed in), else `python -m flowlens`."""
    script = Path(sys.executable).with_name("flowlens")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "flowlens", *args]


def tshark_streams(path: Path) -> int:
    out = subprocess.run(
        ["tshark", "-r", str(path), "-T", "fields", "-e", "tcp.stream", "-Y", "tcp"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    streams = {line for line in out.splitlines() if line}
    return len(streams)


def flowlens_tcp_connections(path: Path) -> int:
    out = subprocess.run(flowlens_argv("flows", str(path), "--format", "csv", "--proto", "tcp"),
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return max(0, len(out.splitlines()) - 1)


def packets_in(path: Path) -> int:
    with open(path, "rb") as f:
        data = f.read()
    unpack = struct.Struct("<IIII").unpack_from
    pos, n = 24, 0
    while pos + 16 <= len(data):
        pos += 16 + unpack(data, pos)[2]
        n += 1
    return n


#: runs argv[1:] and prints its peak RSS (KiB): a small parent, see peak_rss_mb
_RSS_PROBE = (
    "import os, sys\n"
    "quiet = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]\n"
    "pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=quiet)\n"
    "_pid, status, usage = os.wait4(pid, 0)\n"
    "print(usage.ru_maxrss)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def peak_rss_mb(argv: list[str]) -> float:
    """Max RSS of this one command, in MB. A child's ru_maxrss counts the memory of the process
    it was forked from, up to its exec (Linux keeps the old mm's high-water mark), so the
    command is started from a small `python -I -S` probe, not from this process (which holds a
    whole capture after `floor_loop`); os.wait4 gives that one child's own rusage
    (RUSAGE_CHILDREN would report the largest child so far, tshark's included)."""
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _RSS_PROBE, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return int(out.stdout) / 1024  # Linux: KiB


#: what `--memory` runs on the 1M- and 5M-packet captures (its output to /dev/null), in one
#: process (the 5M capture is large enough for `--jobs` to default to every core)
MEMORY_COMMANDS = (
    ("flows", ("--format", "json", "-j", "1")),
    ("anomalies", ("--format", "json", "-j", "1")),
    ("rtt", ("--format", "json", "-j", "1")),
    ("states", ("--format", "json", "-j", "1")),
    ("report", ("-o", "{out}/memory-report.html", "-j", "1")),
    ("flows", ("-j", "1")),  # the tables (reports/sorted_table.py)
    ("rtt", ("-j", "1")),
)


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _recheck(frame: bytearray, at: int, old: bytes) -> None:
    """Mend the TCP checksum (at 50: Ethernet, a 20-byte IPv4 header) after the 16-bit words
    at `at` changed from `old` (RFC 1624's incremental update: HC' = ~(~HC + ~m + m'))."""
    s = ~int.from_bytes(frame[50:52], "big") & 0xFFFF
    for k in range(0, len(old), 2):
        s += (~int.from_bytes(old[k : k + 2], "big") & 0xFFFF) + int.from_bytes(
            frame[at + k : at + k + 2], "big"
        )
    frame[50:52] = (~_fold(s) & 0xFFFF).to_bytes(2, "big")


def _sequential_connection(template, base_ts: float, i: int):
    """Connection i of write_sequential: its frames, as (ts, frame bytes), in time order."""
    port = 10000 + (i % 50000)
    isn = (i * 2654435761) & 0xFFFFFFFF
    t0 = 1_700_000_000 + i * 0.01
    for ts, raw in template:
        frame = bytearray(raw)
        from_client = frame[6:12] == b"\x02\x00\x00\x00\x00\x01"
        off = 34 if from_client else 36  # client sport / server dport field
        old = bytes(frame[off : off + 2])
        frame[off : off + 2] = port.to_bytes(2, "big")
        _recheck(frame, off, old)
        if from_client:  # shift the client's sequence numbers so each ISN is new
            old = bytes(frame[38:42])
            frame[38:42] = ((int.from_bytes(old, "big") + isn) & 0xFFFFFFFF).to_bytes(4, "big")
            _recheck(frame, 38, old)
        else:
            old = bytes(frame[42:46])
            ack = int.from_bytes(old, "big")
            if ack:
                frame[42:46] = ((ack + isn) & 0xFFFFFFFF).to_bytes(4, "big")
                _recheck(frame, 42, old)
        yield t0 + (ts - base_ts), bytes(frame)


def write_sequential(path: Path, packets: int) -> None:
    """A synthetic capture of sequential short connections (11 packets each over 18.5 ms, one
    starting every 10 ms, so about 6,000 are in TIME_WAIT at any moment), written without dpkt
    for speed: tests/pcapgen.py's clean close with a new client port and ISN each (checksums
    mended), the frames of overlapping connections merged in time order."""
    sys.path.insert(0, str(ROOT / "tests"))
    import heapq

    import pcapgen

    template = pcapgen.clean_close()
    base_ts = template[0][0]
    n_conns = packets // len(template)
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        rec = struct.Struct("<IIII")
        # a connection starts every 10 ms and lasts 18.5 ms: connection i + 2 starts after
        # connection i ends, so the even and the odd ones are each in time order
        halves = [
            (e for i in range(first, n_conns, 2)
             for e in _sequential_connection(template, base_ts, i))
            for first in (0, 1)
        ]  # fmt: skip
        for t, frame in heapq.merge(*halves, key=lambda e: e[0]):
            sec = int(t)
            f.write(rec.pack(sec, int(round((t - sec) * 1e6)), len(frame), len(frame)))
            f.write(frame)


def _more_jobs() -> list[int]:
    """-j 4, 8 ... up to the usable cores (none on a 2-core machine: -j 2 is timed anyway)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    out, n = [], 4
    while n <= (cores or 1):
        out.append(n)
        n *= 2
    return out


def _local_cluster():
    """A Dask LocalCluster of 2 worker processes with one thread each, or None (and why, on
    stderr) when distributed cannot start one here."""
    try:
        from distributed import LocalCluster

        return LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
    except Exception as exc:  # noqa: BLE001 - the benchmark goes on without it
        print(f"no Dask LocalCluster ({exc}): --scheduler not timed", file=sys.stderr)
        return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--capture", type=Path, help="capture to time (default: make a loopback one)"
    )
    parser.add_argument(
        "--packets", type=int, default=250_000, help="size of the loopback capture to make"
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs per tool (median is reported)")
    parser.add_argument(
        "--memory", action="store_true", help="also measure peak RSS at 1M and 5M packets"
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="TOOL",
        help="time only this tool (its name in the table; repeatable), beside `flowlens flows`",
    )
    args = parser.parse_args()

    OUT.mkdir(exist_ok=True)
    capture = args.capture
    if capture is None:
        capture = OUT / f"loopback-{args.packets // 1000}k.pcap"
        if not capture.exists():
            print(
                f"making {capture} (real loopback traffic, needs root and tcpdump) ...",
                file=sys.stderr,
            )
            subprocess.run([sys.executable, str(ROOT / "scripts" / "make_loopback_capture.py"), "-o", str(capture),
                            "--packets", str(args.packets)], check=True)  # fmt: skip
    n = packets_in(capture)
    tools = {
        # (-j 1: a capture of 256 MB or more is read by every core without it)
        "flowlens flows": flowlens_argv("flows", str(capture), "--format", "json", "-j", "1"),
        "flowlens anomalies": flowlens_argv(
            "anomalies", str(capture), "--format", "json", "-j", "1"
        ),
        "flowlens rtt": flowlens_argv("rtt", str(capture), "--format", "json", "-j", "1"),
        "flowlens flows -j 2": flowlens_argv("flows", str(capture), "--format", "json", "-j", "2"),
        "flowlens anomalies -j 2": flowlens_argv(
            "anomalies", str(capture), "--format", "json", "-j", "2"
        ),
        "flowlens flows --scheduler": flowlens_argv(
            "flows", str(capture), "--format", "json", "--scheduler", "(the cluster's address)"
        ),
        "flowlens report": flowlens_argv(
            "report", str(capture), "-o", str(OUT / "bench-report.html"), "-j", "1"
        ),
        "flowlens report -j 2": flowlens_argv(
            "report", str(capture), "-o", str(OUT / "bench-report-j2.html"), "-j", "2"
        ),
        # the scaling curve where the machine has more cores: -j 4, 8 ... up to its usable ones
        **{
            f"flowlens flows -j {n}": flowlens_argv(
                "flows", str(capture), "--format", "json", "-j", str(n)
            )
            for n in _more_jobs()
        },
        "tcptrace -l -n": ["tcptrace", "-l", "-n", str(capture)],
        "tshark conv,tcp": ["tshark", "-r", str(capture), "-q", "-z", "conv,tcp"],
    }
    from flowlens.cli import COMMANDS

    tools = {
        k: v for k, v in tools.items() if not k.startswith("flowlens ") or k.split()[1] in COMMANDS
    }
    tools = {k: v for k, v in tools.items() if k.startswith("flowlens") or shutil.which(v[0])}
    if args.only:
        tools = {k: v for k, v in tools.items() if k in args.only or k == "flowlens flows"}
    cluster = None
    if "flowlens flows --scheduler" in tools:
        cluster = _local_cluster()
        if cluster is None:
            del tools["flowlens flows --scheduler"]
        else:
            tools["flowlens flows --scheduler"][-1] = cluster.scheduler_address
    times: dict[str, list[float]] = {k: [] for k in tools}
    floor: list[float] = []
    decoding: list[float] = []
    rss: dict[str, list[float]] = {
        k: [] for k in ("flowlens anomalies", "flowlens report") if k in tools
    }
    for _ in range(args.rounds):  # alternate the tools so background noise hits all of them
        for name, argv in tools.items():
            times[name].append(timed(argv))
        for name in rss:
            rss[name].append(peak_rss_mb(tools[name]))
        floor.append(floor_loop(capture))
        decoding.append(decode_loop(capture))
    med = {k: statistics.median(v) for k, v in times.items()}
    ours = med["flowlens flows"]
    print(f"capture: {capture} ({n:,} packets, {capture.stat().st_size / 1e6:.1f} MB)")
    from flowlens.compiled import describe

    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; flowlens: {describe()}"
    )
    print()
    print(f"{'tool':22s} {'median s':>9s} {'pkts/s':>10s}  ratio to flowlens flows")
    for name, t in med.items():
        print(f"{name:22s} {t:9.2f} {n / t:10,.0f}  {t / ours:5.2f}x")
    f = statistics.median(floor)
    d = statistics.median(decoding)
    print(f"{'read + decode':22s} {d:9.3f} {n / d:10,.0f}  {d / ours:5.2f}x")
    print(f"{'floor (record walk)':22s} {f:9.3f} {n / f:10,.0f}  {f / ours:5.2f}x")
    print()
    if "tcptrace -l -n" in med:
        print(
            f"flowlens flows / tcptrace      = {ours / med['tcptrace -l -n']:.2f}  (target <= 0.5)"
        )
    if "tshark conv,tcp" in med:
        print(
            f"flowlens flows / tshark        = {ours / med['tshark conv,tcp']:.2f}  (target <= 0.25)"
        )
    print(f"read + decode / floor          = {d / f:.1f}  (target <= 3)")
    print(f"flowlens flows / floor         = {ours / f:.1f}  (whole pipeline, not only decoding)")
    for extra in ("flowlens anomalies", "flowlens rtt"):
        if extra in med:
            print(f"{extra} / flowlens flows = {med[extra] / ours:.2f}  (target <= 1.5)")
    if len(rss) == 2:
        rep, ano = "flowlens report", "flowlens anomalies"
        r_rss, a_rss = statistics.median(rss[rep]), statistics.median(rss[ano])
        print(f"flowlens report / anomalies    = {med[rep] / med[ano]:.2f}  (time, target <= 3)")
        print(
            f"flowlens report / anomalies    = {r_rss / a_rss:.2f}  (peak RSS {r_rss:.0f} / "
            f"{a_rss:.0f} MB, target <= 2)"
        )
    if shutil.which("tshark"):
        print(
            f"connections: flowlens {flowlens_tcp_connections(capture):,} tcp, tshark {tshark_streams(capture):,} tcp.stream"
        )

    if "flowlens flows -j 2" in med:
        sys.path.insert(0, str(ROOT / "scripts"))
        from bench_batch import ceiling  # two busy loops in two processes vs one

        reach = ceiling()
        print(
            f"flowlens flows -j 1 / -j 2      = {ours / med['flowlens flows -j 2']:.2f}  (target >= 1.7; "
            f"two busy loops reach {reach:.2f}x here now)"
        )
        if "flowlens anomalies -j 2" in med:
            one, two = med["flowlens anomalies"], med["flowlens anomalies -j 2"]
            print(
                f"flowlens anomalies -j 1 / -j 2  = {one / two:.2f}  (target >= 1.7; "
                f"two busy loops reach {reach:.2f}x here now)"
            )
        if "flowlens report -j 2" in med and "flowlens report" in med:
            one, two = med["flowlens report"], med["flowlens report -j 2"]
            print(f"flowlens report -j 1 / -j 2     = {one / two:.2f}")

    curve = [n for n in _more_jobs() if f"flowlens flows -j {n}" in med]
    if curve:
        print("scaling curve (flowlens flows, cores used: speed-up over -j 1):")
        for n in curve:
            print(f"  -j {n}: {ours / med[f'flowlens flows -j {n}']:.2f}x")

    if cluster is not None and "flowlens flows --scheduler" in med:
        dask = med["flowlens flows --scheduler"]
        two = med.get("flowlens flows -j 2")
        print(
            f"flowlens flows -j 1 / --scheduler = {ours / dask:.2f}  (2 shards on a LocalCluster "
            f"of 2 worker processes{f'; -j 1 / -j 2 = {ours / two:.2f}' if two else ''})"
        )
        if args.memory:  # the merging process holds about two batches per shard, not a shard
            for millions in (1, 5):
                path = OUT / f"sequential-{millions}M.pcap"
                if not path.exists():
                    write_sequential(path, millions * 1_000_000)
                argv = flowlens_argv("flows", str(path), "--format", "json")
                there = peak_rss_mb([*argv, "--scheduler", cluster.scheduler_address])
                print(
                    f"peak RSS of flows --scheduler on {millions}M packets of sequential short "
                    f"connections, the merging process (its workers apart): {there:.0f} MB"
                )
    if cluster is not None:
        cluster.close()

    if args.memory:
        print()
        print("peak RSS on sequential short connections (MB at 1M, 5M, ratio):")
        paths = {}
        for millions in (1, 5):
            path = paths[millions] = OUT / f"sequential-{millions}M.pcap"
            if not path.exists():
                write_sequential(path, millions * 1_000_000)
        for name, args_ in MEMORY_COMMANDS:
            rss = [
                peak_rss_mb(flowlens_argv(name, str(paths[m]), *(a.format(out=OUT) for a in args_)))
                for m in (1, 5)
            ]
            label = " ".join((name, *args_)).format(out="OUT")
            print(
                f"  {label:<44} {rss[0]:6.0f} {rss[1]:6.0f}  {rss[1] / rss[0]:.2f}x  (target <= 1.10x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())

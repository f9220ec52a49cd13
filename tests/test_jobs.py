"""`--jobs N`: hash shards of one capture's connections in N processes, merged into the stream
one process gives, byte for byte (flowlens.core.shard)."""

from __future__ import annotations

import json
import os
import random
import re
import threading
from pathlib import Path

import pcapgen
import pytest
from click.testing import CliRunner
from corpus import captures, needs_corpus

from flowlens.analyzers.anomalies.detector import AnomalyDetector
from flowlens.analyzers.service_id import ServiceAnalyzer
from flowlens.analyzers.tcpanalysis import TcpAnalyzer
from flowlens.cli import cli
from flowlens.commands._stream import ConnectionStream
from flowlens.compiled import compiled_modules
from flowlens.core.capture import open_capture
from flowlens.core.connections import Config, format_addr
from flowlens.core.decode import Decoder
from flowlens.core.pipeline import (
    SLOTS,
    Pipeline,
    flow_owner,
    owner,
    peek_route,
    quote_route,
    route,
    shard_split,
)
from flowlens.core.shard import (
    _INBOX_MAX,
    FIRST_WEIGHT,
    ShardedRun,
    _Inbox,
    _merged,
    _write_message,
    first_slots,
)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted(p for p in (ROOT / "sample_pcaps").iterdir() if p.name != "README.md")
#: a Zeek log's #open/#close lines carry the time it was written
_WRITTEN = re.compile(rb"^#(open|close)\t.*$", re.M)


def run(*args: str):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result


def same_bytes(a, b, fmt: str) -> None:
    out_a, out_b = a.stdout_bytes, b.stdout_bytes
    if fmt == "zeek":
        out_a, out_b = _WRITTEN.sub(b"#\\1", out_a), _WRITTEN.sub(b"#\\1", out_b)
    assert out_a == out_b
    assert a.stderr_bytes == b.stderr_bytes


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_flows_on_every_sample_is_the_same_with_any_number_of_jobs(sample):
    one = run("flows", sample, "--format", "json")
    assert one.stdout_bytes  # (every sample has connections)
    for jobs in (2, 4):
        same_bytes(one, run("flows", sample, "--format", "json", "--jobs", jobs), "json")


COMMANDS = [
    ("rtt", "--format", "json"),
    ("rtt", "--by", "server", "--format", "json"),
    ("rtt", "--by", "pair", "--format", "csv"),
    ("rtt", "--samples", "--format", "json"),
    ("rtt",),
    ("states", "--format", "json"),
    ("states", "--at", "end", "--format", "json"),
    ("states", "--listening", "--format", "json"),
    ("states", "--state", "time-wait", "--wide"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_rtt_and_states_are_the_same_with_jobs(sample, args):
    """Each shard makes its connections' rows or parts (RTT groups, socket spans, listeners),
    and the merging process adds them in the one-process order."""
    one = run(args[0], sample, *args[1:])
    same_bytes(one, run(args[0], sample, *args[1:], "-j", 3), "json")


def test_rtt_and_states_plots_are_drawn_from_the_same_series(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    monkeypatch.setitem(matplotlib.rcParams, "svg.hashsalt", "flowlens")  # stable SVG ids
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")  # and a fixed date in the SVG's metadata
    path = ROOT / "sample_pcaps" / "incident.pcap"
    for cmd in ("rtt", "states"):
        run(cmd, path, "--plot", tmp_path / f"{cmd}-1.svg")
        run(cmd, path, "--plot", tmp_path / f"{cmd}-2.svg", "-j", 2)
        one, two = ((tmp_path / f"{cmd}-{n}.svg").read_bytes() for n in (1, 2))
        assert b"<path" in one and one == two, cmd


@pytest.mark.parametrize("fmt", ["table", "csv", "zeek", "zeek-json"])
@pytest.mark.parametrize("sample", ["incident.pcap", "udp-unreachable.pcap", "port-reuse.pcap"])
def test_flows_every_format_is_the_same_with_jobs(sample, fmt):
    path = ROOT / "sample_pcaps" / sample
    one = run("flows", path, "--format", fmt, "--wide")
    same_bytes(one, run("flows", path, "--format", fmt, "--wide", "-j", 3), fmt)


@pytest.mark.parametrize("sample", ["incident.pcap", "syn-scan.pcap", "udp-dns.pcap"])
def test_flows_with_services_is_the_same_with_jobs(sample):
    path = ROOT / "sample_pcaps" / sample
    one = run("flows", path, "--format", "json", "--services")
    same_bytes(one, run("flows", path, "--format", "json", "--services", "-j", 2), "json")


def test_flows_parquet_is_the_same_with_jobs(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    path = ROOT / "sample_pcaps" / "incident.pcap"
    run("flows", path, "--format", "parquet", "-o", tmp_path / "one.parquet")
    run("flows", path, "--format", "parquet", "-o", tmp_path / "two.parquet", "-j", 2)
    assert pq.read_table(tmp_path / "one.parquet").equals(pq.read_table(tmp_path / "two.parquet"))


def test_filters_apply_in_the_shards():
    path = ROOT / "sample_pcaps" / "incident.pcap"
    args = ("flows", path, "--format", "json", "--state", "time-wait", "--port", "8080")
    one = run(*args)
    assert one.stdout_bytes.count(b"\n") >= 1
    same_bytes(one, run(*args, "-j", 2), "json")


@pytest.mark.parametrize(
    "name",
    ["vxlan", "geneve", "gre", "ipip", "teredo", "gtpv1", "ayiya"],
)
def test_a_tunnel_and_what_it_carries_stay_in_one_shard(tmp_path, name):
    """The outer UDP flow (or IP tunnel) and the inner connections share the outermost
    header's route, so each shard's records are whole: tunnel_parents name the outer flow."""
    inner = pcapgen.clean_close() + pcapgen.udp_exchange()
    inner.sort(key=lambda f: f[0])
    path = tmp_path / f"{name}.pcap"
    pcapgen.write_pcap(path, pcapgen.encapsulate(inner, name))
    one = run("flows", path, "--format", "json")
    assert b"tunnel_parents" in one.stdout_bytes
    for jobs in (2, 5):
        same_bytes(one, run("flows", path, "--format", "json", "-j", jobs), "json")


def test_an_icmp_error_reaches_the_shard_of_the_flow_it_quotes(tmp_path):
    """The error's own ICMP flow is routed by its addresses; the flow it quotes may live in
    another shard, which attaches the error to it (the records say so either way)."""
    frames = pcapgen.udp_port_unreachable()
    path = tmp_path / "unreachable.pcap"
    pcapgen.write_pcap(path, frames)
    one = run("flows", path, "--format", "json")
    for jobs in range(2, 9):  # some of these split the error from the flow it quotes
        same_bytes(one, run("flows", path, "--format", "json", "-j", jobs), "json")
    # and the quoted flow does carry the error, so the test above had something to carry
    assert b'"icmp' in one.stdout_bytes


def test_routes_are_symmetric_and_spread(tmp_path):
    """Both directions of a connection land in one shard; Linux's even client ports (connect()
    prefers them) still spread over two shards."""
    frames = pcapgen.time_wait_pileup(count=64)
    path = tmp_path / "pile.pcap"
    pcapgen.write_pcap(path, frames)
    by_port: dict = {}
    decoder = Decoder()
    with open_capture(str(path)) as cap:
        for ref in cap.frames():
            pkt = decoder.decode_frame(ref)
            port = pkt.sport if pkt.dport == 80 else pkt.dport
            by_port.setdefault(port, set()).add(route(pkt, 2))
            assert quote_route(pkt, 2) == -1  # (no ICMP error here)
    assert all(len(s) == 1 for s in by_port.values())  # both directions, one shard
    shards = [next(iter(s)) for s in by_port.values()]
    assert 20 <= shards.count(0) <= 44, shards


def peek_agrees(path) -> int:
    """Every frame `peek_route` can tell from its raw headers goes where `route` sends its
    decoded packet, for any number of shards; returns how many it could tell."""
    decoder, told = Decoder(), 0
    with open_capture(str(path)) as cap:
        for ref in cap.frames():
            r = {n: peek_route(ref, n) for n in (2, 3, 7)}
            pkt = decoder.decode_frame(ref)
            if r[2] < 0:
                continue
            told += 1
            if pkt is None:  # a frame the decoder skips (its owner alone counts it)
                continue
            assert pkt.encap is None and pkt.proto == 6, ref.frame
            assert r == {n: route(pkt, n) for n in r}, ref.frame
    return told


def test_peek_route_is_route_on_every_sample():
    told = sum(peek_agrees(p) for p in SAMPLES)
    if "core.pipeline" in compiled_modules():
        assert told > 1000  # (TCP segments in Ethernet, IPv6 and VLAN, SLL2, nanosecond pcapng)


def test_a_failing_shard_stops_the_run_with_its_error(tmp_path):
    path = tmp_path / "x.pcap"
    pcapgen.write_pcap(path, pcapgen.clean_close())

    def work(conn):
        raise ValueError("boom")

    run_ = ShardedRun(lambda shard: (Pipeline(str(path), shard=shard), work), lambda p: None, 2)
    with pytest.raises(RuntimeError, match="boom"):
        list(run_)


def test_a_shard_process_that_dies_stops_the_run(tmp_path):
    """A forked shard that ends without its result (killed, out of memory): the run stops
    with a RuntimeError naming it, it does not wait."""
    path = tmp_path / "x.pcap"
    pcapgen.write_pcap(path, pcapgen.time_wait_pileup(count=40))

    def setup(shard):
        work = (lambda c: os._exit(3)) if shard[0] == 1 else (lambda c: c.uid)
        return Pipeline(str(path), shard=shard), work

    with pytest.raises(RuntimeError, match="shard 1 of 2 failed:\nits process ended"):
        list(ShardedRun(setup, lambda p: None, 2))


def test_shard_zero_runs_on_its_own_copy_in_this_process(tmp_path):
    """Shard 0 runs in the merging process, on a copy of `setup` (as a forked or Dask shard
    has): what its `work` changes is not this process's; the items are the one process's."""
    path = tmp_path / "x.pcap"
    pcapgen.write_pcap(path, pcapgen.time_wait_pileup(count=60))
    touched: list = []

    def setup(shard):
        def work(c):
            touched.append((shard[0], os.getpid()))
            return c.uid

        return Pipeline(str(path), shard=shard), work

    want = [c.uid for c in Pipeline(str(path))]
    run_ = ShardedRun(setup, lambda p: (os.getpid(), p.shard), 3)
    assert list(run_) == want
    assert touched == []  # (shard 0's appends went to its copy of the list)
    assert run_.finished[0][0] == os.getpid() and run_.finished[0][1][:2] == (0, 3)  # here
    assert len({pid for pid, _ in run_.finished}) == 3


def test_stopping_early_ends_the_forked_shards_quietly(tmp_path, capfd):
    """A caller that stops after the first list (a `| head`): the forked shards, still
    writing, see their pipe closed and end at once, without a traceback."""
    path = tmp_path / "x.pcap"
    pcapgen.write_pcap(path, pcapgen.time_wait_pileup(count=3000, interval=0.001))
    run_ = ShardedRun(
        lambda shard: (Pipeline(str(path), shard=shard), lambda c: c.uid * 50), lambda p: None, 2
    )
    chunks = run_.chunks()
    assert next(chunks)
    procs = list(run_._procs)
    chunks.close()
    for proc in procs:
        proc.join(timeout=10)
        assert not proc.is_alive()
    assert "Traceback" not in capfd.readouterr().err


def test_shard_zero_owns_its_weighted_share_of_the_hash():
    """core/pipeline.py's split: shard 0 owns `first` of the SLOTS slots, the other shards
    split the rest evenly; (k, n) alone is an even split. Over 20,000 random flows the shares
    come out as the slots say, within 2 %."""
    rng = random.Random(3)
    flows = [
        (rng.randbytes(4), rng.randbytes(4), rng.randrange(65536), rng.randrange(65536))
        for _ in range(20_000)
    ]
    for n in (2, 3, 4):
        for first in (0, shard_split(n), first_slots(n), SLOTS // 5, SLOTS):
            counts = [0] * n
            for a, b, pa, pb in flows:
                k = flow_owner(a, b, pa, pb, 6, n, first)
                assert k == flow_owner(b, a, pb, pa, 6, n, first)  # (either way round)
                counts[k] += 1
            want = [first / SLOTS] + [(1 - first / SLOTS) / (n - 1)] * (n - 1)
            assert all(abs(c / len(flows) - w) < 0.02 for c, w in zip(counts, want)), (n, first)
    assert first_slots(2) == round(FIRST_WEIGHT / 2 * SLOTS) and shard_split(2) == SLOTS // 2


@pytest.mark.parametrize("weight", [0.0, 0.5, 1.9])
def test_any_share_of_shard_zero_gives_the_same_items(tmp_path, weight):
    """Whichever share of the connections shard 0 (the merging process) reads, none of it,
    a quarter or nearly all: the items and their order are the one process's."""
    path = tmp_path / "x.pcap"
    frames = pcapgen.time_wait_pileup(count=80) + pcapgen.incident()
    pcapgen.write_pcap(path, sorted(frames, key=lambda f: f[0]))
    want = [c.to_record() for c in Pipeline(str(path), analyzers=[TcpAnalyzer()])]
    for jobs in (2, 3):
        run_ = ShardedRun(
            lambda shard: (
                Pipeline(str(path), analyzers=[TcpAnalyzer()], shard=shard),
                lambda c: c.to_record(),
            ),
            Pipeline.shard_facts,
            jobs,
            first_weight=weight,
        )
        assert list(run_) == want
        assert run_.first == first_slots(jobs, weight)


def test_an_inbox_gives_whole_messages_in_order_past_its_cap():
    """core/shard.py's `_Inbox`: messages from a writer that fills the pipe, of sizes from a
    byte to past the inbox's cap (which bounds `drain`, never `message`), come out whole and
    in order, however the reads cut them."""
    sizes = [1, 70_000, 3, _INBOX_MAX + 12_345, 0, 1 << 20, 5]
    messages = [("items", bytes([i]) * n) for i, n in enumerate(sizes)] + [("done", None)]
    read, write = os.pipe()

    def writer():
        for m in messages:
            _write_message(write, __import__("pickle").dumps(m))
        os.close(write)

    thread = threading.Thread(target=writer)
    thread.start()
    box = _Inbox(1, read)
    got = []
    for i in range(len(messages)):
        if i % 2:
            box.drain()  # (takes what is there, stops at the cap)
            assert len(box.buf) <= _INBOX_MAX + (1 << 20)
        got.append(box.message())
    thread.join()
    assert got == messages
    assert box.message() == ("crash", "its process ended before it sent its result")
    box.close()


def test_the_batch_merge_gives_the_one_sorted_order():
    """core/shard.py's `_merged` cuts each shard's batch at the smallest last key of the live
    shards: on random streams (1-4 shards, random batch sizes, shards ending at different
    times, several entries of one frame) its lists are the entries in key order, each once."""
    rng = random.Random(7)
    for _ in range(2000):
        n = rng.randint(1, 4)
        keys = sorted(rng.sample(range(5000), rng.randint(0, 200)))
        streams: list[list] = [[] for _ in range(n)]
        for x in keys:
            streams[rng.randrange(n)].append((x // 3, (x,), f"item {x}"))

        def batches(entries):
            i = 0
            while i < len(entries):
                size = rng.randint(1, 16)
                yield entries[i : i + size]
                i += size

        lists = list(_merged([batches(s) for s in streams], frames=False))
        assert [item for chunk in lists for item in chunk] == [f"item {x}" for x in keys]
        assert all(lists)  # (no empty list)
        framed = list(_merged([batches(s) for s in streams], frames=True))
        assert [e for chunk in framed for e in chunk] == [(x // 3, f"item {x}") for x in keys]


def test_jobs_on_stdin_reads_with_one_process():
    path = ROOT / "sample_pcaps" / "clean-close.pcap"
    result = CliRunner().invoke(
        cli, ["flows", "-", "--format", "json", "-j", "2"], input=path.read_bytes()
    )
    assert result.exit_code == 0
    assert "--jobs needs a capture file; read by one process" in result.stderr
    assert result.stdout_bytes == run("flows", path, "--format", "json").stdout_bytes


def test_an_unreadable_capture_fails_before_forking(tmp_path):
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"not a capture at all")
    result = CliRunner().invoke(cli, ["flows", str(bad), "-j", "2"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and str(bad) in result.stderr
    assert result.stderr.count("\n") == 1


@needs_corpus
@pytest.mark.parametrize("path", captures(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_corpus_records_are_the_same_in_shards(path):
    """Every corpus capture: the records and their order, one process against 2 and 3, and
    the raw-header route agrees with the decoded one on every frame it can tell."""

    def one():
        return [c.to_record() for c in Pipeline(str(path), analyzers=[TcpAnalyzer()])]

    try:
        want = one()
    except Exception as exc:  # (a capture flowlens refuses is refused the same way below)
        pytest.skip(f"not a capture flowlens reads: {exc}")
    for jobs in (2, 4):
        got = list(
            ShardedRun(
                lambda shard: (
                    Pipeline(str(path), analyzers=[TcpAnalyzer()], shard=shard),
                    lambda c: c.to_record(),
                ),
                Pipeline.shard_facts,
                jobs,
            )
        )
        assert got == want
    peek_agrees(path)


def test_damage_is_counted_once_across_shards(tmp_path):
    """Frames the decoder skips are counted by one shard each: a TCP segment whose IPv4 header
    checksum is bad (its owner, told by its raw headers), a non-IP frame and a truncated one
    (shard 0, which decodes every frame no header tells); then a capture cut mid-record."""
    frames = pcapgen.time_wait_pileup(count=40)
    damaged = []
    for i, (ts, buf) in enumerate(frames):
        if i % 7 == 3:  # a bad IPv4 header checksum: dropped before connection handling
            buf = buf[:24] + bytes([buf[24] ^ 0xFF]) + buf[25:]
        damaged.append((ts, buf))
    t0 = frames[0][0]
    damaged.append((t0 + 0.5, b"\xff" * 12 + b"\x08\x06" + b"\x00" * 28))  # ARP
    damaged.append((t0 + 0.6, frames[0][1][:20]))  # Ethernet + 6 bytes of IPv4
    damaged.sort(key=lambda f: f[0])
    path = tmp_path / "damaged.pcap"
    pcapgen.write_pcap(path, damaged)
    one = run("flows", path, "--format", "json")
    assert "undecodable" in one.stderr, one.stderr
    for jobs in (2, 3):
        same_bytes(one, run("flows", path, "--format", "json", "-j", jobs), "json")
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(path.read_bytes()[:-30])
    one = run("flows", cut, "--format", "json")
    assert "Warning" in one.stderr
    same_bytes(one, run("flows", cut, "--format", "json", "-j", 2), "json")


ANOMALY_FORMATS = [("--format", "json"), ("--format", "table"), ("--format", "table", "--wide")]


@pytest.mark.parametrize("args", ANOMALY_FORMATS, ids=" ".join)
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_anomalies_on_every_sample_are_the_same_with_jobs(sample, args):
    """Each shard makes its connections' parts of the findings (AnomalyDetector.parts); the
    merging process adds them in the one-process order and makes the findings once."""
    one = run("anomalies", sample, *args)
    assert "finding" in one.stderr  # (the summary line: the command ran to its end)
    for jobs in (2, 3):
        same_bytes(one, run("anomalies", sample, *args, "-j", jobs), "json")


@pytest.mark.parametrize("sample", ["incident.pcap", "syn-scan.pcap", "udp-dns.pcap"])
def test_anomalies_with_services_are_the_same_with_jobs(sample):
    path = ROOT / "sample_pcaps" / sample
    one = run("anomalies", path, "--format", "json", "--services")
    same_bytes(one, run("anomalies", path, "--format", "json", "--services", "-j", 2), "json")


def _findings_in_one_process(path) -> list[dict]:
    detector = AnomalyDetector(services=ServiceAnalyzer())
    pipe = Pipeline(str(path), analyzers=[detector])
    for _conn in pipe:
        pass  # (the detector takes each connection in on_end)
    return [a.to_record() for a in pipe.results[detector]]


def _findings_in_shards(path, jobs: int) -> list[dict]:
    detector = AnomalyDetector(services=ServiceAnalyzer())

    def make_analyzers():
        deps = (TcpAnalyzer(), ServiceAnalyzer())
        detector.bind(deps)
        return list(deps)

    stream = ConnectionStream(
        str(path), Config(), make_analyzers, lambda c, _a: detector.parts(c), jobs
    )
    for parts in stream:
        detector.add_parts(parts)
    return [a.to_record() for a in detector.finish(stream.facts["last_ts_ns"])]


@needs_corpus
@pytest.mark.parametrize("path", captures(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_corpus_findings_are_the_same_in_shards(path):
    """Every corpus capture: the findings of the library's one-process run (the detector in
    the pipeline, on_end) against those merged from 2 and 3 shards' parts."""
    try:
        want = _findings_in_one_process(path)
    except Exception as exc:  # (a capture flowlens refuses is refused the same way below)
        pytest.skip(f"not a capture flowlens reads: {exc}")
    for jobs in (2, 4):
        assert _findings_in_shards(path, jobs) == want


@needs_corpus
@pytest.mark.parametrize("path", captures(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_corpus_rtt_and_states_are_the_same_with_4_jobs(path):
    """Every corpus capture: RTT groups and socket states merged from 4 shards' parts (a
    capture flowlens refuses is refused the same way)."""
    for args in (("rtt", "--format", "json"), ("states", "--at", "end", "--format", "json")):
        one = CliRunner().invoke(cli, [args[0], str(path), *args[1:]])
        four = CliRunner().invoke(cli, [args[0], str(path), *args[1:], "-j", "4"])
        assert (four.exit_code, four.stdout_bytes, four.stderr_bytes) == (
            one.exit_code, one.stdout_bytes, one.stderr_bytes,
        ), args  # fmt: skip


def test_a_finding_whose_connections_are_in_different_shards(tmp_path):
    """A port scan, a SYN flood and a TIME_WAIT pile-up, each made of connections that the
    shards split between them: each finding is made once, from every shard's parts."""
    frames = (
        pcapgen.port_scan()
        + pcapgen.syn_flood(count=150)
        + pcapgen.time_wait_pileup(count=40)
        + pcapgen.refused()
    )
    frames.sort(key=lambda f: f[0])
    path = tmp_path / "mixed.pcap"
    pcapgen.write_pcap(path, frames)
    groups: dict = {"port_scan": [], "syn_flood": [], "time_wait_accumulation": []}
    for c in Pipeline(str(path)):
        client = format_addr(c.orig_h)
        if client == pcapgen.SCANNER4:
            groups["port_scan"].append(c)
        elif client.startswith("198.18."):
            groups["syn_flood"].append(c)
        elif c.resp_p == 80:
            groups["time_wait_accumulation"].append(c)
    for jobs in (2, 3):
        for kind, conns in groups.items():
            assert len({owner(c, jobs) for c in conns}) == jobs, (kind, jobs)  # split
    args = ("anomalies", path, "--format", "json", "--time-wait-min", "10", "--wide")
    one = run(*args)
    kinds = [json.loads(line)["kind"] for line in one.stdout.splitlines()]
    for kind in groups:
        assert kinds.count(kind) == 1, (kind, kinds)
    for jobs in (2, 3):
        same_bytes(one, run(*args, "-j", jobs), "json")


def test_anomalies_csv_parquet_and_filters_are_the_same_with_jobs(tmp_path):
    """The selection is applied where the connection is read (AnomalyDetector.parts), in each
    shard; --kind and --min-severity after the findings are made."""
    path = ROOT / "sample_pcaps" / "incident.pcap"
    for args in (
        ("--format", "csv"),
        ("--format", "json", "--port", "8080"),
        ("--format", "json", "--min-severity", "warning", "--kind", "close_wait"),
    ):
        one = run("anomalies", path, *args)
        assert one.stdout_bytes.count(b"\n") >= 1, args
        same_bytes(one, run("anomalies", path, *args, "-j", 2), "json")
    pq = pytest.importorskip("pyarrow.parquet")
    run("anomalies", path, "--format", "parquet", "-o", tmp_path / "one.parquet")
    run("anomalies", path, "--format", "parquet", "-o", tmp_path / "two.parquet", "-j", 2)
    one, two = (pq.read_table(tmp_path / f"{n}.parquet") for n in ("one", "two"))
    assert one.num_rows and one.equals(two)


@pytest.mark.parametrize("make", ["folder", "missing"])
def test_jobs_on_a_path_that_is_no_capture_says_only_what_is_wrong(tmp_path, make):
    path = tmp_path / "x.pcap"
    if make == "folder":
        path.mkdir()
    result = CliRunner().invoke(cli, ["flows", str(path), "-j", "2"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr


def test_without_jobs_a_large_capture_file_is_read_by_every_core(monkeypatch):
    """`--jobs` left out: one process per usable core (at most AUTO_JOBS_MAX) for a capture
    file of AUTO_JOBS_BYTES or more, else one; stdin always one."""
    from flowlens.commands import _stream
    from flowlens.core import shard

    path = str(ROOT / "sample_pcaps" / "incident.pcap")
    assert _stream.jobs_for(None, path) == 1  # (a small capture)
    monkeypatch.setattr(_stream, "AUTO_JOBS_BYTES", 1000)
    monkeypatch.setattr(shard, "usable_cores", lambda: 3)
    assert _stream.jobs_for(None, path) == 3
    assert _stream.jobs_for(None, "-") == 1
    assert _stream.jobs_for(1, path) == 1
    monkeypatch.setattr(shard, "usable_cores", lambda: 64)
    assert _stream.jobs_for(None, path) == _stream.AUTO_JOBS_MAX
    monkeypatch.setattr(shard, "usable_cores", lambda: 2)
    one = run("anomalies", path, "--format", "json", "-j", "1")
    sharded = ConnectionStream(path, Config(), list, lambda c, _a: c.uid, None)
    assert sharded.jobs == 2
    assert list(sharded) == [c.uid for c in Pipeline(path)]
    same_bytes(one, run("anomalies", path, "--format", "json"), "json")


@pytest.mark.parametrize("command", ["report", "states"])
def test_report_and_states_run_one_process_unless_asked(monkeypatch, tmp_path, command):
    """`report` and `states` without `--jobs` are one process even on a capture large enough
    for flows, anomalies and rtt to shard (what they add up in the merging process costs about
    what a shard saves: README, Speed); `--jobs 2` still shards them."""
    import importlib

    from flowlens.commands import _stream
    from flowlens.core import shard

    module = importlib.import_module(f"flowlens.commands.{command}")
    path = str(ROOT / "sample_pcaps" / "incident.pcap")
    monkeypatch.setattr(_stream, "AUTO_JOBS_BYTES", 1000)
    monkeypatch.setattr(shard, "usable_cores", lambda: 2)
    made: list[int] = []

    class Recorded(ConnectionStream):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.jobs)

    monkeypatch.setattr(module, "ConnectionStream", Recorded)
    out = ["-o", str(tmp_path / "r.html")] if command == "report" else ["--format", "json"]
    for extra, jobs in (((), 1), (("-j", "2"), 2)):
        result = CliRunner().invoke(cli, [command, path, *out, *extra])
        assert result.exit_code == 0, result.output
        assert made[-1] == jobs, extra
    assert _stream.jobs_for(None, path) == 2  # (what flows, anomalies and rtt take)


@pytest.mark.parametrize("weight", [0.3, 0.6, 0.8, None])
def test_a_commands_own_shard_weight_is_what_its_split_says(weight):
    """A command's own shard 0 share (`first_weight`) is the one its run uses and the one
    `split` reports (the anomaly detector's merge reads it), and the output is the same."""
    path = str(ROOT / "sample_pcaps" / "incident.pcap")
    stream = ConnectionStream(path, Config(), list, lambda c, _a: c.uid, 2, first_weight=weight)
    expect = first_slots(2) if weight is None else first_slots(2, weight)
    assert stream.split == (2, expect)
    got = iter(stream)
    uids = [next(got)]
    assert stream._run.first == expect  # (the running shards' split)
    uids.extend(got)
    assert uids == [c.uid for c in Pipeline(path)]

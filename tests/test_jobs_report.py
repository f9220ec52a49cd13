"""`report --jobs N`: the postmortem report made from hash shards of one capture (each shard's
`ReportShard` makes the parts and keeps the logs, the merging process adds the parts in the
one-process order and asks the shards for the ladders), the same page byte for byte."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pcapgen
import pytest
from click.testing import CliRunner
from corpus import captures, needs_corpus
from test_jobs import SAMPLES

from flowlens.cli import cli
from flowlens.commands._stream import ConnectionStream
from flowlens.core.connections import Config
from flowlens.reports.gather import STRONG, LogBudget, exit_key, open_peak
from flowlens.reports.html import render_html
from flowlens.reports.ladder import Note
from flowlens.reports.postmortem import ReportOptions, build_report

ROOT = Path(__file__).resolve().parents[1]
INCIDENT = ROOT / "sample_pcaps" / "incident.pcap"
#: the time the page was made (the only thing that may differ between two runs)
_MADE = re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def made(tmp_path: Path, name: str, capture, *args) -> dict[str, bytes]:
    """The report's files (HTML, Markdown, its pictures) and what it said, `report CAPTURE
    ARGS` written into tmp_path/name/ (the same file names in every folder)."""
    where = tmp_path / name
    where.mkdir()
    result = CliRunner().invoke(
        cli,
        ["report", str(capture), "-o", str(where / "r.html"), "--markdown", str(where / "r.md"),
         *map(str, args)],
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    out = {"stderr": result.stderr_bytes.replace(str(where).encode(), b"DIR")}
    for f in sorted(where.rglob("*")):
        if f.is_file():
            out[str(f.relative_to(where))] = _MADE.sub(b"TIME", f.read_bytes())
    return out


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda p: p.name)
def test_every_sample_is_the_same_page_with_jobs(sample, tmp_path):
    one = made(tmp_path, "one", sample)
    assert b"<html" in one["r.html"]
    assert made(tmp_path, "two", sample, "--jobs", 2) == one


@pytest.mark.parametrize(
    "args",
    [
        ("--note", "5=the first note", "--note", "+45s=failover", "--note", "+2s=early"),
        ("--stream-graphs", 2),
        ("--max-ladders", 1),
    ],
    ids=lambda a: " ".join(map(str, a)),
)
@pytest.mark.parametrize("sample", ["incident.pcap", "lossy-download.pcap", "port-reuse.pcap"])
def test_options_reach_the_shards(sample, args, tmp_path):
    path = ROOT / "sample_pcaps" / sample
    one = made(tmp_path, "one", path, *args)
    assert made(tmp_path, "four", path, *args, "--jobs", 4) == one


def test_frame_and_time_notes_land_on_the_same_ladders(tmp_path):
    """A frame note is found in the shard that owns its connection (`marks`), a time note
    splits the collapsed rows where it falls, in any shard."""
    notes = ("--note", "241=the leak starts", "--note", "+125s=keep-alive")
    one = made(tmp_path, "one", INCIDENT, *notes)
    html = one["r.html"].decode()
    assert "the leak starts" in html and "keep-alive" in html
    assert "falls on no drawn ladder" not in one["stderr"].decode()
    assert made(tmp_path, "two", INCIDENT, *notes, "-j", 2) == one


def _stream(path, jobs: int):
    def run(make_analyzers, work, **how):
        return ConnectionStream(str(path), Config(), make_analyzers, work, jobs, **how)

    return run


@pytest.mark.parametrize(
    "options",
    [
        ReportOptions(max_kept_logs=3, max_table_rows=5),
        ReportOptions(max_kept_logs=1, max_table_rows=0, max_ladders=40),
        ReportOptions(max_kept_logs=50, max_table_rows=20, max_stream_graphs=3, max_kept_streams=1),
        ReportOptions(notes=(Note("n", frame=1997), Note("o", offset_ns=60_000_000_000))),
    ],
)
def test_tight_budgets_keep_what_one_process_keeps(options):
    """With budgets far below the capture's connections (logs dropped, rows past the table's
    limit kept only for findings), the shards still hold every log one process keeps, and
    the page is the same."""
    want = render_html(build_report(str(INCIDENT), options=options))
    for jobs in (1, 2, 3):
        got = render_html(build_report(str(INCIDENT), options=options, run=_stream(INCIDENT, jobs)))
        assert _MADE.sub(b"T", got.encode()) == _MADE.sub(b"T", want.encode()), jobs


def _kept(items: list[tuple[int, int]], limit: int) -> set[int]:
    budget = LogBudget(limit)
    for uid, tier in items:
        budget.keep(str(uid), tier, None)
    return {int(u) for u in budget.kept}


def test_a_shards_log_budget_keeps_every_log_the_whole_keeps():
    """The property report --jobs rests on (reports/gather.py's docstring): a shard that sees
    a subset of the connections, in the same order, with the same budget, keeps at least the
    logs of its connections that one budget over all of them keeps."""
    rng = random.Random(15)
    for _ in range(3000):
        limit = rng.randint(1, 12)
        weights = [rng.random() for _ in range(3)]
        items = [(i, rng.choices((0, 1, 2), weights)[0]) for i in range(rng.randint(1, 80))]
        whole = _kept(items, limit)
        shards = rng.randint(2, 4)
        owner = {uid: rng.randrange(shards) for uid, _ in items}
        for k in range(shards):
            mine = [it for it in items if owner[it[0]] == k]
            assert {u for u, _ in mine} & whole <= _kept(mine, limit), (limit, items, k)


def test_the_budget_drops_the_newest_of_the_larger_lower_tier_first():
    budget = LogBudget(3)
    assert budget.keep("s1", 0, 1) == []
    assert budget.keep("w1", 1, 2) == []
    assert budget.keep("x1", STRONG, 3) == []
    assert budget.keep("s2", 0, 4) == [("s2", 4)]  # spare (2) is larger than weak (1)
    assert budget.keep("x2", STRONG, 5) == [("s1", 1)]  # a tie: spare first
    assert budget.keep("x3", STRONG, 6) == [("w1", 2)]
    assert budget.keep("x4", STRONG, 7) == [("x4", 7)]  # only STRONG left: the newest goes
    assert list(budget.kept) == ["x1", "x2", "x3"] and budget.dropped == 4


def test_open_peak_from_first_frames_and_exits():
    # a opens at 1 and leaves at 3's clock; b opens at 3 (a gone); c opens at 4 while b is
    # still held, and b leaves after c opened (a held record c replaces)
    first = [1, 3, 4]
    exits = [exit_key(3, False), exit_key(4, True), exit_key(9, False)]
    assert open_peak(first, exits) == 2
    assert open_peak([1, 3, 4], [exit_key(3, False), exit_key(4, False), 18]) == 1
    assert open_peak([], []) == 0


def test_a_held_record_replaced_by_its_successor_counts_at_its_opening(tmp_path):
    """An attempt Zeek's attempt timer ended is held (its SYN_SENT not over) until a SYN with
    a new ISN on its 5-tuple opens the next record: the table counts it at that opening, and
    a sharded report's peak (from the first frames and exits) says the same."""
    conv = pcapgen.Conversation()
    conv.c(pcapgen.SYN, dt=0.0)
    for gap in (1.0, 2.0):
        conv.c(pcapgen.SYN, seq=conv.isn_c, dt=gap)
    conv.c(pcapgen.SYN, seq=conv.isn_c + 7777, dt=7.0)  # a new attempt on the same port
    other = pcapgen.Conversation(cport=41000, t=conv.t - 0.5)
    other.handshake()
    path = pcapgen.write_pcap(tmp_path / "retry.pcap", sorted(conv.frames + other.frames))
    peaks = {
        jobs: dict(build_report(str(path), run=_stream(path, jobs)).facts)[
            "open connections at peak"
        ]
        for jobs in (1, 2, 3)
    }
    assert peaks == {1: "3", 2: "3", 3: "3"}


@needs_corpus
@pytest.mark.parametrize("path", captures(), ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_corpus_capture_is_the_same_page_with_jobs(path):
    """Every corpus capture: the page one process makes against 2 and 4 shards' (a capture
    flowlens refuses is refused the same way)."""
    try:
        want = render_html(build_report(str(path)))
    except Exception as exc:  # noqa: BLE001
        with pytest.raises(type(exc)):
            build_report(str(path), run=_stream(path, 2))
        return
    for jobs in (2, 4):
        got = render_html(build_report(str(path), run=_stream(path, jobs)))
        assert _MADE.sub(b"T", got.encode()) == _MADE.sub(b"T", want.encode()), jobs

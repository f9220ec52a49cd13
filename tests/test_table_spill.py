"""A sorted table past its spill threshold (reports/sorted_table.py) prints the same bytes as
one sorted in memory: `flows`, `flows --wide`, `rtt` and `rtt --samples` tables, with filters,
over a date change, and empty (issue 21, "peak RSS stays flat in capture length")."""

from __future__ import annotations

import errno
import io
import json
import os
import random
import tempfile

import pcapgen
import pytest
from click.testing import CliRunner
from pcapgen import ACK, CLIENT6, FIN, PSH, SERVER6, SYN, T0, Conversation

from flowlens.cli import cli
from flowlens.commands import flows as flows_cmd
from flowlens.commands import rtt as rtt_cmd
from flowlens.reports import sorted_table
from flowlens.reports.formats import TABLE_WIDTH, render_table, utc_cells
from flowlens.reports.sorted_table import SortedTable


def many_connections(count: int = 300, t0: float = T0, seed: int = 7) -> list:
    """`count` overlapping TCP connections (some IPv6, some left open, unanswered or reset),
    ending in another order than they start, some starting at the very same instant (ties
    broken by uid), plus DNS over UDP; every one with a different idle time."""
    rng = random.Random(seed)
    frames = []
    for i in range(count):
        start = t0 + (i // 3) * 0.01  # three connections share each start time
        six = i % 5 == 0
        conv = Conversation(
            client=CLIENT6 if six else pcapgen.CLIENT4,
            server=SERVER6 if six else pcapgen.SERVER4,
            cport=20000 + i,
            sport=(80, 443, 5432)[i % 3],
            t=start,
            isn_c=1000 + i * 7919,
        )
        kind = i % 7
        if kind == 6:  # unanswered: no handshake leg, no samples
            conv.c(SYN, dt=0.0)
            conv.c(SYN, dt=1.0)
        else:
            conv.handshake(synack_dt=rng.uniform(0.0001, 0.05), ack_dt=rng.uniform(0, 0.002))
            conv.c(PSH | ACK, b"q" * rng.randint(1, 900), dt=rng.uniform(0, 2.0))
            conv.s(ACK, dt=rng.uniform(0.0001, 0.03))
            conv.s(PSH | ACK, b"r" * rng.randint(1, 3000))
            conv.c(ACK, dt=rng.uniform(0.0001, 0.03))
            if kind == 5:
                conv.c(FIN | ACK)  # half closed, left open
            elif kind != 4:
                conv.close("client" if i % 2 else "server")
        frames.extend(conv.frames)
    for i in range(20):
        frames.extend(pcapgen.rtt_dns(sport=53000 + i, t=t0 + i * 0.05))
    frames.sort(key=lambda f: f[0])
    return frames


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    return pcapgen.write_pcap(tmp_path_factory.mktemp("spill") / "many.pcap", many_connections())


@pytest.fixture(scope="module")
def midnight(tmp_path_factory):
    """Connections on both sides of a UTC midnight (the table shows dates)."""
    day = 1_700_006_400.0  # 2023-11-15 00:00:00 UTC
    path = tmp_path_factory.mktemp("spill") / "midnight.pcap"
    return pcapgen.write_pcap(path, many_connections(120, t0=day - 0.3))


def files_made(rows: int, threshold: int, merge_runs: int) -> int:
    """The temporary files a table of `rows` opens: one at its first run, one more each time
    MERGE_RUNS runs are merged into one."""
    files = runs = 0
    for _ in range(rows // threshold):  # (a run each time `threshold` rows are held)
        files = files or 1
        if runs + 1 >= merge_runs:
            files, runs = files + 1, 1
        else:
            runs += 1
    return files


@pytest.fixture
def spy(monkeypatch):
    """The temporary files the tables open, with SPILL_ROWS and BLOCK_ROWS forced small."""
    made: list = []
    real = tempfile.TemporaryFile

    def temporary(*args, **kwargs):
        f = real(*args, **kwargs)
        made.append(f)
        return f

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary)
    return made


def table(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, (args, result.output)
    return result.stdout


VIEWS = [
    ("flows",),
    ("flows", "--wide"),
    ("flows", "--port", "443"),
    ("flows", "--wide", "--state", "time-wait"),
    ("flows", "--host", pcapgen.SERVER4, "--proto", "tcp"),
    ("rtt",),
    ("rtt", "--wide"),
    ("rtt", "--port", "5432", "--wide"),
    ("rtt", "--samples"),
    ("rtt", "--samples", "--wide"),
]


@pytest.mark.parametrize("args", VIEWS, ids=" ".join)
@pytest.mark.parametrize("threshold, merge_runs", [(1, 64), (7, 3), (7, 64), (40, 2)])
def test_spilled_table_prints_the_same_bytes(
    capture, spy, monkeypatch, args, threshold, merge_runs
):
    in_memory = table(args[0], capture, *args[1:])
    assert not spy, "a table of a few hundred rows is sorted in memory by default"
    lines = in_memory.splitlines()
    assert len(lines) > 2 * threshold + 1  # (so the forced threshold makes two runs or more)
    monkeypatch.setattr(sorted_table, "SPILL_ROWS", threshold)
    monkeypatch.setattr(sorted_table, "BLOCK_ROWS", 3)
    monkeypatch.setattr(sorted_table, "MERGE_RUNS", merge_runs)
    assert table(args[0], capture, *args[1:]) == in_memory
    assert len(spy) == files_made(len(lines) - 1, threshold, merge_runs)
    assert all(f.closed for f in spy)


@pytest.mark.parametrize("args", [("flows",), ("flows", "--wide"), ("rtt", "--wide")])
def test_spilled_table_over_a_date_change(midnight, monkeypatch, args):
    in_memory = table(args[0], midnight, *args[1:])
    assert "2023-11-14 23:59:59." in in_memory and "2023-11-15 00:00:" in in_memory
    monkeypatch.setattr(sorted_table, "SPILL_ROWS", 5)
    assert table(args[0], midnight, *args[1:]) == in_memory


def test_table_is_sorted_by_start_then_uid(capture, monkeypatch):
    records = [json.loads(ln) for ln in table("flows", capture, "--format", "json").splitlines()]
    order = [r["uid"] for r in sorted(records, key=lambda r: (r["ts"], r["uid"]))]
    assert len({r["ts"] for r in records}) < len(records)  # (ties on the start time)
    monkeypatch.setattr(sorted_table, "SPILL_ROWS", 10)
    rows = table("flows", capture).splitlines()[1:]
    assert [ln.split()[0] for ln in rows] == order


@pytest.mark.parametrize("wide", [False, True])
@pytest.mark.parametrize("command", ["flows", "rtt"])
def test_table_is_its_records_sorted_and_aligned(capture, monkeypatch, command, wide):
    # the table as it was made before SortedTable: every record's row, sorted by (ts, uid),
    # its times from utc_cells, laid out by render_table
    module = flows_cmd if command == "flows" else rtt_cmd
    more = ["--wide"] if wide else []
    records = [json.loads(ln) for ln in table(command, capture, "--format", "json").splitlines()]
    columns = module.TABLE_COLUMNS if wide else module.SHORT_COLUMNS
    make = flows_cmd.table_row if command == "flows" else rtt_cmd._table_row
    rows = sorted((make(r, columns) for r in records), key=lambda r: (r["ts"], r["uid"]))
    for r, t in zip(rows, utc_cells([r["ts"] for r in rows], full=wide)):
        r["ts"] = t
    if command == "flows":
        headers = [flows_cmd.HEADERS.get(c, c) for c in columns]
        fit = {} if wide else {"max_width": TABLE_WIDTH, "shrink": ("resp", "orig")}
    else:
        headers = ["start (UTC)" if c == "ts" else c for c in columns]
        fit = rtt_cmd._fit(wide)
    expected = render_table(rows, columns, headers, **fit) + "\n"
    assert table(command, capture, *more) == expected
    monkeypatch.setattr(sorted_table, "SPILL_ROWS", 16)
    assert table(command, capture, *more) == expected


@pytest.mark.parametrize("command", ["flows", "rtt"])
def test_empty_table_is_its_header(capture, spy, monkeypatch, command):
    monkeypatch.setattr(sorted_table, "SPILL_ROWS", 1)
    out = table(command, capture, "--port", "9")
    assert len(out.splitlines()) == 1 and out.startswith("uid  ")
    assert not spy


def test_temporary_file_is_closed_when_the_writer_fails(spy, monkeypatch):
    monkeypatch.setattr(sorted_table, "SPILL_ROWS", 4)
    with pytest.raises(KeyboardInterrupt), SortedTable(["uid", "n"], key=lambda r: r["n"]) as t:
        for n in range(20):
            t.add({"uid": f"C{n}", "n": 20 - n})
        lines = t.lines()
        assert next(lines).split() == ["uid", "n"]
        assert next(lines).split() == ["C19", "1"]
        raise KeyboardInterrupt
    assert len(spy) == 1 and spy[0].closed


def test_merge_keeps_rows_of_equal_keys_in_the_order_added(monkeypatch):
    monkeypatch.setattr(sorted_table, "SPILL_ROWS", 3)
    rows = [{"uid": f"C{i}", "k": i % 2} for i in range(11)]
    with SortedTable(["uid", "k"], key=lambda r: r["k"]) as t:
        for r in rows:
            t.add(r)
        got = [ln.split()[0] for ln in list(t.lines())[1:]]
    assert got == [r["uid"] for r in sorted(rows, key=lambda r: r["k"])]


def test_numbers_are_as_wide_as_their_widest_cell():
    # the layout keeps each column's largest and most negative number, not its cells: a
    # negative zero, a negative number, an int in a float column, NaN, a number among words
    rows = [
        {"a_ms": 1.5, "b": 3, "c": -0.0, "d": 7, "e": "x"},
        {"a_ms": -12.25, "b": -40, "c": 0.125, "d": 2.5, "e": 100},
        {"a_ms": 3, "b": None, "c": float("nan"), "d": None, "e": None},
    ]
    assert render_table(rows, ["a_ms", "b", "c", "d", "e"]).splitlines() == [
        "   a_ms    b       c    d  e",
        "  1.500    3  -0.000  7.0  x",
        "-12.250  -40   0.125  2.5  100",
        "  3.000    -       -    -  -",
    ]


def test_a_full_disk_is_one_error_line(capture, monkeypatch):
    class Full(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tempfile, "TemporaryFile", lambda *a, **k: Full())
    monkeypatch.setattr(sorted_table, "SPILL_ROWS", 10)
    result = CliRunner().invoke(cli, ["flows", capture])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[-1] == (
        f"Error: {tempfile.gettempdir()}: No space left on device (writing a table's rows to a "
        "temporary file there; TMPDIR names another folder)"
    )

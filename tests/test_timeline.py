"""`flowlens timeline`: one row per packet with flags, relative numbers and both endpoints' states."""

from __future__ import annotations

import csv
import io
import json

import pcapgen
import pytest
from click.testing import CliRunner

from flowlens.cli import cli
from flowlens.core.pipeline import analyze
from flowlens.reports.timeline import TABLE_HEADERS, TIMELINE_FIELDS


def capture(tmp_path, name: str) -> str:
    path = tmp_path / f"{name}.pcap"
    path.write_bytes(pcapgen.pcap_bytes(pcapgen.SCENARIOS[name]()))
    return str(path)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def records(path, *args):
    result = invoke("timeline", path, "--format", "json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_clean_close_rows(tmp_path):
    path = capture(tmp_path, "clean-close")
    uid = analyze(path).connections[0].uid
    rows = records(path, "--uid", uid[:6])
    assert all(list(r) == list(TIMELINE_FIELDS) for r in rows)
    got = [
        (
            r["frame"],
            r["sender"],
            r["flags"],
            r["seq"],
            r["ack"],
            r["len"],
            r["orig_state"],
            r["resp_state"],
        )
        for r in rows
    ]
    assert got == [
        (1, "orig", "S", 0, None, 0, "SYN_SENT", "CLOSED"),
        (2, "resp", "S.", 0, 1, 0, "ESTABLISHED", "SYN_RECEIVED"),
        (3, "orig", ".", 1, 1, 0, "ESTABLISHED", "ESTABLISHED"),
        (4, "orig", "P.", 1, 1, 18, "ESTABLISHED", "ESTABLISHED"),
        (5, "resp", ".", 1, 19, 0, "ESTABLISHED", "ESTABLISHED"),
        (6, "resp", "P.", 1, 19, 24, "ESTABLISHED", "ESTABLISHED"),
        (7, "orig", ".", 19, 25, 0, "ESTABLISHED", "ESTABLISHED"),
        (8, "orig", "F.", 19, 25, 0, "FIN_WAIT_1", "CLOSE_WAIT"),
        (9, "resp", ".", 25, 20, 0, "FIN_WAIT_2", "CLOSE_WAIT"),
        (10, "resp", "F.", 25, 20, 0, "TIME_WAIT", "LAST_ACK"),
        (11, "orig", ".", 20, 26, 0, "TIME_WAIT", "CLOSED"),
    ]
    assert rows[1]["notes"] == ["SYN -> SYN/ACK 10.000 ms"]
    assert rows[3]["time_s"] == 0.0115 and rows[3]["ts"] == 1_700_000_000.0115


@pytest.mark.parametrize("scenario", ["clean-close", "close-3way", "server-close", "half-close", "close-wait",
                                      "rst-abort-server", "midstream", "retransmission", "bulk-download"])  # fmt: skip
def test_states_after_each_packet_are_the_trackers(tmp_path, scenario):
    """Each row's states are what Connection.state_at says right after that packet."""
    path = capture(tmp_path, scenario)
    conn = analyze(path).connections[0]
    rows = records(path, "--uid", conn.uid)
    stamps = [r["ts"] for r in rows if r["frame"]]
    assert len(set(stamps)) == len(stamps)  # one packet per instant: state_at is unambiguous
    for r in rows:
        ts_ns = conn.first_ts_ns + round(r["time_s"] * 1e9)  # (epoch floats lose the nanoseconds)
        assert (r["orig_state"], r["resp_state"]) == (
            conn.state_at(0, ts_ns).value,
            conn.state_at(1, ts_ns).value,
        ), r


def test_absolute_numbers(tmp_path):
    rows = records(capture(tmp_path, "clean-close"), "--port", "80", "--absolute")
    assert (rows[0]["seq"], rows[1]["seq"], rows[1]["ack"]) == (1000, 5000, 1001)


def test_findings_are_notes(tmp_path):
    rows = records(capture(tmp_path, "retransmission"), "--port", "80")
    assert any("etransmission" in n for n in rows[4]["notes"]) and rows[4]["frame"] == 5
    rows = records(capture(tmp_path, "refused"), "--port", "80")
    assert rows[1]["notes"] == ["SYN answered by RST: connection refused"]


def test_state_change_without_a_packet_is_a_row(tmp_path):
    path = capture(tmp_path, "port-reuse")
    first = analyze(path).connections[0]
    rows = records(path, "--uid", first.uid)
    assert rows[-1]["frame"] is None and rows[-1]["sender"] is None
    assert rows[-1]["orig_state"] == "CLOSED"
    assert rows[-1]["notes"] == ["TIME_WAIT cut short: the 5-tuple was reused (frame 12)"]


def test_csv_and_table(tmp_path):
    path = capture(tmp_path, "clean-close")
    result = invoke("timeline", path, "--port", "80", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == list(TIMELINE_FIELDS)
    assert rows[0]["notes"] == "" and rows[2]["notes"] == "SYN/ACK -> ACK 0.500 ms (iRTT 10.500 ms)"
    table = invoke("timeline", path, "--port", "80").stdout.splitlines()
    assert table[0].startswith("C") and "192.0.2.10:40000 -> 198.51.100.20:80" in table[0]
    assert table[1].split() == [
        "frame",
        "time_s",
        "dir",
        "flags",
        "seq",
        "ack",
        "len",
        "win",
        "orig_state",
        "resp_state",
        "notes",
    ]
    assert table[3].split()[:4] == ["2", "0.010000", "<-", "[S.]"]


def test_without_a_selection_every_connection_is_listed(tmp_path):
    rows = records(capture(tmp_path, "port-reuse"))
    assert [r["frame"] for r in rows] == list(range(1, 12)) + [None] + list(range(12, 23))
    assert len({r["uid"] for r in rows}) == 2


def test_unknown_uid_matches_nothing(tmp_path):
    """--uid is a filter, as in `flows`: the table's header, the reason on stderr, exit 0."""
    path = capture(tmp_path, "clean-close")
    result = invoke("timeline", path, "--uid", "CdoesNotExist")
    assert result.exit_code == 0
    assert result.stdout.split() == list(TABLE_HEADERS)
    assert result.stderr == f"{path}: no connection matches the filters\n"

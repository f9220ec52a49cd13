"""`flowlens flows` through click: formats, filters, exit codes and exact error lines."""

from __future__ import annotations

import csv
import io
import json

import pcapgen
import pytest
from click.testing import CliRunner

from flowlens.cli import all_commands, cli
from flowlens.core.connections import RECORD_FIELDS


@pytest.fixture()
def incident(tmp_path):
    path = tmp_path / "incident.pcap"
    path.write_bytes(pcapgen.pcap_bytes(pcapgen.incident()))
    return str(path)


def invoke(*args, input=None):
    return CliRunner().invoke(cli, list(args), input=input)


def test_json_lines_carry_every_record_field(incident):
    result = invoke("flows", incident, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    # (+ 2: Zeek's attempt timer splits the unanswered SYN retried at 1, 3, 7 and 15 s into
    # three records: 0-3 s, 7 s, 15 s)
    assert len(rows) == 480 + 3 + 1 + 1 + 1 + 1 + 1 + 2
    assert all(list(r) == list(RECORD_FIELDS) for r in rows)
    assert "128 connections (2 icmp, 125 tcp, 1 udp) in" not in result.stdout
    assert result.stderr.strip().endswith("frames")


def test_csv_has_a_header_and_one_row_per_connection(incident):
    result = invoke("flows", incident, "--format", "csv", "--proto", "udp")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["id.resp_p"] for r in rows] == ["53"]
    assert rows[0]["conn_state"] == "SF"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--state", "close-wait"], {("9000", "S2")}),
        (["--state", "REJ"], {("5432", "REJ")}),
        (["--port", "6379"], {("6379", "S0")}),
        # (the cache's SYNs, 1, 2, 4, 8 s apart, stop at 60 s; the next was due at 76 s and the
        # capture runs on to 125 s: the socket was gone by its end, tests/test_syn_timers.py)
        (["--state", "syn-sent"], set()),
        (
            ["--net", "198.51.100.30/32", "--net", "198.51.100.40/31", "--proto", "tcp"],
            {("5432", "REJ"), ("6379", "S0")},
        ),
        (["--host", "198.51.100.40"], {("6379", "S0")}),
    ],
)
def test_filters(incident, args, expected):
    result = invoke("flows", incident, "--format", "csv", *args)
    assert result.exit_code == 0, result.output
    got = {(r["id.resp_p"], r["conn_state"]) for r in csv.DictReader(io.StringIO(result.stdout))}
    assert got == expected


def test_time_wait_filter_sees_the_pileup(incident):
    # API connection i enters TIME_WAIT at T0 + i/4 + ~0.01 s; the capture's last packet is at
    # T0 + 125.0135 s (the CLOSE_WAIT leak's keep-alive), so those that entered it after
    # T0 + 65.0135 s -- i = 261..479 -- are still in TIME_WAIT (60 s) when it ends
    result = invoke("flows", incident, "--format", "csv", "--state", "time-wait", "--port", "8080")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert sorted(int(r["id.orig_p"]) for r in rows) == [33000 + i for i in range(261, 480)]
    assert {r["orig_state"] for r in rows} == {"TIME_WAIT"}


def test_table_output_is_sorted_and_readable(incident):
    result = invoke("flows", incident, "--port", "5432")
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["uid", "start", "(UTC)"]
    assert len(lines) == 4 and all("198.51.100.30:5432" in ln for ln in lines[1:])
    wide = invoke("flows", incident, "--port", "5432", "--wide").stdout.splitlines()
    assert len(wide) == 4 and all("REJ" in ln and "198.51.100.30:5432" in ln for ln in wide[1:])


def test_stdin(incident):
    with open(incident, "rb") as f:
        data = f.read()
    result = invoke("flows", "-", "--format", "csv", "--port", "9000", input=data)
    assert result.exit_code == 0
    assert "CLOSE_WAIT" in result.stdout


def test_bad_input_is_one_error_line_and_exit_1(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("this is not a capture")
    result = invoke("flows", str(bad))
    assert result.exit_code == 1
    assert (
        result.stderr == f"Error: {bad}: not a pcap or pcapng capture (starts with 74 68 69 73)\n"
    )
    assert result.stdout == ""
    missing = tmp_path / "missing.pcap"
    result = invoke("flows", str(missing))
    assert (result.exit_code, result.stderr) == (1, f"Error: {missing}: no such file\n")


def test_bad_arguments_exit_2(incident):
    assert invoke("flows", incident, "--format", "xml").exit_code == 2
    result = invoke("flows", incident, "--state", "sleepy")
    assert result.exit_code == 1 and result.stderr.startswith("Error: unknown state 'sleepy'")


def test_truncated_capture_warns_and_keeps_connections(tmp_path):
    data = pcapgen.pcap_bytes(pcapgen.port_reuse())
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-10])
    result = invoke("flows", str(path), "--format", "csv")
    assert result.exit_code == 0
    assert len(list(csv.DictReader(io.StringIO(result.stdout)))) == 2
    assert (
        "Warning: " in result.stderr and "capture ends inside a packet at frame 22" in result.stderr
    )


def test_help_ends_with_an_example():
    for name, command in all_commands().items():
        text = command.get_help(
            cli.make_context("flowlens", [name, "--help"], resilient_parsing=True)
        )
        assert "Example" in text, name


def test_json_records_with_keys_that_are_not_strings(tmp_path):
    """JSON lines go out with orjson's fast path; a record with int keys (rare) still gets
    them as strings, through a file's binary buffer and through a text stream alike."""
    import io

    from flowlens.reports.formats import write_records

    records = [{"a": 1, "ports": {80: "http", "k": 2}}, {"tags": {"x"}}, {"b": 2.5}]
    want = '{"a":1,"ports":{"80":"http","k":2}}\n{"tags":["x"]}\n{"b":2.5}\n'
    text = io.StringIO()
    assert write_records(records, "json", text) == 3
    assert text.getvalue() == want
    with open(tmp_path / "out.json", "w") as f:
        assert write_records(iter(records), "json", f) == 3
    assert (tmp_path / "out.json").read_text() == want

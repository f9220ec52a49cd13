"""What people read: one vocabulary of state names and RTT paths across commands, tables within
120 columns (--wide for everything), fixed decimals per column, and counts with the right noun
(issue 18, "One vocabulary, readable tables")."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pcapgen
import pytest
from click.testing import CliRunner

from flowlens.cli import cli
from flowlens.core.filters import SS_STATE_NAMES, TCP_STATE_NAMES, normalize_state
from flowlens.reports.formats import TABLE_WIDTH, plural, render_table, utc_cells

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted(
    p for p in (ROOT / "sample_pcaps").iterdir() if p.name != "README.md" and p.is_file()
)

#: every table a command prints by default (a ladder draws its own layout)
DEFAULT_TABLES = [
    ("flows",),
    ("anomalies",),
    ("rtt",),
    ("rtt", "--by", "server"),
    ("rtt", "--by", "client"),
    ("rtt", "--by", "pair"),
    ("rtt", "--samples"),
    ("states",),
    ("states", "--at", "end"),
    ("states", "--listening"),
    ("timeline",),
]
#: ss(8)'s output spellings, which flowlens reads but never prints
SS_SPELLING = re.compile(
    r"\b(ESTAB|SYN-RECV|SYN-SENT|FIN-WAIT-[12]|CLOSE-WAIT|LAST-ACK|TIME-WAIT)\b"
)


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, (args, result.output)
    return result


@pytest.fixture(scope="module")
def outputs():
    """(command, sample) -> the default table, for every command and sample capture."""
    return {
        (args, path.name): ok(args[0], path, *args[1:]).stdout
        for args in DEFAULT_TABLES
        for path in SAMPLES
    }


# ---------------------------------------------------------------- widths


def test_every_default_table_fits_120_columns(outputs):
    wide = {
        key: max(len(line) for line in text.splitlines())
        for key, text in outputs.items()
        if text and max(len(line) for line in text.splitlines()) > TABLE_WIDTH
    }
    assert wide == {}


@pytest.mark.parametrize(
    "args, more",
    [
        (("flows",), {"conn_state", "history", "proto", "handshake", "teardown", "irtt_ms"}),
        (("anomalies",), {"uid"}),
        (("rtt",), {"proto", "p90_ms", "p99_ms", "mean_ms", "stdev_ms", "sources"}),
        (("states",), {"SYN_SENT", "SYN_RECEIVED", "LAST_ACK"}),
    ],
)
def test_wide_shows_every_column(args, more):
    path = ROOT / "sample_pcaps" / "incident.pcap"
    if args == ("states",):
        path = ROOT / "sample_pcaps" / "server-close.pcap"
    narrow = ok(args[0], path, *args[1:]).stdout.splitlines()[0 if args != ("states",) else 1]
    wide = ok(args[0], path, *args[1:], "--wide").stdout.splitlines()
    header = wide[0 if args != ("states",) else 1].split()
    assert more <= set(header) and not more & set(narrow.split())
    if args == ("anomalies",):  # one line per finding: no folded summary
        assert len(wide) == 1 + len(ok("anomalies", path, "--format", "json").stdout.splitlines())


def test_flows_table_shows_bytes_and_anomalies_the_evidence(tmp_path):
    path = ROOT / "sample_pcaps" / "refused.pcap"
    lines = ok("flows", path).stdout.splitlines()
    assert lines[0].split()[-2:] == ["bytes", "o/r"] and lines[1].split()[-1] == "0/0"
    [rec] = map(json.loads, ok("anomalies", path, "--format", "json").stdout.splitlines())
    head, row = ok("anomalies", path).stdout.splitlines()[:2]
    at = head.index("evidence")
    assert row[at:].split()[0] == ",".join(map(str, rec["evidence"]))


def test_long_evidence_lists_its_first_frames_and_counts_the_rest():
    path = ROOT / "sample_pcaps" / "incident.pcap"
    recs = [json.loads(x) for x in ok("anomalies", path, "--format", "json").stdout.splitlines()]
    many = next(r for r in recs if len(r["evidence"]) > 3)
    table = ok("anomalies", path, "--kind", many["kind"]).stdout
    first = ",".join(map(str, many["evidence"][:3]))
    assert f"{first} +{len(many['evidence']) - 3}" in table
    wide = ok("anomalies", path, "--kind", many["kind"], "--wide").stdout
    assert ",".join(map(str, many["evidence"])) in wide


def test_summaries_fold_within_the_width_and_read_back_whole():
    path = ROOT / "sample_pcaps" / "incident.pcap"
    recs = [json.loads(x) for x in ok("anomalies", path, "--format", "json").stdout.splitlines()]
    lines = ok("anomalies", path).stdout.splitlines()
    at = lines[0].index("summary")
    text = " ".join(line[at:].strip() for line in lines[1:])
    for r in recs:
        assert r["summary"] in text


# ---------------------------------------------------------------- decimals and units


def test_float_columns_have_fixed_decimals_by_unit():
    rows = [
        {"d": 15.0, "x_ms": 0.0002, "n": 3, "r": 0.5},
        {"d": 120.017499, "x_ms": 2.0, "n": 10, "r": 0.25},
    ]
    text = render_table(rows, ["d", "x_ms", "n", "r"], ["dur_s", "x_ms", "n", "rate"])
    assert text.splitlines() == [
        "     dur_s   x_ms   n  rate",
        " 15.000000  0.000   3  0.50",
        "120.017499  2.000  10  0.25",
    ]


def test_flows_and_rtt_print_seconds_and_milliseconds_to_the_microsecond():
    path = ROOT / "sample_pcaps" / "incident.pcap"
    lines = ok("flows", path).stdout.splitlines()
    at = lines[0].split().index("dur_s") - 1  # ("start (UTC)" is two words, a time one)
    assert all(re.fullmatch(r"\d+\.\d{6}|-", line.split()[at]) for line in lines[1:])
    lines = ok("rtt", path).stdout.splitlines()
    header = lines[0].split()
    for line in lines[1:]:
        cells = dict(zip(header, line.split()))
        assert all(re.fullmatch(r"\d+\.\d{3}|-", cells[c]) for c in header if c.endswith("_ms"))


def test_utc_cells_give_the_date_only_when_it_changes_or_is_asked():
    day = 1699999999.5
    assert utc_cells([day, day + 60]) == ["22:13:19.500", "22:14:19.500"]
    assert utc_cells([day], full=True) == ["2023-11-14 22:13:19.500"]
    assert utc_cells([day, day + 86400, None]) == [
        "2023-11-14 22:13:19.500", "2023-11-15 22:13:19.500", None,
    ]  # fmt: skip


def test_states_listening_prints_utc_like_every_table():
    path = ROOT / "sample_pcaps" / "incident.pcap"
    lines = ok("states", path, "--listening").stdout.splitlines()
    assert lines[0].split()[-4:] == ["first", "(UTC)", "last", "(UTC)"]
    assert lines[1].split()[-2:] == ["22:13:20.000", "22:15:19.750"]
    rec = json.loads(ok("states", path, "--listening", "--format", "json").stdout.splitlines()[0])
    assert rec["first_ts"] == 1700000000.0  # json keeps epoch seconds


# ---------------------------------------------------------------- vocabulary


def test_no_table_prints_ss_spellings(outputs):
    assert [key for key, text in outputs.items() if SS_SPELLING.search(text)] == []


def test_state_names_are_the_same_in_flows_states_and_anomalies():
    path = ROOT / "sample_pcaps" / "incident.pcap"
    flows = [json.loads(x) for x in ok("flows", path, "--format", "json").stdout.splitlines()]
    names = {r[k] for r in flows for k in ("orig_state", "resp_state") if r[k]}
    assert names and names <= set(TCP_STATE_NAMES)
    header = ok("states", path, "--at", "end").stdout.splitlines()[1].split()
    assert set(header[2:]) <= set(TCP_STATE_NAMES) | {"other"} and "CLOSE_WAIT" in header
    [end] = [
        json.loads(x)
        for x in ok(
            "states", path, "--at", "end", "--format", "json", "--host", "198.51.100.20"
        ).stdout.splitlines()
    ]
    assert set(end) - {"host", "ts", "total"} <= set(TCP_STATE_NAMES)
    summaries = " ".join(
        json.loads(x)["summary"]
        for x in ok("anomalies", path, "--format", "json").stdout.splitlines()
    )
    assert "CLOSE_WAIT" in summaries and not SS_SPELLING.search(summaries)


@pytest.mark.parametrize("name", TCP_STATE_NAMES)
def test_ss_spellings_are_read_as_the_state(name):
    for spelling in (name, name.lower(), *SS_STATE_NAMES[name]):
        assert normalize_state(spelling) == {name}, spelling


@pytest.mark.parametrize(
    "ss, ours",
    [("estab", "ESTABLISHED"), ("fin-wait-2", "FIN_WAIT_2"), ("syn-recv", "SYN_RECEIVED"),
     ("time-wait", "TIME_WAIT"), ("ESTAB", "established")],
)  # fmt: skip
def test_flows_and_states_filter_the_same_with_either_spelling(ss, ours):
    path = ROOT / "sample_pcaps" / "half-close.pcap"
    for cmd in (("flows", "--format", "json"), ("states", "--at", "end", "--format", "json")):
        a = ok(cmd[0], path, *cmd[1:], "--state", ss).stdout
        assert a == ok(cmd[0], path, *cmd[1:], "--state", ours).stdout


def test_rtt_paths_and_columns_are_the_same_in_every_view():
    path = ROOT / "sample_pcaps" / "incident.pcap"
    paths = set()
    for view in ((), ("--by", "server"), ("--by", "client"), ("--by", "pair"), ("--samples",)):
        recs = [
            json.loads(x) for x in ok("rtt", path, *view, "--format", "json").stdout.splitlines()
        ]
        paths |= {r["path"] for r in recs}
        header = ok("rtt", path, *view).stdout.splitlines()[0]
        # a table's columns are its records' own field names (and the start time in UTC)
        names = header.replace("start (UTC)", "").replace("time (UTC)", "").split()
        assert set(names) <= set(recs[0]) | {"orig", "resp"}, view
    assert paths == {"cap>resp>cap", "cap>orig>cap"}


def test_rtt_legend_is_one_short_line_and_only_under_a_table():
    path = ROOT / "sample_pcaps" / "clean-close.pcap"
    notes = ok("rtt", path).stderr.splitlines()
    legend = [line for line in notes if "cap>resp>cap" in line]
    assert len(legend) == 1 and len(legend[0]) <= TABLE_WIDTH
    assert "cap>resp>cap" not in ok("rtt", path, "--format", "json").stderr


# ---------------------------------------------------------------- plurals

#: a count of one with a plural noun, or another count with a singular one
BAD_PLURAL = re.compile(
    r"(?<![\d.,])1 (hosts|findings|times|samples|connections|frames|warnings|rows|sockets|"
    r"series|TCP connections|quieter hosts)\b|(?<![\d.,])(0|[2-9]|\d{2,}) (warning|finding|"
    r"host|sample|connection|frame|row|socket|time)\b(?!-)"
)


def test_plural_helper():
    assert [plural(n, "host") for n in (0, 1, 2)] == ["0 hosts", "1 host", "2 hosts"]
    assert plural(2, "process", "processes") == "2 processes"


def test_counts_take_the_right_noun_everywhere(tmp_path):
    one = tmp_path / "one-syn.pcap"
    one.write_bytes(pcapgen.pcap_bytes(pcapgen.unanswered_syn(retries=())))
    captures = [one, *SAMPLES]
    wrong = []
    for path in captures:
        for args in (*DEFAULT_TABLES, ("anomalies", "--min-severity", "warning")):
            result = ok(args[0], path, *args[1:])
            for line in result.stderr.splitlines():
                if BAD_PLURAL.search(line):
                    wrong.append((path.name, args, line))
    assert wrong == []
    notes = ok("flows", one).stderr.strip().splitlines()
    assert notes[-1] == "1 connection (1 tcp) in 1 frame"
    notes = ok("anomalies", ROOT / "sample_pcaps" / "refused.pcap").stderr.strip().splitlines()
    assert notes[-1] == "1 finding (1 warning) in 1 connection, 2 frames"
    notes = ok("states", one).stderr.strip().splitlines()
    assert notes[-1] == "1 TCP connection, 1 host with sockets"


def test_warnings_count_three_warnings():
    path = ROOT / "sample_pcaps" / "incident.pcap"
    assert "(3 warnings, 4 info)" in ok("anomalies", path).stderr

"""`--format zeek` writes a log that Zeek's own tools read; `--format zeek-json` Zeek's JSON lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from corpus import CORPUS, needs_corpus

from flowlens.cli import cli
from flowlens.reports.zeeklog import CONN_TYPES, write_zeek

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "sample_pcaps").glob("*.pcap*"))
HEADER_KEYS = ["#separator", "#set_separator", "#empty_field", "#unset_field", "#path", "#open",
               "#fields", "#types"]  # fmt: skip


def read_zeek_log(text: str) -> tuple[dict[str, str], list[str], list[str], list[list[str]]]:
    """(header, fields, types, rows) of a Zeek ASCII log, as zeek-cut reads one: the separator
    from `#separator` (written as \\xHH), column names from `#fields`."""
    lines = [ln for ln in text.splitlines() if not ln.startswith("### ")]  # btest's banner
    assert lines[0].startswith("#separator ")
    sep = bytes.fromhex(lines[0].split(" ", 1)[1].replace("\\x", "")).decode()
    header, rows = {}, []
    for ln in lines:
        if ln.startswith("#separator"):
            header["#separator"] = ln.split(" ", 1)[1]
        elif ln.startswith("#"):
            key, _, value = ln.partition(sep if sep in ln else " ")
            header[key] = value
        else:
            rows.append(ln.split(sep))
    fields, types = header["#fields"].split(sep), header["#types"].split(sep)
    assert all(len(r) == len(fields) for r in rows)
    return header, fields, types, rows


def zeek_cut(text: str, *columns: str) -> list[list[str]]:
    """zeek-cut's column selection (zeek-aux/zeek-cut/zeek-cut.c): by name, in the given order."""
    _, fields, _, rows = read_zeek_log(text)
    idx = [fields.index(c) for c in columns]
    return [[r[i] for i in idx] for r in rows]


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_flows_zeek_log_carries_every_record(path):
    records = [json.loads(ln) for ln in _run("flows", str(path), "--format", "json").splitlines()]
    text = _run("flows", str(path), "--format", "zeek")
    header, fields, types, rows = read_zeek_log(text)
    assert [k for k in header if k != "#close"] == HEADER_KEYS
    assert text.rstrip("\n").splitlines()[-1].startswith("#close\t")
    assert header["#path"] == "conn" and header["#unset_field"] == "-"
    assert fields[:22] == list(CONN_TYPES)[:22]  # Zeek's conn.log columns first, in Zeek's order
    assert set(fields) >= set(records[0]) if records else True
    assert len(rows) == len(records)
    cut = zeek_cut(text, "uid", "id.orig_h", "id.resp_p", "conn_state", "history", "orig_pkts")
    for rec, (uid, orig_h, resp_p, state, history, pkts) in zip(records, cut):
        assert (uid, orig_h, int(resp_p), state, int(pkts)) == (
            rec["uid"], rec["id.orig_h"], rec["id.resp_p"], rec["conn_state"], rec["orig_pkts"]
        )  # fmt: skip
        assert history == (rec["history"] or "-")
    for rec, (ts, duration, orig_bytes) in zip(
        records, zeek_cut(text, "ts", "duration", "orig_bytes")
    ):
        assert abs(float(ts) - rec["ts"]) < 1e-6
        # Zeek logs duration and byte counts only for a duration above 0 (conn/main.zeek set_conn)
        if rec["duration"]:
            assert float(duration) == pytest.approx(rec["duration"], abs=1e-6)
            assert int(orig_bytes) == rec["orig_bytes"]
        else:
            assert duration == orig_bytes == "-"


@needs_corpus
def test_the_header_has_the_shape_of_zeeks_own_conn_logs():
    """Zeek's own conn.log baselines (corpus) read with the same reader; the types of the Zeek
    columns that flowlens writes equal Zeek's."""
    baseline = (CORPUS / "zeek" / "baselines" / "wikipedia.pcap.conn.log").read_text()
    header, fields, types, rows = read_zeek_log(baseline)
    assert [k for k in header if k != "#close"] == HEADER_KEYS
    theirs = dict(zip(fields, types))
    text = _run("flows", str(ROOT / "sample_pcaps" / "clean-close.pcap"), "--format", "zeek")
    _, our_fields, our_types, _ = read_zeek_log(text)
    ours = dict(zip(our_fields, our_types))
    assert {f: ours[f] for f in theirs} == theirs
    for key in ("#separator", "#set_separator", "#empty_field", "#unset_field", "#path"):
        assert read_zeek_log(text)[0][key] == header[key]


def test_values_are_escaped_as_zeek_escapes_them():
    out = io.StringIO()
    recs = [{"a": "-", "b": "", "c": "x\ty", "d": ["1,2", "3"], "e": None, "f": True},
            {"a": "#start", "b": "(empty)", "c": "é", "d": [], "e": 1.5, "f": False}]  # fmt: skip
    write_zeek(recs, out, "test", ["a", "b", "c", "d", "e", "f"])
    _, _, types, rows = read_zeek_log(out.getvalue())
    assert types == ["string", "string", "string", "vector[string]", "double", "bool"]
    assert rows[0] == ["\\x2d", "(empty)", "x\\x09y", "1\\x2c2,3", "-", "T"]
    # a data line that would start like a header line gets its '#' escaped
    assert rows[1] == ["\\x23start", "\\x28empty)", "é", "(empty)", "1.5", "F"]


def test_zeek_json_leaves_unset_fields_out():
    path = str(ROOT / "sample_pcaps" / "refused.pcap")
    lines = [json.loads(ln) for ln in _run("flows", path, "--format", "zeek-json").splitlines()]
    assert lines
    for obj in lines:
        assert None not in obj.values()
        assert list(obj)[:2] == ["ts", "uid"] and isinstance(obj["ts"], float)
        assert "duration" not in obj or obj["duration"] > 0


# -- zat (Zeek Analysis Tools, PyPI) reads the log as Zeek's own -------------------------------

#: the pandas dtype zat's LogToDataFrame gives each Zeek type it converts (zat/log_to_dataframe.py;
#: a timedelta's unit is pandas's choice)
ZAT_DTYPES = {
    "count": "UInt64",
    "port": "UInt16",
    "double": "float64",
    "interval": "timedelta64",
}


def _zat_frame(text: str, tmp_path):
    from zat.log_to_dataframe import LogToDataFrame

    path = tmp_path / "conn.log"
    path.write_text(text)
    return LogToDataFrame().create_dataframe(str(path))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_zat_reads_the_conn_log_with_zeeks_types_and_the_json_values(path, tmp_path):
    import pandas as pd

    records = [json.loads(ln) for ln in _run("flows", str(path), "--format", "json").splitlines()]
    text = _run("flows", str(path), "--format", "zeek")
    _, fields, types, _ = read_zeek_log(text)
    df = _zat_frame(text, tmp_path)
    # zat indexes by ts (a datetime) and keeps every other column, in the log's order
    assert df.index.name == "ts" and str(df.index.dtype).startswith("datetime64")
    assert [df.index.name, *df.columns] == fields
    kinds = dict(zip(fields, types))
    for column in df.columns:
        want = ZAT_DTYPES.get(kinds[column])
        if want is not None:
            assert str(df[column].dtype).split("[")[0] == want, (column, df[column].dtype)
    assert len(df) == len(records)
    for (ts, row), rec in zip(df.iterrows(), records):
        assert abs(ts.value / 1e9 - rec["ts"]) < 1e-6
        logged = rec["duration"] > 0  # Zeek's set_conn: duration and sizes only then
        for column, value in rec.items():
            if column == "ts":
                continue
            got = row[column]
            if value is None or (not logged and column in ("duration", "orig_bytes", "resp_bytes")):
                assert pd.isna(got), (column, got)
            elif column == "duration":
                assert got.total_seconds() == pytest.approx(value, abs=1e-6)
            elif isinstance(value, bool):
                assert got == ("T" if value else "F"), (column, got)
            elif isinstance(value, dict):
                assert json.loads(got) == value
            elif isinstance(value, float):
                assert got == pytest.approx(value, abs=1e-6), column
            else:
                assert got == value, (column, got, value)
        assert row["ip_proto"] == {"tcp": 6, "udp": 17}.get(
            rec["proto"], 58 if ":" in rec["id.orig_h"] else 1
        )

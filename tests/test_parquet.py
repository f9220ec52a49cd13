"""`--format parquet -o FILE` on flows, anomalies, rtt and states: batch's schemas, the same
values as the JSON output, written in bounded batches; `-o` for the other formats; DuckDB reads
the files (issue 19)."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import pcapgen
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import flowlens
from flowlens.analyzers.anomalies.detector import ANOMALY_FIELDS
from flowlens.batch.task import ANOMALY_SCHEMA, CONNECTION_SCHEMA
from flowlens.cli import cli
from flowlens.core.arrow import CAPTURE_COLUMNS, COLUMN_TYPES, schema
from flowlens.core.connections import RECORD_FIELDS
from flowlens.reports import parquet as parquet_writer
from flowlens.reports.rtt import AGGREGATE_FIELDS, CONNECTION_FIELDS, SAMPLE_FIELDS
from flowlens.reports.states import LISTENING_FIELDS, STATES

ROOT = Path(__file__).resolve().parents[1]
INCIDENT = str(ROOT / "sample_pcaps" / "incident.pcap")
#: captures with TCP, UDP and ICMP flows, findings and round trips between them
SAMPLES = [INCIDENT, *(str(ROOT / "sample_pcaps" / n) for n in ("icmp-echo.pcap", "udp-dns.pcap"))]


def _run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def _json_rows(*args: str) -> list[dict]:
    return [json.loads(line) for line in _run(*args, "--format", "json").stdout.splitlines()]


def _parquet(tmp_path, *args: str) -> pa.Table:
    path = tmp_path / "out.parquet"
    _run(*args, "--format", "parquet", "-o", str(path))
    return pq.read_table(path)


def _same(parquet_value, json_value, column: str) -> bool:
    """A Parquet cell equals the JSON output's value: nested objects are JSON text in Parquet
    (`app`, `details`), maps come back as item lists (`sources`)."""
    if isinstance(json_value, (dict, list)) and isinstance(parquet_value, str):
        return json.loads(parquet_value) == json_value
    if isinstance(json_value, dict):
        return dict(parquet_value or []) == json_value
    if isinstance(json_value, float) and isinstance(parquet_value, float):
        return parquet_value == json_value or (math.isnan(parquet_value) and math.isnan(json_value))
    return parquet_value == json_value


def _assert_rows_match(table: pa.Table, rows: list[dict], capture: str) -> None:
    got = table.to_pylist()
    assert len(got) == len(rows)
    for g, r in zip(got, rows):
        assert set(g) == set(r) | set(CAPTURE_COLUMNS)
        for column, value in r.items():
            assert _same(g[column], value, column), (column, g[column], value, r.get("uid"))
        assert g["capture"] == Path(capture).name
        assert g["capture_path"] == str(Path(capture).resolve())


def _equal_schema(a: pa.Schema, b: pa.Schema) -> bool:
    return a.remove_metadata().equals(b.remove_metadata())


# -- flows -----------------------------------------------------------------------------------


@pytest.mark.parametrize("capture", SAMPLES, ids=lambda p: Path(p).name)
def test_flows_parquet_holds_the_json_records_field_by_field(capture, tmp_path):
    table = _parquet(tmp_path, "flows", capture, "--services")
    assert _equal_schema(table.schema, CONNECTION_SCHEMA)
    _assert_rows_match(table, _json_rows("flows", capture, "--services"), capture)


def test_flows_parquet_is_what_batch_stores_for_the_capture(tmp_path):
    """Same schema and same rows as batch's connections dataset for the same capture."""
    table = _parquet(tmp_path, "flows", INCIDENT)
    _run("batch", INCIDENT, "-o", str(tmp_path / "out"), "-j", "1", "--no-report")
    (stored,) = (tmp_path / "out" / "connections").rglob("*.parquet")
    batch = pq.read_table(stored)
    assert _equal_schema(table.schema, batch.schema)
    assert table.sort_by("uid").equals(batch.sort_by("uid"))


def test_flows_parquet_from_standard_input_has_null_capture_columns(tmp_path):
    data = Path(ROOT / "sample_pcaps" / "udp-dns.pcap").read_bytes()
    path = tmp_path / "stdin.parquet"
    result = CliRunner().invoke(
        cli, ["flows", "-", "--format", "parquet", "-o", str(path)], input=data
    )
    assert result.exit_code == 0, result.output
    rows = pq.read_table(path).to_pylist()
    assert rows and all(r["capture"] is None and r["capture_path"] is None for r in rows)


# -- anomalies, rtt, states ------------------------------------------------------------------


def test_anomalies_parquet_has_batchs_anomaly_schema_and_the_json_values(tmp_path):
    table = _parquet(tmp_path, "anomalies", INCIDENT)
    assert _equal_schema(table.schema, ANOMALY_SCHEMA)
    rows = _json_rows("anomalies", INCIDENT)
    assert len(rows) > 5
    _assert_rows_match(table, rows, INCIDENT)


def test_anomalies_parquet_is_what_batch_stores(tmp_path):
    table = _parquet(tmp_path, "anomalies", INCIDENT)
    _run("batch", INCIDENT, "-o", str(tmp_path / "out"), "-j", "1", "--no-report")
    (stored,) = (tmp_path / "out" / "anomalies").rglob("*.parquet")
    batch = pq.read_table(stored)
    assert _equal_schema(table.schema, batch.schema)
    key = ["kind", "ts", "uid", "summary"]
    assert table.sort_by([(k, "ascending") for k in key]).equals(
        batch.sort_by([(k, "ascending") for k in key])
    )


@pytest.mark.parametrize(
    "args, fields",
    [
        ((), CONNECTION_FIELDS),
        (("--samples",), SAMPLE_FIELDS),
        (("--by", "server"), AGGREGATE_FIELDS),
        (("--by", "pair"), AGGREGATE_FIELDS),
    ],
    ids=["connection", "samples", "by-server", "by-pair"],
)
def test_rtt_parquet_schema_and_values(args, fields, tmp_path):
    table = _parquet(tmp_path, "rtt", INCIDENT, *args)
    assert _equal_schema(table.schema, schema(fields))
    rows = _json_rows("rtt", INCIDENT, *args)
    assert rows
    # json leaves out nothing; the Parquet file has every column, null where a row has none
    got = table.to_pylist()
    assert len(got) == len(rows)
    for g, r in zip(got, rows):
        for column in fields:
            assert _same(g[column], r.get(column), column), (column, g[column], r.get(column))


@pytest.mark.parametrize(
    "args, fields",
    [
        (("--interval", "10s"), ("ts", "time_s", "host", "total", *STATES)),
        (("--at", "+60s"), ("host", "ts", "total", *STATES)),
        (("--listening",), LISTENING_FIELDS),
    ],
    ids=["series", "at", "listening"],
)
def test_states_parquet_schema_and_values(args, fields, tmp_path):
    table = _parquet(tmp_path, "states", INCIDENT, *args)
    assert _equal_schema(table.schema, schema(fields))
    rows = _json_rows("states", INCIDENT, *args)
    assert rows
    _assert_rows_match(table, rows, INCIDENT)


def test_every_column_written_has_its_own_type():
    """A field added to a record without a type in core/arrow.py would be stored as text:
    this asks for the type (the fallback is for batches of files written by older versions)."""
    for fields in (RECORD_FIELDS, ANOMALY_FIELDS, CONNECTION_FIELDS, SAMPLE_FIELDS,
                   AGGREGATE_FIELDS, LISTENING_FIELDS, ("ts", "time_s", "host", "total", *STATES)):  # fmt: skip
        assert [f for f in fields if f not in COLUMN_TYPES] == []


def test_to_arrow_has_the_schemas_without_the_capture_columns():
    a = flowlens.analyze(INCIDENT)
    for what, fields, rows in (
        ("connections", RECORD_FIELDS, a.records()),
        ("findings", ANOMALY_FIELDS, a.findings()),
        ("rtt", CONNECTION_FIELDS, a.rtt()),
    ):
        table = a.to_arrow(what)
        assert _equal_schema(table.schema, schema(fields, capture_columns=False)), what
        assert table.num_rows == len(rows) > 0
    conns = a.to_arrow()
    assert conns.column("uid").to_pylist() == [c.uid for c in a.connections]
    own = pa.schema([f for f in CONNECTION_SCHEMA if f.name not in CAPTURE_COLUMNS])
    assert _equal_schema(conns.schema, own)


# -- bounded batches -------------------------------------------------------------------------


def test_flows_parquet_is_written_in_row_groups_as_connections_end(tmp_path, monkeypatch):
    """Records are converted BATCH_ROWS at a time and written ROW_GROUP_ROWS at a time, and
    flows hands the writer its stream, not a list of every record."""
    monkeypatch.setattr(parquet_writer, "BATCH_ROWS", 4)
    monkeypatch.setattr(parquet_writer, "ROW_GROUP_ROWS", 8)
    seen = []
    real = parquet_writer.write_parquet

    def spy(records, out, fields, capture):
        seen.append(type(records))
        return real(records, out, fields, capture)

    monkeypatch.setattr(parquet_writer, "write_parquet", spy)
    capture = pcapgen.write_pcap(tmp_path / "many.pcap", pcapgen.time_wait_pileup(count=30))
    path = tmp_path / "many.parquet"
    _run("flows", capture, "--format", "parquet", "-o", str(path))
    assert seen and not issubclass(seen[0], (list, tuple))
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 30
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [8, 8, 8, 6]


def test_the_writer_writes_before_the_records_run_out(tmp_path, monkeypatch):
    monkeypatch.setattr(parquet_writer, "BATCH_ROWS", 10)
    monkeypatch.setattr(parquet_writer, "ROW_GROUP_ROWS", 20)
    pulled = [0]
    pulled_at_write = []
    real = pq.ParquetWriter.write_table

    def spy(self, table, *a, **kw):
        pulled_at_write.append(pulled[0])
        return real(self, table, *a, **kw)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", spy)

    def records():
        for i in range(100):
            pulled[0] += 1
            yield {"uid": f"C{i}", "ts": float(i), "count": i}

    n = parquet_writer.write_parquet(
        records(), str(tmp_path / "x.parquet"), ("uid", "ts", "count"), None
    )
    assert n == 100
    # each row group written as soon as its rows were in: never more than ROW_GROUP_ROWS waiting
    assert pulled_at_write == [20, 40, 60, 80, 100]
    assert pq.read_table(tmp_path / "x.parquet").column("count").to_pylist() == list(range(100))


def test_a_capture_without_records_gives_a_file_with_the_schema(tmp_path):
    capture = pcapgen.write_pcap(tmp_path / "udp.pcap", pcapgen.udp_exchange())
    table = _parquet(tmp_path, "flows", capture, "--proto", "tcp")
    assert table.num_rows == 0
    assert _equal_schema(table.schema, CONNECTION_SCHEMA)


# -- -o and its errors -----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["flows", "anomalies", "rtt", "states"])
@pytest.mark.parametrize("output", [None, "-"], ids=["no-o", "stdout"])
def test_parquet_to_stdout_is_refused(command, output, tmp_path):
    args = [command, INCIDENT, "--format", "parquet"] + (["-o", output] if output else [])
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert result.stderr == "Error: --format parquet needs -o FILE\n"
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["flows", "anomalies", "rtt", "states"])
def test_a_bad_output_path_fails_before_any_work(command, tmp_path):
    target = tmp_path / "missing" / "out.parquet"
    result = CliRunner().invoke(cli, [command, INCIDENT, "--format", "parquet", "-o", str(target)])
    assert result.exit_code == 1
    assert result.stderr == f"Error: {target}: no such directory {target.parent}\n"
    assert not target.parent.exists()


@pytest.mark.parametrize("fmt", ["json", "csv", "table", "zeek"])
def test_o_writes_the_other_formats_to_the_file(fmt, tmp_path):
    path = tmp_path / f"flows.{fmt}"
    to_stdout = _run("flows", INCIDENT, "--format", fmt).stdout
    result = _run("flows", INCIDENT, "--format", fmt, "-o", str(path))
    assert result.stdout == ""
    text = path.read_text()
    if fmt == "zeek":  # its #open and #close lines carry the time of writing
        text, to_stdout = (
            [ln for ln in t.splitlines() if not ln.startswith(("#open", "#close"))]
            for t in (text, to_stdout)
        )
    assert text == to_stdout
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_a_failed_run_leaves_the_output_as_it_was(tmp_path):
    path = tmp_path / "flows.parquet"
    path.write_bytes(b"before")
    broken = tmp_path / "broken.pcap"
    broken.write_bytes(b"not a capture at all")
    result = CliRunner().invoke(cli, ["flows", str(broken), "--format", "parquet", "-o", str(path)])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {broken}: ")
    assert path.read_bytes() == b"before"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.pcap", "flows.parquet"]


# -- DuckDB ----------------------------------------------------------------------------------


def test_duckdb_runs_the_readmes_query(tmp_path, monkeypatch):
    """README: `flowlens flows x.pcap --format parquet -o flows.parquet`, then
    `duckdb -c "select conn_state, count(*) from 'flows.parquet' group by 1"`."""
    import duckdb  # (the test extra's; imported here: it is slow to import)

    readme = (ROOT / "README.md").read_text()
    query = "select conn_state, count(*) from 'flows.parquet' group by 1"
    assert f'duckdb -c "{query}"' in readme
    assert "flowlens flows x.pcap --format parquet -o flows.parquet" in readme
    monkeypatch.chdir(tmp_path)
    _run("flows", INCIDENT, "--format", "parquet", "-o", "flows.parquet")
    got = dict(duckdb.sql(query).fetchall())
    expected = Counter(r["conn_state"] for r in _json_rows("flows", INCIDENT))
    assert got == dict(expected)
    # the other files read as well, with their types
    _run("anomalies", INCIDENT, "--format", "parquet", "-o", "anomalies.parquet")
    kinds = duckdb.sql(
        "select kind, count(*), min(len(evidence)) from 'anomalies.parquet' group by 1"
    ).fetchall()
    expected_kinds = Counter(r["kind"] for r in _json_rows("anomalies", INCIDENT))
    assert {k: n for k, n, _ in kinds} == dict(expected_kinds)

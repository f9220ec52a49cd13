"""The aggregate HTML report of a `flowlens batch` output directory: what failed, the top anomalies
across the archive, and per-host trends over time (matplotlib figures embedded as PNG).

The tables and figure data come from small pure functions over DataFrames (`anomaly_kinds`,
`top_anomalies`, `host_table`, `trend_tables`), so tests check numbers, not pixels.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import os

import pandas as pd
from matplotlib.figure import Figure

from ..analyzers.anomalies.detector import KINDS
from .formats import column_decimals

__all__ = [
    "archive_report",
    "load_connections",
    "load_anomalies",
    "anomaly_kinds",
    "top_anomalies",
    "host_table",
    "trend_tables",
    "bucket_for",
    "KIND_COLORS",
    "trend_figure",
]

_CONN_COLUMNS = ["uid", "ts", "id.orig_h", "id.resp_h", "id.resp_p", "proto", "conn_state",
                 "orig_state", "resp_state", "irtt_ms", "capture"]  # fmt: skip
_SEVERITY_RANK = {"critical": 0, "warning": 1, "info": 2}
#: hosts (or servers) drawn per figure; the rest would be unreadable lines
TOP_HOSTS = 6
#: one colour per finding kind, the same in every report: matplotlib's tab20, its ten dark
#: tones first, then the ten light ones (a kind's bar never shares a colour with another's)
_TAB20 = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
          "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")  # fmt: skip
KIND_COLORS = dict(zip(KINDS, _TAB20, strict=False))


def _read(outdir: str, dataset: str, columns: list[str]) -> pd.DataFrame:
    path = os.path.join(outdir, dataset)
    has_files = os.path.isdir(path) and any(
        name.endswith(".parquet") and not name.startswith(".")
        for _d, _s, files in os.walk(path)
        for name in files
    )
    if not has_files:
        return pd.DataFrame(columns=columns)
    import pyarrow.dataset as ds

    data = ds.dataset(path, format="parquet", partitioning="hive")
    wanted = [c for c in columns if c in data.schema.names]
    frame = data.to_table(columns=wanted).to_pandas()
    for c in columns:
        if c not in frame:
            frame[c] = None
    return frame


def load_connections(outdir: str) -> pd.DataFrame:
    """The columns of the connections dataset the report uses."""
    return _read(outdir, "connections", _CONN_COLUMNS)


def load_anomalies(outdir: str) -> pd.DataFrame:
    return _read(outdir, "anomalies", ["kind", "severity", "ts", "uid", "summary", "capture"])


def bucket_for(span_s: float) -> tuple[str, str]:
    """(pandas frequency, label) of the time bucket for trends over `span_s` seconds."""
    if span_s <= 2 * 3600:
        return "1min", "minute"
    if span_s <= 2 * 86400:
        return "1h", "hour"
    if span_s <= 90 * 86400:
        return "1D", "day"
    return "7D", "week"


def anomaly_kinds(anomalies: pd.DataFrame) -> pd.DataFrame:
    """One row per kind: findings, captures affected, worst severity, first and last seen."""
    if anomalies.empty:
        return pd.DataFrame(columns=["kind", "findings", "captures", "worst", "first", "last"])
    a = anomalies.assign(rank=anomalies["severity"].map(_SEVERITY_RANK).fillna(3))
    out = a.groupby("kind").agg(
        findings=("kind", "size"),
        captures=("capture", "nunique"),
        rank=("rank", "min"),
        first=("ts", "min"),
        last=("ts", "max"),
    )
    names = {v: k for k, v in _SEVERITY_RANK.items()}
    out["worst"] = out["rank"].map(names).fillna("-")
    out = out.reset_index().sort_values(["rank", "findings", "kind"], ascending=[True, False, True])
    return out[["kind", "findings", "captures", "worst", "first", "last"]].reset_index(drop=True)


def top_anomalies(anomalies: pd.DataFrame, limit: int = 30) -> pd.DataFrame:
    """The `limit` most severe findings, newest first within a severity."""
    if anomalies.empty:
        return anomalies
    a = anomalies.assign(rank=anomalies["severity"].map(_SEVERITY_RANK).fillna(3))
    a = a.sort_values(["rank", "ts", "kind"], ascending=[True, False, True], na_position="last")
    return a.head(limit).drop(columns="rank").reset_index(drop=True)


def host_table(conns: pd.DataFrame, anomalies: pd.DataFrame, limit: int = 25) -> pd.DataFrame:
    """Per host: connections opened and answered, how many of its own sockets were left in
    CLOSE_WAIT or TIME_WAIT, connections it had refused, and anomalies on its connections."""
    columns = ["host", "as_client", "as_server", "close_wait", "time_wait", "refused", "anomalies"]
    if conns.empty:
        return pd.DataFrame(columns=columns)
    orig = conns["id.orig_h"]
    resp = conns["id.resp_h"]
    parts = {
        "as_client": orig.value_counts(),
        "as_server": resp.value_counts(),
        "close_wait": pd.concat(
            [orig[conns["orig_state"] == "CLOSE_WAIT"], resp[conns["resp_state"] == "CLOSE_WAIT"]]
        ).value_counts(),
        "time_wait": pd.concat(
            [orig[conns["orig_state"] == "TIME_WAIT"], resp[conns["resp_state"] == "TIME_WAIT"]]
        ).value_counts(),
        "refused": orig[conns["conn_state"] == "REJ"].value_counts(),
    }
    if not anomalies.empty and anomalies["uid"].notna().any():
        hosts = conns[["uid", "capture", "id.orig_h", "id.resp_h"]]
        joined = anomalies.dropna(subset=["uid"]).merge(hosts, on=["uid", "capture"])
        parts["anomalies"] = pd.concat([joined["id.orig_h"], joined["id.resp_h"]]).value_counts()
    table = pd.DataFrame(parts).fillna(0).astype(int)
    for c in columns[1:]:
        if c not in table:
            table[c] = 0
    table["total"] = table["as_client"] + table["as_server"]
    table = table.rename_axis("host").reset_index()
    table = table.sort_values(
        ["anomalies", "close_wait", "total", "host"], ascending=[False, False, False, True]
    )
    return table[columns].head(limit).reset_index(drop=True)


def trend_tables(
    conns: pd.DataFrame, anomalies: pd.DataFrame, freq: str
) -> dict[str, pd.DataFrame]:
    """Time-bucketed tables behind the figures (index: bucket start, UTC):

    - `anomalies`: findings per kind;
    - `connections`: connections per host (either end), for the busiest hosts;
    - `rtt`: median handshake RTT (irtt_ms) per server (`host:port`), for the busiest servers.
    """
    out: dict[str, pd.DataFrame] = {}
    if not anomalies.empty and anomalies["ts"].notna().any():
        a = anomalies.dropna(subset=["ts"])
        t = pd.to_datetime(a["ts"], unit="s", utc=True).dt.floor(freq)
        out["anomalies"] = pd.crosstab(t.rename("bucket"), a["kind"])
    if not conns.empty:
        t = pd.to_datetime(conns["ts"], unit="s", utc=True).dt.floor(freq).rename("bucket")
        ends = pd.DataFrame(
            {
                "bucket": pd.concat([t, t]),
                "host": pd.concat([conns["id.orig_h"], conns["id.resp_h"]]),
            }
        )
        busiest = ends["host"].value_counts().head(TOP_HOSTS).index
        ends = ends[ends["host"].isin(busiest)]
        out["connections"] = pd.crosstab(ends["bucket"], ends["host"])[list(busiest)]
        rtt = conns.dropna(subset=["irtt_ms"])
        if not rtt.empty:
            server = rtt["id.resp_h"].astype(str) + ":" + rtt["id.resp_p"].astype(str)
            top = server.value_counts().head(TOP_HOSTS).index
            keep = server.isin(top)
            frame = pd.DataFrame(
                {
                    "bucket": t[rtt.index][keep],
                    "server": server[keep],
                    "irtt_ms": rtt["irtt_ms"][keep],
                }
            )
            out["rtt"] = frame.pivot_table(
                index="bucket", columns="server", values="irtt_ms", aggfunc="median"
            )[list(top)]
    return out


# ------------------------------------------------------------------ rendering


def trend_figure(table: pd.DataFrame, title: str, ylabel: str, kind: str) -> Figure:
    """One trend of `trend_tables` over time: stacked bars (findings per kind, each kind in its
    KIND_COLORS colour) or a line per column."""
    fig = Figure(figsize=(9, 3.4), dpi=100)
    ax = fig.add_subplot()
    x = (
        table.index.tz_convert(None)
        if getattr(table.index, "tz", None) is not None
        else table.index
    )
    if kind == "bar":
        bottom = None
        width = _bar_width(x)
        for col in table.columns:
            ax.bar(x, table[col].values, width=width, bottom=bottom, label=str(col), align="edge",
                   color=KIND_COLORS.get(str(col), "#333333"))  # fmt: skip
            bottom = table[col].values if bottom is None else bottom + table[col].values
    else:
        for col in table.columns:
            ax.plot(x, table[col].values, marker="o", markersize=3, label=str(col))
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("UTC")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


def _bar_width(x) -> float:
    if len(x) > 1:
        step = pd.Series(x).diff().min()
        return step / pd.Timedelta(days=1) * 0.9
    return 1 / 24 / 60 * 0.9


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _when(ts) -> str:
    if ts is None or pd.isna(ts):
        return "-"
    return _dt.datetime.fromtimestamp(float(ts), _dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _missing(value) -> bool:
    return value is None or (not isinstance(value, str) and pd.isna(value))


def _places(values: list) -> int | None:
    """How a numeric column prints: None for integers (a count with a gap is stored as float
    by pandas: 313.0 prints 313), else one number of decimals for the whole column."""
    numbers = [v for v in values if not _missing(v) and not isinstance(v, (bool, str))]
    if not numbers or not all(isinstance(v, (int, float)) for v in numbers):
        return None
    if all(float(v).is_integer() for v in numbers):
        return None
    most = 0
    for v in numbers:
        text = f"{float(v):.6f}".rstrip("0")
        most = max(most, len(text) - text.index(".") - 1)
    return most


def _html_table(frame: pd.DataFrame, columns: list[str], headers: list[str], times=()) -> str:
    if frame.empty:
        return "<p class=none>None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    places = {}
    for c in columns:
        if c not in times:
            found = _places(list(frame[c]))
            fixed = column_decimals(c)
            places[c] = fixed if found is not None and fixed is not None else found
    body = []
    for _, row in frame.iterrows():
        cells = []
        for c in columns:
            value = row[c]
            numeric = (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and not _missing(value)
            )
            if c in times:
                text = _when(value)
            elif _missing(value):
                text = "-"
            elif numeric:
                p = places.get(c)
                text = f"{int(value):,}" if p is None else f"{float(value):,.{p}f}"
            else:
                text = str(value)
            cls = " class=time" if c in times else " class=num" if numeric else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0} td,th{padding:.2em .6em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums} th{background:#f4f4f4}
td.time{white-space:nowrap;font-variant-numeric:tabular-nums}
.stats span{display:inline-block;margin-right:2em} .stats b{font-size:1.3em;display:block}
.failed{color:#b00} .none{color:#888} img{max-width:100%}
"""


def archive_report(outdir: str, summary: list[dict]) -> str:
    """The report as one self-contained HTML page (figures inline as base64 PNG)."""
    conns = load_connections(outdir)
    anomalies = load_anomalies(outdir)
    ok = [r for r in summary if r["status"] == "ok"]
    failed = [r for r in summary if r["status"] != "ok"]
    firsts = [r["first_ts"] for r in ok if r.get("first_ts") is not None]
    lasts = [r["last_ts"] for r in ok if r.get("last_ts") is not None]
    span = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    freq, unit = bucket_for(span)
    figures = []
    trends = trend_tables(conns, anomalies, freq)
    for key, title, ylabel, kind in (
        ("anomalies", f"Anomalies per {unit}, by kind", "findings", "bar"),
        (
            "connections",
            f"Connections per {unit}, busiest hosts (either end)",
            "connections",
            "line",
        ),
        ("rtt", f"Median handshake RTT per {unit}, busiest servers", "irtt (ms)", "line"),
    ):
        if key in trends and not trends[key].empty:
            figures.append((title, _png(trend_figure(trends[key], title, ylabel, kind))))
    stats = [
        ("captures", len(summary)),
        ("failed", len(failed)),
        ("packets", sum(r["packets"] or 0 for r in ok)),
        ("connections", sum(r["connections"] or 0 for r in ok)),
        ("anomalies", sum(r["anomalies"] or 0 for r in ok)),
    ]
    parts = [
        "<!doctype html><html><head><meta charset=utf-8><title>flowlens batch report</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>flowlens batch report</h1>",
        f"<p>{html.escape(outdir)} &middot; {_when(min(firsts)) if firsts else '-'} to "
        f"{_when(max(lasts)) if lasts else '-'} UTC</p>",
        "<div class=stats>" + "".join(f"<span><b>{v:,}</b>{k}</span>" for k, v in stats) + "</div>",
    ]
    if failed:
        parts.append(f"<h2 class=failed>Failed captures ({len(failed)})</h2>")
        parts.append(
            _html_table(pd.DataFrame(failed), ["capture_path", "error"], ["capture", "error"])
        )
    parts.append("<h2>Anomalies by kind</h2>")
    parts.append(_html_table(anomaly_kinds(anomalies), ["kind", "worst", "findings", "captures", "first", "last"],
                             ["kind", "worst severity", "findings", "captures", "first seen", "last seen"], times=("first", "last")))  # fmt: skip
    parts.append("<h2>Top anomalies</h2>")
    parts.append(_html_table(top_anomalies(anomalies), ["ts", "severity", "kind", "capture", "uid", "summary"],
                             ["time (UTC)", "severity", "kind", "capture", "uid", "summary"], times=("ts",)))  # fmt: skip
    parts.append("<h2>Trends over time</h2>")
    if not figures:
        parts.append("<p class=none>No data.</p>")
    for title, png in figures:
        parts.append(
            f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{png}"></figure>'
        )
    parts.append("<h2>Hosts</h2>")
    parts.append("<p>Sockets left in CLOSE_WAIT or TIME_WAIT are counted on the host that holds them; "
                 "refused counts connections the host tried that were rejected.</p>")  # fmt: skip
    parts.append(_html_table(host_table(conns, anomalies), ["host", "anomalies", "close_wait", "time_wait", "refused", "as_client", "as_server"],
                             ["host", "anomalies", "CLOSE_WAIT", "TIME_WAIT", "refused", "opened", "answered"]))  # fmt: skip
    parts.append("<h2>Captures</h2>")
    cap_frame = pd.DataFrame(summary) if summary else pd.DataFrame(columns=["capture"])
    if not cap_frame.empty:
        cap_frame["anomalies_by_kind"] = cap_frame["anomalies_by_kind"].map(
            lambda d: ", ".join(f"{k} {n}" for k, n in (d or {}).items()) or "-"
        )
    parts.append(_html_table(cap_frame, ["capture", "status", "first_ts", "duration_s", "packets", "connections", "anomalies_by_kind"],
                             ["capture", "status", "start (UTC)", "duration (s)", "packets", "connections", "anomalies"], times=("first_ts",)))  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts)

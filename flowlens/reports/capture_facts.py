"""The postmortem report's facts about the capture: what each pipeline of the run knows of it
(`run_facts`, every shard's), the run's facts from them (`merge_facts`), and the lines the
report shows (`fact_lines`)."""

from __future__ import annotations

import os
from collections import Counter

from ..core.connections import format_addr
from ..core.decode import LINKTYPE_NAMES
from ..core.pipeline import Pipeline
from .gather import ReportGather, open_peak
from .ladder import utc_text

__all__ = ["run_facts", "merge_facts", "fact_lines"]


def run_facts(pipe: Pipeline) -> dict:
    """What the report's facts need of one pipeline (each shard's, merged by `merge_facts`)."""
    stats = pipe.stats
    return {
        "container": stats.container,
        "bytes": stats.bytes,
        "duration_ns": stats.duration_ns,
        "linktypes": dict(stats.linktypes),
        "skipped": Counter(pipe.skipped),
        "non_ip": Counter(pipe.non_ip),
        "open_peak": pipe.table.open_peak,
    }


def merge_facts(finished: list[dict], facts: dict, opened, ended) -> dict:
    """The run's facts from its pipelines': the capture's own are every shard's (each read
    every frame), the frames decoded are counted once across the shards, and the peak of
    open connections comes from every connection's first and last frame (`open_peak`)."""
    out = dict(finished[0])
    out.update(facts)
    if len(finished) > 1:
        out["skipped"] = sum((f["skipped"] for f in finished), Counter())
        out["non_ip"] = sum((f["non_ip"] for f in finished), Counter())
        out["open_peak"] = open_peak(opened, ended)
    return out


def _si(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min ({seconds:.0f} s)"
    return f"{seconds / 3600:.1f} h ({seconds:.0f} s)"


def _by_count(counts: Counter, n: int | None = None) -> list[tuple[str, int]]:
    # most first, ties by name: the same order however many shards counted them
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def fact_lines(path: str, run: dict, gather: ReportGather) -> list[tuple[str, str]]:
    """The capture's facts; `run`: `merge_facts` of the run."""
    out = [("file", path if path != "-" else "standard input")]
    if path != "-":
        try:
            out.append(("file size", _si(os.path.getsize(path))))
        except OSError:
            pass
    out.append(("container", run["container"] or "-"))
    out.append(("packets", f"{run['frames']:,} frames, {_si(run['bytes'])} captured"))
    out.append(("first packet", utc_text(run["first_ts_ns"])))
    out.append(("last packet", utc_text(run["last_ts_ns"])))
    out.append(("duration", _duration(run["duration_ns"] / 1e9)))
    links = ", ".join(
        f"{LINKTYPE_NAMES.get(lt, str(lt))} ({n:,} frames)"
        for lt, n in sorted(run["linktypes"].items())
    )
    out.append(("link types", links or "-"))
    protos = ", ".join(f"{n:,} {p.upper()}" for p, n in gather.by_proto.most_common())
    out.append(("connections", f"{gather.total:,}" + (f" ({protos})" if protos else "")))
    top = ", ".join(f"{format_addr(h)} ({n:,})" for h, n in gather.hosts.most_common(8))
    more = len(gather.hosts) - 8
    out.append(
        ("hosts", f"{len(gather.hosts):,}: {top}" + (f", and {more} more" if more > 0 else ""))
    )
    skipped = sum(run["skipped"].values())
    if skipped:
        why = ", ".join(f"{n:,} {reason}" for reason, n in _by_count(run["skipped"]))
        out.append(("skipped frames", f"{skipped:,} undecodable ({why})"))
    else:
        out.append(("skipped frames", "none"))
    non_ip = sum(run["non_ip"].values())
    if non_ip:
        kinds = ", ".join(f"{n:,} {k}" for k, n in _by_count(run["non_ip"], 5))
        out.append(("not IP", f"{non_ip:,} frames ({kinds})"))
    out.append(("open connections at peak", f"{run['open_peak']:,}"))
    if gather.late_dropped:
        out.append(
            ("connection rows", f"the first {gather.options.max_table_rows:,}, and "
             f"{len(gather.late_records):,} more that findings could name; "
             f"{gather.late_dropped:,} more such connections have no row")
        )  # fmt: skip
    return out

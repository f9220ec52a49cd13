"""`flowlens anomalies`: what went wrong in a capture, most severe first, with the frames that show it."""

from __future__ import annotations

from collections import Counter

import click

from ..analyzers.anomalies.detector import (
    ANOMALY_FIELDS,
    KINDS,
    SEVERITIES,
    AnomalyDetector,
    Thresholds,
)
from ..analyzers.anomalies.holds import OpenStarts
from ..analyzers.service_id import ServiceAnalyzer
from ..analyzers.tcpanalysis import TcpAnalyzer
from ..reports.formats import TABLE_WIDTH, plural, utc_cells
from ._common import (
    Output,
    capture_argument,
    config_from,
    filter_options,
    nothing_line,
    output_option,
    records_format_option,
    report_damage,
    selection_from,
    table_options,
    warn,
    wide_option,
)
from ._stream import ConnectionStream, jobs_option, scheduler_option

#: --wide: the uid and every evidence frame, the summary on one line
TABLE_COLUMNS = ("severity", "kind", "ts", "uid", "evidence", "summary")
TABLE_HEADERS = ("severity", "kind", "time (UTC)", "uid", "evidence", "summary")
#: the default, within 120 columns: the summary folded, the first evidence frames
SHORT_COLUMNS = ("severity", "kind", "ts", "evidence", "summary")
SHORT_HEADERS = ("severity", "kind", "time (UTC)", "evidence", "summary")
#: evidence frames the default table lists (the rest counted: `4,7,9 +7`)
SHORT_EVIDENCE = 3
#: shard 0's share of the hash against an even share with forked --jobs shards (core/shard.py's
#: FIRST_WEIGHT): this process also adds every connection's part of the findings up
#: (AnomalyDetector.add_parts), so it reads fewer connections; measured on
#: bench-out/sequential-1M.pcap with 2 shards as the weight where the two processes' CPU times
#: (os.times) came out even, parent 1.8-2.0 s against 1.6-1.8 s at 0.84
SHARD_WEIGHT = 0.80


def _evidence_text(frames: list[int], wide: bool) -> str | None:
    if not frames:
        return None
    if wide or len(frames) <= SHORT_EVIDENCE:
        return ",".join(map(str, frames))
    return ",".join(map(str, frames[:SHORT_EVIDENCE])) + f" +{len(frames) - SHORT_EVIDENCE}"


_DEFAULTS = Thresholds()


class PortRange(click.ParamType):
    """`LO-HI`, two port numbers, LO <= HI (as in net.ipv4.ip_local_port_range)."""

    name = "LO-HI"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        text = str(value).strip().replace(" ", "-").replace(":", "-")
        parts = [p for p in text.split("-") if p]
        try:
            lo, hi = (int(p) for p in parts)
        except ValueError:
            self.fail(f"{value!r} is not a port range like 32768-60999", param, ctx)
        if not 1 <= lo <= hi <= 65535:
            self.fail(f"{value!r}: need 1 <= LO <= HI <= 65535", param, ctx)
        return lo, hi


def _threshold_options(func):
    """One option per tunable threshold, defaults from `Thresholds`."""
    d = _DEFAULTS
    options = [
        click.option(
            "--ephemeral-range",
            type=PortRange(),
            default=None,
            help="The clients' ephemeral port range, for port exhaustion; always used when given. "
            "Not given: Linux's 32768-60999, a narrowed range when a client used a contiguous "
            "block of ports completely, or the OS range (Windows/macOS 49152-65535) its ports fit.",
        ),
        click.option(
            "--time-wait-min",
            type=click.IntRange(min=1),
            default=d.time_wait_min,
            show_default=True,
            help="Report TIME_WAIT accumulation from this many client ports toward one server "
            "port in TIME_WAIT at once (a warning from 10% of the ephemeral range).",
        ),
        click.option(
            "--close-wait",
            "close_wait_s",
            type=click.FloatRange(min=0),
            default=d.close_wait_s,
            show_default=True,
            help="Seconds an endpoint may sit in CLOSE_WAIT (peer closed, it did not) before it "
            "is reported.",
        ),
        click.option(
            "--fin-wait-2",
            "fin_wait_2_s",
            type=click.FloatRange(min=0),
            default=d.fin_wait_2_s,
            show_default=True,
            help="Seconds in FIN_WAIT_2 (FIN acknowledged, no FIN back) before it is reported.",
        ),
        click.option(
            "--syn-flood-min",
            type=click.IntRange(min=1),
            default=d.syn_flood_min,
            show_default=True,
            help="Half-open attempts toward one host:port within --syn-flood-window that make a "
            "SYN flood (critical from ten times as many).",
        ),
        click.option(
            "--syn-flood-window",
            "syn_flood_window_s",
            type=click.FloatRange(min=0.001),
            default=d.syn_flood_window_s,
            show_default=True,
            help="Sliding window of the SYN flood count, in seconds.",
        ),
        click.option(
            "--reflection-min",
            type=click.IntRange(min=1),
            default=d.reflection_min,
            show_default=True,
            help="Unsolicited SYN/ACKs (no SYN asked for them) toward one host, or from one host, "
            "that make a SYN/ACK reflection or backscatter finding.",
        ),
        click.option(
            "--scan-min-ports",
            type=click.IntRange(min=2),
            default=d.scan_min_ports,
            show_default=True,
            help="Distinct ports one source must probe on one host to be a (vertical) port scan.",
        ),
        click.option(
            "--scan-min-hosts",
            type=click.IntRange(min=2),
            default=d.scan_min_hosts,
            show_default=True,
            help="Distinct hosts one source must probe on one port to be a (horizontal) port scan.",
        ),
        click.option(
            "--retrans-rate",
            type=click.FloatRange(min=0, max=1),
            default=d.retrans_rate,
            show_default=True,
            help="Retransmitted / data segments of one direction from which retransmissions "
            "are a warning (below: info).",
        ),
        click.option(
            "--zero-window",
            "zero_window_s",
            type=click.FloatRange(min=0),
            default=d.zero_window_s,
            show_default=True,
            help="Seconds a receive window may stay closed in total before zero_window is a "
            "warning (below: info).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command()
@capture_argument
@records_format_option
@output_option
@click.option(
    "--min-severity",
    type=click.Choice(SEVERITIES),
    default="info",
    show_default=True,
    help="Hide findings below this severity.",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(KINDS),
    help="Only these kinds (repeat the option for several).",
)
@click.option(
    "--services",
    "detect_services",
    is_flag=True,
    help="Also name each connection's protocol from its first bytes, for service_port_mismatch "
    "and for what answered each open port of a port scan (slower: docs/services.md).",
)
@wide_option
@jobs_option
@scheduler_option
@_threshold_options
@filter_options
@table_options
def anomalies(
    capture: str,
    fmt: str,
    output: str | None,
    min_severity: str,
    kinds: tuple,
    wide: bool,
    jobs: int | None = None,
    scheduler: str | None = None,
    **kwargs,
) -> None:
    """What went wrong in CAPTURE, most severe first: one finding per problem, each a sentence
    to paste into a postmortem, with the frame numbers that show it (tcpdump -# and Wireshark
    count frames the same way) and kind-specific details.

    Kinds: time_wait_accumulation, port_exhaustion_risk (critical when ports ran out),
    close_wait, fin_wait_2, unanswered_syn, connection_refused, syn_flood, port_scan (with
    nmap's open/closed/filtered per port), retransmissions (classified as Wireshark's TCP
    analysis does), zero_window, keep_alive, rst_abort, port_reuse, icmp_unreachable,
    service_port_mismatch, rst_ignored, synack_reflection.
    Filters select the connections looked at. Severities: info, warning, critical.

    The table fits 120 columns: summaries folded, the first evidence frames (`4,7,9 +7`: seven
    more); --wide adds the uid and lists every frame, one line per finding.

    \b
    Example:
      flowlens anomalies capture.pcap --min-severity warning
      flowlens anomalies capture.pcap --kind port_exhaustion_risk --ephemeral-range 40000-40999
      flowlens anomalies capture.pcap --format json | jq -r .summary
      flowlens anomalies capture.pcap --wide
      flowlens anomalies big.pcap --jobs 2
      flowlens anomalies /shared/big.pcap --scheduler tcp://10.0.0.5:8786
      flowlens anomalies capture.pcap --format parquet -o anomalies.parquet
    """
    sink = Output(output, fmt, capture)
    thresholds = Thresholds(
        ephemeral_range=kwargs.pop("ephemeral_range"),
        time_wait_min=kwargs.pop("time_wait_min"),
        close_wait_s=kwargs.pop("close_wait_s"),
        fin_wait_2_s=kwargs.pop("fin_wait_2_s"),
        syn_flood_min=kwargs.pop("syn_flood_min"),
        syn_flood_window_s=kwargs.pop("syn_flood_window_s"),
        reflection_min=kwargs.pop("reflection_min"),
        scan_min_ports=kwargs.pop("scan_min_ports"),
        scan_min_hosts=kwargs.pop("scan_min_hosts"),
        retrans_rate=kwargs.pop("retrans_rate"),
        zero_window_s=kwargs.pop("zero_window_s"),
    )
    selection = selection_from(kwargs)
    config = config_from(kwargs)
    detect_services = kwargs.pop("detect_services", False)
    detector = AnomalyDetector(
        thresholds, selection=selection, services=ServiceAnalyzer() if detect_services else None
    )

    def make_analyzers():
        # what the detector reads, fresh for each pipeline (one process, or each shard's)
        # (OpenStarts: the watermarks that let the TIME_WAIT holds be summed up as they come)
        deps = (TcpAnalyzer(), OpenStarts()) + ((ServiceAnalyzer(),) if detect_services else ())
        detector.bind(deps)  # (in a shard: the forked copy of the detector)
        return list(deps)

    def work(conn, _analyzers):
        # where the connection was read: its part of the findings
        return detector.parts(conn)

    stream = ConnectionStream(
        capture, config, make_analyzers, work, jobs, scheduler, first_weight=SHARD_WEIGHT
    )
    try:
        if stream.sharded:
            detector.from_shards(*stream.split)  # (the parts' watermarks: each its shard's)
        add = detector.add_parts
        if not stream.sharded:
            for parts in stream:
                add(parts)
        else:  # (a list at a time: no generator step per connection)
            for chunk in stream.chunks():
                for parts in chunk:
                    add(parts)  # in the one-process order, whatever the shards
    finally:
        stream.close()
    facts = stream.facts
    found = detector.finish(facts["last_ts_ns"])
    seen = detector.seen
    floor = SEVERITIES.index(min_severity)
    shown = [
        a for a in found if SEVERITIES.index(a.severity) >= floor and (not kinds or a.kind in kinds)
    ]
    records = [a.to_record() for a in shown]
    with sink:
        if fmt == "table":
            rows = []
            for r, t in zip(records, utc_cells([r["ts"] for r in records], full=wide)):
                row = dict(r)
                row["ts"] = t
                row["evidence"] = _evidence_text(r["evidence"], wide)
                rows.append(row)
            sink.records(  # no findings: the header alone
                rows,
                ANOMALY_FIELDS,
                TABLE_COLUMNS if wide else SHORT_COLUMNS,
                TABLE_HEADERS if wide else SHORT_HEADERS,
                log_path="flowlens_anomalies",
                max_width=None if wide else TABLE_WIDTH,
                wrap="summary",
            )
        else:
            sink.records(records, ANOMALY_FIELDS, log_path="flowlens_anomalies")
    report_damage(facts["damage"])
    if not seen:
        warn(nothing_line(capture, facts["frames"], selection))
    by_sev = Counter(a.severity for a in shown)
    # "1 critical, 3 warnings, 2 info": info and critical are not counted nouns
    parts = ", ".join(
        plural(by_sev[s], s) if s == "warning" else f"{by_sev[s]} {s}"
        for s in reversed(SEVERITIES)
        if by_sev[s]
    )
    hidden = len(found) - len(shown)
    warn(
        f"{plural(len(shown), 'finding')}{f' ({parts})' if parts else ''}"
        f"{f', {hidden} hidden by --min-severity/--kind' if hidden else ''} in "
        f"{plural(seen, 'connection')}{' matching the filters' if selection else ''}, "
        f"{plural(facts['frames'], 'frame')}"
    )

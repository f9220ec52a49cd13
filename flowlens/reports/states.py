"""Socket states per host over time, as `ss -s` / `ss -tan state X` would have shown them on each host.

Every TCP connection has two endpoints, each with its own state timeline. The tracker's spans
(`TcpTracker.spans`, the one owner of how long a state lasts) that count as a socket
(`spantable.counted_spans`) are spans ``[start, end)`` of one state on one host:port;
`SocketStates` keeps those of a capture compactly (a `SpanTable`: 17 bytes a span, about eight
a connection) and counts, at any instant, the sockets of each host by state. CLOSED is no socket; LISTEN sockets are not in any connection's timeline (see
`listening`). How long the other states last is the tracker's rule (see `TcpTracker.state_at`):
TIME_WAIT 2 x MSL from the moment it starts, even past the last packet of the connection or of
the capture, unless a new connection reusing the 5-tuple ends it; SYN_SENT and SYN_RECEIVED
until their retries are spent; any other state until the endpoint's next transition, held to
the end of the capture however quiet the connection (a CLOSE_WAIT leak stays). So the counts at
any instant are `TcpTracker.state_at` summed per host, and at the end they are the `orig_state`
and `resp_state` of `flowlens flows`.

`listening` is what `ss -tln` would show, seen from outside: every host:port that accepted a
connection (sent a SYN/ACK to a SYN), with its clients, and every port that refused (RST to SYN).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from ..core.connections import Connection, format_addr
from ..core.services import service_name
from .spantable import BRIEF_CLOSE_WAIT_NS, OPEN_END, STATES, SpanTable, counted_spans, host_key

__all__ = [
    "BRIEF_CLOSE_WAIT_NS",
    "LISTENING_FIELDS",
    "STATES",
    "SocketStates",
    "Span",
    "auto_interval",
    "endpoint_spans",
    "host_key",
    "save_states_figure",
    "StatePanel",
    "StatesChart",
    "states_chart",
    "states_figure",
    "tick_times",
]

_COUNTED = frozenset(STATES)

LISTENING_FIELDS = (
    "host",
    "port",
    "service",
    "state",
    "connections",
    "clients",
    "refused",
    "first_ts",
    "last_ts",
)


@dataclass(slots=True, frozen=True)
class Span:
    """One endpoint in one state for a while."""

    host: str  # the endpoint's address (text)
    port: int  # its local port
    peer: str
    peer_port: int
    state: str  # a name from STATES
    start_ns: int
    end_ns: int | None  # None: still in it when the capture ended
    uid: str

    def holds(self, ts_ns: int) -> bool:
        return self.start_ns <= ts_ns and (self.end_ns is None or ts_ns < self.end_ns)


def endpoint_spans(conn: Connection) -> list[Span]:
    """The counted spans of both endpoints of a TCP connection ([] for UDP/ICMP), as objects
    (`spantable.counted_spans` is the rule; `SocketStates` keeps them compact)."""
    if conn.tcp is None:
        return []
    ends = ((format_addr(conn.orig_h), conn.orig_p), (format_addr(conn.resp_h), conn.resp_p))
    out: list[Span] = []
    for side, k, start, end in counted_spans(conn):
        host, port = ends[side]
        peer, peer_port = ends[1 - side]
        out.append(
            Span(host, port, peer, peer_port, STATES[k], start, None if end == OPEN_END else end,
                 conn.uid)
        )  # fmt: skip
    return out


@dataclass
class _Listener:
    first_ns: int  # first packet of the first connection seen to the port
    last_ns: int  # first packet of the last one
    accepted: int = 0
    refused: int = 0
    clients: set[str] = field(default_factory=set)

    def seen(self, ts_ns: int) -> None:
        self.first_ns = min(self.first_ns, ts_ns)
        self.last_ns = max(self.last_ns, ts_ns)


class SocketStates(SpanTable):
    """The counted spans and the listeners of a capture, filtered like ss: `hosts` (the
    endpoint's own address), `ports` (its local or remote port), `states` (names from STATES).
    The spans are kept as a SpanTable keeps them (17 bytes each), and counted by its rules."""

    def __init__(
        self,
        hosts: Iterable[str] = (),
        ports: Iterable[int] = (),
        states: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.hosts_wanted = set(hosts)
        self.ports = set(ports)
        self.states = set(states)
        self._wanted_states = {STATES.index(s) for s in self.states if s in _COUNTED}
        self._listeners: dict[tuple[str, int], _Listener] = {}
        self.connections = 0

    def add(self, conn: Connection, spans: Sequence[tuple] | None = None) -> None:
        """Take one finished connection (then it can be dropped); `spans` as SpanTable.add."""
        parts = self.parts(conn, spans)
        if parts is not None:
            self.add_parts(parts)

    def parts(self, conn: Connection, spans: Sequence[tuple] | None = None) -> tuple | None:
        """What `conn` adds, as plain values (its kept spans as (host, state index, start, end,
        side), and what it tells of its responder's port), or None for a connection that is
        not TCP: a shard of `--jobs` hands them to the process that merges them with
        `add_parts`."""
        if conn.tcp is None:
            return None
        ends = ((self._text(conn.orig_h), conn.orig_p), (self._text(conn.resp_h), conn.resp_p))
        wanted_hosts, ports, wanted_states = self.hosts_wanted, self.ports, self._wanted_states
        kept = []
        for side, k, start, end in counted_spans(conn, spans):
            host, port = ends[side]
            if wanted_hosts and host not in wanted_hosts:
                continue
            if ports and port not in ports and ends[1 - side][1] not in ports:
                continue
            if self.states and k not in wanted_states:
                continue
            kept.append((host, k, start, end, side))
        t = conn.tcp
        host = ends[1][0]
        if wanted_hosts and host not in wanted_hosts or ports and conn.resp_p not in ports:
            return kept, None
        accepted = t.synack_count[1] > 0 and t.syn_count[1] == 0  # not a simultaneous open
        if not (accepted or t.rejected):
            return kept, None
        listen = (host, conn.resp_p, accepted, t.rejected, ends[0][0], conn.first_ts_ns)
        return kept, listen

    def add_parts(self, parts: tuple) -> None:
        spans, listen = parts
        self.connections += 1
        self.add_span_parts(spans)
        if listen is not None:
            host, port, accepted, rejected, client, first_ns = listen
            entry = self._listeners.get((host, port))
            if entry is None:
                entry = self._listeners[(host, port)] = _Listener(first_ns, first_ns)
            else:
                entry.seen(first_ns)
            entry.accepted += accepted
            entry.refused += rejected
            entry.clients.add(client)

    # ------------------------------------------------------------------ records
    def at_records(self, ts_ns: int) -> list[dict]:
        """One record per host: host, ts, total and the count of every state."""
        return [
            _count_record({"host": h, "ts": round(ts_ns / 1e9, 6)}, c)
            for h, c in self.counts_at(ts_ns).items()
        ]

    def series_records(self, times: Sequence[int], first_ns: int) -> list[dict]:
        """One record per (time, host) where the host has sockets then or at the time before."""
        return list(self.iter_series_records(times, first_ns))

    def iter_series_records(self, times: Sequence[int], first_ns: int) -> Iterator[dict]:
        """`series_records`, made as they are read (json and csv stream them): a SYN flood's
        tens of thousands of sources cost their rows, not a copy of every host's counts at
        every time (`SpanTable.iter_active`)."""
        for i, hosts in self.iter_active(times):
            t = times[i]
            ts, time_s = round(t / 1e9, 6), round((t - first_ns) / 1e9, 6)
            for host, counts in hosts:
                rec = {"ts": ts, "time_s": time_s, "host": host, "total": sum(counts)}
                for state, n in zip(STATES, counts):
                    rec[state] = n
                yield rec

    def listening_records(self) -> list[dict]:
        """What ss -tln would list, seen from outside: accepting ports, then refusing ones."""
        rows = []
        for (host, port), e in sorted(
            self._listeners.items(), key=lambda kv: (host_key(kv[0][0]), kv[0][1])
        ):
            rows.append(
                {
                    "host": host,
                    "port": port,
                    "service": service_name("tcp", port),
                    "state": "LISTEN" if e.accepted else "REFUSED",
                    "connections": e.accepted,
                    "clients": len(e.clients),
                    "refused": e.refused,
                    "first_ts": round(e.first_ns / 1e9, 6),
                    "last_ts": round(e.last_ns / 1e9, 6),
                }
            )
        return rows


def _count_record(base: dict, counts: Counter) -> dict:
    rec = dict(base)
    rec["total"] = sum(counts.values())
    for state in STATES:
        rec[state] = counts.get(state, 0)
    return rec


_NICE_STEPS_S = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600,
    900, 1800, 3600, 7200, 21600, 43200, 86400,
)  # fmt: skip


def auto_interval(duration_ns: int, max_rows: int = 30) -> float:
    """A round step (seconds) giving at most `max_rows` ticks over `duration_ns`."""
    for step in _NICE_STEPS_S:
        if duration_ns / 1e9 / step <= max_rows - 1:
            return step
    # longer than the largest round step allows (a damaged timestamp can make a capture span
    # decades): divide the span instead, so the table never grows past max_rows
    return max(_NICE_STEPS_S[-1], duration_ns / 1e9 / (max_rows - 1))


# ---------------------------------------------------------------------- plot

#: stacking order (bottom to top) and colours: the states people hunt are loud and on top
PLOT_COLORS = {
    "SYN_SENT": "#9ecae1",
    "SYN_RECEIVED": "#4292c6",
    "ESTABLISHED": "#2ca02c",
    "FIN_WAIT_1": "#c5b0d5",
    "FIN_WAIT_2": "#9467bd",
    "CLOSING": "#8c564b",
    "LAST_ACK": "#e377c2",
    "CLOSE_WAIT (brief)": "#f4b6c2",
    "CLOSE_WAIT": "#d62728",
    "TIME_WAIT": "#ff7f0e",
}
#: the plot's name for CLOSE_WAIT sockets of spans shorter than BRIEF_CLOSE_WAIT_NS
BRIEF_CLOSE_WAIT = "CLOSE_WAIT (brief)"
#: at most this many hosts get a panel (the busiest)
MAX_PLOT_HOSTS = 8
#: the TIME_WAIT drain after the capture's end takes at most this share of the x axis (the
#: rest of it, up to 2 x MSL, is named in a note): a 0.87 s capture whose TIME_WAIT lasts
#: 60 s more stays the chart's subject instead of a sliver at its left edge
DRAIN_SHARE = 0.25
_MAX_POINTS = 4000


@dataclass(slots=True)
class StatePanel:
    """One host's stacked areas: per state (stacking order, bottom first), its counts at each
    of the chart's times."""

    host: str
    peak: int  # most sockets at once (at the chart's times)
    title: str
    layers: list[tuple[str, list[int]]]  # (state as the chart names it, counts)

    def has(self, state: str) -> bool:
        return any(s == state for s, _y in self.layers)


@dataclass(slots=True)
class StatesChart:
    """What the socket-state chart draws: `states_figure` (matplotlib) and
    `svg_charts.states_svg` both read it, so the PNG and the report's SVG agree."""

    xs: list[float]  # seconds since the first packet
    panels: list[StatePanel]
    left_out: list[str]  # hosts with sockets but no panel
    #: seconds since the first packet where the capture ends, when the x axis runs on past it
    #: (TIME_WAIT draining), else None
    capture_end_s: float | None
    #: the drain note drawn at the right edge of the panels with TIME_WAIT ("TIME_WAIT until
    #: +61.0 s ->"), or ""
    drain_note: str
    xlabel: str


def states_chart(
    index: SpanTable,
    first_ns: int,
    last_ns: int,
    max_hosts: int = MAX_PLOT_HOSTS,
    max_points: int = _MAX_POINTS,
) -> StatesChart:
    """The stacked socket counts by state, one panel per host (the busiest first).

    x is seconds since the capture's first packet. When TIME_WAIT outlives the capture the
    x axis runs on after the capture's end until it drains, for at most DRAIN_SHARE of the
    axis: a longer drain is cut there and its end written on the chart. A CLOSE_WAIT that lasts
    under a second (every passive close passes through it) is the muted `CLOSE_WAIT (brief)`,
    so only a lingering one is the loud red of a leak."""
    horizon = index.time_wait_horizon()
    drain_end = max(last_ns, horizon) if horizon is not None else last_ns
    end_ns = drain_end
    if last_ns > first_ns and drain_end > last_ns:
        # drain / (span + drain) <= DRAIN_SHARE
        longest = int((last_ns - first_ns) * DRAIN_SHARE / (1 - DRAIN_SHARE))
        end_ns = min(drain_end, last_ns + max(longest, 1))
    if end_ns <= first_ns:
        end_ns = first_ns + 1_000_000_000
    times = index.change_points(first_ns, end_ns, max_points)
    if times is None:  # sampled: about as many instants as the picture has columns
        step = (end_ns - first_ns) / (max_points - 1)
        times = [int(first_ns + i * step) for i in range(max_points)]
    peaks = index.peaks(times)
    shown = sorted((h for h in peaks if peaks[h]), key=lambda h: (-peaks[h], host_key(h)))
    left_out = shown[max_hosts:]
    shown = shown[:max_hosts]
    series = index.series(times, shown)
    xs = [(t - first_ns) / 1e9 for t in times]
    brief = index.brief_close_waits(shown, times)
    panels = []
    for host in shown:
        counts = series
        if host in brief:  # brief CLOSE_WAIT sockets counted apart from lingering ones
            counts = [
                c | {host: c[host] - Counter({"CLOSE_WAIT": b}) + Counter({BRIEF_CLOSE_WAIT: b})}
                for c, b in zip(series, brief[host])
            ]
        present = [s for s in PLOT_COLORS if any(c[host].get(s) for c in counts)]
        layers = [(s, [c[host].get(s, 0) for c in counts]) for s in present]
        peak_by_state = {s: max(y) for s, y in layers}
        # CLOSE_WAIT is named only when it lingers: every passive close passes through it
        loud = ", ".join(
            f"up to {peak_by_state[s]} in {s}"
            for s in ("TIME_WAIT", "CLOSE_WAIT")
            if peak_by_state.get(s)
        )
        sockets = "socket" if peaks[host] == 1 else "sockets"
        title = f"{host}: up to {peaks[host]} {sockets}" + (f", {loud}" if loud else "")
        panels.append(StatePanel(host, peaks[host], title, layers))
    capture_end_s = (last_ns - first_ns) / 1e9 if end_ns > last_ns else None
    drain_note = ""
    if capture_end_s is not None and drain_end > end_ns:
        drain_note = f"TIME_WAIT until\n+{(drain_end - first_ns) / 1e9:.1f} s \u2192"
    from .ladder import utc_text

    label = f"seconds since the first packet ({utc_text(first_ns)})"
    if end_ns > last_ns:
        label += "; shaded: after the capture's end, TIME_WAIT draining (2 x MSL)"
        if drain_end > end_ns:
            label += f", cut at +{xs[-1]:.3g} s"
    return StatesChart(xs, panels, left_out, capture_end_s, drain_note, label)


def states_figure(index: SocketStates, first_ns: int, last_ns: int, title: str = ""):
    """`states_chart` as a matplotlib figure: a stacked area chart, one panel per host.

    The after-capture drain is shaded, the capture's end a dashed line. Each panel's areas
    carry their state as label (``ax.collections``), so tests read the data, not the pixels.
    Returns (figure, hosts left out).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    chart = states_chart(index, first_ns, last_ns)
    xs = chart.xs
    n = max(1, len(chart.panels))
    fig, axes = plt.subplots(n, 1, figsize=(11, 1.2 + 2.6 * n), sharex=True, squeeze=False)
    for ax, panel in zip(axes[:, 0], chart.panels):
        present = [s for s, _y in panel.layers]
        ys = [y for _s, y in panel.layers]
        if present:
            ax.stackplot(xs, ys, labels=present, colors=[PLOT_COLORS[s] for s in present], step="post",
                         alpha=0.9, linewidth=0)  # fmt: skip
        ax.set_title(panel.title, loc="left", fontsize=10)
        ax.set_ylabel("sockets")
        ax.grid(axis="y", alpha=0.3)
        ax.set_ylim(0, max(1, panel.peak) * 1.15)
        ax.yaxis.get_major_locator().set_params(integer=True)
        if chart.capture_end_s is not None:
            x_end = chart.capture_end_s
            ax.axvspan(x_end, xs[-1], color="#eeeeee", zorder=0)
            ax.axvline(x_end, color="#555555", ls="--", lw=1)
            ax.text(x_end, 1.0, " capture ends", transform=ax.get_xaxis_transform(), ha="left", va="top",
                    fontsize=8, color="#555555")  # fmt: skip
            if chart.drain_note and panel.has("TIME_WAIT"):
                ax.text(xs[-1], 0.5, chart.drain_note, transform=ax.get_xaxis_transform(), ha="right",
                        va="center", fontsize=8, color="#555555")  # fmt: skip
        handles, labels = ax.get_legend_handles_labels()
        # listed top to bottom as they are stacked
        ax.legend(
            handles[::-1],
            labels[::-1],
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            fontsize=8,
            frameon=False,
        )
    if not chart.panels:
        axes[0, 0].text(
            0.5,
            0.5,
            "no TCP sockets match",
            ha="center",
            va="center",
            transform=axes[0, 0].transAxes,
        )
    ax = axes[-1, 0]
    ax.set_xlim(0, xs[-1] if xs[-1] > 0 else 1)
    ax.set_xlabel(chart.xlabel, fontsize=9)
    if title:
        fig.suptitle(title, x=0.01, ha="left", fontsize=11, fontweight="bold")
    fig.tight_layout()
    return fig, chart.left_out


def save_states_figure(
    index: SocketStates, first_ns: int, last_ns: int, path: str, title: str = ""
) -> list[str]:
    """Write the chart (format from the file name, PNG/SVG/PDF); returns the hosts left out."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "flowlens"}):
        fig, left_out = states_figure(index, first_ns, last_ns, title)
        try:
            fig.savefig(path, dpi=130)
        finally:
            plt.close(fig)
    return left_out


def tick_times(first_ns: int, last_ns: int, interval_s: float) -> list[int]:
    """first, first + interval, ... up to last, and last itself."""
    step = max(1, round(interval_s * 1e9))
    n = (last_ns - first_ns) // step
    times = [first_ns + i * step for i in range(n + 1)]
    if not times or times[-1] < last_ns:
        times.append(last_ns)
    return times

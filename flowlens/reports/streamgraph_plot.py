"""Stream graphs drawn with matplotlib: the data objects of `reports/streamgraph.py` as figures.

Colours follow tcptrace's xplot, which many engineers read at a glance: segments dark, the ACK
line green, the receive window yellow-olive, SACK blocks purple, retransmissions red. Each artist
has a gid (``segments-<kind>``, ``sack``, ``ack``, ``window``, ``throughput-<dir>`` ...), kept as
an element id in SVG, so tests find an artist and read its data (``get_segments``,
``get_xydata``), not pixels.
"""

from __future__ import annotations

import os

from .streamgraph import (
    RttGraph,
    ThroughputGraph,
    TseqGraph,
    WindowGraph,
)

__all__ = ["COLORS", "draw_figure", "save_figure"]

#: artist colours (tcptrace's xplot: ACK green, window yellow, SACK purple, retransmits red)
COLORS = {
    "data": "#1a2a57",
    "retransmission": "#d62728",
    "out_of_order": "#ff7f0e",
    "zero_window_probe": "#7f7f7f",
    "keep_alive": "#7f7f7f",
    "sack": "#9467bd",
    "ack": "#2ca02c",
    "window": "#b5a900",
    "orig": "#1f77b4",
    "resp": "#d62728",
    "in_flight": "#9467bd",
}
_ARROWS = {"orig": "originator -> responder", "resp": "responder -> originator"}
_SOURCE_MARKERS = {"ack": "o", "ts": "^", "dns": "s", "udp": "D", "icmp": "v"}


def _figure(size=(10, 6)):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=size, layout="constrained")


def _dropped_note(ax, dropped: tuple[int, ...]) -> None:
    if any(dropped):
        ax.text(
            0.01, 0.99, f"bounded: {dropped[0]} segments, {dropped[1]} ACKs and {dropped[2]} "
            "SACK blocks past the limit not drawn", transform=ax.transAxes, va="top",
            fontsize="small", color="#d62728",
        )  # fmt: skip


def draw_tseq(g: TseqGraph):
    """The time-sequence graph: segments as vertical bars (by kind), SACK blocks, ACK and
    receive-window step lines."""
    fig = _figure()
    ax = fig.subplots()
    kinds = []
    for bar in g.segments:
        if bar.kind not in kinds:
            kinds.append(bar.kind)
    for kind in sorted(kinds, key=lambda k: k != "data"):  # data first: the rest on top
        bars = g.by_kind(kind)
        ax.vlines(
            [b.t_s for b in bars], [b.low for b in bars], [b.high for b in bars],
            colors=COLORS[kind], linewidth=2.0 if kind != "data" else 1.2,
            label=f"{kind.replace('_', ' ')} ({len(bars)})", gid=f"segments-{kind}", zorder=3,
        )  # fmt: skip
        if kind == "retransmission":  # tcptrace's "R": seen at any zoom
            ax.plot(
                [b.t_s for b in bars], [b.high for b in bars], linestyle="none", marker="x",
                color=COLORS[kind], gid="retransmission-marks", zorder=4,
            )  # fmt: skip
    if g.sacks:
        ax.vlines(
            [b.t_s for b in g.sacks], [b.low for b in g.sacks], [b.high for b in g.sacks],
            colors=COLORS["sack"], linewidth=3.0, alpha=0.7, label=f"SACK ({len(g.sacks)})",
            gid="sack", zorder=2,
        )  # fmt: skip
    if g.ack:
        ax.step(
            [p[0] for p in g.ack], [p[1] for p in g.ack], where="post", color=COLORS["ack"],
            linewidth=1.0, label="ACK", gid="ack", zorder=2,
        )  # fmt: skip
    if g.window:
        scaled = "" if g.window_scaled else " (scale unknown: unscaled)"
        ax.step(
            [p[0] for p in g.window], [p[1] for p in g.window], where="post",
            color=COLORS["window"], linewidth=1.0, label=f"receive window{scaled}", gid="window",
            zorder=2,
        )  # fmt: skip
    _clip_window(ax, g)
    ax.set_xlabel("seconds since the connection's first packet")
    ax.set_ylabel("relative sequence number (bytes)")
    ax.set_title(f"{g.uid}: time-sequence graph, {_ARROWS[g.direction]}")
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    if g.segments or g.ack:
        ax.legend(fontsize="small", loc="upper left")
    _dropped_note(ax, g.dropped)
    return fig


def _clip_window(ax, g: TseqGraph) -> None:
    """A static picture cannot be zoomed like xplot: when the receive window's edge runs far
    above the data (a large window over a short transfer), the y axis stops three data spans
    above the data and says where the edge went, so the segments stay readable (the line's data
    is all there: an SVG viewer or the data object still has it)."""
    lows = [b.low for b in g.segments] + [y for _t, y in g.ack]
    highs = [b.high for b in g.segments] + [y for _t, y in g.ack] + [b.high for b in g.sacks]
    if not lows or not g.window:
        return
    bottom, top = min(lows), max(highs)
    span = max(top - bottom, 1)
    edge = max(y for _t, y in g.window)
    if edge <= top + 3 * span:
        return
    margin = 0.03 * 4 * span
    ax.set_ylim(bottom - margin, top + 3 * span + margin)
    ax.text(
        0.99, 0.99, f"receive window edge reaches {edge:,.0f} (above the graph)",
        transform=ax.transAxes, ha="right", va="top", fontsize="small", color=COLORS["window"],
    )  # fmt: skip


def draw_throughput(g: ThroughputGraph):
    """Throughput and goodput (bits/s, moving average) per direction; segment lengths on the
    right axis."""
    fig = _figure()
    ax = fig.subplots()
    right = ax.twinx()
    for s in g.series:
        if not s.throughput:
            continue
        color = COLORS[s.direction]
        right.plot(
            [p[0] for p in s.segments], [p[1] for p in s.segments], linestyle="none",
            marker=".", markersize=3, color=color, alpha=0.35, gid=f"segments-{s.direction}",
        )  # fmt: skip
        ax.plot(
            [p[0] for p in s.throughput], [p[1] for p in s.throughput], color=color,
            label=f"throughput {_ARROWS[s.direction]}", gid=f"throughput-{s.direction}",
        )  # fmt: skip
        ax.plot(
            [p[0] for p in s.goodput], [p[1] for p in s.goodput], color=color, linestyle="--",
            linewidth=0.8, label=f"goodput {_ARROWS[s.direction]}", gid=f"goodput-{s.direction}",
        )  # fmt: skip
    ax.set_xlabel("seconds since the connection's first packet")
    from matplotlib.ticker import EngFormatter

    ax.yaxis.set_major_formatter(EngFormatter(unit="bit/s"))
    ax.set_ylabel(f"throughput ({g.window_s:g} s moving average)")
    right.set_ylabel("segment length (bytes)")
    ax.set_title(f"{g.uid}: throughput")
    if any(s.throughput for s in g.series):
        ax.legend(fontsize="small", loc="upper left")
    return fig


def draw_rtt(g: RttGraph):
    """RTT samples over time: colour by leg, marker by source."""
    fig = _figure()
    ax = fig.subplots()
    paths = {"orig": "cap>orig>cap", "resp": "cap>resp>cap"}
    for (leg, source), points in sorted(g.samples.items()):
        ax.plot(
            [p[0] for p in points], [p[1] for p in points], linestyle="none",
            marker=_SOURCE_MARKERS.get(source, "o"), markersize=4, color=COLORS[leg],
            label=f"{paths[leg]}, {source} ({len(points)})", gid=f"rtt-{leg}-{source}",
        )  # fmt: skip
    ax.set_xlabel("seconds since the connection's first packet")
    ax.set_ylabel("RTT at the capture point (ms)")
    ax.set_title(f"{g.uid}: round-trip times")
    if g.samples:
        ax.legend(fontsize="small", loc="upper left")
    else:
        ax.text(0.5, 0.5, "no RTT samples", transform=ax.transAxes, ha="center")
    return fig


def draw_window(g: WindowGraph):
    """Advertised receive windows per sender, and the data direction's bytes in flight."""
    fig = _figure()
    ax = fig.subplots()
    for d, points in g.windows.items():
        if points:
            ax.step(
                [p[0] for p in points], [p[1] for p in points], where="post", color=COLORS[d],
                label=f"window advertised by {'originator' if d == 'orig' else 'responder'}",
                gid=f"window-{d}",
            )  # fmt: skip
    if g.in_flight:
        ax.step(
            [p[0] for p in g.in_flight], [p[1] for p in g.in_flight], where="post",
            color=COLORS["in_flight"], linestyle="--",
            label=f"bytes in flight, {_ARROWS[g.direction]}", gid="in-flight",
        )  # fmt: skip
    ax.set_xlabel("seconds since the connection's first packet")
    scaled = "" if g.window_scaled else ", unscaled: window scale unknown"
    ax.set_ylabel(f"bytes{scaled}")
    ax.set_title(f"{g.uid}: receive window and bytes in flight")
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    if g.in_flight or any(g.windows.values()):
        ax.legend(fontsize="small", loc="upper left")
    return fig


def draw_figure(graph):
    """The matplotlib Figure of any stream graph object."""
    if isinstance(graph, TseqGraph):
        return draw_tseq(graph)
    if isinstance(graph, ThroughputGraph):
        return draw_throughput(graph)
    if isinstance(graph, RttGraph):
        return draw_rtt(graph)
    if isinstance(graph, WindowGraph):
        return draw_window(graph)
    raise TypeError(f"not a stream graph: {graph!r}")


def save_figure(graph, path: str) -> None:
    """Draw `graph` into `path`, the format from its extension (PNG, SVG, PDF ...: whatever
    matplotlib writes; commands check it first with `check_output(..., formats=...)`). SVG keeps
    text as text and the artists' gids as element ids."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    fmt = os.path.splitext(path)[1].lower().lstrip(".")
    with matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": "flowlens", "font.family": "DejaVu Sans"}
    ):
        fig = draw_figure(graph)
        fig.savefig(path, format=fmt, dpi=130 if fmt not in ("svg", "svgz", "pdf") else None)

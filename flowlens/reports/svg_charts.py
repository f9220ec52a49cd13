"""The postmortem report's charts as SVG (see svg.py): socket states, RTT, time-sequence graph.

Each reads the same data object its matplotlib twin draws (`states.StatesChart`,
`rtt.RttChart`, `streamgraph.TseqGraph`), so the report's picture and the `--plot` file show
the same series, labels, legend and colours.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from .rtt import Series, histogram, rtt_chart
from .states import PLOT_COLORS, StatesChart
from .svg import TAB10, Axes, Canvas, nice_ticks, number, points_path, step_path, text_width
from .valuespill import Column, column_pairs

if TYPE_CHECKING:  # (time-sequence graphs: only with --stream-graphs)
    from .streamgraph import TseqGraph

__all__ = ["rtt_svg", "states_svg", "tseq_svg"]

_WIDTH = 1000
#: samples of an RTT line drawn at once (`rtt_svg`)
_CHUNK = 1 << 16


def states_svg(chart: StatesChart, title: str = "") -> str:
    """Stacked step areas of socket counts by state, a panel per host (`states_chart`)."""
    panel_h, gap, top = 170, 46, 30 if title else 10
    n = max(1, len(chart.panels))
    height = top + n * (panel_h + gap) + 30
    c = Canvas(_WIDTH, height, title or "TCP sockets per host and state over time",
               class_="chart states")  # fmt: skip
    if title:
        c.text(8, 18, title, size=12, weight="bold")
    xs = chart.xs
    x_hi = xs[-1] if xs and xs[-1] > 0 else 1.0
    x_ticks = nice_ticks(0.0, x_hi)
    for i, panel in enumerate(chart.panels or [None]):
        box = (70, top + 22 + i * (panel_h + gap), _WIDTH - 70 - 190, panel_h)
        y_hi = max(1, panel.peak if panel else 1) * 1.15
        ax = Axes(c, box, (0.0, x_hi), (0.0, y_hi))
        last = i == len(chart.panels) - 1 or panel is None
        if panel is None:
            ax.frame(xlabel=chart.xlabel, xticks=x_ticks)
            c.text(ax.left + ax.w / 2, ax.top + ax.h / 2, "no TCP sockets match", anchor="middle",
                   baseline="middle")  # fmt: skip
            continue
        if chart.capture_end_s is not None:
            x_end = ax.x(chart.capture_end_s)
            c.rect(x_end, ax.top, ax.left + ax.w - x_end, ax.h, fill="#eeeeee",
                   class_="drain")  # fmt: skip
        ax.frame(xlabel=chart.xlabel if last else "", ylabel="sockets", title=panel.title,
                 title_left=True, xticks=x_ticks, grid_y=True,
                 yticks=nice_ticks(0, y_hi, integer=True))  # fmt: skip
        c.open("g", class_="stack", data_host=panel.host)
        base = [0] * len(xs)
        # pixel columns (each step's left and right edge, the last held to the axis' end) and
        # each line's rows, rounded to the tenth the path keeps, computed once per panel
        cols = [round(x, 1) for x in ax.xs(xs)]
        rights = cols[1:] + [round(ax.x(x_hi), 1)]
        base_rows = [round(y, 1) for y in ax.ys(base)]
        for state, ys in panel.layers:
            top_line = [b + y for b, y in zip(base, ys)]
            top_rows = [round(y, 1) for y in ax.ys(top_line)]
            c.path(_stack_band(cols, rights, base_rows, top_rows), fill=PLOT_COLORS[state],
                   fill_opacity="0.9", class_="series", data_label=state,
                   data_points=len(ys), data_peak=max(ys))  # fmt: skip
            base, base_rows = top_line, top_rows
        c.close("g")
        if chart.capture_end_s is not None:
            x_end = ax.x(chart.capture_end_s)
            c.line(x_end, ax.top, x_end, ax.bottom, stroke="#555555", width=1,
                   stroke_dasharray="5 3")  # fmt: skip
            c.text(x_end + 3, ax.top + 11, "capture ends", size=8, color="#555555")
            if chart.drain_note and panel.has("TIME_WAIT"):
                for k, line in enumerate(chart.drain_note.split("\n")):
                    c.text(ax.left + ax.w - 4, ax.top + ax.h / 2 + k * 11, line, size=8,
                           anchor="end", color="#555555")  # fmt: skip
        # listed top to bottom as they are stacked
        items = [(s, PLOT_COLORS[s]) for s, _y in reversed(panel.layers)]
        ax.legend(items, ax.left + ax.w + 12, ax.top + 6)
    return str(c)


def _stack_band(cols, rights, base_rows, top_rows) -> str:
    """A closed post-step band between two lines, from their rounded pixel rows (`base_rows`,
    `top_rows`) over the steps' rounded pixel columns (`cols` left edges, `rights` right)."""
    pts: list[tuple[float, float]] = []
    for x, x2, y in zip(cols, rights, top_rows):
        pts.append((x, y))
        pts.append((x2, y))
    for k in range(len(cols) - 1, -1, -1):
        y = base_rows[k]
        pts.append((rights[k], y))
        pts.append((cols[k], y))
    return _compact(pts) + "Z"


def _compact(pts: list[tuple[float, float]]) -> str:
    """A path through pixel points (rounded to a tenth) with repeated and collinear-on-an-axis
    points dropped."""
    out: list[tuple[float, float]] = []
    for q in pts:
        if out and out[-1] == q:
            continue
        if len(out) >= 2 and (
            (out[-2][1] == out[-1][1] == q[1]) or (out[-2][0] == out[-1][0] == q[0])
        ):
            out[-1] = q
            continue
        out.append(q)
    return points_path(out)


def rtt_svg(series: Sequence[Series], title: str = "", max_lines: int = 12) -> str:
    """RTT over time (a line per series, `rtt_chart`) above the histogram of every sample."""
    chart = rtt_chart(series, max_lines)
    shown, t0, values = chart.shown, chart.t0, chart.values
    height = 620
    c = Canvas(_WIDTH, height, title or "RTT over time", class_="chart rtt")
    span = max((t - t0 for s in shown for t in s.ts_s), default=0.0)
    x_hi = span * 1.02 if span > 0 else 1.0
    if chart.wide:
        ylim = (min(v for v in values if v > 0) / 1.3, max(v for v in values if v > 0) * 1.3)
    else:
        top = max(values, default=1.0)
        ylim = (0.0, top * 1.1 if top > 0 else 1.0)
    ax = Axes(c, (80, 34, _WIDTH - 110, 330), (0.0, x_hi), ylim, ylog=chart.wide)
    ax.frame("seconds since the first sample", "RTT at the capture point (ms)",
             title or "RTT over time")  # fmt: skip
    items = []
    c.open("g")
    for k, s in enumerate(shown):
        color = TAB10[k % len(TAB10)]
        merged = chart.merged_other and s is shown[-1]  # "other": many connections, no line
        n = len(s.ts_s)
        c.open("g", class_="series", data_label=s.label, data_points=n, fill=color)
        line = not merged and n > 1
        # a _CHUNK of samples at a time (their pixel columns and rows): a long capture's line
        # is millions of samples, what it draws at most a few points per pixel column and a
        # mark per pixel (_Line, _Marks), so the picture's size and memory follow the chart's
        # pixels, not the samples
        path = _Line() if line else None
        dots = _Marks()
        for ts, rtts in _pieces(s):
            xs = ax.xs([t - t0 for t in ts])
            ys = ax.ys(rtts)
            if path is not None:
                path.add(xs, ys)
            dots.add(xs, ys)
        if path is not None:
            c.path(points_path(path.points()), fill="none", stroke=color, stroke_width="0.6")
        marks = dots.text()
        del path, dots
        if marks:
            c.path(marks, stroke=color, stroke_width="3", stroke_linecap="round", fill="none")
        c.close("g")
        items.append((s.label, color))
    c.close("g")
    if items:
        width = max(text_width(label, 9) for label, _c in items) + 30
        ax.legend(items, ax.left + ax.w - width, ax.top + 14, marker="line")
    # the histogram
    hv = chart.hist_values
    counts = histogram(hv, chart.bins) if chart.bins else []
    edges = chart.bins
    if edges and not chart.wide and len(edges) == 2 and max(values) == min(values):
        hx = (0.0, values[0] * 2 if values[0] > 0 else 1.0)
    elif edges:
        hx = (edges[0], edges[-1])
    else:
        hx = (0.0, 1.0)
    hy = max(counts, default=0) * 1.05 or 1.0
    hax = Axes(c, (80, 440, _WIDTH - 110, 140), hx, (0.0, hy), xlog=chart.wide)
    hax.frame("RTT (ms)", "samples", f"{len(values)} sample{'' if len(values) == 1 else 's'}",
              yticks=nice_ticks(0, hy, integer=True))  # fmt: skip
    c.open("g", class_="series histogram", data_label="samples", data_points=len(counts),
           data_total=sum(counts), fill=TAB10[0])  # fmt: skip
    for k, n in enumerate(counts):
        if n:
            x0, x1 = hax.x(edges[k]), hax.x(edges[k + 1])
            c.rect(x0, hax.y(n), max(x1 - x0, 0.8), hax.bottom - hax.y(n), fill=TAB10[0])
    c.close("g")
    return str(c)


def _pieces(s: Series) -> Iterator[tuple[Sequence[float], Sequence[float]]]:
    """A line's samples, a _CHUNK at a time (a block at a time from its temporary file)."""
    ts_s, rtt_ms = s.ts_s, s.rtt_ms
    if isinstance(ts_s, Column) and isinstance(rtt_ms, Column):
        for ts, rtts in column_pairs(ts_s, rtt_ms):
            yield ts.tolist(), rtts.tolist()
        return
    assert not isinstance(ts_s, Column) and not isinstance(rtt_ms, Column)
    for lo in range(0, len(ts_s), _CHUNK):
        yield ts_s[lo : lo + _CHUNK], rtt_ms[lo : lo + _CHUNK]


class _Line:
    """The points of a time-ordered line that its drawing shows: of each pixel column, the
    first, the lowest, the highest and the last point, in their order (M4: Jugel et al., "M4: A
    Visualization-Oriented Time Series Data Aggregation", VLDB 2014). The polyline through
    them crosses the same pixels as the one through every sample: within a column the line
    only goes up and down between the lowest and the highest point, and it enters and leaves
    the column at the same points. Samples in time order have non-decreasing columns."""

    def __init__(self) -> None:
        self._kept: list[tuple[float, float]] = []
        self._col: int | None = None
        self._first = self._low = self._high = self._last = (0, 0.0, 0.0)
        self._i = 0

    def add(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        for x, y in zip(xs, ys):
            i = self._i = self._i + 1
            col = math.floor(x)
            point = (i, x, y)
            if col != self._col:
                self._flush()
                self._col = col
                self._first = self._low = self._high = self._last = point
                continue
            self._last = point
            if y < self._low[2]:
                self._low = point
            if y > self._high[2]:
                self._high = point

    def _flush(self) -> None:
        if self._col is None:
            return
        for _i, x, y in sorted({self._first, self._low, self._high, self._last}):
            self._kept.append((x, y))

    def points(self) -> list[tuple[float, float]]:
        """The points to draw, once every sample was added."""
        self._flush()
        self._col = None
        return self._kept


class _Marks:
    """A mark (`M<x - 1.5> <y>h3`: a short horizontal stroke, a dot with round caps) per pixel
    that samples fall on, at the pixel's centre: marks three pixels wide drawn half a pixel
    apart would look the same, and a chart of millions of samples has far fewer pixels."""

    def __init__(self) -> None:
        self._seen: set[tuple[int, int]] = set()
        self._out: list[str] = []

    def add(self, xs: Sequence[float], ys: Sequence[float]) -> None:
        seen, add = self._seen, self._out.append
        for x, y in zip(xs, ys):
            pixel = (round(x), round(y))
            if pixel in seen:
                continue
            seen.add(pixel)
            add(f"M{number(pixel[0] - 1.5)} {pixel[1]}h3")

    def text(self) -> str:
        return "".join(self._out)


_ARROWS = {"orig": "originator \u2192 responder", "resp": "responder \u2192 originator"}


def tseq_svg(g: TseqGraph) -> str:
    """The time-sequence graph (`streamgraph_plot.draw_tseq`): segments as vertical bars by
    kind, retransmissions marked x, SACK blocks, ACK and receive-window step lines."""
    from .streamgraph_plot import COLORS as STREAM_COLORS  # (the same colours as --plot's)

    c = Canvas(_WIDTH, 560, f"{g.uid}: time-sequence graph", class_="chart tseq")
    times = [b.t_s for b in g.segments] + [t for t, _y in g.ack] + [b.t_s for b in g.sacks]
    times += [t for t, _y in g.window]
    lows = [b.low for b in g.segments] + [y for _t, y in g.ack]
    highs = [b.high for b in g.segments] + [y for _t, y in g.ack] + [b.high for b in g.sacks]
    window_note = ""
    top = max(highs + [y for _t, y in g.window], default=1)
    bottom = min(lows + [y for _t, y in g.window], default=0)
    if lows and g.window:  # as _clip_window: a window edge far above the data is cut off
        span = max(max(highs) - min(lows), 1)
        edge = max(y for _t, y in g.window)
        if edge > max(highs) + 3 * span:
            margin = 0.03 * 4 * span
            bottom, top = min(lows) - margin, max(highs) + 3 * span + margin
            window_note = f"receive window edge reaches {edge:,.0f} (above the graph)"
    t_lo, t_hi = min(times, default=0.0), max(times, default=1.0)
    pad_t = (t_hi - t_lo) * 0.03 or 0.001
    pad_y = (top - bottom) * 0.03 or 1
    ax = Axes(c, (100, 34, _WIDTH - 130, 460), (t_lo - pad_t, t_hi + pad_t),
              (bottom - pad_y, top + pad_y))  # fmt: skip
    ax.frame("seconds since the connection's first packet", "relative sequence number (bytes)",
             f"{g.uid}: time-sequence graph, {_ARROWS[g.direction]}")  # fmt: skip
    c.open("g")
    items = []
    kinds: list[str] = []
    for bar in g.segments:
        if bar.kind not in kinds:
            kinds.append(bar.kind)
    if g.sacks:
        d = "".join(f"M{number(ax.x(b.t_s))} {number(ax.y(b.low))}V{number(ax.y(b.high))}"
                    for b in g.sacks)  # fmt: skip
        c.path(d, stroke=STREAM_COLORS["sack"], stroke_width="3", stroke_opacity="0.7",
               class_="series", data_label="SACK", data_points=len(g.sacks))  # fmt: skip
    for name, pts in (("ACK", g.ack), ("receive window", g.window)):
        if pts:
            color = STREAM_COLORS["ack" if name == "ACK" else "window"]
            label = name
            if name != "ACK" and not g.window_scaled:
                label += " (scale unknown: unscaled)"
            c.path(step_path([(ax.x(t), ax.y(y)) for t, y in pts]), fill="none", stroke=color,
                   stroke_width="1", class_="series", data_label=label,
                   data_points=len(pts))  # fmt: skip
            items.append((label, color))
    for kind in sorted(kinds, key=lambda k: k != "data"):  # data first: the rest on top
        bars = g.by_kind(kind)
        color = STREAM_COLORS[kind]
        d = "".join(
            f"M{number(ax.x(b.t_s))} {number(ax.y(b.low))}V{number(min(ax.y(b.high), ax.y(b.low) - 1))}"
            for b in bars
        )
        label = f"{kind.replace('_', ' ')} ({len(bars)})"
        c.path(d, stroke=color, stroke_width="2" if kind != "data" else "1.2", class_="series",
               data_label=label, data_kind=kind, data_points=len(bars))  # fmt: skip
        if kind == "retransmission":  # tcptrace's "R": seen at any zoom
            marks = "".join(
                f"M{number(ax.x(b.t_s) - 3)} {number(ax.y(b.high) - 3)}l6 6m0 -6l-6 6" for b in bars
            )
            c.path(marks, stroke=color, stroke_width="1.5", fill="none")
        items.insert(0, (label, color)) if kind == "data" else items.append((label, color))
    if g.sacks:
        items.append((f"SACK ({len(g.sacks)})", STREAM_COLORS["sack"]))
    c.close("g")
    if items:
        ax.legend(items, ax.left + 10, ax.top + 14, marker="line")
    if window_note:
        c.text(ax.left + ax.w - 6, ax.top + 14, window_note, size=9, anchor="end",
               color=STREAM_COLORS["window"])  # fmt: skip
    if any(g.dropped):
        left = g.dropped
        c.text(ax.left + 6, ax.bottom - 8, f"bounded: {left[0]} segments, {left[1]} ACKs and {left[2]} "
               "SACK blocks past the limit not drawn", size=9, color="#d62728")  # fmt: skip
    return str(c)

"""Charts as inline SVG text, written directly from the data: the postmortem report's pictures.

The report draws tens of pictures per page; a matplotlib figure costs a few hundred
milliseconds and tens of megabytes to import, lay out and rasterise, an SVG string written from
the same data a few milliseconds. This module is the small drawing layer (`Canvas` of SVG
elements, `Axes` mapping data to pixels with round ticks) and the report's charts over it:
`states_svg` (socket states per host, stacked), `rtt_svg` (RTT per server over time and the
histogram), `tseq_svg` (a time-sequence graph); the ladder's sequence diagram is
`svg_ladder.ladder_svg`. Each chart shows what its matplotlib twin (`states_figure`,
`rtt.draw_figure`, `streamgraph_plot.draw_tseq`, `ladder_plot.draw_figure`; still what
`--plot`/`--png` files are drawn with) shows: the same series, axis labels, legend and colours.

Every series is an element with ``class="series"``, its label in ``data-label`` and its number
of points in ``data-points``, so tests read the data, not the pixels. Text is text (searchable,
selectable); fonts are the page's (no font file is referenced, nothing is fetched).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from html import escape

__all__ = [
    "TAB10",
    "Axes",
    "Canvas",
    "nice_ticks",
    "number",
]

#: matplotlib's default colour cycle ("tab10"), so lines keep the colours of the PNG plots
TAB10 = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
)  # fmt: skip
SANS = "DejaVu Sans, Verdana, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"


def number(v: float) -> str:
    """A coordinate: a tenth of a pixel at most, no trailing zeros (keeps the page small)."""
    text = f"{v:.1f}"  # (one decimal: "12.0" -> "12", "-0.0" -> "0")
    if text.endswith(".0"):
        text = text[:-2]
        if text == "-0":
            return "0"
    return text


def _attrs(attrs: dict) -> str:
    out = []
    for k, v in attrs.items():
        if v is None:
            continue
        out.append(f' {k.rstrip("_").replace("_", "-")}="{escape(str(v), quote=True)}"')
    return "".join(out)


def text_width(text: str, size: float, mono: bool = False) -> float:
    """Rough width in pixels (no font metrics here): enough to place a legend or a box."""
    return len(text) * size * (0.61 if mono else 0.56)


class Canvas:
    """An SVG document built element by element; `str(canvas)` is the markup."""

    def __init__(self, width: float, height: float, title: str = "", **attrs) -> None:
        self.width = width
        self.height = height
        self.parts: list[str] = []
        self.title = title
        self.attrs = attrs

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def el(self, tag: str, **attrs) -> None:
        self.parts.append(f"<{tag}{_attrs(attrs)}/>")

    def open(self, tag: str = "g", **attrs) -> None:
        self.parts.append(f"<{tag}{_attrs(attrs)}>")

    def close(self, tag: str = "g") -> None:
        self.parts.append(f"</{tag}>")

    def line(self, x1, y1, x2, y2, stroke="#000", width=1.0, **attrs) -> None:
        self.el("line", x1=number(x1), y1=number(y1), x2=number(x2), y2=number(y2),
                stroke=stroke, stroke_width=number(width), **attrs)  # fmt: skip

    def rect(self, x, y, w, h, fill="#000", **attrs) -> None:
        self.el("rect", x=number(x), y=number(y), width=number(max(w, 0)),
                height=number(max(h, 0)), fill=fill, **attrs)  # fmt: skip

    def path(self, d: str, **attrs) -> None:
        self.el("path", d=d, **attrs)

    def text(self, x, y, text: str, size=10.0, anchor="start", color="#222", mono=False,
             weight=None, italic=False, baseline="auto", **attrs) -> None:  # fmt: skip
        a = {
            "x": number(x), "y": number(y), "font-size": number(size), "fill": color,
            "text-anchor": anchor if anchor != "start" else None,
            "font-family": MONO if mono else None, "font-weight": weight,
            "font-style": "italic" if italic else None,
            "dominant-baseline": baseline if baseline != "auto" else None,
            "xml:space": "preserve" if mono else None,
        }  # fmt: skip
        a.update(attrs)
        self.parts.append(f"<text{_attrs(a)}>{escape(text, quote=False)}</text>")

    def __str__(self) -> str:
        w, h = number(self.width), number(self.height)
        head = (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
            f'viewBox="0 0 {w} {h}" font-family="{SANS}"{_attrs(self.attrs)}>'
        )
        title = f"<title>{escape(self.title, quote=False)}</title>" if self.title else ""
        return head + title + "".join(self.parts) + "</svg>"


def nice_ticks(lo: float, hi: float, n: int = 6, integer: bool = False) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 2.5, 5 x 10^k steps), about `n` of them."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(round(v, 12))
        v += step
    return out


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten within [lo, hi] (at least the two around them)."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return [10.0**k for k in range(a, b + 1)]


def tick_label(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e6 or abs(v) < 1e-3:
        return f"{v:.3g}"
    if float(v).is_integer():
        return f"{int(v):,}"
    return f"{v:.6g}"


class Axes:
    """A plotting box at (left, top, width, height) pixels with linear (or log) data limits."""

    def __init__(self, canvas: Canvas, box: tuple[float, float, float, float],
                 xlim: tuple[float, float], ylim: tuple[float, float],
                 xlog: bool = False, ylog: bool = False) -> None:  # fmt: skip
        self.c = canvas
        self.left, self.top, self.w, self.h = box
        self.xlog, self.ylog = xlog, ylog
        self.xlim = self._fix(xlim, xlog)
        self.ylim = self._fix(ylim, ylog)

    @staticmethod
    def _fix(lim: tuple[float, float], log: bool) -> tuple[float, float]:
        lo, hi = lim
        if log:
            lo, hi = max(lo, 1e-12), max(hi, 1e-12)
            if hi <= lo:
                lo, hi = lo / 10, hi * 10
            return lo, hi
        if hi <= lo:
            hi = lo + (abs(lo) or 1.0)
        return lo, hi

    def _frac(self, v: float, lim: tuple[float, float], log: bool) -> float:
        lo, hi = lim
        if log:
            v = max(v, lo * 1e-3)
            return (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        return (v - lo) / (hi - lo)

    def x(self, v: float) -> float:
        """The pixel column of `v`, held inside the box (no clip path: the page has no url())."""
        return self.left + min(max(self._frac(v, self.xlim, self.xlog), 0.0), 1.0) * self.w

    def y(self, v: float) -> float:
        """The pixel row of `v`, held inside the box (a clipped window edge runs along the top)."""
        return self.top + self.h - min(max(self._frac(v, self.ylim, self.ylog), 0.0), 1.0) * self.h

    def xs(self, values: Iterable[float]) -> list[float]:
        """`x(v)` of each of `values` (the same arithmetic, its constants computed once)."""
        left, w = self.left, self.w
        return [left + min(max(f, 0.0), 1.0) * w for f in _fracs(values, self.xlim, self.xlog)]

    def ys(self, values: Iterable[float]) -> list[float]:
        """`y(v)` of each of `values` (the same arithmetic, its constants computed once)."""
        bottom, h = self.top + self.h, self.h
        return [bottom - min(max(f, 0.0), 1.0) * h for f in _fracs(values, self.ylim, self.ylog)]

    @property
    def bottom(self) -> float:
        return self.top + self.h

    def frame(self, xlabel: str = "", ylabel: str = "", title: str = "", xticks=None,
              yticks=None, title_left: bool = False, grid_y: bool = False,
              x_tick_labels: bool = True) -> None:  # fmt: skip
        """Axis lines, ticks and their labels, axis labels and the title."""
        c = self.c
        if xticks is None:
            xticks = log_ticks(*self.xlim) if self.xlog else nice_ticks(*self.xlim)
        if yticks is None:
            yticks = log_ticks(*self.ylim) if self.ylog else nice_ticks(*self.ylim)
        c.open("g", class_="axes")
        for v in yticks:
            if not self.ylim[0] <= v <= self.ylim[1] * (1 + 1e-9):
                continue
            y = self.y(v)
            if grid_y:
                c.line(self.left, y, self.left + self.w, y, stroke="#000", width=0.5,
                       stroke_opacity="0.15")  # fmt: skip
            c.line(self.left - 4, y, self.left, y, stroke="#333")
            c.text(self.left - 6, y, tick_label(v), size=9, anchor="end", baseline="middle")
        for v in xticks:
            if not self.xlim[0] <= v <= self.xlim[1] * (1 + 1e-9):
                continue
            x = self.x(v)
            c.line(x, self.bottom, x, self.bottom + 4, stroke="#333")
            if x_tick_labels:
                c.text(x, self.bottom + 15, tick_label(v), size=9, anchor="middle")
        c.rect(self.left, self.top, self.w, self.h, fill="none", stroke="#333", stroke_width="0.8")
        if xlabel:
            c.text(self.left + self.w / 2, self.bottom + 31, xlabel, size=10, anchor="middle",
                   class_="xlabel")  # fmt: skip
        if ylabel:
            cx, cy = self.left - 44, self.top + self.h / 2
            c.text(cx, cy, ylabel, size=10, anchor="middle", class_="ylabel",
                   transform=f"rotate(-90 {number(cx)} {number(cy)})")  # fmt: skip
        if title:
            if title_left:
                c.text(self.left, self.top - 7, title, size=11, class_="title")
            else:
                c.text(self.left + self.w / 2, self.top - 8, title, size=12, anchor="middle",
                       class_="title")  # fmt: skip
        c.close("g")

    def legend(self, items: Sequence[tuple[str, str]], x: float, y: float,
               marker: str = "box") -> None:  # fmt: skip
        """(label, colour) rows from (x, y) down; `marker` "box" (areas) or "line"."""
        c = self.c
        c.open("g", class_="legend")
        for i, (label, color) in enumerate(items):
            yy = y + i * 14
            if marker == "line":
                c.line(x, yy, x + 16, yy, stroke=color, width=2)
            else:
                c.rect(x, yy - 5, 12, 10, fill=color)
            c.text(x + 20, yy, label, size=9, baseline="middle")
        c.close("g")


def _fracs(values: Iterable[float], lim: tuple[float, float], log: bool) -> list[float]:
    """`Axes._frac` of each of `values`, the same operations in the same order."""
    lo, hi = lim
    if log:
        log10, floor = math.log10, lo * 1e-3
        log_lo = log10(lo)
        span = log10(hi) - log_lo
        return [(log10(max(v, floor)) - log_lo) / span for v in values]
    span = hi - lo
    return [(v - lo) / span for v in values]


def points_path(pts: Iterable[tuple[float, float]]) -> str:
    """`M x y L x y ...` of pixel points."""
    out = []
    texts: dict[float, str] = {}  # (a chart repeats its columns and rows: each spelt once)
    for x, y in pts:
        tx = texts.get(x)
        if tx is None:
            tx = texts[x] = number(x)
        ty = texts.get(y)
        if ty is None:
            ty = texts[y] = number(y)
        out.append(f"L{tx} {ty}")
    if out:
        out[0] = "M" + out[0][1:]
    return "".join(out)


def step_path(pts: Sequence[tuple[float, float]]) -> str:
    """A post-step line through pixel points (the value holds until the next point)."""
    out = []
    prev_y = None
    for i, (x, y) in enumerate(pts):
        if i == 0:
            out.append(f"M{number(x)} {number(y)}")
        else:
            out.append(f"H{number(x)}V{number(y)}" if y != prev_y else f"H{number(x)}")
        prev_y = y
    return "".join(out)

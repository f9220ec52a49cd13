"""The postmortem report's pictures as SVG text: ladders, socket states of the busy hosts, RTT,
time-sequence graphs.

Written directly from the data (svg_charts.py, svg_ladder.py), with no matplotlib round trip
per figure: the report embeds them inline (HTML) or saves them beside it as ``.svg`` files
(Markdown). `flowlens ladder --png`, `states --plot` and `plot` still draw with matplotlib.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .ladder import Ladder
from .rtt import Series
from .spantable import SpanTable
from .states import states_chart
from .svg_charts import rtt_svg, states_svg, tseq_svg
from .svg_ladder import ladder_svg

if TYPE_CHECKING:  # (time-sequence graphs: only with --stream-graphs)
    from .streamgraph import TseqGraph

__all__ = [
    "MAX_STATE_HOSTS",
    "MIN_BUSY_SOCKETS",
    "Picture",
    "busy_hosts",
    "ladder_picture",
    "rtt_picture",
    "states_picture",
    "tseq_picture",
]

_SIZE = re.compile(r'<svg [^>]*?width="([\d.]+)" height="([\d.]+)"')


@dataclass(slots=True)
class Picture:
    """A drawn figure: `name` is its file stem (Markdown writes `<name>.svg`), `svg` the
    document."""

    name: str
    alt: str
    svg: str

    @property
    def size(self) -> tuple[int, int]:
        """Width and height in pixels, as the SVG states them."""
        m = _SIZE.match(self.svg)
        return (round(float(m.group(1))), round(float(m.group(2)))) if m else (0, 0)


def ladder_picture(lad: Ladder) -> Picture:
    """The ladder's sequence diagram (svg_ladder; ladder_plot draws the same with matplotlib)."""
    return Picture(f"ladder-{lad.uid}", f"ladder diagram of {lad.uid}", ladder_svg(lad))


def tseq_picture(graph: TseqGraph) -> Picture:
    """The connection's time-sequence graph (as `flowlens plot --kind tseq` draws it)."""
    return Picture(
        f"tseq-{graph.uid}",
        f"time-sequence graph of {graph.uid} ({graph.direction})",
        tseq_svg(graph),
    )


#: socket-state panels drawn: the busiest hosts among those that had at least
#: MIN_BUSY_SOCKETS sockets over the capture (a flood's spoofed sources have one or two each)
MAX_STATE_HOSTS = 4
#: instants the socket-state chart samples at most (its plot area is about 740 pixels wide)
STATES_POINTS = 1500
MIN_BUSY_SOCKETS = 3


def busy_hosts(index: SpanTable) -> list[tuple[str, int, int]]:
    """[(host, most sockets it held at once, sockets over the capture)], busiest first."""
    return index.busy_hosts()


def states_picture(
    index: SpanTable, first_ns: int, last_ns: int
) -> tuple[Picture | None, list[str]]:
    """The stacked socket-state chart of the busy hosts, and the hosts left out."""
    ranked = index.busy_hosts()
    shown = [h for h, _peak, n in ranked if n >= MIN_BUSY_SOCKETS][:MAX_STATE_HOSTS]
    chosen = set(shown)
    left_out = [h for h, _peak, _n in ranked if h not in chosen]
    if not shown:
        return None, left_out
    chart = states_chart(index.subset(shown), first_ns, last_ns, max_points=STATES_POINTS)
    svg = states_svg(chart)
    return Picture("states", "TCP sockets per busy host and state over time", svg), left_out


def rtt_picture(series: list[Series]) -> Picture | None:
    """RTT per server over time and the histogram, or None without samples."""
    if not any(s.rtt_ms for s in series):
        return None
    svg = rtt_svg(series, title="RTT per server (cap>resp>cap)", max_lines=8)
    return Picture("rtt", "round-trip times per server over time, and their histogram", svg)

"""The postmortem report's pictures as PNG bytes: ladders, socket states of the busy hosts, RTT.

Drawn with the fonts matplotlib ships (DejaVu), so nothing is looked up on the system and the
pictures look the same everywhere; the report embeds them (HTML) or saves them beside it
(Markdown).
"""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass

from .ladder import Ladder
from .rtt import Series
from .states import SocketStates
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


@dataclass(slots=True)
class Picture:
    """A rendered figure: `name` is its file stem (Markdown writes `<name>.png`)."""

    name: str
    alt: str
    png: bytes
    #: width and height in pixels
    size: tuple[int, int] = (0, 0)


def _rc():
    import matplotlib

    matplotlib.use("Agg", force=False)
    # fonts matplotlib ships with: nothing is looked up on the system, nothing external
    return matplotlib.rc_context(
        {
            "font.family": "DejaVu Sans",
            "font.monospace": ["DejaVu Sans Mono"],
        }
    )


def _png(fig, dpi: int) -> tuple[bytes, tuple[int, int]]:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
        w, h = fig.get_size_inches()
    finally:
        plt.close(fig)
    return buf.getvalue(), (round(w * dpi), round(h * dpi))


def ladder_picture(lad: Ladder, dpi: int = 100) -> Picture:
    """The ladder's sequence diagram (flowlens.reports.ladder_plot) as PNG."""
    from .ladder_plot import draw_figure

    with _rc():
        png, size = _png(draw_figure([lad]), dpi)
    return Picture(f"ladder-{lad.uid}", f"ladder diagram of {lad.uid}", png, size)


def tseq_picture(graph: TseqGraph, dpi: int = 100) -> Picture:
    """The connection's time-sequence graph (flowlens.reports.streamgraph_plot) as PNG."""
    from .streamgraph_plot import draw_tseq

    with _rc():
        png, size = _png(draw_tseq(graph), dpi)
    return Picture(
        f"tseq-{graph.uid}", f"time-sequence graph of {graph.uid} ({graph.direction})", png, size
    )


#: socket-state panels drawn: the busiest hosts among those that had at least
#: MIN_BUSY_SOCKETS sockets over the capture (a flood's spoofed sources have one or two each)
MAX_STATE_HOSTS = 4
MIN_BUSY_SOCKETS = 3


def busy_hosts(index: SocketStates) -> list[tuple[str, int, int]]:
    """[(host, most sockets it held at once, sockets over the capture)], busiest first.

    One sweep over the spans' starts and ends (`SocketStates.series` would build a count per
    host per instant: far too much for a SYN flood's ten thousand spoofed sources)."""
    events = []
    sockets: dict[str, set] = {}
    for sp in index.spans:
        events.append((sp.start_ns, 1, sp.host))
        if sp.end_ns is not None:
            events.append((sp.end_ns, -1, sp.host))
        sockets.setdefault(sp.host, set()).add((sp.uid, sp.port))
    events.sort(key=lambda e: (e[0], e[1]))  # ends before starts at the same instant
    now: Counter = Counter()
    peaks: Counter = Counter()
    for _t, delta, host in events:
        now[host] += delta
        peaks[host] = max(peaks[host], now[host])
    order = {h: i for i, h in enumerate(index.host_list())}
    return sorted(
        ((h, peaks[h], len(sockets[h])) for h in sockets),
        key=lambda x: (-x[1], -x[2], order[x[0]]),
    )


def states_picture(
    index: SocketStates, first_ns: int, last_ns: int, dpi: int = 100
) -> tuple[Picture | None, list[str]]:
    """The stacked socket-state chart of the busy hosts, and the hosts left out."""
    ranked = busy_hosts(index)
    shown = [h for h, _peak, n in ranked if n >= MIN_BUSY_SOCKETS][:MAX_STATE_HOSTS]
    chosen = set(shown)
    left_out = [h for h, _peak, _n in ranked if h not in chosen]
    if not shown:
        return None, left_out
    from .states import states_figure

    sub = SocketStates(hosts=shown)
    sub.spans = [s for s in index.spans if s.host in chosen]
    with _rc():
        fig, _ = states_figure(sub, first_ns, last_ns)
        png, size = _png(fig, dpi)
    return Picture("states", "TCP sockets per busy host and state over time", png, size), left_out


def rtt_picture(series: list[Series], dpi: int = 100) -> Picture | None:
    """RTT per server over time and the histogram (flowlens.reports.rtt.draw_figure), or None
    without samples."""
    if not any(s.rtt_ms for s in series):
        return None
    from .rtt import draw_figure

    with _rc():
        fig = draw_figure(series, title="RTT per server (cap>server>cap)", max_lines=8)
        png, size = _png(fig, dpi)
    return Picture("rtt", "round-trip times per server over time, and their histogram", png, size)

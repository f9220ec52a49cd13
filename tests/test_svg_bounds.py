"""The RTT chart draws what its pixels show, not every sample (reports/svg_charts.py): the
line keeps of each pixel column its first, lowest, highest and last point (M4), the marks one
per pixel, so a capture of millions of samples makes a picture of the chart's size."""

from __future__ import annotations

import math
import random
import re

from flowlens.reports.rtt import Series
from flowlens.reports.svg_charts import _Line, _Marks, rtt_svg


def _columns(points):
    cols: dict[int, list] = {}
    for x, y in points:
        cols.setdefault(math.floor(x), []).append((x, y))
    return cols


def test_the_line_keeps_what_each_pixel_column_shows():
    rng = random.Random(3)
    xs = sorted(rng.uniform(0, 50) for _ in range(5000))
    ys = [rng.uniform(0, 300) for _ in xs]
    line = _Line()
    for lo in range(0, len(xs), 777):  # (in chunks, as rtt_svg adds them)
        line.add(xs[lo : lo + 777], ys[lo : lo + 777])
    kept = line.points()
    every = _columns(zip(xs, ys))
    shown = _columns(kept)
    assert shown.keys() == every.keys()
    for col, pts in every.items():
        got = shown[col]
        assert len(got) <= 4
        assert got[0] == pts[0] and got[-1] == pts[-1]  # enters and leaves at the same points
        assert min(y for _x, y in got) == min(y for _x, y in pts)
        assert max(y for _x, y in got) == max(y for _x, y in pts)
    assert kept == sorted(kept, key=lambda p: xs.index(p[0]))  # in the samples' order


def test_a_line_of_one_point_per_column_is_kept_whole():
    xs = [0.5 + i for i in range(40)]
    ys = [float(i % 7) for i in range(40)]
    line = _Line()
    line.add(xs, ys)
    assert line.points() == list(zip(xs, ys))


def test_marks_are_one_per_pixel():
    marks = _Marks()
    marks.add([10.2, 10.4, 10.6, 30.0], [5.1, 4.9, 5.0, 5.0])
    assert marks.text() == "M8.5 5h3M9.5 5h3M28.5 5h3"


def test_a_long_series_draws_a_picture_of_the_charts_size():
    """A million samples: the SVG stays the size of its pixels, and says how many it shows."""
    rng = random.Random(1)
    n = 1_000_000
    ts = [i * 1e-3 for i in range(n)]
    rtt = [0.2 + rng.random() * 0.1 for _ in range(n)]
    svg = rtt_svg([Series("10.0.0.1 cap>resp>cap", ts, rtt)])
    assert len(svg) < 1_500_000
    assert re.search(r'data-points="1000000"', svg)
    assert "1000000 samples" in svg

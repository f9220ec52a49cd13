"""The ladder's sequence diagram as SVG (see svg.py), for the postmortem report.

The same drawing as `ladder_plot.draw_figure` (what `flowlens ladder --png/--svg` writes):
the originator's and responder's lifelines coloured by each endpoint's state, each packet a
slanted arrow coloured by flag (SYN blue, FIN purple, RST red) labelled like the text ladder,
findings under it (red warns, blue describes), user notes in yellow boxes, folded data runs and
idle gaps in grey. Every arrow is a group with id ``arrow-<uid>-<frame>`` and
``class="arrow"`` holding its label, so tests count the arrows and read their labels.
"""

from __future__ import annotations

from .ladder import INFO_KINDS, Ladder
from .ladder_plot import STATE_COLORS, arrow_color, step_height
from .svg import Canvas, number, text_width

__all__ = ["ladder_svg"]

_W = 1100
_ROW = 22.0  # pixels per row of ladder_plot's layout
_XL, _XR = 0.30 * _W, 0.78 * _W
_MID = (_XL + _XR) / 2


def _box(c: Canvas, x: float, y: float, text: str, fill: str, stroke: str = "none",
         color: str = "#222", size: float = 8.5, anchor: str = "middle", weight=None) -> None:  # fmt: skip
    w = text_width(text, size) * (1.25 if weight == "bold" else 1.0) + 8  # bold capitals are wide
    x0 = x - w / 2 if anchor == "middle" else x - w if anchor == "end" else x
    c.rect(x0, y - size * 0.75, w, size * 1.5, fill=fill, stroke=stroke, rx="3")
    tx = x0 + w / 2
    c.text(tx, y, text, size=size, anchor="middle", color=color, baseline="middle", weight=weight)


def ladder_svg(lad: Ladder) -> str:
    """The sequence diagram of one ladder as an SVG document."""
    total = sum(step_height(s) for s in lad.steps) + 4.5 + 0.4 * len(lad.footer)
    height = total * _ROW + 30
    c = Canvas(_W, height, f"ladder diagram of {lad.uid}", class_="chart ladder",
               data_uid=lad.uid)  # fmt: skip

    def Y(rows: float) -> float:
        return 24 + rows * _ROW

    c.text(0, 16, lad.title, size=11, weight="bold", mono=True)
    y = 0.3
    for line in lad.header:
        c.text(0, Y(y) + 9, line, size=8.5, color="#444444", mono=True)
        y += 0.6
    y += 0.4
    c.text(_XL, Y(y) - 3, lad.orig_label, size=10, anchor="middle", weight="bold")
    c.text(_XR, Y(y) - 3, lad.resp_label, size=10, anchor="middle", weight="bold")
    c.text(_XL, Y(y + 0.05) + 9, "originator", size=8, anchor="middle", color="#666666")
    c.text(_XR, Y(y + 0.05) + 9, "responder", size=8, anchor="middle", color="#666666")
    c.text(0, Y(y + 0.05) + 9, "frame", size=8, color="#666666")
    c.text(0.06 * _W, Y(y + 0.05) + 9, "time s", size=8, color="#666666")
    y += 0.8
    prev_state: tuple[str | None, str | None] = (
        ("CLOSED", "CLOSED") if lad.steps and lad.steps[0].after[0] is not None else (None, None)
    )
    lifelines: list[str] = []
    overlay: list[str] = []
    main = c.parts
    for step in lad.steps:
        h = step_height(step)
        ymid = y + 0.5
        # lifelines coloured by each endpoint's state; a state starts where the arrow that
        # caused it leaves (its sender) or lands (its receiver)
        c.parts = lifelines
        for x, side in ((_XL, 0), (_XR, 1)):
            before = prev_state[side]
            after = step.after[side] if step.after[side] is not None else before
            if step.kind == "packet" and step.entered[side]:
                ychange = y + (0.25 if bool(step.from_orig) == (side == 0) else 0.75)
            else:
                ychange = ymid if step.entered[side] else y + h
            dotted = step.kind in ("collapsed", "idle")
            for st, y0, y1 in ((before, y, ychange), (after, ychange, y + h)):
                if y1 > y0:
                    c.line(x, Y(y0), x, Y(y1), stroke=STATE_COLORS.get(st or "", "#bbbbbb"),
                           width=3 if st not in (None, "CLOSED") else 1.2, stroke_opacity="0.8",
                           stroke_dasharray="2 3" if dotted else None,
                           class_="lifeline", data_state=st or "")  # fmt: skip
        c.parts = overlay
        for x, side, anchor, dx in ((_XL, 0, "end", -6), (_XR, 1, "start", 6)):
            st = step.entered[side]
            if st:
                if step.kind == "packet":
                    ychange = y + (0.25 if bool(step.from_orig) == (side == 0) else 0.75)
                else:
                    ychange = ymid
                _box(c, x + dx, Y(ychange), st, STATE_COLORS.get(st, "#555555"), color="white",
                     size=8, anchor=anchor, weight="bold")  # fmt: skip
        c.parts = main
        if step.kind not in ("collapsed", "idle"):
            c.text(0, Y(ymid), str(step.frame or ""), size=8.5, mono=True, baseline="middle")
            c.text(0.06 * _W, Y(ymid), f"{step.offset_s:.6f}", size=8.5, mono=True,
                   baseline="middle")  # fmt: skip
        if step.kind == "packet":
            a, b = (_XL, _XR) if step.from_orig else (_XR, _XL)
            color = arrow_color(step)
            y0, y1 = Y(y + 0.25), Y(y + 0.75)
            c.open("g", class_="arrow", id=f"arrow-{lad.uid}-{step.frame}", data_frame=step.frame)
            c.line(a, y0, b, y1, stroke=color, width=1.3)
            # the head: a filled triangle at (b, y1) along the arrow
            run, rise = b - a, y1 - y0
            norm = (run * run + rise * rise) ** 0.5 or 1.0
            ux, uy = run / norm, rise / norm
            p1 = (b - 10 * ux + 4 * uy, y1 - 10 * uy - 4 * ux)
            p2 = (b - 10 * ux - 4 * uy, y1 - 10 * uy + 4 * ux)
            c.path(f"M{number(b)} {number(y1)}L{number(p1[0])} {number(p1[1])}"
                   f"L{number(p2[0])} {number(p2[1])}Z", fill=color)  # fmt: skip
            ly = Y(y + 0.42)
            w = text_width(step.label, 8.5, mono=True) + 4
            c.rect(_MID - w / 2, ly - 11, w, 12, fill="white", fill_opacity="0.85")
            c.text(_MID, ly - 2, step.label, size=8.5, anchor="middle", color=color, mono=True,
                   class_="label")  # fmt: skip
            c.close("g")
            yy = y + 1.0
            for finding in step.findings:
                info = finding.kind in INFO_KINDS
                c.text(_MID, Y(yy + 0.05), finding.text if info else f"! {finding.text}",
                       size=8.5, anchor="middle", color="#1565c0" if info else "#c62828",
                       italic=True, baseline="middle", class_="finding")  # fmt: skip
                yy += 0.55
            for text in step.notes:
                _box(c, _MID, Y(yy + 0.05), text, "#fff59d", stroke="#f9a825")
                yy += 0.55
        elif step.kind == "collapsed":
            c.text(0, Y(ymid + 0.15), f"{step.frame}-{step.last_frame}", size=8.5, mono=True,
                   baseline="middle")  # fmt: skip
            c.text(0.06 * _W, Y(ymid + 0.15), f"{step.offset_s:.3f}-{step.end_offset_s:.3f}",
                   size=8.5, mono=True, baseline="middle")  # fmt: skip
            c.text(_MID, Y(ymid + 0.15), step.label.replace("...", "\u2026"), size=9,
                   anchor="middle", color="#555555", italic=True, baseline="middle")  # fmt: skip
            yy = ymid + 0.7
            for text in step.detail:
                c.text(_MID, Y(yy), text.replace(" -> ", " \u2192 "), size=8.5, anchor="middle",
                       color="#555555", baseline="middle")  # fmt: skip
                yy += 0.5
        elif step.kind == "idle":
            c.text(_MID, Y(ymid), step.label.replace("...", "\u2026"), size=9, anchor="middle",
                   color="#555555", italic=True, baseline="middle")  # fmt: skip
        elif step.kind == "state":
            c.text(_MID, Y(ymid), step.label, size=8.5, anchor="middle", color="#666666",
                   italic=True, baseline="middle")  # fmt: skip
        elif step.kind == "note":
            c.line(_XL, Y(ymid), _XR, Y(ymid), stroke="#f9a825", width=1, stroke_dasharray="4 3")
            _box(c, _MID, Y(ymid), step.notes[0], "#fff59d", stroke="#f9a825")
        y += h
        if step.after[0] is not None:
            prev_state = step.after
    y += 0.3
    for line in lad.footer:
        c.text(0, Y(y) + 9, line, size=8.5, color="#444444", mono=True)
        y += 0.4
    c.parts = lifelines + main + overlay
    return str(c)

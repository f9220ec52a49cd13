"""Ladder diagrams as matplotlib figures: the same `Step`s as the text ladder, as a sequence diagram.

Originator and responder are vertical lifelines coloured by each endpoint's state; each packet is a
slanted arrow (colour by flag: SYN blue, FIN purple, RST red) labelled like the text, with findings
under it (red warns, blue describes) and user notes in yellow boxes. Every arrow is a
FancyArrowPatch whose gid is ``arrow-<frame>`` and every label a Text with gid ``label-<frame>``,
kept as element ids in SVG (text stays text: ``svg.fonttype = none``), so tests read the figure
and the SVG, not pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

from .ladder import INFO_KINDS, Ladder, StatePair, Step

__all__ = ["STATE_COLORS", "arrow_color", "draw_figure", "save_figure", "step_height"]

#: lifeline and state-box colours: calm for the normal path, loud for the states people hunt
STATE_COLORS = {
    "CLOSED": "#9e9e9e",
    "LISTEN": "#9e9e9e",
    "SYN_SENT": "#1f77b4",
    "SYN_RECEIVED": "#1f77b4",
    "ESTABLISHED": "#2ca02c",
    "FIN_WAIT_1": "#9467bd",
    "FIN_WAIT_2": "#9467bd",
    "CLOSING": "#9467bd",
    "LAST_ACK": "#9467bd",
    "CLOSE_WAIT": "#d62728",
    "TIME_WAIT": "#ff7f0e",
}
_FLAG_COLORS = {"S": "#1f77b4", "F": "#9467bd", "R": "#d62728"}


def arrow_color(step: Step) -> str:
    for letter, color in _FLAG_COLORS.items():
        if letter in step.flags:
            return color
    return "#333333"


def step_height(step: Step) -> float:
    """Rows of vertical space a step takes in the figure."""
    if step.kind == "packet":
        return 1.0 + 0.55 * (len(step.findings) + len(step.notes))
    if step.kind == "collapsed":
        return 1.3 + 0.5 * len(step.detail)
    return 1.0


def draw_figure(ladders: Sequence[Ladder]):
    """A matplotlib Figure: one sequence diagram per ladder, stacked. Every arrow is a
    FancyArrowPatch whose gid is ``arrow-<frame>`` (kept as an element id in SVG output)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch

    heights = [
        sum(step_height(s) for s in lad.steps) + 4.5 + 0.4 * len(lad.footer) for lad in ladders
    ]
    row_in = 0.36
    fig_h = max(3.0, sum(heights) * row_in + 0.4 * len(ladders))
    fig, axes = plt.subplots(
        len(ladders), 1, figsize=(12, fig_h), gridspec_kw={"height_ratios": heights}, squeeze=False
    )
    xl, xr = 0.30, 0.78
    mono = {"family": "monospace"}
    for ax, lad, total in zip(axes[:, 0], ladders, heights):
        ax.set_xlim(0, 1)
        ax.set_ylim(total, 0)
        ax.axis("off")
        ax.set_title(lad.title, loc="left", fontsize=11, fontweight="bold", **mono)
        y = 0.3
        for line in lad.header:
            ax.text(0.0, y, line, fontsize=8.5, color="#444444", va="top", **mono)
            y += 0.6
        y += 0.4
        ax.text(xl, y, lad.orig_label, ha="center", va="bottom", fontsize=10, fontweight="bold")
        ax.text(xr, y, lad.resp_label, ha="center", va="bottom", fontsize=10, fontweight="bold")
        ax.text(xl, y + 0.05, "originator", ha="center", va="top", fontsize=8, color="#666666")
        ax.text(xr, y + 0.05, "responder", ha="center", va="top", fontsize=8, color="#666666")
        ax.text(0.0, y + 0.05, "frame", fontsize=8, color="#666666", va="top")
        ax.text(0.06, y + 0.05, "time s", fontsize=8, color="#666666", va="top")
        y += 0.8
        prev_state: StatePair = (
            ("CLOSED", "CLOSED")
            if lad.steps and lad.steps[0].after[0] is not None
            else (None, None)
        )
        for step in lad.steps:
            h = step_height(step)
            ymid = y + 0.5
            # lifelines, coloured by each endpoint's state; a state starts where the arrow that
            # caused it leaves (its sender) or lands (its receiver)
            for x, side, ha, dx in ((xl, 0, "right", -0.012), (xr, 1, "left", 0.012)):
                before = prev_state[side]
                after = step.after[side] if step.after[side] is not None else before
                if step.kind == "packet" and step.entered[side]:
                    ychange = y + (0.25 if bool(step.from_orig) == (side == 0) else 0.75)
                else:
                    ychange = ymid if step.entered[side] else y + h
                style = ":" if step.kind in ("collapsed", "idle") else "-"
                for st, y0, y1 in ((before, y, ychange), (after, ychange, y + h)):
                    if y1 > y0:
                        ax.plot([x, x], [y0, y1], color=STATE_COLORS.get(st or "", "#bbbbbb"),
                                lw=3 if st not in (None, "CLOSED") else 1.2, ls=style,
                                solid_capstyle="butt", alpha=0.8)  # fmt: skip
                st = step.entered[side]
                if st:
                    ax.text(x + dx, ychange, st, ha=ha, va="center", fontsize=8, color="white",
                            fontweight="bold",
                            bbox={"boxstyle": "round,pad=0.25", "fc": STATE_COLORS.get(st, "#555555"), "ec": "none"})  # fmt: skip
            if step.kind not in ("collapsed", "idle"):
                ax.text(0.0, ymid, str(step.frame or ""), fontsize=8.5, va="center", **mono)
                ax.text(0.06, ymid, f"{step.offset_s:.6f}", fontsize=8.5, va="center", **mono)
            if step.kind == "packet":
                a, b = (xl, xr) if step.from_orig else (xr, xl)
                color = arrow_color(step)
                arrow = FancyArrowPatch((a, y + 0.25), (b, y + 0.75), arrowstyle="-|>", mutation_scale=12,
                                        color=color, lw=1.3, shrinkA=0, shrinkB=0)  # fmt: skip
                arrow.set_gid(f"arrow-{step.frame}")
                ax.add_patch(arrow)
                ax.text((xl + xr) / 2, y + 0.42, step.label, ha="center", va="bottom", fontsize=8.5,
                        color=color, bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.85},
                        gid=f"label-{step.frame}", **mono)  # fmt: skip
                yy = y + 1.0
                for finding in step.findings:
                    info = finding.kind in INFO_KINDS
                    ax.text((xl + xr) / 2, yy + 0.05, finding.text if info else f"! {finding.text}", ha="center",
                            va="center", fontsize=8.5, color="#1565c0" if info else "#c62828",
                            fontstyle="italic")  # fmt: skip
                    yy += 0.55
                for text in step.notes:
                    ax.text((xl + xr) / 2, yy + 0.05, text, ha="center", va="center", fontsize=8.5,
                            bbox={"boxstyle": "round,pad=0.3", "fc": "#fff59d", "ec": "#f9a825"})  # fmt: skip
                    yy += 0.55
            elif step.kind == "collapsed":
                ax.text(
                    0.0,
                    ymid + 0.15,
                    f"{step.frame}-{step.last_frame}",
                    fontsize=8.5,
                    va="center",
                    **mono,
                )
                ax.text(0.06, ymid + 0.15, f"{step.offset_s:.3f}-{step.end_offset_s:.3f}", fontsize=8.5,
                        va="center", **mono)  # fmt: skip
                ax.text((xl + xr) / 2, ymid + 0.15, step.label.replace("...", "\u2026"), ha="center",
                        va="center", fontsize=9, color="#555555", fontstyle="italic")  # fmt: skip
                yy = ymid + 0.7
                for text in step.detail:
                    text = text.replace(" -> ", " \u2192 ")
                    ax.text(
                        (xl + xr) / 2,
                        yy,
                        text,
                        ha="center",
                        va="center",
                        fontsize=8.5,
                        color="#555555",
                    )
                    yy += 0.5
            elif step.kind == "idle":
                ax.text((xl + xr) / 2, ymid, step.label.replace("...", "\u2026"), ha="center", va="center",
                        fontsize=9, color="#555555", fontstyle="italic")  # fmt: skip
            elif step.kind == "state":
                ax.text((xl + xr) / 2, ymid, step.label, ha="center", va="center", fontsize=8.5,
                        color="#666666", fontstyle="italic")  # fmt: skip
            elif step.kind == "note":
                ax.plot([xl, xr], [ymid, ymid], color="#f9a825", lw=1, ls="--")
                ax.text((xl + xr) / 2, ymid, step.notes[0], ha="center", va="center", fontsize=8.5,
                        bbox={"boxstyle": "round,pad=0.3", "fc": "#fff59d", "ec": "#f9a825"})  # fmt: skip
            y += h
            if step.after[0] is not None:
                prev_state = step.after
        y += 0.3
        for line in lad.footer:
            ax.text(0.0, y, line, fontsize=8.5, color="#444444", va="top", **mono)
            y += 0.4
    fig.subplots_adjust(
        left=0.03, right=0.97, top=1 - 0.25 / fig_h, bottom=0.1 / fig_h, hspace=0.15
    )
    return fig


def save_figure(ladders: Sequence[Ladder], path: str, fmt: str) -> None:
    """Write the diagram as `fmt` ("svg" or "png"); SVG keeps text as text (searchable, diffable)
    and its spaces (`xml:space="preserve"`), so aligned columns stay aligned in a browser."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "flowlens"}):
        fig = draw_figure(ladders)
        try:
            if fmt != "svg":
                fig.savefig(path, format=fmt, dpi=130)
                return
            import io

            buf = io.StringIO()
            fig.savefig(buf, format="svg")
        finally:
            plt.close(fig)
    # text kept as text loses its runs of spaces in every SVG viewer (XML collapses white space
    # unless told otherwise: XML 1.0 §2.10, SVG 1.1 §10.15 xml:space): the ladder's aligned
    # header, footer and labels need them kept
    svg = buf.getvalue().replace("<svg ", '<svg xml:space="preserve" ', 1)
    with open(path, "w", encoding="utf-8") as out:
        out.write(svg)

"""Plotting helpers shared by the stages' figures: titles that fit, labels that do not collide,
one colour and marker per category. The figures themselves are drawn by their stages
(``plot_*`` functions); matplotlib is imported when a helper runs (:func:`grids.io.pyplot`).
"""

from __future__ import annotations

import textwrap

import numpy as np

from .grouping.names import SEPARATOR, group_members


def fit_width(text) -> None:
    """Re-wrap ``text`` (a matplotlib ``Text`` of a figure) at its spaces until it lies within the
    figure's width, laying the figure out (its layout engine included) before each measurement."""
    fig = text.figure
    words = " ".join(text.get_text().split())
    width = len(words)
    while True:
        fig.draw_without_rendering()
        extent = text.get_window_extent()
        if (extent.x0 >= fig.bbox.x0 and extent.x1 <= fig.bbox.x1) or width <= 12:
            return
        width = max(12, min(width - 1, int(width * fig.bbox.width / extent.width * 0.95)))
        text.set_text(textwrap.fill(words, width))


SEEN_MARKERS = ("o", "s", "^", "D", "v", "<")
UNSEEN_MARKERS = ("x", "+", "X", "P", "*", "1")


def category_styles(unseen: list[bool]) -> list[tuple[str, str]]:
    """A ``(colour, marker)`` per category, no two alike: matplotlib's ten default colours less its
    grey, then black, gold and navy (twelve colours, none a lighter twin of another), counted
    separately for the seen and the unseen categories; the marker changes with every twelve, and a
    category in ``unseen`` gets a cross-like marker instead of a filled one."""
    palette = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C8", "C9", "black", "gold", "navy"]
    counts = {False: 0, True: 0}
    styles = []
    for u in unseen:
        k = counts[u]
        counts[u] += 1
        styles.append(
            (
                palette[k % len(palette)],
                (UNSEEN_MARKERS if u else SEEN_MARKERS)[(k // len(palette)) % len(SEEN_MARKERS)],
            )
        )
    return styles


def wrap_group(name: str, width: int = 24) -> str:
    """A group's name on several lines, each new one starting at a ``+`` (joined again, the lines
    give the name), so that no line passes ``width`` characters unless one member's name does."""
    lines = [""]
    for k, member in enumerate(group_members(name)):
        piece = member if k == 0 else SEPARATOR + member
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append(piece)
        else:
            lines[-1] += piece
    return "\n".join(lines)


def place_labels(ax, xy: np.ndarray, texts: list[str], radii: list[float], fontsize: float = 6.5) -> list:
    """Annotate each point ``xy[i]`` (data coordinates; its marker ``radii[i]`` points) with
    ``texts[i]``, greedily: the most crowded points first, each label at the nearest of a ring of
    offsets where it stays inside the axes, overlaps neither a label placed before nor a marker and
    is nearer its own point than any other (the least overlap where none is free), joined to its
    point by a thin line when set apart.

    Lay the figure out and fix the axes' limits first: the offsets are measured on the figure as it
    is then (in points, so a save at another dpi keeps them)."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    px = fig.dpi / 72
    centres = ax.transData.transform(xy) if len(xy) else np.zeros((0, 2))
    markers = [Bbox.from_bounds(x - r * px, y - r * px, 2 * r * px, 2 * r * px) for (x, y), r in zip(centres, radii)]

    def shared(a, b) -> float:
        box = Bbox.intersection(a, b)
        return 0.0 if box is None else box.width * box.height

    def reach(box, point) -> float:
        """How far ``point`` is from ``box`` (display units)."""
        return float(
            np.hypot(max(box.x0 - point[0], 0, point[0] - box.x1), max(box.y0 - point[1], 0, point[1] - box.y1))
        )

    near = [sum(np.hypot(*(centres - c).T) < 60 * px) for c in centres]
    directions = [(1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    ha = {1: "left", 0: "center", -1: "right"}
    va = {1: "bottom", 0: "center", -1: "top"}
    placed, annotations = [], [None] * len(texts)
    for i in sorted(range(len(texts)), key=lambda i: -near[i]):
        label = ax.annotate(texts[i], xy[i], xytext=(0, 0), textcoords="offset points", fontsize=fontsize)
        best = None
        for gap in (2, 8, 16, 26, 38, 52, 68):
            for dx, dy in directions:
                step = radii[i] + gap
                slant = 2**0.5 if dx and dy else 1.0
                label.xyann = (dx * step / slant, dy * step / slant)
                label.set_horizontalalignment(ha[dx])
                label.set_verticalalignment(va[dy])
                label.update_positions(renderer)
                box = Text.get_window_extent(label, renderer)  # the text alone
                outside = box.width * box.height - shared(box, frame)
                cost = 10 * outside + sum(shared(box, b) for b in placed)
                cost += sum(shared(box, m) for j, m in enumerate(markers) if j != i)
                # a label about as near another point as its own could be read as that one's
                own = reach(box, centres[i]) + 4 * px
                cost += sum(1.0 for j, c in enumerate(centres) if j != i and reach(box, c) < own)
                if best is None or cost < best[0]:
                    best = (cost, label.xyann, ha[dx], va[dy], gap, box)
            if best[0] == 0:
                break
        cost, offset, h, v, gap, box = best
        label.remove()
        line = (
            {"arrowstyle": "-", "color": "grey", "lw": 0.5, "shrinkA": 1, "shrinkB": radii[i]}
            if gap > 2 or cost
            else None
        )
        label = ax.annotate(
            texts[i], xy[i], xytext=offset, textcoords="offset points", fontsize=fontsize, ha=h, va=v, arrowprops=line
        )
        placed.append(box.padded(px))  # a point of air: labels that touch may overlap at another dpi
        annotations[i] = label
    return annotations

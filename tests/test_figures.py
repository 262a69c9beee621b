"""The figures a user review found defective, drawn from small synthetic tables: the heatmap's title
and colour-bar label fit the figure, every category of the prediction plot has its own colour and
marker (no colour twice in a panel), the search plot labels each point with its group, Table 1
shows gains from 0 dB with its legend clear of bars and titles, the confusion counts are readable
on every cell, Table 2 names its groups, and the premise's labels do not overlap."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from grids import io, tables
from grids.grouping.names import group_name
from grids.grouping.rounds import plot_search
from grids.report import plot_table1
from grids.selection.report import plot_confusion, plot_prediction
from grids.similarity import plot_heatmap
from grids.validation import plot_premise, plot_table2


@pytest.fixture
def saved(monkeypatch):
    """The figures the plot functions hand to ``io.save_figure``, in order (written as usual)."""
    figures = []
    save = io.save_figure

    def record(fig, *paths, **kwargs):
        figures.append(fig)
        save(fig, *paths, **kwargs)

    monkeypatch.setattr(io, "save_figure", record)
    return figures


def drawn(fig):
    """``fig`` laid out and drawn as it is saved (on Agg: saving closed it); its renderer."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def inside(extent: Bbox, frame: Bbox, tolerance: float = 0.5) -> bool:
    return (
        extent.x0 >= frame.x0 - tolerance
        and extent.y0 >= frame.y0 - tolerance
        and extent.x1 <= frame.x1 + tolerance
        and extent.y1 <= frame.y1 + tolerance
    )


def overlap(a: Bbox, b: Bbox) -> float:
    """The area two extents share (0 when they only touch or are apart)."""
    box = Bbox.intersection(a, b)
    return 0.0 if box is None else max(0.0, box.width) * max(0.0, box.height)


def assert_png(path):
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 5000


def matrix_table(names: list[str], seed: int = 0) -> pd.DataFrame:
    """A ``similarity_matrix`` table of ``names``: symmetric distances, zero on the diagonal."""
    rng = np.random.default_rng(seed)
    points = rng.random((len(names), 3)) * 3
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    rows = [[a, b, 0.1, d[i, j], d[i, j]] for i, a in enumerate(names) for j, b in enumerate(names)]
    return pd.DataFrame(rows, columns=tables.columns("similarity_matrix"))


@pytest.mark.parametrize("n", [2, 3, 4, 30])
def test_heatmap_title_and_colour_bar_label_fit_the_figure(saved, tmp_path, n):
    names = ["clean", "gaussian_blur", "jpeg", "salt_pepper", *(f"degradation_{k:02d}" for k in range(n))][:n]
    title = "Degradation similarity (descriptor features; smaller = more similar)"  # what build_matrix passes
    plot_heatmap(matrix_table(names), tmp_path / "heatmap.png", tmp_path / "heatmap.svg", title=title)
    assert_png(tmp_path / "heatmap.png")
    assert "log-KL" in (tmp_path / "heatmap.svg").read_text()
    (fig,) = saved
    renderer = drawn(fig)
    ax, bar = fig.axes  # the heatmap and its colour bar
    assert " ".join(ax.title.get_text().split()) == title  # wrapped at most, never cut
    label = bar.yaxis.label
    assert label.get_text() == "log-KL distance (symmetrised)"
    for artist in [ax.title, label, *ax.get_xticklabels(), *ax.get_yticklabels()]:
        extent = artist.get_window_extent(renderer)
        assert inside(extent, fig.bbox), (artist.get_text(), extent, fig.bbox)
    assert overlap(ax.title.get_window_extent(renderer), ax.get_window_extent(renderer)) == 0


def accuracy_table(seen: int, unseen: int, images: int = 3) -> pd.DataFrame:
    """A ``selection_accuracy`` table: ``seen`` trained degradations, then ``unseen`` ones."""
    rng = np.random.default_rng(1)
    rows = []
    for k in range(seen + unseen):
        is_seen = k < seen
        name = f"degradation_{k:02d}" if is_seen else f"unseen_{k:02d}"
        group = name if is_seen else ""
        for i in range(images):
            score = float(rng.random() * 2)
            psnr = float(20 + rng.random() * 10)
            rows.append(
                ["heldout", name, f"img{i}", is_seen, group, name, is_seen, score, score, score <= 1.0, 0.1]
                + [psnr, psnr if is_seen else np.nan, psnr if is_seen else np.nan]
                + [1.0, -1.0, 3.0]  # expected gain and its interval
            )
    return pd.DataFrame(rows, columns=tables.columns("selection_accuracy"))


def marker_key(collection) -> tuple:
    """What tells a scatter's points apart: face and edge colour and the marker's shape."""
    path = collection.get_paths()[0]
    colours = [tuple(np.round(c, 3)) for c in (collection.get_facecolor(), collection.get_edgecolor()) for c in c[:1]]
    return (*colours, np.round(path.vertices, 3).tobytes(), None if path.codes is None else path.codes.tobytes())


@pytest.mark.parametrize(("seen", "unseen"), [(12, 0), (10, 2), (20, 4)])
def test_prediction_gives_every_degradation_its_own_colour_and_marker(saved, tmp_path, seen, unseen):
    accuracy = accuracy_table(seen, unseen)
    plot_prediction(accuracy, "knn", 1.0, tmp_path / "prediction.png")
    assert_png(tmp_path / "prediction.png")
    (fig,) = saved
    renderer = drawn(fig)
    assert len(fig.axes) == (2 if unseen else 1)  # trained and unseen degradations apart
    keys = [marker_key(c) for ax in fig.axes for c in ax.collections]
    assert len(keys) == seen + unseen
    assert len(set(keys)) == len(keys), "two degradations are drawn alike"
    labels = []
    for ax in fig.axes:
        colours = [marker_key(c)[0] for c in ax.collections]
        assert len(set(colours)) == min(len(colours), 12), "a colour repeats within a panel"
        legend = ax.get_legend()
        labels += [t.get_text() for t in legend.get_texts()]
        extent = legend.get_window_extent(renderer)
        assert inside(extent, fig.bbox)
        assert overlap(extent, ax.get_window_extent(renderer)) == 0  # the legend hides no point
        assert inside(ax.title.get_window_extent(renderer), fig.bbox)
    assert all(any(label.startswith(name) for label in labels) for name in accuracy.degradation.unique())
    assert sum("(unseen)" in label for label in labels) == unseen


def verdict(k: int, dP: float) -> tuple[bool, str]:
    """``feasible, verdict`` of the k-th group of :func:`verified_table`: the second a failed training."""
    if k == 1:
        return False, "failed_training"
    return dP + 0.19 <= 0.7, "feasible" if dP + 0.19 <= 0.7 else "infeasible"


def verified_table() -> pd.DataFrame:
    """A ``grouping_verified`` table: a long group, and two groups at almost the same place."""
    groups = [
        ["gaussian_noise", "inpainting"],
        ["defocus_blur", "gaussian_blur"],
        ["jpeg", "sr"],
        ["jpeg", "rl"],
        ["defocus_blur", "gaussian_blur", "motion_blur", "ringing", "rl", "sr"],
        ["gaussian_noise", "salt_pepper"],
        ["rain", "haze"],
        ["low_light", "colour_cast"],
    ]
    mean_distance = [4.8, 4.31, 4.57, 4.70, 3.37, 4.50, 3.05, 3.08]
    dP = [2.54, 0.11, 0.11, 0.49, 0.31, 2.39, 0.08, 0.09]
    rows = [
        [group_name(m), len(m), x, y, 0.05, 0.08, y - 0.19, y + 0.19, *verdict(k, y), 1.0, k % 3 == 0, -0.3 * (k == 1)]
        + [m[0] if k == 1 else "", int(k == 1), r]
        for r, (k, m, x, y) in enumerate(zip(range(len(groups)), groups, mean_distance, dP))
    ]
    return pd.DataFrame(rows, columns=tables.columns("grouping_verified"))


def test_search_labels_each_point_with_its_group(saved, tmp_path):
    verified = verified_table()
    plot_search(verified, 0.7, tmp_path / "search.png")
    assert_png(tmp_path / "search.png")
    (fig,) = saved
    renderer = drawn(fig)
    (ax,) = fig.axes
    texts = [t.get_text() for t in ax.texts]
    assert sorted("".join(t.split()) for t in texts) == sorted(verified.group)  # wrapped at most
    assert not any(t.startswith("r") and t[1:].isdigit() for t in texts)
    extents = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the text, not its leader line
    for extent in extents:
        assert inside(extent, fig.bbox)
    for a, b in itertools.combinations(range(len(extents)), 2):
        assert overlap(extents[a], extents[b]) == 0, (texts[a], texts[b])


def table1_table(test_sets: list[str], degradations: list[str], baselines: list[str]) -> pd.DataFrame:
    """A ``table1`` table whose bars all but reach the top of the axes (little headroom anywhere)."""
    rows = []
    for test_set in test_sets:
        for k, name in enumerate([*degradations, "average"]):
            values = [30.0 - 0.02 * j for j in range(len(baselines) + 3)]
            if k == 1:
                values[1] = 20.0  # one low bar: the y-range is wide, so the top margin is thin
            # gain and harmed images per model; learning only for upper, mixall and grids
            gains = [(v - 25.0, 0) for v in values]
            flat = [*gains[0], "learned", *gains[1], "learned"]
            flat += [g for g, _ in gains[2:-1]] + [h for _, h in gains[2:-1]] + [*gains[-1], "learned"]
            rows.append([test_set, name, name, 25.0, *values, values[-1] - values[0], values[-1] - values[1], *flat])
    return pd.DataFrame(rows, columns=tables.columns("table1", baseline=baselines))


@pytest.mark.parametrize(
    ("test_sets", "degradations", "baselines"),
    [
        (["heldout"], ["blur", "jpeg", "noise"], []),
        (["div2k", "urban"], ["blur", "jpeg", "noise", "sr", "rain"], ["realesrnet", "swinir", "restormer"]),
        (["heldout"], [f"degradation_{k:02d}" for k in range(12)], ["realesrnet"]),
    ],
)
def test_table1_legend_covers_no_bar(saved, tmp_path, test_sets, degradations, baselines):
    table = table1_table(test_sets, degradations, baselines)
    plot_table1(table, tmp_path / "table1.png", published=baselines[:1])
    assert_png(tmp_path / "table1.png")
    (fig,) = saved
    renderer = drawn(fig)
    legends = [*fig.legends, *filter(None, (ax.get_legend() for ax in fig.axes))]
    assert legends
    models = ["upper", "mixall", *baselines, "grids"]
    for legend in legends:
        labels = [t.get_text() for t in legend.get_texts()]
        assert [label.rstrip("†") for label in labels] == models
        if baselines:
            assert labels[2] == f"{baselines[0]}†"  # the published one is marked
        extent = legend.get_window_extent(renderer)
        assert inside(extent, fig.bbox)
        for ax in fig.axes:
            assert inside(ax.title.get_window_extent(renderer), fig.bbox)
            assert overlap(extent, ax.title.get_window_extent(renderer)) == 0
            bars = list(ax.patches)
            assert len(bars) == len(models) * (len(degradations) + 1)
            for bar in bars:
                assert overlap(extent, bar.get_window_extent(renderer)) == 0, (legend, bar)


def test_confusion_counts_only_trained_degradations_in_its_accuracy(saved, tmp_path):
    """Unseen degradations have no true group: they are rows of the figure, not misses."""
    accuracy = accuracy_table(4, 3)
    assert accuracy.correct[accuracy.seen].all() and not accuracy.correct[~accuracy.seen].any()
    groups = list(dict.fromkeys(accuracy.true_group[accuracy.seen]))
    plot_confusion(accuracy, groups, tmp_path / "confusion.png")
    assert_png(tmp_path / "confusion.png")
    (fig,) = saved
    renderer = drawn(fig)
    (ax,) = fig.axes
    seen = int(accuracy.seen.sum())
    assert ax.get_title().startswith(f"Model selection: 100% of {seen} images\nof trained degradations")
    assert inside(ax.title.get_window_extent(renderer), fig.bbox)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert sum(label.endswith("(unseen)") for label in labels) == 3


def test_table1_shows_gains_over_the_input_from_zero(saved, tmp_path):
    """The bars start at the input's level (0 dB), not at an arbitrary PSNR floor; the input's own
    PSNR is under each degradation's name."""
    table = table1_table(["heldout"], ["blur", "jpeg"], [])
    plot_table1(table, tmp_path / "table1.png")
    (fig,) = saved
    drawn(fig)
    (ax,) = fig.axes
    low, high = ax.get_ylim()
    assert low <= 0 < high
    heights = sorted(round(bar.get_height(), 6) for bar in ax.patches)
    expected = sorted(round(v - 25.0, 6) for c in ("psnr_upper", "psnr_mixall", "psnr_grids") for v in table[c])
    assert heights == expected
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[0] == "blur\n(input 25.0)"


def contrast(a, b) -> float:
    """WCAG contrast ratio of two colours."""
    from matplotlib.colors import to_rgba

    def luminance(colour):
        c = [x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4 for x in to_rgba(colour)[:3]]
        return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]

    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_confusion_counts_are_readable_on_every_cell(saved, tmp_path):
    accuracy = accuracy_table(4, 2, images=6)
    groups = list(dict.fromkeys(accuracy.true_group[accuracy.seen]))
    plot_confusion(accuracy, groups, tmp_path / "confusion.png")
    (fig,) = saved
    drawn(fig)
    (ax,) = fig.axes
    image = ax.images[0]
    cells = image.get_array()
    texts = [t for t in ax.texts if t.get_text().isdigit()]
    assert len(texts) == cells.size
    colours = set()
    for text in texts:
        j, i = (round(v) for v in text.get_position())
        cell = image.cmap(image.norm(cells[i, j]))
        assert contrast(text.get_color(), cell) >= 4.5, (text.get_text(), text.get_color(), cell)
        colours.add(text.get_color())
    assert colours == {"white", "black"}  # the darkest cells (6 of 6) and the empty ones


def table2_table() -> pd.DataFrame:
    """A ``validation_table2`` table of two experiments under two variants, long group names."""
    sides = {
        "e1": (["defocus_blur", "gaussian_blur", "motion_blur"], ["gaussian_noise", "jpeg", "salt_pepper"]),
        "e2": (["jpeg", "poisson_noise", "sr"], ["inpainting", "ringing", "rl"]),
    }
    rows = []
    for variant in ("method", "sift"):
        for k, (experiment, (a, b)) in enumerate(sides.items()):
            for side, members, drop in (("a", a, 0.4 + k), ("b", b, -1.5 + 3 * k)):
                rows.append(
                    [experiment, variant, side, group_name(members), 3, 2.0 + k + (side == "b"), drop, drop + 0.5]
                    + [1.0, 0, "learned", side == "a", True]
                )
    return pd.DataFrame(rows, columns=tables.columns("validation_table2"))


def test_table2_names_each_experiments_groups(saved, tmp_path):
    table = table2_table()
    plot_table2(table, tmp_path / "table2.png")
    assert_png(tmp_path / "table2.png")
    (fig,) = saved
    renderer = drawn(fig)
    (ax,) = fig.axes
    labels = [t.get_text() for t in ax.get_yticklabels()]
    method = table[table.variant == "method"]
    for row in method.itertuples():
        assert f"{row.experiment} {row.side}: {row.group}" in labels
    texts = [*ax.get_yticklabels(), *ax.texts, ax.title]
    for text in texts:
        assert inside(text.get_window_extent(renderer), fig.bbox), text.get_text()
    for a, b in itertools.combinations(texts, 2):
        assert overlap(a.get_window_extent(renderer), b.get_window_extent(renderer)) == 0, (a, b)


def premise_tables(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``validation_premise_groups`` and ``validation_premise`` of ``n`` groups under four variants,
    most of them crowded into one corner (as the default run's are)."""
    rng = np.random.default_rng(3)
    names = [f"degradation_{k:02d}" for k in range(12)]
    groups = [group_name(rng.choice(names, size=2 + k % 4, replace=False).tolist()) for k in range(n)]
    groups = list(dict.fromkeys(groups))
    rows, summary = [], []
    for variant in ("method", "rb16", "untrained", "sift"):
        for k, group in enumerate(groups):
            crowded = k % 3 != 0
            distance = float(rng.uniform(2.0, 2.4) if crowded else rng.uniform(1.0, 5.0))
            drop = float(rng.uniform(0.0, 0.6) if crowded else rng.uniform(0.0, 10.0))
            rows.append([group, group.count("+") + 1, "search", drop / 2, drop, 1.0, 0, "learned", variant, distance])
        summary.append([variant, "max_drop", len(groups), 0.3, -0.1, 0.6, 0.1, 0.2, -0.1, 0.5, 0.1, 0.5, 7])
    return (
        pd.DataFrame(rows, columns=tables.columns("validation_premise_groups")),
        pd.DataFrame(summary, columns=tables.columns("validation_premise")),
    )


@pytest.mark.parametrize("n", [6, 30])
def test_premise_labels_do_not_overlap_and_the_key_names_every_group(saved, tmp_path, n):
    groups, summary = premise_tables(n)
    plot_premise(groups, summary, tmp_path / "premise.png")
    assert_png(tmp_path / "premise.png")
    (fig,) = saved
    renderer = drawn(fig)
    names = list(dict.fromkeys(groups.group))
    key = "\n".join(t.get_text() for t in fig.findobj(Text) if "degradation_" in t.get_text())
    key = key.replace("\n    +", "+")  # a long name is wrapped at a "+", its lines indented
    for k, name in enumerate(names, 1):
        assert re.search(rf"^\s*{k}  {re.escape(name)}$", key, flags=re.M), name
    panels = [ax for ax in fig.axes if ax.collections]
    assert len(panels) == 4
    for ax in panels:
        texts = list(ax.texts)
        assert sorted(int(t.get_text()) for t in texts) == list(range(1, len(names) + 1))
        extents = [Text.get_window_extent(t, renderer) for t in texts]
        for extent in extents:
            assert inside(extent, ax.get_window_extent(renderer)), extent
        for a, b in itertools.combinations(range(len(extents)), 2):
            assert overlap(extents[a], extents[b]) == 0, (texts[a].get_text(), texts[b].get_text())


def test_stability_writes_each_share_so_zero_differs_from_missing(saved, tmp_path):
    from grids.grouping.stability import plot_stability

    nan = float("nan")
    rows = [
        ["a+b", 2, True, 0.1, True, 1.0, 0.0, 3, 2 / 3, True],
        ["a+c", 2, False, 0.9, False, 0.0, 0.0, 1, nan, False],
    ]
    rows.append(["b+c", 2, False, 1.2, False, nan, 0.0, 1, nan, False])
    per_group = pd.DataFrame(rows, columns=tables.columns("grouping_stability"))
    partitions = pd.DataFrame(
        [["test_images", "a+b / c", 2, 10, 1.0, True], ["training_seeds", "a / b / c", 3, 1, 1 / 3, False]],
        columns=tables.columns("grouping_stability_partitions"),
    )
    partitions.loc[2] = ["training_seeds", "a+b / c", 2, 2, 2 / 3, True]
    plot_stability(per_group, partitions, 0.7, tmp_path / "stability.png")
    (fig,) = saved
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["100%", "0%", "no resample", "2/3 seeds feasible FLIPS"]
    assert "10 of 10 test-image resamples and 2 of 3 training seeds" in fig.axes[0].get_title()


def test_ood_gives_no_unseen_degradation_the_grey_of_the_seen(saved, tmp_path):
    from matplotlib.colors import to_rgba

    from grids.selection.report import plot_ood

    unseen = [f"unseen_{k}" for k in range(9)]  # more than the seven before the palette's grey
    rows = [["t", d, f"i{i}", d == "seen", "knn", float(i), True, 0.0] for d in ["seen", *unseen] for i in range(3)]
    scores = pd.DataFrame(rows, columns=tables.columns("selection_scores"))
    ood = pd.DataFrame(
        [["t", "knn", True, 3, 27, 0.9, 0.2, 0.6, 0.8, 1.0, 1.0, 0.5, 0.1]], columns=tables.columns("selection_ood")
    )
    plot_ood(scores, ood, tmp_path / "ood.png")
    (fig,) = saved
    colours = [tuple(c.get_facecolor()[0][:3]) for c in fig.axes[0].collections]
    assert colours[0] == to_rgba("grey")[:3] and to_rgba("grey")[:3] not in colours[1:]
    assert len(set(colours)) == len(colours)

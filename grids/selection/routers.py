"""Stage ``selection_routers``: does a trained router choose the group better than GRIDS'
training-free choice, on the same test images?

GRIDS chooses a final group without training anything: the group of the nearest reference image
in signature space (:mod:`grids.selection.selector`). Two small routers are trained offline (CPU, seeded)
on what GRIDS already has, and compared with it and with the oracle on every degraded test image
of the selection report (seen and unseen degradations):

* ``logistic``: multinomial logistic regression (L2, full-batch L-BFGS, float64) on the reference
  signatures (``selection.layers``, standardised), label = the final group of the reference's
  degradation. At test time the image's signature, the one GRIDS' selector reads (computed once
  for every reader by rule ``test_signatures``, :func:`grids.selection.read_signatures`), gives
  the group and its probability.
* ``cnn``: a tiny CNN on pixels (three 3x3 convolutions of 16/32/32 channels, the last two of
  stride 2, ReLU, global average pool, linear) trained with AdamW on batches of 32 random flipped
  48 px crops of the degraded similarity images of the final groups' members and the clean
  similarity images (the identity's), label = group, the groups drawn equally often. A fifth of
  the clean image ids, with all their degraded copies, is held out: every 100 steps the held-out
  images' loss is measured, and training stops at its plateau (no better loss in 5 checks, or
  ``selection.router_steps`` steps at most), keeping the best checkpoint. The curve is table
  ``selection_router_curve`` and a panel of ``routers.png``. At test time its softmax averaged
  over a fixed seeded set of 16 flipped crops.
* ``grids``: the choice and default statistic's score from ``accuracy.parquet`` (the report's).
* ``oracle``: the final group whose model restores the image best (it runs every model).

Per router and image: the chosen model's PSNR, its gain over the input and ``fails`` (``gain <
selection.min_helpful_gain``) come from the evaluation tables, read as :mod:`grids.selection.failure` reads them (no
restoration is run). ``confidence`` is the router's largest probability, and for ``grids`` its default
statistic's score (larger: worse). ``seconds`` is the time to route the image on this machine:
for ``logistic`` the signature plus the classifier, for ``grids`` that same signature time plus
its nearest-reference choice and score, for ``cnn`` the crops plus the forward passes; NaN for the
oracle. The signature time is its job's, with every layer of the table (``features.layer``
included, which the default statistic does not read): an upper bound of what `grids select` spends.

    python -m grids.selection.routers --accuracy results/selection/accuracy.parquet \
        --groups results/final/groups.parquet --ggd results/similarity/ggd.parquet \
        --references results/selection/references.parquet \
        --reference-gains results/selection/reference_gains.parquet \
        --degraded results/degraded/jpeg/manifest.parquet ... \
        --eval results/eval/input.parquet results/eval/G.parquet results/eval/others/G.parquet ... \
        --test-set heldout CLEAN DEGRADED... --signatures heldout SIGNATURES... \
        --descriptor W --features JSON --selection JSON \
        --seed S --min-gain 0.5 --steps 300 --threads 2 --images results/selection/router_images.parquet \
        --out results/selection/routers.parquet --figure results/selection/routers.png \
        --curve results/selection/router_curve.parquet

Columns: tables ``selection_router_images``, ``selection_routers`` and ``selection_router_curve`` of
:mod:`grids.tables`.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .. import io, tables
from ..config import DEFAULT_SELECTION
from ..grouping.names import CLEAN
from ..seeds import derive_seed, rng_for
from ..stage import add_test_set_argument, test_set_manifests
from .failure import add_outcome_arguments, failed, model_psnrs
from .report import auroc
from .signatures import add_signatures_argument, read_signatures, self_augmented_patches

if TYPE_CHECKING:
    from ..features import Signature
    from .selector import Selector

ROUTERS = ("grids", "logistic", "cnn", "oracle")
KEYS = ["test_set", "degradation", "image"]  # a test image, as in the selection report's tables
L2 = 1e-2  # logistic: weight decay on the mean cross-entropy (standardised signatures)
# the CNN router: at most selection.router_steps steps; it stops at its plateau, no better
# validation loss in `patience` checks of `check_every` steps, and keeps its best checkpoint
CNN = {
    "steps": DEFAULT_SELECTION["router_steps"],
    "batch": 32,
    "crop": 48,
    "lr": 2e-3,
    "weight_decay": 1e-4,
    "test_crops": 16,
    "check_every": 100,
    "patience": 5,
    "validation": 0.2,  # the share of clean image ids (all their degraded copies) held out
}


@dataclass
class LogisticRouter:
    """Multinomial logistic regression on standardised signature vectors."""

    groups: list[str]
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray  # [k, d]
    bias: np.ndarray  # [k]

    @classmethod
    def fit(cls, z: np.ndarray, labels: np.ndarray, seed: int, l2: float = L2) -> LogisticRouter:
        """Fit on rows ``z [n, d]`` labelled ``labels [n]`` (group names). The loss is convex, so
        the seed (the initial weights) moves the optimum only within L-BFGS's tolerance."""
        import torch

        groups = sorted(set(labels))
        mean, scale = z.mean(axis=0), z.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        x = torch.from_numpy((z - mean) / scale)
        y = torch.tensor([groups.index(g) for g in labels])
        generator = torch.Generator().manual_seed(derive_seed(seed, "router-logistic"))
        weight = (
            0.01 * torch.randn(len(groups), z.shape[1], generator=generator, dtype=torch.float64)
        ).requires_grad_()
        bias = torch.zeros(len(groups), dtype=torch.float64, requires_grad=True)
        optimiser = torch.optim.LBFGS(
            [weight, bias], max_iter=500, tolerance_grad=1e-10, tolerance_change=1e-14, line_search_fn="strong_wolfe"
        )

        def loss():
            optimiser.zero_grad()
            value = torch.nn.functional.cross_entropy(x @ weight.T + bias, y) + l2 * (weight**2).sum()
            value.backward()
            return value

        optimiser.step(loss)
        return cls(groups, mean, scale, weight.detach().numpy(), bias.detach().numpy())

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        """``[n, k]`` probabilities of the groups (in ``groups`` order)."""
        logits = ((np.atleast_2d(z) - self.mean) / self.scale) @ self.weight.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def tiny_cnn(n_classes: int):
    """Three 3x3 convolutions (16, 32, 32 channels; the last two of stride 2), ReLU, global average
    pool, linear: about 15 k weights."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, n_classes),
    )


def pad_to(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` padded by mirror reflection to at least ``size`` px on each side."""
    ph, pw = max(size - image.shape[0], 0), max(size - image.shape[1], 0)
    if not ph and not pw:
        return image
    return np.pad(image, ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)), mode="symmetric")


def random_crops(images: list[np.ndarray], picks: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``uint8 [len(picks), size, size, 3]``: a random crop of ``images[i]`` per ``i`` of ``picks``,
    each flipped left-right and/or up-down at random (images already at least ``size`` px)."""
    out = np.empty((len(picks), size, size, 3), np.uint8)
    for k, i in enumerate(picks):
        h, w = images[i].shape[:2]
        top, left, flip = rng.integers(0, h - size + 1), rng.integers(0, w - size + 1), rng.integers(0, 4)
        patch = images[i][top : top + size, left : left + size]
        out[k] = patch[:: -1 if flip & 2 else 1, :: -1 if flip & 1 else 1]
    return out


def as_batch(patches: np.ndarray):
    """``uint8 [n, h, w, 3]`` -> float32 ``[n, 3, h, w]`` in [-0.5, 0.5]."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(patches.transpose(0, 3, 1, 2))).float() / 255.0 - 0.5


@dataclass
class CNNRouter:
    """The tiny CNN, its groups (output order) and the test-time crop settings."""

    groups: list[str]
    model: Any
    crop: int
    test_crops: int
    seed: int

    @classmethod
    def fit(
        cls, images: list[np.ndarray], labels: list[str], ids: list[str], seed: int, **settings
    ) -> tuple[CNNRouter, pd.DataFrame]:
        """Train on random crops of ``images`` (labels: group names; ``ids``: each image's clean
        image, whose copies are held out together), each step's batch drawing the groups equally
        often (then an image of that group uniformly), until the validation loss stops improving
        (``settings``: any of :data:`CNN`). Returns the best checkpoint's router and the training
        curve (table ``selection_router_curve``)."""
        import copy

        import torch

        s = {**CNN, **settings}
        groups = sorted(set(labels))
        images = [pad_to(image, s["crop"]) for image in images]
        y_all = np.array([groups.index(label) for label in labels])
        held = held_out_ids(ids, s["validation"], seed)
        train = np.array([i not in held for i in ids])
        members = [np.flatnonzero(train & (y_all == g)) for g in range(len(groups))]
        members = [m if len(m) else np.flatnonzero(y_all == g) for g, m in enumerate(members)]  # a group held out whole
        torch.manual_seed(derive_seed(seed, "router-cnn", "init"))
        router = cls(groups, tiny_cnn(len(groups)), s["crop"], s["test_crops"], seed)
        optimiser = torch.optim.AdamW(router.model.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
        rng = rng_for(seed, "router-cnn", "crops")
        rows, losses, best = [], [], (np.inf, None)
        for step in range(1, s["steps"] + 1):
            router.model.train()
            y = rng.integers(0, len(groups), s["batch"])
            picks = np.array([members[g][rng.integers(0, len(members[g]))] for g in y])
            x = as_batch(random_crops(images, picks, s["crop"], rng))
            loss = torch.nn.functional.cross_entropy(router.model(x), torch.from_numpy(y))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(loss.item())
            if step % s["check_every"] and step != s["steps"]:
                continue
            val_loss, val_accuracy = router.validate([images[i] for i in np.flatnonzero(~train)], y_all[~train])
            improved = not val_loss >= best[0]  # the first check, and a NaN loss (nothing held out), count
            if improved:
                best = (val_loss, copy.deepcopy(router.model.state_dict()))
            rows.append([step, float(np.mean(losses)), val_loss, val_accuracy, improved])
            losses = []
            since_best = len(rows) - 1 - max(k for k, row in enumerate(rows) if row[4])
            if since_best >= s["patience"]:
                break
        router.model.load_state_dict(best[1])
        router.model.eval()
        return router, pd.DataFrame(rows, columns=["step", "train_loss", "val_loss", "val_accuracy", "best"])

    def validate(self, images: list[np.ndarray], y: np.ndarray) -> tuple[float, float]:
        """Mean cross-entropy and accuracy of :meth:`predict_proba` on held-out ``images`` of
        classes ``y`` (NaN, NaN without any)."""
        if not len(images):
            return float("nan"), float("nan")
        self.model.eval()
        p = np.array([self.predict_proba(image) for image in images])
        picked = p[np.arange(len(y)), y]
        return float(-np.log(np.maximum(picked, 1e-12)).mean()), float((p.argmax(axis=1) == y).mean())

    def predict_proba(self, image: np.ndarray) -> np.ndarray:
        """``[k]``: the softmax averaged over ``test_crops`` fixed seeded flipped crops of ``image``."""
        import torch

        patches = self_augmented_patches(pad_to(image, self.crop), self.test_crops, self.crop, self.seed)
        with torch.no_grad():
            return torch.softmax(self.model(as_batch(patches)), dim=1).mean(dim=0).numpy().astype(np.float64)


def held_out_ids(ids: list[str], share: float, seed: int) -> set[str]:
    """A seeded ``share`` of the distinct ``ids`` (at least one, and never all when there are two
    or more): the clean images whose copies validate the CNN router."""
    distinct = sorted(set(ids))
    if len(distinct) < 2:
        return set()
    n = min(len(distinct) - 1, max(1, round(share * len(distinct))))
    order = rng_for(seed, "router-cnn", "validation").permutation(len(distinct))
    return {distinct[k] for k in order[:n]}


def fit_logistic(references: pd.DataFrame, groups: pd.DataFrame, layers: list[str], seed: int) -> LogisticRouter:
    """The logistic router on the reference signatures of the final groups' members."""
    from .statistics import signature_table

    group_of = dict(zip(groups.degradation, groups.group))
    keys, z = signature_table(references[references.degradation.isin(group_of)], layers)
    if not len(keys):
        raise ValueError(f"references.parquet has no signature of {sorted(group_of)}: rebuild `final_models`")
    return LogisticRouter.fit(z, keys.degradation.map(group_of).to_numpy(), seed)


def training_images(manifests: list[str], groups: pd.DataFrame) -> tuple[list[np.ndarray], list[str], list[str]]:
    """The degraded similarity images of the final groups' members and their groups (the clean
    set's manifest, which names no degradation, holds the identity's: ``clean``), and the clean
    image each was made from."""
    group_of = dict(zip(groups.degradation, groups.group))
    images, labels, ids = [], [], []
    for path in manifests:
        manifest = io.read_manifest(path)
        if "degradation" not in manifest:
            manifest = manifest.assign(degradation=CLEAN)
        for row in manifest[manifest.degradation.isin(group_of)].itertuples():
            images.append(io.load_png(row.path))
            labels.append(group_of[row.degradation])
            ids.append(str(row.image_id))
    missing = sorted(set(group_of.values()) - set(labels))
    if missing:
        raise ValueError(f"--degraded: no degraded images of the groups {missing}: pass every member's manifest")
    return images, labels, ids


def image_paths(test_sets: dict[str, tuple[str, dict[str, str]]]) -> dict[tuple[str, str, str], str]:
    """``(test_set, degradation, image) -> path`` of every degraded test image."""
    paths = {}
    for name, (_, degraded) in test_sets.items():
        for degradation, manifest in degraded.items():
            for row in io.read_manifest(manifest).itertuples():
                paths[(name, degradation, row.image_id)] = row.path
    return paths


def route(
    selector: Selector,
    logistic: LogisticRouter,
    cnn: CNNRouter,
    accuracy: pd.DataFrame,
    paths: dict[tuple[str, str, str], str],
    signatures: dict[tuple[str, str, str], tuple[Signature, float]],
    layers: list[str],
) -> pd.DataFrame:
    """``KEYS, seen, router, chosen_group, confidence, seconds`` for ``grids``, ``logistic`` and
    ``cnn`` on every image of ``accuracy`` (GRIDS' choice and score are the report's; its
    seconds: the signature plus its choice and score, timed here)."""
    from tqdm import tqdm

    rows = []
    for row in tqdm(accuracy.itertuples(), total=len(accuracy), desc="routing", unit="img"):
        key = (row.test_set, row.degradation, row.image)
        if key not in paths:
            raise ValueError(f"no degraded test manifest lists {'/'.join(key)}: pass every --test-set manifest")
        if key not in signatures:
            raise ValueError(f"no signature of test image {'/'.join(key)} among --signatures")
        image = io.load_png(paths[key])
        signature, signed = signatures[key]
        start = time.perf_counter()
        table, _ = selector.choice.choose(signature)
        selector.judge.scores(signature, str(table.group.iloc[0]))
        chosen = time.perf_counter()
        p = logistic.predict_proba(signature.vector(layers))[0]
        classified = time.perf_counter()
        q = cnn.predict_proba(image)
        done = time.perf_counter()
        rows.append([*key, row.seen, "grids", row.chosen_group, row.score, signed + chosen - start])
        rows.append([*key, row.seen, "logistic", logistic.groups[p.argmax()], p.max(), signed + classified - chosen])
        rows.append([*key, row.seen, "cnn", cnn.groups[q.argmax()], q.max(), done - classified])
    return pd.DataFrame(rows, columns=[*KEYS, "seen", "router", "chosen_group", "confidence", "seconds"])


def router_images(
    choices: pd.DataFrame, evaluation: pd.DataFrame, groups: pd.DataFrame, min_gain: float
) -> pd.DataFrame:
    """Table ``selection_router_images``: every router's choice (``choices``, from :func:`route`)
    with the PSNR, gain and ``fails`` the evaluation tables give it, and the oracle's rows."""
    choices = choices.reset_index(drop=True)
    found = model_psnrs(choices, evaluation, sorted(set(groups.group)))
    table = choices.assign(psnr=found.psnr_chosen, gain=found.psnr_chosen - found.psnr_input)
    first = ~choices.duplicated(KEYS).to_numpy()  # the oracle's rows: one per image
    oracle = choices[first].assign(
        router="oracle",
        chosen_group=found.oracle_group[first].to_numpy(),
        confidence=np.nan,
        psnr=found.psnr_oracle[first].to_numpy(),
        gain=(found.psnr_oracle - found.psnr_input)[first].to_numpy(),
        seconds=np.nan,
    )
    table = pd.concat([table, oracle], ignore_index=True)
    best = oracle.set_index(KEYS).gain
    table["fails"] = failed(
        table.chosen_group, table.gain, best.reindex(pd.MultiIndex.from_frame(table[KEYS])).to_numpy(), min_gain
    )
    truth = dict(zip(groups.degradation, groups.group))
    table["true_group"] = table.degradation.map(truth).fillna("").astype(str)
    # test sets in the report's order, then the routers in ROUTERS' order, the images in the report's
    order = {
        "test_set": {name: i for i, name in enumerate(dict.fromkeys(choices.test_set))},
        "router": {name: i for i, name in enumerate(ROUTERS)},
    }
    table = table.sort_values(["test_set", "router"], key=lambda column: column.map(order[column.name]), kind="stable")
    return table[tables.columns("selection_router_images")].reset_index(drop=True)


def compare_routers(images: pd.DataFrame) -> pd.DataFrame:
    """Table ``selection_routers``: per test set and router, its choices against the true group
    and the oracle, the PSNR it loses to the oracle, and how well its confidence flags its own
    failures (AUROC of ``1 - confidence``; GRIDS: of its score)."""
    nan, rows = float("nan"), []
    oracle = images[images.router == "oracle"].set_index(KEYS)
    for (test_set, router), part in images.groupby(["test_set", "router"], sort=False):
        best = oracle.reindex(pd.MultiIndex.from_frame(part[KEYS]))
        lost = best.psnr.to_numpy() - part.psnr.to_numpy()
        fails, clean = part.fails.to_numpy(), (part.degradation == CLEAN).to_numpy()
        seen = part.seen.to_numpy() & ~clean  # the trained degradations
        right = (part.chosen_group == part.true_group).to_numpy()
        risk = part.confidence.to_numpy() if router == "grids" else 1 - part.confidence.to_numpy()
        rows.append(
            [
                test_set,
                router,
                len(part),
                float(right[seen].mean()) if seen.any() else nan,
                float((part.chosen_group.to_numpy() == best.chosen_group.to_numpy()).mean()),
                float(part.psnr.mean()),
                float(lost.mean()),
                float(lost[seen].mean()) if seen.any() else nan,
                float(lost[~seen & ~clean].mean()) if (~seen & ~clean).any() else nan,
                float(lost[clean].mean()) if clean.any() else nan,
                float(part.gain.mean()),
                int(fails.sum()),
                nan if router == "oracle" else auroc(risk[fails], risk[~fails]),
                float(part.seconds.mean()) if router != "oracle" else nan,
            ]
        )
    return pd.DataFrame(rows, columns=tables.columns("selection_routers"))


# What each router is, under its name on the figure's axis
ROUTER_LABELS = {
    "grids": "grids\n(training-free:\nnearest reference)",
    "logistic": "logistic\n(regression on\nsignatures)",
    "cnn": "cnn\n(tiny CNN\non pixels)",
}


def plot_routers(summary: pd.DataFrame, curve: pd.DataFrame, path: str | Path) -> None:
    """PSNR lost to the oracle per router (trained degradations, unseen ones and clean images side
    by side), and the CNN router's training curve."""
    plt = io.pyplot()
    sets = list(dict.fromkeys(summary.test_set))
    fig, axes = plt.subplots(1, len(sets) + 1, figsize=(max(5.6, 4.2 * len(sets)) + 4.2, 3.9), squeeze=False)
    plot_curve(axes[0][-1], curve)
    axes = axes[:, :-1]
    for ax, name in zip(axes[0], sets):
        part = summary[(summary.test_set == name) & (summary.router != "oracle")]
        x = np.arange(len(part))
        for offset, (column, label, colour) in zip(
            (-0.27, 0.0, 0.27),
            (
                ("psnr_lost_seen", "trained degradations", "tab:blue"),
                ("psnr_lost_unseen", "unseen", "tab:orange"),
                ("psnr_lost_clean", "clean (nothing to restore)", "tab:green"),
            ),
        ):
            ax.bar(x + offset, part[column].fillna(0), 0.27, label=label, color=colour)
        ax.set_xticks(x, [ROUTER_LABELS.get(r, r) for r in part.router], fontsize=8)
        ax.set_title(f"{name}: PSNR lost to the oracle (lower is better)", fontsize=10)
        ax.set_ylabel("dB lost per image (mean)")
    axes[0][-1].legend(fontsize=8, title="test images", title_fontsize=8)
    fig.text(0.5, 0.01, "the oracle, the best final model for each image, loses 0", ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    io.save_figure(fig, path)


def plot_curve(ax, curve: pd.DataFrame) -> None:
    """The CNN router's training and validation loss per check, its best checkpoint marked."""
    ax.plot(curve.step, curve.train_loss, marker=".", label="training (mean since the last check)")
    ax.plot(curve.step, curve.val_loss, marker=".", label="validation (held-out clean images)")
    best = curve[curve.val_loss == curve.val_loss.min()]
    ax.scatter(best.step, best.val_loss, s=60, facecolors="none", edgecolors="black", label="kept")
    ax.set_xlabel("training step", fontsize=8)
    ax.set_ylabel("cross-entropy", fontsize=8)
    ax.set_title("cnn router: trained to its plateau", fontsize=10)
    ax.legend(fontsize=7)


def main(argv: list[str] | None = None) -> int:
    from .selector import add_selector_arguments, candidates, selector_from_arguments, statistic_layers

    parser = argparse.ArgumentParser(prog="python -m grids.selection.routers", description=__doc__.split("\n")[0])
    add_selector_arguments(parser)
    parser.add_argument("--accuracy", required=True, help="the selection report's accuracy.parquet")
    parser.add_argument("--degraded", nargs="+", required=True, help="degraded similarity manifests (CNN training)")
    add_test_set_argument(parser)
    add_signatures_argument(parser)
    add_outcome_arguments(parser)
    help_text = "the CNN's most training steps; it stops at its plateau (selection.router_steps)"
    parser.add_argument("--steps", type=int, default=CNN["steps"], help=help_text)
    parser.add_argument("--device", default="cpu", help="where the selector runs (routers train on the CPU)")
    parser.add_argument("--images", required=True, help="per-image choices (.parquet) to write")
    parser.add_argument("--out", required=True, help="per-router comparison (.parquet) to write")
    parser.add_argument("--figure", required=True, help="PSNR lost per router (.png) to write")
    parser.add_argument("--curve", required=True, help="the CNN router's training curve (.parquet) to write")
    args = parser.parse_args(argv)
    if args.steps < 1:
        raise ValueError(f"--steps {args.steps}: must be at least 1")
    import torch

    selector, features, selection, groups, references = selector_from_arguments(args)
    groups = candidates(groups)  # the routers may choose the identity too, as the selector may
    layers = statistic_layers(features, selection)
    logistic = fit_logistic(references, groups, layers, args.seed)
    start = time.perf_counter()
    cnn, curve = CNNRouter.fit(*training_images(args.degraded, groups), args.seed, steps=args.steps)
    kept = (
        curve.step[curve.val_loss == curve.val_loss.min()].iloc[0]
        if curve.val_loss.notna().any()
        else curve.step.iloc[-1]
    )
    print(
        f"cnn: {curve.step.iloc[-1]} of at most {args.steps} steps in {time.perf_counter() - start:.1f} s on "
        f"{torch.get_num_threads()} threads; kept step {kept}"
    )
    accuracy = pd.read_parquet(args.accuracy)
    paths = image_paths(test_set_manifests(args.test_set))
    choices = route(selector, logistic, cnn, accuracy, paths, read_signatures(args.signatures), layers)
    images = router_images(choices, io.read_parquets(args.eval), groups, args.min_gain)
    summary = compare_routers(images)
    tables.write(images, "selection_router_images", args.images)
    tables.write(summary, "selection_routers", args.out)
    tables.write(curve, "selection_router_curve", args.curve)
    plot_routers(summary, curve, args.figure)
    print(summary.round(3).to_string(index=False))
    return 0


if __name__ == "__main__":
    from ..stage import run_stage

    sys.exit(run_stage(main))

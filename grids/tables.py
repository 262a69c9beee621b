"""The Parquet tables the workflow writes: one registry of their columns, types and meanings.

Why this module exists: a table's columns used to be listed in the module that writes it, again in
its readers' docstrings and once more, by hand, in the README, with no types anywhere; the copies
could drift apart unnoticed. Each table is declared here once, as the contract its readers rely
on, and everything else follows from it:

* writers take their column order from :func:`columns` and call :func:`write`, which checks the
  frame first (:func:`check`), so a writer that drops, adds, reorders or retypes a column fails at
  once with an error naming the table rather than a reader failing later;
* the workflow test checks every ``*.parquet`` a real run leaves under ``results/`` against the
  registry (:func:`table_for` finds a file's table from its path);
* the table reference ``docs/tables.md`` is :func:`markdown`, regenerated with
  ``python -m grids.tables --update docs/tables.md`` (a test keeps the two equal).

Types are what pandas holds when the writers build the frames (and when the file is read back):
``str`` (text: pandas' ``str`` dtype, or on pandas 2 an ``object`` column of Python strings),
``int64``, ``float64`` and ``bool``. A table with no rows may hold ``object`` columns instead:
pandas has no values to infer a type from (a training log saved before its first logged step,
the grouping tables of a single degradation).

A column name holding ``{placeholder}`` (Table 1's ``psnr_{baseline}``) stands for zero or more
columns at that position, one per value (one per configured baseline).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import io

DTYPES = ("str", "int64", "float64", "bool")
START, END = "<!-- tables:start -->", "<!-- tables:end -->"


@dataclass(frozen=True)
class Column:
    name: str
    dtype: str
    meaning: str


@dataclass(frozen=True)
class Table:
    paths: tuple[str, ...]  # where the workflow writes it, relative to the working directory
    meaning: str
    columns: tuple[Column, ...]


class TableError(ValueError):
    """A frame that breaks its table's contract; the message names the table and every problem."""


def _table(paths: str | tuple[str, ...], meaning: str, *columns: tuple[str, str, str]) -> Table:
    return Table((paths,) if isinstance(paths, str) else paths, meaning, tuple(Column(*c) for c in columns))


_GGD_FIT = (  # the per-set GGD fit, in the similarity stage and the validation variants alike
    ("degradation", "str", "the image set (`clean`, a degradation)"),
    ("alpha", "float64", "GGD shape"),
    ("sigma", "float64", "GGD scale"),
    ("n_values", "int64", "number of PCA scores fitted"),
    ("layer", "str", "descriptor layer the features come from (`sift` for SIFT)"),
    ("n_patches", "int64", "`features.n_patches`"),
    ("patch_size", "int64", "`features.patch_size` (px)"),
    ("pca_components", "int64", "`features.pca_components`"),
    ("feature_kind", "str", "`descriptor` or `sift`"),
    ("descriptor_sha256", "str", "sha256 of the descriptor weights (empty for SIFT)"),
    ("device", "str", "where the features were computed"),
    ("seconds", "float64", "time the fit took"),
)
_MATRIX = (
    ("deg_a", "str", "first set"),
    ("deg_b", "str", "second set"),
    ("kl", "float64", "`KL(p_a ‖ p_b)` of the two GGDs"),
    ("distance", "float64", "`log10(kl + 1e-5) + 5`"),
    ("distance_sym", "float64", "mean of both directions' `distance`; smaller = more similar"),
)
_EVAL = (
    ("model", "str", "the model file evaluated"),
    ("trained_on", "str", "its group (canonical name, members joined by `+`)"),
    ("test_set", "str", "test set name"),
    ("degradation", "str", "degradation of the test image"),
    ("image", "str", "test image id"),
    ("psnr", "float64", "dB, RGB uint8, no border cropped"),
    ("ssim", "float64", "Wang et al.'s settings, per channel then averaged"),
    ("psnr_input", "float64", "the degraded input's own PSNR against the clean image (dB): the identity"),
    ("gain", "float64", "`psnr - psnr_input`: what the model added over doing nothing (dB)"),
)
_DROPS = (
    ("group", "str", "the group"),
    ("degradation", "str", "one of its members"),
    ("psnr_single", "float64", "mean PSNR of the member's single-task model (dB)"),
    ("psnr_group", "float64", "mean PSNR of the group's model on that member (dB)"),
    ("drop", "float64", "`psnr_single - psnr_group` (dB)"),
    ("psnr_input", "float64", "mean PSNR of the member's degraded input itself (dB): the identity"),
    ("gain_single", "float64", "`psnr_single - psnr_input`: what the single-task model restores (dB)"),
    ("gain_group", "float64", "`psnr_group - psnr_input`: what the group's model restores (dB)"),
    ("harmed_single", "int64", "test images the single-task model makes worse than their input by more than 0.5 dB"),
    ("harmed_group", "int64", "test images the group's model makes worse than their input by more than 0.5 dB"),
    (
        "learning_group",
        "str",
        "did the group's model learn this member? `learned` (`gain_group >= grouping.min_learned_gain`), "
        "`did_not_learn` or `below_input` (`gain_group < 0`: a failed mixed training)",
    ),
)
_GROUP_MODEL = (  # a group's model judged against its input over its members (grids.learning)
    ("weakest_group_gain", "float64", "the group's model's smallest gain over the input, over its members (dB)"),
    (
        "harmed_images",
        "int64",
        "test images (over its members) the group's model makes worse than their input by more than 0.5 dB",
    ),
    (
        "learning",
        "str",
        "did the group's model learn? `below_input` if it ends below its input on any member (a failed mixed "
        "training: its drops measure the recipe, not a conflict), else `learned` (mean member gain "
        "`>= grouping.min_learned_gain`) or `did_not_learn`",
    ),
)


def _table1_gains(model: str, meaning: str) -> tuple[tuple[str, str, str], ...]:
    """Table 1's gain columns of one model: its mean gain, harmed images and learning outcome."""
    return (
        (f"gain_{model}", "float64", f"`psnr_{model} - psnr_input`: what {meaning} restores (dB)"),
        (f"harmed_{model}", "int64", f"test images {meaning} makes worse than their input by more than 0.5 dB"),
        (
            f"learning_{model}",
            "str",
            f"did {meaning} learn? `learned` (gain `>= grouping.min_learned_gain`), `did_not_learn` or `below_input` "
            "(gain < 0); on `average` rows over the degradations: `below_input` if any is, else by the mean gain",
        ),
    )


# Tables whose image paths are stored relative to the table's folder (grids.io.read_manifest).
MANIFESTS = ("clean_manifest", "degraded_manifest")

TABLES: dict[str, Table] = {
    "clean_manifest": _table(
        (
            "results/clean/manifest.parquet",
            "results/train/clean/manifest.parquet",
            "results/test/{test_set}/clean/manifest.parquet",
        ),
        "one row per clean image (the similarity set, the training set, each test set)",
        ("image_id", "str", "file stem (unique)"),
        ("source", "str", "`embedded`, `dead_leaves` or `folder`"),
        ("source_path", "str", "original file (or a description of the generated image)"),
        ("conversions", "str", "reading rules applied, `;`-separated (`gray->rgb`, `16bit->8bit`, `drop_alpha`)"),
        ("height", "int64", "px"),
        ("width", "int64", "px"),
        (
            "path",
            "str",
            "the clean 8-bit RGB image: the user's file when it needed no conversion, else a PNG in `images/`;"
            " relative to this manifest's folder (absolute if given so): open it with `grids.io.read_manifest`",
        ),
        ("sha256", "str", "of that file"),
    ),
    "clean_checks": _table(
        (
            "results/clean/checks.parquet",
            "results/train/clean/checks.parquet",
            "results/test/{test_set}/clean/checks.parquet",
        ),
        "the user files that passed the checks and needed no conversion: a rerun hashes such a file, not decoding it",
        ("sha256", "str", "of the file's bytes"),
        ("min_side", "int64", "the `min_side` they were checked against"),
        ("height", "int64", "px"),
        ("width", "int64", "px"),
    ),
    "degraded_manifest": _table(
        (
            "results/degraded/{degradation}/manifest.parquet",
            "results/test/{test_set}/degraded/{degradation}/manifest.parquet",
        ),
        "one row per degraded image",
        ("image_id", "str", "as in the clean manifest"),
        ("source_path", "str", "original file"),
        ("clean_path", "str", "the clean image degraded (relative to this manifest's folder, like `path`)"),
        ("degradation", "str", "degradation name"),
        ("params", "str", "JSON of the parameters drawn for this image"),
        ("seed", "int64", "seed of this image's generator (from the config seed, dataset, degradation, image id)"),
        ("path", "str", "the degraded PNG, `images/{image_id}.png`: relative to this manifest's folder"),
        ("sha256", "str", "of that PNG; same config -> same bytes"),
    ),
    "store_index": _table(
        "results/train/store/index.parquet",
        "one row per training image of the crop store, in manifest order",
        ("image_id", "str", "as in the training manifest"),
        ("height", "int64", "px"),
        ("width", "int64", "px"),
        ("sha256", "str", "of the clean file"),
        ("path", "str", "its `arrays/{sha256}.npy`, uint8 `(height, width, 3)`"),
    ),
    "similarity_ggd": _table(
        (
            "results/similarity/ggd.parquet",
            "results/similarity/ggd/{image_set}.parquet",
            "results/validation/ggd/{variant}/{image_set}.parquet",
        ),
        "one row per image set (`clean` first); the per-set files hold one row each",
        *_GGD_FIT,
    ),
    "similarity_matrix": _table(
        ("results/similarity/matrix.parquet", "results/validation/matrices/{variant}.parquet"),
        "every ordered pair of sets; `grids.similarity.wide_matrix(table)` gives the square matrix",
        *_MATRIX,
    ),
    "train_log": _table(
        (
            "results/models/{group}/train_log.parquet",
            "results/baselines/{baseline}/train_log.parquet",
            "results/replicates/{degradation}/seed{k}/train_log.parquet",
        ),
        "one row every 10 steps (and the last), also written at each checkpoint",
        ("step", "int64", "steps done"),
        ("loss", "float64", "training loss of that step's batch (training.loss: L1 or MSE)"),
        ("lr", "float64", "learning rate of that step"),
        ("it_per_s", "float64", "steps per second since the previous row"),
    ),
    "descriptor_log": _table(
        "results/descriptor/msrresnet_x4.log.parquet",
        "the descriptor's training log (only with `descriptor.weights: train`)",
        ("step", "int64", "steps done"),
        ("loss", "float64", "training loss of that step's batch (training.loss: L1 or MSE)"),
        ("lr", "float64", "learning rate of that step"),
    ),
    "eval": _table(
        (
            "results/eval/{group}.parquet",
            "results/eval/others/{group}.parquet",
            "results/eval/references/{group}.parquet",
            "results/baselines/{baseline}/eval.parquet",
            "results/replicates/{degradation}/seed{k}/eval.parquet",
        ),
        "one row per model and test image",
        *_EVAL,
    ),
    "upper_bounds_evaluation": _table(
        "results/upper_bounds/evaluation.parquet",
        "every evaluation row of the single-task and mix-all models, concatenated",
        *_EVAL,
    ),
    "grouping_candidates": _table(
        "results/grouping/candidates.parquet",
        "every subset of size >= 2, ranked by mean distance within its size (Λ_L)",
        ("size", "int64", "number of members"),
        ("rank", "int64", "0 = the most similar group of its size"),
        ("group", "str", "canonical group name"),
        ("mean_distance", "float64", "mean pairwise `distance_sym`"),
        ("var_distance", "float64", "variance of the pairwise distances"),
    ),
    "grouping_round": _table(
        "results/grouping/rounds/{round}.parquet",
        "one planner step: the groups to train next, or the answer",
        ("round", "int64", "round number"),
        ("action", "str", "`verify` (train and evaluate this group next) or `final` (a group of the answer)"),
        ("group", "str", "canonical group name"),
        ("partition", "int64", "numbers the minimal partitions (0 = the one used); -1 for `verify`"),
    ),
    "grouping_verified": _table(
        "results/grouping/verified.parquet",
        "every group the search trained and verified, with the noise of its drop",
        ("group", "str", "canonical group name"),
        ("size", "int64", "number of members"),
        ("mean_distance", "float64", "mean pairwise `distance_sym`"),
        ("dP", "float64", "its drop: the largest member drop against the single-task models (dB)"),
        ("dP_sd_images", "float64", "bootstrap standard deviation of `dP` over the test images (dB)"),
        (
            "dP_sd_seeds",
            "float64",
            "seed standard deviation of its drop: the largest of its members' `drop_sd` in `noise_floor.parquet` "
            "(a member not replicated: the `pooled` row; dB; 0 without replicates)",
        ),
        ("dP_low", "float64", "95 % interval of `dP`, low end: `dP - 1.96 sqrt(sd_images^2 + sd_seeds^2)`"),
        ("dP_high", "float64", "its high end"),
        (
            "feasible",
            "bool",
            "`verdict == feasible`: what the search uses (a failed training is infeasible, whatever its drop)",
        ),
        (
            "verdict",
            "str",
            "`feasible` / `infeasible`: `dP <= delta` (`grouping.decision: point`) or `dP_high <= delta` "
            "(`conservative`), or not; `failed_training`: the group's model ends below its degraded input on a "
            "member (`below_input`), whatever `dP`: its drop measures the recipe, not a conflict",
        ),
        ("weakest_gain", "float64", "the smallest gain of a member's single-task model over its input (dB)"),
        (
            "uninformative",
            "bool",
            "`weakest_gain < grouping.min_learned_gain`: a member's model did not learn, so the verdict says little",
        ),
        ("weakest_group_gain", "float64", "the group's model's smallest gain over the input, over its members (dB)"),
        ("below_input", "str", "the members on which the group's model ends below its input, `,`-joined (empty: none)"),
        (
            "harmed_images",
            "int64",
            "test images (over its members) the group's model makes worse than their input by more than 0.5 dB",
        ),
        ("round", "int64", "the round that asked for it"),
    ),
    "grouping_noise_floor": _table(
        "results/grouping/noise_floor.parquet",
        "seed-to-seed spread of single-task models (`grouping.replicates`), and its `pooled` row",
        ("degradation", "str", "a replicated degradation, or `pooled`"),
        ("n_seeds", "int64", "models trained (the workflow's own and the replicates; pooled: all)"),
        ("psnr_mean", "float64", "mean over seeds of the model's mean PSNR (dB)"),
        ("psnr_sd", "float64", "standard deviation over seeds (dB); pooled: root mean variance"),
        ("drop_sd", "float64", "seed standard deviation of a drop, `sqrt(2) psnr_sd` (two independent models)"),
        ("gain_mean", "float64", "mean over seeds of the gain over the input (dB)"),
        ("gain_min", "float64", "the smallest seed's gain (dB)"),
    ),
    "grouping_stability": _table(
        "results/grouping/stability.parquet",
        "per verified group: does its verdict survive resampling the test images (`grouping.bootstrap` times)?",
        ("group", "str", "canonical group name"),
        ("size", "int64", "number of members"),
        ("in_partition", "bool", "a group of the search's partition"),
        ("dP", "float64", "its drop on all test images (dB)"),
        ("feasible", "bool", "its verdict on all test images"),
        ("feasible_rate", "float64", "share of resamples in which it is feasible"),
        ("flip_rate", "float64", "share of resamples in which its verdict differs from `feasible`"),
        (
            "training_seeds",
            "int64",
            "training seeds it was decided at: 1 + `grouping.replicates.seeds` for a final group or one whose "
            "interval comes within `near_delta` of delta, else 1 (the run's own)",
        ),
        ("seed_feasible_rate", "float64", "share of those training seeds at which it is feasible (NaN: not retrained)"),
        ("seed_flip", "bool", "its verdict differs between training seeds"),
    ),
    "grouping_stability_partitions": _table(
        "results/grouping/stability_partitions.parquet",
        "the partitions the resampled verdicts support (the fewest verified-feasible groups), and how often",
        ("resampled", "str", "`test_images` (bootstrap of the test images) or `training_seeds` (models retrained)"),
        ("partition", "str", "its groups, joined by ` / `"),
        ("n_groups", "int64", "number of groups"),
        ("resamples", "int64", "resamples (test-image draws, or training seeds) that gave it"),
        ("fraction", "float64", "`resamples` over all of that kind (`grouping.bootstrap`, or 1 + the replicate seeds)"),
        ("is_search", "bool", "the search's own partition"),
    ),
    "grouping_seed_verdicts": _table(
        "results/grouping/seed_verdicts.parquet",
        "per retrained group and training seed: its drop and verdict, decided as the search decides",
        ("group", "str", "canonical group name"),
        ("k", "int64", "0: the run's own models; 1..k: the replicates"),
        ("training_seed", "int64", "the training seed: `training_seed + k`"),
        ("dP", "float64", "its drop at that seed, against the single-task models of that seed (dB)"),
        ("dP_low", "float64", "95 % interval of `dP`, low end (test images and seed noise)"),
        ("dP_high", "float64", "its high end"),
        ("verdict", "str", "`feasible` / `infeasible` / `failed_training`, as in `grouping_verified`"),
        ("feasible", "bool", "`verdict == feasible`"),
    ),
    "grouping_drops": _table(
        "results/grouping/drops.parquet",
        "per verified group and member, on `grouping.test_set`",
        *_DROPS,
    ),
    "grouping_partitions": _table(
        "results/grouping/partitions.parquet",
        "every minimal partition returned (several with `all_partitions: true`)",
        ("partition", "int64", "0 = the one used"),
        ("group", "str", "a group of that partition"),
    ),
    "final_groups": _table(
        "results/final/groups.parquet",
        "the partition used: one row per degradation, in config order",
        ("degradation", "str", "degradation name"),
        ("group", "str", "its final group"),
    ),
    "table1": _table(
        "results/final/table1.parquet",
        "the paper's Table 1: mean PSNR per test set and degradation, and an `average` row per test set "
        "(`vs_*` = GRIDS minus the other; negative = GRIDS worse)",
        ("test_set", "str", "test set name"),
        ("degradation", "str", "degradation name, or `average`"),
        ("group", "str", "its final group (empty on `average` rows)"),
        ("psnr_input", "float64", "the degraded input itself (no restoration): every model is judged against it"),
        ("psnr_upper", "float64", "the single-task model (the upper bound)"),
        ("psnr_mixall", "float64", "the mix-all baseline"),
        ("psnr_{baseline}", "float64", "one column per configured baseline"),
        ("psnr_grids", "float64", "the GRIDS group model"),
        ("vs_upper", "float64", "`psnr_grids - psnr_upper`"),
        ("vs_mixall", "float64", "`psnr_grids - psnr_mixall`"),
        *_table1_gains("upper", "the single-task model"),
        *_table1_gains("mixall", "the mix-all baseline"),
        ("gain_{baseline}", "float64", "each baseline's mean gain over the input (dB)"),
        ("harmed_{baseline}", "int64", "test images each baseline makes worse than their input by more than 0.5 dB"),
        *_table1_gains("grids", "the GRIDS group model"),
    ),
    "selection_references": _table(
        (
            "results/selection/references.parquet",
            "results/selection/references/{degradation}.parquet",
            "results/selection/signatures/{test_set}/{degradation}.parquet",
        ),
        "the per-image signature of every degraded training image (`references`) and of every degraded "
        "test image, unseen degradations included (`signatures`, what the selection report and the routers "
        "read): one row per layer (`selection.layers` and `features.layer`)",
        ("degradation", "str", "the degraded set"),
        ("image", "str", "image id"),
        ("layer", "str", "descriptor layer (`sift` for SIFT features)"),
        ("alpha", "float64", "GGD shape"),
        ("sigma", "float64", "GGD scale"),
        ("n_patches", "int64", "`features.n_patches`"),
        ("patch_size", "int64", "`features.patch_size` (px)"),
        ("pca_components", "int64", "`features.pca_components`"),
        ("feature_kind", "str", "`descriptor` or `sift`"),
        ("descriptor_sha256", "str", "sha256 of the descriptor weights (empty for SIFT)"),
        ("seconds", "float64", "time the image's signature took (descriptor pass and every layer's fit)"),
    ),
    "selection_reference_gains": _table(
        "results/selection/reference_gains.parquet",
        "every reference image restored by its degradation's final group model: what the expected gain is fitted on",
        ("degradation", "str", "the degraded set (a final group's member), or `clean` (the identity's references)"),
        ("image", "str", "image id"),
        ("group", "str", "the final group whose model restored it (`identity`: the clean images, unchanged)"),
        ("psnr_model", "float64", "PSNR of the group model's output (dB)"),
        ("psnr_input", "float64", "PSNR of the degraded image itself (dB)"),
        ("gain", "float64", "`psnr_model - psnr_input` (dB)"),
    ),
    "selection_accuracy": _table(
        "results/selection/accuracy.parquet",
        "one row per degraded test image: the group chosen for it",
        ("test_set", "str", "test set name"),
        ("degradation", "str", "its degradation (the `selection.unseen` ones, then `clean`, last)"),
        ("image", "str", "image id"),
        ("seen", "bool", "a model was trained on this degradation, or it is `clean` (the identity's)"),
        ("true_group", "str", "the degradation's final group (`identity` for clean; empty when unseen)"),
        ("chosen_group", "str", "the group the selector chose"),
        ("correct", "bool", "`chosen_group == true_group`"),
        ("distance", "float64", "divergence to the chosen group"),
        ("score", "float64", "the default statistic's (`selection.statistic`) score against the chosen group"),
        ("in_distribution", "bool", "`score <= threshold`"),
        ("expected_drop", "float64", "drop predicted from the score (dB; out of fold for seen images)"),
        ("psnr_chosen", "float64", "PSNR of the chosen group's model"),
        ("psnr_true", "float64", "PSNR of the true group's model (NaN when unseen)"),
        ("psnr_single", "float64", "PSNR of the single-task model (NaN when unseen)"),
        ("expected_gain", "float64", "gain of the chosen model over the input predicted before running it (dB)"),
        ("gain_low", "float64", "lower end of its `1 - selection.alpha` interval (dB)"),
        ("gain_high", "float64", "upper end (dB)"),
    ),
    "selection_divergences": _table(
        "results/selection/divergences.parquet",
        "per degraded test image, its divergence to every final group",
        ("test_set", "str", "test set name"),
        ("degradation", "str", "its degradation"),
        ("image", "str", "image id"),
        ("group", "str", "a final group"),
        ("kl", "float64", "smallest `KL(reference ‖ input)` over the group's references"),
        ("distance", "float64", "`log10(kl + 1e-5) + 5`"),
    ),
    "selection_scores": _table(
        "results/selection/scores.parquet",
        "per degraded test image and out-of-distribution statistic, its score against the chosen group",
        ("test_set", "str", "test set name"),
        ("degradation", "str", "its degradation"),
        ("image", "str", "image id"),
        ("seen", "bool", "a model was trained on this degradation"),
        ("statistic", "str", "the statistic (a `selection.statistic` value: grids/selection/statistics.py)"),
        ("score", "float64", "the statistic's score (larger: further from the training degradations)"),
        ("in_distribution", "bool", "`score <=` the statistic's threshold"),
        ("expected_drop", "float64", "drop predicted from the score (dB; out of fold for seen images)"),
    ),
    "selection_failure_images": _table(
        "results/selection/failure_images.parquet",
        "one row per degraded test image: did the chosen model help it?",
        ("test_set", "str", "test set name"),
        ("degradation", "str", "its degradation"),
        ("image", "str", "image id"),
        ("seen", "bool", "a model was trained on this degradation"),
        ("chosen_group", "str", "the group the selector chose"),
        ("psnr_input", "float64", "PSNR of the degraded input itself (dB)"),
        ("psnr_chosen", "float64", "PSNR of the chosen group's model (dB)"),
        ("oracle_group", "str", "the final group whose model restores this image best, or `identity` (none gains)"),
        ("psnr_oracle", "float64", "its PSNR (dB)"),
        ("gain", "float64", "`psnr_chosen - psnr_input` (dB)"),
        ("oracle_gain", "float64", "`psnr_oracle - psnr_input` (dB)"),
        (
            "fails",
            "bool",
            "`gain < selection.min_helpful_gain`: the chosen model does not help (the identity chosen: "
            "`oracle_gain >= selection.min_helpful_gain`, a restoration missed)",
        ),
        ("expected_gain", "float64", "the gain predicted before restoring (dB; grids/selection/gain.py)"),
        ("gain_low", "float64", "lower end of its `1 - selection.alpha` interval (dB)"),
        ("gain_high", "float64", "upper end (dB)"),
        ("covered", "bool", "`gain_low <= gain <= gain_high`"),
        (
            "flagged",
            "bool",
            "the default statistic calls the input out of distribution, or "
            "`expected_gain < selection.min_helpful_gain`: what `grids restore` routes to `selection.fallback`",
        ),
        ("psnr_mixall", "float64", "PSNR of the mix-all model (dB; the `mixall` fallback; NaN without one)"),
    ),
    "selection_failure": _table(
        "results/selection/failure.parquet",
        "per test set, out-of-distribution statistic and subset: does its score predict a failed restoration?",
        ("test_set", "str", "test set name"),
        ("statistic", "str", "out-of-distribution statistic"),
        ("subset", "str", "`all`, `seen` (trained degradations), `unseen` or `clean` (nothing to restore)"),
        ("n", "int64", "images of the subset scored"),
        ("n_fails", "int64", "of which the chosen model fails (`fails`)"),
        ("auroc", "float64", "probability that a failing image scores above a helped one (0.5: chance)"),
        ("fpr_at_95_tpr", "float64", "share of helped images flagged by the threshold that flags 95 % of failures"),
        ("spearman_gain", "float64", "Spearman's rho of the score with the realised gain (negative: predicts)"),
        (
            "aurc",
            "float64",
            "area under the risk-coverage curve: images restored in order of increasing score, the mean share "
            "of failures among those restored over every coverage (smaller: better; the failure rate: chance)",
        ),
        ("aurc_optimal", "float64", "the AURC of a perfect ranking (every failure last): the best possible"),
        ("mean_gain", "float64", "mean gain of the chosen model (dB)"),
        ("mean_oracle_gain", "float64", "mean gain of the best final model (or the identity, 0) per image (dB)"),
    ),
    "selection_router_images": _table(
        "results/selection/router_images.parquet",
        "one row per degraded test image and router (grids.selection.routers): the group each router chose and "
        "what its model obtained",
        ("test_set", "str", "test set name"),
        ("degradation", "str", "its degradation"),
        ("image", "str", "image id"),
        ("seen", "bool", "a model was trained on this degradation"),
        ("true_group", "str", "the final group of the degradation (empty when unseen)"),
        (
            "router",
            "str",
            "`grids` (the training-free choice), `logistic` (trained on the reference signatures), `cnn` (trained "
            "on pixels of the degraded similarity sets) or `oracle` (the best final model on the image)",
        ),
        ("chosen_group", "str", "the final group it chose"),
        (
            "confidence",
            "float64",
            "the router's largest group probability; for `grids` its default statistic's score (larger: worse); "
            "NaN for the oracle",
        ),
        ("psnr", "float64", "PSNR of the chosen group's model (dB, from the evaluation tables)"),
        ("gain", "float64", "`psnr` minus the degraded input's PSNR (dB)"),
        ("fails", "bool", "`gain < selection.min_helpful_gain`"),
        (
            "seconds",
            "float64",
            "time to route the image on the CPU (signature + classifier, crops + CNN; `grids`: the same signature + "
            "its choice); NaN for the oracle",
        ),
    ),
    "selection_router_curve": _table(
        "results/selection/router_curve.parquet",
        "the CNN router's training: one row per check of its held-out loss (it stops at its plateau)",
        ("step", "int64", "training steps done"),
        ("train_loss", "float64", "mean cross-entropy of the training batches since the last check"),
        ("val_loss", "float64", "cross-entropy on the held-out images (clean ids held out with their copies)"),
        ("val_accuracy", "float64", "share of the held-out images routed to their group"),
        ("best", "bool", "the best validation loss so far (the last such row is the checkpoint kept)"),
    ),
    "selection_routers": _table(
        "results/selection/routers.parquet",
        "per test set and router: trained routers against GRIDS' training-free choice and the oracle, same images",
        ("test_set", "str", "test set name"),
        ("router", "str", "`grids`, `logistic`, `cnn` or `oracle` (table `selection_router_images`)"),
        ("n", "int64", "images routed (seen and unseen degradations)"),
        ("accuracy_seen", "float64", "share of images of trained degradations routed to their true group"),
        ("oracle_agreement", "float64", "share of images routed to the oracle's group"),
        ("mean_psnr", "float64", "mean PSNR of the chosen models (dB)"),
        ("psnr_lost", "float64", "mean PSNR lost to the oracle per image (dB)"),
        ("psnr_lost_seen", "float64", "the same over images of trained degradations (dB; NaN without any)"),
        ("psnr_lost_unseen", "float64", "the same over unseen images (dB; NaN without any)"),
        ("psnr_lost_clean", "float64", "the same over clean images (dB; NaN without any)"),
        ("mean_gain", "float64", "mean gain of the chosen models over the input (dB)"),
        ("n_fails", "int64", "images whose chosen model fails (`gain < selection.min_helpful_gain`)"),
        (
            "failure_auroc",
            "float64",
            "AUROC of `1 - confidence` (`grids`: of its score) for its own `fails` (0.5: chance; NaN for the oracle "
            "or without both outcomes)",
        ),
        ("seconds_per_image", "float64", "mean routing time per image (CPU; NaN for the oracle)"),
    ),
    "selection_gain": _table(
        "results/selection/gain.parquet",
        "per test set and subset: how well the gain predicted before restoring matches the realised one",
        ("test_set", "str", "test set name"),
        ("subset", "str", "`all`, `seen` (trained degradations), `unseen` or `clean` (nothing to restore)"),
        ("n", "int64", "test images"),
        ("mae", "float64", "mean absolute error of `expected_gain` (dB)"),
        ("bias", "float64", "mean of `expected_gain - gain` (dB; positive: too hopeful)"),
        ("spearman", "float64", "Spearman's rho of the expected with the realised gain"),
        ("coverage", "float64", "share of images whose realised gain lies in the interval"),
        ("nominal", "float64", "the interval's nominal coverage, `1 - selection.alpha`"),
        ("mean_width", "float64", "mean interval width (dB)"),
    ),
    "selection_fallback": _table(
        "results/selection/fallback.parquet",
        "per test set, subset and `selection.fallback`: the PSNR after `grids restore` routes flagged images",
        ("test_set", "str", "test set name"),
        ("subset", "str", "`all`, `seen` (trained degradations), `unseen` or `clean` (nothing to restore)"),
        ("fallback", "str", "`none` (the chosen model), `mixall` or `identity` for flagged images"),
        ("n", "int64", "test images"),
        ("n_routed", "int64", "of which flagged and routed to the fallback"),
        ("mean_psnr", "float64", "mean PSNR of the outputs (dB)"),
        ("change", "float64", "mean PSNR change against `none` (dB)"),
        ("change_low", "float64", "its 95 % bootstrap interval over the test images, lower end (dB)"),
        ("change_high", "float64", "upper end (dB)"),
    ),
    "selection_prediction": _table(
        "results/selection/prediction.parquet",
        "prediction without inference: per statistic, rank correlation of its score with the outcome",
        ("test_set", "str", "test set name"),
        ("statistic", "str", "out-of-distribution statistic"),
        (
            "target",
            "str",
            "`psnr` (of the chosen model), `drop` (against the single-task model), `expected_drop` (the predicted "
            "drop against the obtained one, seen images)",
        ),
        ("n", "int64", "images correlated"),
        ("spearman", "float64", "Spearman's rho"),
        ("p_value", "float64", "its p-value"),
        ("mae", "float64", "mean absolute error of the expected drop (dB; NaN for the other targets)"),
    ),
    "selection_ood": _table(
        "results/selection/ood.parquet",
        "out-of-distribution detection per test set and statistic (the unseen benchmark, pooled)",
        ("test_set", "str", "test set name"),
        ("statistic", "str", "out-of-distribution statistic"),
        ("default", "bool", "the configured `selection.statistic`"),
        ("n_seen", "int64", "images of trained degradations"),
        ("n_unseen", "int64", "images of `selection.unseen` degradations, near misses left out"),
        ("seen_in_distribution", "float64", "fraction of seen images judged in distribution"),
        ("unseen_flagged", "float64", "fraction of those unseen images above the threshold (NaN without any)"),
        ("auroc", "float64", "how well the score separates those unseen from seen, whatever the threshold"),
        (
            "near_miss_in_distribution",
            "float64",
            "fraction of `selection.near_misses` images judged in distribution (NaN without any)",
        ),
        ("threshold", "float64", "the statistic's threshold"),
        ("seen_p95", "float64", "95th percentile of the seen images' scores"),
        ("accuracy", "float64", "fraction of seen images given their true group (the same for every statistic)"),
        ("seconds", "float64", "mean signature time per image (s), shared by the statistics"),
    ),
    "selection_unseen": _table(
        "results/selection/unseen.parquet",
        "the unseen-degradation benchmark: per test set, statistic and `selection.unseen` degradation",
        ("test_set", "str", "test set name"),
        ("statistic", "str", "out-of-distribution statistic"),
        ("degradation", "str", "the unseen degradation"),
        ("n", "int64", "its images"),
        ("flagged", "float64", "fraction above the threshold"),
        ("auroc", "float64", "its scores against every seen image's"),
        ("score", "float64", "mean score"),
        ("psnr_chosen", "float64", "mean PSNR of the chosen models on it"),
        ("psnr_seen", "float64", "mean PSNR of the chosen models on the seen images"),
        ("expected_drop", "float64", "mean predicted drop (dB)"),
    ),
    "selection_drop_fit": _table(
        "results/selection/drop_fit.parquet",
        "per statistic, the monotone fit of the drop on the score (knots; `grids select` interpolates)",
        ("statistic", "str", "out-of-distribution statistic"),
        ("score", "float64", "knot: mean score of an isotonic block"),
        ("drop", "float64", "the fitted drop there (dB)"),
    ),
    "validation_table2": _table(
        "results/validation/table2.parquet",
        "the paper's Table 2: one row per experiment, feature variant and group",
        ("experiment", "str", "experiment name"),
        ("variant", "str", "feature variant (`method`, `rb16`, `untrained`, `sift`)"),
        ("side", "str", "`a` or `b`, as configured"),
        ("group", "str", "canonical group name"),
        ("size", "int64", "number of members"),
        ("distance", "float64", "mean pairwise distance under this variant"),
        ("mean_drop", "float64", "mean member drop (dB)"),
        ("max_drop", "float64", "largest member drop (dB)"),
        *_GROUP_MODEL,
        ("closer", "bool", "this variant's smaller distance of the two"),
        ("correct", "bool", "the closer group lost less on average"),
    ),
    "validation_drops": _table(
        "results/validation/drops.parquet",
        "member drops of every experiment's groups",
        ("experiment", "str", "experiment name"),
        ("side", "str", "`a` or `b`"),
        *_DROPS,
    ),
    "validation_premise_groups": _table(
        "results/validation/premise_groups.parquet",
        "every group with a trained model, per variant",
        ("group", "str", "canonical group name"),
        ("size", "int64", "number of members"),
        ("source", "str", "`search`, `table2` or `mix-all`"),
        ("mean_drop", "float64", "mean member drop (dB)"),
        ("max_drop", "float64", "largest member drop (dB)"),
        *_GROUP_MODEL,
        ("variant", "str", "feature variant"),
        ("distance", "float64", "mean pairwise distance under this variant"),
    ),
    "validation_premise": _table(
        "results/validation/premise.parquet",
        "does a small distance mean a small drop? Correlations over every trained group, with 95 % bootstrap "
        "intervals (groups resampled)",
        ("variant", "str", "feature variant"),
        ("target", "str", "`max_drop` or `mean_drop`"),
        ("n_groups", "int64", "groups correlated"),
        ("spearman", "float64", "Spearman's rho of distance and drop"),
        ("spearman_low", "float64", "its interval's low end"),
        ("spearman_high", "float64", "its interval's high end"),
        ("spearman_p", "float64", "its p-value"),
        ("kendall", "float64", "Kendall's tau"),
        ("kendall_low", "float64", "its interval's low end"),
        ("kendall_high", "float64", "its interval's high end"),
        ("kendall_p", "float64", "its p-value"),
        ("experiments_correct", "float64", "fraction of Table 2 experiments ordered correctly"),
        ("n_experiments", "int64", "Table 2 experiments run"),
    ),
}

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def table(name: str) -> Table:
    """The registered table ``name``; a KeyError listing the names otherwise."""
    if name not in TABLES:
        raise KeyError(f"no table {name!r} in grids.tables (have: {', '.join(TABLES)})")
    return TABLES[name]


def columns(name: str, **values: list[str]) -> list[str]:
    """Column names of table ``name``, in order. A pattern column (``psnr_{baseline}``) becomes one
    column per value given for its placeholder (``baseline=["rrdb"]``), none when none is given."""
    names = []
    for column in table(name).columns:
        placeholder = _PLACEHOLDER.search(column.name)
        if placeholder is None:
            names.append(column.name)
        else:
            names += [_PLACEHOLDER.sub(str(v), column.name) for v in values.get(placeholder.group(1), [])]
    return names


def _pattern(name: str, wildcard: str = ".+") -> re.Pattern:
    """``name`` as a regular expression, each ``{placeholder}`` matching ``wildcard``."""
    parts = _PLACEHOLDER.split(name)  # literal, placeholder, literal, ...
    return re.compile("".join(re.escape(p) if i % 2 == 0 else wildcard for i, p in enumerate(parts)))


def _expected(spec: Table, present: list[str]) -> list[tuple[str, Column]]:
    """The columns a frame with columns ``present`` must have, pattern columns expanded with the
    present names that match them (and are no fixed column of the table)."""
    fixed = {c.name for c in spec.columns if not _PLACEHOLDER.search(c.name)}
    expected = []
    for column in spec.columns:
        if column.name in fixed:
            expected.append((column.name, column))
        else:
            pattern = _pattern(column.name)
            expected += [(p, column) for p in present if p not in fixed and pattern.fullmatch(p)]
    return expected


def _dtype_ok(series: pd.Series, dtype: str) -> bool:
    actual = str(series.dtype)
    if actual == "object" and len(series) == 0:  # no values: pandas could not infer a type
        return True
    if dtype == "str":
        return actual == "str" or (
            actual == "object" and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")
        )
    return actual == dtype


def check(frame: pd.DataFrame, name: str) -> None:
    """Raise :class:`TableError` unless ``frame`` has exactly table ``name``'s columns, in order,
    each of its type; the message names the table and every missing, extra, misplaced or mistyped
    column."""
    spec = table(name)
    present = [str(c) for c in frame.columns]
    expected = _expected(spec, present)
    names = [n for n, _ in expected]
    problems = []
    duplicated = sorted({c for c in present if present.count(c) > 1})
    if duplicated:
        problems.append(f"duplicate column(s) {', '.join(duplicated)}")
    missing = [n for n in names if n not in present]
    extra = [c for c in present if c not in names]
    if missing:
        problems.append(f"missing column(s) {', '.join(missing)}")
    if extra:
        problems.append(f"extra column(s) {', '.join(extra)}")
    if not (missing or extra or duplicated) and present != names:
        problems.append(f"columns in the order {', '.join(present)}; expected {', '.join(names)}")
    if not duplicated:
        for column_name, column in expected:
            if column_name in present and not _dtype_ok(frame[column_name], column.dtype):
                problems.append(f"column {column_name} is {frame[column_name].dtype}, expected {column.dtype}")
    if problems:
        raise TableError(f"table {name} ({spec.paths[0]}): " + "; ".join(problems))


def write(frame: pd.DataFrame, name: str, path: str | Path) -> None:
    """:func:`check` ``frame`` against table ``name``, then write it to ``path`` (atomically). A
    manifest's image paths are stored relative to ``path``'s folder (:func:`grids.io.read_manifest`
    reads them back)."""
    check(frame, name)
    if name in MANIFESTS:
        frame = io.manifest_relative(frame, path)
    io.write_parquet(frame, path)


def table_for(path: str | Path) -> str:
    """The name of the table the workflow writes at ``path`` (relative to the working directory,
    e.g. ``results/eval/jpeg.parquet``); a KeyError when no table, or more than one, lives there."""
    path = Path(path).as_posix()
    matches = [name for name, spec in TABLES.items() if any(_pattern(p, "[^/]+").fullmatch(path) for p in spec.paths)]
    if len(matches) != 1:
        raise KeyError(
            f"{path}: {'no registered table' if not matches else 'several tables: ' + ', '.join(matches)} "
            "in grids.tables"
        )
    return matches[0]


def markdown() -> str:
    """The table reference (docs/tables.md): per table its paths, meaning and a column | type | meaning table."""
    lines = [
        "Every table below is declared once in `grids/tables.py`; the writers check their frames against it, and",
        "this section is generated from it (`python -m grids.tables --update docs/tables.md`). Types are pandas",
        "dtypes: `str` (text), `int64`, `float64`, `bool`; a table with no rows may hold `object` columns. A column",
        "`name_{placeholder}` stands for one column per value (per configured baseline). The tables' own paths",
        "are relative to the workflow's working directory. The image paths in the manifests (`clean_manifest`,",
        "`degraded_manifest`) are relative to the manifest's folder, so they survive moving `results/`; open them",
        "from any working directory with `grids.io.read_manifest`:",
        "",
        "```python",
        "from grids.io import load_png, read_manifest",
        "",
        'm = read_manifest("/path/to/project/results/degraded/jpeg/manifest.parquet")  # paths joined to its folder',
        "image = load_png(m.path[0])",
        "```",
    ]
    for name, spec in TABLES.items():
        paths = ", ".join(f"`{p}`" for p in spec.paths)
        lines += [
            "",
            f"### `{name}`",
            "",
            f"{paths}: {spec.meaning}.",
            "",
            "| column | type | meaning |",
            "| --- | --- | --- |",
        ]
        lines += [f"| `{c.name}` | {c.dtype} | {c.meaning} |" for c in spec.columns]
    return "\n".join(lines) + "\n"


def marked_section(text: str) -> str:
    """What ``text`` (a Markdown document) holds between the markers."""
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip("\n") + "\n"


def update_doc(path: str | Path) -> bool:
    """Replace the section between the markers of ``path`` with :func:`markdown`; True if it changed."""
    path = Path(path)
    text = path.read_text()
    start, end = text.index(START) + len(START), text.index(END)
    new = text[:start] + "\n" + markdown() + text[end:]
    if new != text:
        with io.atomic_path(path) as tmp:
            tmp.write_text(new)
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.tables", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--update", metavar="FILE", help="rewrite the section between the tables markers of FILE (docs/tables.md)"
    )
    args = parser.parse_args(argv)
    if args.update:
        changed = update_doc(args.update)
        print(f"{args.update}: {'updated' if changed else 'already up to date'}")
    else:
        sys.stdout.write(markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What a run of ``final_models`` will train and what it will cost, before anything is submitted.

    grids plan --config config/config.yaml --config config/paper.yaml

From the merged config alone (nothing under ``results/`` is needed, no model is trained):

* trainings: one single-task model per degradation, the mix-all baseline, the noise floor's
  replicates (``grouping.replicates``), each extra ``baselines`` entry, and the verifications
  of the grouping search. Their number depends on PSNRs not measured yet, so it is given as the
  distribution the planner itself produces (:class:`grids.grouping.Planner`, with the config's
  ``strategy`` and ``probes_per_round``) on random instances with the same number of
  degradations: those of ``bench/bench_grouping.py``
  (random points mapped to log-KL distances in [1, 5], drops growing with the group's spread,
  delta at the 20-35 % quantile of the pair distances);
* GPU-hours: iterations / the end-to-end it/s measured in ``bench/RESULTS.md`` for the
  architecture on the card named there, scaled by the pixels per step when the batch or crop
  is larger than the measured ones (throughput assumed proportional to pixels: an approximation);
  a smaller step is taken at the measured rate (an upper bound: per-step costs do not shrink);
  an architecture without a measurement is reported as such, never guessed;
* disk: the crop store (3 bytes per training pixel; image sizes read from the files' headers when
  the folders exist), the degraded PNGs of the similarity and test sets (about 1.6 bytes per pixel,
  the mean of the synthetic DF2K-like PNGs of ``bench/bench_scale.py``) and the checkpoints
  (weights and both AdamW moments, float32);
* RAM per job: the peaks measured by ``bench/bench_scale.py`` (``bench/RESULTS.md``), which do
  not grow with the number of images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# End-to-end training it/s (online degradation + prefetch), bench/RESULTS.md "Training throughput":
# `bench_train.py --device cuda --batch 8 --crop 256 --archs srresnet,restormer --full --compile`.
MEASURED_CARD = "NVIDIA H100 80GB HBM3 (bf16 + channels_last + torch.compile)"
MEASURED_IT_PER_S = {
    "restormer": {
        "it_per_s": 4.99,
        "batch_size": 8,
        "crop": 256,
        "kwargs": {},
        "sizes": "dim 48, blocks [4,6,6,8] (26.1 M)",
    },
    "srresnet": {
        "it_per_s": 61.87,
        "batch_size": 8,
        "crop": 256,
        "kwargs": {"num_feat": 64, "num_block": 16},
        "sizes": "64 features, 16 blocks (1.22 M)",
    },
}
# bench/bench_mixed.py on 2 CPU cores (bench/RESULTS.md "Mixed training", single-task models at 400
# steps in fp32 and 800 steps in bf16, the default training images and 128 px canvas): the fewest
# iterations of those after which the single-task model of each built-in degradation gained at
# least 0.5 dB over its degraded input, with the recipe of LEARNING_RECIPE; None: not within the
# largest count tried (LEARNING_MAX_TRIED).
LEARNING_RECIPE = {
    "arch": "srresnet",
    "arch_kwargs": {"num_feat": 32, "num_block": 4},
    "lr": 2e-3,
    "batch_size": 8,
    "crop": 32,
    "degrade_canvas": 128,
}
LEARNING_MAX_TRIED = 800
STEPS_TO_LEARN: dict[str, int | None] = {
    "gaussian_blur": 800,  # +0.06 dB at 400, +0.78 (bf16) and +1.02 (fp32) at 800
    "motion_blur": None,  # +0.01 at 800
    "rl": 400,
    "sr": None,  # +0.15 at 400, +0.44 at 800
    "ringing": 800,  # +0.23 at 400, +0.86 at 800
    "defocus_blur": 400,
    "jpeg": 800,  # +0.33 at 400, +0.60 at 800
    "poisson_noise": 400,
    "inpainting": 400,
    "gaussian_noise": 400,
    "salt_pepper": 400,
}
# bench/bench_scale.py on 2 CPU cores (bench/RESULTS.md "Scale rehearsal"): peak RSS, MB.
MEASURED_RSS_MB = {"train": 1295, "clean set": 520, "crop store": 227, "evaluate": 792}
PNG_BYTES_PER_PIXEL = 1.6
# (images, pixels per image) assumed for a folder that does not exist yet: DF2K for training,
# DIV2K-Valid's size for the other sets (Urban100's images are smaller: an upper bound).
DF2K = (3450, 2040 * 1356)
DIV2K_VALID = (100, 2040 * 1356)


def simulated_verifications(
    n: int, strategy: str, probes_per_round: int, instances: int = 200, seed: int = 0
) -> np.ndarray:
    """``[instances, 2]``: verifications and rounds the planner needs on random instances of size n."""
    from .grouping import search

    out = []
    for k in range(instances):
        rng = np.random.default_rng([seed, n, k])
        points = rng.random((n, 2))
        e = np.linalg.norm(points[:, None] - points[None], axis=-1)
        iu = np.triu_indices(n, 1)
        d = 1 + 4 * (e - e[iu].min()) / max(e[iu].max() - e[iu].min(), 1e-12)
        np.fill_diagonal(d, 0)
        names = [f"d{i:02d}" for i in range(n)]
        index = {x: i for i, x in enumerate(names)}
        delta = 0.5 * float(np.quantile(d[iu], rng.uniform(0.20, 0.35)))

        def evaluate(group, d=d, k=k, index=index):
            idx = sorted(index[x] for x in group)
            mask = sum(1 << i for i in idx)
            spread = max(d[i, j] for a, i in enumerate(idx) for j in idx[a + 1 :])
            return 0.5 * spread + np.random.default_rng([seed, k, mask]).normal(0, 0.05)

        result = search(names, d, delta, evaluate, strategy=strategy, probes_per_round=probes_per_round)
        out.append((result.n_evaluations, result.rounds))
    return np.array(out)


def _set_pixels(images_cfg: dict, assumed: tuple[int, int] | None) -> tuple[int, int, str]:
    """``(images, pixels, how)`` of an image set: sizes from the files' headers, or ``assumed``
    ``(images, pixels per image)`` when its folder was not found."""
    from PIL import Image

    from .data import embedded_photo_path
    from .io import list_image_files

    if assumed is not None:
        return assumed[0], assumed[0] * assumed[1], "assumed: folder not found"
    leaves = images_cfg.get("dead_leaves", {})
    count, pixels = leaves.get("count", 0), leaves.get("count", 0) * leaves.get("size", 0) ** 2
    files = [embedded_photo_path(name) for name in images_cfg.get("photos", [])]
    if images_cfg.get("folder"):
        files += list_image_files(images_cfg["folder"])[0]
    for path in files:
        with Image.open(path) as im:  # the header only
            count, pixels = count + 1, pixels + im.size[0] * im.size[1]
    return count, pixels, "from the files' headers"


def load_for_plan(paths: list[str]) -> tuple[dict, dict[str, tuple[int, int]]]:
    """The merged, validated config, and the image sets whose folder does not exist yet (e.g. the
    placeholders of config/paper.yaml): planned with assumed sizes instead of failing."""
    from .config import merge_configs, read_yaml, validate_config

    config: dict = {}
    for one in paths:
        config = merge_configs(config, read_yaml(one))
    assumed = {}
    sections = {"images": config.get("images")}
    training = config.get("training") or {}
    sections["training.images"] = training.get("images")
    for name, test in (training.get("test_sets") or {}).items():
        sections[f"training.test_sets.{name}"] = test
    for key, section in sections.items():
        if isinstance(section, dict) and section.get("folder") and not Path(section["folder"]).is_dir():
            section["folder"] = None
            section["dead_leaves"] = {**(section.get("dead_leaves") or {}), "count": 1}  # validates; not counted
            assumed[key] = DF2K if key == "training.images" else DIV2K_VALID
    return validate_config(config), assumed


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.0f} MB"


def _parameters(arch: str, kwargs: dict) -> int:
    from .checkpoint import build_model

    return sum(p.numel() for p in build_model(arch, kwargs).parameters())


def _unit(hours: float) -> tuple[float, str]:
    """The divisor and unit that read well for ``hours`` (a short run is minutes, not 0.0 hours)."""
    if hours >= 1:
        return 1.0, "GPU-hours"
    if hours * 60 >= 1:
        return 1 / 60, "GPU-minutes"
    return 1 / 3600, "GPU-seconds"


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


def _duration(hours: float) -> str:
    """``1,234 GPU-hours``, ``2.5 GPU-hours``, ``7.3 GPU-minutes``, ``40 GPU-seconds``."""
    if hours * 3600 < 1:
        return "under 1 GPU-second"
    divisor, unit = _unit(hours)
    return f"{_number(hours / divisor)} {unit}"


def _span(low: float, high: float) -> str:
    """``low-high`` in the unit of ``high``: ``12-17 GPU-minutes``."""
    divisor, unit = _unit(high)
    if low == high:
        return _duration(high)
    return f"{_number(low / divisor)}-{_number(high / divisor)} {unit}"


def _gpu_hours(recipe: dict) -> tuple[float | None, str]:
    measured = MEASURED_IT_PER_S.get(recipe["arch"])
    if measured is None:
        return None, f"{recipe['arch']}: no it/s measured in bench/RESULTS.md (run bench/bench_train.py on the card)"
    scale = (recipe["batch_size"] * recipe["crop"] ** 2) / (measured["batch_size"] * measured["crop"] ** 2)
    # Never faster than measured: data loading, the optimizer step and kernel launches do not shrink
    # with the pixels, so a small step taken as proportionally faster gave "0.0 GPU-hours".
    it_per_s = measured["it_per_s"] / max(scale, 1.0)
    note = (
        f"{recipe['arch']}: {it_per_s:.2f} it/s (measured {measured['it_per_s']} it/s at batch "
        f"{measured['batch_size']} x {measured['crop']}², {measured['sizes']})"
    )
    if (recipe.get("arch_kwargs") or {}) != measured["kwargs"]:
        note += f"; this config's sizes {recipe['arch_kwargs']} differ: a rough figure"
    if scale < 1:
        note += f"; {scale:.2g}x the measured pixels per step, taken at the measured rate: an upper bound"
    return recipe["iterations"] / it_per_s / 3600, note


def learning_warnings(config: dict) -> list[str]:
    """A warning per configured built-in degradation whose single-task model will likely not learn
    (gain < 0.5 dB over its input) in the configured iterations, from bench/bench_recipe.py's
    measurements; only for the recipe those were measured with."""
    from .config import training_recipe

    recipe = training_recipe(config)
    if any(recipe.get(k) != v for k, v in LEARNING_RECIPE.items()):
        return []
    warnings = []
    for name in config["degradations"]:
        if name not in STEPS_TO_LEARN:
            continue
        needed = STEPS_TO_LEARN[name]
        if needed is None:
            warnings.append(
                f"warning: {name}: no gain of 0.5 dB over the input within {LEARNING_MAX_TRIED} iterations in "
                "bench/RESULTS.md; its verdicts will likely be uninformative"
            )
        elif recipe["iterations"] < needed:
            warnings.append(
                f"warning: {name}: bench/RESULTS.md measured {needed} iterations to gain 0.5 dB over the input "
                f"with this recipe; training.iterations is {recipe['iterations']}"
            )
    return warnings


def plan(config: dict, assumed: dict[str, tuple[int, int]] | None = None, instances: int = 200) -> str:
    """The text ``grids plan`` prints for a validated, merged ``config`` (``assumed``: image sets
    planned with assumed sizes, from :func:`load_for_plan`)."""
    from .config import baseline_recipe, training_recipe
    from .runplan import RunPlan

    run, grouping = RunPlan.from_config(config), config["grouping"]
    recipe = training_recipe(config)
    baselines = {name: baseline_recipe(config, name) for name in run.trained_baselines}
    n = len(run.degradations)
    sims = simulated_verifications(n, grouping["strategy"], grouping["probes_per_round"], instances) if n > 1 else None
    # the trainings every run has: single-task models, mix-all and the noise floor's replicates
    fixed = len(run.upper_bound_groups) + len(run.replicate_runs)
    verifications = _percentiles(sims[:, 0]) if sims is not None else None
    lines = [
        (
            f"grids plan: {n} degradations, strategy {grouping['strategy']}, probes_per_round "
            f"{grouping['probes_per_round']}, delta {grouping['delta']} dB"
        ),
        "",
    ]
    lines += _trainings(run, recipe, baselines, sims, instances)
    learning = learning_warnings(config)
    if learning:
        lines += ["", "Will the models learn? (bench/bench_recipe.py, CPU)", *(f"  {line}" for line in learning)]
    lines += ["", *_gpu_time(recipe, baselines, fixed, verifications)]
    lines += ["", *_disk(config, assumed or {}, recipe, baselines, fixed + (verifications or (0, 0, 0))[1])]
    lines += ["", *_ram()]
    return "\n".join(lines)


def _percentiles(verifications: np.ndarray) -> tuple[int, int, int]:
    """The 10th, 50th and 90th percentile of the simulated searches' verifications."""
    return tuple(round(float(np.percentile(verifications, q))) for q in (10, 50, 90))


def _trainings(run, recipe: dict, baselines: dict, sims: np.ndarray | None, instances: int) -> list[str]:
    """What will be trained: counts and iterations; the search's verifications as simulated."""
    from .config import group_iterations

    n = len(run.degradations)
    lines = ["Trainings"]
    lines.append(f"  single-task models      {n:5d}  x {recipe['iterations']:,} iterations ({recipe['arch']})")
    if run.mix_all:
        steps = group_iterations(recipe, n)
        lines.append(f"  mix-all baseline        {1:5d}  x {steps:,} iterations ({recipe['arch']})")
    if run.replicate_runs:
        seeds = len(run.replicate_runs) // len(run.replicated)
        lines.append(
            f"  noise-floor replicates  {len(run.replicate_runs):5d}  x {recipe['iterations']:,} iterations "
            f"({recipe['arch']}; {', '.join(run.replicated)} x {seeds} seed(s), grouping.replicates)"
        )
    for name, base in baselines.items():
        steps = group_iterations(base, n)
        lines.append(f"  baseline {name:14s} {1:5d}  x {steps:,} iterations ({base['arch']})")
    if recipe.get("group_budget") == "per_member":
        cap = recipe.get("max_iterations")
        lines.append(
            f"    (group_budget per_member: a group of k trains k x {recipe['iterations']:,} iterations"
            + (f", at most {cap:,})" if cap else ")")
        )
    if sims is not None:
        ev, rounds = sims[:, 0], sims[:, 1]
        p10, med, p90 = _percentiles(ev)
        lines.append(
            f"  grouping verifications  {med:5d}  median; {p10}-{p90} (10th-90th percentile), max {ev.max()}, "
            f"in a median of {int(np.median(rounds))} rounds (max {rounds.max()})"
        )
        lines.append(
            f"    ({instances} simulated searches of the planner with n = {n}; the real number depends on "
            "the measured PSNRs)"
        )
    replicates = run.config["grouping"]["replicates"]
    if n > 1 and replicates["seeds"] and replicates["near_delta"] is not None:
        lines.append(
            f"  stability replicates    after the search: each final group of two or more, and each verified group "
            f"within {replicates['near_delta']:g} dB of delta, x {replicates['seeds']} seed(s) (not counted above)"
        )
    return lines


def _gpu_time(recipe: dict, baselines: dict, fixed: int, verifications: tuple[int, int, int] | None) -> list[str]:
    """GPU time per training and in all (``verifications``: the search's 10th, 50th and 90th
    percentile of trainings, None without a search)."""
    lines = [f"GPU time (measured on {MEASURED_CARD}, bench/RESULTS.md)"]
    main_hours, main_note = _gpu_hours(recipe)
    lines.append(f"  {main_note}")
    missing = []
    if main_hours is None:
        missing.append(recipe["arch"])
        total_lo = total_med = total_hi = 0.0
    else:
        lines.append(f"  per training: {_duration(main_hours)}")
        total_lo = total_med = total_hi = fixed * main_hours
        if verifications is not None:
            p10, med, p90 = verifications
            total_lo, total_med, total_hi = (
                total_lo + p10 * main_hours,
                total_med + med * main_hours,
                total_hi + p90 * main_hours,
            )
    for name, base in baselines.items():
        hours, note = _gpu_hours(base)
        lines.append(f"  baseline {name}: {note}" + (f": {_duration(hours)}" if hours is not None else ""))
        if hours is None:
            missing.append(f"baseline {name}")
        else:
            total_lo, total_med, total_hi = total_lo + hours, total_med + hours, total_hi + hours
    if main_hours is None:
        return [*lines, f"  total: unknown ({', '.join(missing)} not measured)"]
    lines.append(
        f"  total: about {_duration(total_med)} (verifications 10th-90th percentile: "
        f"{_span(total_lo, total_hi)})" + (f", not counting {', '.join(missing)}" if missing else "")
    )
    return [*lines, "  (training only: evaluations, GGD fits and selection add GPU-minutes per model)"]


def _disk(config: dict, assumed: dict, recipe: dict, baselines: dict, n_trainings: int) -> list[str]:
    """The crop store, the degraded sets and the checkpoints (``n_trainings``: the median number)."""
    training, n = config["training"], len(config["degradations"])
    lines = ["Disk"]
    train_images, train_pixels, how = _set_pixels(training["images"], assumed.get("training.images"))
    lines.append(
        f"  crop store (results/train/store): {_gb(train_pixels * 3)} for {train_images} training images ({how})"
    )
    sim_images, sim_pixels, how = _set_pixels(config["images"], assumed.get("images"))
    unseen = len(config["selection"]["unseen"])
    lines.append(
        f"  degraded similarity sets: {sim_images} images x {n} degradations ({how}): about "
        f"{_gb(sim_pixels * n * PNG_BYTES_PER_PIXEL)}"
    )
    for name, test in training["test_sets"].items():
        count, pixels, how = _set_pixels(test, assumed.get(f"training.test_sets.{name}"))
        lines.append(
            f"  test set {name}: {count} images x {n + unseen} degradations ({how}): about "
            f"{_gb(pixels * (n + unseen) * PNG_BYTES_PER_PIXEL)}"
        )
    archs = {(recipe["arch"], str(recipe["arch_kwargs"])): recipe} | {
        (b["arch"], str(b["arch_kwargs"])): b for b in baselines.values()
    }
    checkpoint_gb = 0.0
    for (arch, _), r in archs.items():
        size = _parameters(arch, r["arch_kwargs"]) * 4 * 3 / 1e9  # weights + AdamW's two moments
        checkpoint_gb += size * (n_trainings if r is recipe else 1)
        lines.append(f"  checkpoints {arch}: {size * 1e3:.0f} MB each (final + a resume file while training)")
    lines.append(f"  checkpoints in all: about {checkpoint_gb:.1f} GB (median number of trainings)")
    lines.append("  user images are referenced in place: only files needing a conversion are written again")
    return lines


def _ram() -> list[str]:
    return [
        "RAM per job (peak RSS measured by bench/bench_scale.py on CPU; flat in the number of images)",
        (
            f"  training: {MEASURED_RSS_MB['train'] / 1e3:.1f} GB host memory (SRResNet 32/4, batch 8 x 256², CPU); "
            "a CUDA job adds the CUDA context and libraries (a few GB, not measured here)"
        ),
        (
            f"  clean set: {MEASURED_RSS_MB['clean set'] / 1e3:.2f} GB with 2 worker processes (+ about 0.16 GB per "
            f"extra worker); crop store: {MEASURED_RSS_MB['crop store'] / 1e3:.2f} GB"
        ),
        f"  evaluation: {MEASURED_RSS_MB['evaluate'] / 1e3:.2f} GB on CPU for 2K test images (one image at a time)",
    ]

"""Stage ``train``: a restoration model for one degradation group, with online degradation.

Each training sample is a random crop of a clean training image with one degradation drawn
uniformly from the group (one degradation = single-task model; all = mix-all baseline), applied
online by the batched torch forms on the training device (JPEG and stroke masks on CPU).
AdamW (0.9, 0.999), L1 loss, learning rate a pure function of the step (linear warm-up, then
cosine to ``lr * min_lr_ratio``). bf16 autocast + channels_last on CUDA (optionally
``torch.compile``), fp32 on CPU.

Checkpoints (one self-describing file: weights, optimizer, step, RNG states, architecture + its
keyword arguments, recipe, package version, and in a resume checkpoint the training-log rows so
far, so that a resumed run's ``train_log.parquet`` is the uninterrupted run's) are written
atomically every ``checkpoint_every`` steps to a resume path that the workflow does not declare,
so a job killed by ``kill -9`` or by Slurm preemption (SIGTERM: saved, then exit 143 so the job is
requeued/retried) starts again from its last save. On CPU the resumed run's final weights equal an
uninterrupted run's exactly.
The file format (and loading a model from it) is :mod:`grids.checkpoint`.

    python -m grids.train --group gaussian_blur+jpeg --store results/train/store/index.parquet \
        --degradations '{...}' --recipe '{...}' --seed 0 --out results/models/gaussian_blur+jpeg/model.pth \
        --resume results/resume/gaussian_blur+jpeg.pth
"""

from __future__ import annotations

import argparse
import json
import math
import queue
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from . import __version__, io, tables
from .checkpoint import build_model, load_checkpoint, save_checkpoint
from .config import group_iterations
from .degradations import get_degradation
from .degradations.batched import Window, from_uint8_images
from .grouping.names import group_members
from .seeds import derive_seed
from .stage import pick_device, uses_bf16
from .store import CropStore, ImageList, random_crop


def learning_rate(step: int, recipe: dict) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine from ``lr`` to ``lr * min_lr_ratio``."""
    lr, total, warmup = recipe["lr"], recipe["iterations"], recipe["warmup"]
    if step < warmup:
        return lr * (step + 1) / warmup
    floor = lr * recipe["min_lr_ratio"]
    progress = (step - warmup) / max(1, total - warmup)
    return floor + 0.5 * (lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


class OnlineDegrader:
    """Random crops of clean images, each degraded by one degradation drawn from the group.

    ``images``: a list of uint8 arrays (held in memory) or a :class:`grids.store.CropStore` (read
    from disk a crop at a time); both draw the same random numbers and give the same crops.
    """

    def __init__(
        self,
        images: list[np.ndarray] | CropStore,
        degradations: dict,
        crop: int,
        device: torch.device,
        balanced: bool = False,
        canvas: int | None = None,
    ):
        source = images if isinstance(images, CropStore) else ImageList(images)
        small = [i for i in range(len(source)) if min(source.shape(i)) < crop]
        if small:
            raise ValueError(f"{len(small)} training image(s) smaller than the {crop} px crop")
        # The canvas is at most the smallest training image's side (one size for the whole batch).
        smallest = min((min(source.shape(i)) for i in range(len(source))), default=crop)
        self.canvas = max(crop, min(canvas or crop, smallest))
        self.images, self.crop, self.device = source, crop, device
        self.names = sorted(degradations)
        self.degradations = degradations
        self.balanced = balanced
        self.weights = np.ones(len(self.names))  # per member: the loss weight of its samples

    def balance_loss(self, seed: int, squared: bool = False, samples: int = 64) -> dict[str, float]:
        """Weight each member's samples by the inverse of its input's mean absolute error (mean
        squared error when ``squared``), measured once on ``samples`` calibration crops per member
        (their own random streams, so the training batches are untouched and a resumed run computes
        the same weights); the weights average 1. Returns each member's input error.

        With ``squared``, a member's weighted loss is its model's MSE relative to its input's: a
        first-order proxy of its PSNR gain, so every member's gain in dB counts alike, where plain
        MSE lets the members with large errors (noise, inpainting) decide the model.
        """
        scales = []
        for name in self.names:
            rng = np.random.default_rng(derive_seed(seed, "loss-scale", name))
            generator = torch.Generator(self.device).manual_seed(derive_seed(seed, "loss-scale", name, "noise") % 2**63)
            clean = from_uint8_images([random_crop(self.images, self.canvas, rng) for _ in range(samples)], self.device)
            params = [self.degradations[name].sample(rng, (self.canvas, self.canvas)) for _ in range(samples)]
            degraded = self.degradations[name].apply_batch(clean, params, generator)
            error = pixel_error(degraded, clean, squared).mean()
            scales.append(max(float(error), RELATIVE_LOSS_FLOOR ** (2 if squared else 1)))
        inverse = 1.0 / np.array(scales)
        self.weights = inverse / inverse.mean()
        return dict(zip(self.names, scales))

    def draw_members(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """Which member degrades each of ``size`` samples (indices into :attr:`names`).

        Uniform draws by default. ``balanced``: every member ``size // k`` times in each batch and
        the remainder spread over distinct members drawn at random, so no member is starved by
        chance in a short training; stateless, so a resumed run draws the same batches.
        """
        k = len(self.names)
        if not self.balanced:
            return rng.integers(k, size=size)
        members = np.concatenate([np.tile(np.arange(k), size // k), rng.permutation(k)[: size % k]])
        return rng.permutation(members)

    def batch(
        self, size: int, rng: np.random.Generator, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(degraded, clean)`` float tensors ``(size, 3, crop, crop)`` on the device, and each
        sample's loss weight ``(size,)`` (its member's, see :meth:`balance_loss`).

        With a ``canvas`` larger than the crop, each sample is degraded as a canvas-sized crop and
        the training crop cut from it at random: a degradation drawn per image size (inpainting's
        strokes: 5-10 per image whatever its size) then covers a training crop as it covers a test
        image, and a blur's borders lie outside the crop, as in a test image. The local degradations
        compute the crop alone (:class:`grids.degradations.batched.Window`). The numpy draws come in
        one order (crops, members, each member's parameters, the crops' corners): the degradations
        draw from ``generator`` only.
        """
        crops = [random_crop(self.images, self.canvas, rng) for _ in range(size)]
        canvas = from_uint8_images(crops, self.device)
        choice = self.draw_members(size, rng)
        present = [(self.degradations[name], np.flatnonzero(choice == k)) for k, name in enumerate(self.names)]
        present = [(deg, index) for deg, index in present if len(index)]
        params = [[deg.sample(rng, (self.canvas, self.canvas)) for _ in index] for deg, index in present]
        corners = (
            rng.integers(self.canvas - self.crop + 1, size=(size, 2))
            if self.canvas > self.crop
            else np.zeros((size, 2), np.int64)
        )
        clean = Window(corners, self.crop).cut(canvas)
        degraded = torch.empty_like(clean)
        # One batched call per degradation present, computing only its samples' crops (see batched.py).
        for (deg, index), drawn in zip(present, params):
            picked = torch.from_numpy(index).to(self.device)
            degraded[picked] = deg.apply_batch(canvas[picked], drawn, generator, Window(corners[index], self.crop))
        weight = torch.as_tensor(self.weights[choice], dtype=torch.float32, device=self.device)
        return degraded, clean, weight


class Prefetcher:
    """Batches of an :class:`OnlineDegrader`, built ``depth`` ahead on a background thread.

    On CUDA the thread works on its own stream, so degrading the next batch (its CPU parts
    included: JPEG, masks, parameter draws) overlaps the model's step instead of waiting for it.
    Each batch travels with the RNG states *after* it was drawn; :meth:`state` returns those of
    the last batch handed out, so a checkpoint resumes exactly where the consumer stopped, however
    far the thread has run ahead. ``depth=0`` builds each batch in the caller (same sequence).
    """

    def __init__(
        self, data: OnlineDegrader, size: int, rng: np.random.Generator, generator: torch.Generator, depth: int
    ):
        self.data, self.size, self.rng, self.generator, self.depth = data, size, rng, generator, depth
        self._state = self._snapshot()  # with a thread: the state before any batch was handed out
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stream = torch.cuda.Stream(data.device) if depth and data.device.type == "cuda" else None
        self._thread = None
        if depth:
            self._thread = threading.Thread(target=self._produce, name="grids-prefetch", daemon=True)
            self._thread.start()

    def _snapshot(self) -> tuple[str, torch.Tensor]:
        return json.dumps(self.rng.bit_generator.state), self.generator.get_state()

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                if self._stream is not None:
                    with torch.cuda.stream(self._stream):
                        batch = self.data.batch(self.size, self.rng, self.generator)
                    ready = self._stream.record_event()
                else:
                    batch, ready = self.data.batch(self.size, self.rng, self.generator), None
                self._put((batch, ready, self._snapshot()))
        except BaseException as err:  # handed to the consumer, raised there
            self._put((err, None, None))

    def _put(self, item) -> None:
        while not self._stop.is_set():  # a closed loader is never waited for
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.depth:
            return self.data.batch(self.size, self.rng, self.generator)
        batch, ready, state = self._queue.get()
        if isinstance(batch, BaseException):
            raise batch
        if ready is not None:  # the step's stream waits for the batch; the allocator learns who uses it
            current = torch.cuda.current_stream(self.data.device)
            current.wait_event(ready)
            for tensor in batch:
                tensor.record_stream(current)
        self._state = state
        return batch

    def state(self) -> tuple[str, torch.Tensor]:
        """``(numpy RNG state JSON, torch generator state)`` right after the last batch handed out."""
        return self._state if self.depth else self._snapshot()  # inline: the live RNGs are that state

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# The smallest input error a member's loss scale can have (one grey level; squared for an MSE): a
# degradation that barely changes its crops would otherwise get an unbounded weight.
RELATIVE_LOSS_FLOOR = 1.0 / 255


def squared_loss(recipe: dict) -> bool:
    """Whether ``training.loss`` is a mean squared error (``mse``, ``balanced_mse``) or an L1."""
    return recipe.get("loss", "l1") in ("mse", "balanced_mse")


def pixel_error(a: torch.Tensor, b: torch.Tensor, squared: bool) -> torch.Tensor:
    """Per element, ``|a - b|`` or, when ``squared``, ``(a - b)**2``: the loss's error and the
    balance's input error are the same kind."""
    return (a - b).square() if squared else (a - b).abs()


def restoration_loss(
    restored: torch.Tensor, clean: torch.Tensor, weight: torch.Tensor, squared: bool = False
) -> torch.Tensor:
    """The L1 loss of a batch ``(N, 3, H, W)``, each sample's mean absolute error weighted by
    ``weight (N,)`` (all ones: the plain L1); ``squared``: the mean squared error instead (MSE).

    Why MSE is offered: where a model cannot tell from a crop what to undo (a group whose members
    look alike at 32 px), the L1 optimum is the median correction, often exactly none, and a small
    model trained on such a group can collapse to the identity; the MSE optimum is the mean
    correction, and it is what PSNR scores (bench/bench_mixed.py)."""
    return (pixel_error(restored, clean, squared).mean(dim=(1, 2, 3)) * weight).mean()


def optimisation_step(
    model_fn,
    optimiser,
    degraded: torch.Tensor,
    clean: torch.Tensor,
    weight: torch.Tensor,
    bf16: bool,
    squared: bool = False,
) -> torch.Tensor:
    """One step: forward (bf16 autocast + channels_last when ``bf16``), weighted L1 (MSE when
    ``squared``), backward, update."""
    if bf16:
        degraded = degraded.contiguous(memory_format=torch.channels_last)
    with torch.autocast(degraded.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = restoration_loss(model_fn(degraded).float(), clean, weight, squared)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss


class WeightAverage:
    """An exponential moving average of a model's weights (``training.ema``: its decay, as
    BasicSR's ``params_ema``), the weights a training then saves as its model.

    The decay ramps up as ``min(decay, (1 + step) / (10 + step))``, so a short training is not
    dominated by its random initialisation. Kept in the parameters' dtype and device.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        self.model, self.decay = model, decay
        self.params = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, done: int) -> None:
        """After step ``done``: move the average towards the model's current weights."""
        weight = 1 - min(self.decay, (1 + done) / (10 + done))
        for key, value in self.model.state_dict().items():
            if value.is_floating_point():
                self.params[key].lerp_(value, weight)
            else:
                self.params[key].copy_(value)


class _Preempted(Exception):
    pass


class Preemption:
    """While entered, SIGTERM (Slurm preemption) only sets :attr:`requested`: the loop finishes
    its step, saves and exits to be requeued."""

    def __init__(self):
        self.requested = False

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> Preemption:
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._previous)


class Progress:
    """The training log (a row every 10 steps and at the last) and its display: a tqdm bar on a
    terminal; otherwise one line every ``every`` steps (default: about 100 a run), since a bar's
    carriage returns make a day of training one line of tens of MB."""

    def __init__(self, group: str, iterations: int, start_step: int, log: list[tuple], every: int | None = None):
        self.group, self.iterations, self.log = group, iterations, log
        self.terminal = sys.stderr.isatty()
        self.bar = tqdm(
            range(start_step, iterations),
            initial=start_step,
            total=iterations,
            desc=f"train {group}",
            unit="it",
            disable=not self.terminal,
        )
        # Log rows come every 10 steps, so progress lines do too.
        self.every = max(10, iterations // 100 // 10 * 10) if every is None else -(-every // 10) * 10
        self.tic, self.last_logged = time.perf_counter(), start_step

    def record(self, done: int, loss: torch.Tensor, lr: float) -> None:
        """After step ``done``: a log row (and maybe a progress line) when one is due."""
        if done % 10 and done != self.iterations:
            return
        rate = (done - self.last_logged) / max(time.perf_counter() - self.tic, 1e-9)
        self.tic, self.last_logged = time.perf_counter(), done
        self.log.append((done, loss.item(), lr, rate))
        self.bar.set_postfix(loss=f"{self.log[-1][1]:.4f}")
        if not self.terminal and (done % self.every == 0 or done == self.iterations):
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            print(
                f"{stamp} train {self.group}: step {done}/{self.iterations} loss {self.log[-1][1]:.4f} "
                f"lr {self.log[-1][2]:.3g} {rate:.2f} it/s",
                file=sys.stderr,
                flush=True,
            )

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.log, columns=tables.columns("train_log"))


def training_meta(group: str, entries: dict, recipe: dict, seed: int, bf16: bool) -> dict:
    """What a checkpoint records of its training (a resume checkpoint must match it)."""
    return {
        "arch": recipe["arch"],
        "arch_kwargs": json.dumps(recipe["arch_kwargs"], sort_keys=True),
        "group": group,
        "recipe": json.dumps(recipe, sort_keys=True),
        "degradations": json.dumps(entries, sort_keys=True),
        "seed": seed,
        "precision": "bf16" if bf16 else "fp32",
        "grids_version": __version__,
    }


def initial_state(group: str, recipe: dict, seed: int, device: torch.device):
    """``(model, optimiser, numpy rng, torch generator)`` of a training started from scratch, each
    seeded from ``seed`` and the group."""
    torch.manual_seed(derive_seed(seed, "train", group, "init"))
    model = build_model(recipe["arch"], recipe["arch_kwargs"]).to(device)
    optimiser = torch.optim.AdamW(
        model.parameters(), lr=recipe["lr"], betas=(0.9, 0.999), weight_decay=recipe["weight_decay"]
    )
    rng = np.random.default_rng(derive_seed(seed, "train", group, "data"))
    generator = torch.Generator(device).manual_seed(derive_seed(seed, "train", group, "noise") % 2**63)
    return model, optimiser, rng, generator


def resume_training(
    resume: Path,
    meta: dict,
    model,
    optimiser,
    rng: np.random.Generator,
    generator: torch.Generator,
    device,
    average: WeightAverage | None = None,
) -> tuple[int, list[tuple]]:
    """Load ``resume`` (when it exists and was written for this training) into the model,
    optimiser, RNGs and weight average; returns the step to start from and the log rows written
    before it."""
    if not resume.exists():
        return 0, []
    try:
        state = load_checkpoint(resume, device)
    except ValueError as err:
        raise ValueError(
            f"{err}; it is this training's resume checkpoint: delete it (rm {resume}) "
            "to start the training from scratch"
        ) from None
    if any(state[key] != meta[key] for key in ("recipe", "group", "degradations")):
        print(f"{resume}: written for another group/recipe, starting from scratch", file=sys.stderr)
        return 0, []
    model.load_state_dict(state["params"])
    optimiser.load_state_dict(state["optimizer"])
    if average is not None:
        average.params = {k: v.to(device) for k, v in state["params_ema"].items()}
    rng.bit_generator.state = json.loads(state["numpy_rng"])
    generator.set_state(state["torch_rng"].cpu())  # get_state is always a CPU tensor
    torch.set_rng_state(state["torch_cpu_rng"].cpu())
    print(f"resumed from {resume} at step {int(state['step'])}", file=sys.stderr)
    return int(state["step"]), [tuple(row) for row in json.loads(state.get("log", "[]"))]  # rows logged so far


def training_loop(
    step_fn,
    optimiser,
    data: Prefetcher,
    recipe: dict,
    progress: Progress,
    bf16: bool,
    save,
    stop_after,
    preemption,
    average: WeightAverage | None = None,
) -> bool:
    """The steps from where ``progress`` starts to ``recipe["iterations"]`` (each followed by the
    ``average``'s update), calling ``save(done)`` every ``checkpoint_every`` steps, on preemption
    (then raising :class:`_Preempted`) and at ``stop_after``; returns False when stopped there."""
    squared = squared_loss(recipe)
    for step in progress.bar:
        for param_group in optimiser.param_groups:
            param_group["lr"] = learning_rate(step, recipe)
        degraded, clean, weight = data.next()
        loss = optimisation_step(step_fn, optimiser, degraded, clean, weight, bf16, squared)
        done = step + 1
        if average is not None:
            average.update(done)
        progress.record(done, loss, optimiser.param_groups[0]["lr"])
        if done % recipe["checkpoint_every"] == 0 or preemption.requested or done == stop_after:
            save(done)
        if preemption.requested:
            raise _Preempted
        if done == stop_after:
            return False
    return True


def train(
    group: str,
    images: list[np.ndarray] | CropStore,
    entries: dict,
    recipe: dict,
    seed: int,
    out: str | Path,
    resume: str | Path,
    device: str = "auto",
    stop_after: int | None = None,
    precision: str | None = None,
    prefetch: int | None = None,
    log_path: str | Path | None = None,
    progress_every: int | None = None,
) -> pd.DataFrame:
    """Train the model of ``group`` and write it to ``out``; return the training log.

    ``entries`` are the config entries of the group's degradations; ``resume`` is where periodic
    checkpoints go (and are resumed from). ``stop_after`` ends the run after that many steps
    without writing ``out`` (as a kill would), for tests. ``precision`` overrides the recipe's
    (:func:`uses_bf16`). ``prefetch``: batches built ahead on
    a background thread (None: 2 on CUDA, where it keeps the GPU fed, 0 on CPU, where the thread
    would only compete with the step for cores); the batch sequence is the same either way.
    ``progress_every``: see :class:`Progress`. ``log_path``: the training log is also written
    there at every checkpoint, so it can be read while training.
    """
    device = pick_device(device)
    cuda = device.type == "cuda"
    bf16 = uses_bf16(recipe.get("precision", "auto") if precision is None else precision, device)
    members = group_members(group)
    recipe = {**recipe, "iterations": group_iterations(recipe, len(members))}
    degradations = {name: get_degradation(name, entries[name]) for name in members}
    meta = training_meta(group, {m: entries[m] for m in members}, recipe, seed, bf16)
    model, optimiser, rng, generator = initial_state(group, recipe, seed, device)
    average = WeightAverage(model, recipe["ema"]) if recipe.get("ema") else None
    resume = Path(resume)
    start_step, log = resume_training(resume, meta, model, optimiser, rng, generator, device, average)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    step_fn = torch.compile(model) if cuda and recipe.get("compile") else model
    balanced = recipe.get("balanced_batches", False)
    canvas = recipe.get("degrade_canvas")
    source = OnlineDegrader(images, degradations, recipe["crop"], device, balanced=balanced, canvas=canvas)
    if recipe.get("loss", "l1").startswith("balanced_") and len(members) > 1:
        scales = source.balance_loss(seed, squared_loss(recipe))
        print(f"{group}: loss weights from the inputs' errors {json.dumps(scales)}", file=sys.stderr)
    data = Prefetcher(
        source,
        recipe["batch_size"],
        rng,
        generator,
        (2 if cuda else 0) if prefetch is None else prefetch,
    )
    progress = Progress(group, recipe["iterations"], start_step, log, progress_every)

    def save(done: int) -> None:
        extra = {"log": json.dumps(progress.log)} | ({"params_ema": average.params} if average else {})
        save_checkpoint(resume, model, optimiser, done, data.state(), {**meta, **extra})
        if log_path is not None:
            tables.write(progress.frame(), "train_log", log_path)

    model.train()
    with Preemption() as preemption:
        try:
            finished = training_loop(
                step_fn, optimiser, data, recipe, progress, bf16, save, stop_after, preemption, average
            )
        finally:
            data.close()
    if finished:
        if average is not None:  # the model is the average
            model.load_state_dict(average.params)
        save_checkpoint(out, model, optimiser, recipe["iterations"], data.state(), meta)
    return progress.frame()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grids.train", description=__doc__.split("\n")[0])
    parser.add_argument("--group", required=True, help="canonical group name, e.g. gaussian_blur+jpeg")
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--store", help="crop store index.parquet (python -m grids.store): crops read from disk")
    data.add_argument("--clean", help="clean training manifest.parquet, decoded whole into memory (small sets)")
    parser.add_argument("--degradations", required=True, help="config entries of the group's degradations, JSON")
    parser.add_argument("--recipe", required=True, help="the config's training recipe, JSON")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True, help="final checkpoint (.pth)")
    parser.add_argument("--log", required=True, help="training log (.parquet)")
    parser.add_argument("--resume", required=True, help="periodic checkpoint to resume from (not a rule output)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--precision", choices=["auto", "bf16", "fp32"], help="overrides the recipe's (auto: bf16 on CUDA, AVX-512)"
    )
    parser.add_argument("--prefetch", type=int, default=None, help="batches built ahead (default: 2 on CUDA, 0 on CPU)")
    parser.add_argument(
        "--progress-every",
        type=int,
        default=None,
        help="steps between progress lines when stderr is not a terminal (default: ~100 lines a run)",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.store:  # memory and start-up independent of the training set's size
        images = CropStore.open(args.store)
    else:
        images = [io.load_png(p) for p in io.read_manifest(args.clean).path]
    try:
        log = train(
            args.group,
            images,
            json.loads(args.degradations),
            json.loads(args.recipe),
            args.seed,
            args.out,
            args.resume,
            args.device,
            precision=args.precision,
            prefetch=args.prefetch,
            log_path=args.log,
            progress_every=args.progress_every,
        )
    except _Preempted:
        print("SIGTERM: checkpoint saved, exiting to be requeued", file=sys.stderr)
        return 143
    tables.write(log, "train_log", args.log)
    Path(args.resume).unlink(missing_ok=True)  # finished: nothing to resume
    print(f"{args.group}: {len(log)} log rows -> {args.out}")
    return 0


if __name__ == "__main__":
    from .stage import run_stage

    sys.exit(run_stage(main))

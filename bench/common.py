"""What several benchmark scripts share. They run as ``.venv/bin/python bench/<script>.py``, which
puts this folder first on sys.path, so they import it as ``common`` (their spawned workers too:
multiprocessing hands its children the parent's sys.path)."""

from __future__ import annotations

import argparse
import json
import multiprocessing
from collections.abc import Callable

import numpy as np


def psnr_gains(model, clean, degraded) -> tuple[list[float], list[float], np.ndarray]:
    """Each degraded test image's PSNR against its clean image, before and after ``model`` restores
    it on CPU. ``clean`` and ``degraded`` map image ids to PNG paths (a manifest's ``path`` column
    indexed by ``image_id``). Returns the input PSNRs, the model's, and the gains (model - input, dB)."""
    from grids import io
    from grids.evaluate import psnr, restore

    inputs, outputs = [], []
    for image_id, path in degraded.items():
        target, image = io.load_png(clean[image_id]), io.load_png(path)
        inputs.append(psnr(image, target))
        outputs.append(psnr(restore(model, image, "cpu"), target))
    return inputs, outputs, np.array(outputs) - np.array(inputs)


def run_jobs(
    one_run: Callable, jobs: list[dict], workers: int, line: Callable[[dict], str], out: str | None, ordered: bool
) -> list[dict]:
    """``one_run`` on each job, ``workers`` spawned processes at a time. Each row a job returns (a
    dict, or a list of them) is printed as ``line(row)`` as soon as it comes, and with ``out``
    appended to that JSON-lines file, so that an interrupted run keeps what it measured. With
    ``ordered``, rows come in the jobs' order; without, as the jobs finish. Returns every row."""
    rows = []
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for result in (pool.imap if ordered else pool.imap_unordered)(one_run, jobs):
            for row in result if isinstance(result, list) else [result]:
                rows.append(row)
                print(line(row), flush=True)
                if out:
                    with open(out, "a") as f:
                        f.write(json.dumps(row) + "\n")
    return rows


def workflow_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by ``doc``'s first line, with the options of a benchmark that reads the
    workflow's results: the config, the results folder, and the test set to restore."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--results", default="results", help="the workflow's results folder")
    parser.add_argument("--test-set", default="heldout")
    return parser

"""Deep degradation representations (DDR): patches -> descriptor features -> per-set PCA -> GGD.

The SRGA recipe (docs/method.md §2-3), for one image set (the clean set or one degraded set):

1. ``n_patches`` seeded ``patch_size``² patches. The boxes depend only on the seed and the image
   ids/sizes, so every set is cropped at the same places: sets then differ by their degradation,
   not by content.
2. The descriptor's feature map at ``layer`` (default: the input of ``conv_last``, 64 channels
   at 4x the patch size), one row per patch: ``X [N, D]`` float32, on the compute device.
3. PCA to ``pca_components``, fitted on this set alone, through the N x N Gram matrix
   (``N << D``): centre ``X`` in place, ``G = X Xᵀ``, eigendecomposition in float64, scores =
   eigenvectors x sqrt(eigenvalues). Equal to sklearn's full SVD up to the sign of each
   component, at a fraction of the cost and with no second N x D copy (peak O(N·D) float32).
4. The flattened ``[N, k]`` scores -> GGD fit (:func:`grids.ggd.fit_ggd_torch`).

``kind: sift`` swaps step 2 for OpenCV SIFT descriptors (128-D per keypoint) of the whole images,
an ablation that asks whether the network's features matter.

An image's :class:`Signature` is this fit at several layers of one descriptor pass (the selector's
and the out-of-distribution statistics' input); its :meth:`Signature.vector` is the one place the
``[log alpha, log sigma]`` per layer is built.

Functions here take a complete ``features`` section (every key of the config's defaults): the
stages' ``main`` and :mod:`grids.config` fill in what a hand-written section leaves out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .ggd import GGD, fit_ggd_torch
from .nss import expand_layers
from .options import reads_descriptor
from .seeds import rng_for


@dataclass(frozen=True)
class Signature:
    """The GGD of one image (or image set) at each of several descriptor layers (SIFT: the one
    entry ``sift``), ``{layer: GGD}``."""

    ggds: Mapping[str, GGD]

    @classmethod
    def from_rows(cls, rows: pd.DataFrame) -> Signature:
        """From ``layer, alpha, sigma`` rows (one image's rows of ``references.parquet``)."""
        return cls({layer: GGD(a, s) for layer, a, s in zip(rows.layer, rows.alpha, rows.sigma)})

    def __getitem__(self, layer: str) -> GGD:
        return self.ggds[layer]

    def __contains__(self, layer: str) -> bool:
        return layer in self.ggds

    def __iter__(self):
        return iter(self.ggds)

    def vector(self, layers: list[str]) -> np.ndarray:
        """``[log alpha, log sigma]`` per layer of ``layers`` (``[2 * len(layers)]`` float64): the
        point of the signature space the ``knn``/``mahalanobis`` statistics and the signature
        choice compare."""
        layers = expand_layers(layers)  # `nss`: its 18 fits
        missing = [layer for layer in layers if layer not in self.ggds]
        if missing:
            raise ValueError(f"no signature at layers {missing}: rebuild the selection references")
        return np.log(np.array([(self.ggds[k].alpha, self.ggds[k].sigma) for k in layers], np.float64)).reshape(-1)


def patch_boxes(sizes: dict[str, tuple[int, int]], n: int, size: int, seed: int) -> list[tuple[str, int, int]]:
    """``n`` boxes ``(image_id, top, left)``, uniform over every valid patch position of the set.

    An image is chosen with probability proportional to its number of positions, so large images
    are not under-sampled; ids are sorted first, so the manifest's row order does not matter.
    """
    ids = sorted(sizes)
    small = [i for i in ids if min(sizes[i]) < size]
    if small:
        raise ValueError(f"images smaller than the {size} px patch size: {', '.join(small)}")
    positions = np.array([(sizes[i][0] - size + 1) * (sizes[i][1] - size + 1) for i in ids], np.float64)
    rng = rng_for(seed, "patches", n, size)
    chosen = rng.choice(len(ids), size=n, p=positions / positions.sum())
    boxes = []
    for index in chosen:
        h, w = sizes[ids[index]]
        boxes.append((ids[index], int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))))
    return boxes


class ImageFiles:
    """``image_id -> image`` of a set's files, decoded when asked, so a set is never held in memory
    whole; :meth:`sizes` reads the files' headers only."""

    def __init__(self, paths: dict[str, str]):
        self.paths = paths

    def __iter__(self):
        return iter(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, image_id: str) -> np.ndarray:
        from .io import load_png

        return load_png(self.paths[image_id])

    def sizes(self) -> dict[str, tuple[int, int]]:
        from PIL import Image

        sizes = {}
        for image_id, path in self.paths.items():
            with Image.open(path) as im:
                sizes[image_id] = (im.size[1], im.size[0])
        return sizes


def crop_patches(images, boxes: list[tuple[str, int, int]], size: int) -> np.ndarray:
    """``uint8 [N, size, size, 3]`` patches at ``boxes``; ``images`` maps ids to arrays (a dict or
    :class:`ImageFiles`). Each image is taken once, for all its patches, then let go."""
    patches = np.empty((len(boxes), size, size, 3), np.uint8)
    by_image: dict[str, list[int]] = {}
    for k, (image_id, _, _) in enumerate(boxes):
        by_image.setdefault(image_id, []).append(k)
    for image_id, ks in by_image.items():
        image = images[image_id]
        for k in ks:
            _, y, x = boxes[k]
            patches[k] = image[y : y + size, x : x + size]
    return patches


def descriptor_features(
    model: torch.nn.Module,
    patches: np.ndarray,
    layer: str = "conv_last_input",
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> torch.Tensor:
    """Feature rows ``[N, D]`` float32 on ``device`` (one flattened feature map per patch).

    The output is allocated once and filled batch by batch, so the peak is the N x D matrix plus
    one batch of activations.
    """
    return descriptor_layer_features(model, patches, [layer], device, batch_size)[layer]


@torch.no_grad()
def descriptor_layer_features(
    model: torch.nn.Module,
    patches: np.ndarray,
    layers: list[str],
    device: str | torch.device = "cpu",
    batch_size: int = 64,
) -> dict[str, torch.Tensor]:
    """``{layer: [N, D_layer]}`` as :func:`descriptor_features`, every layer from one pass of the
    network per batch (``model.forward_layers``)."""
    device = torch.device(device)
    rows: dict[str, torch.Tensor] = {}
    for start in range(0, len(patches), batch_size):
        batch = torch.from_numpy(patches[start : start + batch_size]).to(device)
        x = batch.permute(0, 3, 1, 2).float().div_(255)
        maps = model.forward_layers(x, list(layers))
        for layer in layers:
            feat = maps.pop(layer).reshape(len(batch), -1).float()
            if layer not in rows:
                rows[layer] = torch.empty((len(patches), feat.shape[1]), dtype=torch.float32, device=device)
            rows[layer][start : start + len(batch)] = feat
    return rows


def pca_scores(x: torch.Tensor, k: int) -> torch.Tensor:
    """PCA scores ``[N, k]`` (float64) of the rows of ``x [N, D]``; ``x`` is centred in place.

    Through the Gram matrix ``x xᵀ`` (N x N): for ``N << D`` this is the cheap side of the SVD.
    Components are sorted by decreasing variance. Signs follow scikit-learn's ``svd_flip`` with
    ``u_based_decision=True``: in each column the entry of largest magnitude is positive. The
    sign matters: after SRGA's outlier cut the mean of the kept values is not exactly 0, so
    flipping a skewed component moves the fitted alpha (by ~0.1 % on real features).
    """
    n = x.shape[0]
    if not 0 < k < n:
        raise ValueError(f"pca_components={k} must be in [1, n_patches - 1] = [1, {n - 1}] (centred rank)")
    x -= x.mean(dim=0, keepdim=True)
    gram = (x @ x.T).double()
    eigenvalues, eigenvectors = torch.linalg.eigh(gram)  # ascending
    top = torch.argsort(eigenvalues, descending=True)[:k]
    u = flip_signs(eigenvectors[:, top])
    return u * eigenvalues[top].clamp_min(0).sqrt()


def flip_signs(u):
    """Make the largest-magnitude entry of each column positive (torch tensor or numpy array)."""
    columns = range(u.shape[1])
    if isinstance(u, torch.Tensor):
        signs = torch.sign(u[u.abs().argmax(dim=0), columns])
    else:
        signs = np.sign(u[np.abs(u).argmax(axis=0), columns])
    signs[signs == 0] = 1
    return u * signs


def sift_features(images: Iterable[np.ndarray], n_max: int, seed: int) -> np.ndarray:
    """OpenCV SIFT descriptors (float32 ``[N, 128]``) of all images, subsampled to ``n_max`` rows."""
    import cv2

    sift = cv2.SIFT_create()
    rows = []
    for image in images:
        _, desc = sift.detectAndCompute(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), None)
        if desc is not None:
            rows.append(desc)
    if not rows:
        raise ValueError("SIFT found no keypoints in this set")
    x = np.concatenate(rows)
    if len(x) > n_max:
        x = x[np.sort(rng_for(seed, "sift", n_max).choice(len(x), n_max, replace=False))]
    return x.astype(np.float32)


def set_ggd(
    images: dict[str, np.ndarray] | ImageFiles,
    features: dict,
    seed: int,
    model: torch.nn.Module | None = None,
    device: str | torch.device = "cpu",
) -> tuple[GGD, int]:
    """GGD of one image set under the ``features`` section; also returns the number of values fitted."""
    if not reads_descriptor(features):  # a generator: one image decoded at a time for ImageFiles
        x = torch.from_numpy(sift_features((images[i] for i in sorted(images)), features["n_patches"], seed)).to(device)
    else:
        sizes = images.sizes() if isinstance(images, ImageFiles) else {i: img.shape[:2] for i, img in images.items()}
        boxes = patch_boxes(sizes, features["n_patches"], features["patch_size"], seed)
        patches = crop_patches(images, boxes, features["patch_size"])
        x = descriptor_features(model, patches, features["layer"], device)
    return features_ggd(x, features)


def features_ggd(x: torch.Tensor, features: dict) -> tuple[GGD, int]:
    """PCA of the feature rows ``x`` (centred in place, then freed by the caller) and the GGD fit
    of all scores; also returns the number of values fitted."""
    k = min(features["pca_components"], x.shape[0] - 1, x.shape[1])
    scores = pca_scores(x, k)
    del x
    return fit_ggd_torch(scores, outlier_stds=features["outlier_stds"]), scores.numel()

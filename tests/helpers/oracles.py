"""Independent oracles: what the answer must be, computed without chanstats' code.

One oracle per concept: :func:`torchvision_loader` is how torchvision's ``ImageFolder`` reads an
image (``pil_loader``: PIL open + ``convert("RGB")``); the statistics oracles build on it.
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image


def torchvision_pil_loader(path: Path | str) -> Image.Image:
    """What ``torchvision.datasets.folder.pil_loader`` returns: the image, converted to RGB."""
    with open(path, "rb") as handle:
        return Image.open(handle).convert("RGB")


def torchvision_loader(path: Path | str) -> np.ndarray:
    """:func:`torchvision_pil_loader` as an (H, W, 3) uint8 array."""
    return np.asarray(torchvision_pil_loader(path))


def pixels_01(paths) -> list[np.ndarray]:
    """Each image as torchvision's loader sees it, (H, W, 3) float64 on [0, 1]."""
    return [torchvision_loader(p).astype(np.float64) / 255 for p in paths]


def exact_mean_std(paths) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std over every pixel of every image, in numpy float64."""
    flat = np.concatenate([image.reshape(-1, 3) for image in pixels_01(paths)])
    return flat.mean(axis=0), flat.std(axis=0)


def exact_oracle(paths: list[Path]) -> tuple[list[float], list[float]]:
    """Per-channel mean and population std on [0,1] from Python integers, rounded once."""
    pixels = np.concatenate([torchvision_loader(p).reshape(-1, 3) for p in paths]).astype(np.int64)
    n = pixels.shape[0]
    means, stds = [], []
    for c in range(3):
        s = int(pixels[:, c].sum())
        q = sum(int(v) * int(v) * int(k) for v, k in zip(*np.unique(pixels[:, c], return_counts=True)))
        means.append(float(Fraction(s, n * 255)))
        with localcontext() as context:
            context.prec = 80
            stds.append(float((Decimal(n * q - s * s) / Decimal(n * n * 255 * 255)).sqrt()))
    return means, stds


def numpy_moments(pixels: np.ndarray, channels: int):
    """Per-channel sums, sums of squares, minima and maxima of interleaved 8-bit pixels, in numpy."""
    flat = pixels.reshape(-1, channels).astype(np.int64)
    return list(flat.sum(0)), list((flat * flat).sum(0)), list(flat.min(0)), list(flat.max(0))

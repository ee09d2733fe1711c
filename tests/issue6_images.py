"""Small real image files for the check/compare/export/per-image tests, and a numpy oracle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_dataset(folder: Path, count: int = 6, seed: int = 0, level: int = 128, spread: int = 60) -> list[Path]:
    """``count`` RGB PNGs of varied sizes with pixels around ``level``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        height, width = 8 + (i % 3) * 3, 10 + (i % 4) * 2
        pixels = np.clip(rng.normal(level + 10 * (i % 3), spread, (height, width, 3)), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:02d}.png"
        Image.fromarray(pixels, "RGB").save(path)
        paths.append(path)
    return paths


def write_constant(path: Path, value: int, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8), "RGB").save(path)
    return path


def pixels_01(paths) -> list[np.ndarray]:
    """Each image as torchvision's loader sees it, (H, W, 3) float64 on [0, 1]."""
    return [np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255 for p in paths]


def exact_mean_std(paths) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std over every pixel of every image, in numpy."""
    flat = np.concatenate([image.reshape(-1, 3) for image in pixels_01(paths)])
    return flat.mean(axis=0), flat.std(axis=0)

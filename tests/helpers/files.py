"""Small real image files written for the tests, and the repository's example images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples" / "images"


def write_image(path: Path, array: np.ndarray, mode: str | None = None, **save_options) -> Path:
    """Save ``array`` as an image file (format from the extension) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(path, **save_options)
    return path


def random_rgb(rng: np.random.Generator, height: int, width: int, low: int = 0, high: int = 256) -> np.ndarray:
    return rng.integers(low, high, size=(height, width, 3), dtype=np.uint8)


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


def make_dataset(root: Path, count: int = 14, seed: int = 7, corrupt: int = 0) -> Path:
    """``count`` random RGB PNG/JPEG files of varying sizes (some in a sub-folder), plus
    ``corrupt`` truncated JPEGs; returns the folder."""
    rng = np.random.default_rng(seed)
    folder = root / "data"
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        height, width = (int(v) for v in rng.integers(4, 48, 2))
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        where = folder / "sub" if i % 4 == 0 else folder
        Image.fromarray(pixels).save(where / f"img{i:03d}.{'png' if i % 2 else 'jpg'}")
    for j in range(corrupt):
        good = folder / "img001.png"
        (folder / f"bad{j}.png").write_bytes(good.read_bytes()[:60])
    return folder

"""Shared by the shard/merge, torchrun and checkpoint tests: small real image files and a runner
for the real ``chanstats`` command."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from .conftest import chanstats_command


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


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    result = subprocess.run(chanstats_command() + args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"chanstats {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result

"""Shared fixtures: small real image files written into tmp_path, and the installed CLI."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "images"


def require(module: str):
    """Import an optional test dependency: skip when it is missing, but fail under CI (``CI`` set),
    where the ``test`` extra installs it and a skip would hide the tests that need it."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def write_image(path: Path, array: np.ndarray, mode: str | None = None, **save_options) -> Path:
    """Save ``array`` as an image file (format from the extension) and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    image.save(path, **save_options)
    return path


def random_rgb(rng: np.random.Generator, height: int, width: int, low: int = 0, high: int = 256) -> np.ndarray:
    return rng.integers(low, high, size=(height, width, 3), dtype=np.uint8)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@dataclass(frozen=True)
class Engine:
    """How a test runs the measuring engine: in this process, or through the worker pool.

    The engine measures runs of at most 16 images in-process whatever ``workers`` says, so a pool
    run adds ``padding`` tiny good images: enough for several chunks, each measured by a worker.
    """

    workers: int
    padding: int

    @property
    def options(self) -> list[str]:
        """The command-line options that select this engine."""
        return ["--workers", str(self.workers)]

    def pad(self, folder: Path, name: str = "pad") -> list[Path]:
        """Write ``padding`` good 8×8 PNGs into ``folder/name`` (each a different flat colour)."""
        return [
            write_image(folder / name / f"p{i:03d}.png", np.full((8, 8, 3), (7 * i % 256, 60 + i, 200 - i), dtype=np.uint8))
            for i in range(self.padding)
        ]

    def padded(self, inputs: list[str], folder: Path) -> list[str]:
        """``inputs`` followed by a folder of padding images, when this engine needs them."""
        return [*inputs, str(folder)] if self.pad(folder) else list(inputs)


IN_PROCESS = Engine(workers=0, padding=0)
POOL = Engine(workers=2, padding=40)


@pytest.fixture(params=[IN_PROCESS, POOL], ids=["in-process", "pool"])
def engine(request) -> Engine:
    """Runs a test once in-process and once through 2 worker processes (with padding images)."""
    return request.param


@pytest.fixture
def rgb_folder(tmp_path: Path, rng: np.random.Generator) -> Path:
    """Seven RGB PNG/JPEG images of different sizes and brightness in nested folders."""
    root = tmp_path / "data"
    for i in range(7):
        height, width = 20 + 3 * i, 30 - 2 * i
        array = random_rgb(rng, height, width, low=10 * i, high=200 + 8 * i)
        name = f"class{i % 2}/img{i:02d}." + ("png" if i % 3 else "jpg")
        write_image(root / name, array, quality=95)
    return root


def chanstats_command() -> list[str]:
    """The installed console script next to this interpreter (falls back to ``python -m``)."""
    script = Path(sys.executable).with_name("chanstats")
    if script.exists():
        return [str(script)]
    found = shutil.which("chanstats")
    return [found] if found else [sys.executable, "-m", "chanstats"]


def run_cli(*args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("CHANSTATS_DEBUG", None)
    return subprocess.run(
        [*chanstats_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, check=check, timeout=300
    )

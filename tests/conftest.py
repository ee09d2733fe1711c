"""Shared fixtures: small real image files written into tmp_path, and the installed CLI."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
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

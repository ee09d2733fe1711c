"""Shared fixtures: small real image files written into tmp_path (the helpers themselves live in
tests/helpers), and the kernel requirement."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .helpers.engines import IN_PROCESS, POOL, Engine
from .helpers.files import random_rgb, write_image


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


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


@pytest.fixture(autouse=True, scope="session")
def _measurement_cache_isolated(tmp_path_factory):
    """No test uses a measurement cache it did not ask for, nor writes into the user's cache
    folder: ``$CHANSTATS_CACHE`` (which turns the cache on) is cleared and ``--cache default``
    points into a temporary folder (``$CHANSTATS_CACHE_HOME``); subprocesses inherit both."""
    import os

    saved = {name: os.environ.get(name) for name in ("CHANSTATS_CACHE", "CHANSTATS_CACHE_HOME")}
    os.environ.pop("CHANSTATS_CACHE", None)
    os.environ["CHANSTATS_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache-home"))
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def _pillow_limit_restored():
    """Pillow's decompression-bomb limit is process-wide: a test (or an example it runs) that lifts
    it must not leave later tests decoding real bombs in full."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = limit

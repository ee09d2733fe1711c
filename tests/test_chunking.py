"""The output is the same bytes however the work is cut into chunks and whatever the number of
workers: chunk sizes follow the workers' pace (so they differ from run to run), and nothing that
is written may depend on them. Each variant runs the command in this process (so the chunking can be
forced) and is compared with the installed ``chanstats`` command run with its own chunking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from chanstats.cli import cli
from chanstats.scale import engine
from chanstats.sources.base import ImageSource

from .helpers.cli import run
from .helpers.files import write_image

IMAGES = 200
# (workers, images per chunk); None keeps the engine's own sizes. 200 puts everything in one chunk.
VARIANTS = [(0, None), (1, None), (2, None), (1, 1), (2, 1), (2, 7), (2, IMAGES)]


def _rgb_folder(root: Path) -> Path:
    """200 files of varied sizes, kinds and contents, four of them unreadable."""
    rng = np.random.default_rng(16)
    folder = root / "data"
    for i in range(IMAGES - 4):
        height, width = 5 + i % 7, 6 + i % 5
        pixels = np.clip(rng.normal(90 + i % 50, 40, (height, width, 3)), 0, 255).astype(np.uint8)
        if i % 9 == 0:
            write_image(folder / f"img{i:03d}.jpg", pixels, quality=90)
        elif i % 13 == 0:
            write_image(folder / f"img{i:03d}.png", pixels[:, :, 0], "L")
        else:
            write_image(folder / f"img{i:03d}.png", pixels)
    for i in (3, 77, 150, 199):  # bad images spread over the listing: other chunks each time
        (folder / f"bad{i:03d}.png").write_bytes(b"not an image")
    return root


def _float_folder(root: Path) -> Path:
    """200 float32 rasters: their moments are merged in floating point, where order matters."""
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(61)
    folder = root / "data"
    folder.mkdir(parents=True)
    for i in range(IMAGES):
        band = rng.normal(100.0 + i, 30.0 + i % 11, (4 + i % 5, 3 + i % 4)).astype(np.float32)
        tifffile.imwrite(folder / f"dem{i:03d}.tif", band)
    return root


def _fixed_chunks(monkeypatch, size: int | None) -> None:
    if size is not None:
        monkeypatch.setattr(engine, "_guided_size", lambda left, workers, smallest, largest: size)


@pytest.mark.parametrize("kind, options", [
    ("rgb", ["--on-error", "skip", "--percentiles", "1,50,99"]),
    ("float", ["--mode", "keep", "--nodata", "nan"]),
])
def test_same_bytes_for_any_chunking_and_worker_count(tmp_path, monkeypatch, kind, options):
    root = _rgb_folder(tmp_path) if kind == "rgb" else _float_folder(tmp_path)
    monkeypatch.chdir(root)
    common = ["compute", "data", "-q", "--batch-size", "8", *options]
    run([*common, "-o", "reference.json", "--per-image", "reference.csv", "--workers", "2"], cwd=root)
    reference = (root / "reference.json").read_bytes(), (root / "reference.csv").read_bytes()
    assert b'"images": ' in reference[0] and reference[1].count(b"\n") > IMAGES - 4  # header + each good image
    for workers, size in VARIANTS:
        with monkeypatch.context() as patch:
            _fixed_chunks(patch, size)
            name = f"w{workers}-c{size}"
            done = CliRunner().invoke(cli, [*common, "-o", f"{name}.json", "--per-image", f"{name}.csv",
                                            "--workers", str(workers)])
        assert done.exit_code == 0, done.output
        got = (root / f"{name}.json").read_bytes(), (root / f"{name}.csv").read_bytes()
        assert got == reference, f"--workers {workers}, chunks of {size or 'the engine’s own size'} differ"


def test_forced_chunk_sizes_really_cut_the_work(monkeypatch):
    # The test above is only as good as its forcing: the chunks must follow it.
    listing = [ImageSource("d", f"{i}.png", 1) for i in range(IMAGES)]
    for size in (1, 7, IMAGES):
        with monkeypatch.context() as patch:
            _fixed_chunks(patch, size)
            units = list(engine._units(listing, 2, lambda: (engine.CHUNK_SIZE, engine.LARGEST_TIMED_CHUNK)))
        assert {stop - start for start, stop in units[:-1]} <= {size}
        assert units[0][0] == 0 and units[-1][1] == IMAGES

"""Exports for multi-band data (kornia, torchgeo style, percentile clipping) from configs the
installed command computed on uint16 rasters with a nodata border through the worker pool,
checked against numpy on the pooled pixels and loaded through kornia itself."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest

from .helpers.cli import run
from .helpers.optional import require

tifffile = pytest.importorskip("tifffile")

BANDS = ["B02", "B03", "B04", "B08"]


def _tile(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # A skewed spread (bright outliers), so clipping at 0.5/99.5 changes the statistics.
    pixels = (rng.gamma(2.0, 600.0, (20, 16, 4)) + 1).clip(1, 65535).astype(np.uint16)
    pixels[:2] = 0  # nodata border
    return pixels


@pytest.fixture(scope="module")
def raster_config(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_rasters")
    (root / "data").mkdir()
    tiles = [_tile(seed) for seed in range(42)]
    for seed, pixels in enumerate(tiles):
        tifffile.imwrite(root / "data" / f"t{seed:02d}.tif", pixels, photometric="minisblack", planarconfig="contig")
    run(["compute", "data", "--mode", "keep", "--nodata", "0", "--scale", "10000", "--channels", ",".join(BANDS),
         "--workers", "2", "-q", "-o", "stats.json"], cwd=root)
    pooled = np.concatenate([t.reshape(-1, 4) for t in tiles])
    kept = [pooled[:, c][pooled[:, c] != 0].astype(np.int64) for c in range(4)]
    return root, kept


def _export(root, fmt, *args):
    return run(["export", "stats.json", "--to", fmt, *args], cwd=root).stdout


def _exact_mean_std(values: np.ndarray) -> tuple[float, float]:
    """Correctly rounded mean and population std from exact integer sums (the numpy oracle)."""
    n, s, q = values.size, int(values.sum()), int((values * values).sum())
    return s / n, math.sqrt(Fraction(n * q - s * s, n * n))


@pytest.mark.parametrize("clip", [None, "1,99", "2,98"])
def test_percentile_clip_bounds_and_clipped_statistics_match_numpy(raster_config, clip):
    root, kept = raster_config
    data = json.loads(_export(root, "percentile-clip", *([] if clip is None else ["--clip", clip])))
    low_q, high_q = (0.5, 99.5) if clip is None else map(float, clip.split(","))
    assert data["percentiles"] == [low_q, high_q] and data["channels"] == BANDS and data["scale"] == 10000
    for c, values in enumerate(kept):
        low, high = (int(np.percentile(values, q, method="inverted_cdf")) for q in (low_q, high_q))
        clipped = np.clip(values, low, high)
        mean, std = _exact_mean_std(clipped)
        assert (data["raw"]["low"][c], data["raw"]["high"][c]) == (low, high)
        assert data["raw"]["mean"][c] == mean
        assert data["raw"]["std"][c] == pytest.approx(std, rel=1e-15)
        assert data["scaled"]["mean"][c] == pytest.approx(mean / 10000, rel=1e-15)
        assert data["scaled"]["std"][c] == pytest.approx(std / 10000, rel=1e-15)
        unclipped_mean, _ = _exact_mean_std(values)
        assert mean != unclipped_mean  # the outliers were clipped


def test_percentile_clip_refuses_a_pair_the_config_lacks(raster_config):
    root, _ = raster_config
    result = run(["export", "stats.json", "--to", "percentile-clip", "--clip", "5,95"], cwd=root, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--clip 5,95" in result.stderr and "recompute with --percentiles" in result.stderr
    bad = run(["export", "stats.json", "--to", "percentile-clip", "--clip", "99,1"], cwd=root, check=False)
    assert bad.returncode == 2 and "LOW < HIGH" in bad.stderr


def test_kornia_normalize_on_the_scaled_pixels_gives_zero_mean_unit_std(raster_config):
    root, kept = raster_config
    torch = require("torch")
    require("kornia")
    text = _export(root, "kornia")
    assert "divided by 10000" in text
    namespace: dict = {}
    exec(text, namespace)
    for c, values in enumerate(kept):
        mean, std = _exact_mean_std(values)
        band = torch.zeros(1, 4, 1, values.size, dtype=torch.float64)
        band[0, c, 0] = torch.from_numpy(values / 10000)
        out = namespace["normalize"](band)[0, c, 0].numpy()
        assert out.mean() == pytest.approx(0, abs=1e-6) and out.std() == pytest.approx(1, rel=1e-6)
        # float32 tensors, as kornia keeps them; the text itself carries every float64 digit.
        assert float(namespace["normalize"].flags["mean"][c]) == pytest.approx(mean / 10000, rel=1e-7)
        assert float(namespace["normalize"].flags["std"][c]) == pytest.approx(std / 10000, rel=1e-7)
        assert repr(float(Fraction(int(values.sum()), values.size * 10000))) in text


def test_torchgeo_style_tensors_are_raw_units_named_by_band(raster_config):
    root, kept = raster_config
    text = _export(root, "torchgeo")
    for name in BANDS:
        assert text.count(f"# {name}\n") == 2  # one MEAN line and one STD line per band
    require("kornia")
    namespace: dict = {}
    exec(text, namespace)
    for c, values in enumerate(kept):
        mean, std = _exact_mean_std(values)
        assert namespace["MEAN"].dtype == namespace["STD"].dtype
        assert namespace["MEAN"][c].item() == pytest.approx(mean, rel=1e-6)  # float32 tensors
        assert namespace["STD"][c].item() == pytest.approx(std, rel=1e-6)
    assert type(namespace["normalize"]).__name__ == "Normalize"

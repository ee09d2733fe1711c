"""`--percentiles auto`, the default: percentiles where the pixels are counted anyway (data wider than
8 bits, nodata-masked bands, --histogram), none for plain 8-bit photos unless asked for by name;
configs of earlier versions (which recorded no percentiles option for the standard list) still
replay under `check`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.cli import run_cli
from tests.helpers.files import write_image
from tests.helpers.state_files import edit_json

STANDARD = [0.5, 1, 2, 50, 98, 99, 99.5]


def oracle_percentiles(pixels: np.ndarray, qs) -> list[list[int]]:
    """Per-channel percentiles of (N, C) pixels, or of a flat array of one channel."""
    flat = pixels if pixels.ndim == 2 else pixels.reshape(-1, 1)
    return [[int(np.percentile(flat[:, c], q, method="inverted_cdf")) for c in range(flat.shape[1])] for q in qs]


def compute(inputs: list[str], *options: str, cwd: Path | None = None) -> dict:
    done = run_cli("compute", *inputs, "-q", *options)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def photos(rgb_folder, engine, tmp_path):
    """The JPEG/PNG photos of ``rgb_folder`` (padded with more when the pool runs) and their
    pixels as Pillow decodes them."""
    inputs = engine.padded([str(rgb_folder)], tmp_path / "padding")
    files = sorted(p for folder in inputs for p in Path(folder).rglob("*") if p.is_file())
    pixels = np.concatenate([np.asarray(Image.open(p).convert("RGB")).reshape(-1, 3) for p in files])
    return inputs, pixels


def test_8bit_photos_have_no_percentiles_unless_asked_by_name(photos, engine):
    inputs, pixels = photos
    default = compute(inputs, *engine.options)
    assert "percentiles" not in default and "percentiles" not in default["options"]
    asked = compute(inputs, *engine.options, "--percentiles", "0.5,1,2,50,98,99,99.5")
    assert asked["options"]["percentiles"] == STANDARD  # recorded: it is not the default any more
    assert asked["percentiles"]["method"] == "exact inverted_cdf"
    assert asked["percentiles"]["raw"] == oracle_percentiles(pixels, STANDARD)
    assert asked["exact"] == default["exact"] and asked["running"] == default["running"]


def test_histogram_makes_8bit_percentiles_free(photos, engine):
    inputs, pixels = photos
    config = compute(inputs, *engine.options, "--histogram")
    assert config["options"]["histogram"] is True and "percentiles" not in config["options"]
    assert config["percentiles"]["raw"] == oracle_percentiles(pixels, STANDARD)
    none = compute(inputs, *engine.options, "--histogram", "--percentiles", "none")
    assert "percentiles" not in none and none["histogram"] == config["histogram"]


def test_16bit_data_keeps_its_percentiles_by_default(tmp_path, rng):
    wide = [rng.integers(0, 4096, (9, 11), dtype=np.uint16) for _ in range(3)]
    for i, pixels in enumerate(wide):
        Image.fromarray(pixels).save(tmp_path / f"w{i}.png")
    config = compute([str(tmp_path)], "--mode", "keep", "--workers", "0")
    assert "percentiles" not in config["options"]
    pooled = np.concatenate([p.ravel() for p in wide])
    assert config["percentiles"]["raw"] == oracle_percentiles(pooled, STANDARD)


def test_nodata_masked_8bit_pixels_keep_their_percentiles_by_default(tmp_path, rng):
    pixels = rng.integers(0, 6, (12, 10, 3), dtype=np.uint8)
    write_image(tmp_path / "masked.png", pixels)
    config = compute([str(tmp_path)], "--nodata", "0", "--workers", "0")
    expected = [[int(np.percentile(pixels[..., c][pixels[..., c] != 0], q, method="inverted_cdf")) for c in range(3)]
                for q in STANDARD]
    assert config["percentiles"]["raw"] == expected


@pytest.mark.parametrize("recorded", [None, "none", [1, 50, 99]])
def test_check_replays_configs_of_earlier_versions(rgb_folder, tmp_path, recorded):
    """Earlier versions recorded no ``percentiles`` option for the standard list (their default)
    and wrote the percentiles section; "none" and other lists were recorded as given."""
    config = compute([str(rgb_folder)], "--workers", "0", "--percentiles", "0.5,1,2,50,98,99,99.5")
    if recorded is None:
        del config["options"]["percentiles"]
    else:
        config["options"]["percentiles"] = recorded
    path = tmp_path / "old.json"
    path.write_text(json.dumps(config))
    done = run_cli("check", str(rgb_folder), "--against", str(path), "--workers", "0")
    assert done.returncode == 0, done.stdout + done.stderr


def test_unknown_percentiles_word_is_refused_in_one_line(rgb_folder):
    done = run_cli("compute", str(rgb_folder), "--percentiles", "some", "--workers", "0")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "auto or none" in done.stderr


def test_parts_with_histograms_of_only_some_images_are_refused(tmp_path, rgb_folder):
    """A part written before percentiles became auto (its options record no percentiles, like
    today's, but it holds 8-bit histograms) merged with a part of today: percentiles from half the
    images would not be exact, so the merge stops with one line."""
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    done = run_cli("compute", str(rgb_folder), "--shard", "1/2", "--partial", str(old), "--workers", "0", "-q",
                   "--percentiles", "0.5,1,2,50,98,99,99.5")
    assert done.returncode == 0, done.stderr
    # what the earlier version recorded for its default (resealed: the edit is not damage)
    edit_json(old, lambda data: data["options"].pop("percentiles"))
    assert run_cli("compute", str(rgb_folder), "--shard", "2/2", "--partial", str(new), "--workers", "0", "-q").returncode == 0
    merged = run_cli("merge", str(old), str(new))
    assert merged.returncode == 2 and merged.stderr.count("\n") == 1 and "only some of the images" in merged.stderr
    assert merged.stdout == ""

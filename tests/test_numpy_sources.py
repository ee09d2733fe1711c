"""NumPy files as sources: ``.npy`` stacks and single images, ``.npz`` members, through the
installed command and the worker pool, against NumPy's own mean and std."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from .helpers.cli import run_cli

COUNT = 48  # more than one chunk, so that two workers share the stack


def compute(*args: str) -> tuple[dict, str]:
    result = run_cli("compute", "-q", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stdout


def test_an_npy_stack_is_measured_exactly_and_identically_for_any_workers(tmp_path):
    stack = np.random.default_rng(0).integers(0, 256, size=(COUNT, 9, 13, 3), dtype=np.uint8)
    np.save(tmp_path / "stack.npy", stack)
    config, text = compute(str(tmp_path / "stack.npy"), "--workers", "2", "--batch-size", "8")
    assert text == compute(str(tmp_path / "stack.npy"), "--workers", "0", "--batch-size", "8")[1]
    pixels = stack.reshape(-1, 3) / 255
    assert config["exact"]["method"] == "integer" and config["count"]["images"] == COUNT
    np.testing.assert_allclose(config["exact"]["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(config["exact"]["std"], pixels.std(axis=0), rtol=1e-12)


def test_npz_members_and_single_image_files(tmp_path):
    rng = np.random.default_rng(1)
    stack = rng.integers(0, 65536, size=(COUNT, 7, 5, 4), dtype=np.uint16)
    single = rng.integers(0, 65536, size=(7, 5, 4), dtype=np.uint16)
    np.savez_compressed(tmp_path / "data.npz", images=stack, extra=single)
    np.save(tmp_path / "one.npy", single)
    rows = tmp_path / "rows.csv"
    config, _ = compute(str(tmp_path / "data.npz"), str(tmp_path / "one.npy"), "--workers", "2", "--per-image", str(rows))
    pixels = np.concatenate([stack.reshape(-1, 4), single.reshape(-1, 4), single.reshape(-1, 4)]) / 65535
    assert config["exact"]["method"] == "integer" and config["scale"] == 65535
    np.testing.assert_allclose(config["exact"]["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(config["exact"]["std"], pixels.std(axis=0), rtol=1e-12)
    with open(rows, newline="") as handle:
        names = [row["path"] for row in csv.DictReader(handle)]
    npz = tmp_path / "data.npz"
    assert names == [f"{npz}::images/{i}" for i in range(COUNT)] + [f"{npz}::extra", str(tmp_path / "one.npy")]


def test_float_arrays_take_the_float64_path(tmp_path):
    stack = np.random.default_rng(2).normal(0.3, 2.0, size=(COUNT, 6, 6, 2)).astype(np.float32)
    np.save(tmp_path / "floats.npy", stack)
    config, _ = compute(str(tmp_path / "floats.npy"), "--workers", "2")
    pixels = stack.reshape(-1, 2).astype(np.float64)
    assert config["exact"]["method"] == "float64"
    np.testing.assert_allclose(config["exact"]["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(config["exact"]["std"], pixels.std(axis=0), rtol=1e-12)


def test_a_channels_first_stack_and_a_broken_file_are_one_line_errors(tmp_path):
    np.save(tmp_path / "chw.npy", np.zeros((4, 3, 32, 32), dtype=np.uint8))
    result = run_cli("compute", str(tmp_path / "chw.npy"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "reads as (N, H, W, C) with 32 channels of 3×32 pixels, or as channels-first (C, H, W) with 3 channels" in result.stderr
    (tmp_path / "broken.npy").write_bytes(b"\x93NUMPY garbage")
    result = run_cli("compute", str(tmp_path / "broken.npy"))
    assert result.returncode == 2 and result.stderr.startswith(f"Error: {tmp_path / 'broken.npy'}: not a readable NumPy file")


RANDOM_SPEC = "[{RandomResizedCrop: {size: 6, antialias: true}}, RandomHorizontalFlip, ToImage, {ToDtype: {dtype: float32, scale: true}}]"


def test_a_transform_sees_a_uint8_stack_as_the_pil_images_a_folder_of_its_pngs_gives(tmp_path):
    from PIL import Image

    stack = np.random.default_rng(3).integers(0, 256, size=(COUNT, 9, 13, 3), dtype=np.uint8)
    np.save(tmp_path / "stack.npy", stack)
    (tmp_path / "folder").mkdir()
    for i, pixels in enumerate(stack):
        Image.fromarray(pixels).save(tmp_path / "folder" / f"{i:03d}.png")
    common = ("--transform", RANDOM_SPEC, "--epochs", "2", "--batch-size", "8")
    config, text = compute(str(tmp_path / "stack.npy"), "--workers", "2", *common)
    assert text == compute(str(tmp_path / "stack.npy"), "--workers", "0", *common)[1]
    folder, _ = compute(str(tmp_path / "folder"), "--workers", "0", *common)  # any --workers: test_transforms.py
    assert config["exact"]["method"] == "float64" and config["count"]["samples"] == 2 * COUNT
    for part in ("exact", "running"):
        assert config[part] == folder[part]


@pytest.mark.slow  # about 15 s: a transform's workers start from a fresh forkserver
def test_a_transform_takes_a_multiband_uint16_stack_as_channels_first_tensors(tmp_path):
    stack = np.random.default_rng(4).integers(0, 65536, size=(COUNT, 9, 11, 5), dtype=np.uint16)
    np.save(tmp_path / "bands.npy", stack)
    config, text = compute(str(tmp_path / "bands.npy"), "--workers", "2", "--transform", "[{CenterCrop: {size: 5}}]")
    assert text == compute(str(tmp_path / "bands.npy"), "--workers", "0", "--transform", "[{CenterCrop: {size: 5}}]")[1]
    pixels = stack[:, 2:7, 3:8, :].reshape(-1, 5) / 65535  # the central 5×5 of each 9×11 image
    assert config["exact"]["method"] == "integer" and config["scale"] == 65535 and len(config["channels"]) == 5
    np.testing.assert_allclose(config["exact"]["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(config["exact"]["std"], pixels.std(axis=0), rtol=1e-12)

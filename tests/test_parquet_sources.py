"""Parquet, Arrow and Hugging Face ``datasets`` tables as sources, written by the ``datasets``
library and by pyarrow, measured through the installed command and the worker pool."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .helpers.cli import run_cli
from .helpers.oracles import exact_oracle
from .helpers.optional import require

IMAGES = 48  # more than one chunk, so that two workers share the rows


def write_folder(root: Path, count: int = IMAGES, seed: int = 3) -> list[Path]:
    """JPEG, PNG and greyscale PNG files of different sizes, in chanstats' listing order."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        folder = root / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(10 * (i % 5), 200 + 10 * (i % 5), size=(18 + i % 7, 25 + i % 4, 3), dtype=np.uint8)
        if i % 3 == 0:
            path = folder / f"{i:03d}.jpg"
            Image.fromarray(pixels).save(path, quality=88)
        elif i % 3 == 1:
            path = folder / f"{i:03d}.png"
            Image.fromarray(pixels).save(path)
        else:
            path = folder / f"{i:03d}.png"
            Image.fromarray(pixels[:, :, 0]).save(path)
        paths.append(path)
    return sorted(paths, key=lambda p: os.fsencode(p.relative_to(root)))


def hub_dataset(paths: list[Path]):
    """A ``datasets`` Dataset with an Image feature, its bytes embedded as ``push_to_hub`` does."""
    datasets = require("datasets")
    from datasets.table import embed_table_storage

    dataset = datasets.Dataset.from_dict({"image": [str(p) for p in paths], "label": list(range(len(paths)))})
    dataset = dataset.cast_column("image", datasets.Image())
    return dataset.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)


def numbers(path: Path | str, *args: str) -> dict:
    """The statistics of a ``chanstats compute`` run (exit 0 required): exact and running."""
    result = run_cli("compute", str(path), "-q", "--batch-size", "8", *args)
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout)
    return {"exact": config["exact"], "running": config["running"], "count": config["count"]}


@pytest.fixture(scope="module")
def folder_and_tables(tmp_path_factory):
    root = tmp_path_factory.mktemp("hub")
    paths = write_folder(root / "folder")
    dataset = hub_dataset(paths)
    dataset.to_parquet(str(root / "train.parquet"), batch_size=10)  # row groups of 10 rows
    dataset.save_to_disk(str(root / "saved"))
    snapshot = root / "snapshot"
    (snapshot / "data").mkdir(parents=True)
    (snapshot / "README.md").write_text("---\nlicense: mit\n---\n")
    dataset.select(range(20)).to_parquet(str(snapshot / "data" / "train-00000-of-00002.parquet"))
    dataset.select(range(20, len(paths))).to_parquet(str(snapshot / "data" / "train-00001-of-00002.parquet"))
    return root, paths


def test_a_datasets_parquet_file_gives_the_folders_numbers_bit_for_bit(folder_and_tables):
    root, paths = folder_and_tables
    import pyarrow.parquet as pq

    assert pq.ParquetFile(root / "train.parquet").metadata.num_row_groups > 1
    assert pq.ParquetFile(root / "train.parquet").schema_arrow.field("image").type.get_field_index("bytes") == 0
    from_folder = numbers(root / "folder", "--workers", "2")
    assert from_folder == numbers(root / "train.parquet", "--workers", "2")
    assert from_folder == numbers(root / "train.parquet", "--workers", "0")
    mean, std = exact_oracle(paths)
    np.testing.assert_allclose(from_folder["exact"]["mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(from_folder["exact"]["std"], std, rtol=1e-12)


def test_a_save_to_disk_folder_and_a_hub_snapshot_give_the_same_numbers(folder_and_tables):
    root, _ = folder_and_tables
    from_folder = numbers(root / "folder", "--workers", "2")
    assert numbers(root / "saved", "--workers", "2") == from_folder
    assert numbers(root / "snapshot", "--workers", "2") == from_folder


def test_rows_are_named_by_file_and_index_in_per_image_rows(folder_and_tables, tmp_path):
    root, paths = folder_and_tables
    rows_csv = tmp_path / "rows.csv"
    result = run_cli("compute", str(root / "train.parquet"), "-q", "--workers", "2", "--per-image", str(rows_csv))
    assert result.returncode == 0, result.stderr
    with open(rows_csv, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["path"] for row in rows] == [f"{root / 'train.parquet'}::row {i}" for i in range(len(paths))]
    with Image.open(paths[5]) as image:
        assert (int(rows[5]["width"]), int(rows[5]["height"])) == image.size


def binary_table(path: Path, cells: list[bytes | None], name: str = "image", **extra_columns) -> Path:
    """A Parquet file written by pyarrow with a plain binary column ``name`` (row groups of 16)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: pa.array(cells, type=pa.binary()), **extra_columns})
    pq.write_table(table, path, row_group_size=16)
    return path


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_bad_row_is_named_by_file_and_row_and_skipped_on_request(tmp_path):
    require("pyarrow")
    rng = np.random.default_rng(0)
    good = [png_bytes(rng.integers(0, 256, size=(9, 11, 3), dtype=np.uint8)) for _ in range(IMAGES)]
    cells: list[bytes | None] = list(good)
    cells[17] = b"not an image"
    cells[30] = None
    table = binary_table(tmp_path / "plain.parquet", cells)
    failed = run_cli("compute", str(table), "-q", "--workers", "2")
    assert failed.returncode == 2
    assert f"{table}::row 17: " in failed.stderr and f"{table}::row 30: no image" in failed.stderr
    assert "Traceback" not in failed.stderr
    skipped = run_cli("compute", str(table), "-q", "--workers", "2", "--on-error", "skip")
    assert skipped.returncode == 0, skipped.stderr
    config = json.loads(skipped.stdout)
    assert [entry["path"] for entry in config["skipped"]] == [f"{table}::row 17", f"{table}::row 30"]
    kept = [np.asarray(Image.open(io.BytesIO(data))).reshape(-1, 3) / 255 for i, data in enumerate(good) if i not in (17, 30)]
    pixels = np.concatenate(kept)
    np.testing.assert_allclose(config["exact"]["mean"], pixels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(config["exact"]["std"], pixels.std(axis=0), rtol=1e-12)


def test_column_chooses_among_several_binary_columns(tmp_path):
    pa = require("pyarrow")
    rng = np.random.default_rng(1)
    bright = [png_bytes(rng.integers(200, 256, size=(8, 8, 3), dtype=np.uint8)) for _ in range(IMAGES)]
    dark = [png_bytes(rng.integers(0, 30, size=(8, 8, 3), dtype=np.uint8)) for _ in range(IMAGES)]
    unnamed = binary_table(tmp_path / "photos.parquet", bright, name="photo", mask=pa.array(dark, type=pa.binary()))
    ambiguous = run_cli("compute", str(unnamed), "-q")
    assert ambiguous.returncode == 2
    assert ambiguous.stderr.strip() == f"Error: {unnamed}: several image columns (photo, mask); choose one with --column"
    table = binary_table(tmp_path / "two.parquet", bright, mask=pa.array(dark, type=pa.binary()))
    assert numbers(table, "--workers", "2") == numbers(table, "--column", "image", "--workers", "2")
    image_mean = numbers(table, "--column", "image", "--workers", "2")["exact"]["mean"]
    mask_mean = numbers(table, "--column", "mask", "--workers", "2")["exact"]["mean"]
    assert min(image_mean) > 0.75 and max(mask_mean) < 0.12
    recorded = json.loads(run_cli("compute", str(table), "-q", "--column", "mask").stdout)["options"]
    assert recorded["column"] == "mask"
    wrong = run_cli("compute", str(table), "-q", "--column", "labels")
    assert wrong.returncode == 2 and "no column 'labels' (columns: image, mask)" in wrong.stderr


def test_a_row_with_only_a_path_is_read_from_that_file(tmp_path):
    datasets = require("datasets")
    paths = write_folder(tmp_path / "folder", count=20)
    dataset = datasets.Dataset.from_dict({"image": [str(p) for p in paths]}).cast_column("image", datasets.Image())
    dataset.to_parquet(str(tmp_path / "paths.parquet"))  # not embedded: bytes null, absolute paths
    assert numbers(tmp_path / "paths.parquet", "--workers", "2") == numbers(tmp_path / "folder", "--workers", "2")
    paths[4].unlink()
    gone = run_cli("compute", str(tmp_path / "paths.parquet"), "-q", "--workers", "0")
    assert gone.returncode == 2
    assert f"paths.parquet::row 4: the row holds no bytes, and its path {paths[4]} cannot be read" in gone.stderr


def test_a_file_that_is_not_parquet_is_a_bad_entry_and_a_datasetdict_a_one_line_error(tmp_path):
    require("pyarrow")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 but not really")
    result = run_cli("compute", str(broken), "-q")
    assert result.returncode == 2  # a damaged table is a bad entry, as a damaged shard is (see test_inputs.py)
    assert result.stderr.startswith("Error: 1 of 1 images could not be read") and result.stderr.count("\n") == 2
    assert f"\n  {broken}: not a readable Parquet file" in result.stderr
    splits = tmp_path / "dict"
    splits.mkdir()
    (splits / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    result = run_cli("compute", str(splits), "-q")
    assert result.returncode == 2
    assert f"a DatasetDict with splits train, test; give one split's folder, e.g. {splits / 'train'}" in result.stderr


def test_a_table_of_one_large_row_group_is_read_in_slices(tmp_path):
    require("pyarrow")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from chanstats.sources import parquet

    rng = np.random.default_rng(2)
    count = 2 * parquet.ROWS_PER_READ + 5
    arrays = [rng.integers(0, 256, size=(5, 6, 3), dtype=np.uint8) for _ in range(count)]
    pq.write_table(pa.table({"png": pa.array([png_bytes(a) for a in arrays])}), tmp_path / "one.parquet")
    assert pq.ParquetFile(tmp_path / "one.parquet").metadata.num_row_groups == 1
    config = numbers(tmp_path / "one.parquet", "--workers", "2")
    pixels = np.concatenate([a.reshape(-1, 3) for a in arrays]) / 255
    np.testing.assert_allclose(config["exact"]["mean"], pixels.mean(axis=0), rtol=1e-12)
    assert config["count"]["images"] == count


@pytest.mark.slow  # about 15 s: a transform's workers start from a fresh forkserver
def test_a_transform_gives_a_parquet_file_the_folders_numbers_bit_for_bit(folder_and_tables):
    root, _ = folder_and_tables
    spec = "[{RandomResizedCrop: {size: 12}}, RandomHorizontalFlip, ToImage, {ToDtype: {dtype: float32, scale: true}}]"
    options = ("--transform", spec, "--epochs", "2")
    from_folder = numbers(root / "folder", "--workers", "2", *options)
    assert numbers(root / "train.parquet", "--workers", "2", *options) == from_folder
    assert numbers(root / "train.parquet", "--workers", "0", *options) == from_folder
    assert from_folder["exact"]["method"] == "float64" and from_folder["count"]["samples"] == 2 * IMAGES


def test_a_hugging_face_dataset_object_names_its_rows_by_its_id_column():
    datasets = require("datasets")
    import chanstats

    images = [np.random.default_rng(i).integers(0, 256, (5, 6, 3), dtype=np.uint8) for i in range(IMAGES)]
    ids = [f"img-{i}" for i in range(IMAGES)]
    dataset = datasets.Dataset.from_dict({"image": [Image.fromarray(p) for p in images], "id": ids})
    result = chanstats.compute(dataset.cast_column("image", datasets.Image()), workers=2)
    assert list(result.per_image.paths) == [f"Dataset::{i}" for i in ids]
    np.testing.assert_allclose(result.per_image.mean, [p.reshape(-1, 3).mean(axis=0) / 255 for p in images], rtol=1e-12)


def test_work_units_keep_each_row_group_whole(folder_and_tables):
    """A row group is read from its start, so a worker gets whole groups: the units of work end
    exactly where the row groups (10 rows each) end."""
    root, paths = folder_and_tables
    import pyarrow.parquet as pq

    from chanstats.scale.engine import work_units
    from chanstats.sources.listing import list_images

    metadata = pq.ParquetFile(root / "train.parquet").metadata
    ends = np.cumsum([metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]).tolist()
    sources = list_images([str(root / "train.parquet")])
    units = list(work_units(sources, 2, 4, 64))
    assert [stop for _, stop in units] == ends
    assert units[0][0] == 0 and all(a[1] == b[0] for a, b in zip(units, units[1:]))

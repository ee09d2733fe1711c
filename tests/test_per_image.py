"""`compute --per-image`: the CSV against numpy on the files, and the atypical-images summary."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from chanstats.cli import cli
from .helpers.files import write_constant, write_dataset
from .helpers.oracles import pixels_01


def test_csv_matches_numpy(tmp_path):
    paths = write_dataset(tmp_path / "data", count=7)
    # a greyscale and a palette image: the CSV is what torchvision's RGB loader sees
    grey = tmp_path / "data" / "grey.png"
    Image.fromarray(np.arange(60, dtype=np.uint8).reshape(6, 10) * 4, "L").save(grey)
    palette = tmp_path / "data" / "palette.png"
    Image.open(paths[0]).convert("P").save(palette)
    paths = sorted(paths + [grey, palette], key=lambda p: p.name.encode())
    out = tmp_path / "per_image.csv"
    result = CliRunner().invoke(cli, ["compute", str(tmp_path / "data"), "--per-image", str(out), "--workers", "0", "-q"])
    assert result.exit_code == 0, result.output
    with open(out, newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0]) == ["path", "width", "height", "mean_R", "mean_G", "mean_B", "std_R", "std_G", "std_B"]
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    for row, path, pixels in zip(rows, paths, pixels_01(paths)):
        height, width, _ = pixels.shape
        assert (int(row["width"]), int(row["height"])) == (width, height)
        for c, name in enumerate("RGB"):
            assert float(row[f"mean_{name}"]) == pytest.approx(pixels[..., c].mean(), abs=1e-12)
            assert float(row[f"std_{name}"]) == pytest.approx(pixels[..., c].std(), abs=1e-12)


def test_atypical_images_are_named(tmp_path):
    write_dataset(tmp_path / "data", count=12, spread=20)
    write_constant(tmp_path / "data" / "blank.png", 0, size=(12, 10))
    result = CliRunner().invoke(cli, ["compute", str(tmp_path / "data"), "--workers", "0", "-o", str(tmp_path / "c.json")])
    assert result.exit_code == 0, result.output
    section = result.output.split("most atypical images", 1)[1].splitlines()[1:]
    assert "blank.png" in section[0] and "z " in section[0]
    assert float(section[0].split()[1]) < -3.5  # darker than the rest


def test_no_atypical_section_when_nothing_stands_out(tmp_path):
    write_dataset(tmp_path / "data", count=10, spread=5)
    result = CliRunner().invoke(cli, ["compute", str(tmp_path / "data"), "--workers", "0", "-o", str(tmp_path / "c.json")])
    assert result.exit_code == 0
    assert "most atypical" not in result.output


def test_csv_is_written_in_pieces_equal_to_one_piece(tmp_path):
    """A long per-image CSV is made a block of rows at a time; the blocks join into the same file."""
    from chanstats.stats.moments import MomentsTable
    from chanstats.stats.per_image import PerImage

    rng = np.random.default_rng(3)
    counts = rng.integers(1, 100, size=20)
    means = rng.random((20, 2))
    m2s = rng.random((20, 2)) * counts[:, None]
    table = MomentsTable(counts, means, m2s)
    per_image = PerImage([f"img{i}.png" for i in range(20)], list(range(20)), list(range(20, 40)), table)
    pieces = list(per_image.csv_pieces(["R", "G"], rows=7))
    assert len(pieces) == 3
    rows = list(csv.reader("".join(pieces).splitlines()))
    assert rows[0] == ["path", "width", "height", "mean_R", "mean_G", "std_R", "std_G"]
    assert [r[0] for r in rows[1:]] == [f"img{i}.png" for i in range(20)]
    values = np.array([[float(v) for v in r[3:]] for r in rows[1:]])
    assert np.array_equal(values[:, :2], means)
    assert np.array_equal(values[:, 2:], np.sqrt(m2s / counts[:, None]))
    assert "".join(pieces) == per_image.to_csv(["R", "G"])
    empty = PerImage([], [], [], table.take(slice(0, 0)))
    assert empty.to_csv(["R", "G"]) == "path,width,height,mean_R,mean_G,std_R,std_G\n"


def test_atypical_takes_each_image_at_its_most_atypical_channel():
    """Outliers planted on different channels are found with the z of their strongest channel,
    against a direct numpy computation of the modified z-score over the whole (images, C) array."""
    from chanstats.stats.moments import MomentsTable
    from chanstats.stats.per_image import PerImage

    rng = np.random.default_rng(7)
    means = 0.5 + 0.01 * rng.standard_normal((60, 3))
    means[5, 0], means[17, 2], means[33, 1], means[40, 1], means[40, 2] = 0.9, 0.1, 0.75, 0.7, 0.2
    table = MomentsTable(np.full(60, 10), means, np.zeros((60, 3)))
    found = PerImage([f"{i}" for i in range(60)], [1] * 60, [1] * 60, table).atypical(limit=10)

    median = np.median(means, axis=0)
    z = 0.6745 * (means - median) / np.median(np.abs(means - median), axis=0)
    strongest = z[np.arange(60), np.abs(z).argmax(axis=1)]
    expected = sorted((i for i in range(60) if abs(strongest[i]) > 3.5), key=lambda i: -abs(strongest[i]))
    assert [i for i, _ in found] == expected[:10]
    assert {5, 17, 33, 40} <= set(expected)
    assert np.allclose([z_ for _, z_ in found], strongest[expected[:10]], rtol=1e-12)

"""Rasters through the installed command: multi-band and 16-bit files written by tifffile (and a
16-bit PNG written byte by byte), checked against numpy on the pooled pixels, through the worker
pool (40+ images), shards and merge."""

import json
import struct
import zlib

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from .helpers.cli import run, run_cli  # noqa: E402

GDAL_NODATA = 42113
QS = [0.5, 1, 2, 50, 98, 99, 99.5]


def _sentinel_like(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(1, 12000, (18, 22, 13), dtype=np.uint16)
    border = 2 + seed % 3
    pixels[:border] = 0  # nodata border, all bands
    pixels[:, -border:] = 0
    return pixels


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory):
    root = tmp_path_factory.mktemp("sentinel")
    (root / "data").mkdir()
    images = [_sentinel_like(seed) for seed in range(41)]
    for seed, pixels in enumerate(images):
        tifffile.imwrite(root / "data" / f"tile{seed:03d}.tif", pixels, photometric="minisblack", planarconfig="contig",
                         extratags=[(GDAL_NODATA, "s", 0, "0", True)])
    return root, np.concatenate([p.reshape(-1, 13) for p in images])


def _compute(root, *args):
    return run(["compute", "data", "--mode", "keep", "-q", *args], cwd=root).stdout


def test_13_band_geotiff_with_nodata_tag_matches_numpy_and_any_worker_count(sentinel):
    root, pooled = sentinel
    single = _compute(root, "--workers", "0")
    assert _compute(root, "--workers", "2") == single
    config = json.loads(single)
    kept = [pooled[:, c][pooled[:, c] != 0].astype(np.float64) for c in range(13)]
    assert config["count"]["pixels"] == [v.size for v in kept]
    assert config["channels"] == [f"b{i}" for i in range(1, 14)] and config["dtype"] == "uint16"
    assert config["nodata"]["source"] == "file"
    for c, values in enumerate(kept):
        assert config["exact"]["mean_raw"][c] == pytest.approx(values.mean(), rel=1e-14)
        assert config["exact"]["std_raw"][c] == pytest.approx(values.std(), rel=1e-12)
        assert config["exact"]["mean"][c] == pytest.approx(values.mean() / 65535, rel=1e-14)
    assert config["percentiles"]["q"] == QS and config["percentiles"]["method"] == "exact inverted_cdf"
    expected = [[int(np.percentile(v, q, method="inverted_cdf")) for v in kept] for q in QS]
    assert config["percentiles"]["raw"] == expected


def test_shards_merge_to_the_single_run_and_nodata_none_counts_every_pixel(sentinel):
    root, pooled = sentinel
    single = _compute(root, "--workers", "0", "--scale", "10000", "--channels", ",".join(f"B{i:02d}" for i in range(1, 14)))
    for k in (1, 2, 3):
        run(["compute", "data", "--mode", "keep", "--scale", "10000", "--channels", ",".join(f"B{i:02d}" for i in range(1, 14)),
             "--shard", f"{k}/3", "--partial", f"p{k}.json", "--workers", "2", "-q"], cwd=root)
    merged = run(["merge", "p3.json", "p1.json", "p2.json", "-q"], cwd=root).stdout
    assert merged == single
    assert json.loads(single)["channels"][0] == "B01"
    everything = json.loads(_compute(root, "--workers", "2", "--nodata", "none", "--bands", "3,1"))
    assert everything["count"]["pixels"] == pooled.shape[0] and "nodata" not in everything
    assert everything["exact"]["mean_raw"][0] == pytest.approx(pooled[:, 2].astype(np.float64).mean(), rel=1e-14)
    assert everything["exact"]["mean_raw"][1] == pytest.approx(pooled[:, 0].astype(np.float64).mean(), rel=1e-14)


def test_planar_tiled_bigtiff_12_bit_with_scale(tmp_path):
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 4096, (3, 64, 48), dtype=np.uint16) for _ in range(3)]
    for i, planes in enumerate(images):
        tifffile.imwrite(tmp_path / f"p{i}.tiff", planes, bigtiff=True, tile=(32, 16), planarconfig="separate",
                         photometric="minisblack", compression="zlib")
    config = json.loads(run(["compute", ".", "--mode", "keep", "--scale", "4095", "--workers", "0", "-q"], cwd=tmp_path).stdout)
    pooled = np.concatenate([p.reshape(3, -1) for p in images], axis=1).astype(np.float64)
    assert config["scale"] == 4095 and config["count"]["pixels"] == pooled.shape[1]
    assert config["exact"]["mean"] == pytest.approx(list(pooled.mean(axis=1) / 4095), rel=1e-14)
    assert config["exact"]["std_raw"] == pytest.approx(list(pooled.std(axis=1)), rel=1e-12)
    assert config["options"]["scale"] == 4095


def test_float32_nan_is_a_bad_image_unless_nodata_nan(tmp_path):
    rng = np.random.default_rng(9)
    images = [rng.normal(300, 40, (20, 20)).astype(np.float32) for _ in range(3)]
    images[1][3, :7] = np.nan
    for i, band in enumerate(images):
        tifffile.imwrite(tmp_path / f"dem{i}.tif", band)
    refused = run_cli("compute", str(tmp_path), "--mode", "keep", "--workers", "0", "-q")
    assert refused.returncode == 2 and "dem1.tif" in refused.stderr and "7 NaN pixels" in refused.stderr
    assert "Traceback" not in refused.stderr
    config = json.loads(run(["compute", ".", "--mode", "keep", "--nodata", "nan", "--workers", "0", "-q"], cwd=tmp_path).stdout)
    values = np.concatenate([b.ravel() for b in images]).astype(np.float64)
    values = values[~np.isnan(values)]
    assert config["count"]["pixels"] == [values.size] and config["exact"]["method"] == "float64"
    assert config["exact"]["mean"][0] == pytest.approx(values.mean(), rel=1e-12)
    assert config["exact"]["std"][0] == pytest.approx(values.std(), rel=1e-10)
    assert config["percentiles"]["method"].startswith("sketch")
    for q, (got,) in zip(QS, config["percentiles"]["raw"]):
        truth = np.percentile(values, q, method="inverted_cdf")
        assert abs(got - truth) <= 2**-11 * abs(truth)


def _png16(pixels: np.ndarray) -> bytes:
    height, width, channels = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].astype(">u2").tobytes() for row in range(height))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    colour = {2: 4, 3: 2, 4: 6}[channels]
    header = struct.pack(">IIBBBBB", width, height, 16, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_16_bit_rgb_png_keeps_16_bits_under_keep_only(tmp_path):
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 65536, (17, 23, 3), dtype=np.uint16)
    (tmp_path / "micro.png").write_bytes(_png16(pixels))
    config = json.loads(run(["compute", "micro.png", "--mode", "keep", "--workers", "0", "-q"], cwd=tmp_path).stdout)
    flat = pixels.reshape(-1, 3).astype(np.float64)
    assert config["scale"] == 65535 and config["channels"] == ["R", "G", "B"]
    assert config["exact"]["mean_raw"] == pytest.approx(list(flat.mean(axis=0)), rel=1e-14)
    assert config["percentiles"]["raw"][3] == [int(np.percentile(flat[:, c], 50, method="inverted_cdf")) for c in range(3)]
    refused = run_cli("compute", str(tmp_path / "micro.png"), "--workers", "0", "-q")
    assert refused.returncode == 2 and "micro.png" in refused.stderr and "16-bit" in refused.stderr


def test_wrong_channel_names_and_bad_options_exit_2(sentinel):
    root, _ = sentinel
    wrong = run_cli("compute", str(root / "data"), "--mode", "keep", "--channels", "a,b", "--workers", "0", "-q")
    assert wrong.returncode == 2 and "--channels names 2 channels but the image has 13" in wrong.stderr
    for option, value in (("--scale", "-1"), ("--percentiles", "101"), ("--bands", "0"), ("--nodata", "x")):
        bad = run_cli("compute", str(root / "data"), "--mode", "keep", option, value, "--workers", "0", "-q")
        assert bad.returncode == 2 and option in bad.stderr and "Traceback" not in bad.stderr
    rgb = run_cli("compute", str(root / "data" / "tile000.tif"), "--workers", "0", "-q")
    assert rgb.returncode == 2 and "tile000.tif" in rgb.stderr and "--mode keep" in rgb.stderr


def test_the_example_tile_reads_its_band_names_and_nodata_tag():
    from pathlib import Path

    tile = Path(__file__).resolve().parent.parent / "examples" / "rasters" / "tile.tif"
    pixels = tifffile.imread(tile).reshape(-1, 4)
    config = json.loads(run(["compute", str(tile.parent), "--mode", "keep", "--scale", "10000", "-q"], cwd=tile.parent).stdout)
    assert config["channels"] == ["B02", "B03", "B04", "B08"] and config["nodata"]["source"] == "file"
    kept = pixels[(pixels != 0).all(axis=1)].astype(np.int64)
    assert 0 < kept.shape[0] < pixels.shape[0]
    assert config["exact"]["mean_raw"] == [int(s) / kept.shape[0] for s in kept.sum(axis=0)]


def test_kill_and_resume_with_bands_nodata_and_histograms_gives_the_same_bytes(sentinel, tmp_path):
    from .test_checkpoint import start_and_kill

    root, _ = sentinel
    options = ["compute", str(root / "data"), "--mode", "keep", "-q", "--workers", "2", "--bands", "1,3,13",
               "--channels", "B1,B3,B13", "--percentiles", "1,50,99"]
    reference = run([*options, "-o", str(tmp_path / "whole.json")], cwd=tmp_path)
    assert reference.returncode == 0
    resumed = [*options, "-o", str(tmp_path / "out.json"), "--checkpoint", "ckpt.json", "--checkpoint-every", "1"]
    held = start_and_kill(tmp_path, resumed, at_least=16, delay=0.05)
    assert 16 <= held < 41 and not (tmp_path / "out.json").exists()
    run(resumed, cwd=tmp_path)
    assert (tmp_path / "out.json").read_bytes() == (tmp_path / "whole.json").read_bytes()
    config = json.loads((tmp_path / "whole.json").read_text())
    assert config["channels"] == ["B1", "B3", "B13"] and isinstance(config["count"]["pixels"], list)


def test_a_tiff_is_read_from_its_file_and_a_misnamed_file_by_its_bytes(tmp_path):
    """Under --mode keep a .tif is handed to tifffile as a path (it reads its own segments); a
    PNG named .tif is still decoded by its bytes, and a TIFF cut short is one line naming it."""
    import tifffile
    from PIL import Image

    rng = np.random.default_rng(5)
    raster = rng.integers(0, 4096, (30, 20, 4), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", raster, photometric="minisblack", planarconfig="contig", compression="zlib")
    grey = rng.integers(0, 256, (10, 10), dtype=np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "b.tif", format="PNG")
    result = json.loads(run_cli("compute", str(tmp_path / "a.tif"), "--mode", "keep", "--workers", "0", "-q").stdout)
    assert result["count"]["pixels"] == 600
    np.testing.assert_allclose(result["exact"]["mean_raw"], raster.reshape(-1, 4).mean(axis=0), rtol=1e-12)
    png = json.loads(run_cli("compute", str(tmp_path / "b.tif"), "--mode", "keep", "--workers", "0", "-q").stdout)
    np.testing.assert_allclose(png["exact"]["mean"], [grey.mean() / 255], rtol=1e-12)
    data = (tmp_path / "a.tif").read_bytes()
    (tmp_path / "a.tif").write_bytes(data[: len(data) // 2])
    cut = run_cli("compute", str(tmp_path / "a.tif"), "--mode", "keep", "--workers", "0", "-q")
    assert cut.returncode == 2 and str(tmp_path / "a.tif") in cut.stderr and len(cut.stderr.strip().splitlines()) <= 3

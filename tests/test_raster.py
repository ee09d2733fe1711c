"""TIFF/GeoTIFF reading: real files written by tifffile, compared with the arrays written."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

from chanstats.decoding.raster import read_raster  # noqa: E402
from chanstats.errors import BadImageError  # noqa: E402

from .helpers.optional import require  # noqa: E402

SENTINEL2 = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


def gdal_metadata(names) -> str:
    items = "".join(f'<Item name="DESCRIPTION" sample="{i}" role="description">{n}</Item>' for i, n in enumerate(names))
    return f"<GDALMetadata>{items}</GDALMetadata>"


def write_tiff(path: Path, array: np.ndarray, **options) -> Path:
    tifffile.imwrite(path, array, **options)
    return path


@pytest.fixture
def sentinel2(tmp_path, rng) -> tuple[Path, np.ndarray]:
    """13-band uint16 GeoTIFF-style file, chunky, with a nodata border of zeros, names and GDAL_NODATA."""
    array = rng.integers(1, 10001, size=(40, 50, 13), dtype=np.uint16)
    array[:3] = 0
    array[:, -4:] = 0
    path = write_tiff(
        tmp_path / "s2.tif",
        array,
        photometric="minisblack",
        planarconfig="contig",
        extratags=[(42113, "s", 0, "0", True), (42112, "s", 0, gdal_metadata(SENTINEL2), True)],
    )
    return path, array


def test_multiband_uint16_with_nodata_and_band_names(sentinel2):
    path, array = sentinel2
    raster = read_raster(path)
    assert raster.pixels.shape == (40, 50, 13)
    assert raster.dtype == np.uint16
    np.testing.assert_array_equal(raster.pixels, array)
    assert raster.nodata == 0 and isinstance(raster.nodata, int)
    assert raster.band_names == SENTINEL2
    assert (raster.height, raster.width, raster.bands) == (40, 50, 13)


def test_bands_are_selected_by_one_based_number_in_the_order_given(sentinel2):
    path, array = sentinel2
    raster = read_raster(path, bands=[4, 3, 2])
    np.testing.assert_array_equal(raster.pixels, array[:, :, [3, 2, 1]])
    assert raster.band_names == ("B04", "B03", "B02")


@pytest.mark.parametrize("bands", [[0], [14], []])
def test_a_band_outside_the_file_is_a_bad_image_naming_the_count(sentinel2, bands):
    path, _ = sentinel2
    with pytest.raises(BadImageError, match=r"s2\.tif: no band .*13 bands"):
        read_raster(path, bands=bands)


def test_planar_tiled_bigtiff(tmp_path, rng):
    planes = rng.integers(0, 65536, size=(5, 70, 45), dtype=np.uint16)
    path = write_tiff(tmp_path / "p.tif", planes, photometric="minisblack", planarconfig="separate", tile=(16, 16), bigtiff=True)
    with tifffile.TiffFile(path) as tiff:  # the file really is what the test claims
        assert tiff.is_bigtiff and tiff.pages[0].is_tiled and tiff.pages[0].planarconfig == 2
    raster = read_raster(path)
    np.testing.assert_array_equal(raster.pixels, np.moveaxis(planes, 0, -1))
    assert raster.band_names is None and raster.nodata is None


def test_float32_with_nan_and_nan_nodata(tmp_path, rng):
    array = rng.normal(100.0, 30.0, size=(30, 20)).astype(np.float32)
    array[5:9, 2:4] = np.nan
    path = write_tiff(tmp_path / "dem.tif", array, extratags=[(42113, "s", 0, "nan", True)])
    raster = read_raster(path)
    assert raster.pixels.shape == (30, 20, 1) and raster.dtype == np.float32
    np.testing.assert_array_equal(raster.pixels[:, :, 0], array)  # NaN positions compare equal
    assert np.isnan(raster.nodata)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32", "int32", "float64"])
def test_other_pixel_types_round_trip(tmp_path, rng, dtype):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        array = rng.integers(info.min, info.max, size=(9, 11, 3), dtype=dtype, endpoint=True)
    else:
        array = rng.normal(size=(9, 11, 3)).astype(dtype)
    path = write_tiff(tmp_path / f"{dtype}.tif", array, photometric="minisblack", planarconfig="contig")
    raster = read_raster(path)
    assert raster.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(raster.pixels, array)


def test_big_endian_file_comes_back_in_native_byte_order(tmp_path, rng):
    array = rng.integers(-32768, 32767, size=(6, 7), dtype=np.int16)
    path = write_tiff(tmp_path / "be.tif", array, byteorder=">")
    raster = read_raster(path)
    assert raster.pixels.dtype.isnative and raster.dtype == np.int16
    np.testing.assert_array_equal(raster.pixels[:, :, 0], array)


@pytest.mark.parametrize("predictor", [False, True])
def test_deflate_compression_needs_no_extra_package(tmp_path, rng, predictor):
    array = rng.integers(0, 4096, size=(33, 17, 4), dtype=np.uint16)
    path = write_tiff(
        tmp_path / "z.tif", array, photometric="minisblack", planarconfig="contig", compression="zlib", predictor=predictor
    )
    np.testing.assert_array_equal(read_raster(path).pixels, array)


def test_rgb_tiff_and_bytes_input(tmp_path, rng):
    array = rng.integers(0, 65536, size=(12, 10, 3), dtype=np.uint16)
    path = write_tiff(tmp_path / "rgb.tif", array)
    raster = read_raster(path.read_bytes(), display="shard.tar:rgb.tif")
    np.testing.assert_array_equal(raster.pixels, array)
    with open(path, "rb") as handle:
        np.testing.assert_array_equal(read_raster(handle).pixels, array)


def test_raster_pickles(sentinel2):
    raster = read_raster(sentinel2[0])
    again = pickle.loads(pickle.dumps(raster))
    np.testing.assert_array_equal(again.pixels, raster.pixels)
    assert again.band_names == raster.band_names and again.nodata == raster.nodata


def test_ome_channel_names(tmp_path, rng):
    planes = rng.integers(0, 65536, size=(3, 16, 12), dtype=np.uint16)
    path = tmp_path / "cells.ome.tif"
    tifffile.imwrite(path, planes, metadata={"axes": "CYX", "Channel": {"Name": ["DAPI", "GFP", "RFP"]}})
    raster = read_raster(path)
    np.testing.assert_array_equal(raster.pixels, np.moveaxis(planes, 0, -1))
    assert raster.band_names == ("DAPI", "GFP", "RFP")


def test_a_stack_of_pages_is_refused_not_reduced_to_its_first_page(tmp_path, rng):
    stack = rng.integers(0, 255, size=(4, 8, 8), dtype=np.uint8)
    path = write_tiff(tmp_path / "stack.tif", stack, photometric="minisblack")
    with pytest.raises(BadImageError, match=r"stack\.tif: a stack of images \(axes QYX"):
        read_raster(path)


def test_only_series_zero_is_read(tmp_path, rng):
    first = rng.integers(0, 255, size=(8, 8), dtype=np.uint8)
    second = rng.integers(0, 255, size=(5, 5, 3), dtype=np.uint8)
    path = tmp_path / "two.tif"
    with tifffile.TiffWriter(path) as writer:
        writer.write(first)
        writer.write(second)
    np.testing.assert_array_equal(read_raster(path).pixels[:, :, 0], first)


@pytest.mark.parametrize("fraction", [0.5, 0.98])
@pytest.mark.parametrize("compression", [None, "zlib"])
def test_truncated_file_is_a_bad_image(tmp_path, rng, fraction, compression):
    array = rng.integers(0, 65536, size=(64, 64, 2), dtype=np.uint16)
    path = write_tiff(tmp_path / "cut.tif", array, photometric="minisblack", planarconfig="contig", compression=compression)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(BadImageError, match=r"cut\.tif: (truncated|corrupt or truncated) TIFF") as caught:
        read_raster(path)
    assert "\n" not in str(caught.value)


def test_corrupt_compressed_data_is_a_bad_image(tmp_path, rng):
    array = rng.integers(0, 65536, size=(32, 32), dtype=np.uint16)
    path = write_tiff(tmp_path / "bad.tif", array, compression="zlib")
    with tifffile.TiffFile(path) as tiff:
        start = tiff.pages[0].dataoffsets[0]
    data = bytearray(path.read_bytes())
    data[start + 4 : start + 64] = bytes(60)
    path.write_bytes(bytes(data))
    with pytest.raises(BadImageError, match=r"bad\.tif: corrupt or truncated TIFF"):
        read_raster(path)


@pytest.mark.parametrize("content", [b"", b"not a tiff at all", b"II*\x00"])
def test_not_a_tiff(tmp_path, content):
    path = tmp_path / "junk.tif"
    path.write_bytes(content)
    with pytest.raises(BadImageError, match=r"junk\.tif: corrupt or truncated TIFF"):
        read_raster(path)


def test_missing_file(tmp_path):
    with pytest.raises(BadImageError, match=r"gone\.tif: cannot read"):
        read_raster(tmp_path / "gone.tif")


@pytest.mark.parametrize("dtype", ["complex64", "int8", "float16", "uint64"])
def test_unsupported_pixel_type_is_named(tmp_path, dtype):
    path = write_tiff(tmp_path / "odd.tif", np.zeros((4, 4), dtype=dtype))
    with pytest.raises(BadImageError, match=rf"odd\.tif: unsupported pixel type {dtype}"):
        read_raster(path)


def _with_compression_tag(path: Path, code: int) -> Path:
    """Rewrite the Compression tag in place: a real file that declares another codec."""
    with tifffile.TiffFile(path) as tiff:
        offset = tiff.pages[0].tags["Compression"].valueoffset
    data = bytearray(path.read_bytes())
    data[offset : offset + 2] = code.to_bytes(2, "little")
    path.write_bytes(bytes(data))
    return path


def test_lzw_without_imagecodecs_names_the_package(tmp_path):
    # tifffile registers imagecodecs' decoders when it is installed (the test extra installs it),
    # so this runs only where it is missing.
    try:
        import imagecodecs  # noqa: F401

        pytest.skip("imagecodecs is installed")
    except ImportError:
        pass
    path = _with_compression_tag(write_tiff(tmp_path / "lzw.tif", np.zeros((8, 8), np.uint8), compression="zlib"), 5)
    with pytest.raises(BadImageError, match=r"lzw\.tif: LZW compression needs the imagecodecs package"):
        read_raster(path)


def test_unknown_compression_is_named(tmp_path):
    path = _with_compression_tag(write_tiff(tmp_path / "odd.tif", np.zeros((8, 8), np.uint8), compression="zlib"), 50999)
    with pytest.raises(BadImageError, match=r"odd\.tif: .*50999"):
        read_raster(path)


def test_lzw_with_imagecodecs(tmp_path, rng):
    require("imagecodecs")
    array = rng.integers(0, 65536, size=(20, 30, 3), dtype=np.uint16)
    path = write_tiff(tmp_path / "lzw.tif", array, photometric="rgb", compression="lzw")
    np.testing.assert_array_equal(read_raster(path).pixels, array)

"""Decompression bombs: files whose headers declare far more pixels than they hold are refused by
name, from the header, before anything large is allocated, in every format and under every mode.

The limit is Pillow's (refused above twice ``PIL.Image.MAX_IMAGE_PIXELS``, where ``Image.open``
raises), and ``None`` lifts it. Peak memory is the kernel's own count (``ru_maxrss``) of a fresh
process running the command, and of its workers.
"""

from __future__ import annotations

import io
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from chanstats import compute
from chanstats.errors import BadImagesError

from .helpers.bombs import jpeg_bomb, npy_bomb, npz_bomb, png_bomb, run_measuring_peak, tiff_bomb, webp_bomb
from .helpers.cli import run_cli
from .helpers.files import write_image

DEFAULT_LIMIT = 2 * Image.MAX_IMAGE_PIXELS  # Pillow's own default: 178,956,970 pixels
PEAK_MB = 300  # decoding the smallest bomb here would take over 1 GB
MODES = ("RGB", "L", "keep")


def too_many(width: int, height: int, limit: int = DEFAULT_LIMIT) -> str:
    return (f"decompression bomb: {width}×{height} = {width * height} pixels exceeds the limit of {limit} "
            "(2 × PIL.Image.MAX_IMAGE_PIXELS)")


def write_bombs(folder: Path) -> dict[str, str]:
    """One bomb of each kind under Pillow's default limit, by file name → the reason it must get."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        # 442 KB: 55,225 tiles that all point at one compressed blob of zeros.
        "tiled.tif": (tiff_bomb(60000, 60000), too_many(60000, 60000)),
        "strips.tif": (tiff_bomb(60000, 60000, tiled=False), too_many(60000, 60000)),
        "grey16.tif": (tiff_bomb(20000, 20000, bits=16), too_many(20000, 20000)),
        "rgb.tif": (tiff_bomb(20000, 20000, samples=3), too_many(20000, 20000)),
        "rgb.png": (png_bomb(20000, 20000), too_many(20000, 20000)),
        "grey16.png": (png_bomb(20000, 20000, bits=16, colour_type=0), too_many(20000, 20000)),
        "rgb16.png": (png_bomb(20000, 20000, bits=16, colour_type=2), too_many(20000, 20000)),
        "photo.jpg": (jpeg_bomb(65000, 65000), too_many(65000, 65000)),
        "grey.jpg": (jpeg_bomb(65000, 65000, grey=True), too_many(65000, 65000)),
        "vp8l.webp": (webp_bomb(16383, 16383), too_many(16383, 16383)),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items()}


def write_array_bombs(folder: Path) -> dict[str, str]:
    """NumPy bombs, by the name chanstats gives each image → its reason."""
    folder.mkdir(parents=True, exist_ok=True)
    npy_bomb(folder / "image.npy", (20000, 20000, 3))  # 1.2 GB declared over a sparse hole
    npz_bomb(folder / "one.npz", "image", (16384, 16384, 4))  # a 1 GiB member in 1 MB
    member = ("decompression bomb: the member 'images' of stack.npz decodes to 1073741824 bytes, over the limit of "
              f"{4 * DEFAULT_LIMIT} (4 bytes × 2 × PIL.Image.MAX_IMAGE_PIXELS); "
              "a .npy file is read an image at a time instead")
    npz_bomb(folder / "stack.npz", "images", (4, 8192, 8192, 4))  # images under the limit, the member over it
    return {"image.npy": too_many(20000, 20000), "one.npz::image": too_many(16384, 16384),
            **{f"stack.npz::images/{i}": member for i in range(4)}}


def test_the_bombs_are_bombs_by_their_readers_own_account(tmp_path):
    # The oracle: Pillow refuses each image file, tifffile and NumPy declare what the header says.
    expected = write_bombs(tmp_path)
    for name in expected:
        with pytest.raises(Image.DecompressionBombError):
            Image.open(tmp_path / name)
    with tifffile.TiffFile(tmp_path / "tiled.tif") as tiff:
        assert tiff.series[0].shape == (60000, 60000)
        assert len(tiff.pages[0].dataoffsets) == 235 * 235 and len(set(tiff.pages[0].dataoffsets)) == 1
    assert (tmp_path / "tiled.tif").stat().st_size < 500_000
    write_array_bombs(tmp_path)
    assert np.load(tmp_path / "image.npy", mmap_mode="r").shape == (20000, 20000, 3)
    with np.load(tmp_path / "stack.npz") as archive, archive.zip.open("images.npy") as member:
        np.lib.format.read_magic(member)
        assert np.lib.format.read_array_header_1_0(member)[0] == (4, 8192, 8192, 4)


@pytest.mark.parametrize("mode", MODES)
def test_bombs_at_pillows_default_limit_are_refused_before_decoding(tmp_path, mode):
    folder = tmp_path / "data"
    expected = {str(folder / name): reason for name, reason in write_bombs(folder).items()}
    arrays = tmp_path / "arrays"
    expected.update({str(arrays / name): reason for name, reason in write_array_bombs(arrays).items()})
    done, peak = run_measuring_peak(["compute", str(folder), str(arrays / "image.npy"), str(arrays / "one.npz"),
                                     str(arrays / "stack.npz"), "--mode", mode, "--workers", "0"])
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (f"Error: {len(expected)} of {len(expected)} images could not be read "
                        "(use --on-error skip to skip them):")
    assert sorted(lines[1:]) == sorted(f"  {path}: {reason}" for path, reason in expected.items())
    assert done.stdout == ""
    assert peak < PEAK_MB, f"peak {peak} MB"


def good_images(folder: Path, rng) -> list[np.ndarray]:
    """Two 8-bit RGB images every mode reads, returned as written."""
    pixels = [rng.integers(0, 256, (9, 13, 3), dtype=np.uint8), rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)]
    write_image(folder / "good0.png", pixels[0])
    write_image(folder / "good1.png", pixels[1])
    return pixels


@pytest.mark.parametrize("mode", [pytest.param("RGB", marks=pytest.mark.slow),
                                  pytest.param("L", marks=pytest.mark.slow), "keep"])
def test_bombs_are_skipped_by_name_in_process_and_through_the_pool(tmp_path, rng, engine, mode):
    folder = tmp_path / "data"
    names = write_bombs(folder)
    arrays = tmp_path / "arrays"
    array_names = write_array_bombs(arrays)
    pixels = good_images(folder, rng) + [np.asarray(Image.open(path).convert("RGB")) for path in engine.pad(folder)]
    out = tmp_path / "out.json"
    done, peak = run_measuring_peak(["compute", str(folder), str(arrays / "image.npy"), str(arrays / "one.npz"),
                                     str(arrays / "stack.npz"), "--mode", mode, "--on-error", "skip", "-o", str(out),
                                     *engine.options])
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert {entry["path"]: entry["error"] for entry in result["skipped"]} == {
        **{str(folder / name): reason for name, reason in names.items()},
        **{str(arrays / name): reason for name, reason in array_names.items()}}
    assert result["count"]["images"] == 2 + engine.padding
    # The good images are measured exactly: numpy's integer sums over their pixels (as the mode
    # converts them: Pillow's own luma for L).
    converted = [np.asarray(Image.fromarray(p).convert("L"))[..., None] if mode == "L" else p for p in pixels]
    flat = np.concatenate([p.reshape(-1, p.shape[-1]) for p in converted]).astype(np.int64)
    assert result["exact"]["mean"] == [float(Fraction(int(s), len(flat) * 255)) for s in flat.sum(0)]
    assert peak < PEAK_MB, f"peak {peak} MB"


def test_a_bomb_in_a_tar_shard_is_refused_from_its_header(tmp_path):
    import tarfile

    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as archive:
        for name, data in [("a.tif", tiff_bomb(60000, 60000)), ("b.jpg", jpeg_bomb(65000, 65000))]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    done, peak = run_measuring_peak(["compute", str(shard), "--mode", "keep", "--workers", "0"])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[1:] == [f"  {shard}::a.tif: {too_many(60000, 60000)}",
                                                    f"  {shard}::b.jpg: {too_many(65000, 65000)}"]
    assert peak < PEAK_MB, f"peak {peak} MB"


def test_a_stack_of_tiff_pages_is_refused_before_its_pages_are_decoded(tmp_path):
    # 60 pages of 4096×4096 pointing at one blob: each page is under the limit, the stack is 1 GB.
    path = tmp_path / "stack.tif"
    path.write_bytes(tiff_bomb(4096, 4096, pages=60))
    with tifffile.TiffFile(path) as tiff:
        assert tiff.series[0].shape == (60, 4096, 4096)
    done, peak = run_measuring_peak(["compute", str(path), "--mode", "keep", "--workers", "0"])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[1] == (
        f"  {path}: a stack of images (axes IYX, shape (60, 4096, 4096)), not one raster; chanstats reads one image per file")
    assert peak < PEAK_MB, f"peak {peak} MB"


# -- The limit follows PIL.Image.MAX_IMAGE_PIXELS, in every process -------------------------


def write_sized_files(folder: Path, rng, side: int) -> list[str]:
    """``side``×``side`` 8-bit RGB images in a striped TIFF, a tiled TIFF, a NumPy file and a
    compressed .npz member (the kind of the pool's padding images); returns the inputs to give."""
    folder.mkdir(parents=True, exist_ok=True)
    image = lambda: rng.integers(0, 256, (side, side, 3), dtype=np.uint8)  # noqa: E731
    tifffile.imwrite(folder / f"striped{side}.tif", image(), photometric="rgb")
    tifffile.imwrite(folder / f"tiled{side}.tif", image(), photometric="rgb", tile=(16, 16))
    np.save(folder / f"array{side}.npy", image())
    np.savez_compressed(folder / f"packed{side}.npz", image=image())
    return [str(folder / name) for name in (f"striped{side}.tif", f"tiled{side}.tif", f"array{side}.npy",
                                            f"packed{side}.npz")]


@pytest.mark.parametrize("mode", ["RGB", "keep"])
def test_tiff_and_arrays_follow_the_limit_and_none_lifts_it(tmp_path, rng, engine, monkeypatch, mode):
    inputs = write_sized_files(tmp_path / "big", rng, 50) + write_sized_files(tmp_path / "warned", rng, 40)
    padded = engine.padded(inputs, tmp_path / "pad")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    # Pillow's verdict on the TIFFs is the oracle: it refuses 2500 pixels and warns on 1600.
    with pytest.raises(Image.DecompressionBombError):
        Image.open(inputs[0])
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(inputs[4]).load()
    result = compute(padded, mode=mode, workers=engine.workers, on_error="skip")
    shown = [f"{inputs[0]}", f"{inputs[1]}", f"{inputs[2]}", f"{inputs[3]}::image"]
    assert dict(result.skipped) == {name: too_many(50, 50, 2000) for name in shown}
    assert result.images == 4 + engine.padding
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # Pillow's way to lift the limit
    assert compute(padded, mode=mode, workers=engine.workers).images == 8 + engine.padding


def test_the_command_line_sets_and_lifts_the_limit(tmp_path, rng, engine):
    inputs = write_sized_files(tmp_path / "big", rng, 50) + write_sized_files(tmp_path / "warned", rng, 40)
    padded = engine.padded(inputs, tmp_path / "pad")
    out = tmp_path / "out.json"
    done = run_cli("--max-image-pixels", "1000", "compute", *padded, "--mode", "keep", "--on-error", "skip",
                   "-o", str(out), *engine.options)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    shown = [f"{inputs[0]}", f"{inputs[1]}", f"{inputs[2]}", f"{inputs[3]}::image"]
    assert {entry["path"]: entry["error"] for entry in result["skipped"]} == {name: too_many(50, 50, 2000) for name in shown}
    done = run_cli("--max-image-pixels", "none", "compute", *padded, "--mode", "keep", "-o", str(out), *engine.options)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["count"]["images"] == 8 + engine.padding
    refused = run_cli("--max-image-pixels", "-5", "compute", *padded)
    assert refused.returncode == 2 and "'-5' is not a positive whole number of pixels or 'none'" in refused.stderr


def test_many_bands_count_against_the_limit_in_bytes(tmp_path, monkeypatch):
    # 30×30 pixels are under the pixel limit of 2000; their bands may take up to 4 bytes a pixel
    # (Pillow's widest image, RGBA), 8000 bytes: 6 uint16 bands are over that, 4 are not.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "bands.tif"
    tifffile.imwrite(path, np.ones((30, 30, 6), dtype=np.uint16), planarconfig="contig")
    with pytest.raises(BadImagesError) as refused:
        compute(str(path), mode="keep", workers=0)
    assert str(refused.value).splitlines()[1] == (
        f"  {path}: decompression bomb: 30×30 pixels × 6 bands of uint16 = 10800 bytes exceeds the limit of 8000 "
        "(4 bytes × 2 × PIL.Image.MAX_IMAGE_PIXELS)")
    tifffile.imwrite(path, np.ones((30, 30, 4), dtype=np.uint16), planarconfig="contig")  # 7200 bytes
    assert compute(str(path), mode="keep", workers=0).images == 1


# -- --mode keep measures the same pixels together whatever the container --------------------


@pytest.mark.parametrize("depth", [np.uint8, np.uint16])
def test_keep_measures_png_and_tiff_of_one_kind_together(tmp_path, rng, engine, depth):
    # Grey pixels of one depth in PNGs, TIFFs and a NumPy file (as many as the engine needs:
    # RGB padding would be another kind).
    folder = tmp_path / "data"
    folder.mkdir()
    top = np.iinfo(depth).max
    grey = [rng.integers(0, top + 1, (5 + i % 7, 4 + i % 5), dtype=depth) for i in range(3 + engine.padding)]
    for i, pixels in enumerate(grey[:-1]):
        if i % 2:
            tifffile.imwrite(folder / f"{i:03d}.tif", pixels)
        else:
            write_image(folder / f"{i:03d}.png", pixels)
    np.save(tmp_path / "last.npy", grey[-1])
    out = tmp_path / "out.json"
    done = run_cli("compute", str(folder), str(tmp_path / "last.npy"), "--mode", "keep", "-o", str(out), *engine.options)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    flat = np.concatenate([g.ravel() for g in grey]).astype(np.int64)
    assert result["count"]["images"] == len(grey)
    assert result["scale"] == top and result["channels"] == ["L"]
    assert result["exact"]["mean_raw"] == [float(Fraction(int(flat.sum()), len(flat)))]
    variance = Fraction(int((flat * flat).sum()), len(flat)) - Fraction(int(flat.sum()), len(flat)) ** 2
    assert result["exact"]["std_raw"] == pytest.approx([float(variance) ** 0.5], rel=1e-15)
    assert result["exact"]["min"] == [int(flat.min())] and result["exact"]["max"] == [int(flat.max())]


def test_keep_refuses_two_bit_depths_with_advice_that_works(tmp_path, rng):
    folder = tmp_path / "data"
    write_image(folder / "a.png", rng.integers(0, 65536, (4, 4), dtype=np.uint16))
    tifffile.imwrite(folder / "b.tif", rng.integers(0, 256, (4, 4), dtype=np.uint8))
    done = run_cli("compute", str(folder), "--mode", "keep", "--workers", "0")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"Error: images have different channels or bit depths: L 16-bit (e.g. {folder / 'a.png'}); "
        f"L uint8 scale 255 (e.g. {folder / 'b.tif'}); measure each kind in a run of its own "
        "(--mode RGB and L read 8-bit images only)")


# -- Messages about arrays and tables without images -----------------------------------------


def test_an_empty_array_or_table_says_so(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 8, 3), dtype=np.uint8))
    np.savez(tmp_path / "empty.npz", images=np.zeros((0, 8, 8, 3), dtype=np.uint8))
    pq.write_table(pa.table({"image": pa.array([], pa.binary())}), tmp_path / "empty.parquet")
    cases = {
        "empty.npy": f"{tmp_path / 'empty.npy'} holds an array of shape (0, 8, 8, 3)",
        "empty.npz": f"{tmp_path / 'empty.npz'} holds 'images' of shape (0, 8, 8, 3)",
        "empty.parquet": f"{tmp_path / 'empty.parquet'} is a table of no rows",
    }
    done = run_cli("compute", *(str(tmp_path / name) for name in cases))
    assert done.returncode == 2
    assert done.stderr.strip() == (f"Error: no images in {', '.join(str(tmp_path / name) for name in cases)}: "
                                   + "; ".join(cases.values()))
    # A folder is still searched by extension, and --ext is the advice there.
    (tmp_path / "folder").mkdir()
    assert "change with --ext" in run_cli("compute", str(tmp_path / "folder")).stderr


def test_an_image_without_pixels_in_an_array_is_a_named_bad_image(tmp_path, rng, engine):
    np.save(tmp_path / "flat.npy", np.zeros((0, 8, 3), dtype=np.uint8))
    np.save(tmp_path / "thin.npy", np.zeros((2, 5, 0, 3), dtype=np.uint8))
    good = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "good.npy", good)
    inputs = engine.padded([str(tmp_path / name) for name in ("flat.npy", "thin.npy", "good.npy")], tmp_path / "pad")
    expected = {str(tmp_path / "flat.npy"): "an image without pixels (shape (0, 8, 3))",
                f"{tmp_path / 'thin.npy'}::0": "an image without pixels (shape (5, 0, 3))",
                f"{tmp_path / 'thin.npy'}::1": "an image without pixels (shape (5, 0, 3))"}
    done = run_cli("compute", *inputs, *engine.options)
    assert done.returncode == 2
    assert sorted(done.stderr.strip().splitlines()[1:]) == sorted(f"  {name}: {why}" for name, why in expected.items())
    out = tmp_path / "out.json"
    done = run_cli("compute", *inputs, "--on-error", "skip", "-o", str(out), *engine.options)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert {entry["path"]: entry["error"] for entry in result["skipped"]} == expected
    assert result["count"]["images"] == 1 + engine.padding

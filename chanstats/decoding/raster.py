"""TIFF and GeoTIFF rasters read with ``tifffile``: any number of bands, with names and nodata.

What is read: **series 0 of the file at full resolution** (tifffile's ``series[0]``, level 0). That is
the image of a GeoTIFF or Cloud-Optimized GeoTIFF (overviews are other levels, not read), of an
OME-TIFF or ImageJ hyperstack whose only non-spatial axis is the channel, and of a plain TIFF. Other
series (further images appended to the file, thumbnails) are ignored. A series that is a stack
(pages over time, depth or an unnamed axis, e.g. axes ``QYX``) is refused rather than silently
reduced to its first page: statistics of one page would not describe the file.

Layouts: chunky (``YXS``) or planar (``SYX``), striped or tiled, classic TIFF or BigTIFF, any byte
order. Pixels come back as an (H, W, C) array in native byte order; a planar file gives a view (bands
are not interleaved by a copy), so the array is not necessarily C-contiguous.

Compression: none, PackBits and Deflate/zlib (with or without horizontal predictor) need nothing
beyond ``tifffile``; LZW, JPEG, ZSTD, LERC, WebP and others need the optional ``imagecodecs``
package, and a file that needs it while it is missing is a bad image whose reason says so.

Size: the decompression-bomb limit (:mod:`.limits`) is checked from the header, before a byte of
pixel data is decoded: width × height against the pixel limit, and all bands' bytes against its
stated equivalent (tiles or strips that all point at one small blob decode to gigabytes).
"""

from __future__ import annotations

import io
import math
import os
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import BinaryIO, Sequence

import numpy as np

from ..errors import BadImageError

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
GDAL_METADATA_TAG = 42112
GDAL_NODATA_TAG = 42113
# Axes that may hold bands: samples of one page (S) or a channel axis named by OME/ImageJ metadata.
_BAND_AXES = ("S", "C")


@dataclass(frozen=True)
class Raster:
    """A decoded raster.

    ``pixels`` is (H, W, C) in the file's own units (no scaling). ``band_names`` has one name per
    band when the file's metadata names every band, else ``None``. ``nodata`` is the GeoTIFF
    ``GDAL_NODATA`` value (a number or ``nan``), or ``None`` when the file has no such tag; it
    applies to every band, as in GDAL.
    """

    pixels: np.ndarray
    band_names: tuple[str, ...] | None
    nodata: int | float | None

    @property
    def dtype(self) -> np.dtype:
        return self.pixels.dtype

    @property
    def bands(self) -> int:
        return self.pixels.shape[2]

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]


def read_raster(
    source: str | os.PathLike | bytes | BinaryIO,
    bands: Sequence[int] | None = None,
    display: str | None = None,
) -> Raster:
    """Read series 0 of a TIFF file as an (H, W, C) :class:`Raster`.

    ``source`` is a path, the file's bytes, or a binary file object. ``bands`` selects bands by
    1-based number, as GDAL and rasterio count them (``(2, 3, 4)`` is the second to fourth band),
    in the order given. Raises :class:`BadImageError` naming ``display`` (else the path) for a file
    that is not a TIFF, is corrupt or truncated, needs a missing codec, holds an unsupported pixel
    type, is a stack rather than one image, or lacks a requested band.
    """
    import tifffile  # lazy: keeps `chanstats --help` fast

    shown = display or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<image bytes>")
    if isinstance(source, (bytes, bytearray, memoryview)):
        source = io.BytesIO(source)
    axes, shape = "?", ()
    try:
        with tifffile.TiffFile(source) as tiff:
            series = tiff.series[0]
            page = series.pages[0] if series.pages else tiff.pages[0]
            _check_dtype(series.dtype, shown)
            _check_decodable(page, tifffile, shown)
            _check_not_truncated(series, tiff.filehandle.size, shown)
            axes, shape = series.axes, series.shape
            # Everything the header says is checked before a byte is decoded: tiles or strips that
            # all point at one small blob make a few hundred KB decode to gigabytes.
            _check_size(_hwc_layout(axes, shape, shown), np.dtype(series.dtype), shown)
            # One thread: chanstats already decodes a file per worker process on every core, and
            # tifffile's own thread pool (half the cores by default) would oversubscribe them.
            array = series.asarray(maxworkers=1)
            band_names = _band_names(tiff, page)
            nodata = _nodata_of(page, shown)
    except BadImageError:
        raise
    except FileNotFoundError as error:
        raise BadImageError(shown, f"cannot read: {error.strerror}") from None
    except (PermissionError, IsADirectoryError) as error:
        raise BadImageError(shown, f"cannot read: {error.strerror}") from None
    except MemoryError:
        raise BadImageError(shown, f"too large to decode ({_describe(axes, shape)})") from None
    except Exception as error:  # noqa: BLE001 - tifffile raises struct, zlib, value and its own errors
        raise BadImageError(shown, f"corrupt or truncated TIFF ({_one_line(error)})") from None
    pixels = _to_hwc(array, axes, shown)
    if band_names is not None and len(band_names) != pixels.shape[2]:
        band_names = None
    if bands is not None:
        pixels, band_names = _select_bands(pixels, band_names, bands, shown)
    return Raster(pixels, band_names, nodata)


def _check_dtype(dtype: np.dtype, shown: str) -> None:
    if np.dtype(dtype).name not in SUPPORTED_DTYPES:
        raise BadImageError(
            shown, f"unsupported pixel type {np.dtype(dtype).name} (supported: {', '.join(SUPPORTED_DTYPES)})"
        )


def _check_decodable(page, tifffile, shown: str) -> None:
    compression = page.compression
    predictor = page.predictor
    missing = None
    if compression not in tifffile.TIFF.DECOMPRESSORS:
        missing = f"{_enum_name(compression)} compression"
    elif predictor not in tifffile.TIFF.UNPREDICTORS:
        missing = f"{_enum_name(predictor)} predictor"
    if missing is None:
        return
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        raise BadImageError(shown, f"{missing} needs the imagecodecs package (pip install imagecodecs)") from None
    raise BadImageError(shown, f"unsupported {missing}")


def _check_not_truncated(series, file_size: int, shown: str) -> None:
    # A clear message before decoding: tifffile's own errors for short files name buffer sizes.
    for page in series.pages:
        if page is None:
            continue
        ends = [offset + count for offset, count in zip(page.dataoffsets, page.databytecounts) if count]
        if ends and max(ends) > file_size:
            raise BadImageError(
                shown, f"truncated TIFF (pixel data ends at byte {max(ends)}, the file has {file_size} bytes)"
            )


def _hwc_layout(axes: str, shape: Sequence[int], shown: str) -> "_Layout":
    """How series axes become (H, W, C), from the header alone: length-1 non-spatial axes are
    dropped; anything but one image with at most one band axis is refused."""
    kept = [(axis, size) for axis, size in zip(axes, shape) if axis in "YX" or size != 1]
    names = "".join(axis for axis, _ in kept)
    sizes = tuple(size for _, size in kept)
    extra = [axis for axis in names if axis not in "YX"]
    if "Y" not in names or "X" not in names or len(extra) > 1 or (extra and extra[0] not in _BAND_AXES):
        raise BadImageError(
            shown,
            f"a stack of images (axes {axes}, shape {sizes}), not one raster; "
            "chanstats reads one image per file",
        )
    order = [names.index("Y"), names.index("X")] + ([names.index(extra[0])] if extra else [])
    return _Layout(sizes, tuple(order))


@dataclass(frozen=True)
class _Layout:
    shape: tuple[int, ...]  # the series' shape without its length-1 non-spatial axes
    order: tuple[int, ...]  # the axes of ``shape`` that are Y, X (and the band axis)

    @property
    def height(self) -> int:
        return self.shape[self.order[0]]

    @property
    def width(self) -> int:
        return self.shape[self.order[1]]

    @property
    def bands(self) -> int:
        return self.shape[self.order[2]] if len(self.order) == 3 else 1


def _check_size(layout: _Layout, dtype: np.dtype, shown: str) -> None:
    from .limits import check_declared_size

    check_declared_size(layout.width, layout.height, shown, bands=layout.bands, itemsize=dtype.itemsize,
                        kind=dtype.name)


def _to_hwc(array: np.ndarray, axes: str, shown: str) -> np.ndarray:
    """Reorder series axes to (H, W, C); length-1 non-spatial axes are dropped."""
    layout = _hwc_layout(axes, array.shape, shown)
    pixels = array.reshape(layout.shape).transpose(layout.order)
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if not pixels.dtype.isnative:
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    return pixels


def _select_bands(
    pixels: np.ndarray, band_names: tuple[str, ...] | None, bands: Sequence[int], shown: str
) -> tuple[np.ndarray, tuple[str, ...] | None]:
    count = pixels.shape[2]
    wanted = list(bands)
    outside = [band for band in wanted if not 1 <= band <= count]
    if not wanted or outside:
        raise BadImageError(shown, f"no band {outside[0] if outside else '(none selected)'}: the file has {count} bands (numbered from 1)")
    indices = [band - 1 for band in wanted]
    names = tuple(band_names[i] for i in indices) if band_names is not None else None
    return pixels[:, :, indices], names


def _band_names(tiff, page) -> tuple[str, ...] | None:
    """Band names from GDAL band descriptions, else OME-XML channel names, else ``None``."""
    return _gdal_band_names(page) or _ome_channel_names(tiff)


def _gdal_band_names(page) -> tuple[str, ...] | None:
    tag = page.tags.get(GDAL_METADATA_TAG)
    if tag is None or not isinstance(tag.value, str):
        return None
    try:
        root = ElementTree.fromstring(tag.value)
    except ElementTree.ParseError:
        return None  # names are a convenience: a malformed metadata block does not spoil the pixels
    names: dict[int, str] = {}
    for item in root.iter("Item"):
        if item.get("role") == "description" and item.get("sample") is not None and item.text:
            names[int(item.get("sample"))] = item.text.strip()
    return _complete(names)


def _ome_channel_names(tiff) -> tuple[str, ...] | None:
    if not tiff.is_ome or not tiff.ome_metadata:
        return None
    try:
        root = ElementTree.fromstring(tiff.ome_metadata)
    except ElementTree.ParseError:
        return None
    image = next((el for el in root.iter() if el.tag.endswith("}Image") or el.tag == "Image"), None)
    if image is None:
        return None
    channels = [el.get("Name") for el in image.iter() if el.tag.endswith("}Channel") or el.tag == "Channel"]
    return _complete(dict(enumerate(channels)))


def _complete(names: dict[int, str | None]) -> tuple[str, ...] | None:
    """The names in band order when every band from 0 up has a non-empty one, else ``None``."""
    if not names or sorted(names) != list(range(len(names))) or not all(names.values()):
        return None
    return tuple(names[i] for i in range(len(names)))


def _nodata_of(page, shown: str) -> int | float | None:
    """The ``GDAL_NODATA`` tag as a number (``nan`` allowed), or ``None`` when absent."""
    tag = page.tags.get(GDAL_NODATA_TAG)
    if tag is None:
        return None
    text = tag.value.decode("ascii", "replace") if isinstance(tag.value, bytes) else str(tag.value)
    text = text.strip().strip("\x00").strip()
    try:
        value = float(text)
    except ValueError:
        raise BadImageError(shown, f"GDAL_NODATA tag is not a number ({text!r})") from None
    # Integral values read as integers (0, not 0.0); a float32 limit such as -3.4e38 stays a float.
    return int(value) if math.isfinite(value) and value.is_integer() and abs(value) <= 2**53 else value


def _enum_name(value) -> str:
    return getattr(value, "name", str(value))


def _describe(axes: str, shape: tuple[int, ...]) -> str:
    return f"axes {axes}, shape {tuple(shape)}"


def _one_line(error: Exception) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."

"""Writes tile.tif: a small synthetic 4-band uint16 GeoTIFF-style raster (Sentinel-2-like
reflectance values, bands B02 B03 B04 B08 named as GDAL band descriptions in its GDAL_METADATA
tag) with a nodata border of zeros declared by the GDAL_NODATA tag. Deterministic: the same bytes on every run.

    python examples/rasters/make_tile.py
"""

from pathlib import Path

import numpy as np
import tifffile

GDAL_METADATA = 42112
GDAL_NODATA = 42113
BANDS = ("B02", "B03", "B04", "B08")


def tile() -> np.ndarray:
    rng = np.random.default_rng(2024)
    y, x = np.mgrid[0:40, 0:40]
    field = 1 + 0.5 * np.sin(x / 6.0) * np.cos(y / 9.0)  # smooth "land cover"
    base = np.array([900, 1100, 1000, 2600], dtype=np.float64)  # blue, green, red, near infrared
    pixels = field[:, :, None] * base + rng.normal(0, 60, (40, 40, 4))
    pixels = np.clip(pixels, 1, 10000).astype(np.uint16)
    pixels[:, :5] = 0  # nodata: the swath edge
    pixels[-3:] = 0
    return pixels


def band_descriptions() -> str:
    items = "".join(f'<Item name="DESCRIPTION" sample="{i}" role="description">{name}</Item>' for i, name in enumerate(BANDS))
    return f"<GDALMetadata>{items}</GDALMetadata>"


if __name__ == "__main__":
    out = Path(__file__).with_name("tile.tif")
    tifffile.imwrite(out, tile(), photometric="minisblack", planarconfig="contig", compression="zlib",
                     metadata=None, extratags=[(GDAL_METADATA, "s", 0, band_descriptions(), True),
                                               (GDAL_NODATA, "s", 0, "0", True)])
    print(f"wrote {out} ({out.stat().st_size} bytes)")

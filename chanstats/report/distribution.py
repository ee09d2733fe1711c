"""What a config records of the distribution beyond mean and std, so that ``check`` can compare
whole distributions: each channel's exact histogram, and a sample of per-image properties.

``histogram`` (integer pixels, when the run counted histograms: data wider than 8 bits or
nodata-masked, percentiles asked for by name, or ``--histogram``): per channel,
the exact counts of bins ``bin_width`` raw values wide, from the channel's first non-empty bin to
its last. ``bin_width`` is 1 (every value its own bin, nothing lost) whenever each channel's values
span at most :data:`MAX_RECORDED_BINS` values: all 8-bit data and 10-bit data in 16-bit files.
Wider data (full-range 16-bit, 32-bit rasters) is grouped into bins of the smallest power-of-two
width that fits, aligned on multiples of it, so a config stays a few kilobytes; the recorded
percentiles stay exact (they are computed from the full histogram before grouping).

``image_properties``: per image, each channel's mean ("brightness") and population std
("contrast"), and the image's area (width × height pixels) and aspect ratio (width / height).
Every image when there are at most :data:`PROPERTY_SAMPLE`, else a seeded random sample of that
many (seed: the run's ``--seed``); each column sorted, values rounded to
:data:`PROPERTY_DIGITS` significant digits. ``check`` draws and rounds the new run's columns the
same way, so an unchanged dataset gives identical columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import BadSpecError
from ..stats.histogram import BandCounts, ChannelHistogram
from ..stats.per_image import PerImage

# Bins per channel above which a histogram is grouped into wider bins: 1024 keeps every 8- and
# 10-bit value its own bin, and a config of a 16-bit dataset under ~10 kB per channel.
MAX_RECORDED_BINS = 1024
# Per-image values recorded per column. With 1000 on each side, the KS statistic of two samples
# drawn from one distribution exceeds 0.1 with probability below 1e-4.
PROPERTY_SAMPLE = 1000
PROPERTY_DIGITS = 6


@dataclass(frozen=True)
class BinnedCounts:
    """Counts of consecutive bins: bin ``i`` holds the values ``low + i·width`` to
    ``low + (i + 1)·width − 1`` (``low`` a multiple of ``width``)."""

    low: int
    counts: np.ndarray  # uint64


@dataclass(frozen=True)
class RecordedHistogram:
    """Per-channel exact counts in bins ``width`` raw values wide."""

    width: int
    channels: list[BinnedCounts]

    @classmethod
    def of(cls, histogram: ChannelHistogram, width: int | None = None) -> "RecordedHistogram":
        """``histogram`` grouped into bins of ``width`` (default: the narrowest power of two that
        keeps every channel within :data:`MAX_RECORDED_BINS` bins)."""
        bands = histogram.bands
        width = width or bin_width_for(bands)
        return cls(width, [_binned(band, width) for band in bands])

    def to_config(self) -> dict[str, Any]:
        return {
            "bin_width": self.width,
            "channels": [{"low": c.low, "counts": [int(v) for v in c.counts.tolist()]} for c in self.channels],
        }

    @classmethod
    def from_config(cls, section: Any, channels: int, source: str = "config") -> "RecordedHistogram":
        """The ``histogram`` section of a config, checked: an unusable one is an input error."""
        problem = f"{source}: 'histogram' must hold bin_width (a positive integer) and one {{low, counts}} per channel"
        if not isinstance(section, dict):
            raise BadSpecError(problem)
        width, recorded = section.get("bin_width"), section.get("channels")
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise BadSpecError(problem)
        if not isinstance(recorded, list) or len(recorded) != channels:
            raise BadSpecError(f"{source}: 'histogram' must have one entry per channel ({channels})")
        parsed = []
        for entry in recorded:
            low = entry.get("low") if isinstance(entry, dict) else None
            counts = entry.get("counts") if isinstance(entry, dict) else None
            if (isinstance(low, bool) or not isinstance(low, int) or low % width or not isinstance(counts, list)
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**64 for v in counts)):
                raise BadSpecError(problem)
            parsed.append(BinnedCounts(low, np.asarray(counts, dtype=np.uint64)))
        return cls(width, parsed)


def bin_width_for(bands: Sequence[BandCounts]) -> int:
    """The narrowest power-of-two bin width with which every band spans at most
    :data:`MAX_RECORDED_BINS` bins (1 for 8-bit data)."""
    width = 1
    for band in bands:
        if band.is_empty:
            continue
        low, high = band.minimum(), band.maximum()
        while high // width - low // width + 1 > MAX_RECORDED_BINS:
            width *= 2
    return width


def _binned(band: BandCounts, width: int) -> BinnedCounts:
    if band.is_empty:
        return BinnedCounts(0, np.zeros(0, dtype=np.uint64))
    values, counts = band.pairs()
    bins = values // width  # floor division: bins stay aligned for negative values too
    starts = np.flatnonzero(np.concatenate([[True], bins[1:] != bins[:-1]]))
    first = int(bins[0])
    dense = np.zeros(int(bins[-1]) - first + 1, dtype=np.uint64)
    # reduceat keeps uint64: a weighted bincount would round counts through float64.
    dense[bins[starts] - first] = np.add.reduceat(counts, starts)
    return BinnedCounts(first * width, dense)


def aligned(a: BinnedCounts, b: BinnedCounts, width: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two channels' counts on their common bins: ``(positions, counts_a, counts_b)``, positions
    being the bins' centres on the [0, 1] scale (the values themselves when ``width`` is 1)."""
    first = min(a.low, b.low) // width
    last = max(a.low // width + a.counts.size, b.low // width + b.counts.size)
    padded = []
    for side in (a, b):
        counts = np.zeros(last - first, dtype=np.float64)
        start = side.low // width - first
        counts[start : start + side.counts.size] = side.counts
        padded.append(counts)
    positions = (np.arange(first, last, dtype=np.float64) * width + (width - 1) / 2) / scale
    return positions, padded[0], padded[1]


@dataclass(frozen=True)
class ImageProperties:
    """Per-image property columns (each sorted): ``brightness[c]`` and ``contrast[c]`` per
    channel, ``area`` and ``aspect`` per image; ``images`` counted, ``recorded`` kept."""

    images: int
    recorded: int
    brightness: list[list[float]]
    contrast: list[list[float]]
    area: list[int]
    aspect: list[float]

    @classmethod
    def of(cls, per_image: PerImage, seed: int = 0, limit: int = PROPERTY_SAMPLE) -> "ImageProperties":
        """The columns of every image, or of a seeded random sample of ``limit`` of them."""
        total = len(per_image.paths)
        if total > limit:
            rows = np.sort(np.random.default_rng(seed).choice(total, size=limit, replace=False))
        else:
            rows = np.arange(total)
        sample = PerImage([], [], [], per_image.table.take(rows))
        widths = np.asarray(per_image.widths)[rows].astype(np.int64)
        heights = np.asarray(per_image.heights)[rows].astype(np.int64)
        aspect = widths / np.maximum(heights, 1)
        return cls(
            images=total,
            recorded=len(rows),
            brightness=[_rounded_sorted(column) for column in sample.mean.T],
            contrast=[_rounded_sorted(column) for column in sample.std.T],
            area=sorted((widths * heights).tolist()),
            aspect=_rounded_sorted(aspect),
        )

    def to_config(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "recorded": self.recorded,
            "digits": PROPERTY_DIGITS,
            "brightness": self.brightness,
            "contrast": self.contrast,
            "area": self.area,
            "aspect": self.aspect,
        }

    @classmethod
    def from_config(cls, section: Any, channels: int, source: str = "config") -> "ImageProperties":
        problem = (f"{source}: 'image_properties' must hold images, recorded, and lists of numbers "
                   f"brightness and contrast (one per channel), area and aspect")
        if not isinstance(section, dict):
            raise BadSpecError(problem)
        try:
            brightness = [_numbers(column) for column in section["brightness"]]
            contrast = [_numbers(column) for column in section["contrast"]]
            area, aspect = _numbers(section["area"]), _numbers(section["aspect"])
            images, recorded = int(section["images"]), int(section["recorded"])
        except (KeyError, TypeError, ValueError):
            raise BadSpecError(problem) from None
        if len(brightness) != channels or len(contrast) != channels:
            raise BadSpecError(f"{source}: 'image_properties' must have one brightness and contrast column per channel ({channels})")
        return cls(images, recorded, brightness, contrast, [int(v) for v in area], aspect)

    def columns(self) -> dict[str, list[list[float]] | list[float]]:
        """Property name → its column (or per-channel columns), in report order."""
        return {"brightness": self.brightness, "contrast": self.contrast, "area": self.area, "aspect": self.aspect}


def _rounded_sorted(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    return sorted(float(f"{v:.{PROPERTY_DIGITS}g}") for v in finite.tolist())


def _numbers(column: Any) -> list[float]:
    if not isinstance(column, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in column):
        raise TypeError("not a list of numbers")
    return [float(v) for v in column]

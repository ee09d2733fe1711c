"""The instance-level view: one row per image (its size, per-channel mean and std) and the images
whose mean is most unlike the rest.

This is what InstanceNorm would normalize away, and where corrupt, blank or mislabeled images
hide. Values are in model units: the [0, 1] scale for integer images (raw / 255 or / 65535), the
pipeline's own units for float output; std is the population std (ddof 0) of the image's pixels.
An image passed through a random transform for K epochs is pooled over its K samples.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from .moments import MomentsTable

# Rows of the per-image CSV made and written at a time.
CSV_ROWS_PER_PIECE = 65536
# Iglewicz and Hoaglin's cut-off for the modified z-score: beyond it a value is a likely outlier.
ATYPICAL_Z = 3.5
# Below this many images a median and MAD are too noisy to call anything atypical.
MIN_IMAGES_FOR_ATYPICAL = 8
# 0.6745 = Φ⁻¹(0.75) makes MAD/0.6745 estimate σ for normal data; 1.253314 = √(π/2) does the same
# for the mean absolute deviation, the fallback when more than half the images share one mean.
_MAD_FACTOR = 0.6745
_MEAN_AD_FACTOR = 1.253314


@dataclass
class PerImage:
    """Per-image statistics in listing order: ``paths[i]`` is ``widths[i]`` × ``heights[i]`` pixels
    and ``table`` row ``i`` holds its (pixel count, mean, M2) per channel. ``frames``, in runs of
    videos only: each video's frames measured (``None`` for an image beside them)."""

    paths: Sequence[str]
    widths: Sequence[int]
    heights: Sequence[int]
    table: MomentsTable
    frames: Sequence[int | None] | None = None

    @property
    def mean(self) -> np.ndarray:
        """(images, C) per-image channel means."""
        return self.table.mean

    @property
    def std(self) -> np.ndarray:
        """(images, C) per-image population std (ddof 0)."""
        count = np.maximum(self.table.channel_count(), 1).astype(np.float64)
        return np.sqrt(np.maximum(self.table.m2, 0.0) / count)

    def to_csv(self, channels: Sequence[str]) -> str:
        """``path,width,height,mean_<C>...,std_<C>...`` with full float64 precision (repr); runs of
        videos have a ``frames`` column after ``height``."""
        return "".join(self.csv_pieces(channels))

    def csv_pieces(self, channels: Sequence[str], rows: int = CSV_ROWS_PER_PIECE) -> Iterator[str]:
        """:meth:`to_csv` as consecutive pieces of at most ``rows`` images each, so a file of
        millions of rows is written without holding it (or every image's mean) in memory."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        frames = self.frames
        writer.writerow(["path", "width", "height"] + (["frames"] if frames is not None else [])
                        + [f"mean_{c}" for c in channels] + [f"std_{c}" for c in channels])
        for start in range(0, len(self.paths), rows):
            stop = min(len(self.paths), start + rows)
            block = PerImage(self.paths, self.widths, self.heights, self.table.take(slice(start, stop)))
            mean, std = block.mean, block.std
            for i in range(stop - start):
                counted = [] if frames is None else ["" if frames[start + i] is None else frames[start + i]]
                writer.writerow([self.paths[start + i], self.widths[start + i], self.heights[start + i]] + counted
                                + [repr(float(v)) for v in mean[i]] + [repr(float(v)) for v in std[i]])
            yield out.getvalue()
            out.seek(0)
            out.truncate()
        if out.tell():  # the header of a table without rows
            yield out.getvalue()

    def atypical(self, limit: int = 5, threshold: float = ATYPICAL_Z) -> list[tuple[int, float]]:
        """Up to ``limit`` ``(image index, z)`` with |z| > ``threshold``, most atypical first.

        z is the robust (modified) z-score of the image's mean, taken on the channel where it is
        largest in magnitude: ``0.6745·(x − median) / MAD``.

        >>> values = (0.5, 0.51, 0.49, 0.5, 0.52, 0.48, 0.5, 0.99)
        >>> t = MomentsTable.from_rows([(1, [v], [0.0]) for v in values], 1)
        >>> [(i, round(z, 1)) for i, z in PerImage(list("abcdefgh"), [1] * 8, [1] * 8, t).atypical()]
        [(7, 33.1)]
        """
        if len(self.paths) < MIN_IMAGES_FOR_ATYPICAL or self.table.channels == 0:
            return []
        # One channel at a time: the temporaries are a column each, not an (images, C) array each.
        mean = self.table.mean
        strongest = robust_z(mean[:, 0])
        for c in range(1, mean.shape[1]):
            z = robust_z(mean[:, c])
            np.copyto(strongest, z, where=np.abs(z) > np.abs(strongest))  # ties keep the first channel
        beyond = np.flatnonzero(np.abs(strongest) > threshold)  # few: sorting them in Python is cheap
        order = sorted(beyond.tolist(), key=lambda i: (-abs(strongest[i]), i))
        return [(i, float(strongest[i])) for i in order[:limit]]

    def atypical_summary(self, channels: Sequence[str], limit: int = 5) -> str:
        """A few lines for the human output; empty when no image stands out."""
        found = self.atypical(limit)
        if not found:
            return ""
        lines = [f"most atypical images (robust z-score of the image mean, |z| > {ATYPICAL_Z:g}):"]
        for i, z in found:
            means = " ".join(f"{c} {v:.4f}" for c, v in zip(channels, self.mean[i]))
            lines.append(f"  z {z:+8.1f}  {self.paths[i]}  (mean {means})")
        return "\n".join(lines)


def robust_z(values: np.ndarray) -> np.ndarray:
    """Column-wise modified z-scores of an (n, C) array (or of one column, (n,)); 0 where a column
    has no spread.

    >>> robust_z(np.array([[1.0], [2.0], [3.0], [10.0]])).round(2).ravel().tolist()
    [-1.01, -0.34, 0.34, 5.06]
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] < 3:
        return np.zeros_like(values)
    median = np.median(values, axis=0)
    deviation = values - median
    mad = np.median(np.abs(deviation), axis=0)
    mean_ad = np.mean(np.abs(deviation), axis=0)
    scale = np.where(mad > 0, mad / _MAD_FACTOR, mean_ad * _MEAN_AD_FACTOR)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = np.where(scale > 0, deviation / np.where(scale > 0, scale, 1.0), 0.0)
    return z



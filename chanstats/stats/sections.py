"""The statistics sections of a result, from a whole run's merged totals: the exact mean/std, the
percentiles (with the mean/std of percentile-clipped pixels), the nodata note and a sample's
confidence intervals. ``api.finalize`` assembles a result from these; each takes typed values, not
the recorded options.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Sequence

from ..errors import ChanstatsError, NoImagesError
from .moments import FloatMoments, IntegerMoments, NoPixelsError
from .sampling import SampleSpec, cluster_intervals, cluster_table, describe


def exact_statistics(totals, images) -> tuple[Any, str]:
    """The exact statistics of one pixel format: integer totals finalized once, or the images'
    float64 moments merged in listing order (Chan's formula is not associative in floating point).
    Returns them and the method, ``"integer"`` or ``"float64"``."""
    pixel_format = totals.format
    if totals.integer is not None:
        return _finalized(totals.integer, pixel_format.scale), "integer"
    total_float = FloatMoments.empty(len(pixel_format.channels))
    for moments_of_image in images.float_moments or ():
        for moments in moments_of_image or ():
            total_float.merge(moments)
    return _finalized(total_float, pixel_format.scale), "float64"


def _finalized(moments, scale):
    try:
        return moments.finalize(scale)
    except NoPixelsError as error:
        raise NoImagesError(f"{error}: every pixel of that band was excluded") from None


def exact_histogram(totals):
    """The merged exact histograms, or ``None`` when none were counted or the data is float (a
    quantile sketch is no histogram)."""
    histogram = totals.histogram
    return None if histogram is None or hasattr(histogram, "relative_error") else histogram


def percentiles_section(totals, qs: Sequence[float] | None, epochs: int = 1) -> dict[str, Any] | None:
    """The percentiles ``qs`` (``None``: none asked): exact (integer data, from the merged
    histograms of every image's ``epochs`` samples) or from the quantile sketch within its stated
    relative error (float data)."""
    if qs is None or totals.histogram is None:
        return None
    histogram = totals.histogram
    _check_histogram_covers_every_image(histogram, totals, epochs)
    scale = totals.format.scale
    raw = [list(row) for row in histogram.percentiles(qs)]
    if hasattr(histogram, "relative_error"):
        method = f"sketch: inverted_cdf within relative error {histogram.relative_error:g} of the value"
    else:
        method = "exact inverted_cdf"
    section = {
        "method": method,
        "q": list(qs),
        "raw": raw,
        "scaled": [[None if v is None else v / scale for v in row] for row in raw],
    }
    if not hasattr(histogram, "relative_error"):
        clipped = clipped_statistics(histogram, qs, raw, scale)
        if clipped:
            section["clipped"] = clipped
    return section


def _check_histogram_covers_every_image(histogram, totals, epochs: int) -> None:
    """Exact percentiles need every image's counts. Parts and checkpoints of chanstats 0.1.0
    written before percentiles became ``auto`` record the same options as later ones but hold
    histograms of 8-bit images, which later parts do not: merged, they would cover some images."""
    if totals.integer is None or hasattr(histogram, "relative_error"):
        return
    counted = [n * epochs for n in histogram.counts()]
    if counted != list(totals.integer.channel_counts()):
        raise ChanstatsError(
            "the histograms cover only some of the images (parts or a checkpoint from before percentiles "
            "became 'auto'?): recompute them, or give --percentiles explicitly to every part"
        )


def clipped_statistics(histogram, qs, raw, scale) -> list[dict[str, Any]]:
    """Exact mean/std of the pixels clipped to each symmetric pair of percentiles (q, 100 - q)
    among ``qs`` (0.5/99.5, 1/99, 2/98 by default), as percentile-clip normalizations use them."""
    exact = [Fraction(str(q)) for q in qs]
    pairs = []
    for i, low in enumerate(exact):
        if low < 50 and (100 - low) in exact:
            j = exact.index(100 - low)
            if None in raw[i] or None in raw[j]:
                continue  # a channel with no pixel has no bounds
            pixels, sums, squares = histogram.clipped_sums(raw[i], raw[j])
            try:
                stats = IntegerMoments(max(pixels), sums, squares, list(raw[i]), list(raw[j]), pixels).finalize(scale)
            except NoPixelsError:
                continue
            pairs.append({
                "q": [qs[i], qs[j]],
                "mean": list(stats.mean),
                "std": list(stats.std),
                "mean_raw": list(stats.mean_raw),
                "std_raw": list(stats.std_raw),
            })
    return pairs


def nodata_section(pixel_format, nodata: str | None) -> dict[str, Any] | None:
    """Where the excluded value came from (``--nodata``, or the files' own tag), when any was."""
    if not pixel_format.masked:
        return None
    return {"option": nodata, "source": "option" if nodata is not None else "file"}


def sample_section(images, pixel_format, method: str, population: int, sample: SampleSpec, seed: int) -> dict[str, Any]:
    """A sampled run's size and confidence intervals (see :mod:`chanstats.stats.sampling`) over the
    ``population`` of images listed."""
    clusters = cluster_table([images.sample_rows(i) for i in range(len(images))], len(pixel_format.channels))
    bounds = (0.0, 1.0) if method == "integer" else None
    intervals = cluster_intervals(clusters, population, bounds=bounds)
    return describe(sample, intervals, seed)

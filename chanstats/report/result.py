"""The result of a run and its schema: what :func:`chanstats.compute` returns and a config holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..sources.base import ImageSource
from ..stats.batchnorm import RunningEstimate
from ..stats.histogram import ChannelHistogram
from ..stats.moments import ChannelStats, MomentsTable
from ..stats.per_image import PerImage
from .distribution import ImageProperties, RecordedHistogram
from .files import dumps, format_for_path, write_atomic


@dataclass
class Result:
    """Everything one ``compute`` found.

    ``exact`` holds the exact statistics (mean/std on the [0, 1] scale, ``*_raw`` on 0..scale,
    population std, ddof 0); ``running`` the simulated BatchNorm running estimate (on [0, 1]);
    ``table`` the per-sample moments in listing order and ``sources`` the images measured.
    """

    version: str
    channels: tuple[str, ...]
    scale: int
    images: int
    samples: int
    exact: ChannelStats
    exact_method: str
    running: RunningEstimate
    options: dict[str, Any]
    fingerprint: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    dropped_alpha: int = 0
    table: MomentsTable | None = field(default=None, repr=False)
    sources: list[ImageSource] = field(default_factory=list, repr=False)
    per_image: PerImage | None = field(default=None, repr=False)
    listing: list[tuple[str, int]] | None = field(default=None, repr=False)
    # Set when only a seeded random subset was measured (--sample): its size and confidence
    # intervals, see chanstats.stats.sampling.describe. ``exact`` is then exact for that subset.
    sample: dict[str, Any] | None = None
    # Per-channel percentiles ("method", "q", "raw", "scaled", and for integer data "clipped": exact
    # mean/std of the pixels clipped to each pair (q, 100 - q)), None when switched off.
    percentiles: dict[str, Any] | None = None
    # Rasters and arrays: the numpy dtype; with nodata in effect, where it came from.
    dtype: str | None = None
    nodata: dict[str, Any] | None = None
    # The exact merged histograms (integer pixels, when the run counted them: data wider than 8
    # bits, nodata, percentiles asked for, or --histogram), for the config's ``histogram`` section
    # that ``check`` compares distributions with and ``show --plot`` draws.
    histogram: ChannelHistogram | None = field(default=None, repr=False)
    # Runs of videos: the videos measured and their frames over all samples (``count.videos`` and
    # ``count.frames``).
    videos_and_frames: tuple[int, int] | None = None

    @property
    def mean(self) -> list[float]:
        """Per-channel mean on the [0, 1] scale: what ``Normalize(mean=...)`` takes."""
        return list(self.exact.mean)

    @property
    def std(self) -> list[float]:
        """Per-channel population std (ddof 0) on the [0, 1] scale: ``Normalize(std=...)``."""
        return list(self.exact.std)

    def normalize(self):
        """``torchvision.transforms.v2.Normalize`` with the exact mean/std ([0, 1] scale, ddof 0)."""
        from torchvision.transforms import v2

        return v2.Normalize(mean=self.mean, std=self.std)

    def export(self, fmt: str, **options: Any) -> str | bytes:
        """What ``chanstats export CONFIG --to fmt`` writes for this result: text, or bytes for
        ``bn-state``. ``options`` are :func:`chanstats.report.export.export`'s (``eps``, ``affine``,
        ``base``, ``flavour``, ``preprocessor_type``)."""
        from .export import export

        return export(self.to_dict(), fmt, **options)

    def to_dict(self) -> dict[str, Any]:
        exact = self.exact
        running = self.running
        settings = running.settings
        data = {
            "chanstats": self.version,
            "channels": list(self.channels),
            "scale": self.scale,
            **({"dtype": self.dtype} if self.dtype else {}),
            **({"nodata": self.nodata} if self.nodata is not None else {}),
            "count": {
                "images": self.images,
                "samples": self.samples,
                "pixels": exact.pixels if isinstance(exact.pixels, int) else list(exact.pixels),
                "skipped": len(self.skipped),
                "dropped_alpha": self.dropped_alpha,
                **(dict(zip(("videos", "frames"), self.videos_and_frames)) if self.videos_and_frames is not None else {}),
            },
            "exact": {
                "method": self.exact_method,
                "mean": list(exact.mean),
                "std": list(exact.std),
                "mean_raw": list(exact.mean_raw),
                "std_raw": list(exact.std_raw),
                "min": [_number(v) for v in exact.min],
                "max": [_number(v) for v in exact.max],
                "ddof": 0,
            },
            "running": {
                **settings.to_dict(),
                "batches": running.batches,
                "mean": _floats(running.mean),
                "var": _floats(running.var),
                "std": _floats(running.std),
            },
            "gap": {
                "mean": [float(r) - e for r, e in zip(running.mean, exact.mean)],
                "std": [float(r) - e for r, e in zip(running.std, exact.std)],
            },
            "options": self.options,
            "fingerprint": self.fingerprint,
            "skipped": [{"path": path, "error": error} for path, error in self.skipped],
            **({"listing": [[name, size] for name, size in self.listing]} if self.listing is not None else {}),
        }
        if self.percentiles is not None:
            data["percentiles"] = self.percentiles
        if self.sample is not None:
            data["sample"] = self.sample
        if self.histogram is not None:
            data["histogram"] = RecordedHistogram.of(self.histogram).to_config()
        if self.per_image is not None:
            data["image_properties"] = self.image_properties().to_config()
        return data

    def image_properties(self) -> ImageProperties:
        """The per-image property columns a config records (see :mod:`chanstats.report.distribution`)."""
        if self.per_image is None:
            raise ValueError("this result holds no per-image table")
        return ImageProperties.of(self.per_image, int(self.options.get("seed", 0)))

    def dumps(self, fmt: str = "json") -> str:
        return dumps(self.to_dict(), fmt)

    def write(self, path: str, fmt: str | None = None) -> None:
        """Write the config atomically; the format comes from ``fmt`` or the file's extension."""
        write_atomic(path, self.dumps(fmt or format_for_path(path)))


def _floats(values) -> list[float]:
    return [float(v) for v in values]


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


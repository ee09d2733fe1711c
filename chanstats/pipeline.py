"""``compute``: list → measure (in parallel) → merge → finalize → simulate BatchNorm → Result.

Everything here runs in the main process on small per-image records, in listing order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from . import __version__
from .decode import PixelFormat, check_mode
from .engine import measure_all
from .errors import BadImagesError, ChanstatsError, NoImagesError
from .measure import Measurement, Measurer
from .per_image import PerImage
from .moments import ChannelStats, FloatMoments, IntegerMoments, MomentsTable
from .report import Result
from .running import RunningSettings, simulate
from .sampling import SampleSpec, cluster_intervals, cluster_table, describe, sample_indices
from .sources import IMAGE_EXTENSIONS, ImageSource, fingerprint, list_images, normalize_extensions
from .transforms import resolve as resolve_transform

ON_ERROR = ("fail", "skip")
DEFAULT_MOMENTUM = "default"


@dataclass(frozen=True)
class ErrorBudget:
    """``--max-bad``: how many bad images a ``--on-error skip`` run may skip, as a count or percent."""

    limit: float
    percent: bool

    @classmethod
    def parse(cls, text: str | int | None) -> "ErrorBudget | None":
        """``"10"`` → at most 10 images; ``"2.5%"`` → at most 2.5 % of the images found.

        >>> ErrorBudget.parse("2.5%")
        ErrorBudget(limit=2.5, percent=True)
        """
        if text is None:
            return None
        raw = str(text).strip()
        percent = raw.endswith("%")
        try:
            limit = float(raw[:-1]) if percent else int(raw)
        except ValueError:
            raise ChanstatsError(f"--max-bad {raw!r}: expected a count such as 10 or a percentage such as 2%") from None
        if limit < 0 or (percent and limit > 100):
            raise ChanstatsError(f"--max-bad {raw!r}: out of range")
        return cls(limit, percent)

    def exceeded(self, bad: int, total: int) -> bool:
        allowed = self.limit * total / 100 if self.percent else self.limit
        return bad > allowed

    def __str__(self) -> str:
        return f"{self.limit:g}%" if self.percent else str(int(self.limit))


def running_settings(
    convention: str = "torch",
    momentum: float | str | None = DEFAULT_MOMENTUM,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
) -> RunningSettings:
    """Settings from user-level values. ``momentum``: a number, ``None`` or ``"none"`` for torch's
    cumulative average, or ``"default"`` for the convention's default (torch 0.1, keras 0.99)."""
    cumulative = momentum is None or (isinstance(momentum, str) and momentum.lower() == "none")
    value: float | None = None
    if not cumulative and momentum != DEFAULT_MOMENTUM:
        try:
            value = float(momentum)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ChanstatsError(f"--momentum {momentum!r}: expected a number or 'none'") from None
    return RunningSettings(
        convention=convention,
        momentum=value,
        cumulative=cumulative,
        batch_size=batch_size,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
    ).validate()


def compute(
    paths: str | Iterable[str],
    *,
    mode: str = "RGB",
    extensions: Iterable[str] = IMAGE_EXTENSIONS,
    batch_size: int = 64,
    momentum: float | str | None = DEFAULT_MOMENTUM,
    convention: str = "torch",
    seed: int = 0,
    shuffle: bool = True,
    drop_last: bool = False,
    on_error: str = "fail",
    max_bad: str | int | None = None,
    workers: int | None = None,
    progress: bool = False,
    transform: str | list | None = None,
    epochs: int = 1,
    resize: int | None = None,
    center_crop: int | None = None,
    listing: bool = False,
    sample: str | int | None = None,
) -> Result:
    """Exact per-channel statistics of the images under ``paths``, and BatchNorm's running estimate.

    ``paths``: directories (walked recursively), image files, and ``@list.txt`` files. ``mode``:
    ``"RGB"`` (torchvision's loader), ``"L"`` or ``"keep"``. The result's ``mean``/``std`` are on the
    [0, 1] scale with ddof 0, ready for ``transforms.Normalize``. Bad images raise
    :class:`~chanstats.errors.BadImagesError` listing each, unless ``on_error="skip"``.
    ``sample``: measure only a seeded random subset (``500`` images or ``"10%"``, seed ``seed``);
    the result then carries confidence intervals (:mod:`chanstats.sampling`).

    ``listing=True`` also records every file's relative name and size in the config, so that
    ``chanstats check`` can count added and removed files, not only see that the list changed.

    ``transform`` (a YAML/JSON spec file, a list of ``torchvision.transforms.v2`` steps, or
    ``module:attr`` / ``file.py:attr``) and the ``resize``/``center_crop`` shorthands (applied
    first) give the statistics of what the model sees: each image passes ``epochs`` times, every
    random draw seeded by ``(seed, epoch, index)``. Output that stays PIL/uint8/uint16 is measured
    exactly (``exact_method == "integer"``, [0, 1] scale); float output in float64, in its own
    units (``"float64"``). ``compute(result.options.pop("inputs"), **result.options)`` replays a run.

    >>> result = compute("examples/images", workers=0)  # doctest: +SKIP
    >>> result.mean, result.std  # doctest: +SKIP
    """
    paths = [paths] if isinstance(paths, str) else list(paths)
    check_mode(mode)
    if on_error not in ON_ERROR:
        raise ChanstatsError(f"unknown on_error {on_error!r}: choose fail or skip")
    budget = ErrorBudget.parse(max_bad)
    extensions = normalize_extensions(extensions)
    settings = running_settings(convention, momentum, batch_size, shuffle, seed, drop_last)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ChanstatsError(f"--epochs must be a positive integer, got {epochs!r}")
    spec, recorded_transform = resolve_transform(transform, resize=resize, center_crop=center_crop)
    if spec is not None:
        spec.build()  # a bad spec fails here, once, before any image is read

    sample_spec = SampleSpec.parse(sample)
    everything = list_images(paths, extensions)
    sources = everything
    if sample_spec is not None:
        # Sampled before anything is read; the fingerprint still identifies the whole listing.
        sources = [everything[i] for i in sample_indices(len(everything), sample_spec.size(len(everything)), seed)]
    measurer = Measurer(mode, spec, epochs, settings.seed)
    outcomes = measure_all(
        sources, measurer, workers=workers, progress=progress, start_method="forkserver" if spec is not None else None
    )
    good, bad = _split(outcomes, sources)
    _apply_error_policy(bad, len(sources), on_error, budget)
    if not good:
        raise NoImagesError("no image could be read")
    pixel_format = _single_format(good, sources)

    exact, method = _exact_statistics(good, pixel_format)
    # Epoch-major, as training visits them: all images of epoch 0, then of epoch 1, ...
    rows = [measurement.rows[epoch] for epoch in range(epochs) for _, measurement in good]
    table = MomentsTable.from_rows(rows, len(pixel_format.channels))
    running = simulate(table, settings, epochs=epochs)
    options: dict[str, Any] = {
        "inputs": paths,
        "mode": mode,
        "extensions": list(extensions),
        "on_error": on_error,
        "max_bad": None if budget is None else str(budget),
        "convention": settings.convention,
        "momentum": "none" if settings.cumulative else settings.effective_momentum,
        "batch_size": settings.batch_size,
        "shuffle": settings.shuffle,
        "seed": settings.seed,
        "drop_last": settings.drop_last,
        "transform": recorded_transform,
        "resize": resize,
        "center_crop": center_crop,
        "epochs": epochs,
    }
    if listing:  # only when asked, so default configs keep their bytes
        options["listing"] = True
    sampled = None
    if sample_spec is not None:
        options["sample"] = str(sample_spec)
        clusters = cluster_table([measurement.rows for _, measurement in good], len(pixel_format.channels))
        bounds = (0.0, 1.0) if method == "integer" else None
        sampled = describe(sample_spec, cluster_intervals(clusters, len(everything), bounds=bounds), seed)
    return Result(
        version=__version__,
        channels=pixel_format.channels,
        scale=pixel_format.scale,
        images=len(good),
        samples=len(table),
        exact=exact,
        exact_method=method,
        running=running,
        options=options,
        fingerprint=fingerprint(everything),
        skipped=[(sources[i].display, error.reason) for i, error in bad],
        dropped_alpha=sum(1 for _, m in good if m.dropped_alpha),
        table=table,
        sources=[sources[i] for i, _ in good],
        sample=sampled,
        per_image=PerImage.from_measurements(
            ((sources[i].display, m.width, m.height, m.rows) for i, m in good), len(pixel_format.channels)
        ),
        listing=[(source.name, source.size) for source in everything] if listing else None,
    )


def _split(outcomes, sources: Sequence[ImageSource]):
    good: list[tuple[int, Measurement]] = []
    bad = []
    for index, outcome in outcomes:
        if isinstance(outcome, Measurement):
            good.append((index, outcome))
        else:
            bad.append((index, outcome))
    return good, bad


def _apply_error_policy(bad, total: int, on_error: str, budget: ErrorBudget | None) -> None:
    if not bad:
        return
    listed = [(error.path, error.reason) for _, error in bad]
    if on_error == "fail":
        raise BadImagesError(listed, f"{len(bad)} of {total} images could not be read (use --on-error skip to skip them):")
    if budget is not None and budget.exceeded(len(bad), total):
        raise BadImagesError(listed, f"{len(bad)} of {total} images could not be read, more than --max-bad {budget}:")


def _single_format(good: list[tuple[int, Measurement]], sources: Sequence[ImageSource]) -> PixelFormat:
    examples: dict[PixelFormat, str] = {}
    for index, measurement in good:
        examples.setdefault(measurement.format, sources[index].display)
    if len(examples) > 1:
        kinds = "; ".join(f"{fmt.label} (e.g. {path})" for fmt, path in examples.items())
        raise ChanstatsError(f"images have different channels or bit depths: {kinds}; choose --mode RGB or --mode L")
    return next(iter(examples))


def _exact_statistics(good: list[tuple[int, Measurement]], pixel_format: PixelFormat) -> tuple[ChannelStats, str]:
    first = good[0][1].moments[0]
    if isinstance(first, IntegerMoments):
        total = IntegerMoments.empty(len(pixel_format.channels))
        for _, measurement in good:
            for moments in measurement.moments:
                total.merge(moments)  # type: ignore[arg-type]
        return total.finalize(pixel_format.scale), "integer"
    total_float = FloatMoments.empty(len(pixel_format.channels))
    for _, measurement in good:
        for moments in measurement.moments:
            total_float.merge(moments)  # type: ignore[arg-type]
    return total_float.finalize(), "float64"

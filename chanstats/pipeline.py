"""``compute`` = ``finalize(measure(plan(...)))``: list → measure a slice (in parallel) into a lossless
partial state → merge states → finalize → simulate BatchNorm → Result.

Everything here runs in the main process on small per-image records, in listing order.
"""

from __future__ import annotations

import difflib
import inspect
import os
from collections import abc
from contextlib import closing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from . import __version__
from .decode import check_mode
from .engine import measure_all
from .errors import BadImagesError, ChanstatsError, NoImagesError
from .measure import Measurer
from .moments import FloatMoments, MomentsTable
from .partial import BadRecord, PartialState, shard_bounds
from .per_image import PerImage
from .report import Result
from .running import RunningSettings, simulate
from .sampling import SampleSpec, cluster_intervals, cluster_table, describe, sample_indices
from .sources import IMAGE_EXTENSIONS, DisplayNames, ImageSource, fingerprint, list_images, normalize_extensions
from .transforms import resolve as resolve_transform

if TYPE_CHECKING:
    from .checkpoint import Checkpointer

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


@dataclass
class Plan:
    """A run before any pixel is read: the global listing, the per-image measurer and the options
    that go into the config (and that partial states and checkpoints must agree on)."""

    sources: list[ImageSource]
    measurer: Measurer
    options: dict[str, Any]
    fingerprint: str
    # With --sample: every image found (``sources`` is then the sampled subset, in listing order);
    # the fingerprint, --listing and the confidence intervals' population are the whole listing's.
    everything: list[ImageSource] | None = None


PathLike = str | os.PathLike


def input_paths(paths: PathLike | Iterable[PathLike]) -> list[str]:
    """``paths`` as a list of strings: one path or an iterable of them, each a ``str`` or a
    ``pathlib.Path`` (any ``os.PathLike``), so that configs record the same text either way.

    >>> import pathlib; input_paths(pathlib.Path("data")), input_paths(["a", pathlib.Path("b")])
    (['data'], ['a', 'b'])
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    elif isinstance(paths, bytes) or not isinstance(paths, abc.Iterable):
        raise TypeError(f"paths must be a path (str or pathlib.Path) or a list of them, got {type(paths).__name__}")
    listed = []
    for path in paths:
        text = os.fspath(path) if isinstance(path, os.PathLike) else path
        if not isinstance(text, str):
            raise TypeError(f"paths must be str or pathlib.Path, got {type(path).__name__}: {path!r}")
        listed.append(text)
    return listed


def plan(
    paths: PathLike | Iterable[PathLike],
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
    transform: str | list | None = None,
    epochs: int = 1,
    resize: int | None = None,
    center_crop: int | None = None,
    listing: bool = False,
    sample: str | int | None = None,
) -> Plan:
    """Check the options and list the images (the same keyword arguments as :func:`compute`)."""
    paths = input_paths(paths)
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
    sources = list_images(paths, extensions)
    listing_fingerprint = fingerprint(sources)
    everything = None
    if sample_spec is not None:
        # Sampled before anything is read: shards, checkpoints and workers only see the sample.
        everything = sources
        sources = [everything[i] for i in sample_indices(len(everything), sample_spec.size(len(everything)), seed)]
    options: dict[str, Any] = {
        "inputs": paths,
        "mode": mode,
        "extensions": list(extensions),
        "on_error": on_error,
        "max_bad": None if budget is None else str(budget),
        **settings.to_dict(),
        "transform": recorded_transform,
        "resize": resize,
        "center_crop": center_crop,
        "epochs": epochs,
    }
    if listing:  # only when asked, so default configs keep their bytes
        options["listing"] = True
    if sample_spec is not None:
        options["sample"] = str(sample_spec)
    return Plan(sources, Measurer(mode, spec, epochs, settings.seed), options, listing_fingerprint, everything)


def measure(
    run: Plan,
    *,
    shard: tuple[int, int] = (1, 1),
    workers: int | None = None,
    progress: bool = False,
    checkpoint: "Checkpointer | None" = None,
) -> PartialState:
    """Measure the ``shard`` K/N slice of the listing into a lossless :class:`PartialState`.

    Indices stay global. With ``checkpoint``, a matching saved state is resumed and the state is
    saved as it grows. Under ``on_error="fail"`` bad images in the slice raise
    :class:`BadImagesError` once the whole slice has been read.
    """
    start, stop = shard_bounds(len(run.sources), *shard)
    everything = run.sources if run.everything is None else run.everything
    listing = [(source.name, source.size) for source in everything] if run.options.get("listing") else None
    state = PartialState(
        __version__, run.options, run.fingerprint, len(run.sources), shard, start, stop, start, listing=listing,
        population=None if run.everything is None else len(run.everything),
    )
    if checkpoint is not None:
        state = checkpoint.resume(state)
    todo = run.sources[state.done : stop]
    # Workers that run a transform start from a clean forkserver: this process has imported torch.
    start_method = "forkserver" if run.measurer.transform is not None else None
    outcomes = measure_all(
        todo, run.measurer, workers=workers, progress=progress, offset=state.done, start_method=start_method
    )
    with closing(outcomes):  # Ctrl-C or an error here stops the workers at once
        for index, outcome in outcomes:
            state.add(index, run.sources[index], outcome)
            if checkpoint is not None:
                checkpoint.after_image(state)
    if checkpoint is not None:
        checkpoint.save(state)
    if run.options["on_error"] == "fail":
        _apply_error_policy(state.bad, stop - start, "fail", None)
    return state


def finalize(state: PartialState) -> Result:
    """A :class:`Result` from a state covering the whole listing (one run's, or merged partials').

    Applies the error budget, checks that every image has one pixel format, finishes the exact
    statistics (integer totals, or float64 moments merged in listing order) and runs the BatchNorm
    simulation on the per-sample rows in global listing order.
    """
    if (state.start, state.done) != (0, state.listing_size):
        raise ChanstatsError(f"state covers images {state.start}..{state.done - 1}, not all {state.listing_size}")
    options = state.options
    budget = ErrorBudget.parse(options["max_bad"])
    settings = running_settings(
        options["convention"], options["momentum"], options["batch_size"], options["shuffle"], options["seed"], options["drop_last"]
    )
    bad = sorted(state.bad, key=lambda b: b.index)
    _apply_error_policy(bad, state.listing_size, options["on_error"], budget)
    images = state.images.in_listing_order()
    if not len(images):
        raise NoImagesError("no image could be read")
    if len(state.formats) > 1:
        ordered = sorted(state.formats.values(), key=lambda t: t.first_index)
        kinds = "; ".join(f"{t.format.label} (e.g. {t.example})" for t in ordered)
        raise ChanstatsError(f"images have different channels or bit depths: {kinds}; choose --mode RGB or --mode L")
    (totals,) = state.formats.values()
    pixel_format = totals.format

    if totals.integer is not None:
        exact, method = totals.integer.finalize(pixel_format.scale), "integer"
    else:
        total_float = FloatMoments.empty(len(pixel_format.channels))
        for moments_of_image in images.float_moments or ():
            for moments in moments_of_image or ():
                total_float.merge(moments)
        exact, method = total_float.finalize(), "float64"
    epochs = options.get("epochs", 1)
    channels = len(pixel_format.channels)
    samples = images.packed_samples(epochs)  # a view of the table: no per-sample objects
    # Epoch-major, as training visits them: all images of epoch 0, then of epoch 1, ...
    table = MomentsTable.from_packed(samples.transpose(1, 0, 2).reshape(-1, 1 + 2 * channels), channels)
    running = simulate(table, settings, epochs=epochs)
    sampled = None
    if options.get("sample") is not None:
        if state.population is None:
            raise ChanstatsError("a sampled run's state does not say how many images were listed")
        clusters = cluster_table([record.rows for record in images], len(pixel_format.channels))
        bounds = (0.0, 1.0) if method == "integer" else None
        intervals = cluster_intervals(clusters, state.population, bounds=bounds)
        sampled = describe(SampleSpec.parse(options["sample"]), intervals, options["seed"])
    return Result(
        version=state.version,
        channels=pixel_format.channels,
        scale=pixel_format.scale,
        images=len(images),
        samples=len(table),
        exact=exact,
        exact_method=method,
        running=running,
        options=options,
        fingerprint=state.fingerprint,
        skipped=[(b.display, b.reason) for b in bad],
        dropped_alpha=sum(images.dropped_alpha),
        table=table,
        sources=images.sources,
        per_image=PerImage(
            DisplayNames(images.sources),
            images.width,
            images.height,
            table if epochs == 1 else MomentsTable.from_packed(samples.reshape(-1, 1 + 2 * channels), channels).pooled(epochs),
        ),
        listing=state.listing,
        sample=sampled,
    )


def compute(
    paths: PathLike | Iterable[PathLike],
    *,
    workers: int | None = None,
    progress: bool = False,
    checkpoint: "Checkpointer | None" = None,
    **options: Any,
) -> Result:
    """Exact per-channel statistics of the images under ``paths``, and BatchNorm's running estimate.

    ``paths``: directories (walked recursively), image files, and ``@list.txt`` files. ``mode``:
    ``"RGB"`` (torchvision's loader), ``"L"`` or ``"keep"``; the other keyword options are those of
    :func:`plan`. The result's ``mean``/``std`` are on the [0, 1] scale with ddof 0, ready for
    ``transforms.Normalize``. Bad images raise :class:`~chanstats.errors.BadImagesError` listing
    each, unless ``on_error="skip"``. ``sample="500"`` or ``"10%"`` measures only a seeded random
    subset (seed ``seed``) and adds confidence intervals (:mod:`chanstats.sampling`). It is ``finalize(measure(plan(...)))``; sharded runs measure
    slices and merge them (:func:`chanstats.partial.merge_states`) before finalizing.

    >>> result = compute("examples/images", workers=0)  # doctest: +SKIP
    >>> result.mean, result.std  # doctest: +SKIP
    """
    check_keywords(options, plan, "compute", ("workers", "progress", "checkpoint"))
    state = measure(plan(paths, **options), workers=workers, progress=progress, checkpoint=checkpoint)
    return finalize(state)


def check_keywords(options: dict[str, Any], target, caller: str, own: Iterable[str] = ()) -> None:
    """Raise Python's own ``TypeError`` for an unknown keyword, naming ``caller`` (the function the
    user called) rather than ``target`` (the internal function the options go on to)."""
    accepted = [name for name, parameter in inspect.signature(target).parameters.items()
                if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
    for name in options:
        if name not in accepted:
            close = difflib.get_close_matches(name, [*accepted, *own], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"{caller}() got an unexpected keyword argument {name!r}{hint}")


def _apply_error_policy(bad: Sequence[BadRecord], total: int, on_error: str, budget: ErrorBudget | None) -> None:
    if not bad:
        return
    listed = [(b.path, b.reason) for b in bad]
    if on_error == "fail":
        raise BadImagesError(listed, f"{len(bad)} of {total} images could not be read (use --on-error skip to skip them):")
    if budget is not None and budget.exceeded(len(bad), total):
        raise BadImagesError(listed, f"{len(bad)} of {total} images could not be read, more than --max-bad {budget}:")

"""The Python API, and the one orchestration every command and every entry point goes through:
``plan`` (check the options, list the images) → ``measure`` (a slice of the listing, in parallel,
into a lossless partial state) → merge states → ``finalize`` (exact statistics, BatchNorm
simulation) → :class:`~chanstats.report.result.Result`.

:func:`compute`, :func:`compute_shard` and :func:`compute_distributed` differ only in which slice
they measure and where the states meet; :func:`merge`, :func:`check`, :func:`compare` and
:func:`export` are the other commands. Everything here runs in the main process on small
per-image records, in listing order.
"""

from __future__ import annotations

import inspect
import os
import time
from collections import abc
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol, Sequence, Union

import numpy as np

from . import kernel
from ._version import __version__
from .errors import BadImagesError, ChanstatsError, NoImagesError
from .measure import Measurer
from .options import ErrorBudget, RecordedOptions, ResolvedOptions, RunOptions, compose
from .pixels import MeasuredMeasurer
from .report.destinations import check_destinations
from .report.files import read_config
from .report.result import Result
from .scale import state_file
from .scale.checkpoint import Checkpointer, Interval, delay_per_image_for_tests
from .scale.columns import run_directory
from .scale import ray_engine
from .scale.ray_data import is_ray_dataset
from .scale.engine import default_workers, measure_chunks
from .scale.merge import merge_states
from .scale.state import BadRecord, PartialState, shard_bounds
from .scale.table import ImageTable, row_width
from .sources.base import DisplayNames, ImageSource, Listing
from .sources.kinds import kind_of
from .sources.listing import fingerprint
from .sources.shared import list_shared
from .sources.storage import storage_options as _storage_options_in_effect
from .sources.video import any_video, is_video
from .sources.datasets import classify as classify_source
from .sources.datasets import load as load_dataset
from .sources.parquet import TableRow, choose_column
from .stats.batchnorm import simulate
from .stats.moments import MomentsTable
from .stats.per_image import PerImage
from .stats.sampling import sample_indices
from .stats.sections import exact_histogram, exact_statistics, nodata_section, percentiles_section, sample_section

if TYPE_CHECKING:
    from .report.check import CheckReport
    from .report.compare import Comparison

# What ``paths`` may be: one path, or several.
Paths = Union[str, os.PathLike, Iterable[Union[str, os.PathLike]]]


@dataclass(frozen=True)
class Plan:
    """A run before any pixel is read: the global listing, the per-item measurer and the resolved
    options (whose record goes into the config, and partial states and checkpoints must agree on)."""

    sources: Sequence[ImageSource]  # a Listing: columns, sources made when indexed
    measurer: Measurer
    options: ResolvedOptions
    fingerprint: str
    # With --sample: every image found (``sources`` is then the sampled subset, in listing order);
    # the fingerprint, --listing and the confidence intervals' population are the whole listing's.
    everything: Sequence[ImageSource] | None = None


def plan(paths: Paths | Any, options: RunOptions | None = None, *, workdir: str | os.PathLike | None = None,
         wait_for_listing: bool = False) -> Plan:
    """Check the options and list the images: everything a run decides before reading a pixel.

    ``paths`` may also be a Python dataset, a DataLoader or an iterable of samples (see
    :mod:`chanstats.sources.datasets`), or nothing when ``options.dataset`` names one.

    With a work directory (``workdir``) the listing is kept there and reused by every
    process of the job that lists the same inputs (see :mod:`chanstats.sources.shared`);
    ``wait_for_listing``: list nothing, wait for another process (torchrun's rank 0) to.
    """
    options = options or RunOptions()
    if options.dataset is not None and (paths is None or (isinstance(paths, (list, tuple)) and not paths)):
        paths = load_dataset(options.dataset)
    kind, paths = classify_source(paths)
    if kind is not None:
        return _plan_dataset(paths, kind, options)
    paths = _path_list(paths)
    resolved = options.resolve(paths)
    workdir = None if workdir is None else os.fspath(workdir)
    with choose_column(resolved.options.column):
        sources = list_shared(paths, resolved.extensions, resolved.options.column, workdir, wait=wait_for_listing)
    if resolved.options.column is not None and not any(isinstance(source, TableRow) for source in _rows(sources)):
        raise ChanstatsError(f"--column {resolved.options.column} applies to Parquet and Arrow tables, and the inputs "
                             "hold none")
    if any_video(sources):  # decoders differ slightly in their RGB: a config of videos names its decoder
        from .decoding.video import describe_decoder

        resolved = resolved.recording(decoder=describe_decoder(resolved.video.decoder))
    measurer = Measurer(resolved.options.mode, resolved.transform, resolved.options.epochs, resolved.settings.seed,
                        resolved.pixels, resolved.video)
    return _sampled(Plan(sources, measurer, resolved, fingerprint(sources)), workdir)


def _rows(sources: Sequence[ImageSource]) -> Sequence[ImageSource]:
    """The sources that may be rows of tables: none in a listing of files held as columns."""
    return () if isinstance(sources, Listing) else sources


def _plan_dataset(source: Any, kind: str, options: RunOptions) -> Plan:
    """A run over a Python dataset: by index in the worker pool (map-style), or iterated as given
    in this process (DataLoaders and other iterables), which the config records."""
    from .pixels import measure_iterable
    from .sources.datasets import LOADER, MAP_STYLE, DatasetItem, describe, list_dataset, register

    resolved = options.resolve([], dataset=True)
    name = options.dataset or describe(source)
    if resolved.transform is not None and kind != MAP_STYLE:
        raise ChanstatsError(f"--transform applies to samples read by index, and a {kind} is iterated as given "
                             f"({name}): give the transform to its dataset instead")
    resolved = resolved.recording(dataset=name, dataset_kind=kind)
    epochs, seed = options.epochs, resolved.settings.seed
    if options.batches == "loader" and kind != LOADER:
        raise ChanstatsError(f"batches='loader' follows a DataLoader's own batches; {name} is a {kind}")
    if kind == MAP_STYLE:
        token = register(source, options.key, options.layout)
        sources = list_dataset(source, name, token)
        measurer = Measurer(options.mode, resolved.transform, epochs, seed, resolved.pixels)
    else:
        pixel_measurer = Measurer(options.mode, None, 1, seed, resolved.pixels)
        batch_sizes: list[int] = []
        measured = measure_iterable(source, options.key, options.layout, epochs, kind == LOADER, name, pixel_measurer,
                                    batch_sizes)
        if options.batches == "loader":
            resolved = resolved.recording(**_loader_batches(batch_sizes, name))
        sources = [DatasetItem(name, f"sample {k}", 0, None, k) for k in range(len(measured))]
        measurer = MeasuredMeasurer(options.mode, None, epochs, seed, resolved.pixels, measured=tuple(measured))
    if not sources:
        raise NoImagesError(f"{name}: the dataset is empty")
    return _sampled(Plan(sources, measurer, resolved, fingerprint(sources)))


def _loader_batches(batch_sizes: list[int], name: str) -> dict[str, Any]:
    """The recorded BatchNorm settings that batch the simulation exactly as the loader did: its samples are in the table
    in the loader's order, so consecutive batches of its batch size, unshuffled, are its batches
    (what a first BatchNorm layer saw in training, as fvcore's precise BN and ``update_bn`` do)."""
    size = batch_sizes[0] if batch_sizes else 1
    if any(count != size for count in batch_sizes[:-1]) or (batch_sizes and batch_sizes[-1] > size):
        raise ChanstatsError(f"{name}: its batches differ in size ({', '.join(map(str, sorted(set(batch_sizes))))}); "
                             "batches='loader' follows batches of one size (the last may be smaller)")
    return dict(batch_size=size, shuffle=False, drop_last=False)


def _sampled(run: Plan, workdir: str | None = None) -> Plan:
    """With ``--sample``: the seeded subset, drawn before anything is read (shards, checkpoints
    and workers only see the sample); the fingerprint and the population stay the whole listing's."""
    if run.options.sample is None:
        return run
    everything = run.sources
    size = run.options.sample.size(len(everything))
    chosen = (everything[i] for i in sample_indices(len(everything), size, run.options.seed, workdir))
    sources = Listing(chosen) if isinstance(everything, Listing) else list(chosen)
    return Plan(sources, run.measurer, run.options, run.fingerprint, everything)


def _path_list(paths: Paths) -> list[str]:
    """``paths`` as a list of strings: one path or an iterable of them, each a ``str`` or a
    ``pathlib.Path`` (any ``os.PathLike``), so that configs record the same text either way.

    >>> import pathlib; _path_list(pathlib.Path("data")), _path_list(["a", pathlib.Path("b")])
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


def measure(
    run: Plan,
    *,
    shard: tuple[int, int] = (1, 1),
    workers: int | None = None,
    progress: bool = False,
    checkpoint: Checkpointer | None = None,
    directory: str | None = None,
) -> PartialState:
    """Measure the ``shard`` K/N slice of the listing into a lossless :class:`PartialState`.

    Indices stay global. The per-image columns go to files in ``directory`` (default: a temporary
    folder removed with the state) or, with ``checkpoint``, beside the checkpoint, where a matching
    saved state is resumed and the state is saved as it grows. Under ``on_error="fail"`` bad
    images in the slice raise :class:`BadImagesError` once the whole slice has been read.
    """
    kernel.warn_if_missing()
    start, stop = shard_bounds(len(run.sources), *shard)
    everything = run.sources if run.everything is None else run.everything
    listing = [(source.name, source.size) for source in everything] if run.options.listing else None
    state = PartialState(
        __version__, run.options.record, run.fingerprint, len(run.sources), shard, start, stop, start, listing=listing,
        population=None if run.everything is None else len(run.everything),
    )
    # The state names its images by listing index; a resumed one's sources are this same listing's.
    if checkpoint is not None:
        state = checkpoint.resume(state, run.sources)
    else:
        state.images = ImageTable(run.sources, None if directory is None else os.path.join(directory, "columns"))
    todo = run.sources[state.done : stop]
    if isinstance(run.measurer, MeasuredMeasurer):
        workers = 0  # an iterable was measured while iterating: nothing is left for workers
    # Workers that run a transform start from a clean forkserver: this process has imported torch.
    # A dataset's workers must be forked, to inherit the dataset.
    clean_start = run.measurer.transform is not None and not (len(todo) and kind_of(todo[0]).forked)
    start_method = "forkserver" if clean_start else None
    cache = _measurement_cache()
    measurer = run.measurer if cache is None else cache.measurer_for(run.measurer, run.options.record, todo)
    on_ray = ray_engine.current()
    if cache is not None and on_ray is None and \
            cache.few_to_measure(todo, state.done, default_workers() if workers is None else max(workers, 1)):
        workers = 0  # little to do once reused: here, rather than start workers
    if on_ray is not None:  # --engine ray: the same units of work, as Ray tasks
        chunks = on_ray.measure_chunks(todo, measurer, offset=state.done, progress=progress, cpus=workers or None)
    else:
        chunks = measure_chunks(
            todo, measurer, workers=workers, progress=progress, offset=state.done, start_method=start_method
        )
    delay = delay_per_image_for_tests()
    try:
        with closing(chunks), (nullcontext() if cache is None else closing(cache)):
            for chunk in chunks:
                if cache is not None:
                    cache.absorb(chunk.cache)
                state.add_chunk(chunk)
                if delay:
                    time.sleep(delay * len(chunk))
                if checkpoint is not None:
                    checkpoint.after_chunk(state, len(chunk))
        if checkpoint is not None:
            checkpoint.save(state)
    except BaseException:
        if checkpoint is not None:
            checkpoint.forget_unsaved()
        raise
    if run.options.on_error == "fail":
        _apply_error_policy(state.bad, stop - start, "fail", None)
    return state


def _measurement_cache():
    """The measurement cache of this run (see :mod:`chanstats.scale.cache`), or ``None``."""
    from .scale.cache import MeasurementCache, active_settings

    settings = active_settings()
    return None if settings is None else MeasurementCache(settings)


def finalize(state: PartialState) -> Result:
    """A :class:`Result` from a state covering the whole listing (one run's, or merged partials').

    Applies the error budget, checks that every image has one pixel format, finishes the exact
    statistics (integer totals, or float64 moments merged in listing order) and runs the BatchNorm
    simulation on the per-sample rows in global listing order.
    """
    if (state.start, state.done) != (0, state.listing_size):
        raise ChanstatsError(f"state covers images {state.start}..{state.done - 1}, not all {state.listing_size}")
    options = RecordedOptions.parse(state.options)
    bad = sorted(state.bad, key=lambda b: b.index)
    _apply_error_policy(bad, state.listing_size, options.on_error, options.budget)
    images = state.images.in_listing_order()
    if not len(images):
        raise NoImagesError("no image could be read")
    if len(state.formats) > 1:
        ordered = sorted(state.formats.values(), key=lambda t: t.first_index)
        kinds = "; ".join(f"{t.format.label} (e.g. {t.example})" for t in ordered)
        raise ChanstatsError(f"images have different channels or bit depths: {kinds}; {_mixed_formats_advice(ordered)}")
    (totals,) = state.formats.values()
    pixel_format = totals.format
    exact, method = exact_statistics(totals, images)
    epochs = options.epochs
    per_item = epochs * options.samples_per_epoch  # a video's frames may each be a sample
    channels = len(pixel_format.channels)
    width = row_width(pixel_format)
    per_channel = pixel_format.masked
    samples = images.packed_samples(per_item)  # a view of the table: no per-sample objects
    # Epoch-major, as training visits them: all images of epoch 0 (a video's frames together), then of epoch 1, ...
    in_epochs = samples.reshape(len(samples), epochs, -1, width).transpose(1, 0, 2, 3)
    table = MomentsTable.from_packed(in_epochs.reshape(-1, width), channels, per_channel)
    running = simulate(table, options.settings, epochs=epochs)
    videos = _video_frames(samples, images, per_channel, channels) if "decoder" in state.options else None
    sampled = None
    if options.sample is not None:
        if state.population is None:
            raise ChanstatsError("a sampled run's state does not say how many images were listed")
        sampled = sample_section(images, pixel_format, method, state.population, options.sample, options.settings.seed)
    return Result(
        version=state.version,
        channels=pixel_format.channels,
        scale=pixel_format.scale,
        images=len(images),
        samples=len(table),
        exact=exact,
        exact_method=method,
        running=running,
        options=state.options,
        fingerprint=state.fingerprint,
        skipped=[(b.display, b.reason) for b in bad],
        dropped_alpha=int(np.sum(images.dropped_alpha, dtype=np.int64)),
        table=table,
        sources=images.sources,
        per_image=PerImage(
            DisplayNames(images.sources),
            images.width,
            images.height,
            table if per_item == 1 else MomentsTable.from_packed(samples.reshape(-1, width), channels, per_channel).pooled(per_item),
            None if videos is None else [int(n) if v else None for v, n in zip(*videos)],
        ),
        listing=state.listing,
        sample=sampled,
        # A video's clips differ from epoch to epoch: its histogram holds every epoch's clip.
        percentiles=percentiles_section(totals, options.percentiles, 1 if "clip_len" in state.options else options.epochs),
        dtype=pixel_format.dtype or None,
        nodata=nodata_section(pixel_format, options.nodata),
        histogram=exact_histogram(totals),
        videos_and_frames=None if videos is None else (int(videos[0].sum()), int(videos[1][videos[0]].sum())),
    )


def _video_frames(samples: np.ndarray, images: ImageTable, per_channel: bool, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Which items of a run are videos (images may be measured beside them), and each item's
    frames over all its samples: each sample's pixels over the item's (first) frame size, exact
    unless a video's frames change size mid-stream."""
    videos = np.fromiter((is_video(source.name) for source in images.sources), dtype=bool, count=len(images))
    counts = samples[:, :, :channels].max(axis=2) if per_channel else samples[:, :, 0]
    sizes = np.asarray(images.width, dtype=np.float64) * np.asarray(images.height, dtype=np.float64)
    return videos, np.rint(counts / sizes[:, None]).sum(axis=1).astype(np.int64)


def _mixed_formats_advice(formats) -> str:
    """What to do about images of several pixel formats: ``--mode RGB`` or ``L`` converts 8-bit
    images of any channels alike, but refuses 16-bit ones (it would clip them) and does not apply
    to rasters of other types, which are measured apart."""
    if all(totals.format.stored_as == "uint8" and not totals.format.masked for totals in formats):
        return "choose --mode RGB or --mode L"
    return "measure each kind in a run of its own (--mode RGB and L read 8-bit images only)"


def _apply_error_policy(bad: Sequence[BadRecord], total: int, on_error: str, budget: ErrorBudget | None) -> None:
    if not bad:
        return
    listed = [(b.path, b.reason) for b in bad]
    if on_error == "fail":
        raise BadImagesError(listed, f"{len(bad)} of {total} images could not be read (use --on-error skip to skip them):")
    if budget is not None and budget.exceeded(len(bad), total):
        raise BadImagesError(listed, f"{len(bad)} of {total} images could not be read, more than --max-bad {budget}:")


class Clock(Protocol):
    """What collects a run's phase times (``--timings``): told when each phase ends."""

    def lap(self, name: str) -> None: ...


def _checkpointer(checkpoint: str | os.PathLike | Checkpointer | None, every: str | Interval, restart: bool) -> Checkpointer | None:
    if checkpoint is None or isinstance(checkpoint, Checkpointer):
        return checkpoint
    return Checkpointer(os.fspath(checkpoint), every if isinstance(every, Interval) else Interval.parse(every), restart)


@contextmanager
def _locked(checkpointer: Checkpointer | None, keep: bool = False) -> Iterator[None]:
    """Hold the checkpoint's lock for the whole run, listing included (nothing without one);
    ``keep``: still hold it after success, for a caller that removes the checkpoint (which lets
    go of it) once its own outputs are written."""
    if checkpointer is None:
        yield
        return
    checkpointer.lock()
    try:
        yield
    except BaseException:
        checkpointer.unlock()
        raise
    if not keep:
        checkpointer.unlock()


def _columns_directory(workdir: str | os.PathLike | None, checkpointer: Checkpointer | None, columns: str | None):
    """Where a run's columns go: ``columns`` when the caller chose (torchrun's shared folder), or
    beside its checkpoint (which outlives a crash) or, without one, a run directory in ``workdir``
    removed when the run ends."""
    if columns is not None:
        return nullcontext(columns)
    if checkpointer is not None:
        return nullcontext(None)
    return run_directory(workdir)


def _lap(clock: Clock | None, name: str) -> None:
    if clock is not None:
        clock.lap(name)


@contextmanager
def _measured(paths: Paths, options: RunOptions, shard: tuple[int, int], *, workers: int | None, progress: bool,
              checkpointer: Checkpointer | None, workdir: str | os.PathLike | None, clock: Clock | None = None,
              columns: str | None = None, wait_for_listing: bool = False,
              check: Callable[[Plan], None] | None = None) -> Iterator[tuple[Plan, PartialState]]:
    """The one path of :func:`compute`, :func:`compute_shard` and :func:`compute_distributed`:
    plan, then measure slice ``shard`` into a state whose columns live in a run directory (or
    beside the checkpoint, or in ``columns``; the listing is kept in ``workdir``), and hand both to the variant, which finalizes the
    state, writes it or sends it on while its columns are there. ``check(plan)`` runs before any
    pixel is read."""
    run = plan(paths, options, workdir=workdir, wait_for_listing=wait_for_listing)
    if check is not None:
        check(run)
    _lap(clock, "listing")
    with _columns_directory(workdir, checkpointer, columns) as directory:
        state = measure(run, shard=shard, workers=workers, progress=progress, checkpoint=checkpointer,
                        directory=directory)
        _lap(clock, "measuring")
        yield run, state


def compute(
    paths: Paths,
    options: RunOptions | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
    checkpoint: str | os.PathLike | Checkpointer | None = None,
    checkpoint_every: str | Interval = "60s",
    restart: bool = False,
    clock: Clock | None = None,
    workdir: str | os.PathLike | None = None,
    remove_checkpoint: bool = True,
    **overrides: Any,
) -> Result:
    """Exact per-channel statistics of the images under ``paths``, and BatchNorm's running estimate.

    ``paths``: folders (walked recursively), image files, ``@list.txt`` files and tar shards.
    ``options``: a :class:`~chanstats.options.RunOptions`; keyword ``overrides`` replace its fields
    (``compute(paths, batch_size=32)``). The result's ``mean``/``std`` are on the [0, 1] scale with
    ddof 0, ready for ``transforms.Normalize``. Bad images raise
    :class:`~chanstats.errors.BadImagesError` listing each, unless ``on_error="skip"``.

    ``workers``: processes (default: all cores; 0: in this process). ``checkpoint``: a file where
    progress is saved every ``checkpoint_every`` and resumed from when rerun (``restart`` discards
    it); it is deleted once the result is computed (``remove_checkpoint=False``: left for the
    caller to delete once it has written the result). ``clock`` (anything with ``lap(name)``)
    collects the phase times.
    ``workdir``: where the run keeps its files (default: the system's temporary folder): the
    per-image columns, in a folder removed when the run ends, and the listing, which stays there
    for later runs on the same inputs (see :mod:`chanstats.sources.shared`).

    >>> result = compute("examples/images", workers=0)  # doctest: +SKIP
    >>> result.mean, result.std  # doctest: +SKIP
    """
    run_options = compose(options, overrides, "compute")
    if is_ray_dataset(paths):
        return _compute_ray_dataset(paths, run_options, checkpoint, workdir)
    checkpointer = _checkpointer(checkpoint, checkpoint_every, restart)
    check_destinations([("checkpoint", None if checkpointer is None else checkpointer.path)])
    # A caller that removes the checkpoint itself once its outputs are written keeps it locked until then.
    with _locked(checkpointer, keep=not remove_checkpoint and isinstance(checkpoint, Checkpointer)):
        with _measured(paths, run_options, (1, 1), workers=workers, progress=progress, checkpointer=checkpointer,
                       workdir=workdir, clock=clock) as (_, state):
            result = finalize(state)
            state.images.detach()  # the result reads the columns after the folder is gone
            _lap(clock, "finalizing")
        if checkpointer is not None and remove_checkpoint:
            checkpointer.remove()
    return result


def _compute_ray_dataset(dataset: Any, options: RunOptions, checkpoint: Any, workdir: str | os.PathLike | None) -> Result:
    """:func:`compute` of a ``ray.data.Dataset``: measured by Ray Data's streaming tasks
    (:mod:`chanstats.scale.ray_data`), finalized here like any run."""
    from .scale.ray_data import DATASET_KIND, DEFAULT_NAME, measure_dataset

    refused = [name for name, given in (("checkpoint", checkpoint is not None), ("transform", options.transform is not None
               or options.resize is not None or options.center_crop is not None), ("epochs", options.epochs != 1),
               ("sample", options.sample is not None), ("batches='loader'", options.batches == "loader")) if given]
    if refused:
        raise ChanstatsError(f"a Ray Dataset is measured as its rows come: {', '.join(refused)} does not apply to it "
                             "(transform it with the dataset's own map_batches)")
    resolved = options.resolve([], dataset=True)
    name = options.dataset or DEFAULT_NAME
    resolved = resolved.recording(dataset=name, dataset_kind=DATASET_KIND)
    measurer = Measurer(options.mode, None, 1, resolved.settings.seed, resolved.pixels)
    kernel.warn_if_missing()
    with run_directory(workdir) as directory:
        state = measure_dataset(dataset, resolved.record, measurer, options.key, options.layout, name, directory)
        if resolved.options.on_error == "fail":
            _apply_error_policy(state.bad, state.listing_size, "fail", None)
        result = finalize(state)
        state.images.detach()
    return result


def compute_shard(
    paths: Paths,
    shard: tuple[int, int],
    output: str | os.PathLike,
    options: RunOptions | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
    checkpoint: str | os.PathLike | Checkpointer | None = None,
    checkpoint_every: str | Interval = "60s",
    restart: bool = False,
    clock: Clock | None = None,
    workdir: str | os.PathLike | None = None,
    partial_format: str = "auto",
    **overrides: Any,
) -> PartialState:
    """Measure slice ``shard = (K, N)`` of the listing and write its lossless partial state to
    ``output`` (for :func:`merge`). ``partial_format``: ``json`` (one file), ``columns`` (a small
    header in ``output`` and the column files in ``output.columns``) or ``auto`` (JSON up to
    10,000 images in the slice, columns above). The other arguments are those of :func:`compute`."""
    run_options = compose(options, overrides, "compute_shard")
    checkpointer = _checkpointer(checkpoint, checkpoint_every, restart)
    chosen: list[str] = []

    def choose_format(run: Plan) -> None:  # before measuring: a format that cannot be written fails first
        start, stop = shard_bounds(len(run.sources), *shard)
        chosen.append(state_file.choose_format(partial_format, run.sources, stop - start))

    check_destinations([("output", output), ("checkpoint", None if checkpointer is None else checkpointer.path)])
    with _locked(checkpointer):
        with _measured(paths, run_options, shard, workers=workers, progress=progress, checkpointer=checkpointer,
                       workdir=workdir, clock=clock, check=choose_format) as (run, state):
            state_file.write(state, os.fspath(output), chosen[0], run.sources)
            state.images.detach()
        _lap(clock, "writing")
        if checkpointer is not None:
            checkpointer.remove()
    return state


def compute_distributed(
    paths: Paths,
    options: RunOptions | None = None,
    *,
    workers: int | None = None,
    progress: bool = False,
    checkpoint: str | None = None,
    checkpoint_every: str | Interval = "60s",
    restart: bool = False,
    workdir: str | os.PathLike | None = None,
    **overrides: Any,
) -> Result | None:
    """This rank's share of a ``torchrun`` job (see :mod:`chanstats.scale.distributed`): measure
    shard ``RANK+1`` of ``WORLD_SIZE``, gather the states on rank 0 and finalize them there.

    Returns the result on rank 0, ``None`` on the other ranks. ``checkpoint`` must contain
    ``{rank}`` when there is more than one rank. Each rank's per-image columns go to a folder in
    ``workdir`` that all ranks agree on (default: the temporary folder, enough on one machine; on
    several machines it must be a shared file system), removed at the end.
    """
    from .scale import distributed

    run_options = compose(options, overrides, "compute_distributed")
    rank, world = distributed.rank_and_world()
    checkpointer = None
    if checkpoint is not None:
        checkpointer = _checkpointer(distributed.rank_checkpoint(checkpoint, rank, world), checkpoint_every, restart)
    shared = distributed.shared_directory(workdir)
    payload: str | None = None
    error: str | None = None
    run: Plan | None = None
    if workers is None:
        workers = distributed_workers()
    try:
        try:
            os.makedirs(shared, exist_ok=True)
        except OSError as failure:
            raise ChanstatsError(f"--workdir {shared}: cannot create it: {failure.strerror or failure}") from None
        if checkpointer is not None:
            checkpointer.lock()  # each rank's own {rank} checkpoint: one job at a time on it
        # The ranks share a directory: rank 0 lists and the others read its listing there.
        with _measured(paths, run_options, (rank + 1, world), workers=workers, progress=progress and rank == 0,
                       checkpointer=checkpointer, workdir=shared, columns=os.path.join(shared, f"rank-{rank}"),
                       wait_for_listing=rank > 0) as (run, state):
            if checkpointer is not None:
                checkpointer.save(state)  # the columns are durable, the header says how far
            state.images.sync()
            payload = state_file.columns_header(state, os.path.abspath(state.images.directory or ""), None)
    except ChanstatsError as failure:
        error = str(failure)

    def merge_ranks(headers: list[str]) -> Result:
        states = []
        for r, text in enumerate(headers):
            try:
                states.append(state_file.loads(text, f"rank {r}"))
            except state_file.MissingColumnsError:
                raise ChanstatsError(distributed.missing_columns(r, shared)) from None
        with run_directory(workdir) as directory:
            merged = merge_states(states, [f"rank {r}" for r in range(world)], directory, origin=run.sources)
            result = finalize(merged)
            merged.images.detach()
        return result

    try:
        result = distributed.gather_states(payload, error, rank, world, merge_ranks)
        if checkpointer is not None:
            checkpointer.remove()  # and let go of it
    finally:
        from .scale.columns import remove_directory

        remove_directory(os.path.join(shared, f"rank-{rank}"))
        if rank == 0:
            remove_directory(shared)
        if checkpointer is not None:
            checkpointer.unlock()  # the checkpoint stays when the run failed
    return result


def distributed_workers() -> int:
    """Worker processes per torchrun rank: the cores this process may use divided among the ranks
    on this machine (``LOCAL_WORLD_SIZE``, which torchrun sets), at least one."""
    from .scale.engine import default_workers

    try:
        local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local_ranks = 1
    return max(1, default_workers() // local_ranks)


def merge(parts: Sequence[str | os.PathLike | PartialState], *, workdir: str | os.PathLike | None = None) -> Result:
    """The result of a sharded run from its partial states (files written by :func:`compute_shard`
    in either format, or states): byte-identical to a single :func:`compute` on the same data. The
    parts must come from the same options and listing and tile it exactly; their order does not
    matter. Their columns are concatenated in bounded memory into a folder in ``workdir`` (default:
    the system's temporary folder), removed when the merge ends."""
    states = [part if isinstance(part, PartialState) else state_file.read_partial(os.fspath(part)) for part in parts]
    names = [f"part {i + 1}" if isinstance(part, PartialState) else os.fspath(part) for i, part in enumerate(parts)]
    with run_directory(workdir) as directory:
        merged = merge_states(states, names, directory)
        result = finalize(merged)
        merged.images.detach()
    return result


def check(
    config: str | os.PathLike | dict[str, Any],
    paths: Paths | None = None,
    *,
    tolerance: float | None = None,
    max_wasserstein: float | None = None,
    max_jsd: float | None = None,
    max_psi: float | None = None,
    max_ks: float | None = None,
    ks_alpha: float | None = None,
    workers: int | None = None,
    progress: bool = False,
) -> "CheckReport":
    """Recompute ``paths`` (default: the config's recorded inputs) with the options ``config`` (a
    file or a loaded mapping) recorded, and compare with its statistics.

    ``report.passed`` says whether every channel's mean and std moved by at most ``tolerance``
    (default 0.01, on the [0, 1] scale) and, where the config recorded them, whether the
    histograms (Wasserstein-1 on the [0, 1] scale ≤ ``max_wasserstein``, Jensen–Shannon divergence
    in bits ≤ ``max_jsd``, PSI ≤ ``max_psi``) and the per-image properties (two-sample KS: fails
    when D > ``max_ks`` and p < ``ks_alpha``) stayed put; ``None`` keeps the defaults of
    :class:`chanstats.report.thresholds.Thresholds`. ``report.result`` is the new result.
    """
    from .report.check import build_report, recorded_inputs
    from .report.thresholds import Thresholds
    from .report.validate import validate_config

    source = "config" if isinstance(config, dict) else os.fspath(config)
    data = config if isinstance(config, dict) else read_config(source)
    thresholds = Thresholds.of(tolerance=tolerance, wasserstein=max_wasserstein, jsd=max_jsd, psi=max_psi, ks=max_ks,
                               ks_alpha=ks_alpha)
    validate_config(data, source)
    options = RunOptions.from_record(data.get("options"), source)
    if data.get("listing") is not None:
        options = options.replace(listing=True)
    if data.get("histogram") is not None:
        # The config's histograms were counted: count them again, whatever the default became.
        options = options.replace(histogram=True)
    if paths:
        inputs = _path_list(paths)
    elif options.dataset is not None:
        inputs = []  # the recorded --dataset spec rebuilds the source
    else:
        inputs = recorded_inputs(data, source)
    result = compute(inputs, options, workers=workers, progress=progress)
    return build_report(data, result, thresholds, source)


def compare(
    paths: Paths,
    options: RunOptions | None = None,
    *,
    batch_sizes: Sequence[int] = (16, 64, 256),
    momenta: Sequence[float | str | None] = (0.1, 0.01, "none"),
    conventions: Sequence[str] = ("torch",),
    seeds: Sequence[int] = (0,),
    shuffle: bool = True,
    drop_last: bool = False,
    trajectory: bool = False,
    workers: int | None = None,
    progress: bool = False,
    **overrides: Any,
) -> "Comparison":
    """How far BatchNorm's running mean/std land from the exact values for every combination of
    ``conventions`` × ``batch_sizes`` × ``momenta`` × ``seeds``, from one decoding pass.

    Random augmentations are drawn with the first of ``seeds``. ``trajectory`` keeps each
    estimate's path over batches (for :func:`chanstats.report.plot.plot_png`).
    """
    from .report.compare import combinations
    from .report.compare import compare as compare_settings

    settings, notes = combinations(
        [str(c) for c in conventions], list(batch_sizes), ["none" if m is None else str(m) for m in momenta], list(seeds),
        shuffle=shuffle, drop_last=drop_last,
    )
    run_options = compose(options, {**overrides, "seed": list(seeds)[0]}, "compare")
    result = compute(paths, run_options, workers=workers, progress=progress)
    return compare_settings(result, settings, notes=notes, trajectory=trajectory)


def export(
    config: str | os.PathLike | dict[str, Any], to: str, *, source: str | None = None, **options: Any
) -> str | bytes:
    """``config``'s exact mean/std (a file or a loaded mapping) rendered for a framework ``to``:
    torchvision, timm, hf, albumentations (-json, -yaml), mmengine, detectron2, keras, kornia, torchgeo, percentile-clip, bn-state
    (bytes), json or yaml. ``options`` are :func:`chanstats.report.export.export`'s (``eps``,
    ``affine``, ``base``, ``flavour``, ``preprocessor_type``, ``clip``); errors name ``source`` (default: the
    file, or "config").
    """
    from .report.export import export as render
    from .report.validate import validate_config

    if not isinstance(config, dict):
        source = source or os.fspath(config)
        config = read_config(os.fspath(config))
    source = source or "config"
    validate_config(config, source)  # a file's was validated as it was read; a mapping's here
    try:
        return render(config, to, **options)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise ChanstatsError(f"{source}: incomplete config ({error!r})") from None
    except ChanstatsError as error:
        message = str(error).removeprefix("config: ")
        raise ChanstatsError(message if message.startswith(source) else f"{source}: {message}") from None


def write(result: Result, path: str | os.PathLike, fmt: str | None = None) -> None:
    """Write ``result``'s config to ``path`` atomically (JSON, or YAML for .yaml/.yml)."""
    result.write(os.fspath(path), fmt)


def _accepts_keywords(keywords: tuple[str, ...], in_effect: Callable[..., Any]):
    """A decorator giving a function the keyword-only ``keywords`` (default ``None``, shown in its
    signature), which are taken off each call and given to ``in_effect``: the call runs inside the
    context manager that returns. They set how a run reaches its data or does its work, never what
    it computes, so none is recorded in a config, partial state or checkpoint."""
    import functools

    def decorate(function):
        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any):
            given = [kwargs.pop(name, None) for name in keywords]
            with in_effect(*given):
                return function(*args, **kwargs)

        signature = inspect.signature(function)
        parameters = list(signature.parameters.values())
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in keywords]
        at = next((i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD), len(parameters))
        wrapped.__signature__ = signature.replace(parameters=parameters[:at] + added + parameters[at:])
        return wrapped

    return decorate


@contextmanager
def _cache_in_effect(cache: Any) -> Iterator[None]:
    if cache is None:
        yield
        return
    from .scale.cache import CacheSettings, cache_in_effect

    with cache_in_effect(cache if isinstance(cache, CacheSettings) else CacheSettings(os.fspath(cache))):
        yield


# storage_options: keyword arguments of the fsspec file systems that read URL inputs (credentials,
# endpoint_url, anon), plus retries and read_ahead.
_accepts_storage_options = _accepts_keywords(("storage_options",), _storage_options_in_effect)
# engine: "local" (this machine's process pool) or "ray" (Ray tasks: scale/ray_engine.py), and
# ray_address (default: the cluster this process is connected to, RAY_ADDRESS, or a local one).
_accepts_engine = _accepts_keywords(("engine", "ray_address"), ray_engine.engine_in_effect)
# cache: a folder (or a scale.cache.CacheSettings) where each item's measurement is kept and reused
# by later runs on unchanged items (docs/cache.md).
_accepts_cache = _accepts_keywords(("cache",), _cache_in_effect)

compute = _accepts_storage_options(_accepts_engine(_accepts_cache(compute)))
compute_shard = _accepts_storage_options(_accepts_engine(_accepts_cache(compute_shard)))
compute_distributed = _accepts_storage_options(compute_distributed)
check = _accepts_storage_options(_accepts_engine(_accepts_cache(check)))
compare = _accepts_storage_options(_accepts_engine(_accepts_cache(compare)))


def _show_options(function) -> None:
    """Give ``function`` a signature that lists every option of :class:`RunOptions` as a keyword,
    so ``help()`` and editors show them instead of ``**overrides``."""
    signature = inspect.signature(function)
    parameters = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    defaults = RunOptions()
    for name in RunOptions.names():
        if name not in signature.parameters:
            parameters.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=getattr(defaults, name)))
    function.__signature__ = signature.replace(parameters=parameters)


for _function in (compute, compute_shard, compute_distributed, compare):
    _show_options(_function)

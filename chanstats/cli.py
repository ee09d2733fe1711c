"""The ``chanstats`` command: click parsing and printing over the Python API, nothing more.

Library errors (:class:`~chanstats.errors.ChanstatsError`) and outputs that cannot be written (a
full disk, a read-only folder) become one line on stderr and exit code 2 here, and nowhere else;
``--debug`` shows the traceback instead. Every destination is checked before the work starts, and
the outputs are written all or none. Exit codes and signals: :mod:`chanstats.exits`.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import traceback

import click

from . import collector
from ._version import __version__
from .cli_help import GroupedHelpGroup
from .errors import ChanstatsError, cannot_write
from .exits import (EXIT_BROKEN_PIPE, EXIT_CHECK_FAILED, EXIT_CODES_HELP, EXIT_INPUT_ERROR, EXIT_INTERRUPTED,
                    EXIT_TERMINATED, Terminated, handle_sigterm)
from .options import BATCHES, CONVENTION_NAMES, DEFAULTS, LAYOUTS, MODES, ON_ERROR, VIDEO_DECODERS, VIDEO_SAMPLES
from .report.export import FORMATS as EXPORT_FORMATS
from .report.export import MM_FLAVOURS

# What a full disk, a read-only file system or a failing device say: not a bug, the user's to fix.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


class ChanstatsGroup(GroupedHelpGroup):
    """Turns library errors into a clean message and exit code 2 for every subcommand, Ctrl-C into
    one line and exit code 130, SIGTERM into one line and 143, and a closed stdout into a quiet 141."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ChanstatsError as error:
            if _debug(ctx):
                raise
            if str(error):  # empty: another torchrun rank reports it
                from .sources.storage import redact  # no credential reaches the terminal

                _error_line(redact(str(error)))
            ctx.exit(EXIT_INPUT_ERROR)
        except KeyboardInterrupt as interrupt:
            # Worker processes are stopped by the engine, run folders and temporary files removed
            # on the way out, and outputs are only renamed into place once all are written: nothing
            # half-written is left behind. SIGTERM arrives as Terminated, a KeyboardInterrupt.
            if _debug(ctx):
                traceback.print_exc()
            terminated = isinstance(interrupt, Terminated)
            _error_line("Terminated" if terminated else "Interrupted", prefix="")
            ctx.exit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED)
        except BrokenPipeError:
            # The reader of stdout (or stderr) went away, as with `chanstats compute x | head`: end
            # quietly, as Unix tools killed by SIGPIPE do (Python ignores that signal).
            _silence_standard_streams()
            ctx.exit(EXIT_BROKEN_PIPE)
        except OSError as error:
            # A write that no code path named: still one line and exit 2, not a traceback and 1.
            if error.errno not in WRITE_ERRNOS or _debug(ctx):
                raise
            where = error.filename if error.filename is not None else "a file (--debug shows which)"
            _error_line(str(cannot_write(where, error)))
            ctx.exit(EXIT_INPUT_ERROR)


def _error_line(message: str, prefix: str = "Error: ") -> None:
    try:
        click.echo(f"{prefix}{message}", err=True)
    except OSError:  # stderr itself is gone or full: the exit code says it
        _silence_standard_streams()


def _silence_standard_streams(*streams) -> None:
    """Point ``streams`` (default: stdout and stderr) at /dev/null, so that Python's last flush at
    exit finds nowhere to fail and prints no "Exception ignored" of its own."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for stream in streams or (sys.stdout, sys.stderr):
        try:
            os.dup2(null, stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass
    os.close(null)


def _print(text: str, nl: bool = True) -> None:
    """Print a command's result to stdout; a full device says so in one line (a closed pipe ends
    quietly, see :class:`ChanstatsGroup`)."""
    try:
        click.echo(text, nl=nl)
    except BrokenPipeError:
        raise
    except OSError as error:
        _silence_standard_streams(sys.stdout)
        raise ChanstatsError(f"cannot write standard output: {error.strerror or error}") from None


def _debug(ctx: click.Context) -> bool:
    return bool(ctx.obj and ctx.obj.get("debug"))  # set by the group's own options, once parsed


@click.group(cls=ChanstatsGroup, context_settings={"help_option_names": ["-h", "--help"]},
             help=f"Exact per-channel mean/std for image datasets, as the model sees them.\n\n{EXIT_CODES_HELP}")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=lambda ctx, _, value: _print_version(ctx, value),
              help="Show the version and which compiled kernel is in use (avx2, sse2, none), then exit.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.option("--max-image-pixels", metavar="N|none", default=None, callback=lambda ctx, _, value: _pixel_limit(value),
              help="Set PIL.Image.MAX_IMAGE_PIXELS, the decompression-bomb limit: an image of more than twice N "
                   "pixels is refused, in every format (default: Pillow's, 89478485); 'none' lifts the limit.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, max_image_pixels: int | None | bool) -> None:
    ctx.obj = {"debug": debug}
    if max_image_pixels is not False:
        from PIL import Image  # only when asked: keeps `chanstats --help` fast

        # A process-wide setting, as for API users; the engine gives every worker the same. Put
        # back when the command ends, for callers that run the command in their own process.
        previous = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = max_image_pixels
        ctx.call_on_close(lambda: setattr(Image, "MAX_IMAGE_PIXELS", previous))


def _pixel_limit(value: str | None) -> int | None | bool:
    """``--max-image-pixels``: a positive number, ``None`` for 'none', ``False`` when not given."""
    if value is None:
        return False
    if value.strip().lower() == "none":
        return None
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise click.BadParameter(f"{value!r} is not a positive whole number of pixels or 'none'")
    return limit


def _use_storage_options(ctx: click.Context, _param: click.Parameter, pairs: tuple[str, ...]) -> None:
    if pairs:
        from .sources.storage import parse_storage_options, storage_options

        try:
            parsed = parse_storage_options(pairs)
        except ChanstatsError as error:
            raise click.BadParameter(str(error)) from None
        ctx.with_resource(storage_options(parsed))


def _use_cache(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    # The four cache options arrive one callback at a time; the cache is set up once all are known.
    wanted = ctx.meta.setdefault("chanstats.cache", {})
    wanted[param.name] = value
    if len(wanted) < len(CACHE_OPTIONS):
        return
    if wanted["no_cache"] or not wanted["cache"]:
        return
    from .scale.cache import CacheSettings, cache_in_effect, default_directory, parse_size

    try:
        size = parse_size(wanted["cache_max_size"])
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--cache-max-size") from None
    directory = default_directory() if wanted["cache"] == "default" else wanted["cache"]
    ctx.with_resource(cache_in_effect(CacheSettings(directory, wanted["cache_verify"], size)))


CACHE_OPTIONS = [
    click.option("--cache", metavar="DIR|default", envvar="CHANSTATS_CACHE", expose_value=False, callback=_use_cache,
                 help="Keep each image's measurement in DIR and reuse it for unchanged images (output identical); "
                      "'default': ${XDG_CACHE_HOME:-~/.cache}/chanstats/measurements. Also $CHANSTATS_CACHE."),
    click.option("--no-cache", is_flag=True, expose_value=False, callback=_use_cache,
                 help="Use no cache, even with --cache or $CHANSTATS_CACHE."),
    click.option("--cache-verify", type=click.Choice(["stat", "hash"]), default="stat", show_default=True,
                 expose_value=False, callback=_use_cache,
                 help="Identify an unchanged image by path, size and mtime (stat) or by a BLAKE2b hash of its bytes "
                      "(hash: for fresh checkouts and copies, whose mtimes change)."),
    click.option("--cache-max-size", metavar="SIZE", default="2G", show_default=True, expose_value=False,
                 callback=_use_cache, help="Bound on the cache's entries; the least recently used go first."),
]


def cache_options(command):
    """The cache options (see docs/cache.md) of the commands that measure."""
    for option in reversed(CACHE_OPTIONS):
        command = option(command)
    return command


storage_option = click.option(
    "--storage-option", multiple=True, metavar="KEY=VALUE", expose_value=False, callback=_use_storage_options,
    help="For URL inputs (s3://, gs://, az://, hf://, https://): an option of the fsspec file system, such as "
         "endpoint_url=http://host:9000 or anon=true; repeatable. Never written to any output.")


def _use_engine(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    # --engine and --ray-address are read together, once click has seen both (in either order).
    chosen = ctx.meta.setdefault("chanstats.engine", {})
    chosen[param.name] = value
    if len(chosen) == 2:
        from .scale.ray_engine import engine_in_effect

        ctx.with_resource(engine_in_effect(chosen["engine"], chosen["ray_address"]))


def _on_ray() -> bool:
    from .scale.ray_engine import current

    return current() is not None


def engine_options(command):
    """--engine and --ray-address: where the units of work run (shared by compute, check, compare)."""
    options = [
        click.option("--engine", type=click.Choice(["local", "ray"]), default=None, expose_value=False,
                     callback=_use_engine,
                     help="local: this machine's worker processes (default); ray: Ray tasks on a Ray cluster "
                          "(needs the 'ray' extra). The output is the same on both."),
        click.option("--ray-address", metavar="ADDR", default=None, expose_value=False, callback=_use_engine,
                     help="With --engine ray: the cluster (host:port, ray://host:10001, auto; local: a new local cluster of "
                          "--workers CPUs for the run). Default: RAY_ADDRESS, a cluster of `ray start` on this "
                          "machine, else a new local one."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _print_version(ctx: click.Context, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from . import kernel

    click.echo(f"chanstats, version {__version__} (kernel: {kernel.name()})")
    ctx.exit()


class PhaseClock:
    """Wall time of consecutive phases of a run, for ``--timings``.

    >>> clock = PhaseClock(); clock.lap("listing"); str(clock).startswith("listing 0.0")
    True
    """

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.phases: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases.append((name, now - self._last))
        self._last = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.3f} s" for name, seconds in self.phases)


def _csv_list(value: str) -> list[str]:
    return [item for item in (part.strip() for part in value.split(",")) if item]


def sample_options(command):
    """The options that decide which pixels are measured: shared by compute and compare."""
    options = [
        click.option("--mode", type=click.Choice(MODES), default=DEFAULTS.mode, show_default=True,
                     help="RGB: like torchvision's loader (grey replicated, alpha dropped); L: greyscale; keep: native channels and bit depth (16-bit grey too)."),
        click.option("--ext", "extensions", default=None, metavar="EXTS",
                     help=f"Comma-separated image extensions to look for (default: torchvision's: {','.join(DEFAULTS.extensions)})."),
        click.option("--transform", default=None, metavar="SPEC",
                     help="Training transform: a YAML/JSON list of torchvision.transforms.v2 steps, or module:attr / file.py:attr."),
        click.option("--resize", type=click.IntRange(min=1), default=None, metavar="N", help="Resize(N) before any --transform."),
        click.option("--center-crop", type=click.IntRange(min=1), default=None, metavar="N",
                     help="CenterCrop(N) after --resize, before any --transform."),
        click.option("--epochs", type=click.IntRange(min=1), default=DEFAULTS.epochs, show_default=True,
                     help="Pass every image this many times, with fresh random draws (samples = images × epochs)."),
        click.option("--workers", type=int, default=None, help="Worker processes (default: all cores; 0: in this process)."),
        click.option("--bands", default=None, metavar="2,3,4", help="Keep only these bands (numbered from 1, as GDAL does), in this order."),
        click.option("--channels", "channel_names", default=None, metavar="NAMES",
                     help="Comma-separated channel names, e.g. B01,B02 (default: the file's band names, else R,G,B... or b1..bN)."),
        click.option("--nodata", default=None, metavar="V|V1,V2,..|nan|none",
                     help="Leave pixels with this value out of every statistic (per band); default: a GeoTIFF's GDAL_NODATA; none: ignore it."),
        click.option("--scale", default=None, metavar="N",
                     help="The raw value that maps to 1.0, e.g. 4095 for 12-bit data (default: 255 uint8, 65535 uint16, else 1)."),
        click.option("--percentiles", default=DEFAULTS.percentiles, show_default=True, metavar="Q1,Q2,..|auto|none",
                     help="Percentiles to report: exact for integer data, within a stated relative error for floats; "
                          "auto: 0.5,1,2,50,98,99,99.5 except for 8-bit images without nodata (costly there: ask by name); none: off."),
        click.option("--column", default=None, metavar="NAME",
                     help="Image column of Parquet/Arrow tables and Hugging Face datasets (default: the Image feature, or the one binary column)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def video_options(command):
    """Which frames of each video are measured, and by what: shared by compute and compare."""
    options = [
        click.option("--frames", type=click.IntRange(min=1), default=None, metavar="N",
                     help="Videos: N frames evenly spaced per video (default: every frame)."),
        click.option("--fps", type=click.FloatRange(min=0, min_open=True), default=None, metavar="F",
                     help="Videos: the frames shown at F frames per second."),
        click.option("--clip-len", type=click.IntRange(min=1), default=None, metavar="T",
                     help="Videos: one clip of T frames per video and epoch, its start drawn from (--seed, epoch, video)."),
        click.option("--frame-interval", type=click.IntRange(min=1), default=DEFAULTS.frame_interval, show_default=True,
                     metavar="K", help="Videos: with --clip-len, take every K-th frame."),
        click.option("--video-decoder", type=click.Choice(VIDEO_DECODERS), default=DEFAULTS.video_decoder,
                     show_default=True, help="Videos: PyAV (FFmpeg in its wheels) or torchcodec (when installed)."),
        click.option("--video-sample", type=click.Choice(VIDEO_SAMPLES), default=DEFAULTS.video_sample,
                     show_default=True, help="Videos: a BatchNorm sample is a clip (BatchNorm3d) or each frame (BatchNorm2d; "
                                             "needs --frames or --clip-len)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _video(values: dict) -> dict:
    """The video options' values as RunOptions fields."""
    return {name: values[name] for name in ("frames", "fps", "clip_len", "frame_interval", "video_decoder", "video_sample")}


def dataset_options(command):
    """The options that name a Python dataset instead of paths: shared by compute and compare."""
    options = [
        click.option("--dataset", default=None, metavar="MODULE:ATTR",
                     help="Measure a Python dataset, DataLoader or iterable of samples instead of PATHS: package.module:attr or file.py:attr (a callable is called)."),
        click.option("--key", default=None, metavar="KEY", help="With --dataset: the image in each sample (default: 'image' in a dict, element 0 in a tuple)."),
        click.option("--layout", type=click.Choice(LAYOUTS), default=DEFAULTS.layout, show_default=True,
                     help="With --dataset: where the channels are (auto: first in tensors, last in NumPy arrays)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _one_source(paths, dataset) -> None:
    if bool(paths) == bool(dataset):
        raise click.UsageError("give PATHS or --dataset MODULE:ATTR (one of them)")


def _sample_key(key: str | None) -> str | int | None:
    """``--key 0`` picks element 0 of a tuple; any other key is a dict key."""
    return int(key) if key is not None and key.lstrip("-").isdigit() else key


def _extensions(value: str | None):
    return _csv_list(value) if value is not None else DEFAULTS.extensions


@cli.command()
@click.argument("paths", nargs=-1)
@storage_option
@engine_options
@cache_options
@dataset_options
@click.option("--batches", type=click.Choice(BATCHES), default=DEFAULTS.batches, show_default=True,
              help="BatchNorm simulation: a seeded shuffle into --batch-size batches, or (a --dataset that is a DataLoader) its own batches.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the config here (JSON, or YAML for .yaml/.yml) instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["json", "yaml"]), help="Output format (default: from the -o extension, else JSON).")
@sample_options
@video_options
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size, show_default=True, help="BatchNorm simulation: images per batch.")
@click.option("--momentum", default=DEFAULTS.momentum, show_default=True,
              help="BatchNorm momentum: a number, or 'none' for torch's cumulative average (default: 0.1 torch, 0.99 keras).")
@click.option("--convention", type=click.Choice(CONVENTION_NAMES), default=DEFAULTS.convention, show_default=True,
              help="torch: running = (1-m)·running + m·batch, unbiased var; keras: moving = m·moving + (1-m)·batch, biased var.")
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True, help="Seed of the batch shuffle, of random augmentations and of --sample.")
@click.option("--no-shuffle", is_flag=True, help="Batch in listing order instead of a seeded shuffle.")
@click.option("--drop-last", is_flag=True, help="Drop the last partial batch, like DataLoader(drop_last=True).")
@click.option("--on-error", type=click.Choice(ON_ERROR), default=DEFAULTS.on_error, show_default=True,
              help="fail: list every bad image and exit 2; skip: leave them out and list them in the output.")
@click.option("--max-bad", default=None, metavar="N|P%", help="With --on-error skip: fail when more than N images (or P% of them) are bad.")
@click.option("--sample", default=None, metavar="N|P%",
              help="Measure a seeded random subset of N images (or P% of them), seed --seed, and report 95% confidence intervals.")
@click.option("--shard", metavar="K/N", help="Measure only the K-th of N contiguous slices of the listing (K from 1); needs --partial.")
@click.option("--partial", "partial_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the lossless partial state (for chanstats merge) instead of a config.")
@click.option("--partial-format", type=click.Choice(["auto", "json", "columns"]), default="auto", show_default=True,
              help="json: one readable file; columns: a small header in FILE and the per-image column files in "
                   "FILE.columns/; auto: JSON up to 10,000 images, columns above. Both merge.")
@click.option("--workdir", type=click.Path(file_okay=False), metavar="DIR",
              help="Where the run keeps its files (default: the temporary folder, TMPDIR): the per-image columns, "
                   "removed at the end, and the listing, kept for later runs and shards on the same inputs. "
                   "Under --distributed on several machines: a shared folder.")
@click.option("--distributed", is_flag=True, help="Under torchrun: each rank measures its shard, rank 0 gathers them (gloo) and writes the config.")
@click.option("--checkpoint", "checkpoint_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Save progress here and resume from it when rerun; deleted after success. Under --distributed put {rank} in the name.")
@click.option("--checkpoint-every", default="60s", show_default=True, metavar="N|Ts",
              help="Checkpoint interval: N images, a time such as 30s or 5m, or both (500,60s).")
@click.option("--restart", is_flag=True, help="Discard an existing --checkpoint instead of resuming from it.")
@click.option("-q", "--quiet", is_flag=True, help="No summary or progress bar on stderr.")
@click.option("--per-image", "per_image", type=click.Path(dir_okay=False), metavar="FILE.csv",
              help="Also write one CSV row per image: path, width, height, per-channel mean and std ([0,1] scale, ddof 0). "
                   "For a sharded run: chanstats merge --per-image.")
@click.option("--listing", is_flag=True, help="Record every file's relative name and size in the config, so `check` can count added/removed files.")
@click.option("--histogram", is_flag=True, help="Count 8-bit images into histograms too (data wider than 8 bits always is): the config records each channel's exact histogram and percentiles, for `show --plot` and check's distribution tests.")
@click.option("--timings", is_flag=True, help="Print on stderr how long listing, measuring, finalizing and writing took (even with -q).")
def compute(paths, output, fmt, mode, extensions, batch_size, momentum, convention, seed, no_shuffle, drop_last,
            on_error, max_bad, sample, workers, transform, resize, center_crop, epochs, shard, partial_path, partial_format,
            workdir, distributed,
            checkpoint_path, checkpoint_every, restart, quiet, per_image, listing, timings, bands, channel_names, nodata,
            scale, percentiles, column, dataset, key, layout, batches, histogram, **video):
    """Compute exact per-channel mean/std of the images under PATHS.

    PATHS are folders (searched recursively, hidden entries skipped), image files, @list.txt
    files with one path per line (relative to the list file), tar shards (.tar, .tar.gz; a
    pattern such as 'train-{000000..000146}.tar' is expanded), read in archive order, or image
    tables: .parquet/.arrow files and Hugging Face dataset folders (rows named file::row N). The config
    goes to stdout or -o; a summary table and a paste-ready Normalize line go to stderr.
    """
    from . import api, kernel
    from .options import RunOptions
    from .report.destinations import check_destinations
    from .scale.checkpoint import Checkpointer, Interval
    from .scale.state import parse_shard

    shard_kn = parse_shard(shard) if shard else None
    _one_source(paths, dataset)
    if shard_kn and not partial_path:
        raise click.UsageError("--shard K/N writes a partial state: add --partial FILE (and merge the parts with chanstats merge)")
    if partial_path and output:
        raise click.UsageError("--partial FILE replaces -o: a partial state is not a config (chanstats merge writes the config)")
    if partial_path and per_image:
        raise click.UsageError("--per-image with --partial: the partial state keeps every image's row; write the CSV "
                               "when merging: chanstats merge PARTS... --per-image FILE.csv")
    for option, path in (("-o", output), ("--partial", partial_path), ("--per-image", per_image)):
        if checkpoint_path and path and os.path.realpath(path) == os.path.realpath(checkpoint_path):
            raise click.UsageError(f"--checkpoint {checkpoint_path} and {option} {path} are the same file: the "
                                   "checkpoint is deleted when the run ends; give it a name of its own")
    if distributed and _on_ray():
        raise click.UsageError("--distributed runs under torchrun; --engine ray schedules on a Ray cluster: choose one")
    if distributed and (shard_kn or partial_path):
        raise click.UsageError("--distributed shards by rank and writes the config on rank 0: drop --shard/--partial")
    if restart and not checkpoint_path:
        raise click.UsageError("--restart discards a --checkpoint: give --checkpoint FILE")
    if timings and distributed:
        raise click.UsageError("--timings times one process's phases: it does not go with --distributed")
    every = Interval.parse(checkpoint_every)
    check_destinations([("-o", output), ("--per-image", per_image), ("--partial", partial_path),
                        ("--checkpoint", None if distributed else checkpoint_path)])
    options = RunOptions(
        mode=mode,
        extensions=tuple(_extensions(extensions)),
        batch_size=batch_size,
        momentum=momentum,
        convention=convention,
        seed=seed,
        shuffle=not no_shuffle,
        drop_last=drop_last,
        on_error=on_error,
        max_bad=max_bad,
        sample=sample,
        transform=transform,
        epochs=epochs,
        resize=resize,
        center_crop=center_crop,
        listing=listing,
        bands=bands,
        channels=channel_names,
        nodata=nodata,
        scale=scale,
        percentiles=percentiles,
        column=column,
        dataset=dataset,
        key=_sample_key(key),
        layout=layout,
        batches=batches,
        histogram=histogram,
        **_video(video),
    )
    checkpointer = Checkpointer(checkpoint_path, every, restart) if checkpoint_path and not distributed else None
    runtime = dict(workers=workers, progress=not quiet and sys.stderr.isatty(), checkpoint=checkpointer or checkpoint_path or None,
               checkpoint_every=every, restart=restart, workdir=workdir)
    if distributed:
        result = api.compute_distributed(list(paths), options, **runtime)
        if result is not None:
            _emit(result, output, fmt, quiet, per_image)
        return
    clock = PhaseClock()
    if partial_path:
        state = api.compute_shard(list(paths), shard_kn or (1, 1), partial_path, options, clock=clock,
                                  partial_format=partial_format, **runtime)
        if not quiet:
            click.echo(f"wrote {partial_path}: shard {state.shard[0]}/{state.shard[1]}, images {state.start}..{state.stop - 1} "
                       f"of {state.listing_size} ({len(state.images)} read, {len(state.bad)} bad)", err=True)
    else:
        # The checkpoint stays until the outputs are written: a full disk then costs no work.
        _emit(api.compute(list(paths), options, clock=clock, remove_checkpoint=False, **runtime), output, fmt, quiet,
              per_image)
        if checkpointer is not None:
            checkpointer.remove()
        clock.lap("writing")
    if timings:
        click.echo(f"timings: {clock}; kernel {kernel.name()}", err=True)

@cli.command()
@click.argument("parts", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the config here (JSON, or YAML for .yaml/.yml) instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["json", "yaml"]), help="Output format (default: from the -o extension, else JSON).")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
@click.option("--workdir", type=click.Path(file_okay=False), metavar="DIR",
              help="Where the merged column files go while merging (default: the temporary folder); removed at the end.")
@click.option("--per-image", "per_image", type=click.Path(dir_okay=False), metavar="FILE.csv",
              help="Also write one CSV row per image, as compute --per-image does on the whole data.")
def merge(parts, output, fmt, quiet, workdir, per_image):
    """Merge the partial states of a sharded run (compute --shard K/N --partial FILE) into a config.

    The parts must come from the same options and file listing and tile the listing exactly (no
    slice missing, none twice); their order on the command line does not matter. The config is
    byte-identical to what a single compute run on the same data writes.
    """
    from .api import merge as merge_parts
    from .report.destinations import check_destinations

    check_destinations([("-o", output), ("--per-image", per_image)])
    _emit(merge_parts(list(parts), workdir=workdir), output, fmt, quiet, per_image)

def _emit(result, output, fmt, quiet, per_image=None) -> None:
    from .report.files import dumps, format_for_path, write_all
    from .report.summary import summary

    text = dumps(result.to_dict(), fmt or (format_for_path(output) if output else "json"))
    files = [(output, text)] if output else []
    if per_image and result.per_image is not None:
        files.append((per_image, result.per_image.csv_pieces(result.channels)))
    # All or none: the files are renamed into place only once every one (and stdout) is written.
    write_all(files, before_commit=None if output else lambda: _print(text, nl=False))
    if not quiet:
        click.echo(summary(result), err=True)
        atypical = result.per_image.atypical_summary(result.channels) if result.per_image is not None else ""
        if atypical:
            click.echo(atypical, err=True)
        if output:
            click.echo(f"wrote {output}", err=True)
        if per_image:
            click.echo(f"wrote {per_image}", err=True)


def _check_thresholds():
    # The threshold module is light (no numpy), so --help shows the real defaults.
    from .report import thresholds

    return thresholds


@cli.command()
@click.argument("paths", nargs=-1)
@storage_option
@engine_options
@cache_options
@click.option("--against", "config_path", required=True, type=click.Path(dir_okay=False), metavar="CONFIG",
              help="The config (JSON/YAML) written by `chanstats compute`; its recorded options are replayed.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=_check_thresholds().DEFAULT_TOLERANCE, show_default=True,
              help="Largest allowed |new − old| of any channel's mean or std, on the [0,1] scale (0.01 ≈ 2.55 grey levels).")
@click.option("--max-wasserstein", type=click.FloatRange(min=0), default=_check_thresholds().DEFAULT_MAX_WASSERSTEIN,
              show_default=True, help="Largest Wasserstein-1 distance between a channel's recorded and new histograms ([0,1] scale).")
@click.option("--max-jsd", type=click.FloatRange(min=0), default=_check_thresholds().DEFAULT_MAX_JSD, show_default=True,
              help="Largest Jensen–Shannon divergence between the histograms, in bits (0..1; 0.01 = JS distance 0.1).")
@click.option("--max-psi", type=click.FloatRange(min=0), default=_check_thresholds().DEFAULT_MAX_PSI, show_default=True,
              help="Largest population stability index between the histograms (< 0.1 stable, > 0.25 large).")
@click.option("--max-ks", type=click.FloatRange(min=0, max=1), default=_check_thresholds().DEFAULT_MAX_KS, show_default=True,
              help="Per-image brightness, contrast, area, aspect: largest two-sample KS statistic D (fails only with p < --ks-alpha too).")
@click.option("--ks-alpha", type=click.FloatRange(min=0, max=1), default=_check_thresholds().DEFAULT_KS_ALPHA, show_default=True,
              help="A KS statistic above --max-ks fails only when its p-value is below this (0: never).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False), metavar="FILE.json",
              help="Also write every statistic, threshold and verdict as JSON (written on drift too).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="FILE.png",
              help="Draw the recorded and new histograms of each channel, failing ones marked (needs the 'plot' extra: matplotlib).")
@click.option("--workers", type=int, default=None, help="Worker processes (default: all cores; 0: in this process).")
def check(paths, config_path, tolerance, max_wasserstein, max_jsd, max_psi, max_ks, ks_alpha, report_path, plot_path, workers):
    """Recompute PATHS (default: the config's recorded inputs) and compare with CONFIG.

    Exit 0 when every test passes, 1 on drift (the last line names every failing test and
    channel), 2 on usage or input errors. Tests: each channel's mean and std (--tolerance); where
    the config recorded histograms, Wasserstein-1, Jensen–Shannon divergence and PSI per channel;
    where it recorded per-image properties, two-sample KS tests on per-image brightness and
    contrast per channel, and on image area and aspect ratio. Reports whether the file list
    changed. With $GITHUB_STEP_SUMMARY set, a markdown summary is appended to that file.
    """
    from .api import check as check_config
    from .report.destinations import check_destinations

    check_destinations([("--report", report_path), ("--plot", plot_path)])  # before the pass, not after it
    if plot_path:
        from .report.plot import require_matplotlib

        require_matplotlib()
    try:
        report = check_config(config_path, list(paths), tolerance=tolerance, max_wasserstein=max_wasserstein,
                              max_jsd=max_jsd, max_psi=max_psi, max_ks=max_ks, ks_alpha=ks_alpha, workers=workers,
                              progress=sys.stderr.isatty())
        _write_check_outputs(report, report_path, plot_path)
    except (ChanstatsError, KeyboardInterrupt):
        raise
    except Exception:
        # Python exits 1 on an uncaught exception, and 1 means drift: a CI gate must not read
        # a crash as drift.
        if _debug(click.get_current_context()):
            raise
        traceback.print_exc()
        click.echo(f"Error: chanstats check failed unexpectedly on {config_path} (a bug; the traceback is above)", err=True)
        sys.exit(EXIT_INPUT_ERROR)
    _print(report.format())
    if not report.passed:
        sys.exit(EXIT_CHECK_FAILED)


def _write_check_outputs(report, report_path, plot_path) -> None:
    """``--report``, ``--plot`` and the GitHub step summary, before the verdict is printed."""
    import json
    import os

    from .report.files import write_all

    files = []
    if report_path:
        files.append((report_path, json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"))
    if plot_path:
        from .report.check_plot import check_plot_png

        files.append((plot_path, check_plot_png(report)))
    write_all(files)  # all or none
    for path, _ in files:
        click.echo(f"wrote {path}", err=True)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as stream:  # appended: other steps write there too
                stream.write(report.markdown())
        except OSError as error:
            raise ChanstatsError(f"GITHUB_STEP_SUMMARY {summary}: cannot write: {error.strerror or error}") from None

def _int_list(value: str, name: str) -> list[int]:
    try:
        return [int(v) for v in _csv_list(value)]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated integers", param_hint=name) from None


@cli.command()
@click.argument("paths", nargs=-1)
@storage_option
@engine_options
@cache_options
@dataset_options
@click.option("--batch-size", "batch_sizes", default="16,64,256", show_default=True, help="Comma-separated batch sizes.")
@click.option("--momentum", "momenta", default="0.1,0.01,none", show_default=True,
              help="Comma-separated momenta in each convention's own meaning; 'none' = torch cumulative average; 'default' = 0.1 torch / 0.99 keras.")
@click.option("--convention", "conventions", default=DEFAULTS.convention, show_default=True,
              help=f"Comma-separated: {', '.join(CONVENTION_NAMES)}.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated shuffle seeds.")
@click.option("--no-shuffle", is_flag=True, help="Batch in listing order (then one seed).")
@click.option("--drop-last", is_flag=True, help="Drop each epoch's last partial batch.")
@sample_options
@video_options
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), metavar="FILE", help="Write the raw rows (one per combination and channel) as CSV.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="FILE.png",
              help="Draw each estimate's trajectory against images seen, beside the exact value (needs the 'plot' extra: matplotlib).")
def compare(paths, batch_sizes, momenta, conventions, seeds, no_shuffle, drop_last, mode, extensions, transform, resize,
            center_crop, epochs, workers, csv_path, plot_path, bands, channel_names, nodata, scale, percentiles, column,
            dataset, key, layout, **video):
    """How far BatchNorm's running mean/std land from the exact values, for every combination.

    One decoding pass; every (convention, batch size, momentum, seed) is simulated from the
    per-image moments. Prints running mean/std per channel with absolute and relative gaps.
    Random augmentations (--transform) are drawn with the first of --seeds. PATHS are those of
    compute, or --dataset names a Python dataset.
    """
    from .api import compare as compare_settings
    from .options import RunOptions
    from .report.destinations import check_destinations
    from .report.files import write_all

    _one_source(paths, dataset)
    check_destinations([("--csv", csv_path), ("--plot", plot_path)])
    if plot_path:
        from .report.plot import require_matplotlib

        require_matplotlib()  # before the pass, not after minutes of decoding
    comparison = compare_settings(
        list(paths),
        RunOptions(mode=mode, extensions=tuple(_extensions(extensions)), transform=transform, resize=resize,
                   center_crop=center_crop, epochs=epochs, bands=bands, channels=channel_names, nodata=nodata, scale=scale,
                   percentiles="none", column=column, dataset=dataset, key=_sample_key(key), layout=layout,
                   **_video(video)),
        batch_sizes=_int_list(batch_sizes, "--batch-size"), momenta=_csv_list(momenta), conventions=_csv_list(conventions),
        seeds=_int_list(seeds, "--seeds"), shuffle=not no_shuffle, drop_last=drop_last, trajectory=bool(plot_path),
        workers=workers, progress=sys.stderr.isatty(),
    )
    files = [(csv_path, comparison.to_csv())] if csv_path else []
    if plot_path:
        from .report.plot import plot_png

        files.append((plot_path, plot_png(comparison)))
    write_all(files, before_commit=lambda: _print(comparison.table()))
    for path, _ in files:
        click.echo(f"wrote {path}", err=True)


@cli.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--to", "fmt", required=True, type=click.Choice(EXPORT_FORMATS), help="Target framework or format.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write here instead of stdout (required for bn-state).")
@click.option("--base", metavar="DIR_OR_FILE", default=None,
              help="hf: update this preprocessor_config.json (or a model folder's) instead of writing a standalone one; only image_mean/image_std change.")
@click.option("--flavour", type=click.Choice(MM_FLAVOURS), default=None,
              help="mmengine: the code base the snippet merges into (mmpretrain: to_rgb; mmdet: model.data_preprocessor; mmseg: both). Default mmengine.")
@click.option("--type", "preprocessor_type", metavar="NAME", default=None,
              help="mmengine: also set type=NAME (only for a config without a base data_preprocessor; it replaces the base's type).")
@click.option("--affine/--no-affine", default=None,
              help="bn-state: for nn.BatchNorm2d(C) (default: weight 1, bias 0) or nn.BatchNorm2d(C, affine=False).")
@click.option("--eps", type=float, default=None, help="bn-state: the BatchNorm2d eps to compensate for (default 1e-05).")
@click.option("--clip", metavar="LOW,HIGH", default=None,
              help="percentile-clip: the percentiles to clip to (default 0.5,99.5; the config must have been computed with both).")
def export(config_path, fmt, output, base, flavour, preprocessor_type, affine, eps, clip):
    """Render CONFIG's exact mean/std the way a training framework loads it.

    torchvision/timm/hf/keras take [0,1]-scale values; mmengine and detectron2 raw 0-255
    (detectron2 in BGR order); albumentations [0,1] with max_pixel_value (Python, or a pipeline
    for A.load as -json/-yaml); bn-state is a torch state_dict for nn.BatchNorm2d whose eval
    output equals Normalize(mean, std). kornia: K.Normalize tensors on the [0,1] scale; torchgeo:
    MEAN/STD tensors per band in raw file units; percentile-clip: JSON with per-channel clip
    bounds and the exact mean/std of the clipped pixels (nnU-Net style).
    """
    from .api import export as render
    from .report.destinations import check_destinations
    from .report.export import BN_EPS, bn_module_note, format_for_output
    from .report.files import read_config, write_atomic

    check_destinations([("-o", output)])
    fmt = format_for_output(fmt, output)  # --to albumentations -o aug.json: the JSON pipeline
    config = read_config(config_path)
    content = render(config, fmt, source=config_path, eps=eps, affine=affine, base=base, flavour=flavour,
                     preprocessor_type=preprocessor_type, clip=clip)
    if isinstance(content, bytes) and not output:
        raise click.UsageError(f"--to {fmt} is binary (torch.save): give -o FILE.pt")
    if output:
        write_atomic(output, content)
        click.echo(f"wrote {output}", err=True)
    else:
        _print(content, nl=False)
    if fmt == "bn-state":
        channels = len(config["exact"]["mean"])
        click.echo(bn_module_note(channels, BN_EPS if eps is None else eps, affine is not False), err=True)

@cli.command()
@click.argument("config_path", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), metavar="FILE.png",
              help="Also draw each channel's histogram (compute --histogram) with its percentiles, mean ± std and "
                   "BatchNorm estimate marked (needs the 'plot' extra: matplotlib).")
def show(config_path, plot_path):
    """Print CONFIG as the human summary table (the one compute prints)."""
    from .report.files import read_config
    from .report.summary import config_summary

    if plot_path:
        from .report.destinations import check_destinations
        from .report.plot import require_matplotlib

        check_destinations([("--plot", plot_path)])
        require_matplotlib()
    config = read_config(config_path)
    try:
        text = config_summary(config)
        picture = None
        if plot_path:
            from .report.plot import config_png

            picture = config_png(config, source=click.format_filename(config_path))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as error:
        raise ChanstatsError(f"{config_path}: incomplete config ({error!r})") from None
    _print(text)
    if picture is not None:
        from .report.files import write_atomic

        write_atomic(plot_path, picture)
        click.echo(f"wrote {plot_path}", err=True)


def main() -> None:
    collector.pause()  # until the work starts: see chanstats.collector
    handle_sigterm()
    cli(prog_name="chanstats")

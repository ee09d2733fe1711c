"""Every option of a run in one place: :class:`RunOptions`, with defaults, validation, and the
record that configs, partial states and checkpoints carry.

The record (:meth:`RunOptions.to_record`) is the ``options`` mapping of a written config: the
options that decide the statistics, normalized (extensions with a dot, momentum resolved to the
convention's value, a transform file read into its steps). ``check`` replays it with
:meth:`RunOptions.from_record`; merges and resumes compare records. Knobs that never change the
statistics (worker count, progress bar, checkpoint file) are not options of the run but arguments
of :func:`chanstats.compute`.

This module imports nothing heavy, so that the command line can take its defaults from here.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from .decoding.formats import MODES, check_mode
from .errors import BadSpecError, ChanstatsError
from .sources.storage import redact_url
from .sources.base import IMAGE_EXTENSIONS, normalize_extensions

if TYPE_CHECKING:
    from .stats.batchnorm import RunningSettings
    from .stats.sampling import SampleSpec
    from .transforms import TransformSpec

# The choices of the options that have a fixed set of values: the command line offers these.
ON_ERROR = ("fail", "skip")
# The names of chanstats.stats.batchnorm.CONVENTIONS (which maps each to its object), kept here so
# that the command line lists them without importing numpy.
CONVENTION_NAMES = ("torch", "keras")
# The percentiles reported when asked for by name ("--percentiles auto" or a list).
DEFAULT_PERCENTILES_TEXT = "0.5,1,2,50,98,99,99.5"
# The default: percentiles wherever the pixels are counted into a histogram anyway (data wider than
# 8 bits, nodata-masked bands, float data, or --histogram), not for plain 8-bit images, where
# counting every value costs a fifth to a third of a JPEG's decoding (bench/percentiles.py).
PERCENTILES_AUTO = "auto"
LAYOUTS = ("auto", "CHW", "HWC")  # where a dataset sample's channels are (auto: by its type)
# How the BatchNorm simulation batches samples: a seeded shuffle, or a DataLoader's own batches.
BATCHES = ("seeded", "loader")
# ``--momentum default``: the convention's own default (torch 0.1, keras 0.99; see
# chanstats.stats.batchnorm.DEFAULT_MOMENTUM for the numbers).
CONVENTION_MOMENTUM = "default"
__all__ = ["RunOptions", "ResolvedOptions", "RecordedOptions", "ErrorBudget", "running_settings", "MODES", "ON_ERROR",
           "CONVENTION_NAMES", "DEFAULTS"]


@dataclass(frozen=True)
class RunOptions:
    """The options that decide a run's statistics; every field has the command's default.

    ``mode``: ``"RGB"`` (torchvision's loader), ``"L"`` or ``"keep"``. ``extensions``: the file
    extensions listed. ``batch_size``, ``momentum`` (a number, ``"none"`` for torch's cumulative
    average, or ``"default"``: 0.1 torch, 0.99 keras), ``convention`` (``"torch"``/``"keras"``),
    ``seed``, ``shuffle``, ``drop_last``: the simulated BatchNorm layer and its data loader (``seed``
    also seeds augmentations and ``sample``). ``on_error``: ``"fail"`` or ``"skip"``, with
    ``max_bad`` a count or ``"P%"``. ``transform``: a spec (YAML/JSON text or file, a list of
    steps, or ``module:attr``), after ``resize``/``center_crop``; ``epochs`` passes per image.
    ``listing``: record every file's name and size. ``sample``: measure ``N`` or ``"P%"`` images.
    ``bands``: 1-based bands to keep (``"2,3,4"``); ``channels``: channel names (``"B02,B03,B04"``);
    ``nodata``: a value, one per band, ``"nan"`` or ``"none"`` (default: a GeoTIFF's own tag);
    ``scale``: the raw value that maps to 1.0 (default from the dtype); ``percentiles``: which
    percentiles to report (``"none"``: no histograms; ``"auto"``, the default: the standard ones,
    except for 8-bit images without nodata, where the counting they need is not free);
    ``histogram``: record each channel's histogram in the config (for ``show --plot``).
    ``column``: the image column of Parquet and Arrow tables (default: found from their schema).
    ``dataset``: a Python dataset to measure instead of paths, as ``module:attr`` or
    ``file.py:attr``; ``key`` picks the image in its samples (default ``"image"`` in a dict,
    element 0 in a tuple) and ``layout`` (``"auto"``, ``"CHW"``, ``"HWC"``) says where the
    channels are (auto: first in tensors, last in NumPy arrays). ``batches="loader"``: the
    BatchNorm simulation follows a DataLoader's own batches, in its order, instead of a seeded
    shuffle into ``batch_size`` batches.

    >>> RunOptions(batch_size=32).replace(seed=1).batch_size
    32
    """

    mode: str = "RGB"
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS
    batch_size: int = 64
    momentum: float | str | None = CONVENTION_MOMENTUM
    convention: str = "torch"
    seed: int = 0
    shuffle: bool = True
    drop_last: bool = False
    on_error: str = "fail"
    max_bad: str | int | None = None
    transform: str | list | None = None
    epochs: int = 1
    resize: int | None = None
    center_crop: int | None = None
    listing: bool = False
    sample: str | int | None = None
    bands: str | tuple[int, ...] | None = None
    channels: str | tuple[str, ...] | None = None
    nodata: str | int | float | None = None
    scale: str | int | float | None = None
    percentiles: str | tuple[float, ...] | None = PERCENTILES_AUTO
    column: str | None = None
    dataset: str | None = None
    key: str | int | None = None
    layout: str = "auto"
    batches: str = "seeded"
    histogram: bool = False
    # Videos (see chanstats.decoding.video): which frames of each video are measured, and by what.
    frames: int | None = None
    fps: float | None = None
    clip_len: int | None = None
    frame_interval: int = 1
    video_decoder: str = "pyav"
    video_sample: str = "clip"

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The option names, in order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> "RunOptions":
        """A copy with ``changes``; an unknown name is a :class:`TypeError` that lists the known ones."""
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise TypeError(f"unknown option(s) {', '.join(unknown)}; the options are {', '.join(self.names())}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_record(cls, record: Any, source: str = "config") -> "RunOptions":
        """The options a config (or partial state) recorded, to rerun it (``inputs`` is left out).

        A recorded option this version does not know is refused: silently dropping it could make
        ``check`` compare different pipelines.
        """
        if record is None:
            return cls()
        if not isinstance(record, dict):
            raise BadSpecError(f"{source}: 'options' must be a mapping")
        unknown = sorted(k for k in record if k not in _NOT_OPTIONS and k not in cls.names())
        if unknown:
            raise BadSpecError(
                f"{source}: recorded option(s) {', '.join(unknown)} are not known to this chanstats version; "
                "upgrade chanstats, or recompute the config with this version"
            )
        options = {k: v for k, v in record.items() if k not in _NOT_OPTIONS}
        if options.get("on_error", "fail") != "skip" and options.get("max_bad") is not None:
            options["max_bad"] = None  # recorded before it was refused there, where it never had an effect
        return cls(**options)

    def resolve(self, inputs: list[str], *, dataset: bool = False) -> "ResolvedOptions":
        """Check every option, in the order a run needs them, and build the objects the run uses.

        A transform spec is built here, once, so that a bad one fails before any image is read.
        ``dataset``: the run measures a Python dataset, not paths. An option that cannot apply to
        the run's kind of source (``key``, ``layout``, ``batches`` to paths; ``column`` to a
        dataset; ``max_bad`` without ``on_error="skip"``) is refused, never silently ignored.
        """
        from .stats.sampling import SampleSpec
        from .transforms import resolve as resolve_transform

        check_mode(self.mode)
        if self.on_error not in ON_ERROR:
            raise ChanstatsError(f"unknown on_error {self.on_error!r}: choose fail or skip")
        budget = ErrorBudget.parse(self.max_bad)
        if budget is not None and self.on_error != "skip":
            raise ChanstatsError(f"--max-bad {budget} applies with --on-error skip only (under --on-error fail any bad "
                                 "image ends the run)")
        self._check_applies(dataset)
        extensions = normalize_extensions(self.extensions)
        settings = running_settings(self.convention, self.momentum, self.batch_size, self.shuffle, self.seed, self.drop_last)
        epochs = self.epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ChanstatsError(f"--epochs must be a positive integer, got {epochs!r}")
        spec, recorded_transform = resolve_transform(self.transform, resize=self.resize, center_crop=self.center_crop)
        pixels = PixelOptions.parse(self)
        video = VideoOptions.parse(self)
        if pixels.nodata is not None and not pixels.nodata.is_none and spec is not None:
            raise BadSpecError("--nodata with --transform: a nodata mask does not follow geometric transforms")
        if spec is not None and (pixels.histogram or (pixels.percentiles is not None and not pixels.percentiles_auto)):
            # A transform's samples are measured by their moments alone: asked-for percentiles or
            # histograms would silently be missing from the config.
            raise BadSpecError("--percentiles and --histogram are not computed on transformed samples (--transform, "
                               "--resize, --center-crop): drop them, or the transform")
        if spec is not None:
            spec.build()  # a bad spec fails here, once, before any image is read
        sample_spec = SampleSpec.parse(self.sample)
        record: dict[str, Any] = {
            "inputs": [redact_url(item) for item in inputs],  # a URL without password or signature
            "mode": self.mode,
            "extensions": list(extensions),
            "on_error": self.on_error,
            "max_bad": None if budget is None else str(budget),
            **settings.to_dict(),
            "transform": recorded_transform,
            "resize": self.resize,
            "center_crop": self.center_crop,
            "epochs": epochs,
        }
        if self.listing:  # only when asked, so default configs keep their bytes
            record["listing"] = True
        if sample_spec is not None:
            record["sample"] = str(sample_spec)
        pixels.record_into(record)
        if self.column is not None:  # only when chosen, so default configs keep their bytes
            if not isinstance(self.column, str) or not self.column:
                raise ChanstatsError(f"--column must be a column name, got {self.column!r}")
            record["column"] = self.column
        if self.layout not in LAYOUTS:
            raise ChanstatsError(f"unknown layout {self.layout!r}: choose {', '.join(LAYOUTS)}")
        # Only when set, so that configs of files keep their bytes.
        for name in ("dataset", "key"):
            if getattr(self, name) is not None:
                record[name] = getattr(self, name)
        if self.layout != "auto":
            record["layout"] = self.layout
        if self.batches not in BATCHES:
            raise ChanstatsError(f"unknown batches {self.batches!r}: choose {', '.join(BATCHES)}")
        if self.batches != "seeded":
            record["batches"] = self.batches
        video.record_into(record)
        return ResolvedOptions(self, extensions, settings, budget, spec, sample_spec, record, pixels, video)

    def _check_applies(self, dataset: bool) -> None:
        """Refuse the options that cannot apply to the kind of source measured."""
        if dataset:
            if self.column is not None:
                raise ChanstatsError(f"--column {self.column} applies to Parquet and Arrow tables, not to a --dataset "
                                     "(choose its image with --key)")
            return
        given = [f"--key {self.key}" if self.key is not None else None,
                 f"--layout {self.layout}" if self.layout != "auto" else None]
        given = [option for option in given if option is not None]
        if given:
            raise ChanstatsError(f"{' and '.join(given)} applies to a --dataset's samples only, and these inputs are paths")
        if self.batches != "seeded":
            raise ChanstatsError(f"--batches {self.batches} follows a DataLoader's own batches (a --dataset), and these "
                                 "inputs are paths")

    def to_record(self, inputs: list[str]) -> dict[str, Any]:
        """The ``options`` mapping a config written for ``inputs`` with these options holds."""
        return self.resolve(inputs).record


# Every option's default, in one place: the command line shows and uses these.
DEFAULTS = RunOptions()

# Recorded keys that are not options of the run: the paths (the caller gives them) and run-time
# knobs that never change the statistics.
_NOT_OPTIONS = ("inputs", "workers", "progress", "dataset_kind", "decoder")


@dataclass(frozen=True)
class ResolvedOptions:
    """:class:`RunOptions` checked, with the objects a run works with and the record it writes.

    This is what a run carries from :meth:`RunOptions.resolve` on: typed values only (the record
    is their serialization, written into configs, partial states and checkpoints, never read back
    by key; :class:`RecordedOptions` reads a record)."""

    options: RunOptions
    extensions: tuple[str, ...]
    settings: "RunningSettings"
    budget: "ErrorBudget | None"
    transform: "TransformSpec | None"
    sample: "SampleSpec | None"
    record: dict[str, Any]
    pixels: "PixelOptions"
    video: "VideoOptions" = None  # type: ignore[assignment]  # set by RunOptions.resolve

    @property
    def on_error(self) -> str:
        return self.options.on_error

    @property
    def listing(self) -> bool:
        return self.options.listing

    @property
    def seed(self) -> int:
        return self.settings.seed

    def recording(self, **extra: Any) -> "ResolvedOptions":
        """A copy whose record also holds (or replaces) ``extra``: what a run learns after
        resolving (a dataset's name and kind, a DataLoader's own batches)."""
        return dataclasses.replace(self, record={**self.record, **extra})


@dataclass(frozen=True)
class RecordedOptions:
    """The options a run recorded (in a state: one run's, merged partials', a checkpoint's), read
    back typed: what finishing a run needs, without rebuilding its transform."""

    on_error: str
    budget: "ErrorBudget | None"
    settings: "RunningSettings"
    epochs: int
    sample: "SampleSpec | None"
    percentiles: tuple[float, ...] | None
    nodata: str | None
    # Samples each item gives per epoch: 1, or a video's frames under --video-sample frame.
    samples_per_epoch: int = 1

    @classmethod
    def parse(cls, record: Mapping[str, Any]) -> "RecordedOptions":
        """Read ``record`` (as :meth:`RunOptions.resolve` wrote it; options left at their
        defaults are absent from it)."""
        from .stats.sampling import SampleSpec

        return cls(
            on_error=record["on_error"],
            budget=ErrorBudget.parse(record["max_bad"]),
            settings=settings_of(record),
            epochs=record.get("epochs", 1),
            sample=SampleSpec.parse(record.get("sample")),
            percentiles=_parse_percentiles(record.get("percentiles", DEFAULT_PERCENTILES_TEXT)),
            nodata=record.get("nodata"),
            samples_per_epoch=(record.get("frames") or record.get("clip_len") or 1)
            if record.get("video_sample") == "frame" else 1,
        )


@dataclass(frozen=True)
class PixelOptions:
    """How pixels are read and what is kept of them: bands, names, nodata, scale, percentiles.

    Only options that differ from the defaults enter the record, so that default configs keep
    their bytes.
    """

    bands: tuple[int, ...] | None = None
    channels: tuple[str, ...] | None = None
    nodata: Any = None  # a chanstats.stats.nodata.NodataOption, or None: the file's tag applies
    scale: int | float | None = None
    percentiles: tuple[float, ...] | None = None
    # --percentiles auto: ``percentiles`` hold the standard ones, reported where a histogram is kept.
    percentiles_auto: bool = False
    histogram: bool = False  # --histogram: record the histograms in the config

    @classmethod
    def parse(cls, options: "RunOptions") -> "PixelOptions":
        from .stats.nodata import parse_nodata

        nodata = None if options.nodata is None else parse_nodata(str(options.nodata))
        return cls(
            bands=_parse_bands(options.bands),
            channels=_parse_names(options.channels),
            nodata=nodata,
            scale=_parse_scale(options.scale),
            percentiles=_parse_percentiles(options.percentiles),
            percentiles_auto=_is_auto(options.percentiles),
            histogram=bool(options.histogram),
        )

    def keeps_histogram(self, dtype: Any, masked: bool) -> bool:
        """Whether images of ``dtype`` pixels (nodata ``masked`` or not) are counted into a
        histogram (integers) or sketch (floats): for the percentiles or ``--histogram`` asked for,
        and under ``auto`` wherever counting is the measuring pass anyway, i.e. not for unmasked
        8-bit pixels, whose sums a SIMD kernel takes several times faster than a histogram."""
        if self.histogram or (self.percentiles is not None and not self.percentiles_auto):
            return True
        if self.percentiles is None:
            return False
        return masked or str(dtype) not in ("uint8", "int8")

    def record_into(self, record: dict[str, Any]) -> None:
        if self.bands is not None:
            record["bands"] = list(self.bands)
        if self.channels is not None:
            record["channels"] = list(self.channels)
        if self.nodata is not None:
            record["nodata"] = str(self.nodata)
        if self.scale is not None:
            record["scale"] = self.scale
        # Configs of earlier versions recorded nothing for the standard list, then the default:
        # they replay under auto, which gives the same mean and std (what check compares).
        if not self.percentiles_auto:
            record["percentiles"] = "none" if self.percentiles is None else list(self.percentiles)
        if self.histogram:
            record["histogram"] = True


# --video-decoder: PyAV (FFmpeg bundled in its wheels) or torchcodec (when installed).
VIDEO_DECODERS = ("pyav", "torchcodec")
# --video-sample: what one BatchNorm sample of a video is: its clip (a first BatchNorm3d pools a
# clip's T·H·W pixels) or each frame (a 2-D model's BatchNorm2d sees frames).
VIDEO_SAMPLES = ("clip", "frame")


@dataclass(frozen=True)
class VideoOptions:
    """Which frames of each video are measured (``--frames``, ``--fps``, ``--clip-len`` with
    ``--frame-interval``; by default every frame) and the decoder. Only options that differ from
    the defaults enter the record, so that configs of images keep their bytes."""

    frames: int | None = None
    fps: float | None = None
    clip_len: int | None = None
    frame_interval: int = 1
    decoder: str = "pyav"
    sample: str = "clip"

    @classmethod
    def parse(cls, options: "RunOptions") -> "VideoOptions":
        chosen = [name for name, value in (("--frames", options.frames), ("--fps", options.fps),
                                           ("--clip-len", options.clip_len)) if value is not None]
        if len(chosen) > 1:
            raise ChanstatsError(f"{' and '.join(chosen)}: choose one way of picking frames")
        for name, value in (("--frames", options.frames), ("--clip-len", options.clip_len),
                            ("--frame-interval", options.frame_interval)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ChanstatsError(f"{name} must be a positive integer, got {value!r}")
        if options.frame_interval != 1 and options.clip_len is None:
            raise ChanstatsError("--frame-interval spaces the frames of a clip: give --clip-len too")
        fps = options.fps
        if fps is not None:
            try:
                fps = float(fps)
            except (TypeError, ValueError):
                raise ChanstatsError(f"--fps must be a positive number, got {options.fps!r}") from None
            if not 0 < fps < float("inf"):
                raise ChanstatsError(f"--fps must be a positive number, got {options.fps!r}")
            fps = int(fps) if fps.is_integer() else fps
        if options.video_decoder not in VIDEO_DECODERS:
            raise ChanstatsError(f"unknown video decoder {options.video_decoder!r}: choose {', '.join(VIDEO_DECODERS)}")
        if options.video_sample not in VIDEO_SAMPLES:
            raise ChanstatsError(f"unknown video sample {options.video_sample!r}: choose {', '.join(VIDEO_SAMPLES)}")
        if options.video_sample == "frame" and options.frames is None and options.clip_len is None:
            raise ChanstatsError("--video-sample frame needs as many frames from every video: give --frames N or "
                                 "--clip-len T (every frame and --fps take as many as each video has)")
        return cls(options.frames, fps, options.clip_len, options.frame_interval, options.video_decoder,
                   options.video_sample)

    @property
    def samples_per_epoch(self) -> int:
        """BatchNorm samples one video gives per epoch: its clip, or each of its frames."""
        if self.sample != "frame":
            return 1
        return self.frames if self.frames is not None else self.clip_len  # type: ignore[return-value]

    @property
    def random(self) -> bool:
        """Whether each epoch draws its own clip (a random start per video and epoch)."""
        return self.clip_len is not None

    def record_into(self, record: dict[str, Any]) -> None:
        for name, value in (("frames", self.frames), ("fps", self.fps), ("clip_len", self.clip_len)):
            if value is not None:
                record[name] = value
        if self.frame_interval != 1:
            record["frame_interval"] = self.frame_interval
        if self.decoder != "pyav":
            record["video_decoder"] = self.decoder
        if self.sample != "clip":
            record["video_sample"] = self.sample


def _items(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [item.strip() for item in str(value).split(",")]


def _parse_bands(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        bands = tuple(int(item) for item in _items(value))
    except ValueError:
        raise BadSpecError(f"--bands {value!r}: expected 1-based band numbers such as 2,3,4") from None
    if not bands or min(bands) < 1:
        raise BadSpecError(f"--bands {value!r}: bands are numbered from 1")
    return bands


def _parse_names(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(_items(value))
    if not all(names) or len(set(names)) != len(names):
        raise BadSpecError(f"--channels {value!r}: names must be non-empty and distinct")
    return names


# --scale's bounds: far beyond any real full-scale value (a 64-bit integer's range, or reflectances
# scaled by 1e-4), and close enough to 1 that every statistic divided by it stays a normal float64
# (1e-320, a subnormal, overflowed dividing the exact sums).
SCALE_RANGE = (1e-30, 1e30)


def _parse_scale(value: Any) -> int | float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadSpecError(f"--scale {value!r}: expected a positive number such as 4095") from None
    if not SCALE_RANGE[0] <= number <= SCALE_RANGE[1]:
        raise BadSpecError(f"--scale {value!r}: must be a positive number from {SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g} "
                           "(the raw value that maps to 1.0)")
    return int(number) if number.is_integer() else number


def _is_auto(value: Any) -> bool:
    return isinstance(value, str) and value.strip().lower() == PERCENTILES_AUTO


def _parse_percentiles(value: Any) -> tuple[float, ...] | None:
    """The percentiles asked for (``auto``: the standard ones); ``None`` for none."""
    if _is_auto(value):
        value = DEFAULT_PERCENTILES_TEXT
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    try:
        numbers = tuple(float(item) for item in _items(value))
    except ValueError:
        raise BadSpecError(f"--percentiles {value!r}: expected numbers such as 0.5,99.5, auto or none") from None
    if not numbers or any(not 0 <= q <= 100 for q in numbers):
        raise BadSpecError(f"--percentiles {value!r}: each must be between 0 and 100")
    return tuple(int(q) if q.is_integer() else q for q in numbers)


# Keywords of compute() and friends that are not options (they never change the numbers); named in
# the "did you mean" hint of a misspelled keyword.
RUN_TIME_KEYWORDS = ("workers", "progress", "checkpoint", "checkpoint_every", "restart")


def compose(options: RunOptions | None, overrides: dict[str, Any], function: str) -> RunOptions:
    """``options`` (default: the defaults) with ``overrides``; an unknown keyword is a
    :class:`TypeError` naming ``function``, as Python's own message would."""
    base = RunOptions() if options is None else options
    if not isinstance(base, RunOptions):
        raise TypeError(f"{function}() options must be a RunOptions, got {type(base).__name__}")
    if not overrides:
        return base
    unknown = sorted(set(overrides) - set(RunOptions.names()))
    if unknown:
        close = difflib.get_close_matches(unknown[0], [*RunOptions.names(), *RUN_TIME_KEYWORDS], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(f"{function}() got an unexpected keyword argument {unknown[0]!r}{hint}")
    if "extensions" in overrides and overrides["extensions"] is not None:
        overrides = {**overrides, "extensions": tuple(overrides["extensions"])}
    return dataclasses.replace(base, **overrides)


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
    momentum: float | str | None = CONVENTION_MOMENTUM,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
) -> "RunningSettings":
    """Settings from user-level values. ``momentum``: a number, ``None`` or ``"none"`` for torch's
    cumulative average, or ``"default"`` for the convention's default (torch 0.1, keras 0.99)."""
    from .stats.batchnorm import RunningSettings

    cumulative = momentum is None or (isinstance(momentum, str) and momentum.lower() == "none")
    value: float | None = None
    if not cumulative and momentum != CONVENTION_MOMENTUM:
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


def settings_of(record: dict[str, Any]) -> "RunningSettings":
    """The BatchNorm settings a record holds (finalize and merge read them back from states)."""
    return running_settings(
        record["convention"], record["momentum"], record["batch_size"], record["shuffle"], record["seed"], record["drop_last"]
    )

"""One item in, its sufficient statistics out: what a worker computes and sends back, the same way
for every kind of source.

:class:`Measurer` reads an item through :func:`~chanstats.sources.kinds.read_item`: encoded bytes
go to the decoders (:mod:`~chanstats.decoding`), decoded arrays to the array path
(:func:`measure_pixels`); ``--transform``, ``--bands``, ``--channels``, ``--nodata``, ``--scale``
and ``--percentiles`` apply the same way to both. Items whose kind reads them once per epoch (a
dataset's own random draws) are read with every generator seeded.

A :class:`Measurement` is small (a few numbers per channel) so that no pixel array ever crosses a
process boundary. It holds one entry per *sample*: an image passed through a random transform for
K epochs gives K samples.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence, Union

import numpy as np

from .decoding.formats import FLOAT_SCALE, NAMES_BY_COUNT, PixelFormat, channel_names, default_scale
from .decoding.formats import Measured
from .decoding.jpeg import measure_jpeg
from .decoding.pillow import decode, histogram_moments
from .decoding.png import decode_png16, measure_png
from .decoding.raster import read_raster
from .options import PixelOptions, VideoOptions
from .errors import BadImageError, BadSpecError, ChanstatsError, DecompressionBombError
from .stats.moments import (
    FloatMoments,
    IntegerMoments,
    float_moments_of,
    integer_moments_of,
    integer_sample_row,
)
from .sources.base import Decoded, Encoded, ImageSource
from .sources.files import open_file
from .sources.kinds import kind_of, read_item
from .sources.video import is_video
from .transforms import TransformSpec, same_output
from .user_code import contained

if TYPE_CHECKING:
    from .stats.histogram import ChannelHistogram
    from .stats.nodata import BandNodata, NodataOption
    from .stats.sketch import QuantileSketch

# (pixels per channel, mean, M2) in model units; the count is a list, one per channel, when nodata
# left pixels out.
SampleRow = tuple[Union[int, list[int]], list[float], list[float]]


@dataclass
class Measurement:
    """Statistics of one image's samples.

    ``moments[k]`` is sample ``k``'s exact accumulator (integer path) or float64 moments (float
    path, raw units); ``rows[k]`` its (count, mean, M2) in model units for the per-sample table.
    ``histogram`` is the image's exact per-channel histogram (integer pixels) or quantile sketch
    (float pixels) in raw units, for percentiles; ``None`` when percentiles are off or the pixels
    came out of a transform.
    """

    format: PixelFormat
    width: int
    height: int
    dropped_alpha: bool
    moments: list[IntegerMoments | FloatMoments]
    rows: list[SampleRow]
    histogram: "ChannelHistogram | QuantileSketch | None" = None


def measure_pixels(
    pixels: np.ndarray,
    display: str,
    *,
    channels: Sequence[str] | None = None,
    nodata: "NodataOption | None" = None,
    file_nodata: int | float | None = None,
    scale: int | float | None = None,
    percentiles: "bool | Callable[[np.dtype, bool], bool]" = True,
    epochs: int = 1,
) -> Measurement:
    """Measure one in-memory image: the entry point for any source that yields arrays.

    ``pixels`` is (H, W, C) or (H, W), channels last, of an integer dtype of at most 32 bits
    (signed or not: the exact integer path, with an exact histogram) or a float dtype (the float64
    path, with a quantile sketch). ``display`` names the image in errors. ``channels`` names the
    channels (default: R, G, B… up to four, else b1..bN). ``nodata`` is the parsed ``--nodata``
    (``None``: not given, then ``file_nodata``, e.g. a GeoTIFF's ``GDAL_NODATA``, applies);
    matching pixels are left out of every statistic, per channel. ``scale`` is the full-scale value
    mapping to 1.0 (default from the dtype, see :func:`~chanstats.decoding.formats.default_scale`).
    ``percentiles`` keeps the histogram or sketch: a bool, or a function of the pixels' dtype and
    whether nodata masks them (:meth:`~chanstats.options.PixelOptions.keeps_histogram`). The
    measurement repeats for ``epochs`` samples (no transform: every epoch sees the same pixels).

    Raises :class:`~chanstats.errors.BadImageError` for a dtype chanstats cannot measure or for
    NaN/infinite values that nodata does not leave out, and
    :class:`~chanstats.errors.BadSpecError` when ``nodata`` or ``channels`` do not fit the channel
    count.

    >>> from chanstats.stats.nodata import parse_nodata
    >>> m = measure_pixels(np.array([[[0, 10], [4, 20]]], dtype=np.uint16), "a", nodata=parse_nodata("0"), scale=10)
    >>> m.format.channels, m.moments[0].channel_counts(), m.rows[0][1]
    (('L', 'A'), [1, 2], [0.4, 1.5])
    """
    from .stats.nodata import BandNodata

    pixels = _channels_last(pixels, display)
    height, width, count = pixels.shape
    names = _checked_names(channels, count)
    scale = default_scale(pixels.dtype) if scale is None else scale
    band_nodata = BandNodata.resolve(nodata, file_nodata, count)
    pixel_format = PixelFormat(names, scale, pixels.dtype.name, band_nodata.active)
    if callable(percentiles):
        percentiles = percentiles(pixels.dtype, band_nodata.active)
    if pixels.dtype.kind == "f":
        moments, histogram = _measure_float(pixels, band_nodata.mask(pixels), band_nodata.active, percentiles, display)
        row = _float_row(moments, scale)
    else:
        moments, histogram = _measure_integer(pixels, band_nodata, percentiles)
        row = integer_sample_row(moments, scale)
    return Measurement(pixel_format, width, height, False, [moments] * epochs, [row] * epochs, histogram)


def _channels_last(pixels: np.ndarray, display: str) -> np.ndarray:
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    if pixels.ndim != 3:
        raise BadImageError(display, f"a {pixels.ndim}-D array; expected (H, W) or (H, W, C)")
    if 0 in pixels.shape:
        raise BadImageError(display, f"an image without pixels (shape {tuple(pixels.shape)})")
    kind, size = pixels.dtype.kind, pixels.dtype.itemsize
    if not ((kind in "iu" and size <= 4) or (kind == "f" and size in (2, 4, 8))):
        raise BadImageError(
            display, f"{pixels.dtype} pixels; chanstats measures integers of up to 32 bits and float16/32/64"
        )
    if pixels.dtype.byteorder == ">":  # big-endian data from a file: native order for numpy's sums
        pixels = pixels.astype(pixels.dtype.newbyteorder("="))
    return pixels


def _checked_names(channels: Sequence[str] | None, count: int) -> tuple[str, ...]:
    if channels is None:
        return channel_names(count)
    if len(channels) != count:
        raise BadSpecError(f"--channels names {len(channels)} channels but the image has {count}")
    return tuple(channels)


def _measure_integer(pixels: np.ndarray, band_nodata: "BandNodata", percentiles: bool):
    from .stats import counting
    from .stats.histogram import ChannelHistogram
    from .stats.nodata import masked_integer_moments

    masked = band_nodata.active
    total = pixels.shape[0] * pixels.shape[1]
    if counting.can_count(pixels) and not _moments_kernel_is_faster(pixels, masked, percentiles):
        # 8/16-bit pixels: nodata, moments and histogram in one compiled pass.
        counted = counting.count_pixels(pixels, band_nodata.values, percentiles)
        return _integer_moments(total, counted.moments, masked), counted.histogram
    mask = band_nodata.mask(pixels)
    histogram = ChannelHistogram.empty(pixels.shape[2]).update(pixels, mask) if percentiles else None
    if not masked and pixels.dtype.kind == "u" and pixels.dtype.itemsize <= 2:
        return integer_moments_of(np.ascontiguousarray(pixels)), histogram
    return _integer_moments(total, masked_integer_moments(pixels, mask), masked), histogram


def _moments_kernel_is_faster(pixels: np.ndarray, masked: bool, percentiles: bool) -> bool:
    """Sums alone of up to 4 unmasked 8-bit channels: the SIMD moments kernel beats counting."""
    return not (masked or percentiles) and pixels.dtype == np.uint8 and pixels.shape[2] <= 4


def _integer_moments(total: int, exact, masked: bool) -> IntegerMoments:
    return IntegerMoments(
        total, list(exact.sums), list(exact.sums_of_squares), list(exact.mins), list(exact.maxs),
        list(exact.counts) if masked else None,
    )


def _measure_float(pixels, mask, masked: bool, percentiles: bool, display: str):
    from .stats.nodata import masked_float_moments, nonfinite_reason
    from .stats.sketch import QuantileSketch

    reason = nonfinite_reason(pixels, mask)
    if reason is not None:
        raise BadImageError(display, reason)
    exact = masked_float_moments(pixels, mask)
    channels = pixels.shape[2]
    moments = FloatMoments(
        pixels=pixels.shape[0] * pixels.shape[1],
        mean=np.array([0.0 if v is None else v for v in exact.means]),
        m2=np.array(exact.m2s, dtype=np.float64),
        mins=np.array([np.inf if v is None else v for v in exact.mins]),
        maxs=np.array([-np.inf if v is None else v for v in exact.maxs]),
        counts=np.array(exact.counts, dtype=np.int64) if masked else None,
    )
    sketch = QuantileSketch.empty(channels).update(pixels, mask) if percentiles else None
    return moments, sketch


def _float_row(moments: FloatMoments, scale: int | float) -> SampleRow:
    counts = moments.channel_counts()
    count: int | list[int] = moments.pixels if moments.counts is None else [int(v) for v in counts]
    if scale == 1:
        return count, moments.mean.tolist(), moments.m2.tolist()
    return count, (moments.mean / scale).tolist(), (moments.m2 / (scale * scale)).tolist()


@dataclass(frozen=True)
class Measurer:
    """Decodes an image under ``mode`` and measures it; picklable, so workers can run it.

    With a ``transform``, each of the ``epochs`` samples is the transform applied to the decoded
    (PIL) image with every random draw seeded from ``(seed, epoch, index)``; the pipeline itself
    is built lazily, once per process, from the spec. The first sample a process measures is
    transformed twice with the same seeds: differing outputs stop the run (a generator chanstats
    does not seed would make the statistics change from run to run).
    """

    mode: str = "RGB"
    transform: TransformSpec | None = None
    epochs: int = 1
    seed: int = 0
    pixels: PixelOptions = PixelOptions()
    video: VideoOptions = VideoOptions()

    def __call__(self, index: int, source: ImageSource) -> Measurement:
        if kind_of(source).per_epoch:
            return self._read_each_epoch(index, source)
        content = read_item(source)
        if isinstance(content, Decoded):
            return self._decoded(index, source, content)
        if is_video(source.name):
            return self._video(index, source, content)
        return self._encoded(index, source, content)

    def _video(self, index: int, source: ImageSource, content: Encoded) -> Measurement:
        """A video: its selected frames (see :mod:`chanstats.decoding.video`) pooled into one
        sample per epoch, as a first ``BatchNorm3d`` pools a clip's T·H·W pixels, or under
        ``--video-sample frame`` each frame a sample, as a ``BatchNorm2d`` sees them. Every frame is
        measured at its own size (a video whose frames change size mid-stream is measured as
        decoded); the width and height reported are the first frame's. Without a clip drawn per
        epoch or a transform, every epoch sees the same frames: they are measured once."""
        if content.file is not None:
            open_file(source).close()  # refuses what is not a regular file, as for images
        if self.transform is not None:
            return self._transformed_video(index, source, content)
        measure = self._frames_measurement if self.video.sample == "clip" else self._each_frame
        if not self.video.random:
            return measure(self._video_frames(source, content, 0, index), source.display, self.epochs)
        measurements = [measure(self._video_frames(source, content, epoch, index), source.display, 1)
                        for epoch in range(self.epochs)]
        return _samples_of_epochs(measurements, source.display)

    def _each_frame(self, frames, shown: str, epochs: int) -> Measurement:
        """``--video-sample frame``: each frame one sample (as a 2-D model's ``BatchNorm2d`` sees
        frames), the same frames for each of ``epochs``; the histogram holds them once."""
        measured = [self._array(frame, shown, None) for frame in frames]
        if not measured:
            raise BadImageError(shown, "a video without frames")
        first = measured[0]
        histogram = first.histogram
        for other in measured[1:]:
            if other.format != first.format:
                raise BadImageError(shown, f"frames changed kind mid-stream ({first.format.label}, then {other.format.label})")
            if histogram is not None and other.histogram is not None:
                histogram = histogram.merge(other.histogram)
        moments = [m.moments[0] for m in measured]
        rows = [m.rows[0] for m in measured]
        return Measurement(first.format, first.width, first.height, False, moments * epochs, rows * epochs, histogram)

    def _video_frames(self, source: ImageSource, content: Encoded, epoch: int, index: int):
        from .decoding.video import read_frames

        frames = read_frames(content.file, content.read, source.display, self.video, self.mode, self.seed, epoch, index)
        if self.mode != "L":
            return frames
        return (in_mode(frame, "L", source.display) for frame in frames)  # Pillow's grey, as for images

    def _frames_measurement(self, frames, shown: str, epochs: int) -> Measurement:
        """One sample of the frames: consecutive frames of one size measured together (exact
        integers: the same totals as frame by frame), the totals and histograms merged."""
        total: Measurement | None = None
        batch: list[np.ndarray] = []

        def flush() -> None:
            nonlocal total
            if not batch:
                return
            measured = self._array(np.concatenate(batch) if len(batch) > 1 else batch[0], shown, None)
            batch.clear()
            if total is None:
                total = measured
                return
            if measured.format != total.format:
                raise BadImageError(shown, f"frames changed kind mid-stream ({total.format.label}, then {measured.format.label})")
            total.moments[0].merge(measured.moments[0])
            if total.histogram is not None and measured.histogram is not None:
                total.histogram = total.histogram.merge(measured.histogram)

        first_shape = None
        for frame in frames:
            if first_shape is None:
                first_shape = frame.shape
            if batch and (frame.shape != batch[0].shape or len(batch) * frame.nbytes >= _FRAME_BATCH_BYTES):
                flush()
            batch.append(frame)
        flush()
        if total is None or first_shape is None:
            raise BadImageError(shown, "a video without frames")
        moments = total.moments[0]
        row = integer_sample_row(moments, total.format.scale)
        return Measurement(total.format, first_shape[1], first_shape[0], False, [moments] * epochs, [row] * epochs,
                           total.histogram)

    def _transformed_video(self, index: int, source: ImageSource, content: Encoded) -> Measurement:
        """``--transform`` on each epoch's clip as one ``(T, C, H, W)`` torchvision ``Video``:
        torchvision v2 transforms draw once per call, so every frame of the clip gets the same
        crop, flip or colour change; the clip's output is one sample."""
        from .transforms import single_threaded

        spec: TransformSpec = self.transform  # type: ignore[assignment]
        pipeline = spec.build()
        shape: list[int] = []

        def make_input(epoch: int) -> tuple[Any, PixelFormat]:
            import torch
            from torchvision import tv_tensors

            frames = list(self._video_frames(source, content, epoch, index))
            if not frames:
                raise BadImageError(source.display, "a video without frames")
            sizes = {frame.shape for frame in frames}
            if len(sizes) > 1:
                first, other = frames[0].shape, next(s for s in sizes if s != frames[0].shape)
                raise BadImageError(source.display, f"frames change size mid-stream ({first[1]}x{first[0]}, then "
                                    f"{other[1]}x{other[0]}): a clip for --transform needs frames of one size")
            clip = np.stack(frames)
            shape[:] = clip.shape[1:]
            video = tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(clip.transpose(0, 3, 1, 2))))
            return video, _input_format(frames[0], self.pixels.channels)

        samples = []
        with single_threaded():
            for epoch in range(self.epochs):
                output, input_format = self._apply(pipeline, index, epoch, lambda: make_input(epoch), source)
                if spec not in _CHECKED_HERE:
                    if not same_output(output, self._apply(pipeline, index, epoch, lambda: make_input(epoch), source)[0]):
                        raise BadSpecError(_not_reproducible(spec, source.display))
                    _CHECKED_HERE.add(spec)
                if self.video.sample == "frame":  # each frame of the transformed clip, one sample
                    if getattr(output, "ndim", 0) != 4:
                        raise BadSpecError(f"{source.display}: --video-sample frame needs the transform to return the "
                                           "clip as a (T, C, H, W) tensor")
                    samples.extend(measure_output(frame, input_format, source.display) for frame in output)
                else:
                    samples.append(measure_output(output, input_format, source.display))
        return _of_transformed_samples(samples, shape, source.display)

    def _encoded(self, index: int, source: ImageSource, content: Encoded) -> Measurement:
        """An item stored encoded: the decoders (fast paths first, Pillow the reference; TIFF
        rasters and 16-bit PNGs with ``--mode keep``), then the transform on the decoded image."""
        if self.transform is None and self.mode == "keep" and content.hint == "tiff" and content.file is not None:
            measured = self._raster_file(source)
            if measured is not None:
                return measured
        data = content.read()
        if self.transform is None:
            # Without a transform every epoch sees the same pixels: measure them once.
            if self.mode == "keep" and _is_tiff(data):
                return self._raster(data, source.display)
            if self.mode == "keep" and (wide := decode_png16(data, source.display)) is not None:
                return self._array(wide, source.display, None)
            if not self._selects_pixels:
                for fast_path in _FAST_PATHS:
                    fast = fast_path(data, self.mode, source.display, histogram=self._histograms_of_8bit)
                    if fast is not None:
                        return self._untransformed(fast)
            decoded = self._decode(data, source.display)
            if self._selects_pixels:
                return self._array(decoded.pixels(), source.display, None, decoded.dropped_alpha)
            width, height = decoded.size
            eight_bit = decoded.format.scale == 255
            keep = self.pixels.keeps_histogram("uint8" if eight_bit else "uint16", masked=False)
            moments, histogram = decoded.moments_and_histogram(keep)
            return self._untransformed(Measured(decoded.format, width, height, decoded.dropped_alpha, moments, histogram))
        decoded = self._decode(data, source.display)
        width, height = decoded.size
        samples = self._transformed(index, source, lambda: (decoded.image.copy(), decoded.format))
        formats = {fmt for fmt, _, _ in samples}
        if len(formats) > 1:
            kinds = ", ".join(sorted(fmt.label for fmt in formats))
            raise BadSpecError(f"{source.display}: the transform gave different kinds of output across epochs ({kinds})")
        return Measurement(
            format=samples[0][0],
            width=width,
            height=height,
            dropped_alpha=decoded.dropped_alpha,
            moments=[moments for _, moments, _ in samples],
            rows=[row for _, _, row in samples],
        )

    def _decoded(self, index: int, source: ImageSource, content: Decoded) -> Measurement:
        """An item stored as pixels (a NumPy file's image), as stored: ``mode`` does not convert it."""
        if self.transform is not None:
            return self._transformed_array(index, source, lambda: self._chosen(content, source.display))
        return self.measure_array(content.pixels, source.display, self.epochs, content.channel_names)

    def _read_each_epoch(self, index: int, source: ImageSource) -> Measurement:
        """An item whose kind reads it once per epoch, every generator seeded from ``(seed, epoch,
        index)`` so that a dataset's own random transforms draw the same in any worker. With
        ``--transform`` the item is read inside the transform's seeded context, so that its draws
        and the transform's are one seeded stream (two flips drawn from one seed would always agree)."""
        from .transforms import seeded, single_threaded

        if self.transform is not None:
            return self._transformed_array(index, source, lambda: self._chosen(read_item(source), source.display))
        measurements = []
        with single_threaded():
            for epoch in range(self.epochs):
                with seeded(self.seed, epoch, index):
                    content = read_item(source)
                pixels = self._in_mode(content, source.display)
                measurements.append(self.measure_array(pixels, source.display, 1, content.channel_names))
        return epochs_measurement(measurements, source.display)

    def _in_mode(self, content: Decoded, shown: str) -> np.ndarray:
        """The pixels under ``--mode`` when the source says they follow it (a dataset's samples:
        see :func:`in_mode`); arrays stored in files are measured as stored."""
        return in_mode(content.pixels, self.mode, shown) if content.follows_mode else content.pixels

    def _chosen(self, content: Decoded, shown: str) -> tuple[np.ndarray, Any]:
        """The pixels a transform starts from, under ``--mode`` where they follow it and with
        ``--bands`` chosen (the object the source gave stands for them only when it holds every
        band; a PIL image is converted to grey as the pixels are)."""
        from PIL import Image

        pixels, original = self._in_mode(content, shown), content.original
        if content.follows_mode and self.mode == "L" and isinstance(original, Image.Image):
            original = original.convert("L")
        if self.pixels.bands is None:
            return pixels, original
        return _select_bands(pixels, self.pixels.bands, shown), None

    def measure_array(self, pixels: np.ndarray, shown: str, epochs: int | None = None,
                      channel_names: Sequence[str] | None = None) -> Measurement:
        """The measurement of one ``(H, W, C)`` image with this measurer's pixel options, the
        same for each of ``epochs`` samples (default: this measurer's).

        Integer pixels of up to 32 bits (signed or not) take the exact integer path, floats the
        float64 path; the full scale comes from the dtype unless ``--scale`` says otherwise. A
        sample with NaN or infinite values that nodata does not exclude is a bad image.
        """
        if pixels.ndim != 3:
            raise BadImageError(shown, f"pixels of shape {pixels.shape}; expected (H, W, C)")
        measured = self._array(pixels, shown, channel_names)
        count = self.epochs if epochs is None else epochs
        return Measurement(measured.format, measured.width, measured.height, False, [measured.moments[0]] * count,
                           [measured.rows[0]] * count, measured.histogram)

    def measure_bytes(self, index: int, source: ImageSource, data: bytes) -> Measurement:
        """An encoded image held in memory (a Ray Dataset's column of file bytes), decoded and
        measured exactly as the same bytes in a file named ``source`` would be."""
        return self._encoded(index, source, Encoded(lambda: data))

    def _transformed_array(self, index: int, source: ImageSource, make_sample) -> Measurement:
        """The ``--transform`` samples of an image held in memory: ``make_sample()`` gives its
        ``(H, W, C)`` pixels and the object they came from (a PIL image or tensor a dataset
        returned, or ``None``), made afresh for each run of the transform. What the transform is
        given is :func:`transform_input`'s choice; the per-image size is the image's, before the
        transform."""
        pipeline = self.transform.build()  # type: ignore[union-attr]
        shape: list[int] = []

        def make_input() -> tuple[Any, PixelFormat]:
            pixels, original = make_sample()
            shape[:] = pixels.shape
            return transform_input(pixels, original, pipeline), _input_format(pixels, self.pixels.channels)

        samples = self._transformed(index, source, make_input)
        return _of_transformed_samples(samples, shape, source.display)

    @property
    def _histograms_of_8bit(self) -> bool:
        """Whether unmasked 8-bit images (all the fast paths give) are counted into histograms."""
        return self.pixels.keeps_histogram("uint8", masked=False)

    @property
    def _selects_pixels(self) -> bool:
        """Whether bands or nodata need the decoded array (the fast paths only give totals)."""
        nodata = self.pixels.nodata
        return self.pixels.bands is not None or (nodata is not None and not nodata.is_none)

    def _decode(self, data: bytes, shown: str):
        try:
            return decode(data, self.mode, shown)
        except DecompressionBombError:
            raise  # refused from its header: never decoded again to word the message
        except BadImageError as error:
            if _is_tiff(data) and "--mode keep" not in error.reason:  # say why Pillow could not, and what reads it
                self._raster(data, shown)
                raise BadImageError(shown, "a raster that is not 8-bit grey or colour; use --mode keep") from None
            raise

    def _raster_file(self, source: ImageSource) -> Measurement | None:
        """A TIFF measured from its file: tifffile reads the segments it needs, as it does alone,
        rather than from a copy of the whole file in memory (which costs about a tenth of a
        compressed raster's time). ``None`` when the file is not a TIFF after all."""
        with open_file(source) as stream:  # refuses what is not a regular file
            if stream.read(4) not in _TIFF_MAGIC:
                return None
        return self._raster(source.path, source.display)

    def _raster(self, data: bytes | str, shown: str) -> Measurement:
        raster = read_raster(data, self.pixels.bands, shown)
        return self._array(raster.pixels, shown, raster.band_names, file_nodata=raster.nodata, selected=True)

    def _array(self, pixels: np.ndarray, shown: str, file_names, dropped_alpha: bool = False,
               file_nodata: int | float | None = None, selected: bool = False) -> Measurement:
        """Measure decoded pixels with bands, names, nodata and scale applied (``selected``: the
        reader already picked ``--bands``)."""
        if self.pixels.bands is not None and not selected:
            pixels = _select_bands(pixels if pixels.ndim == 3 else pixels[:, :, np.newaxis], self.pixels.bands, shown)
        measured = measure_pixels(
            pixels, shown, channels=self.pixels.channels or file_names, nodata=self.pixels.nodata,
            file_nodata=file_nodata, scale=self.pixels.scale, percentiles=self.pixels.keeps_histogram, epochs=self.epochs,
        )
        measured.dropped_alpha = dropped_alpha
        return measured

    def _untransformed(self, fast: Measured) -> Measurement:
        pixel_format = fast.format
        if self.pixels.channels is not None or self.pixels.scale is not None:
            names = _checked_names(self.pixels.channels, len(pixel_format.channels)) if self.pixels.channels else pixel_format.channels
            pixel_format = PixelFormat(names, self.pixels.scale or pixel_format.scale, pixel_format.dtype, pixel_format.masked)
        row = integer_sample_row(fast.moments, pixel_format.scale)
        histogram = None
        if fast.histogram is not None:
            from .stats.histogram import ChannelHistogram

            histogram = ChannelHistogram.from_counts(fast.histogram)
        return Measurement(pixel_format, fast.width, fast.height, fast.dropped_alpha, [fast.moments] * self.epochs,
                           [row] * self.epochs, histogram)

    def _transformed(self, index: int, source: ImageSource,
                     make_input: Callable[[], tuple[Any, PixelFormat]]) -> list[tuple[PixelFormat, Any, SampleRow]]:
        """Each epoch's sample: the transform on a fresh input from ``make_input`` (the image the
        transform takes, and its format, whose channel names a same-sized output keeps), which
        runs with the generators already seeded, so that a dataset's own draws are seeded too."""
        from .transforms import single_threaded

        spec: TransformSpec = self.transform  # type: ignore[assignment]
        pipeline = spec.build()
        samples = []
        with single_threaded():
            for epoch in range(self.epochs):
                output, input_format = self._apply(pipeline, index, epoch, make_input, source)
                if spec not in _CHECKED_HERE:
                    # Once per process: a second run with the same seeds must give the same output,
                    # or the transform draws from a generator chanstats does not seed.
                    if not same_output(output, self._apply(pipeline, index, epoch, make_input, source)[0]):
                        raise BadSpecError(_not_reproducible(spec, source.display))
                    _CHECKED_HERE.add(spec)
                samples.append(measure_output(output, input_format, source.display))
        return samples

    def _apply(self, pipeline, index: int, epoch: int, make_input, source: ImageSource) -> tuple[Any, PixelFormat]:
        """One sample: the transform on a fresh input, every generator seeded."""
        from .transforms import seeded

        with seeded(self.seed, epoch, index, self.transform.own_generators()):  # type: ignore[union-attr]
            image, input_format = make_input()  # a bad image is the image's fault, not the spec's
            try:
                with contained(f"transform on {source.display} (epoch {epoch})"):
                    return pipeline(image), input_format
            except ChanstatsError:
                raise
            except Exception as error:  # the spec, not the image, is at fault
                detail = " ".join(str(error).split()) or type(error).__name__
                raise BadSpecError(f"transform failed on {source.display} (epoch {epoch}): {detail}") from None


# Consecutive frames of one size are measured in one call up to about this many bytes.
_FRAME_BATCH_BYTES = 8 << 20

# Specs whose reproducibility this process has checked (on the first sample it measured).
_CHECKED_HERE: set[TransformSpec] = set()


def _not_reproducible(spec: TransformSpec, shown: str) -> str:
    return (
        f"{spec.describe()} is not reproducible: run twice on {shown} with the same seeds, it gave different "
        "outputs, so it draws from a random generator chanstats does not seed (such as its own random.Random() "
        "or np.random.default_rng()); draw from torch's, numpy's or Python's global generators instead, "
        "or pass the albumentations Compose itself, whose generator chanstats seeds per sample"
    )


# Decoders faster than Pillow for the common JPEG and PNG files, each declining (None) any file
# where its answer could differ from Pillow's.
_FAST_PATHS = (measure_jpeg, measure_png)


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _is_tiff(data: bytes) -> bool:
    """TIFF or BigTIFF, either byte order: read with tifffile (any bands, dtype, layout)."""
    return data[:4] in _TIFF_MAGIC


def _select_bands(pixels: np.ndarray, bands: tuple[int, ...], shown: str) -> np.ndarray:
    if max(bands) > pixels.shape[2]:
        raise BadSpecError(f"--bands {','.join(map(str, bands))}: {shown} has {pixels.shape[2]} bands")
    return pixels[:, :, [b - 1 for b in bands]]


def measure_output(output: Any, input_format: PixelFormat, shown: str) -> tuple[PixelFormat, Any, SampleRow]:
    """Moments of one transform output: PIL images and uint8/uint16 arrays stay exact (integers),
    float tensors/arrays get float64 two-pass moments.

    Tensors are channels-first, ``(C, H, W)`` or with leading dimensions (e.g. stacked crops,
    all pooled); numpy arrays channels-last ``(H, W, C)``, as PIL gives them; 2-D means one channel.
    """
    from PIL import Image

    if isinstance(output, Image.Image):
        return _measure_pil(output, input_format, shown)
    if isinstance(output, np.ndarray):
        pixels = output if output.ndim == 3 else output.reshape(*output.shape[:2], 1) if output.ndim == 2 else None
        if pixels is None:
            raise BadSpecError(f"{shown}: the transform returned a {output.ndim}-D array; expected (H, W) or (H, W, C)")
        return _measure_array(pixels, input_format, shown)
    import torch

    if isinstance(output, torch.Tensor):
        tensor = output.detach().cpu()
        if tensor.ndim < 2:
            raise BadSpecError(f"{shown}: the transform returned a {tensor.ndim}-D tensor; expected (C, H, W)")
        if tensor.ndim == 2:
            tensor = tensor.unsqueeze(0)
        pixels = tensor.movedim(-3, -1).reshape(-1, 1, tensor.shape[-3]).contiguous().numpy()
        return _measure_array(pixels, input_format, shown)
    if isinstance(output, dict) and "image" in output:  # an albumentations call's result
        raise BadSpecError(f"{shown}: the transform returned a dict; return its [\"image\"] (a PIL image, tensor or array)")
    raise BadSpecError(
        f"{shown}: the transform returned a {type(output).__name__}; it must end in one image "
        "(PIL image, tensor or array), e.g. end the spec with ToImage"
    )


def _channel_names(count: int, input_format: PixelFormat) -> tuple[str, ...]:
    if count == len(input_format.channels):
        return input_format.channels
    return NAMES_BY_COUNT.get(count, tuple(f"c{i}" for i in range(count)))


def _measure_pil(image, input_format: PixelFormat, shown: str) -> tuple[PixelFormat, Any, SampleRow]:
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        moments = histogram_moments(image)
        fmt = PixelFormat(_channel_names(len(image.mode), input_format), 255)
        return fmt, moments, integer_sample_row(moments, 255)
    if image.mode.startswith("I;16"):
        return _measure_array(np.asarray(image, dtype=np.uint16)[:, :, None], input_format, shown)
    if image.mode in ("F", "I"):
        return _measure_array(np.asarray(image)[:, :, None], input_format, shown)
    raise BadSpecError(f"{shown}: the transform returned a PIL image in mode {image.mode}; convert it to RGB or L")


def _measure_array(pixels: np.ndarray, input_format: PixelFormat, shown: str) -> tuple[PixelFormat, Any, SampleRow]:
    names = _channel_names(pixels.shape[-1], input_format)
    if pixels.dtype in (np.uint8, np.uint16):
        scale = 255 if pixels.dtype == np.uint8 else 65535
        moments = integer_moments_of(pixels)
        return PixelFormat(names, scale), moments, integer_sample_row(moments, scale)
    if pixels.dtype.kind in "fiu":
        moments = float_moments_of(pixels)
        if not np.all(np.isfinite(moments.mean)) or not np.all(np.isfinite(moments.m2)):
            raise BadSpecError(f"{shown}: the transform output holds NaN or infinite values")
        return PixelFormat(names, FLOAT_SCALE), moments, (moments.pixels, moments.mean.tolist(), moments.m2.tolist())
    raise BadSpecError(f"{shown}: the transform returned {pixels.dtype} pixels; expected uint8, uint16 or float")


def measure_pixels_of(pixels: np.ndarray, shown: str, epochs: int = 1, measurer: Measurer | None = None) -> Measurement:
    """The measurement of one ``(H, W, C)`` image, the same for each of ``epochs`` samples, with
    ``measurer``'s pixel options (default: none); see :meth:`Measurer.measure_array`."""
    return (measurer if measurer is not None else Measurer()).measure_array(pixels, shown, epochs)


def _samples_of_epochs(measurements: list[Measurement], shown: str) -> Measurement:
    """One measurement holding every sample of each epoch's measurement, in epoch order (a video
    gives one clip, or each of its frames, per epoch); the histograms merged."""
    first = measurements[0]
    if any(m.format != first.format for m in measurements):
        kinds = ", ".join(sorted({m.format.label for m in measurements}))
        raise BadImageError(shown, f"the sample changed kind across epochs ({kinds})")
    histogram = first.histogram
    for other in measurements[1:]:
        if histogram is not None and other.histogram is not None:
            histogram = histogram.merge(other.histogram)
    return Measurement(first.format, first.width, first.height, False,
                       [moments for m in measurements for moments in m.moments],
                       [row for m in measurements for row in m.rows], histogram)


def epochs_measurement(measurements: list[Measurement], shown: str) -> Measurement:
    """One measurement holding each epoch's sample."""
    first = measurements[0]
    if any(m.format != first.format for m in measurements):
        kinds = ", ".join(sorted({m.format.label for m in measurements}))
        raise BadImageError(shown, f"the sample changed kind across epochs ({kinds})")
    histogram = first.histogram
    for other in measurements[1:]:  # every epoch's pixels are samples of their own
        if histogram is not None and other.histogram is not None:
            histogram = histogram.merge(other.histogram)
    return Measurement(first.format, first.width, first.height, False,
                       [m.moments[0] for m in measurements], [m.rows[0] for m in measurements], histogram)


def transform_input(pixels: np.ndarray, original: Any, pipeline: Any) -> Any:
    """What ``--transform`` is given for an image held in memory, a fresh copy each time:

    - an albumentations pipeline: the ``(H, W, C)`` NumPy array (``(H, W)`` for one channel), as
      albumentations expects;
    - a PIL image the dataset returned: that image (palettes and CMYK converted to RGB);
    - a tensor the dataset returned: a ``(C, H, W)`` tensor of its values;
    - a NumPy array (a dataset's, or an image in a NumPy file): a PIL image when it is uint8 with 1,
      3 or 4 channels (``L``, ``RGB``, ``RGBA``, as a decoded file is), else a ``(C, H, W)`` tensor.
    """
    from PIL import Image

    from .transforms import AlbumentationsAdapter

    if isinstance(pipeline, AlbumentationsAdapter):
        return np.array(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)
    if isinstance(original, Image.Image):
        return original.copy()
    torch = sys.modules.get("torch")
    is_tensor = torch is not None and isinstance(original, torch.Tensor)
    if not is_tensor and pixels.dtype == np.uint8 and pixels.shape[2] in _PIL_MODES:
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels),
                               _PIL_MODES[pixels.shape[2]])
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(pixels, -1, 0)))


_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def _input_format(pixels: np.ndarray, chosen: Sequence[str] | None) -> PixelFormat:
    """The input's channels, which an output with as many channels keeps (``--channels`` names them)."""
    count = pixels.shape[2]
    names = tuple(chosen) if chosen is not None and len(chosen) == count else channel_names(count)
    return PixelFormat(names, default_scale(pixels.dtype), pixels.dtype.name)


def in_mode(pixels: np.ndarray, mode: str, shown: str) -> np.ndarray:
    """A dataset sample's ``(H, W, C)`` pixels under ``--mode``: ``L`` converts 8-bit grey, grey
    with alpha, RGB and RGBA samples to grey exactly as a file is converted (Pillow's
    ``convert("L")``: ``L = R·299/1000 + G·587/1000 + B·114/1000`` in Pillow's fixed-point
    rounding, alpha dropped), and refuses any other sample in one line; ``RGB`` and ``keep`` measure
    samples as they are (a dataset gives its images in the form it was built to give)."""
    if mode != "L" or pixels.shape[2] == 1 and pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype != np.uint8 or pixels.shape[2] not in _GREY_FROM:
        raise ChanstatsError(f"{shown}: --mode L converts 8-bit grey or colour samples (1 to 4 channels, as Pillow's "
                             f"convert('L')); this one has {pixels.shape[2]} channels of {pixels.dtype}: convert it in the "
                             "dataset, or leave --mode at its default")
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(pixels), _GREY_FROM[pixels.shape[2]])
    return np.array(image.convert("L"))[:, :, np.newaxis]  # writable: a transform may get it as a tensor


_GREY_FROM = {2: "LA", 3: "RGB", 4: "RGBA"}


def _of_transformed_samples(samples: list, shape: Sequence[int], shown: str) -> Measurement:
    """One item's measurement from its transformed samples (``(format, moments, row)`` per sample,
    ``shape`` the input's ``(H, W, ...)``): every sample must be of one kind of output."""
    formats = {fmt for fmt, _, _ in samples}
    if len(formats) > 1:
        kinds = ", ".join(sorted(fmt.label for fmt in formats))
        raise BadSpecError(f"{shown}: the transform gave different kinds of output across epochs ({kinds})")
    return Measurement(samples[0][0], shape[1], shape[0], False,
                       [moments for _, moments, _ in samples], [row for _, _, row in samples])

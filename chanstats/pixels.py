"""Measuring pixels that arrive as arrays rather than encoded files: images in NumPy files, and
samples of a Python dataset (tensors, arrays, PIL images).

:func:`measure_pixels_of` is the one place where an in-memory image becomes a
:class:`~chanstats.measure.Measurement`; everything that measures arrays goes through it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .decoding.formats import PixelFormat, channel_names, default_scale
from .errors import BadImageError, BadSpecError, ChanstatsError, one_line
from .measure import Measurement, Measurer
from .sources.arrays import ArrayItem, read_pixels
from .sources.base import ImageSource
from .user_code import contained


def measure_pixels_of(pixels: np.ndarray, shown: str, epochs: int = 1, measurer: Measurer | None = None) -> Measurement:
    """The measurement of one ``(H, W, C)`` image, the same for each of ``epochs`` samples.

    Integer pixels of up to 32 bits (signed or not) take the exact integer path, floats the
    float64 path; the full scale comes from the dtype unless ``--scale`` says otherwise. The
    ``measurer``'s pixel options apply (``--bands``, ``--channels``, ``--nodata``, ``--scale``,
    ``--percentiles``). A sample with NaN or infinite values that nodata does not exclude is a bad
    image.
    """
    if pixels.ndim != 3:
        raise BadImageError(shown, f"pixels of shape {pixels.shape}; expected (H, W, C)")
    measurer = measurer if measurer is not None else Measurer()
    measured = measurer._array(pixels, shown, None)
    return Measurement(measured.format, measured.width, measured.height, False, [measured.moments[0]] * epochs,
                       [measured.rows[0]] * epochs, measured.histogram)


@dataclass(frozen=True)
class ArrayMeasurer(Measurer):
    """A :class:`Measurer` that also measures images held in NumPy files (as they are stored:
    ``mode`` does not convert them)."""

    def __call__(self, index: int, source: ImageSource) -> Measurement:
        if not isinstance(source, ArrayItem):
            return Measurer.__call__(self, index, source)
        if self.transform is not None:
            pixels = self._chosen_bands(read_pixels(source), source.display)
            return transformed_measurement(self, index, source, lambda: (pixels, None))
        return measure_pixels_of(read_pixels(source), source.display, self.epochs, self)

    def _chosen_bands(self, pixels: np.ndarray, shown: str) -> np.ndarray:
        from .measure import _select_bands

        return pixels if self.pixels.bands is None else _select_bands(pixels, self.pixels.bands, shown)


def transformed_measurement(measurer: Measurer, index: int, source: ImageSource, make_sample) -> Measurement:
    """The ``--transform`` samples of an in-memory image: ``make_sample()`` gives its ``(H, W, C)``
    pixels and the object they came from (a PIL image or tensor a dataset returned, or ``None``),
    made afresh for each run of the transform. What the transform is given is
    :func:`transform_input`'s choice; the per-image size is the image's, before the transform."""
    pipeline = measurer.transform.build()  # type: ignore[union-attr]
    shape: list[int] = []

    def make_input() -> tuple[Any, PixelFormat]:
        pixels, original = make_sample()
        shape[:] = pixels.shape
        return transform_input(pixels, original, pipeline), _input_format(pixels, measurer)

    samples = measurer._transformed(index, source, make_input)
    formats = {fmt for fmt, _, _ in samples}
    if len(formats) > 1:
        kinds = ", ".join(sorted(fmt.label for fmt in formats))
        raise BadSpecError(f"{source.display}: the transform gave different kinds of output across epochs ({kinds})")
    return Measurement(samples[0][0], shape[1], shape[0], False,
                       [moments for _, moments, _ in samples], [row for _, _, row in samples])


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


def _input_format(pixels: np.ndarray, measurer: Measurer) -> PixelFormat:
    """The input's channels, which an output with as many channels keeps (``--channels`` names them)."""
    count = pixels.shape[2]
    chosen = measurer.pixels.channels
    names = tuple(chosen) if chosen is not None and len(chosen) == count else channel_names(count)
    return PixelFormat(names, default_scale(pixels.dtype), pixels.dtype.name)


def needs_array_measurer(sources: Any) -> bool:
    """Whether a listing holds images from NumPy files."""
    return any(isinstance(source, ArrayItem) for source in sources)


# --- samples of a Python dataset ------------------------------------------------------------

def sample_images(sample: Any, key: Any, layout: str, shown: str, batched: bool = False) -> list[np.ndarray]:
    """The ``(H, W, C)`` images one sample holds: one, or one per row of a batch (``batched``,
    as a DataLoader yields them).

    The image is the sample itself (tensor, NumPy array, PIL image), or ``sample[key]``: by
    default ``"image"`` in a dict and element 0 of a tuple or list. Tensors are channels-first
    ``(C, H, W)``; NumPy arrays channels-last ``(H, W, C)``, unless ``layout`` says otherwise.
    """
    image = _pick(sample, key, shown)
    array, channels_first = _as_array(image, shown)
    if layout != "auto":
        channels_first = layout == "CHW"
    if batched:
        if array.ndim not in (3, 4):
            raise BadImageError(shown, f"a batch of shape {tuple(array.shape)}; expected (N, C, H, W) or (N, H, W)")
        rows = array if array.ndim == 4 else array[:, None] if channels_first else array[..., None]
        return [_hwc(row, channels_first, layout, f"{shown}, row {i}") for i, row in enumerate(rows)]
    return [_hwc(array, channels_first, layout, shown)]


def _pick(sample: Any, key: Any, shown: str) -> Any:
    if isinstance(sample, dict):
        chosen = "image" if key is None else key
        if chosen not in sample:
            raise BadImageError(shown, f"the sample is a dict without {chosen!r} (keys: {', '.join(map(str, sample))}); "
                                       "choose the image with key=")
        return sample[chosen]
    if isinstance(sample, (tuple, list)):
        chosen = 0 if key is None else key
        if not isinstance(chosen, int) or not -len(sample) <= chosen < len(sample):
            raise BadImageError(shown, f"the sample is a {type(sample).__name__} of {len(sample)}; key={chosen!r} picks nothing")
        return sample[chosen]
    return sample


def _as_array(image: Any, shown: str) -> tuple[np.ndarray, bool]:
    """The image as a NumPy array and whether its channels come first (tensors) or last."""
    if isinstance(image, np.ndarray):
        return image, False
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(image, torch.Tensor):
        return image.detach().cpu().numpy(), True
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode not in _PIL_AS_IS:
            image = image.convert("RGB")  # palettes, CMYK, 1-bit: as torchvision's loader gives them
        array = np.asarray(image)
        return (array.astype(np.uint16) if image.mode.startswith("I;16") else array), False
    raise BadImageError(shown, f"the sample holds a {type(image).__name__}; expected a tensor, a NumPy array or a PIL image "
                               "(or a tuple/dict holding one: choose it with key=)")


_PIL_AS_IS = ("L", "LA", "RGB", "RGBA", "I;16", "I;16B", "I;16L", "I", "F")


def _hwc(array: np.ndarray, channels_first: bool, layout: str, shown: str) -> np.ndarray:
    shape = tuple(array.shape)
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3:
        expected = "(C, H, W)" if channels_first else "(H, W, C)"
        raise BadImageError(shown, f"an image of shape {shape}; expected {expected} or (H, W)")
    if layout == "auto":
        looks_last = shape[-1] <= 4 < shape[0]
        looks_first = shape[0] <= 4 < shape[-1]
        if (channels_first and looks_last) or (not channels_first and looks_first):
            kind = "a tensor" if channels_first else "a NumPy array"
            first, last = f"(C, H, W) with {shape[0]} channels", f"(H, W, C) with {shape[-1]} channels"
            raise ChanstatsError(
                f"{shown}: {kind} of shape {shape} reads as {first if channels_first else last}, "
                f"or as {last if channels_first else first}; say which with layout='CHW' or layout='HWC' (--layout)"
            )
    return np.moveaxis(array, 0, -1) if channels_first else array


@dataclass(frozen=True)
class DatasetMeasurer(Measurer):
    """Measures sample ``index`` of the registered map-style dataset ``token``: each epoch
    calls ``dataset[index]`` with every random generator seeded from ``(seed, epoch, index)``,
    so random transforms inside the dataset draw the same in any worker."""

    token: int = 0
    key: Any = None
    layout: str = "auto"

    def __call__(self, index: int, source: ImageSource) -> Measurement:
        from .sources.datasets import registered
        from .transforms import seeded, single_threaded

        dataset = registered(self.token)
        if self.transform is not None:
            return self._transformed_sample(index, source, dataset)
        measurements = []
        with single_threaded():
            for epoch in range(self.epochs):
                with seeded(self.seed, epoch, index):
                    try:
                        with contained(source.display):
                            sample = dataset[source.offset]
                    except ChanstatsError:
                        raise
                    except Exception as error:  # the dataset's own failure: this sample is bad
                        raise BadImageError(source.display, f"the dataset raised {one_line(error)}") from None
                (pixels,) = sample_images(sample, self.key, self.layout, source.display)
                pixels = in_mode(pixels, self.mode, source.display)
                measurements.append(measure_pixels_of(pixels, source.display, 1, self))
        return _epochs(measurements, source.display)

    def _transformed_sample(self, index: int, source: ImageSource, dataset: Any) -> Measurement:
        """``--transform`` on the sample's image, after the dataset's own transforms: the dataset is
        called inside the transform's seeded context, so its draws and the transform's are one
        seeded stream (two flips drawn from one seed would always agree)."""

        from PIL import Image

        def make_sample() -> tuple[np.ndarray, Any]:
            try:
                with contained(source.display):
                    sample = dataset[source.offset]
            except ChanstatsError:
                raise
            except Exception as error:  # the dataset's own failure: this sample is bad
                raise BadImageError(source.display, f"the dataset raised {one_line(error)}") from None
            (pixels,) = sample_images(sample, self.key, self.layout, source.display)
            given = _as_given(_pick(sample, self.key, source.display))
            if self.mode == "L":
                pixels = in_mode(pixels, self.mode, source.display)
                given = given.convert("L") if isinstance(given, Image.Image) else given
            return pixels, given

        return transformed_measurement(self, index, source, make_sample)


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


def _as_given(image: Any) -> Any:
    """The sample's image as the transform should see it: a PIL image converted as measuring
    converts it, a tensor as is, anything else ``None`` (its pixels are used)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode in _PIL_AS_IS else image.convert("RGB")
    return image


def measure_iterable(source: Any, key: Any, layout: str, epochs: int, batched: bool, name: str,
                     measurer: Measurer | None = None, batch_sizes: list[int] | None = None) -> list[Measurement]:
    """Every sample of an iterable (a DataLoader's batches split into samples), in the order it
    yields them, each epoch a new pass; sample ``k``'s epochs become one measurement.
    ``batch_sizes`` collects how many samples each item of the first epoch held."""
    from .transforms import single_threaded

    passes: list[list[Measurement]] = []
    with single_threaded():
        for epoch in range(epochs):
            measured: list[Measurement] = []
            for number, sample in _samples(source, name, "batch" if batched else "sample", epoch):
                shown = f"{name}::{'batch' if batched else 'sample'} {number}"
                images = sample_images(sample, key, layout, shown, batched)
                if batch_sizes is not None and epoch == 0:
                    batch_sizes.append(len(images))
                for pixels in images:
                    pixels = in_mode(pixels, "RGB" if measurer is None else measurer.mode, shown)
                    measured.append(measure_pixels_of(pixels, shown, 1, measurer))
            if passes and len(measured) != len(passes[0]):
                raise ChanstatsError(f"{name}: epoch {epoch} gave {len(measured)} samples, epoch 0 gave {len(passes[0])}")
            passes.append(measured)
    return [_epochs([run[k] for run in passes], f"{name}::sample {k}") for k in range(len(passes[0]))]


def _samples(source: Any, name: str, unit: str, epoch: int) -> Iterator[tuple[int, Any]]:
    """``enumerate(source)``, where an exception raised by the iterable itself (its ``iter`` or
    ``next``) is one line naming the dataset and the position. It ends the run whatever
    ``--on-error`` says: an iterator that raised cannot be resumed past the failure, so skipping it
    would silently drop every sample after it."""
    number = 0
    where = f"{name}: iterating (epoch {epoch})"
    try:
        with contained(where):
            iterator = iter(source)
    except ChanstatsError:
        raise
    except Exception as error:
        raise ChanstatsError(f"{where} failed to start: {one_line(error)}") from None
    while True:
        try:
            with contained(f"{name}::{unit} {number} (epoch {epoch})"):
                sample = next(iterator)
        except StopIteration:
            return
        except ChanstatsError:
            raise
        except Exception as error:
            raise ChanstatsError(
                f"{name}::{unit} {number}: the iterable raised {one_line(error)} (epoch {epoch}); an iterable cannot "
                "be resumed past an error, so --on-error skip cannot skip it: fix the dataset, or give a map-style one"
            ) from None
        yield number, sample
        number += 1


def _epochs(measurements: list[Measurement], shown: str) -> Measurement:
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


@dataclass(frozen=True)
class MeasuredMeasurer(Measurer):
    """Hands out measurements taken while iterating (in this process: an iterable cannot be
    split among workers)."""

    measured: tuple = ()

    def __call__(self, index: int, source: ImageSource) -> Measurement:
        return self.measured[source.offset]

"""One image in, its sufficient statistics out: what a worker computes and sends back.

A :class:`Measurement` is small (a few numbers per channel) so that no pixel array ever crosses a
process boundary. It holds one entry per *sample*: an image passed through a random transform for
K epochs gives K samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .decoding.formats import FLOAT_SCALE, NAMES_BY_COUNT, PixelFormat
from .decoding.jpeg import measure_jpeg
from .decoding.pillow import decode, histogram_moments
from .decoding.png import measure_png
from .errors import BadSpecError
from .stats.moments import (
    FloatMoments,
    IntegerMoments,
    float_moments_of,
    integer_moments_of,
    integer_sample_row,
)
from .sources.base import ImageSource
from .sources.listing import read_source
from .transforms import TransformSpec, same_output

SampleRow = tuple[int, list[float], list[float]]  # (pixels per channel, mean, M2) in model units


@dataclass
class Measurement:
    """Statistics of one image's samples.

    ``moments[k]`` is sample ``k``'s exact accumulator (integer path) or float64 moments (float
    path); ``rows[k]`` its (count, mean, M2) in model units for the per-sample table.
    """

    format: PixelFormat
    width: int
    height: int
    dropped_alpha: bool
    moments: list[IntegerMoments | FloatMoments]
    rows: list[SampleRow]


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

    def __call__(self, index: int, source: ImageSource) -> Measurement:
        data = read_source(source)
        if self.transform is None:
            # Without a transform every epoch sees the same pixels: measure them once.
            for fast_path in _FAST_PATHS:
                fast = fast_path(data, self.mode, source.display)
                if fast is not None:
                    return _untransformed(*fast, self.epochs)
            decoded = decode(data, self.mode, source.display)
            width, height = decoded.size
            return _untransformed(decoded.format, width, height, decoded.dropped_alpha, decoded.moments(), self.epochs)
        decoded = decode(data, self.mode, source.display)
        width, height = decoded.size
        samples = self._transformed(index, source, decoded)
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

    def _transformed(self, index: int, source: ImageSource, decoded) -> list[tuple[PixelFormat, Any, SampleRow]]:
        from .transforms import single_threaded

        spec: TransformSpec = self.transform  # type: ignore[assignment]
        pipeline = spec.build()
        samples = []
        with single_threaded():
            for epoch in range(self.epochs):
                output = self._apply(pipeline, index, epoch, decoded, source)
                if spec not in _CHECKED_HERE:
                    # Once per process: a second run with the same seeds must give the same output,
                    # or the transform draws from a generator chanstats does not seed.
                    if not same_output(output, self._apply(pipeline, index, epoch, decoded, source)):
                        raise BadSpecError(_not_reproducible(spec, source.display))
                    _CHECKED_HERE.add(spec)
                samples.append(measure_output(output, decoded.format, source.display))
        return samples

    def _apply(self, pipeline, index: int, epoch: int, decoded, source: ImageSource) -> Any:
        """One sample: the transform on a copy of the decoded image, every generator seeded."""
        from .transforms import seeded

        with seeded(self.seed, epoch, index, self.transform.own_generators()):  # type: ignore[union-attr]
            try:
                return pipeline(decoded.image.copy())
            except Exception as error:  # the spec, not the image, is at fault
                detail = " ".join(str(error).split()) or type(error).__name__
                raise BadSpecError(f"transform failed on {source.display} (epoch {epoch}): {detail}") from None


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


def _untransformed(
    pixel_format: PixelFormat, width: int, height: int, dropped_alpha: bool, moments: IntegerMoments, epochs: int
) -> Measurement:
    row = integer_sample_row(moments, pixel_format.scale)
    return Measurement(pixel_format, width, height, dropped_alpha, [moments] * epochs, [row] * epochs)


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

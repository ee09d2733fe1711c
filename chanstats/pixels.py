"""Iterables measured as they are iterated, in this process: a DataLoader, an iterable-style
dataset or any iterable of samples cannot be split among workers, so :func:`measure_iterable`
measures each sample as it comes (through the one array path,
:meth:`~chanstats.measure.Measurer.measure_array`) and :class:`MeasuredMeasurer` hands those
measurements to the run in listing order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from .errors import ChanstatsError, one_line
from .measure import Measurement, Measurer, epochs_measurement, in_mode, measure_pixels_of
from .sources.base import ImageSource
from .sources.datasets import sample_images
from .user_code import contained


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
    return [epochs_measurement([run[k] for run in passes], f"{name}::sample {k}") for k in range(len(passes[0]))]


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


@dataclass(frozen=True)
class MeasuredMeasurer(Measurer):
    """Hands out measurements taken while iterating (in this process: an iterable cannot be
    split among workers)."""

    measured: tuple = ()

    def __call__(self, index: int, source: ImageSource) -> Measurement:
        return self.measured[source.index]

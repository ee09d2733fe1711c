"""A ``ray.data.Dataset`` as a source: measured by Ray Data's own streaming tasks.

``chanstats.compute(dataset, key="image")`` measures any Ray Dataset (``read_images``,
``read_parquet``, ``read_webdataset``, ``from_items``...) without ever gathering its pixels: one
``map_batches`` task per batch measures each image through the one array path
(:meth:`~chanstats.measure.Measurer.measure_array`, as a Python dataset's samples are) and returns
a small lossless state, the :class:`~chanstats.scale.chunk.ChunkResult` a worker process returns
for a chunk: exact integer totals and histograms merged per batch, and one packed moment row per
image. Nothing else crosses to the driver. The driver reads those states as they stream in, in the
dataset's order (Ray Data's ``preserve_order``), numbers each batch's images by how many came
before it, and adds them to the run's state, whose per-image rows go to column files as in any run:
the driver's memory stays flat in the number of images. Never ``materialize()`` nor ``aggregate()``.

So the numbers are those of the same pixels from anywhere else, bit for bit: the same images in a
folder give the same statistics (and, in the same order, the same BatchNorm simulation) where the
decoding is the same: ``read_images(..., mode="RGB")`` decodes with Pillow and converts to RGB,
as torchvision's loader does.
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

import numpy as np

from .._version import __version__
from ..errors import BadImageError, ChanstatsError
from ..measure import Measurement, Measurer, in_mode
from ..sources.base import ImageSource
from ..sources.datasets import DatasetItem, sample_images
from .chunk import ChunkResult, pack_chunk
from .state import PartialState
from .table import ImageTable

DATASET_KIND = "Ray Dataset"
DEFAULT_NAME = "ray.data.Dataset"
STATE_COLUMN = "chanstats_state"
PATH_COLUMN = "path"  # read_images(..., include_paths=True): bad images are named by their file


def is_ray_dataset(source: Any) -> bool:
    """Whether ``source`` is a ``ray.data.Dataset`` (without importing Ray: a program that made one
    has imported it)."""
    data = sys.modules.get("ray.data")
    dataset = getattr(data, "Dataset", None)
    return dataset is not None and isinstance(source, dataset)


class Samples(Sequence[ImageSource]):
    """The dataset's samples as a listing, ``name::sample K``, made when indexed (the driver keeps
    no object per image); it grows as batches arrive."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self.count))]
        if not -self.count <= index < self.count:
            raise IndexError(index)
        index %= self.count
        return DatasetItem(self.name, f"sample {index}", 0, None, index)


@dataclass(frozen=True)
class BatchStates:
    """In a Ray Data task: a batch of samples → one pickled :class:`ChunkResult` numbered from 0 (the
    driver renumbers it). An image is pixels (an array: ``read_images``, ``from_items``) or the bytes
    of an image file (``read_binary_files``, a Parquet column of encoded images), decoded exactly
    as chanstats decodes that file. Bad images are named by their ``path`` column when the dataset
    has one."""

    measurer: Measurer
    key: Any
    layout: str
    name: str

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        column = "image" if self.key is None else self.key
        if column not in batch:
            raise ChanstatsError(f"{self.name}: its rows have no column {column!r} (columns: {', '.join(map(str, batch))}); "
                                 "choose the image with key=")
        images = batch[column]
        paths = batch.get(PATH_COLUMN)
        items: list[ImageSource] = []
        outcomes: list[Measurement | BadImageError] = []
        for k in range(len(images)):
            # A placeholder name where the dataset has no paths: the driver knows the sample's number.
            shown = str(paths[k]) if paths is not None else f"{self.name}::sample ?"
            items.append(DatasetItem(self.name, shown if paths is not None else "sample ?", 0, None, k))
            try:
                value = images[k]
                if isinstance(value, (bytes, bytearray, memoryview)):  # file bytes: decoded as a file is
                    outcomes.append(self.measurer.measure_bytes(k, items[-1], bytes(value)))
                    continue
                (pixels,) = sample_images({column: value}, column, self.layout, shown)
                pixels = in_mode(pixels, self.measurer.mode, shown)
                outcomes.append(self.measurer.measure_array(pixels, shown, 1))
            except BadImageError as error:
                outcomes.append(error)
        chunk = pack_chunk(0, items, outcomes)
        return {STATE_COLUMN: np.array([pickle.dumps(chunk, protocol=pickle.HIGHEST_PROTOCOL)], dtype=object)}


def measure_dataset(dataset: Any, record: dict[str, Any], measurer: Measurer, key: Any, layout: str, name: str,
                    directory: str | None, batch_size: int | None = None) -> PartialState:
    """Measure every sample of a Ray Dataset into a :class:`PartialState` of the whole dataset
    (``record``: the run's options record), its per-image columns in ``directory``."""
    from ray.data import DataContext

    samples = Samples(name)
    state = PartialState(__version__, record, "", 0, (1, 1), 0, 0, 0)
    state.images = ImageTable(samples, None if directory is None else f"{directory}/columns")
    extra = {} if batch_size is None else {"batch_size": batch_size}
    states = dataset.map_batches(BatchStates(measurer, key, layout, name), batch_format="numpy", **extra)
    context = getattr(states, "context", None) or DataContext.get_current()
    kept = context.execution_options.preserve_order
    context.execution_options.preserve_order = True  # the dataset's order is the run's listing order
    try:
        for chunk in _chunks(states):
            base = samples.count
            samples.count += len(chunk)
            state.listing_size = state.stop = samples.count
            state.add_chunk(_numbered(chunk, base, samples))
    finally:
        context.execution_options.preserve_order = kept
    if not samples.count:
        from ..errors import NoImagesError

        raise NoImagesError(f"{name}: the dataset is empty")
    state.fingerprint = _fingerprint(samples)
    return state


def _chunks(states: Any) -> Iterator[ChunkResult]:
    """The batches' states as they stream in; a failure inside a task as chanstats' own error."""
    iterator = iter(states.iter_batches(batch_size=None, batch_format="numpy"))
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except Exception as error:
            raise _own_error(error) from None
        for blob in batch[STATE_COLUMN]:
            yield pickle.loads(blob)


def _own_error(error: BaseException) -> BaseException:
    """The :class:`ChanstatsError` a Ray task raised (Ray wraps it, often twice), else Ray's error in one line."""
    from ..errors import one_line

    seen: BaseException | None = error
    for _ in range(16):
        if seen is None:
            break
        cause = getattr(seen, "cause", None)  # a RayTaskError: the task's own exception
        if isinstance(cause, BaseException) and cause is not seen:
            seen = cause
            continue
        if isinstance(seen, ChanstatsError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return ChanstatsError(f"the Ray Dataset failed: {one_line(error)}")


def _numbered(chunk: ChunkResult, base: int, samples: Samples) -> ChunkResult:
    """``chunk`` (numbered from 0) as images ``base, base + 1, ...`` of the dataset; bad samples
    without a path are named by their number."""
    bad = [replace(record, index=record.index + base,
                   **({} if "::sample ?" not in record.display else
                      {"display": samples[record.index + base].display, "path": samples[record.index + base].display}))
           for record in chunk.bad]
    formats = [replace(totals, first_index=totals.first_index + base,
                       example=samples[totals.first_index + base].display if "sample ?" in totals.example else totals.example)
               for totals in chunk.formats]
    return replace(chunk, start=chunk.start + base, stop=chunk.stop + base, index=chunk.index + base, formats=formats,
                   bad=bad)


def _fingerprint(samples: Samples) -> str:
    from ..sources.listing import fingerprint

    return fingerprint(samples)

"""Python datasets as sources: a map-style dataset (``len`` and ``[index]``, such as a torch
``Dataset``), an iterable-style one, a ``DataLoader``, or any iterable of samples.

A map-style dataset is listed as one :class:`DatasetItem` per index, named ``train_set::index 7``
(the ``--dataset`` spec, or the dataset's class name), or by the dataset's own id for the sample
where it has them (``train_set::/data/train/cat/001.jpg`` for an ``ImageFolder``, see
:func:`sample_ids`), and measured by index in the worker pool.
Workers are forked, so they inherit the dataset from this process's registry (:func:`register`)
instead of receiving a pickled copy. Iterables (loaders included) are iterated as given, in this
process.

``--dataset`` names the object as ``package.module:attr`` or ``path/to/file.py:attr``; a callable
is called without arguments to make the dataset.
"""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass
from collections import abc
from typing import Any, Iterable

import numpy as np

from ..errors import BadImageError, ChanstatsError, one_line
from ..user_code import contained, load_reference
from .base import ContainedItem, Decoded, SourceKind

MAP_STYLE, ITERABLE, LOADER = "map-style dataset", "iterable", "DataLoader"


@dataclass(frozen=True, slots=True)
class DatasetItem(ContainedItem):
    """One sample of a map-style dataset: ``root`` names the dataset, ``index`` is the sample's
    index (for an iterable, its place in the iteration)."""

    index: int = 0
    token: int = 0  # the dataset in this process's registry (0: an iterable's sample, measured as iterated)


KEPT_DATASETS = 4  # the most recent runs' datasets stay registered
# Datasets being measured, by token, with how their samples hold the image (key, layout): forked
# workers inherit this dictionary.
_REGISTRY: dict[int, tuple[Any, Any, str]] = {}
_tokens = itertools.count(1)


def register(dataset: Any, key: Any = None, layout: str = "auto") -> int:
    """Keep ``dataset`` where this process and the workers it forks find it, with the ``key`` and
    ``layout`` that pick the image in its samples (see :func:`sample_images`); returns its token."""
    token = next(_tokens)
    _REGISTRY[token] = (dataset, key, layout)
    for old in [t for t in _REGISTRY if t <= token - KEPT_DATASETS]:
        del _REGISTRY[old]  # runs long finished: do not keep their datasets alive
    return token


def registered(token: int) -> tuple[Any, Any, str]:
    """The dataset registered as ``token``, its key and layout; a clear error in a worker that
    was not forked."""
    try:
        return _REGISTRY[token]
    except KeyError:
        raise ChanstatsError(
            "a worker process cannot see the dataset: workers here do not start by fork; pass workers=0 "
            "(or measure files)"
        ) from None


def list_dataset(dataset: Any, name: str, token: int) -> list[DatasetItem]:
    """One :class:`DatasetItem` per index of a map-style dataset."""
    try:
        with contained(f"{name}: len()"):
            count = len(dataset)
    except ChanstatsError:
        raise
    except Exception as error:
        raise ChanstatsError(f"{name}: len() failed: {one_line(error)}") from None
    with contained(f"{name}: reading its sample ids"):
        ids = sample_ids(dataset, count)
    names = ids if ids is not None else [f"index {index}" for index in range(count)]
    return [DatasetItem(name, names[index], 0, None, index, token) for index in range(count)]


def read(item: DatasetItem) -> Decoded:
    """Sample ``item.index`` of its registered dataset: its image as ``(H, W, C)`` pixels, and the
    image object as the dataset gave it (what a ``--transform`` is given). The dataset's own
    failure makes the sample a bad image."""
    dataset, key, layout = registered(item.token)
    try:
        with contained(item.display):
            sample = dataset[item.index]
    except ChanstatsError:
        raise
    except Exception as error:  # the dataset's own failure: this sample is bad
        raise BadImageError(item.display, f"the dataset raised {one_line(error)}") from None
    (pixels,) = sample_images(sample, key, layout, item.display)
    return Decoded(pixels, original=_as_given(_pick(sample, key, item.display)), follows_mode=True)


# A dataset's samples may hold random draws of its own: read once per epoch, seeded; its workers
# are forked, to inherit the registry.
KIND = SourceKind("Python dataset", DatasetItem, read, per_epoch=True, forked=True)


# --- the image in a sample --------------------------------------------------------------------

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


def _as_given(image: Any) -> Any:
    """The sample's image as the transform should see it: a PIL image converted as measuring
    converts it, a tensor as is, anything else ``None`` (its pixels are used)."""
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode in _PIL_AS_IS else image.convert("RGB")
    return image



def sample_ids(dataset: Any, count: int) -> list[str] | None:
    """The dataset's own names for its samples, where it has them, else ``None`` (samples are then
    named by index): the file of each sample of a torchvision ``ImageFolder``/``DatasetFolder``
    (``samples[i][0]``), an ``ids`` or ``image_ids`` sequence (COCO-style datasets), an ``id`` or
    ``image_id`` column of a Hugging Face ``Dataset``, and those of the dataset under a ``Subset``.
    Ids must be strings or integers, one per sample and all different; anything else is not used."""
    try:
        ids = _raw_ids(dataset, count)
        if ids is None or len(ids) != count or not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
            return None
        names = [str(i) for i in ids]
    except Exception:  # an attribute that only looks like ids: fall back to indices
        return None
    return names if len(set(names)) == count and all(names) else None


def _raw_ids(dataset: Any, count: int) -> Any:
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is not None and isinstance(dataset, torch_data.Subset):
        inner = _raw_ids(dataset.dataset, len(dataset.dataset))
        return None if inner is None else [inner[int(i)] for i in dataset.indices]
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, (list, tuple)) and len(samples) == count and all(
            isinstance(sample, (list, tuple)) and sample and isinstance(sample[0], str) for sample in samples):
        return [sample[0] for sample in samples]
    for attribute in ("ids", "image_ids"):
        ids = getattr(dataset, attribute, None)
        if isinstance(ids, abc.Sequence) and not isinstance(ids, (str, bytes)):
            return list(ids)
    columns = getattr(dataset, "column_names", None)
    if isinstance(columns, list):
        for column in ("id", "image_id"):
            if column in columns:
                return list(dataset[column])
    return None


def kind_of(source: Any) -> str | None:
    """What ``source`` is: a map-style dataset, a DataLoader, another iterable of samples, or
    ``None`` for paths (a string, a path, or an iterable of them)."""
    if isinstance(source, (str, bytes, os.PathLike)):
        return None
    torch_data = sys.modules.get("torch.utils.data")
    if torch_data is not None and isinstance(source, torch_data.DataLoader):
        return LOADER
    if torch_data is not None and isinstance(source, torch_data.IterableDataset):
        return ITERABLE
    if isinstance(source, (list, tuple)):
        # bytes count as (refused) paths: the API's error then says paths must be str
        return None if any(isinstance(item, (str, bytes, os.PathLike)) for item in source) or not source else MAP_STYLE
    if hasattr(source, "__getitem__") and hasattr(source, "__len__"):
        return MAP_STYLE
    return ITERABLE if isinstance(source, Iterable) else None


def classify(source: Any) -> tuple[str | None, Any]:
    """:func:`kind_of`, and ``source`` to use from now on: a plain iterable is told apart from an
    iterable of paths by its first item, so an iterator comes back with that item put back."""
    kind = kind_of(source)
    torch_data = sys.modules.get("torch.utils.data")
    if kind != ITERABLE or (torch_data is not None and isinstance(source, torch_data.IterableDataset)):
        return kind, source
    with contained(f"{describe(source)}: reading its first sample"):
        iterator = iter(source)
        first = next(iterator, _END)
    if iterator is source:  # a one-shot iterator: what was taken must be put back
        source = [] if first is _END else itertools.chain([first], iterator)
    if first is _END or isinstance(first, (str, bytes, os.PathLike)):
        return None, list(source) if iterator is source or first is _END else source
    return ITERABLE, source


_END = object()


def describe(source: Any) -> str:
    """How messages and configs name a dataset given as an object: its class name."""
    return type(source).__name__


def load(spec: str) -> Any:
    """The object ``spec`` names (``module:attr`` or ``file.py:attr``), called when callable."""
    found = load_reference(spec, "--dataset", "dataset")
    attribute = spec.rpartition(":")[2]
    if isinstance(found, type) or (callable(found) and kind_of(found) is None):
        try:
            with contained(f"--dataset {spec}: calling {attribute}()"):
                found = found()
        except ChanstatsError:
            raise
        except Exception as error:
            raise ChanstatsError(f"--dataset {spec}: calling {attribute}() failed: {one_line(error)}") from None
    if kind_of(found) is None:
        raise ChanstatsError(f"--dataset {spec}: {attribute} is a {type(found).__name__}, not a dataset, "
                             "DataLoader or iterable of samples")
    return found

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

import difflib
import importlib
import itertools
import os
import re
import sys
from dataclasses import dataclass
from collections import abc
from typing import Any, Iterable

from ..errors import ChanstatsError, one_line
from ..user_code import contained, load_python_file
from .base import ImageSource

MAP_STYLE, ITERABLE, LOADER = "map-style dataset", "iterable", "DataLoader"


@dataclass(frozen=True, slots=True)
class DatasetItem(ImageSource):
    """One sample of a map-style dataset: ``root`` names the dataset, ``offset`` is the index."""

    token: int = 0  # the dataset in this process's registry


KEPT_DATASETS = 4  # the most recent runs' datasets stay registered
# Datasets being measured, by token: forked workers inherit this dictionary.
_REGISTRY: dict[int, Any] = {}
_tokens = itertools.count(1)


def register(dataset: Any) -> int:
    """Keep ``dataset`` where this process and the workers it forks find it; returns its token."""
    token = next(_tokens)
    _REGISTRY[token] = dataset
    for old in [t for t in _REGISTRY if t <= token - KEPT_DATASETS]:
        del _REGISTRY[old]  # runs long finished: do not keep their datasets alive
    return token


def registered(token: int) -> Any:
    """The dataset registered as ``token``; a clear error in a worker that was not forked."""
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
    return [DatasetItem(name, names[index], 0, index, in_archive=True, token=token) for index in range(count)]


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
    match = _SPEC.match(spec)
    if not match:
        raise ChanstatsError(f"--dataset {spec}: expected package.module:attr or path/to/file.py:attr")
    target, attribute = match["target"], match["attr"]
    module = _load_file(target, spec) if target.endswith(".py") else _import(target, spec)
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            close = difflib.get_close_matches(part, [n for n in dir(found) if not n.startswith("_")], n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ChanstatsError(f"--dataset {spec}: {target} has no attribute {part!r}{hint}")
        found = getattr(found, part)
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


_SPEC = re.compile(r"^(?P<target>[^:]+):(?P<attr>[A-Za-z_][\w.]*)$")


def _import(name: str, spec: str) -> Any:
    # A console script does not put the working directory on sys.path; `python -m` does.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        with contained(f"--dataset {spec}: importing {name!r}"):
            return importlib.import_module(name)
    except ChanstatsError:
        raise
    except Exception as error:
        raise ChanstatsError(f"--dataset {spec}: cannot import {name!r} ({one_line(error)})") from None


def _load_file(path: str, spec: str) -> Any:
    return load_python_file(path, f"--dataset {spec}", "dataset")

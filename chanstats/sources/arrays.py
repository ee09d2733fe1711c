"""NumPy files as sources: ``.npy`` and ``.npz`` arrays of images, memory-mapped.

An array of shape ``(N, H, W, C)`` is a stack of N images, named ``stack.npy::3`` (in a ``.npz``:
``data.npz::images/3``); an array of shape ``(H, W, C)`` or ``(H, W)`` is one image, named by its
file (in a ``.npz``: ``data.npz::key``). Channels are last, as NumPy and PIL hold images; a shape
that reads as channels-first, ``(C, H, W)``, is refused with both readings stated.

Workers read pixels, not bytes: each process memory-maps a ``.npy`` once (a ``.npz`` member is
loaded once: compressed members cannot be mapped) and keeps the few most recent.

The decompression-bomb limit (:mod:`chanstats.decoding.limits`) applies to each image, from the
array's header before its pixels are read, and to each ``.npz`` member before it is loaded whole.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from typing import Any, Iterator

from ..decoding.limits import check_declared_size, check_decoded_bytes
from ..errors import BadImageError, ChanstatsError
from .base import ContainedItem, Decoded, Listed, SourceKind

ARRAY_SUFFIXES = (".npy", ".npz")
OPEN_ARRAYS = 4  # arrays each process keeps mapped or loaded


@dataclass(frozen=True, slots=True)
class ArrayItem(ContainedItem):
    """One image held in a NumPy file: ``root`` the file, ``key`` the ``.npz`` member (``""`` for a
    ``.npy``), ``index`` its index in a stack (-1: the whole array is the image)."""

    key: str = ""
    index: int = -1


def is_array_path(path: str) -> bool:
    """Whether ``path`` names a NumPy file (by its extension)."""
    return path.lower().endswith(ARRAY_SUFFIXES)


def list_arrays(path: str) -> Iterator[Listed]:
    """The images in the NumPy file at ``path``, with their identity (file, member, index)."""
    import numpy as np

    try:
        stat = os.stat(path)
        if path.lower().endswith(".npy"):
            shapes = [("", np.load(path, mmap_mode="r", allow_pickle=False))]
        else:
            with np.load(path, allow_pickle=False) as archive:
                shapes = [(key, _header(archive, key)) for key in archive.files]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ChanstatsError(f"{path}: not a readable NumPy file ({' '.join(str(error).split())})") from None
    for member, (key, array) in enumerate(shapes):
        shown = f"{path}::{key}" if key else path
        stack = _is_stack(array.shape, array.dtype, shown)
        per_image = int(np.prod(array.shape[1:] if stack else array.shape)) * array.dtype.itemsize
        if not stack:
            yield ArrayItem(path, key, per_image, None, key, -1), (stat.st_dev, stat.st_ino, member, 0)
            continue
        for index in range(array.shape[0]):
            name = f"{key}/{index}" if key else str(index)
            yield ArrayItem(path, name, per_image, None, key, index), (stat.st_dev, stat.st_ino, member, index + 1)


def describe_arrays(path: str) -> str:
    """What the NumPy file at ``path`` holds, for a message about a file without images:
    ``"a.npy holds an array of shape (0, 32, 32, 3)"``."""
    import numpy as np

    if path.lower().endswith(".npy"):
        return f"{path} holds an array of shape {tuple(np.load(path, mmap_mode='r', allow_pickle=False).shape)}"
    with np.load(path, allow_pickle=False) as archive:
        members = [f"{key!r} of shape {_header(archive, key).shape}" for key in archive.files]
    return f"{path} holds " + (", ".join(members) if members else "no arrays")


def read_pixels(source: ArrayItem) -> Any:
    """One image's pixels as an ``(H, W, C)`` array (``(H, W)`` arrays get one channel), refused
    as a decompression bomb when the header declares more than the limit."""
    try:
        array = _arrays.get(source)
        pixels = array if source.index < 0 else array[source.index]
        pixels = pixels.reshape(*pixels.shape, 1) if pixels.ndim == 2 else pixels
        return pixels.__array__()  # reads the mapped bytes now, so that a failure is this image's
    except (OSError, ValueError, IndexError, KeyError, zipfile.BadZipFile, EOFError) as error:
        _arrays.forget(source.root, source.key)
        raise BadImageError(source.display, f"cannot read the array (changed since listing?): "
                                            f"{' '.join(str(error).split()) or type(error).__name__}") from None


def _header(archive: Any, key: str) -> "_Shape":
    """A ``.npz`` member's shape and dtype without decompressing it: the ``.npy`` header only."""
    import numpy as np

    with archive.zip.open(key + ".npy") as member:
        major, _ = np.lib.format.read_magic(member)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(member)
    return _Shape(tuple(shape), np.dtype(dtype))


@dataclass(frozen=True)
class _Shape:
    shape: tuple[int, ...]
    dtype: Any


def _is_stack(shape: tuple[int, ...], dtype: Any, shown: str) -> bool:
    """Whether an array of ``shape`` is a stack of images (4-D) or one image (2-D or 3-D)."""
    if dtype.kind not in "uif":
        raise ChanstatsError(f"{shown}: holds {dtype} values, not pixels (integers or floats)")
    if len(shape) == 4:
        _check_channels_last(shape[1:], shown, "(N, H, W, C)")
        return True
    if len(shape) == 3:
        _check_channels_last(shape, shown, "(H, W, C)")
        return False
    if len(shape) == 2:
        return False
    raise ChanstatsError(f"{shown}: an array of shape {shape}; expected (N, H, W, C) images, or one (H, W, C) or (H, W) image")


def _check_channels_last(shape: tuple[int, ...], shown: str, expected: str) -> None:
    if shape[0] <= 4 < shape[-1]:
        raise ChanstatsError(
            f"{shown}: shape {shape} reads as {expected} with {shape[-1]} channels of {shape[0]}×{shape[1]} pixels, "
            f"or as channels-first (C, H, W) with {shape[0]} channels; NumPy files must be channels-last: "
            "np.moveaxis(array, -3, -1)"
        )


def _check_image_size(array: Any, source: ArrayItem) -> None:
    """Refuse ``source``'s image when ``array`` (an array or its header) declares it over the
    decompression-bomb limit. Shapes that are not images are refused by name when measured."""
    shape = array.shape if source.index < 0 else array.shape[1:]
    if len(shape) in (2, 3):
        height, width = shape[:2]
        bands = shape[2] if len(shape) == 3 else 1
        check_declared_size(width, height, source.display, bands=bands, itemsize=array.dtype.itemsize,
                            kind=array.dtype.name)


class _OpenArrays:
    """The arrays this process has open, the most recently used last (reopened after a fork)."""

    def __init__(self) -> None:
        self.owner = -1
        self.open: dict[tuple[str, str], Any] = {}

    def get(self, source: ArrayItem) -> Any:
        """The array holding ``source`` (mapped or loaded), once the image's declared size and, for
        a ``.npz`` member, which is inflated whole, the member's are known to be within the limit."""
        import numpy as np

        path, key = source.root, source.key
        if self.owner != os.getpid():
            self.owner, self.open = os.getpid(), {}
        array = self.open.pop((path, key), None)
        if array is None:
            if key:
                with np.load(path, allow_pickle=False) as archive:
                    declared = _header(archive, key)
                    _check_image_size(declared, source)
                    size = int(np.prod(declared.shape)) * declared.dtype.itemsize
                    check_decoded_bytes(size, f"the member {key!r} of {os.path.basename(path)}", source.display,
                                        "; a .npy file is read an image at a time instead")
                    array = archive[key]
            else:
                array = np.load(path, mmap_mode="r", allow_pickle=False)  # mapped: nothing read yet
            while len(self.open) >= OPEN_ARRAYS:
                self.open.pop(next(iter(self.open)))
        self.open[(path, key)] = array
        _check_image_size(array, source)
        return array

    def forget(self, path: str, key: str) -> None:
        self.open.pop((path, key), None)


_arrays = _OpenArrays()


KIND = SourceKind("NumPy file", ArrayItem, lambda item: Decoded(read_pixels(item)), claims=is_array_path,
                  list=lambda path, extensions: list_arrays(path), empty=describe_arrays)


"""The decoders the benchmark compares, as functions that forked pool workers can run.

A *fast decoder* turns a file's bytes into an (H, W[, C]) uint8 array, or None when it declines.
A *combination* is a decode-only program: it hands the files chanstats takes through its JPEG
fast path to one fast decoder, those it takes through its PNG fast path to another, and
everything else (and whatever a fast decoder declines) to Pillow's ``convert("RGB")``, the
reference. Which file goes where is chanstats' decision (:func:`bench.decisions.route_chunk`),
so each combination decodes the same files chanstats would decode fast.

Imports stay inside the functions: a decode-only program is timed from launch to exit and should
pay only for the decoder it uses.
"""

from __future__ import annotations

import io
from typing import Callable, NamedTuple

from bench.decisions import PNG_DECODER_MODULE

#: Paths per task handed to a pool worker.
CHUNK = 32


class FastDecoder(NamedTuple):
    """A decoder faster than Pillow: the module it needs, the chanstats fast path whose files it
    takes, and Pillow's name for that format."""

    module: str
    fast_path: str
    format: str


class Combination(NamedTuple):
    """A decode-only program: its label in the tables and the fast decoder (or None: Pillow)
    for the files on each of chanstats' fast paths."""

    label: str
    jpeg: str | None
    png: str | None

    @property
    def fast_decoders(self) -> list[str]:
        return [name for name in (self.jpeg, self.png) if name is not None]


FAST_DECODERS = {
    "simplejpeg": FastDecoder("simplejpeg", "jpeg", "JPEG"),
    "pyspng": FastDecoder("pyspng", "png", "PNG"),
    "chanstats-png": FastDecoder(PNG_DECODER_MODULE, "png", "PNG"),
}

COMBINATIONS = {
    "pillow": Combination("Pillow", None, None),
    "simplejpeg": Combination("simplejpeg JPEG, Pillow PNG", "simplejpeg", None),
    "simplejpeg+pyspng": Combination("simplejpeg JPEG, pyspng PNG", "simplejpeg", "pyspng"),
    "simplejpeg+chanstats-png": Combination("simplejpeg JPEG, chanstats PNG (ISA-L + kernel)", "simplejpeg", "chanstats-png"),
}


def combination_for(fast_paths: set[str]) -> str | None:
    """The combination that decodes as chanstats does when ``fast_paths`` are the fast paths it
    took on the corpus: its own decoders (None if no decode-only program matches)."""
    own = {"jpeg": "simplejpeg" if "jpeg" in fast_paths else None, "png": "chanstats-png" if "png" in fast_paths else None}
    for name, combination in COMBINATIONS.items():
        if (combination.jpeg, combination.png) == (own["jpeg"], own["png"]):
            return name
    return None


def available_combinations() -> list[str]:
    """The combinations whose decoders are installed here."""
    import importlib.util

    def installed(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ImportError:
            return False

    return [
        name
        for name, combination in COMBINATIONS.items()
        if all(installed(FAST_DECODERS[d].module) for d in combination.fast_decoders)
    ]


def modules_of(combination: str) -> list[str]:
    """The modules a combination's program imports before its clock starts."""
    return [FAST_DECODERS[name].module for name in COMBINATIONS[combination].fast_decoders]


# --------------------------------------------------------------------------- fast decoders


def decode_simplejpeg(data: bytes):
    """simplejpeg's RGB pixels (what chanstats' JPEG path asks for), None where it fails."""
    import simplejpeg

    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return None


def decode_pyspng(data: bytes):
    """libspng's pixels, channels as stored, None where it fails."""
    import pyspng

    try:
        return pyspng.load(data)
    except Exception:
        return None


def fast_decoder(name: str) -> Callable:
    """bytes -> pixels or None, for one of :data:`FAST_DECODERS`."""
    if name == "chanstats-png":
        from bench.decisions import chanstats_png_decoder

        return chanstats_png_decoder()
    return {"simplejpeg": decode_simplejpeg, "pyspng": decode_pyspng}[name]


def pillow_rgb(data: bytes):
    """The reference: torchvision's loader, ``Image.open(...).convert("RGB")``."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


# --------------------------------------------------------------------------- pool tasks


def chunks(seq: list, size: int = CHUNK) -> list[list]:
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def decode_chunk(combination: str, files: list[tuple[str | None, str]]) -> tuple[int, int]:
    """Decode ``(fast path, path)`` files with one combination: (images, pixels)."""
    chosen = COMBINATIONS[combination]
    by_fast_path = {"jpeg": chosen.jpeg, "png": chosen.png}
    decoders = {path: fast_decoder(name) for path, name in by_fast_path.items() if name is not None}
    images = pixels = 0
    for fast_path, path in files:
        with open(path, "rb") as stream:
            data = stream.read()
        decoder = decoders.get(fast_path)  # type: ignore[arg-type]
        array = decoder(data) if decoder is not None else None
        if array is not None:
            pixels += array.shape[0] * array.shape[1]
        else:
            rgb = pillow_rgb(data)
            pixels += rgb.width * rgb.height
        images += 1
    return images, pixels


class Identity(NamedTuple):
    """One fast decoder against Pillow on the corpus files of its format."""

    identical: int
    compared: int
    left_to_pillow: int

    @classmethod
    def total(cls, parts) -> "Identity":
        """The counts of several chunks added up."""
        return cls(*(sum(column) for column in zip(*parts))) if parts else cls(0, 0, 0)


def identity_chunk(decoder: str, mode: str, files: list[tuple[str | None, str]]) -> Identity:
    """Compare a fast decoder's pixels with Pillow's on ``(fast path, path)`` files of its format.

    Files chanstats leaves to Pillow, and files the decoder declines, are counted as left to
    Pillow. A JPEG decoder is compared with ``convert(mode)``, what it is asked for; a PNG decoder
    with Pillow's pixels as stored, which is what PNG decoders return.
    """
    import numpy as np
    from PIL import Image

    spec = FAST_DECODERS[decoder]
    decode = fast_decoder(decoder)
    identical = compared = left = 0
    for fast_path, path in files:
        if fast_path != spec.fast_path:
            left += 1
            continue
        with open(path, "rb") as stream:
            data = stream.read()
        array = decode(data)
        if array is None:
            left += 1
            continue
        with Image.open(io.BytesIO(data)) as image:
            reference = np.asarray(image.convert(mode) if spec.format == "JPEG" else image)
        compared += 1
        identical += int(array.size == reference.size and np.array_equal(reference, array.reshape(reference.shape)))
    return Identity(identical, compared, left)

"""What the benchmark asks chanstats instead of deciding itself.

Which files chanstats lists, which of them it takes through its JPEG or PNG fast path (and so
which files a decode-only program hands to a fast decoder), the mode it measures in, its PNG
decoder, and the command that runs it: all come from chanstats, so the benchmark
follows chanstats when chanstats changes. Every chanstats import of the benchmark is in this
module (``bench/listing.py``, a separate tool, aside), each inside the function that needs it:
the decode-only programs import only the decoder they time.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Callable, NamedTuple

#: The mode ``chanstats compute`` measures in by default, and so the mode of every routing decision.
MODE = "RGB"
#: Module of chanstats' PNG decoder: a decode-only program imports it before its clock starts.
PNG_DECODER_MODULE = "chanstats.decoding.png"
#: ``--timings`` phases after listing: chanstats' own time once started, like a started pool's.
PHASES_AFTER_LISTING = ("measuring", "finalizing", "writing")


class Routed(NamedTuple):
    """One file as chanstats would take it: ``fast_path`` is "jpeg" or "png" when one of its fast
    paths accepts the file (None: Pillow decodes it); ``format`` is Pillow's name for the file's
    format (``"JPEG"``, ``"PNG"``), so that files a fast path declines are still counted by kind."""

    path: str
    format: str
    fast_path: str | None


def chanstats_command() -> list[str]:
    """The installed ``chanstats`` command next to this interpreter, else on PATH, else ``-m``."""
    exe = Path(sys.executable).with_name("chanstats")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("chanstats")
    return [found] if found else [sys.executable, "-m", "chanstats"]


def precompile_chanstats() -> None:
    """Write chanstats' bytecode, as ``pip install`` does for an installed package.

    An editable install only gets it when a first import writes it, which PYTHONDONTWRITEBYTECODE
    forbids: every run (and every decode-only program importing chanstats' PNG decoder) would then
    spend about 40 ms compiling chanstats from source, a cost users of an installed chanstats never pay.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("chanstats")
    if spec is not None and spec.origin:
        compileall.compile_dir(str(Path(spec.origin).parent), quiet=1)


def listed_files(root: Path) -> list[str]:
    """The files ``chanstats compute root`` measures, in chanstats' order."""
    from chanstats.sources.listing import list_images

    return [source.path for source in list_images([str(root)])]


def route_chunk(paths: list[str]) -> list[Routed]:
    """Ask chanstats' fast paths, in its order, which of them takes each file.

    Module-level so that forked pool workers can run it. A fast path answers None where its
    answer could differ from Pillow's.
    """
    import io

    from chanstats.decoding.jpeg import measure_jpeg
    from chanstats.decoding.png import measure_png
    from PIL import Image

    fast_paths = (("jpeg", measure_jpeg), ("png", measure_png))
    routed = []
    for path in paths:
        with open(path, "rb") as stream:
            data = stream.read()
        with Image.open(io.BytesIO(data)) as image:
            file_format = image.format or "?"
        taken = next((name for name, measure in fast_paths if measure(data, MODE, path) is not None), None)
        routed.append(Routed(path, file_format, taken))
    return routed


def chanstats_png_decoder() -> Callable:
    """chanstats' PNG decoder: bytes -> (H, W, C) uint8 pixels as stored, or None where it declines."""
    from chanstats.decoding.png import decode_png

    return decode_png


def seconds_after_listing(stderr: str) -> float:
    """chanstats' time once started and listed, from the ``timings:`` line ``--timings`` prints."""
    phases = dict(re.findall(r"(\w+) ([\d.]+) s", stderr.split("timings:", 1)[1]))
    return sum(float(phases[phase]) for phase in PHASES_AFTER_LISTING)

"""chanstats: exact per-channel mean/std of image datasets, as the model sees them.

``chanstats.compute(paths, **options)`` returns a :class:`Result`; the ``chanstats`` command is a
thin layer over it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import BadImageError, BadImagesError, BadSpecError, ChanstatsError, NoImagesError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .pipeline import compute
    from .report import Result

# numpy and Pillow are only imported when compute/Result are first used, so that
# `chanstats --help` and `--version` start in a fraction of the time.
_LAZY = {"compute": ("pipeline", "compute"), "Result": ("report", "Result")}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'chanstats' has no attribute {name!r}")


__all__ = [
    "compute",
    "Result",
    "__version__",
    "ChanstatsError",
    "BadImageError",
    "BadImagesError",
    "BadSpecError",
    "NoImagesError",
]

"""chanstats: exact per-channel mean/std of image datasets, as the model sees them.

The Python API (every command is one of these calls; see docs/python-api.md):

* :func:`compute` ``(paths, options=None, **overrides)`` → :class:`Result`
* :func:`compute_shard`, :func:`merge`: a sharded run and its merge
* :func:`check`, :func:`compare`, :func:`export`: the other commands
* :class:`RunOptions`: every option of a run, with its default
* the errors: :class:`ChanstatsError` and its subclasses
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._version import __version__
from .errors import BadImageError, BadImagesError, BadSpecError, ChanstatsError, NoImagesError

if TYPE_CHECKING:
    from .api import check, compare, compute, compute_distributed, compute_shard, export, merge
    from .options import RunOptions
    from .report.result import Result

# numpy and Pillow are only imported when the API is first used, so that `chanstats --help` and
# `--version` start in a fraction of the time.
_LAZY = {
    "compute": ("api", "compute"),
    "compute_shard": ("api", "compute_shard"),
    "compute_distributed": ("api", "compute_distributed"),
    "merge": ("api", "merge"),
    "check": ("api", "check"),
    "compare": ("api", "compare"),
    "export": ("api", "export"),
    "RunOptions": ("options", "RunOptions"),
    "Result": ("report.result", "Result"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'chanstats' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "compute",
    "compute_shard",
    "compute_distributed",
    "merge",
    "check",
    "compare",
    "export",
    "RunOptions",
    "Result",
    "__version__",
    "ChanstatsError",
    "BadImageError",
    "BadImagesError",
    "BadSpecError",
    "NoImagesError",
]

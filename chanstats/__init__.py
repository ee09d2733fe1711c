"""chanstats: exact per-channel mean/std of image datasets, as the model sees them.

``chanstats.compute(paths, **options)`` returns a :class:`Result`; the ``chanstats`` command is a
thin layer over it.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import BadImageError, BadImagesError, BadSpecError, ChanstatsError, NoImagesError  # noqa: E402
from .pipeline import compute  # noqa: E402
from .report import Result  # noqa: E402

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

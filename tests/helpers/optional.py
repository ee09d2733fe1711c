"""Optional test dependencies (the frameworks that load `chanstats export` output, albumentations),
imported only by the tests that need them.

They come with the ``test`` extra. Outside CI a missing one skips its
tests; in CI (the ``CI`` environment variable set) a missing one is an error, so a broken install
cannot pass as a run of skips.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    """Import ``module``; skip the calling test when it is missing, unless running in CI."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is required in CI (pip install -e '.[test]'): {error}", pytrace=False)
        pytest.skip(f"{module} not installed (pip install -e '.[export-test]')")

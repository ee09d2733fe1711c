"""The one check of a config read back (by ``show``, ``export`` and ``check``, from a file or a
mapping): everything these commands use must hold usable values, or the config is refused in one
line naming it (exit code 2) before anything is printed, exported or recomputed.

A config is refused when:

- ``exact.mean`` and ``exact.std`` are not lists of finite numbers of one length (NaN, infinity,
  ``1e400`` or a 400-digit integer would be written out as ``NaN``/``inf``, which is neither JSON
  nor Python), or a std is negative;
- ``channels``, ``exact.mean_raw``/``exact.std_raw`` or ``running.mean``/``running.std`` hold
  another number of values than ``exact.mean`` (or non-finite ones), or ``scale`` is not a
  positive finite number;
- ``exact.method`` is not one this version writes (``integer``, ``float64``): the meaning of the
  numbers (their scale) would be guessed;
- it was written by a newer chanstats (its ``chanstats`` field): fields this version does not know
  could change what the numbers mean.

A std of 0 (every pixel of a channel equal) is a valid result; ``export`` refuses it separately,
since ``Normalize`` would divide by zero.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .._version import __version__
from ..errors import BadSpecError

# The exact methods this version writes (see chanstats.api._exact_statistics).
EXACT_METHODS = ("integer", "float64")


def validate_config(config: Any, source: str = "config") -> None:
    """Raise :class:`BadSpecError` naming ``source`` for a config that cannot be used (see the module)."""
    if not isinstance(config, dict):
        raise BadSpecError(f"{source}: not a chanstats config (not a mapping)")
    _check_version(config.get("chanstats"), source)
    exact = config.get("exact")
    if not isinstance(exact, dict):
        raise BadSpecError(f"{source}: no usable exact.mean / exact.std ('exact' must be a mapping)")
    mean = _numbers(exact.get("mean"), "exact.mean", source)
    std = _numbers(exact.get("std"), "exact.std", source)
    if not mean or len(mean) != len(std):
        raise BadSpecError(f"{source}: exact.mean and exact.std must hold one finite number per channel "
                           f"(got {len(mean)} and {len(std)} values)")
    _non_negative(std, "exact.std", source)
    count = len(mean)
    method = exact.get("method", "integer")
    if method not in EXACT_METHODS:
        raise BadSpecError(f"{source}: unknown exact.method {method!r} (this chanstats {__version__} knows "
                           f"{', '.join(EXACT_METHODS)}); upgrade chanstats, or recompute the config")
    for key in ("mean_raw", "std_raw"):
        if exact.get(key) is not None:
            values = _numbers(exact[key], f"exact.{key}", source)
            _same_count(values, count, f"exact.{key}", source)
            if key == "std_raw":
                _non_negative(values, "exact.std_raw", source)
    channels = config.get("channels")
    if channels is not None and (not isinstance(channels, list) or len(channels) != count
                                 or not all(isinstance(name, str) for name in channels)):
        raise BadSpecError(f"{source}: 'channels' must list one name per exact.mean value ({count})")
    scale = config.get("scale")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not _finite(scale) or scale <= 0):
        raise BadSpecError(f"{source}: 'scale' must be a positive finite number, got {scale!r}")
    running = config.get("running")
    if running is not None:
        if not isinstance(running, dict):
            raise BadSpecError(f"{source}: 'running' must be a mapping")
        for key in ("mean", "std"):
            if running.get(key) is not None:
                _same_count(_numbers(running[key], f"running.{key}", source), count, f"running.{key}", source)
    counted = config.get("count")
    if counted is not None and not isinstance(counted, dict):
        raise BadSpecError(f"{source}: 'count' must be a mapping")


def _check_version(version: Any, source: str) -> None:
    written = _version_numbers(version)
    if written is None:
        raise BadSpecError(f"{source}: 'chanstats' must be the version that wrote the config, got {version!r}")
    ours = _version_numbers(__version__)
    if ours is not None and written > ours:
        raise BadSpecError(f"{source}: written by chanstats {version}, newer than this one ({__version__}); "
                           "upgrade chanstats to read it")


def _version_numbers(version: Any) -> tuple[int, ...] | None:
    """``"0.1.0"`` → ``(0, 1, 0)``; a suffix (``.dev1``, ``rc1``) is ignored; ``None`` if no version.

    >>> _version_numbers("1.2.3rc1"), _version_numbers("x")
    ((1, 2, 3), None)
    """
    if not isinstance(version, str):
        return None
    match = re.match(r"(\d+(?:\.\d+)*)", version.strip())
    if match is None:
        return None
    numbers = tuple(int(part) for part in match.group(1).split("."))
    while len(numbers) > 1 and numbers[-1] == 0:  # 0.1 == 0.1.0
        numbers = numbers[:-1]
    return numbers


def _numbers(values: Any, name: str, source: str) -> list[float]:
    """``values`` as floats: a list of finite numbers (not booleans), else :class:`BadSpecError`."""
    if not isinstance(values, list):
        raise BadSpecError(f"{source}: no usable {name} (expected a list of numbers, got {type(values).__name__})")
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
            raise BadSpecError(f"{source}: {name}[{index}] is {_shown(value)}, not a finite number")
    return [float(value) for value in values]


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))  # an integer beyond float range overflows
    except OverflowError:
        return False


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:20] + "…" + f" ({len(text)} characters)"


def _non_negative(values: list[float], name: str, source: str) -> None:
    for index, value in enumerate(values):
        if value < 0:
            raise BadSpecError(f"{source}: {name}[{index}] is {value!r}; a standard deviation cannot be negative")


def _same_count(values: list[float], count: int, name: str, source: str) -> None:
    if len(values) != count:
        raise BadSpecError(f"{source}: {name} holds {len(values)} values for {count} channels")

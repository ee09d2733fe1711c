"""``check``: recompute a dataset's statistics with the options a config recorded, and say whether
they drifted beyond a tolerance — a CI gate before training.

:func:`chanstats.check` replays the config's ``options`` with
:meth:`~chanstats.options.RunOptions.from_record` (a key this version does not know is refused: a
silent drop could make the check compare different pipelines), recomputes, and hands the new result
to :func:`build_report`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..errors import BadSpecError
from .result import Result
from .validate import validate_config

# Absolute, on the [0, 1] scale: 0.01 is 2.55 grey levels of an 8-bit image, and shifts a
# normalized input by about 0.04 of its std (typical std ≈ 0.25) — far below what changes training,
# yet far above float noise or a few ordinary images added to a dataset of hundreds.
DEFAULT_TOLERANCE = 0.01


@dataclass
class ListingChange:
    """Files added/removed between the recorded listing and now (a file whose size changed counts as modified)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """Old vs new exact statistics per channel ([0, 1] scale, or pipeline units for float output)."""

    channels_old: list[str]
    channels_new: list[str]
    mean_old: list[float]
    mean_new: list[float]
    std_old: list[float]
    std_new: list[float]
    tolerance: float
    images_old: int | None
    images_new: int
    fingerprint_old: str | None
    fingerprint_new: str
    listing: ListingChange | None
    result: Result | None = field(default=None, repr=False)  # the recomputed run

    @property
    def same_channels(self) -> bool:
        return self.channels_old == self.channels_new

    @property
    def files_changed(self) -> bool:
        return self.fingerprint_old != self.fingerprint_new

    def deltas(self) -> tuple[list[float], list[float]]:
        """new − old, per channel, for mean and std."""
        return (
            [n - o for n, o in zip(self.mean_new, self.mean_old)],
            [n - o for n, o in zip(self.std_new, self.std_old)],
        )

    @property
    def passed(self) -> bool:
        if not self.same_channels:
            return False
        mean_delta, std_delta = self.deltas()
        return all(abs(d) <= self.tolerance for d in mean_delta + std_delta)

    def format(self) -> str:
        lines = []
        if not self.same_channels:
            lines.append(f"channels changed: {self.channels_old} → {self.channels_new}")
        else:
            mean_delta, std_delta = self.deltas()
            lines.append(f"{'channel':<8} {'old mean':>10} {'new mean':>10} {'Δ mean':>10} {'old std':>10} {'new std':>10} {'Δ std':>10}")
            for c, name in enumerate(self.channels_new):
                flag = "  > tolerance" if max(abs(mean_delta[c]), abs(std_delta[c])) > self.tolerance else ""
                lines.append(
                    f"{name:<8} {self.mean_old[c]:>10.6f} {self.mean_new[c]:>10.6f} {mean_delta[c]:>+10.6f} "
                    f"{self.std_old[c]:>10.6f} {self.std_new[c]:>10.6f} {std_delta[c]:>+10.6f}{flag}"
                )
        lines.append(self._files_line())
        verdict = "OK" if self.passed else "DRIFT"
        lines.append(f"{verdict}: tolerance {self.tolerance:g} (absolute, on mean and std)")
        return "\n".join(lines)

    def _files_line(self) -> str:
        images = f"{self.images_old} → {self.images_new} images" if self.images_old is not None else f"{self.images_new} images"
        if self.fingerprint_old is None:
            return f"files: {images} (config has no fingerprint)"
        if not self.files_changed:
            return f"files: unchanged ({images}, fingerprint {self.fingerprint_new[:19]}…)"
        if self.listing is None:
            return f"files: CHANGED ({images}; fingerprint differs; record a listing with `compute --listing` to count added/removed files)"
        change = self.listing
        parts = [f"{len(change.added)} added", f"{len(change.removed)} removed", f"{len(change.modified)} modified"]
        text = f"files: CHANGED ({images}; {', '.join(parts)})"
        for label, names in (("added", change.added), ("removed", change.removed), ("modified", change.modified)):
            if names:
                shown = ", ".join(names[:5]) + (f", … ({len(names) - 5} more)" if len(names) > 5 else "")
                text += f"\n  {label}: {shown}"
        return text


def recorded_exact(config: dict[str, Any], source: str = "config") -> tuple[list[float], list[float]]:
    """The recorded exact mean and std, one finite number per channel for each, or :class:`BadSpecError`."""
    validate_config(config, source)
    return [float(v) for v in config["exact"]["mean"]], [float(v) for v in config["exact"]["std"]]


def recorded_inputs(config: dict[str, Any], source: str = "config") -> list[str]:
    inputs = (config.get("options") or {}).get("inputs")
    if not inputs or not isinstance(inputs, list):
        raise BadSpecError(f"{source}: no recorded inputs; give the PATHs to check")
    return [str(p) for p in inputs]


def listing_change(old: Any, new: Sequence[tuple[str, int]] | None) -> ListingChange | None:
    """Compare two ``[[name, size], ...]`` listings; ``None`` when either is missing."""
    if old is None or new is None:
        return None
    try:
        before = {str(name): int(size) for name, size in old}
    except (TypeError, ValueError):
        raise BadSpecError("config: 'listing' must be a list of [name, size] pairs") from None
    after = {name: int(size) for name, size in new}
    return ListingChange(
        added=[n for n in after if n not in before],
        removed=[n for n in before if n not in after],
        modified=[n for n in after if n in before and before[n] != after[n]],
    )


def check_tolerance(tolerance: Any) -> None:
    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise BadSpecError(f"tolerance must be a non-negative number, got {tolerance!r}")


def build_report(config: dict[str, Any], result: Result, tolerance: float = DEFAULT_TOLERANCE, source: str = "config") -> CheckReport:
    """Compare a recomputed ``result`` with the statistics ``config`` recorded."""
    check_tolerance(tolerance)
    validate_config(config, source)
    old_mean, old_std = recorded_exact(config, source)
    recorded_channels = config.get("channels")
    count = config.get("count") or {}
    if recorded_channels:
        channels_old = [str(c) for c in recorded_channels]
    elif len(old_mean) == len(result.channels):
        channels_old = list(result.channels)
    else:  # no names recorded and another channel count: a channel change, never an index error
        channels_old = [str(c) for c in range(len(old_mean))]
    return CheckReport(
        channels_old=channels_old,
        channels_new=list(result.channels),
        mean_old=old_mean,
        mean_new=result.mean,
        std_old=old_std,
        std_new=result.std,
        tolerance=float(tolerance),
        images_old=count.get("images"),
        images_new=result.images,
        fingerprint_old=config.get("fingerprint"),
        fingerprint_new=result.fingerprint,
        listing=listing_change(config.get("listing"), result.listing),
        result=result,
    )

"""``check``: recompute a dataset's statistics with the options a config recorded, and say whether
they drifted beyond a tolerance — a CI gate before training.

Options are replayed generically: every key of the config's ``options`` (except ``inputs``, which
the caller's paths replace) must be a keyword of :func:`chanstats.compute`; a key this version does
not know is refused (a silent drop could make the check compare different pipelines).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from .errors import BadSpecError
from .report import Result

# Absolute, on the [0, 1] scale: 0.01 is 2.55 grey levels of an 8-bit image, and shifts a
# normalized input by about 0.04 of its std (typical std ≈ 0.25) — far below what changes training,
# yet far above float noise or a few ordinary images added to a dataset of hundreds.
DEFAULT_TOLERANCE = 0.01
# Run-time knobs that never change the statistics, so they are never taken from the config.
_NOT_REPLAYED = ("inputs", "workers", "progress")


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


def replay_options(options: Any, source: str = "config") -> dict[str, Any]:
    """The keyword arguments of :func:`chanstats.compute` that reproduce a recorded run."""
    from .pipeline import plan

    if options is None:
        return {}
    if not isinstance(options, dict):
        raise BadSpecError(f"{source}: 'options' must be a mapping")
    accepted = inspect.signature(plan).parameters  # compute passes its options on to plan
    unknown = sorted(k for k in options if k not in _NOT_REPLAYED and k not in accepted)
    if unknown:
        raise BadSpecError(
            f"{source}: recorded option(s) {', '.join(unknown)} are not known to this chanstats version; "
            "upgrade chanstats, or recompute the config with this version"
        )
    return {k: v for k, v in options.items() if k not in _NOT_REPLAYED}


def recorded_statistics(config: dict[str, Any], source: str = "config") -> tuple[list[float], list[float]]:
    """The recorded exact mean and std, one finite number per channel for each, or :class:`BadSpecError`."""
    try:
        old_mean = [float(v) for v in config["exact"]["mean"]]
        old_std = [float(v) for v in config["exact"]["std"]]
    except (KeyError, TypeError, ValueError):
        raise BadSpecError(f"{source}: no usable exact.mean / exact.std") from None
    if not old_mean or len(old_mean) != len(old_std) or not all(math.isfinite(v) for v in old_mean + old_std):
        raise BadSpecError(f"{source}: exact.mean and exact.std must hold one finite number per channel")
    return old_mean, old_std


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


def check(
    paths: Sequence[str] | None,
    config: dict[str, Any],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    workers: int | None = None,
    progress: bool = False,
    source: str = "config",
) -> tuple[CheckReport, Result]:
    """Recompute the statistics of ``paths`` (default: the recorded inputs) with ``config``'s
    options and compare them with the recorded ones. Returns the report and the new result."""
    from .pipeline import compute

    if not (isinstance(tolerance, (int, float)) and math.isfinite(tolerance) and tolerance >= 0):
        raise BadSpecError(f"tolerance must be a non-negative number, got {tolerance!r}")
    old_mean, old_std = recorded_statistics(config, source)
    recorded_channels = config.get("channels")
    if recorded_channels is not None and (not isinstance(recorded_channels, list) or len(recorded_channels) != len(old_mean)):
        raise BadSpecError(f"{source}: 'channels' must list one name per exact.mean value")
    count = config.get("count")
    if count is not None and not isinstance(count, dict):
        raise BadSpecError(f"{source}: 'count' must be a mapping")
    kwargs = replay_options(config.get("options"), source)
    if config.get("listing") is not None:
        kwargs["listing"] = True
    inputs = list(paths) if paths else recorded_inputs(config, source)
    result = compute(inputs, workers=workers, progress=progress, **kwargs)
    count = count or {}
    if recorded_channels:
        channels_old = [str(c) for c in recorded_channels]
    elif len(old_mean) == len(result.channels):
        channels_old = list(result.channels)
    else:  # no names recorded and another channel count: a channel change, never an index error
        channels_old = [str(c) for c in range(len(old_mean))]
    report = CheckReport(
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
    )
    return report, result

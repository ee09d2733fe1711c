"""``check``: recompute a dataset's statistics with the options a config recorded, and say whether
they drifted beyond a tolerance — a CI gate before training.

:func:`chanstats.check` replays the config's ``options`` with
:meth:`~chanstats.options.RunOptions.from_record` (a key this version does not know is refused: a
silent drop could make the check compare different pipelines), recomputes, and hands the new result
to :func:`build_report`, which tests each channel's mean and std and, where the config recorded
them, the histograms and per-image properties (:mod:`chanstats.report.drift`). The
:class:`CheckReport` prints as a table, as the ``--report`` JSON and as markdown for a CI summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from .._version import __version__
from ..errors import BadSpecError
from .drift import HISTOGRAM_TESTS, DriftTest, histogram_tests, property_tests
from .result import Result
from .thresholds import DEFAULT_TOLERANCE, Thresholds
from .validate import validate_config

__all__ = ["CheckReport", "DEFAULT_TOLERANCE", "Thresholds", "build_report"]

# Column headings of the distribution table, by test.
_HEADINGS = {"wasserstein": "Wasserstein", "jsd": "JSD (bits)", "psi": "PSI", "ks_brightness": "KS brightness",
             "ks_contrast": "KS contrast", "ks_area": "KS area", "ks_aspect": "KS aspect"}


@dataclass
class ListingChange:
    """Files added/removed between the recorded listing and now (a file whose size changed counts as modified)."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    """Old vs new exact statistics per channel ([0, 1] scale, or pipeline units for float output),
    and every drift test run (``tests``: mean/std per channel, then the distribution tests of
    :mod:`chanstats.report.drift`) with ``notes`` on the tests that could not run."""

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
    thresholds: Thresholds = field(default_factory=Thresholds)
    tests: list[DriftTest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    source: str = "config"
    config: dict[str, Any] | None = field(default=None, repr=False)  # what was checked against

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
        return self.same_channels and all(test.passed for test in self.tests)

    def failures(self) -> list[str]:
        """Each failing test with the channels it failed on: ``["mean R, G", "jsd B"]``."""
        if not self.same_channels:
            return ["channels"]
        failing: dict[str, list[str]] = {}
        for test in self.tests:
            if not test.passed:
                failing.setdefault(test.test, []).extend([] if test.channel is None else [test.channel])
        return [f"{name} {', '.join(channels)}".rstrip() for name, channels in failing.items()]

    def _test(self, name: str, channel: str | None) -> DriftTest | None:
        return next((t for t in self.tests if t.test == name and t.channel == channel), None)

    def _distribution_columns(self) -> list[str]:
        run = {t.test for t in self.tests}
        return [name for name in (*HISTOGRAM_TESTS, "ks_brightness", "ks_contrast") if name in run]

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
            lines += self._distribution_lines()
        lines.append(self._files_line())
        lines += [f"note: {note}" for note in self.notes]
        lines.append(self._verdict())
        return "\n".join(lines)

    def _distribution_lines(self) -> list[str]:
        """The distribution table (a * marks a failing value) and the whole-image KS tests."""
        columns = self._distribution_columns()
        lines = []
        if columns:
            lines.append("")
            lines.append(f"{'channel':<8} " + " ".join(f"{_HEADINGS[c]:>14}" for c in columns))
            for name in self.channels_new:
                cells = []
                for column in columns:
                    test = self._test(column, name)
                    cells.append(f"{'':>14}" if test is None else f"{test.value:>13.6f}{' ' if test.passed else '*'}")
                lines.append(f"{name:<8} " + " ".join(cells).rstrip())
            limits = [getattr(self.thresholds, "ks" if c.startswith("ks_") else c) for c in columns]
            lines.append(f"{'max':<8} " + " ".join(f"{limit:>13g} " for limit in limits).rstrip())
        whole = [t for t in self.tests if t.channel is None]
        if whole:
            parts = [f"{t.test} {t.value:.4f} (p {t.detail['p_value']:.3g}){'' if t.passed else '*'}" for t in whole]
            lines.append("images: " + ", ".join(parts))
        if any(t.test.startswith("ks_") for t in self.tests):
            lines.append(f"(* fails; a KS test fails when D > {self.thresholds.ks:g} and p < {self.thresholds.ks_alpha:g})")
        return lines

    def _verdict(self) -> str:
        if self.passed:
            return (f"OK: every test within its threshold (tolerance {self.tolerance:g} absolute on mean and std"
                    f"{'' if len(self.tests) == 2 * len(self.channels_new) else ', distribution tests above'})")
        return "DRIFT: " + "; ".join(self.failures())

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

    def to_dict(self) -> dict[str, Any]:
        """The machine-readable report (``check --report``): every statistic, threshold and verdict."""
        files: dict[str, Any] = {
            "images_old": self.images_old,
            "images_new": self.images_new,
            "fingerprint_old": self.fingerprint_old,
            "fingerprint_new": self.fingerprint_new,
            "changed": self.files_changed,
        }
        if self.listing is not None:
            files.update(added=self.listing.added, removed=self.listing.removed, modified=self.listing.modified)
        return _json_safe({
            "chanstats": __version__,
            "config": self.source,
            "verdict": "OK" if self.passed else "DRIFT",
            "passed": self.passed,
            "failures": self.failures(),
            "channels": {"old": self.channels_old, "new": self.channels_new},
            "thresholds": self.thresholds.to_dict(),
            "tests": [test.to_dict() for test in self.tests],
            "notes": self.notes,
            "files": files,
        })

    def markdown(self) -> str:
        """A GitHub-flavoured markdown summary (for ``$GITHUB_STEP_SUMMARY``): the verdict, one
        table row per channel with failing values marked ❌, the files and the notes."""
        head = "✅ OK" if self.passed else "❌ DRIFT"
        lines = [f"### chanstats check: {head}", "", f"`{self.source}` against {self.images_new} images. {self._files_sentence()}", ""]
        if not self.same_channels:
            lines.append(f"Channels changed: `{self.channels_old}` → `{self.channels_new}`")
        else:
            columns = ["mean", "std", *self._distribution_columns()]
            headings = ["Δ mean", "Δ std", *(_HEADINGS[c] for c in columns[2:])]
            lines.append("| channel | " + " | ".join(headings) + " |")
            lines.append("|---|" + "---:|" * len(columns))
            for name in self.channels_new:
                cells = []
                for column in columns:
                    test = self._test(column, name)
                    if test is None:
                        cells.append("")
                    else:
                        number = f"{test.value:+.6f}" if column in ("mean", "std") else f"{test.value:.6f}"
                        cells.append(number if test.passed else f"**{number}** ❌")
                lines.append(f"| {name} | " + " | ".join(cells) + " |")
            limits = [f"±{self.tolerance:g}", f"±{self.tolerance:g}",
                      *(f"{getattr(self.thresholds, 'ks' if c.startswith('ks_') else c):g}" for c in columns[2:])]
            lines.append("| *threshold* | " + " | ".join(limits) + " |")
            whole = [t for t in self.tests if t.channel is None]
            if whole:
                lines.append("")
                lines.append("Images: " + ", ".join(
                    f"{t.test} {t.value:.4f} (p {t.detail['p_value']:.3g})" + ("" if t.passed else " ❌") for t in whole))
            if any(t.test.startswith("ks_") for t in self.tests):
                lines.append("")
                lines.append(f"A KS test fails when D > {self.thresholds.ks:g} and p < {self.thresholds.ks_alpha:g}; "
                             "JSD is the Jensen–Shannon divergence in bits.")
        if not self.passed:
            lines += ["", "**Failing:** " + "; ".join(self.failures())]
        for note in self.notes:
            lines += ["", f"> note: {note}"]
        return "\n".join(lines) + "\n"

    def _files_sentence(self) -> str:
        if self.fingerprint_old is None:
            return "The config has no fingerprint."
        if not self.files_changed:
            return "Files unchanged."
        images = f"{self.images_old} → {self.images_new} images" if self.images_old is not None else f"{self.images_new} images"
        if self.listing is None:
            return f"Files changed ({images})."
        change = self.listing
        return f"Files changed ({images}: {len(change.added)} added, {len(change.removed)} removed, {len(change.modified)} modified)."


def _json_safe(value: Any) -> Any:
    """``value`` with infinite numbers (a threshold switched off with ``inf``, a PSI against an
    empty side) as ``None``: JSON has no infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


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


def build_report(config: dict[str, Any], result: Result, tolerance: float | Thresholds = DEFAULT_TOLERANCE,
                 source: str = "config") -> CheckReport:
    """Compare a recomputed ``result`` with the statistics ``config`` recorded: mean and std per
    channel, then (when both sides have them) histograms and per-image properties.
    ``tolerance``: the mean/std tolerance alone, or every :class:`Thresholds`."""
    thresholds = tolerance if isinstance(tolerance, Thresholds) else Thresholds.of(tolerance=tolerance)
    check_tolerance(thresholds.tolerance)
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
    report = CheckReport(
        channels_old=channels_old,
        channels_new=list(result.channels),
        mean_old=old_mean,
        mean_new=result.mean,
        std_old=old_std,
        std_new=result.std,
        tolerance=float(thresholds.tolerance),
        images_old=count.get("images"),
        images_new=result.images,
        fingerprint_old=config.get("fingerprint"),
        fingerprint_new=result.fingerprint,
        listing=listing_change(config.get("listing"), result.listing),
        result=result,
        thresholds=thresholds,
        source=source,
        config=config,
    )
    if report.same_channels:
        mean_delta, std_delta = report.deltas()
        for name, old, new, delta in zip(channels_old, old_mean, result.mean, mean_delta):
            report.tests.append(DriftTest("mean", name, delta, thresholds.tolerance, abs(delta) <= thresholds.tolerance,
                                          {"old": old, "new": new}))
        for name, old, new, delta in zip(channels_old, old_std, result.std, std_delta):
            report.tests.append(DriftTest("std", name, delta, thresholds.tolerance, abs(delta) <= thresholds.tolerance,
                                          {"old": old, "new": new}))
        for tests_of in (histogram_tests, property_tests):
            tests, notes = tests_of(config, result, thresholds, channels_old, source)
            report.tests += tests
            report.notes += notes
    return report

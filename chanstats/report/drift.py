"""The tests ``check`` runs beyond mean and std: whole-distribution drift between what a config
recorded and a new run, each with a threshold and a verdict.

Per channel, on the histograms (see :mod:`chanstats.report.distribution`): Wasserstein-1 distance
on the [0, 1] scale, Jensen–Shannon divergence in bits and the population stability index. Per
image property (each channel's brightness and contrast, the image's area and aspect ratio): the
two-sample Kolmogorov–Smirnov statistic, failing only when it is both large (``D > max_ks``) and
significant (``p < ks_alpha``), so that a handful of images cannot fail a small dataset on
chance alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..stats.drift import js_divergence, ks_2samp, psi, wasserstein_1
from .distribution import ImageProperties, RecordedHistogram, aligned
from .result import Result
from .thresholds import Thresholds

HISTOGRAM_TESTS = ("wasserstein", "jsd", "psi")


@dataclass(frozen=True)
class DriftTest:
    """One test's outcome: ``value`` (signed Δ for mean/std, else the distance or KS statistic)
    against ``threshold``; ``channel`` is ``None`` for a property of whole images (area, aspect)."""

    test: str
    channel: str | None
    value: float
    threshold: float
    passed: bool
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.test if self.channel is None else f"{self.test} {self.channel}"

    def to_dict(self) -> dict[str, Any]:
        return {"test": self.test, "channel": self.channel, "value": self.value, "threshold": self.threshold,
                "passed": self.passed, **self.detail}


def histogram_tests(config: dict[str, Any], result: Result, thresholds: Thresholds, channels: list[str],
                    source: str = "config") -> tuple[list[DriftTest], list[str]]:
    """Wasserstein, JSD and PSI per channel between the recorded and the new histograms, and the
    notes that say why they were not run (no histogram on either side, another scale)."""
    if config.get("histogram") is None:
        return [], ["histogram tests not run: the config records no histogram (they need a config "
                    "computed by this chanstats version with --histogram, or of integer data wider than 8 bits)"]
    recorded = RecordedHistogram.from_config(config["histogram"], len(channels), source)
    if result.histogram is None:
        return [], ["histogram tests not run: this run counted no histogram (float pixels)"]
    if config.get("scale") is not None and config.get("scale") != result.scale:
        return [], [f"histogram tests not run: the scale changed ({config.get('scale')} → {result.scale})"]
    current = RecordedHistogram.of(result.histogram, recorded.width)
    notes = [] if recorded.width == 1 else [f"histograms compared in bins of {recorded.width} raw values (as recorded)"]
    tests = []
    for name, old, new in zip(channels, recorded.channels, current.channels):
        if not old.counts.any() or not new.counts.any():
            notes.append(f"histogram tests not run on {name}: no pixel on one side")
            continue
        positions, p, q = aligned(old, new, recorded.width, result.scale)
        w1 = wasserstein_1(positions, p, q)
        jsd = js_divergence(p, q)
        index = psi(p, q)
        tests += [
            DriftTest("wasserstein", name, w1, thresholds.wasserstein, w1 <= thresholds.wasserstein),
            DriftTest("jsd", name, jsd, thresholds.jsd, jsd <= thresholds.jsd, {"js_distance": math.sqrt(jsd)}),
            DriftTest("psi", name, index, thresholds.psi, index <= thresholds.psi),
        ]
    return tests, notes


def property_tests(config: dict[str, Any], result: Result, thresholds: Thresholds, channels: list[str],
                   source: str = "config") -> tuple[list[DriftTest], list[str]]:
    """Two-sample KS tests on each per-image property column, recorded against new."""
    if config.get("image_properties") is None:
        return [], ["per-image property tests not run: the config records no image_properties "
                    "(recompute it with this chanstats version)"]
    recorded = ImageProperties.from_config(config["image_properties"], len(channels), source)
    current = result.image_properties()
    tests = []
    for prop, old_column in recorded.columns().items():
        new_column = current.columns()[prop]
        per_channel = prop in ("brightness", "contrast")
        pairs = zip(channels, old_column, new_column) if per_channel else [(None, old_column, new_column)]
        for name, old, new in pairs:
            if not old or not new:
                continue
            statistic, p_value = ks_2samp(old, new)
            passed = not (statistic > thresholds.ks and p_value < thresholds.ks_alpha)
            tests.append(DriftTest(f"ks_{prop}", name, statistic, thresholds.ks, passed,
                                   {"p_value": p_value, "alpha": thresholds.ks_alpha, "n_old": len(old), "n_new": len(new)}))
    notes = []
    if recorded.recorded < recorded.images or current.recorded < current.images:
        notes.append(f"per-image properties compared on seeded samples of {recorded.recorded} recorded "
                     f"and {current.recorded} new images")
    return tests, notes

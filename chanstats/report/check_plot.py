"""``check --plot``: the recorded and the new distribution of each channel, overlaid, failing
channels marked.

Per channel, top: the two histograms as proportions of pixels per bin, on the [0, 1] scale, with
Wasserstein/JSD/PSI in the corner; bottom: the cumulative distribution of per-image brightness
(each image's mean), the column the KS test compares. A channel with a failing test has a red
title naming the tests. matplotlib is the optional ``plot`` extra, imported here only.
"""

from __future__ import annotations

import io
import textwrap

import numpy as np

from .check import CheckReport
from .distribution import BinnedCounts, ImageProperties, RecordedHistogram, aligned
from .plot import require_matplotlib

# Channels per row of panels: beyond it (multispectral data) the figure wraps.
COLUMNS = 4
RECORDED_COLOUR, NEW_COLOUR, FAIL_COLOUR = "#1f77b4", "#ff7f0e", "#c0392b"


def check_plot_png(report: CheckReport) -> bytes:
    """A PNG of ``report``: per channel its histograms (top) and per-image brightness ECDFs
    (bottom), recorded in blue and new in orange; panels without recorded data say so."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display needed; never opens a window
    import matplotlib.pyplot as plt

    channels = report.channels_new
    config = report.config or {}
    result = report.result
    histograms = _histograms(config, report)
    properties = _properties(config, report)
    columns = max(1, min(COLUMNS, len(channels)))
    rows = -(-len(channels) // columns)
    figure, axes = plt.subplots(2 * rows, columns, figsize=(max(6.0, 4.6 * columns), 6.4 * rows), squeeze=False)
    for c, name in enumerate(channels):
        top, bottom = axes[2 * (c // columns), c % columns], axes[2 * (c // columns) + 1, c % columns]
        failing = sorted({t.test for t in report.tests if t.channel == name and not t.passed})
        title = f"{name}: DRIFT ({', '.join(failing)})" if failing else f"{name}: ok"
        top.set_title(title, fontsize=10, color=FAIL_COLOUR if failing else "black", fontweight="bold" if failing else "normal")
        if failing:
            for spine in (*top.spines.values(), *bottom.spines.values()):
                spine.set_edgecolor(FAIL_COLOUR)
                spine.set_linewidth(1.6)
        _histogram_panel(top, histograms, c, result.scale if result is not None else 1, report, name)
        _brightness_panel(bottom, properties, c, report, name)
    for extra in range(len(channels), rows * columns):
        axes[2 * (extra // columns), extra % columns].set_visible(False)
        axes[2 * (extra // columns) + 1, extra % columns].set_visible(False)
    verdict = "OK" if report.passed else "DRIFT: " + "; ".join(report.failures())
    title = textwrap.fill(f"chanstats check against {report.source}: {verdict}", width=max(60, 30 * columns))
    figure.suptitle(title, fontsize=11,
                    color="black" if report.passed else FAIL_COLOUR)
    handles = [matplotlib.lines.Line2D([], [], color=RECORDED_COLOUR, linewidth=1.6, label="recorded (config)"),
               matplotlib.lines.Line2D([], [], color=NEW_COLOUR, linewidth=1.6, label="new (this run)")]
    figure.legend(handles=handles, loc="lower center", ncol=2, fontsize=9, frameon=False)
    figure.tight_layout(rect=(0, 0.035, 1, 0.97 - 0.02 * title.count(chr(10))))
    buffer = io.BytesIO()
    # A fixed Software tag and no date keep the bytes the same run to run.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": "chanstats"})
    plt.close(figure)
    return buffer.getvalue()


def _histograms(config, report) -> tuple[RecordedHistogram | None, RecordedHistogram | None]:
    """(recorded, new), each ``None`` when absent; the new one in the recorded bins."""
    if not report.same_channels or report.result is None:
        return None, None
    recorded = None
    if config.get("histogram"):
        recorded = RecordedHistogram.from_config(config["histogram"], len(report.channels_old), report.source)
    histogram = report.result.histogram
    new = None if histogram is None else RecordedHistogram.of(histogram, recorded.width if recorded else None)
    return recorded, new


def _properties(config, report) -> tuple[ImageProperties | None, ImageProperties | None]:
    """(recorded, new) per-image properties, each ``None`` when absent."""
    if not report.same_channels or report.result is None:
        return None, None
    recorded = None
    if config.get("image_properties"):
        recorded = ImageProperties.from_config(config["image_properties"], len(report.channels_old), report.source)
    return recorded, report.result.image_properties()


def _missing(axis, text: str, y: float = 0.5) -> None:
    axis.text(0.5, y, text, ha="center", va="center", transform=axis.transAxes, fontsize=9, color="grey",
              bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})


def _histogram_panel(axis, histograms, c, scale, report, name) -> None:
    axis.set_xlabel("value ([0, 1] scale)", fontsize=8)
    axis.set_ylabel("share of pixels per bin", fontsize=8)
    axis.tick_params(labelsize=7)
    recorded, new = histograms
    if new is None:
        _missing(axis, "no histogram " + ("counted by this run" if recorded else "on either side")
                 + "\n(integer images, percentiles on)")
        axis.set_xticks([]), axis.set_yticks([])
        return
    width = new.width
    old_counts = recorded.channels[c] if recorded else BinnedCounts(0, np.zeros(0, dtype=np.uint64))
    new_counts = new.channels[c]
    positions, p, q = aligned(old_counts, new_counts, width, scale)
    if recorded is None:
        _missing(axis, "no histogram recorded in the config:\nthe new one alone, nothing compared", y=0.85)
    if p.sum() > 0:
        p = p / p.sum()
        axis.fill_between(positions, p, step="mid", color=RECORDED_COLOUR, alpha=0.25, linewidth=0)
        axis.step(positions, p, where="mid", color=RECORDED_COLOUR, linewidth=1.6)
    if q.sum() > 0:
        q = q / q.sum()
        axis.step(positions, q, where="mid", color=NEW_COLOUR, linewidth=1.0)
    if not positions.size:
        return
    # Saturated bins (0 and 255 of clipped photos) would flatten everything else: cap the y axis
    # near the tallest ordinary bin and say the spikes go beyond it.
    ordinary = np.sort(np.concatenate([p, q]))
    top = ordinary[int(0.99 * (ordinary.size - 1))] * 1.6 if ordinary.size > 20 else ordinary[-1] * 1.1
    if top > 0 and ordinary[-1] > top:
        axis.set_ylim(0, top)
        axis.text(0.99, 0.98, "taller bins clipped", ha="right", va="top", transform=axis.transAxes, fontsize=7, color="grey")
    else:
        axis.set_ylim(0, None)
    lines = []
    for test in report.tests:
        if test.channel == name and test.test in ("wasserstein", "jsd", "psi"):
            mark = "" if test.passed else "  ✗"
            lines.append(f"{test.test} {test.value:.4f} (max {test.threshold:g}){mark}")
    if lines:
        axis.text(0.02, 0.97, "\n".join(lines), ha="left", va="top", transform=axis.transAxes, fontsize=7.5,
                  family="monospace", bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})


def _brightness_panel(axis, properties, c, report, name) -> None:
    axis.set_xlabel("per-image mean (brightness)", fontsize=8)
    axis.set_ylabel("share of images ≤ x", fontsize=8)
    axis.tick_params(labelsize=7)
    if properties[1] is None:
        _missing(axis, "no per-image properties")
        axis.set_xticks([]), axis.set_yticks([])
        return
    if properties[0] is None:
        _missing(axis, "no per-image properties recorded in the config:\nthe new ones alone, nothing compared", y=0.85)
    # The recorded line is drawn wider, so that it still shows under an identical new one.
    for side, colour, width in zip(properties, (RECORDED_COLOUR, NEW_COLOUR), (2.6, 1.2)):
        if side is None:
            continue
        values = np.asarray(side.brightness[c])
        if values.size:
            axis.step(np.concatenate([[values[0]], values]), np.arange(values.size + 1) / values.size, where="post",
                      color=colour, linewidth=width)
    axis.set_ylim(0, 1.02)
    axis.grid(alpha=0.3)
    for test in report.tests:
        if test.channel == name and test.test == "ks_brightness":
            mark = "" if test.passed else "  ✗"
            axis.text(0.02, 0.97, f"KS D {test.value:.3f}, p {test.detail['p_value']:.3g}{mark}", ha="left", va="top",
                      transform=axis.transAxes, fontsize=7.5, family="monospace",
                      bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"})

"""Pictures: ``show --plot`` draws a config's per-channel histograms with its statistics marked;
``compare --plot`` draws each BatchNorm running estimate against the images it has seen.

The data each picture shows is prepared by plain numpy functions (:func:`channel_pictures`,
:func:`samples_seen`), so what is drawn can be checked without looking at pixels; the drawing
functions return a matplotlib ``Figure`` whose artists hold exactly those data.

matplotlib is an optional extra (``pip install 'chanstats[plot]'``), imported only here and only
when a picture is asked for; without it :func:`require_matplotlib` raises a clear error (before
any image is read, for ``compare``).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..errors import ChanstatsError
from .compare import Comparison, momentum_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..stats.batchnorm import RunningSettings

# Channel colours that say which channel it is; other bands take the tab10 cycle.
_CHANNEL_COLOURS = {"R": "#d62728", "G": "#2ca02c", "B": "#1f77b4", "L": "#555555", "A": "#9467bd"}
_EXACT_COLOUR = "black"
_RUNNING_COLOUR = "#e377c2"
_MOMENTUM_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ChanstatsError("--plot needs matplotlib, an optional extra: pip install 'chanstats[plot]'") from None


@dataclass
class ChannelPicture:
    """What one channel's panel of ``show --plot`` shows, on the config's [0, 1] scale (pipeline
    units for float output): the histogram as bin ``edges`` and the fraction of the channel's
    pixels in each bin (``None`` when the config holds no histogram), the exact mean and std, the
    BatchNorm running estimate (``None`` when the config has none), the ``(q, value)``
    percentiles and the smallest and largest value."""

    name: str
    mean: float
    std: float
    running_mean: float | None
    running_std: float | None
    percentiles: list[tuple[float, float]] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    edges: np.ndarray | None = None
    fractions: np.ndarray | None = None


def channel_pictures(config: dict[str, Any]) -> list[ChannelPicture]:
    """One :class:`ChannelPicture` per channel of a written config (``compute --histogram`` adds
    the histogram; without it the panels show the statistics alone)."""
    exact = config["exact"]
    channels = config.get("channels") or [str(c) for c in range(len(exact["mean"]))]
    running = config.get("running") or {}
    section = config.get("percentiles") or {}
    scale = config.get("scale") or 1
    histogram = config.get("histogram")
    pictures = []
    for c, name in enumerate(channels):
        picture = ChannelPicture(
            name=str(name),
            mean=float(exact["mean"][c]),
            std=float(exact["std"][c]),
            running_mean=_channel_value(running.get("mean"), c),
            running_std=_channel_value(running.get("std"), c),
            percentiles=[(float(q), float(row[c])) for q, row in zip(section.get("q", []), section.get("scaled", []))
                         if row[c] is not None],
            minimum=_scaled(exact.get("min"), c, scale),
            maximum=_scaled(exact.get("max"), c, scale),
        )
        if histogram is not None:
            recorded = histogram["channels"][c]
            counts = np.asarray(recorded["counts"], dtype=np.float64)
            total = counts.sum()
            # Bin k holds the raw values low + k·width .. low + (k + 1)·width - 1: its edges are
            # drawn half a value outside them, so that a bin is centred on the values it holds.
            raw_edges = recorded["low"] - 0.5 + histogram["bin_width"] * np.arange(counts.size + 1)
            picture.edges = raw_edges / scale
            picture.fractions = counts / total if total else counts
        pictures.append(picture)
    return pictures


def _scaled(raw: Sequence[float | None] | None, channel: int, scale: float) -> float | None:
    value = _channel_value(raw, channel)
    return None if value is None else value / scale


def _channel_value(values: Sequence[float] | None, channel: int) -> float | None:
    if not values or values[channel] is None:
        return None
    value = float(values[channel])
    return value if math.isfinite(value) else None


def samples_seen(settings: "RunningSettings", samples: int, epochs: int = 1) -> np.ndarray:
    """How many samples the running estimate had seen after each of its batches: what
    ``compare --plot`` puts on the x axis, so that runs with different batch sizes line up.

    Each epoch of ``samples / epochs`` samples is cut into ``batch_size`` batches, the last one
    partial or dropped (``drop_last``), as the simulation batches them.

    >>> from chanstats.options import running_settings
    >>> samples_seen(running_settings(batch_size=4), 10).tolist()
    [4, 8, 10]
    >>> samples_seen(running_settings(batch_size=4, drop_last=True), 20, epochs=2).tolist()
    [4, 8, 12, 16]
    """
    per_epoch, size = samples // epochs, int(settings.batch_size)
    kept = per_epoch - per_epoch % size if settings.drop_last else per_epoch
    ends = np.minimum(np.arange(size, kept + size, size), kept) if kept else np.zeros(0, dtype=np.int64)
    return np.concatenate([ends + epoch * kept for epoch in range(epochs)]).astype(np.int64)


def config_png(config: dict[str, Any], source: str = "config") -> bytes:
    """``show --plot``: :func:`draw_config` as PNG bytes."""
    return _png(draw_config(config, source))


def plot_png(comparison: Comparison) -> bytes:
    """``compare --plot``: :func:`draw_comparison` as PNG bytes."""
    return _png(draw_comparison(comparison))


def draw_config(config: dict[str, Any], source: str = "config") -> "Figure":
    """One panel per channel: the histogram (share of the channel's pixels per bin), the
    percentiles as dotted lines labelled at the bottom, and above the histogram the exact
    mean ± std (black) and the BatchNorm running estimate ± its std (pink)."""
    plt = _pyplot()
    pictures = channel_pictures(config)
    columns = min(len(pictures), 4)
    rows = -(-len(pictures) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.6 * rows + 0.7), squeeze=False)
    for index, picture in enumerate(pictures):
        _draw_channel(axes[index // columns, index % columns], picture, index)
    for index in range(len(pictures), rows * columns):
        axes[index // columns, index % columns].set_visible(False)
    unit = "[0, 1] scale" if (config.get("exact") or {}).get("method", "integer") == "integer" else "pipeline units"
    count = config.get("count") or {}
    images = count.get("images")
    figure.suptitle(f"{source}: {images} images, per-channel values ({unit})", fontsize=11)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.07 if rows == 1 else 0.04, 1, 1))
    return figure


def _draw_channel(axis, picture: ChannelPicture, index: int) -> None:
    colour = _CHANNEL_COLOURS.get(picture.name, f"C{index % 10}")
    low, high = _x_range(picture)
    if picture.fractions is not None:
        percent = 100 * picture.fractions
        axis.stairs(percent, picture.edges, fill=True, color=colour, alpha=0.35, label="histogram")
        axis.stairs(percent, picture.edges, color=colour, linewidth=0.8)
        peak = _display_peak(percent)
        for k in np.flatnonzero(percent > peak):  # a spike (e.g. black borders) runs off the top: say how high
            centre = float(picture.edges[k] + picture.edges[k + 1]) / 2
            axis.annotate(f"{percent[k]:.1f}%", (centre, peak), xytext=(3, -2), textcoords="offset points", fontsize=6.5,
                          color=colour, ha="left", va="top")
        axis.set_ylabel("% of pixels")
    else:
        peak = 1.0
        axis.set_yticks([])
        axis.text(0.5, 0.45, "no histogram in this config\n(compute --histogram)", transform=axis.transAxes,
                  ha="center", va="center", fontsize=8, color="0.4")
    axis.set_ylim(0, peak * 1.42)
    axis.errorbar(picture.mean, peak * 1.3, xerr=picture.std, fmt="o", color=_EXACT_COLOUR, capsize=4, markersize=4,
                  linewidth=1.4, label="exact mean ± std")
    title = f"{picture.name}: mean {picture.mean:.4f}, std {picture.std:.4f}"
    if picture.running_mean is not None and picture.running_std is not None:
        axis.errorbar(picture.running_mean, peak * 1.16, xerr=picture.running_std, fmt="s", color=_RUNNING_COLOUR,
                      capsize=4, markersize=4, linewidth=1.4, label="BatchNorm running mean ± std")
        title += f"\nBatchNorm running: mean {picture.running_mean:.4f}, std {picture.running_std:.4f}"
    for value, _ in _grouped_percentiles(picture.percentiles, 0.0):
        axis.axvline(value, color="0.35", linestyle=":", linewidth=0.9)
    for value, qs in _grouped_percentiles(picture.percentiles, 0.035 * (high - low)):
        axis.text(value, peak * 0.03, " p" + ",".join(f"{q:g}" for q in qs), rotation=90, fontsize=6.5, color="0.25",
                  ha="right", va="bottom", bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 0.5})
    if picture.percentiles:
        axis.plot([], [], color="0.35", linestyle=":", linewidth=0.9, label="percentiles")
    axis.set_xlim(low, high)
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.25)


def _display_peak(percent: np.ndarray) -> float:
    """The height the y axis shows: the tallest bin, unless a few spikes stand far above the rest
    (then 1.6 times the 98th percentile of the bin heights, and the spikes are labelled)."""
    tallest = float(percent.max()) or 1.0
    occupied = percent[percent > 0]
    if occupied.size < 20:
        return tallest
    return min(tallest, 1.6 * float(np.percentile(occupied, 98)))


def _grouped_percentiles(percentiles: list[tuple[float, float]], closer_than: float) -> list[tuple[float, list[float]]]:
    """Percentiles whose values lie within ``closer_than`` of the previous one share one label
    (at the first), so that labels do not overlap: 8-bit photos often have p0.5, p1 and p2 all at 0."""
    grouped: list[tuple[float, list[float]]] = []
    for q, value in sorted(percentiles, key=lambda item: (item[1], item[0])):
        if grouped and value - grouped[-1][0] <= closer_than:
            grouped[-1][1].append(q)
        else:
            grouped.append((value, [q]))
    return grouped


def _x_range(picture: ChannelPicture) -> tuple[float, float]:
    """The values of the data: the histogram's occupied bins, else the percentiles, the smallest
    and largest value and mean ± std. A
    BatchNorm estimate far off (a few batches from its start at 0 and 1) runs off the side; its
    numbers are in the panel's title."""
    if picture.fractions is not None and picture.fractions.any():
        # The channel's own occupied bins: the bins are shared by every channel, whose values may
        # lie far apart (one band of a raster spans three times another's range).
        occupied = np.flatnonzero(picture.fractions)
        low, high = float(picture.edges[occupied[0]]), float(picture.edges[occupied[-1] + 1])
        pad = 0.02 * (high - low)
        return low - pad, high + pad
    values = [picture.mean - picture.std, picture.mean + picture.std, *(v for _, v in picture.percentiles)]
    values += [v for v in (picture.minimum, picture.maximum) if v is not None]
    low, high = min(values), max(values)
    pad = 0.03 * (high - low or 1.0)
    return low - pad, high + pad


def draw_comparison(comparison: Comparison) -> "Figure":
    """A column per channel, running mean (top) and std (bottom) against the samples seen, the
    exact value as a black dashed line. Colour is the batch size, line style the momentum; the
    legends sit to the right, outside the axes. The y axes fit the last three quarters of every
    run, where the estimates settle, and leave the start-up from (0, 1) off the top or bottom."""
    plt = _pyplot()
    channels = comparison.channels
    epochs = max(1, comparison.epochs)
    figure, axes = plt.subplots(2, len(channels), figsize=(3.9 * len(channels) + 1.5, 6.4), squeeze=False, sharex=True)
    sizes = sorted({e.settings.batch_size for e in comparison.estimates})
    momenta = list(dict.fromkeys(momentum_label(e.settings) for e in comparison.estimates))
    colours = _batch_colours(sizes)
    styles = {m: _MOMENTUM_STYLES[i % len(_MOMENTUM_STYLES)] for i, m in enumerate(momenta)}
    settled: list[list[list[float]]] = [[[] for _ in channels] for _ in range(2)]
    for estimate in comparison.estimates:
        if estimate.trajectory_mean is None or estimate.trajectory_var is None:
            raise ChanstatsError("the comparison holds no trajectories (compare(..., trajectory=True))")
        s = estimate.settings
        seen = samples_seen(s, comparison.samples, epochs)
        start = len(seen) // 4
        for row, values in enumerate((estimate.trajectory_mean, np.sqrt(estimate.trajectory_var))):
            for c in range(len(channels)):
                axes[row, c].plot(seen, values[:, c], color=colours[s.batch_size], linestyle=styles[momentum_label(s)],
                                  linewidth=1.1, alpha=0.9)
                settled[row][c].extend(values[start:, c].tolist())
    for c, name in enumerate(channels):
        for row, (exact, what) in enumerate(((comparison.exact_mean[c], "mean"), (comparison.exact_std[c], "std"))):
            axis = axes[row, c]
            axis.axhline(exact, color=_EXACT_COLOUR, linestyle="--", linewidth=1.3)
            axis.set_title(f"{name}: running {what} (exact {exact:.4f})", fontsize=9)
            axis.set_ylim(*_settled_range(settled[row][c] + [exact]))
            axis.grid(alpha=0.3)
        axes[1, c].set_xlabel("images seen" if epochs == 1 else "samples seen (images × epochs)")
    axes[0, 0].set_ylabel("running mean")
    axes[1, 0].set_ylabel("running std")
    _comparison_legends(figure, colours, styles)
    figure.tight_layout(rect=(0, 0, 1 - 1.3 / figure.get_figwidth(), 1))
    return figure


def _batch_colours(sizes: list[int]) -> dict[int, Any]:
    import matplotlib

    palette = matplotlib.colormaps["viridis"]
    if len(sizes) == 1:
        return {sizes[0]: palette(0.35)}
    # Stop short of viridis' pale yellow end, which is hard to see on white.
    return {size: palette(0.85 * i / (len(sizes) - 1)) for i, size in enumerate(sizes)}


def _settled_range(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    low, high = min(finite), max(finite)
    pad = 0.15 * (high - low) or 0.05 * (abs(high) or 1.0)
    return low - pad, high + pad


def _comparison_legends(figure, colours: dict[int, Any], styles: dict[str, Any]) -> None:
    from matplotlib.lines import Line2D

    size_handles = [Line2D([], [], color=colour, linewidth=2.2) for colour in colours.values()]
    style_handles = [Line2D([], [], color="0.3", linestyle=style, linewidth=1.3) for style in styles.values()]
    exact_handle = [Line2D([], [], color=_EXACT_COLOUR, linestyle="--", linewidth=1.3)]
    # Stacked in the right margin, outside every axes, so that no curve is ever covered.
    place = {"loc": "upper left", "fontsize": 8, "title_fontsize": 8, "frameon": False, "handlelength": 2.6,
             "alignment": "left"}
    x = 1 - 1.2 / figure.get_figwidth()
    sizes = figure.legend(size_handles, [str(size) for size in colours], title="batch size", bbox_to_anchor=(x, 0.96), **place)
    figure.add_artist(sizes)
    lower = 0.96 - 0.045 * (len(colours) + 2)
    momenta = figure.legend(style_handles, list(styles), title="momentum", bbox_to_anchor=(x, lower), **place)
    figure.add_artist(momenta)
    figure.legend(exact_handle, ["exact"], bbox_to_anchor=(x, lower - 0.045 * (len(styles) + 2)), **place)


def _pyplot():
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display needed; never opens a window
    import matplotlib.pyplot as plt

    return plt


def _png(figure: "Figure") -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    # A fixed Software tag and no date keep the bytes the same run to run.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": "chanstats"})
    plt.close(figure)
    return buffer.getvalue()

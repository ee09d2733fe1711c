"""The human summary of a config: exact vs running statistics per channel, then a paste-ready
``Normalize`` line (what ``compute`` prints on stderr and ``chanstats show`` prints)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .result import Result


def summary(result: Result) -> str:
    """The human table: exact vs running per channel, then a paste-ready Normalize line."""
    return config_summary(result.to_dict())


def config_summary(config: dict[str, Any]) -> str:
    """:func:`summary` of a config as written (``chanstats show`` reads it back from a file)."""
    exact, running, count = config["exact"], config.get("running") or {}, config.get("count") or {}
    channels = config.get("channels") or [str(c) for c in range(len(exact["mean"]))]
    unit = "[0,1] scale" if exact.get("method", "integer") == "integer" else "pipeline output units"
    pixels = count.get("pixels")
    lines = [
        f"chanstats {config.get('chanstats')}: {_counted(count.get('images'), 'image')}{_videos(count)}, "
        f"{_counted(count.get('samples'), 'sample')}, "
        f"{pixels:,} pixels per channel ({unit}, std ddof 0)" if isinstance(pixels, int) else
        f"chanstats {config.get('chanstats')}: {_counted(count.get('images'), 'image')} ({unit}, std ddof 0)",
        f"{'channel':<8} {'mean':>10} {'std':>10} {'run mean':>10} {'run std':>10} {'gap mean':>10} {'gap std':>10}",
    ]
    run_mean = running.get("mean") or [math.nan] * len(channels)
    run_std = running.get("std") or [math.nan] * len(channels)
    for c, name in enumerate(channels):
        mean, std = exact["mean"][c], exact["std"][c]
        lines.append(
            f"{name:<8} {mean:>10.6f} {std:>10.6f} {run_mean[c]:>10.6f} "
            f"{run_std[c]:>10.6f} {run_mean[c] - mean:>+10.6f} {run_std[c] - std:>+10.6f}"
        )
    if running:
        momentum = running.get("momentum")
        momentum = "none (cumulative)" if momentum in (None, "none") else f"{float(momentum):g}"
        order = f"shuffled, seed {running.get('seed')}" if running.get("shuffle") else "listing order"
        lines.append(
            f"running: BatchNorm {running.get('convention')} convention, momentum {momentum}, batch size "
            f"{running.get('batch_size')}, {running.get('batches')} batches ({order})"
        )
    if count.get("dropped_alpha"):
        mode = (config.get("options") or {}).get("mode")
        lines.append(f"note: {count['dropped_alpha']} images had transparency; --mode {mode} dropped it")
    skipped = config.get("skipped") or []
    if skipped:
        lines.append(f"skipped {len(skipped)} bad images:")
        lines.extend(f"  {item['path']}: {item['error']}" for item in skipped)
    if config.get("sample") is not None:
        lines.extend(_sample_lines(config["sample"], channels))
    mean = ", ".join(f"{v:.6g}" for v in exact["mean"])
    std = ", ".join(f"{v:.6g}" for v in exact["std"])
    lines.append(f"transforms.Normalize(mean=[{mean}], std=[{std}])")
    return "\n".join(lines)


def _sample_lines(sample: dict[str, Any], channels: list[str]) -> list[str]:
    lines = [
        f"sampled: {sample['images']} of {sample['of']} images ({sample['fraction']:.2%}, seed {sample['seed']}); "
        f"the numbers above are exact for the sample"
    ]
    ci = sample.get("ci") or {}
    if ci.get("mean") is None:
        lines.append("  (no confidence interval from fewer than 2 images)")
        return lines
    level = f"{sample['level']:.0%}"
    for c, name in enumerate(channels):
        (mean_lo, mean_hi), (std_lo, std_hi) = ci["mean"][c], ci["std"][c]
        lines.append(f"  {name:<6} {level} CI mean [{mean_lo:.6f}, {mean_hi:.6f}]  std [{std_lo:.6f}, {std_hi:.6f}]")
    return lines


def _videos(count: dict[str, Any]) -> str:
    """`` (2 videos, 48 frames)`` in a summary of videos; nothing for images."""
    if "videos" not in count:
        return ""
    return f" ({_counted(count['videos'], 'video')}, {_counted(count.get('frames'), 'frame')})"


def _counted(number: Any, noun: str) -> str:
    """``1 image``, ``2 images`` (a count missing from a config is shown as it is)."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"

"""``compare``: how far BatchNorm's running estimate lands from the exact statistics, for every
combination of convention, batch size, momentum and shuffle seed — from one decoding pass.

All combinations are simulated from the per-sample moments table of a single
:func:`chanstats.compute` result, so an estimate here equals the ``running`` block of a
``compute`` run with the same settings. Gaps are running − exact; relative gaps divide by the
exact value. Values are on the [0, 1] scale (pipeline units for float output); std is the square
root of the running variance as the framework stores it (Bessel-corrected in torch, biased in Keras).
"""

from __future__ import annotations

import csv
import io
import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..errors import BadSpecError
from ..options import running_settings
from ..stats.batchnorm import RunningEstimate, RunningSettings, simulate_many
from .result import Result

CSV_COLUMNS = (
    "convention", "batch_size", "momentum", "seed", "batches", "channel",
    "exact_mean", "running_mean", "gap_mean", "rel_gap_mean",
    "exact_std", "running_std", "gap_std", "rel_gap_std",
)


def momentum_label(settings: RunningSettings) -> str:
    """``"none"`` for the cumulative average, else the momentum in the convention's meaning."""
    return "none" if settings.cumulative else f"{settings.effective_momentum:g}"


def combinations(
    conventions: Sequence[str],
    batch_sizes: Sequence[int],
    momenta: Sequence[str],
    seeds: Sequence[int],
    *,
    shuffle: bool = True,
    drop_last: bool = False,
) -> tuple[list[RunningSettings], list[str]]:
    """Every (convention, batch size, momentum, seed) as settings, plus notes on combinations that
    do not exist (``none`` under keras). Momenta are in each convention's own meaning, as in
    ``compute --momentum``; ``default`` is the convention's default (torch 0.1, keras 0.99).
    Without shuffling every seed gives the same batches, so only the first seed is kept."""
    for name, values in (("convention", conventions), ("batch size", batch_sizes), ("momentum", momenta), ("seed", seeds)):
        if not values:
            raise BadSpecError(f"compare needs at least one {name}")
    if not shuffle:
        seeds = list(seeds)[:1]
    settings, notes = [], []
    for convention, batch_size, momentum, seed in itertools.product(conventions, batch_sizes, momenta, seeds):
        if convention == "keras" and str(momentum).lower() == "none":
            note = "momentum none (cumulative average) exists only in the torch convention: skipped for keras"
            if note not in notes:
                notes.append(note)
            continue
        settings.append(running_settings(convention, momentum, int(batch_size), shuffle, int(seed), drop_last))
    if not settings:
        raise BadSpecError("no valid combination to simulate")
    return list(dict.fromkeys(settings)), notes


@dataclass
class Comparison:
    """The exact statistics and one running estimate per combination (trajectories optional);
    ``samples`` and ``epochs`` are those of the run simulated (the images seen of a plot)."""

    channels: list[str]
    exact_mean: list[float]
    exact_std: list[float]
    estimates: list[RunningEstimate]
    notes: list[str]
    samples: int = 0
    epochs: int = 1

    def rows(self) -> Iterable[dict]:
        """One row per combination and channel (the ``--csv`` rows)."""
        for estimate in self.estimates:
            s = estimate.settings
            for c, name in enumerate(self.channels):
                mean, std = float(estimate.mean[c]), float(estimate.std[c])
                yield {
                    "convention": s.convention,
                    "batch_size": s.batch_size,
                    "momentum": momentum_label(s),
                    "seed": s.seed if s.shuffle else "",
                    "batches": estimate.batches,
                    "channel": name,
                    "exact_mean": self.exact_mean[c],
                    "running_mean": mean,
                    "gap_mean": mean - self.exact_mean[c],
                    "rel_gap_mean": _relative(mean, self.exact_mean[c]),
                    "exact_std": self.exact_std[c],
                    "running_std": std,
                    "gap_std": std - self.exact_std[c],
                    "rel_gap_std": _relative(std, self.exact_std[c]),
                }

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.rows():
            writer.writerow({k: (repr(v) if isinstance(v, float) and math.isfinite(v) else ("" if isinstance(v, float) else v)) for k, v in row.items()})
        return out.getvalue()

    def table(self) -> str:
        """The human table, one line per combination and channel."""
        exact = ", ".join(f"{c} {m:.6f}/{s:.6f}" for c, m, s in zip(self.channels, self.exact_mean, self.exact_std))
        lines = [
            f"exact mean/std: {exact}",
            f"{'conv':<6} {'batch':>6} {'momentum':>8} {'seed':>5} {'ch':<3} {'run mean':>10} {'gap':>10} {'rel':>8} "
            f"{'run std':>10} {'gap':>10} {'rel':>8}",
        ]
        for row in self.rows():
            lines.append(
                f"{row['convention']:<6} {row['batch_size']:>6} {row['momentum']:>8} {row['seed']!s:>5} {row['channel']:<3} "
                f"{row['running_mean']:>10.6f} {row['gap_mean']:>+10.6f} {_percent(row['rel_gap_mean']):>8} "
                f"{row['running_std']:>10.6f} {row['gap_std']:>+10.6f} {_percent(row['rel_gap_std']):>8}"
            )
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def compare(result: Result, settings: Sequence[RunningSettings], *, notes: Sequence[str] = (), trajectory: bool = False) -> Comparison:
    """Simulate every ``settings`` on ``result``'s per-sample table (no pixel is read again)."""
    if result.table is None:
        raise BadSpecError("this result has no per-sample table to simulate from")
    epochs = max(1, result.samples // max(1, result.images))  # the table holds every epoch of every image
    if result.options.get("video_sample") == "frame":  # each video gives several samples an epoch
        epochs = int(result.options.get("epochs", 1))
    estimates = simulate_many(result.table, list(settings), epochs=epochs, trajectory=trajectory)
    return Comparison(list(result.channels), result.mean, result.std, estimates, list(notes), len(result.table), epochs)


def _relative(value: float, exact: float) -> float:
    return (value - exact) / exact if exact != 0 else math.nan


def _percent(value: float) -> str:
    return f"{100 * value:+.2f}%" if math.isfinite(value) else "n/a"

"""What a first ``BatchNorm2d`` layer's running averages would estimate on the same data.

Exact semantics (all arithmetic in float64):

* Batches. Each epoch is shuffled on its own, like a ``DataLoader(shuffle=True)`` epoch, with
  ``np.random.default_rng([seed, epoch]).permutation(epoch_len)`` (listing order when
  ``shuffle=False``), cut into consecutive batches of ``batch_size`` samples; the last, partial batch
  is kept unless ``drop_last``. With ``epochs=K`` the table holds K consecutive epochs of equal length.
* Batch statistics pool all N·H·W pixels of a channel, as ``BatchNorm2d`` does in training: the
  closed-form Chan merge of the samples' (count, mean, M2), ``n_b = Σ nᵢ``,
  ``mean_b = Σ nᵢ·meanᵢ / n_b``, ``M2_b = Σ M2ᵢ + Σ nᵢ·(meanᵢ − mean_b)²``.
* torch: ``running_mean = m·mean_b + (1 − m)·running_mean`` and ``running_var`` is the running
  average of the Bessel-corrected batch variance ``M2_b / (n_b − 1)``, from 0 and 1, m = 0.1.
  ``cumulative`` (``BatchNorm2d(momentum=None)``) uses m = 1/k for the k-th batch, so the result
  is the plain average of the batch statistics. A batch with a single value per channel is an
  error, as in torch. eps only enters when normalizing, never the running statistics.
* keras: ``moving = m·moving + (1 − m)·batch`` with the biased variance ``M2_b / n_b``, m = 0.99,
  from 0 and 1.

``var`` is the running variance exactly as the framework stores it; ``std`` is its square root.
This module never imports torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from numpy.typing import NDArray

from ..errors import BadSpecError, ChanstatsError
from .moments import MomentsTable

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class Convention:
    """How one framework's BatchNorm layer updates its running statistics from a batch."""

    name: str
    default_momentum: float
    # The smallest number of pixels per channel a batch may not have (torch refuses one value).
    too_few_pixels: int
    has_cumulative_average: bool

    def weights(self, momentum: float) -> tuple[float, float]:
        """(weight of the batch statistic, weight of the old running value) for ``momentum``."""
        raise NotImplementedError

    def batch_variance_divisor(self, counts: Floats) -> Floats:
        """What a batch's M2 is divided by to give the variance the layer averages."""
        raise NotImplementedError


class _TorchRunningAverage(Convention):
    """``torch.nn.BatchNorm2d``: ``running = (1 − m)·running + m·batch`` with m = 0.1, where the
    variance averaged is the Bessel-corrected batch variance ``M2_b / (n_b − 1)``; ``momentum=None``
    is a cumulative average (m = 1/k for the k-th batch)."""

    def weights(self, momentum: float) -> tuple[float, float]:
        return momentum, 1.0 - momentum

    def batch_variance_divisor(self, counts: Floats) -> Floats:
        return counts - 1.0


class _KerasMovingAverage(Convention):
    """Keras ``BatchNormalization``: ``moving = m·moving + (1 − m)·batch`` with m = 0.99, where the
    variance averaged is the biased batch variance ``M2_b / n_b``."""

    def weights(self, momentum: float) -> tuple[float, float]:
        return 1.0 - momentum, momentum

    def batch_variance_divisor(self, counts: Floats) -> Floats:
        return counts


TORCH = _TorchRunningAverage("torch", 0.1, too_few_pixels=1, has_cumulative_average=True)
KERAS = _KerasMovingAverage("keras", 0.99, too_few_pixels=0, has_cumulative_average=False)
CONVENTIONS: dict[str, Convention] = {c.name: c for c in (TORCH, KERAS)}
DEFAULT_MOMENTUM: dict[str, float] = {name: c.default_momentum for name, c in CONVENTIONS.items()}


@dataclass(frozen=True)
class RunningSettings:
    """How the simulated layer is trained: convention, momentum and data-loader batching.

    ``momentum`` is in the convention's own meaning (torch: weight of the new batch; keras: weight
    of the old value); ``None`` means the convention's default.
    """

    convention: str = "torch"
    momentum: float | None = None
    cumulative: bool = False
    batch_size: int = 64
    shuffle: bool = True
    seed: int = 0
    drop_last: bool = False

    @property
    def effective_momentum(self) -> float | None:
        """The momentum actually used; ``None`` for the cumulative average (m = 1/k)."""
        if self.cumulative:
            return None
        return DEFAULT_MOMENTUM.get(self.convention, math.nan) if self.momentum is None else self.momentum

    def to_dict(self) -> dict[str, object]:
        """The settings as the config records them (momentum ``"none"`` for the cumulative average)."""
        return {
            "convention": self.convention,
            "momentum": "none" if self.cumulative else self.effective_momentum,
            "batch_size": self.batch_size,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "drop_last": self.drop_last,
        }

    def validate(self) -> RunningSettings:
        """Return ``self``, or raise :class:`BadSpecError` naming the first unusable value."""
        if self.convention not in DEFAULT_MOMENTUM:
            raise BadSpecError(f"unknown BatchNorm convention {self.convention!r}; use 'torch' or 'keras'")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, Integral) or self.batch_size < 1:
            raise BadSpecError(f"batch size must be a positive integer, got {self.batch_size!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, Integral) or self.seed < 0:
            raise BadSpecError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.cumulative and not CONVENTIONS[self.convention].has_cumulative_average:
            raise BadSpecError("a cumulative average (torch momentum=None) does not exist in the keras convention")
        if self.cumulative and self.momentum is not None:
            raise BadSpecError(f"cumulative averaging takes no momentum, got momentum={self.momentum!r}")
        m = self.momentum
        if m is not None and (isinstance(m, bool) or not isinstance(m, Real) or not 0.0 < m <= 1.0):
            raise BadSpecError(f"momentum must lie in (0, 1], got {m!r}")
        return self

    def _schedule_key(self) -> tuple[int, bool, int, bool]:
        return (int(self.batch_size), bool(self.shuffle), int(self.seed), bool(self.drop_last))


@dataclass(frozen=True)
class RunningEstimate:
    """Running statistics after the last batch; arrays are float64, (C,) or (batches, C)."""

    settings: RunningSettings
    batches: int
    mean: NDArray[np.float64]
    var: NDArray[np.float64]
    std: NDArray[np.float64]
    trajectory_mean: NDArray[np.float64] | None = None
    trajectory_var: NDArray[np.float64] | None = None


def _schedule(n_samples: int, settings: RunningSettings, epochs: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Table rows in visiting order and the offset into them where each batch starts."""
    if isinstance(epochs, bool) or not isinstance(epochs, Integral) or epochs < 1:
        raise BadSpecError(f"epochs must be a positive integer, got {epochs!r}")
    if n_samples % epochs:
        raise BadSpecError(f"{n_samples} samples do not split into {epochs} epochs of equal length")
    epoch_len, size = n_samples // epochs, int(settings.batch_size)
    kept = epoch_len - epoch_len % size if settings.drop_last else epoch_len
    rows, starts = [], []
    for epoch in range(epochs):
        if settings.shuffle:
            order = np.random.default_rng([int(settings.seed), epoch]).permutation(epoch_len)
        else:
            order = np.arange(epoch_len)
        if epochs == 1:  # the common case: no shifted copy and no concatenation of a row per sample
            return order[:kept].astype(np.intp, copy=False), np.arange(0, kept, size, dtype=np.intp)
        rows.append(order[:kept] + epoch * epoch_len)
        starts.append(np.arange(0, kept, size) + epoch * kept)
    return np.concatenate(rows).astype(np.intp), np.concatenate(starts).astype(np.intp)


def batch_order(n_samples: int, settings: RunningSettings, epochs: int = 1) -> list[NDArray[np.intp]]:
    """Table row indices of each batch, in training order, over all ``epochs``.

    >>> [b.tolist() for b in batch_order(5, RunningSettings(batch_size=2, shuffle=False))]
    [[0, 1], [2, 3], [4]]
    """
    settings.validate()
    rows, starts = _schedule(n_samples, settings, epochs)
    return np.split(rows, starts[1:]) if len(starts) else []


# Batches are pooled a slice of about this many samples at a time, so that the temporaries stay a
# few megabytes whatever the dataset size; each batch only ever involves its own rows, so slicing
# does not change a single bit of the result.
_POOL_ROWS = 1 << 15


def _pool(
    table: MomentsTable, rows: NDArray[np.intp], starts: NDArray[np.intp]
) -> tuple[NDArray[np.int64], Floats, Floats]:
    """Per-batch pixel count, mean and M2 per channel: the exact pooling of the batch's samples."""
    ends = np.append(starts[1:], len(rows))
    per_slice = max(1, _POOL_ROWS // int((ends - starts).max()))
    pieces = [
        _pool_slice(table, rows[starts[first] : ends[last - 1]], starts[first:last] - starts[first])
        for first, last in ((i, min(i + per_slice, len(starts))) for i in range(0, len(starts), per_slice))
    ]
    n_b, mean_b, m2_b = (np.concatenate(parts) for parts in zip(*pieces))
    return n_b, mean_b, m2_b


def _pool_slice(
    table: MomentsTable, rows: NDArray[np.intp], starts: NDArray[np.intp]
) -> tuple[NDArray[np.int64], Floats, Floats]:
    # Counts are per sample, or per sample and channel where nodata left pixels out (the simulation
    # then models a normalization that ignores nodata, as a masked BatchNorm would).
    counts = _gather(table.count, rows).astype(np.int64)
    weights = _by_channel(counts.astype(np.float64))
    means = _gather(table.mean, rows)
    n_b = np.add.reduceat(counts, starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_b = np.add.reduceat(weights * means, starts, axis=0) / _by_channel(n_b)
    deviation = means - np.repeat(mean_b, np.diff(np.append(starts, len(rows))), axis=0)
    m2_within = np.add.reduceat(_gather(table.m2, rows), starts, axis=0)
    m2_b = m2_within + np.add.reduceat(weights * deviation**2, starts, axis=0)
    return n_b, mean_b, m2_b


def _gather(values: np.ndarray, rows: NDArray[np.intp]) -> np.ndarray:
    """``values[rows]``. np.take is several times faster on a contiguous array, but it first makes
    a contiguous copy of the whole of any other: of every sample's means at each slice when they
    are a strided view of the packed rows (as the columns on disk are)."""
    return np.take(values, rows, axis=0) if values.flags.c_contiguous else values[rows]


def _by_channel(values: np.ndarray) -> np.ndarray:
    """Per-row values as a column that broadcasts over channels; per-channel ones as they are."""
    return values[:, None] if values.ndim == 1 else values


def _check_batches(
    n_b: NDArray[np.int64], starts: NDArray[np.intp], n_rows: int, settings: RunningSettings
) -> None:
    if n_b.ndim == 2:  # per channel: the emptiest channel decides
        n_b = n_b.min(axis=1)
    smallest = CONVENTIONS[settings.convention].too_few_pixels
    bad = np.flatnonzero(n_b <= smallest)
    if bad.size == 0:
        return
    k = int(bad[0])
    size = (int(starts[k + 1]) if k + 1 < len(starts) else n_rows) - int(starts[k])
    what = f"batch {k + 1} ({size} sample(s), batch_size={settings.batch_size})"
    what += f" has {int(n_b[k])} pixel(s) per channel"
    if n_b[k] == 0:
        raise BadSpecError(f"{what}: no batch statistics exist")
    raise BadSpecError(
        f"{what}: torch.nn.BatchNorm2d raises 'Expected more than 1 value per channel when training'; "
        "use a larger batch size" + (" or drop_last" if size < settings.batch_size else "")
    )


def simulate_many(
    table: MomentsTable, settings_list: list[RunningSettings], *, epochs: int = 1, trajectory: bool = False
) -> list[RunningEstimate]:
    """:func:`simulate` for several settings; those sharing a batch schedule share the pooling and
    run their recurrences side by side. Results come in the order of ``settings_list``."""
    if len(table) == 0:
        raise ChanstatsError("no samples to simulate")
    for settings in settings_list:
        settings.validate()
    groups: dict[tuple[int, bool, int, bool], list[int]] = {}
    for i, settings in enumerate(settings_list):
        groups.setdefault(settings._schedule_key(), []).append(i)
    results: list[RunningEstimate | None] = [None] * len(settings_list)
    for members in groups.values():
        rows, starts = _schedule(len(table), settings_list[members[0]], epochs)
        if len(starts) == 0:
            s = settings_list[members[0]]
            raise BadSpecError(
                f"drop_last with batch_size={s.batch_size} > {len(table) // epochs} samples per epoch leaves no batch"
            )
        n_b, mean_b, m2_b = _pool(table, rows, starts)
        group = [settings_list[i] for i in members]
        for settings in group:
            _check_batches(n_b, starts, len(rows), settings)
        estimates = _recur(n_b, mean_b, m2_b, group, trajectory)
        for i, estimate in zip(members, estimates):
            results[i] = estimate
    return [r for r in results if r is not None]


def _recur(
    n_b: NDArray[np.int64], mean_b: Floats, m2_b: Floats, group: list[RunningSettings], trajectory: bool
) -> list[RunningEstimate]:
    batches, channels = mean_b.shape
    take = np.empty((batches, len(group), 1))  # weight of the batch statistic
    keep = np.empty((batches, len(group), 1))  # weight of the old running value
    var_in = np.empty((batches, len(group), channels))
    counts = _by_channel(n_b.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        for j, s in enumerate(group):
            convention = CONVENTIONS[s.convention]
            if s.cumulative:
                take[:, j, 0] = 1.0 / np.arange(1, batches + 1, dtype=np.float64)
                keep[:, j, 0] = 1.0 - take[:, j, 0]
            else:
                m = float(DEFAULT_MOMENTUM[s.convention] if s.momentum is None else s.momentum)
                # keras states the momentum as the weight of the old value, torch of the new batch
                take[:, j, 0], keep[:, j, 0] = convention.weights(m)
            var_in[:, j] = m2_b / convention.batch_variance_divisor(counts)
    mean = np.zeros((len(group), channels))
    var = np.ones((len(group), channels))
    path_mean = np.empty((batches, len(group), channels)) if trajectory else None
    path_var = np.empty((batches, len(group), channels)) if trajectory else None
    # Same products, same sum as torch's kernel (m·batch + (1 − m)·running) and Keras' assign.
    for b in range(batches):
        mean = take[b] * mean_b[b] + keep[b] * mean
        var = take[b] * var_in[b] + keep[b] * var
        if path_mean is not None and path_var is not None:
            path_mean[b], path_var[b] = mean, var
    return [
        RunningEstimate(
            settings=s,
            batches=batches,
            mean=mean[j].copy(),
            var=var[j].copy(),
            std=np.sqrt(var[j]),
            trajectory_mean=None if path_mean is None else path_mean[:, j].copy(),
            trajectory_var=None if path_var is None else path_var[:, j].copy(),
        )
        for j, s in enumerate(group)
    ]


def simulate(
    table: MomentsTable, settings: RunningSettings, *, epochs: int = 1, trajectory: bool = False
) -> RunningEstimate:
    """Running mean/var a BatchNorm layer trained on ``table``'s samples would hold (see module doc).

    ``table`` is in model units and so is the result. ``var`` is the variance as the framework
    stores it (torch: Bessel-corrected), not the ddof-0 variance that ``Normalize`` wants.

    >>> t = MomentsTable(np.array([2, 2]), np.array([[0.0], [1.0]]), np.array([[0.0], [0.0]]))
    >>> e = simulate(t, RunningSettings(batch_size=2, shuffle=False))
    >>> e.batches, e.mean.tolist(), e.var.tolist()  # one batch of pixels 0, 0, 1, 1: unbiased var 1/3
    (1, [0.05], [0.9333333333333333])
    """
    return simulate_many(table, [settings], epochs=epochs, trajectory=trajectory)[0]

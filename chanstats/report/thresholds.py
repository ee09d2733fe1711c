"""The thresholds of ``check`` and their defaults, in a module light enough for the command line
to take its defaults from (no numpy)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import BadSpecError

# Absolute, on the [0, 1] scale: 0.01 is 2.55 grey levels of an 8-bit image, and shifts a
# normalized input by about 0.04 of its std (typical std ≈ 0.25) — far below what changes training,
# yet far above float noise or a few ordinary images added to a dataset of hundreds.
DEFAULT_TOLERANCE = 0.01
# Wasserstein-1 is at least |Δ mean|, so it adds a verdict only above the mean tolerance: 0.02 on
# the [0, 1] scale (5 grey levels) is Evidently's default of 0.1 std for a typical image std of 0.2.
DEFAULT_MAX_WASSERSTEIN = 0.02
# In bits: 0.01 is a Jensen–Shannon distance (its square root) of 0.1, the scale of Evidently's and
# TFDV's usual 0.1 thresholds; the divergence of two honest samples of 100k pixels is ~1e-3.
DEFAULT_MAX_JSD = 0.01
# The usual reading of PSI: < 0.1 stable, 0.1–0.25 moderate, > 0.25 large; 0.2 fails before "large".
DEFAULT_MAX_PSI = 0.2
# KS statistic: the largest gap between the two cumulative distributions of a per-image property,
# i.e. 10 % of the images moved past each other; with 1000 images a side, chance alone exceeds it
# with probability below 1e-4.
DEFAULT_MAX_KS = 0.1
# And the p-value below which that gap counts: a small dataset needs a real difference to fail.
DEFAULT_KS_ALPHA = 0.05


@dataclass(frozen=True)
class Thresholds:
    """Every threshold of ``check``: ``tolerance`` on |Δ mean| and |Δ std| ([0, 1] scale),
    ``wasserstein`` ([0, 1] scale), ``jsd`` (bits), ``psi``, ``ks`` (statistic D) with ``ks_alpha``
    (p-value); a test fails when its value is above its threshold."""

    tolerance: float = DEFAULT_TOLERANCE
    wasserstein: float = DEFAULT_MAX_WASSERSTEIN
    jsd: float = DEFAULT_MAX_JSD
    psi: float = DEFAULT_MAX_PSI
    ks: float = DEFAULT_MAX_KS
    ks_alpha: float = DEFAULT_KS_ALPHA

    @classmethod
    def of(cls, **values: float | None) -> "Thresholds":
        """Thresholds with the given values (``None`` keeps a default), each checked."""
        chosen = cls(**{name: value for name, value in values.items() if value is not None})
        for name, value in asdict(chosen).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise BadSpecError(f"{name} must be a non-negative number, got {value!r}")
        if chosen.ks_alpha > 1:
            raise BadSpecError(f"ks_alpha must be a p-value between 0 and 1, got {chosen.ks_alpha!r}")
        return chosen

    def to_dict(self) -> dict[str, float]:
        return {name: float(value) for name, value in asdict(self).items()}

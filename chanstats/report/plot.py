"""``compare --plot``: each running estimate's trajectory over batches against the exact value.

matplotlib is an optional extra (``pip install 'chanstats[plot]'``); without it
:func:`require_matplotlib` raises a clear error before any image is read.
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import ChanstatsError
from .compare import Comparison, momentum_label


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ChanstatsError("--plot needs matplotlib, an optional extra: pip install 'chanstats[plot]'") from None


def plot_png(comparison: Comparison) -> bytes:
    """A PNG with one column per channel: running mean (top) and std (bottom) after each batch,
    one line per combination, the exact value as a dashed black line."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display needed; never opens a window
    import matplotlib.pyplot as plt

    channels = comparison.channels
    figure, axes = plt.subplots(2, len(channels), figsize=(4.5 * len(channels), 7), squeeze=False, sharex=True)
    for estimate in comparison.estimates:
        if estimate.trajectory_mean is None or estimate.trajectory_var is None:
            raise ChanstatsError("the comparison holds no trajectories (compare(..., trajectory=True))")
        s = estimate.settings
        label = f"{s.convention} b{s.batch_size} m{momentum_label(s)}" + (f" s{s.seed}" if s.shuffle else "")
        steps = np.arange(1, estimate.batches + 1)
        for c in range(len(channels)):
            axes[0, c].plot(steps, estimate.trajectory_mean[:, c], linewidth=0.9, label=label)
            axes[1, c].plot(steps, np.sqrt(estimate.trajectory_var[:, c]), linewidth=0.9, label=label)
    for c, name in enumerate(channels):
        for row, (exact, what) in enumerate(((comparison.exact_mean[c], "mean"), (comparison.exact_std[c], "std"))):
            axis = axes[row, c]
            axis.axhline(exact, color="black", linestyle="--", linewidth=1.2, label="exact")
            axis.set_title(f"{name}: running {what} vs exact {exact:.4f}", fontsize=9)
            axis.grid(alpha=0.3)
        axes[1, c].set_xlabel("batch")
    axes[0, 0].set_ylabel("running mean")
    axes[1, 0].set_ylabel("running std")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False)
    figure.tight_layout(rect=(0, 0.04 + 0.02 * (len(labels) // 4), 1, 1))
    buffer = io.BytesIO()
    # A fixed Software tag and no date keep the bytes the same run to run.
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": "chanstats"})
    plt.close(figure)
    return buffer.getvalue()

"""The two ways a test runs the measuring engine: in this process, or through the worker pool."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import write_image


@dataclass(frozen=True)
class Engine:
    """How a test runs the measuring engine: in this process, or through the worker pool.

    The engine measures runs of at most 16 images in-process whatever ``workers`` says, so a pool
    run adds ``padding`` tiny good images: enough for several chunks, each measured by a worker.
    """

    workers: int
    padding: int

    @property
    def options(self) -> list[str]:
        """The command-line options that select this engine."""
        return ["--workers", str(self.workers)]

    def pad(self, folder: Path, name: str = "pad") -> list[Path]:
        """Write ``padding`` good 8×8 PNGs into ``folder/name`` (each a different flat colour)."""
        return [
            write_image(folder / name / f"p{i:03d}.png", np.full((8, 8, 3), (7 * i % 256, 60 + i, 200 - i), dtype=np.uint8))
            for i in range(self.padding)
        ]

    def padded(self, inputs: list[str], folder: Path) -> list[str]:
        """``inputs`` followed by a folder of padding images, when this engine needs them."""
        return [*inputs, str(folder)] if self.pad(folder) else list(inputs)


IN_PROCESS = Engine(workers=0, padding=0)
POOL = Engine(workers=2, padding=40)

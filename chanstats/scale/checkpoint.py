"""``--checkpoint FILE``: save the partial state as it grows, resume from it after a crash.

The checkpoint is a :class:`~chanstats.scale.state.PartialState` whose ``done`` may be short of its
slice's end, written atomically (temp file, fsync, rename), so a ``kill -9`` at any moment leaves
either the previous checkpoint or the new one. Images are measured and recorded in listing order,
so everything before ``done`` is in the state and a resumed run measures exactly ``[done, stop)``;
since integer totals add exactly and the per-sample rows are stored losslessly, the final config is
byte-identical to an uninterrupted run.

A checkpoint is only resumed by the same run: same chanstats version, options, listing
fingerprint and slice (shard). Anything else is refused with a message naming the difference;
``--restart`` discards it. After the output has been written the CLI deletes the checkpoint: it has
served its purpose, and a stale one would only be refused (or resumed as already done) later.

Saving rewrites the whole state, so its cost grows with the number of images measured; the default
interval (every 60 seconds) keeps that a small fraction of the run on large datasets.

Test hook: the environment variable ``CHANSTATS_TEST_DELAY_PER_IMAGE`` (seconds, a float) makes
a checkpointed run sleep that long per image (after each chunk), so tests can ``kill -9`` it mid-run deterministically.
It is not meant for anything else.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

from ..errors import ChanstatsError
from . import state_file
from .state import PartialState, differing_options
from .state_file import read_partial

TEST_DELAY_ENV = "CHANSTATS_TEST_DELAY_PER_IMAGE"
DEFAULT_EVERY = "60s"


@dataclass(frozen=True)
class Interval:
    """Save every ``images`` images and/or every ``seconds`` seconds (whichever comes first)."""

    images: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> "Interval":
        """``"500"`` → every 500 images; ``"30s"``/``"5m"`` → every 30 s / 5 min; ``"500,60s"``: both.

        >>> Interval.parse("500,5m")
        Interval(images=500, seconds=300.0)
        """
        images: int | None = None
        seconds: float | None = None
        for part in str(text).replace(" ", "").split(","):
            match = re.fullmatch(r"(\d+(?:\.\d+)?)([smh]?)", part)
            if not match or float(match.group(1)) <= 0:
                raise ChanstatsError(f"--checkpoint-every {text!r}: expected N images, a time such as 30s or 5m, or both: 500,60s")
            number, unit = match.groups()
            if unit:
                seconds = float(number) * {"s": 1, "m": 60, "h": 3600}[unit]
            elif "." in number:
                raise ChanstatsError(f"--checkpoint-every {text!r}: a count of images must be a whole number")
            else:
                images = int(number)
        return cls(images, seconds)


@dataclass
class Checkpointer:
    """Resumes a run from ``path`` and saves its state there every ``every``."""

    path: str
    every: Interval = field(default_factory=lambda: Interval.parse(DEFAULT_EVERY))
    restart: bool = False
    _since_save: int = 0
    _last_save: float = field(default_factory=time.monotonic)
    _delay: float = 0.0

    def __post_init__(self) -> None:
        try:
            self._delay = float(os.environ.get(TEST_DELAY_ENV, "0") or 0)
        except ValueError:
            self._delay = 0.0

    def resume(self, fresh: PartialState) -> PartialState:
        """The saved state if it belongs to this run, ``fresh`` if there is none (or ``restart``)."""
        if self.restart or not os.path.exists(self.path):
            return fresh
        saved = read_partial(self.path)
        problem = _mismatch(saved, fresh)
        if problem:
            raise ChanstatsError(f"checkpoint {self.path} {problem}; rerun with --restart to discard it and start over")
        return saved

    def after_chunk(self, state: PartialState, images: int) -> None:
        """Save if due, after a chunk of ``images`` images was recorded (chunks are whole: the
        state is consistent between them)."""
        self._since_save += images
        if self._delay:
            time.sleep(self._delay * images)
        due_images = self.every.images is not None and self._since_save >= self.every.images
        due_time = self.every.seconds is not None and time.monotonic() - self._last_save >= self.every.seconds
        if due_images or due_time:
            self.save(state)

    def save(self, state: PartialState) -> None:
        state_file.write(state, self.path)
        self._since_save = 0
        self._last_save = time.monotonic()

    def remove(self) -> None:
        """Delete the checkpoint once the run's output is safely written."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def _mismatch(saved: PartialState, fresh: PartialState) -> str | None:
    if saved.version != fresh.version:
        return f"was written by chanstats {saved.version}, this is {fresh.version}"
    if saved.options != fresh.options:
        keys = differing_options(saved.options, fresh.options)
        diff = "; ".join(f"{k}: {saved.options.get(k)!r} there, {fresh.options.get(k)!r} now" for k in keys)
        return f"was written with other options ({diff})"
    if (saved.fingerprint, saved.listing_size) != (fresh.fingerprint, fresh.listing_size):
        return (
            f"was written for a different file list ({saved.listing_size} images then, {fresh.listing_size} now; "
            "files were added, removed or changed size)"
        )
    if (saved.start, saved.stop, saved.shard) != (fresh.start, fresh.stop, fresh.shard):
        return (
            f"covers images {saved.start}..{saved.stop - 1} (shard {saved.shard[0]}/{saved.shard[1]}), "
            f"this run images {fresh.start}..{fresh.stop - 1} (shard {fresh.shard[0]}/{fresh.shard[1]})"
        )
    return None

"""``--checkpoint FILE``: save the partial state as it grows, resume from it after a crash.

The checkpoint is a :class:`~chanstats.scale.state.PartialState` whose ``done`` may be short of its
slice's end, in the column format (:mod:`.state_file`): ``FILE`` is a small JSON header and the run
appends its per-image columns directly to the files in ``FILE.columns``. A save flushes and fsyncs
those files, then rewrites the header atomically (temp file, fsync, rename) with how many records
each column holds; so a ``kill -9`` at any moment leaves the previous header or the new one, and
bytes appended after the last save are cut when the run resumes. Images are measured and
recorded in listing order, so everything before ``done`` is in the state and a resumed run
measures exactly ``[done, stop)``; since integer totals add exactly and the per-sample rows are
stored losslessly, the final config is byte-identical to an uninterrupted run.

One run at a time: the run holds an exclusive lock on ``FILE.lock`` (:mod:`.lock`) from before it
lists its files until it ends; a second run on the same checkpoint refuses at once, naming the
pid of the first, and a lock whose holder was killed is released by the kernel. The header's
digest and the columns' checksums (:mod:`.integrity`) are verified on resume: a damaged or
edited checkpoint is refused by name, and ``--restart`` discards it.

A checkpoint is only resumed by the same run: same chanstats version, options, listing
fingerprint and slice (shard). Anything else is refused with a message naming the difference;
``--restart`` discards it. After the output has been written the CLI deletes the checkpoint: it has
served its purpose, and a stale one would only be refused (or resumed as already done) later.

A save costs the same however far the run is (the header holds the per-format totals and the bad
images, not the images), so the interval only bounds how much work a crash loses.

Test hook: the environment variable ``CHANSTATS_TEST_DELAY_PER_IMAGE`` (seconds, a float) makes
a run's main process sleep that long per image (after each chunk, before a checkpoint is due), so
tests can ``kill -9`` or SIGTERM it mid-run deterministically. It is not meant for anything else.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field

from typing import Sequence

from ..errors import ChanstatsError, cannot_write
from ..report.files import write_atomic
from ..sources.base import ImageSource
from .columns import remove_directory
from .lock import StateLock
from .state import PartialState, differing_options
from .state_file import (COLUMNS_SUFFIX, OlderStateError, _state_without_images, check_header, columns_header,
                         open_columns, parse_header, read_text)
from .table import ImageTable

TEST_DELAY_ENV = "CHANSTATS_TEST_DELAY_PER_IMAGE"
DEFAULT_EVERY = "60s"


def delay_per_image_for_tests() -> float:
    """Seconds the main process sleeps per image measured: the test hook above (0: none)."""
    try:
        return max(0.0, float(os.environ.get(TEST_DELAY_ENV, "0") or 0))
    except ValueError:
        return 0.0


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
    _lock: StateLock | None = None

    def __post_init__(self) -> None:
        try:
            self._delay = float(os.environ.get(TEST_DELAY_ENV, "0") or 0)
        except ValueError:
            self._delay = 0.0
        self._lock = StateLock(self.path, f"checkpoint {self.path}", "--checkpoint")

    def lock(self) -> None:
        """Take the checkpoint for this run, or refuse at once if another run holds it (the
        lock is taken before anything is read or written, and held until :meth:`unlock`)."""
        self._lock.acquire()  # type: ignore[union-attr]

    def unlock(self) -> None:
        self._lock.release()  # type: ignore[union-attr]

    def __enter__(self) -> "Checkpointer":
        self.lock()
        return self

    def __exit__(self, *exc_info) -> None:
        self.unlock()

    @property
    def columns(self) -> str:
        """Where the run's column files live: ``FILE.columns`` beside the header."""
        return self.path + COLUMNS_SUFFIX

    def resume(self, fresh: PartialState, sources: Sequence[ImageSource]) -> PartialState:
        """The saved state if it belongs to this run, else ``fresh`` (none saved, or ``restart``),
        its table appending to this checkpoint's column files; images are named by ``sources``."""
        self.lock()
        if self.restart or not os.path.exists(self.path):
            if self.restart:
                # The old header goes with its columns: a run stopped before its first save must
                # not leave it pointing at the new, shorter columns.
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                except OSError as error:
                    raise cannot_write(self.path, error) from None
            remove_directory(self.columns)
            fresh.images = ImageTable(sources, self.columns)
            return fresh
        name = f"checkpoint {self.path}"
        restart = "rerun with --restart to discard it and start over"
        try:
            data = parse_header(read_text(self.path, name), name, older=restart)
            try:
                saved = _state_without_images(data)
            except (KeyError, TypeError, ValueError, IndexError) as error:
                raise ChanstatsError(f"{name}: damaged partial state ({type(error).__name__}: {error})") from None
            check_header(saved, name)
            problem = _mismatch(saved, fresh)
            if problem:
                raise _Refused(f"checkpoint {self.path} {problem}; {restart}")
            return open_columns(data, name, self.columns, sources, writable=True)
        except (_Refused, OlderStateError):
            raise
        except ChanstatsError as error:  # damaged: say how to get going again
            raise ChanstatsError(f"{error}; {restart}") from None

    def after_chunk(self, state: PartialState, images: int) -> None:
        """Save if due, after a chunk of ``images`` images was recorded (chunks are whole: the
        state is consistent between them)."""
        self._since_save += images
        due_images = self.every.images is not None and self._since_save >= self.every.images
        due_time = self.every.seconds is not None and time.monotonic() - self._last_save >= self.every.seconds
        if due_images or due_time:
            self.save(state)

    def save(self, state: PartialState) -> None:
        """Make the columns durable, then point the header at them: constant cost."""
        state.images.sync()
        write_atomic(self.path, columns_header(state, os.path.basename(self.columns), None))
        self._since_save = 0
        self._last_save = time.monotonic()

    def forget_unsaved(self) -> None:
        """After a failed or interrupted run: remove the column files if no header was ever saved
        to resume them from (a full disk or a read-only folder before the first save)."""
        if not os.path.exists(self.path):
            remove_directory(self.columns)

    def remove(self) -> None:
        """Delete the checkpoint and its columns once the run's output is safely written, and
        let go of it."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        remove_directory(self.columns)
        self.unlock()


class _Refused(ChanstatsError):
    """A checkpoint of another run (its message already says what to do)."""


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

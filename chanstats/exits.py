"""How a ``chanstats`` command ends: its exit codes, and the signals that stop it early.

Every exit code the command uses is defined here, once; ``chanstats --help`` lists them. SIGTERM
(what ``kill``, ``timeout``, systemd and job schedulers send) is handled as Ctrl-C is: it raises
:class:`Terminated`, a :class:`KeyboardInterrupt`, so the same clean-up runs (worker processes
stopped, run folders removed, temporary files unlinked, no output written) and the command ends
with one line and exit code 143.
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # `chanstats check` found drift; nothing else exits 1
EXIT_INPUT_ERROR = 2  # bad usage, bad input, or an output that cannot be written
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: what shells report for a command stopped by Ctrl-C
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: what shells report for a command stopped by SIGTERM
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE (13, which Windows lacks): the reader of stdout went away (`... | head`)

EXIT_CODES_HELP = (f"Exit codes: {EXIT_OK} ok, {EXIT_CHECK_FAILED} check failed, {EXIT_INPUT_ERROR} usage or input error, "
                   f"{EXIT_INTERRUPTED} interrupted (Ctrl-C), {EXIT_BROKEN_PIPE} stdout closed (| head), "
                   f"{EXIT_TERMINATED} terminated (SIGTERM).")


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A :class:`KeyboardInterrupt`, so that everything that cleans up after
    Ctrl-C cleans up after it too; the CLI tells them apart only for the message and exit code."""


def _raise_terminated(signum, frame) -> None:
    # Once: a second SIGTERM (some supervisors repeat it) must not cut the clean-up short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


def handle_sigterm() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread (call it there, once).

    Worker processes reset it (:func:`default_signals`): they are stopped by the main process."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def default_signals() -> None:
    """In a worker process: ignore Ctrl-C, which a terminal sends to the whole process group (the
    main process handles it and stops the workers), and let SIGTERM end it at once, as the main
    process does when it stops them (a forked worker inherits the main process's handler)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def stops_held_back() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back for a short step that must not be cut in half; they take
    effect right after it. Worker processes starting: one cut off half-way (the main process gone,
    its locks unlinked) would print a traceback of its own. Outputs being renamed into place: all
    of them or none.

    Signal handlers belong to the main thread, so elsewhere nothing is held back. A process forked
    during the step (a worker starting) inherits the handler until it sets its own: a signal sent
    to it there is handled as a worker handles it (:func:`default_signals`), not held back for a
    step it is not part of. Held back, the main process's SIGTERM to a worker that had just been
    forked was lost, and the worker outlived the run's stop."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    owner = os.getpid()

    def hold(number: int, frame) -> None:
        if os.getpid() == owner:
            received.append(number)
        elif number == signal.SIGTERM:  # in a forked worker: end it now (Ctrl-C it ignores)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    previous = {signum: signal.signal(signum, hold) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])  # now handled as it would have been

"""Loading the user's own Python code named on the command line as ``path/to/file.py:attr``
(a ``--transform`` or a ``--dataset``), and running it without letting it end the run.

The file is imported under a name derived from its absolute path, so that every process (workers
started by fork, forkserver or spawn, DataLoader workers) gives it the same module name and the
classes defined in it pickle.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Iterator

from .errors import BadSpecError, ChanstatsError, one_line


class UserCodeExitError(ChanstatsError):
    """User code (a dataset, a transform, a module they import) raised ``SystemExit`` or another
    exception that is not an ``Exception``: not a bad image, and never skipped."""


@contextlib.contextmanager
def contained(what: str) -> Iterator[None]:
    """Run user code so that ``SystemExit`` (``sys.exit()``, ``exit()``) or another
    ``BaseException`` other than ``KeyboardInterrupt`` cannot end the run silently (``SystemExit(0)``
    would exit with status 0 and no output): it becomes a :class:`UserCodeExitError` naming
    ``what`` (the item or the dataset), exit code 2. Ordinary exceptions pass through unchanged,
    for the caller to judge."""
    try:
        yield
    except (Exception, KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as error:
        raise UserCodeExitError(f"{what}: {describe_exit(error)}") from None


def describe_exit(error: BaseException) -> str:
    """How a message names a ``SystemExit`` or other non-``Exception`` raised by user code."""
    if isinstance(error, SystemExit):
        raised = f"SystemExit({error.code!r})"
    else:
        raised = one_line(error)
    return f"user code raised {raised}; it must raise an exception, not exit the process"


def load_python_file(path: str, option: str, kind: str) -> ModuleType:
    """Import the file at ``path`` (once per process). ``option`` is how the user named it (e.g.
    ``--transform aug.py:train``), quoted in every error; ``kind`` tells modules of different
    options apart (``"transform"``, ``"dataset"``)."""
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise BadSpecError(f"{option}: no such file {path}")
    name = f"chanstats_user_{kind}_" + hashlib.sha256(path.encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise BadSpecError(f"{option}: cannot load {path} as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # so that classes and dataclasses defined in the file pickle
    try:
        with contained(f"{option}: running {path}"):
            module_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        if isinstance(error, ChanstatsError):
            raise
        raise BadSpecError(f"{option}: running {path} failed: {one_line(error)}") from None
    return module

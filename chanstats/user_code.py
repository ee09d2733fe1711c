"""Loading the user's own Python code named on the command line as ``package.module:attr`` or
``path/to/file.py:attr`` (a ``--transform`` or a ``--dataset``): :func:`load_reference` is the one
loader both use; and running that code without letting it end the run (:func:`contained`).

A file is imported under a name derived from its absolute path, so that every process (workers
started by fork, forkserver or spawn, DataLoader workers) gives it the same module name and the
classes defined in it pickle. A module is imported from ``sys.path`` and, when it is not found
there, from the folder the reference was given in: a console script does not put the working
directory on ``sys.path`` as ``python -m`` does.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import importlib
import importlib.util
import os
import re
import sys
from types import ModuleType
from typing import Any, Iterator

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


# ``target:attr``: a module or a .py file, and a dotted attribute path in it.
REFERENCE = re.compile(r"^(?P<target>[^:]+):(?P<attr>[A-Za-z_][\w.]*)$")


def load_reference(reference: str, option: str, kind: str, search_dir: str = "") -> Any:
    """The object ``reference`` names: ``package.module:attr`` or ``path/to/file.py:attr`` (a
    relative file, and a module not found on ``sys.path``, are looked for in ``search_dir``,
    default the working directory). ``option`` (``"--transform"``, ``"--dataset"``) and ``kind``
    are those of :func:`load_python_file`; every error is a :class:`BadSpecError` quoting
    ``option reference``."""
    shown = f"{option} {reference}"
    match = REFERENCE.match(reference)
    if not match:
        raise BadSpecError(f"{shown}: expected package.module:attr or path/to/file.py:attr")
    target, attr = match["target"], match["attr"]
    search_dir = search_dir or os.getcwd()
    if target.endswith(".py"):
        module = load_python_file(os.path.join(search_dir, target), shown, kind)
    else:
        module = _import_module(target, search_dir, shown)
    found: Any = module
    for part in attr.split("."):
        if not hasattr(found, part):
            names = [n for n in dir(found) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BadSpecError(f"{shown}: {target} has no attribute {part!r}{hint}")
        found = getattr(found, part)
    return found


def _import_module(name: str, search_dir: str, shown: str) -> ModuleType:
    with contained(f"{shown}: importing {name!r}"):
        return _import_module_contained(name, search_dir, shown)


def _import_module_contained(name: str, search_dir: str, shown: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        top = name.split(".")[0]
        if error.name != top or search_dir in sys.path:
            raise BadSpecError(f"{shown}: cannot import {name!r} ({one_line(error)})") from None
    except Exception as error:
        raise BadSpecError(f"{shown}: importing {name!r} failed: {one_line(error)}") from None
    sys.path.insert(0, search_dir)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise BadSpecError(f"{shown}: cannot import {name!r} ({one_line(error)}; looked in {search_dir} and sys.path)") from None
    except Exception as error:
        raise BadSpecError(f"{shown}: importing {name!r} failed: {one_line(error)}") from None

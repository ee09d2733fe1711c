"""Loading the user's own Python code named on the command line as ``path/to/file.py:attr``
(a ``--transform`` or a ``--dataset``).

The file is imported under a name derived from its absolute path, so that every process (workers
started by fork, forkserver or spawn, DataLoader workers) gives it the same module name and the
classes defined in it pickle.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from types import ModuleType

from .errors import BadSpecError, one_line


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
        module_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise BadSpecError(f"{option}: running {path} failed: {one_line(error)}") from None
    return module

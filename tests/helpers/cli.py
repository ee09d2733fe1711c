"""Running the installed ``chanstats`` command, as users do."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def chanstats_command() -> list[str]:
    """The installed console script next to this interpreter (falls back to ``python -m``)."""
    script = Path(sys.executable).with_name("chanstats")
    if script.exists():
        return [str(script)]
    found = shutil.which("chanstats")
    return [found] if found else [sys.executable, "-m", "chanstats"]


def run_cli(*args: str, cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess:
    """``chanstats ARGS...`` in a subprocess, output captured as text."""
    env = dict(os.environ)
    env.pop("CHANSTATS_DEBUG", None)
    return subprocess.run(
        [*chanstats_command(), *args], cwd=cwd, env=env, capture_output=True, text=True, check=check, timeout=300
    )


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``chanstats ARGS...`` in ``cwd`` with extra ``env``; by default a non-zero exit fails the test."""
    full_env = dict(os.environ, **(env or {}))
    result = subprocess.run(chanstats_command() + args, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"chanstats {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
    return result

"""The machine and software versions a benchmark ran on (RESULTS.md's "Machine" section)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from bench.decisions import chanstats_command

REPO = Path(__file__).resolve().parent.parent
#: Versions read in a fresh interpreter each (importing torch here would slow every later step).
VERSIONED_MODULES = ("simplejpeg", "torch", "torchvision", "psutil")


def describe() -> dict:
    """CPU, cores, memory, OS, library versions, chanstats' version and git revision, date."""
    info: dict = {"cpu": _cpu_name(), "cores": os.cpu_count(), "cores_usable": len(os.sched_getaffinity(0))}
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        info["ram_gib"] = round(kb / 2**20, 1)
    except (OSError, AttributeError):
        pass
    info["os"] = f"{platform.system()} {platform.release()}"
    info["python"] = platform.python_version()
    import numpy
    import PIL
    from PIL import features

    info["numpy"] = numpy.__version__
    info["pillow"] = PIL.__version__
    info["libjpeg-turbo (Pillow)"] = features.version("libjpeg_turbo")
    for module in VERSIONED_MODULES:
        info[module] = _version_of(module)
    info["chanstats"] = _chanstats_version()
    revision = _git_revision()
    if revision is not None:
        info["git"] = revision
    info["date"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version_of(module: str) -> str:
    try:
        out = subprocess.run(
            [sys.executable, "-c", f"import {module}; print({module}.__version__)"],
            capture_output=True, text=True, timeout=120,
        )
        return out.stdout.strip() or "missing"
    except Exception:
        return "missing"


def _chanstats_version() -> str:
    try:
        out = subprocess.run(chanstats_command() + ["--version"], capture_output=True, text=True, timeout=60)
        return out.stdout.strip().rsplit(" ", 1)[-1] if out.returncode == 0 else "?"
    except Exception:
        return "?"


def _git_revision() -> str | None:
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "chanstats"], capture_output=True, text=True
        )
    except OSError:
        return None
    return rev.stdout.strip() + (" + uncommitted changes in chanstats/" if dirty.stdout.strip() else "")

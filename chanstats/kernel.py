"""The compiled kernel (``_kernels.c``): whether this installation has it, and which instruction set
it uses.

The kernel is optional at install time (no C compiler, no kernel), and chanstats then falls back
to Pillow's decoder and numpy sums: the same results, several times slower. Because that is easy
to miss, a run without it says so once on stderr, and ``CHANSTATS_REQUIRE_KERNEL=1`` (set in CI)
turns a missing kernel into an import error, and a kernel that does not compile into a failed
``pip install``.
"""

from __future__ import annotations

import os
import sys

REQUIRE_ENV = "CHANSTATS_REQUIRE_KERNEL"


def required() -> bool:
    """Whether ``CHANSTATS_REQUIRE_KERNEL`` asks for the kernel (any value but empty or ``0``)."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


try:
    from . import _kernels
except ImportError as error:
    if required():
        raise ImportError(
            f"chanstats: {REQUIRE_ENV} is set but the compiled kernel cannot be imported ({error}); "
            "reinstall chanstats with a C compiler (pip install .) or run python setup.py build_ext --inplace"
        ) from error
    _kernels = None  # type: ignore[assignment]

AVAILABLE = _kernels is not None
_warned = False


def name() -> str:
    """``"avx2"``, ``"sse2"`` or ``"scalar"``: the kernel's instruction set on this CPU; ``"none"``
    without the kernel."""
    if _kernels is None:
        return "none"
    return _kernels.simd()


def function(name: str):
    """The compiled function ``name`` of the kernel, or ``None`` without the kernel (or in an
    older build without that function): every use of the kernel goes through here."""
    return getattr(_kernels, name, None)


def warn_if_missing() -> None:
    """One line on stderr, once per process, when the kernel is missing."""
    global _warned
    if AVAILABLE or _warned:
        return
    _warned = True
    print(
        "chanstats: warning: the compiled kernel is missing, so decoding uses the slow path "
        "(same results); reinstall with a C compiler to build it",
        file=sys.stderr,
    )

"""Build the compiled kernel; all metadata lives in pyproject.toml.

The kernel is optional by default: where no C compiler is available the build goes on without it,
and chanstats falls back to Pillow's decoder and numpy sums (same results, slower; a run says so
on stderr). With ``CHANSTATS_REQUIRE_KERNEL=1`` (as in CI) it is required, so a kernel that does
not compile fails the install instead of passing unnoticed.
"""

import os

from setuptools import Extension, setup

required = os.environ.get("CHANSTATS_REQUIRE_KERNEL", "") not in ("", "0")

setup(
    ext_modules=[
        Extension("chanstats._kernels", ["chanstats/_kernels.c"], optional=not required, extra_compile_args=["-O3"]),
    ]
)

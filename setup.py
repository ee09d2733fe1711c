"""Build the optional compiled kernel; all metadata lives in pyproject.toml.

``optional=True``: where no C compiler is available the build goes on without the kernel, and
chanstats falls back to Pillow's decoder and histogram (same results, slower).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("chanstats._kernels", ["chanstats/_kernels.c"], optional=True, extra_compile_args=["-O3"]),
    ]
)

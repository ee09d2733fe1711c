"""The compiled kernel (chanstats/_kernels.c): exact against numpy on every path, and never missing
without a word.

Without the kernel these tests skip, unless ``CHANSTATS_REQUIRE_KERNEL=1`` (as in CI): then importing
chanstats fails, and so does every test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from chanstats import kernel

from .helpers.cli import run_cli
from .helpers.files import EXAMPLES
from .helpers.oracles import numpy_moments

ROOT = Path(__file__).resolve().parent.parent
needs_kernel = pytest.mark.skipif(not kernel.AVAILABLE, reason="the compiled kernel is missing")
if kernel.AVAILABLE:
    from chanstats import _kernels


@needs_kernel
@given(st.integers(1, 4).flatmap(lambda c: arrays(np.uint8, st.tuples(st.integers(1, 40), st.integers(1, 40), st.just(c)))))
@settings(max_examples=150, deadline=None)
def test_kernel_equals_numpy_on_any_shape(pixels):
    channels = pixels.shape[2]
    assert _kernels.moments_u8(pixels, channels) == tuple(numpy_moments(pixels, channels))


@needs_kernel
def test_kernel_is_exact_across_its_block_boundaries(rng):
    # 197437 rows of 48 bytes (more than 65536, an odd number) plus a partial row.
    pixels = rng.integers(0, 256, size=(3000, 1053, 3), dtype=np.uint8)
    pixels[::7] = 255  # long runs of the extreme value stress the uint32 lane sums
    assert _kernels.moments_u8(pixels, 3) == tuple(numpy_moments(pixels, 3))


@needs_kernel
@pytest.mark.parametrize("channels", [3, 4])
def test_kernel_is_exact_with_an_odd_row_after_a_full_block(rng, channels):
    # 65537 rows of 96 bytes (the AVX2 path's rows: a full block, then one odd row) and a
    # partial 48-byte row for the SSE2 path.
    pixels = rng.integers(0, 256, size=(96 * 65537 + 48) // channels * channels, dtype=np.uint8)
    pixels[-5000:] = 255
    assert _kernels.moments_u8(pixels, channels) == tuple(numpy_moments(pixels, channels))


@needs_kernel
def test_kernel_sse2_path_is_exact_too(tmp_path):
    # On CPUs with AVX2 the SSE2 loop only sees the last partial rows; force it over a whole buffer
    # (more than one block, an odd row count) in a fresh process.
    script = tmp_path / "sse2.py"
    script.write_text(
        "import numpy as np\n"
        "from chanstats._kernels import moments_u8\n"
        "from tests.helpers.oracles import numpy_moments\n"
        "pixels = np.random.default_rng(5).integers(0, 256, size=48 * 131073, dtype=np.uint8)\n"
        "pixels[:9999] = 255\n"
        "for channels in (1, 2, 3, 4):\n"
        "    assert moments_u8(pixels, channels) == tuple(numpy_moments(pixels, channels)), channels\n"
    )
    env = dict(os.environ, CHANSTATS_NO_AVX2="1", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr


@needs_kernel
def test_kernel_refuses_bad_input():
    with pytest.raises(ValueError):
        _kernels.moments_u8(b"", 3)
    with pytest.raises(ValueError):
        _kernels.moments_u8(b"abcd", 3)


def test_version_and_timings_name_the_kernel_in_use(tmp_path):
    version = run_cli("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout == f"chanstats, version {__import__('chanstats').__version__} (kernel: {kernel.name()})\n"
    assert kernel.name() in ("avx2", "sse2", "scalar", "none")
    timed = run_cli("compute", str(EXAMPLES), "-q", "--workers", "0", "--timings", "-o", str(tmp_path / "out.json"))
    assert timed.returncode == 0, timed.stderr
    assert timed.stderr.endswith(f"; kernel {kernel.name()}\n")


@needs_kernel
def test_no_avx2_switch_selects_the_sse2_kernel():
    probe = "from chanstats import kernel; print(kernel.name())"
    env = dict(os.environ, CHANSTATS_NO_AVX2="1", PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() in ("sse2", "scalar")


# A Python process in which the compiled kernel cannot be imported, as after a failed build.
WITHOUT_KERNEL = "import sys; sys.modules['chanstats._kernels'] = None\n"


def run_without_kernel(code: str, require: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop(kernel.REQUIRE_ENV, None)
    if require is not None:
        env[kernel.REQUIRE_ENV] = require
    return subprocess.run([sys.executable, "-c", WITHOUT_KERNEL + code], capture_output=True, text=True, env=env, cwd=ROOT)


def test_missing_kernel_warns_once_and_gives_the_same_result():
    code = (
        "import chanstats\n"
        "first = chanstats.compute('examples/images', workers=0)\n"
        "second = chanstats.compute('examples/images', workers=0)\n"
        "from chanstats import kernel\n"
        "print(kernel.name(), first.dumps() == second.dumps())\n"
        "print(first.dumps(), end='')\n"
    )
    run = run_without_kernel(code, require=None)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("none True\n")
    assert run.stderr.count("warning: the compiled kernel is missing") == 1
    assert len(run.stderr.splitlines()) == 1
    with_kernel = run_cli("compute", "examples/images", "-q", "--workers", "0", cwd=ROOT)
    assert run.stdout.split("\n", 1)[1] == with_kernel.stdout  # same bytes, slow path or not


@pytest.mark.parametrize("require", ["1", "yes"])
def test_required_kernel_that_is_missing_fails_loudly(require):
    run = run_without_kernel("import chanstats; chanstats.compute('examples/images', workers=0)", require)
    assert run.returncode != 0
    assert "CHANSTATS_REQUIRE_KERNEL is set but the compiled kernel cannot be imported" in run.stderr


def test_require_kernel_zero_means_not_required():
    run = run_without_kernel("from chanstats import kernel; print(kernel.name())", "0")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "none\n"

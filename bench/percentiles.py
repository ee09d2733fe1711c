"""What exact percentiles cost on 8-bit JPEG/PNG: chanstats' measurement with and without them.

    python bench/percentiles.py [--n 300] [--rounds 5]

Times, in this process and single-threaded, chanstats' measurement (read + decode + exact sums,
and with percentiles the per-channel 256-bin histograms) of the first ``--n`` images of the bench
corpus (``bench/corpus.py``, built or reused), with ``--percentiles none``, with the default
(``auto``: no histograms for 8-bit images) and with the standard percentiles asked for by name,
in interleaved rounds; prints per format the best round's ms per image and the extra cost of the
histograms over the default. Splits the cost further with the kernels alone on the
decoded pixels: the SIMD sums (``moments_u8``) against the histogram (``histogram_u8``), whose
counts also give the sums.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _measure_all(measurer, sources) -> float:
    start = time.perf_counter()
    for index, source in enumerate(sources):
        measurer(index, source)
    return time.perf_counter() - start


def _kernel_times(paths: list[Path]) -> tuple[float, float]:
    from PIL import Image

    from chanstats import _kernels

    sums = histogram = 0.0
    for path in paths:
        pixels = np.ascontiguousarray(np.asarray(Image.open(path).convert("RGB")))
        start = time.perf_counter()
        _kernels.moments_u8(pixels, 3)
        middle = time.perf_counter()
        _kernels.histogram_u8(pixels, 3)
        sums, histogram = sums + middle - start, histogram + time.perf_counter() - middle
    return sums, histogram


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--root", default=None, help="corpus folder (default bench/.cache/corpus-s0)")
    args = parser.parse_args()

    from corpus import build_corpus

    from chanstats import api
    from chanstats.options import DEFAULT_PERCENTILES_TEXT, RunOptions

    paths = build_corpus(args.n, args.root)
    kinds = {"JPEG": [p for p in paths if p.suffix.lower() in (".jpg", ".jpeg")],
             "PNG": [p for p in paths if p.suffix.lower() == ".png"]}
    print(f"{len(paths)} corpus images, in-process, 1 thread, best of {args.rounds} interleaved rounds")
    print(f"{'format':<8}{'images':>8}{'ms/image none':>16}{'ms/image default':>18}{'ms/image by name':>18}"
          f"{'by name cost':>15}")
    for kind, files in kinds.items():
        if not files:
            continue
        listed = [str(p) for p in files]
        runs = {"none": api.plan(listed, RunOptions(percentiles="none")), "default": api.plan(listed, RunOptions()),
                "named": api.plan(listed, RunOptions(percentiles=DEFAULT_PERCENTILES_TEXT))}
        best = {name: float("inf") for name in runs}
        for _ in range(args.rounds):
            for name, run in runs.items():
                best[name] = min(best[name], _measure_all(run.measurer, run.sources))
        none, default, named = (best[name] / len(files) * 1e3 for name in ("none", "default", "named"))
        print(f"{kind:<8}{len(files):>8}{none:>16.3f}{default:>18.3f}{named:>18.3f}{(named / default - 1) * 100:>14.1f}%")
    sums, histogram = _kernel_times(paths)
    print(f"kernels alone on the decoded RGB pixels: sums {sums / len(paths) * 1e3:.3f} ms/image, "
          f"histogram {histogram / len(paths) * 1e3:.3f} ms/image")


if __name__ == "__main__":
    main()

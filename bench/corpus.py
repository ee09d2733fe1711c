"""Build (and cache) a realistic ImageNet-like benchmark corpus.

The corpus is made from the real photographs that ship inside the
scikit-image wheel (``skimage.data``: astronaut, coffee, chelsea, rocket,
motorcycle, immunohistochemistry, hubble, retina; camera/moon/... for the
greyscale ones).  No network access is needed.

Bench-only dependency (NOT a chanstats dependency)::

    pip install scikit-image numpy pillow

Each image is a random resized crop of one photo to an ImageNet-like size
(short side 300-500, mostly 4:3 / 3:2 landscape, some portrait, square and
wide), with a horizontal flip, camera-like unsharp masking (the sources are
small, so most crops are upscaled), brightness / per-channel gain / gamma
jitter and a little sensor-like noise so that every image differs.  The mix of
file kinds mirrors what is found in ImageNet-style datasets::

    ~85% JPEG, quality 85-95:
        baseline 4:2:0 (most), baseline 4:4:4, baseline 4:2:2,
        progressive 4:2:0, greyscale (1 component), Adobe CMYK (rare)
    ~15% PNG: RGB (most), a few greyscale ("L") and RGBA

With the default seed, 2000 images: 203 kpx/image mean; JPEG 80 kB mean
(3.1 bits/px, ImageNet's is somewhat higher), PNG 400 kB mean; ~255 MiB total;
about 1-2 minutes to build on 2 cores.

The exact bytes depend on the Pillow / libjpeg-turbo / zlib versions used to
encode; everything else is deterministic from ``seed``: image ``i`` only depends on
``(seed, i)``, so a corpus of 100 images is a prefix of a corpus of 2000 and
an existing cache is extended rather than rebuilt.  A ``manifest.json`` in the
corpus directory records, per file, the kind, size and source photo.

Usage::

    python bench/corpus.py --n 2000            # -> bench/.cache/corpus-s0/
    python bench/corpus.py --n 200 --root corpus-small --seed 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

#: Bump when the generation recipe changes (invalidates caches).
RECIPE_VERSION = 2

DEFAULT_CACHE = Path(__file__).resolve().parent / ".cache"

#: Colour photographs in skimage.data (name -> loader call), all shipped in the wheel.
COLOUR_SOURCES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "immunohistochemistry",
    "hubble_deep_field",
    "retina",
)
#: Relative weights (the fundus / deep-field shots are mostly black: less typical).
_SOURCE_WEIGHT = {"retina": 0.4, "hubble_deep_field": 0.4, "immunohistochemistry": 0.6}
#: Greyscale photographs, used for (some of) the greyscale outputs.
GREY_SOURCES = ("camera", "moon", "grass", "gravel", "brick")

# (kind, probability).  Kinds starting with "jpeg" are saved as .jpg.
KINDS = (
    ("jpeg-420", 0.66),
    ("jpeg-444", 0.08),
    ("jpeg-422", 0.03),
    ("jpeg-progressive-420", 0.05),
    ("jpeg-grey", 0.025),
    ("jpeg-cmyk", 0.005),
    ("png-rgb", 0.13),
    ("png-l", 0.01),
    ("png-rgba", 0.01),
)

_SOURCES: dict[str, np.ndarray] | None = None


def _load_sources() -> dict[str, np.ndarray]:
    """Load the skimage photographs once per process (as uint8 arrays)."""
    global _SOURCES
    if _SOURCES is None:
        try:
            import skimage.data as d
        except ImportError as exc:  # pragma: no cover - message for humans
            raise SystemExit(
                "bench/corpus.py needs scikit-image (bench-only dependency): "
                "pip install scikit-image"
            ) from exc
        src: dict[str, np.ndarray] = {}
        for name in COLOUR_SOURCES:
            if name.startswith("motorcycle_"):
                left, right, _ = d.stereo_motorcycle()
                src["motorcycle_left"], src["motorcycle_right"] = left, right
                continue
            src[name] = np.ascontiguousarray(getattr(d, name)()[..., :3])
        for name in GREY_SOURCES:
            src[name] = np.ascontiguousarray(getattr(d, name)())
        for k, v in src.items():
            assert v.dtype == np.uint8, (k, v.dtype)
        _SOURCES = src
    return _SOURCES


def _target_size(rng: np.random.Generator) -> tuple[int, int]:
    """ImageNet-like (width, height): short side 300-500, varied aspect."""
    r = rng.random()
    if r < 0.45:
        short = 375
    elif r < 0.60:
        short = 333
    else:
        short = int(rng.integers(300, 501))
    aspect = rng.choice(
        [4 / 3, 3 / 2, 1.0, 16 / 9, None], p=[0.5, 0.2, 0.1, 0.08, 0.12]
    )
    if aspect is None:
        aspect = float(rng.uniform(1.0, 2.0))
    long = round(short * aspect)
    if rng.random() < 0.25:  # portrait
        return short, long
    return long, short


def _random_resized_crop(
    src: np.ndarray, w: int, h: int, rng: np.random.Generator
) -> Image.Image:
    sh, sw = src.shape[:2]
    target_ar = w / h
    for _ in range(20):
        area = sh * sw * rng.uniform(0.35, 1.0)
        ar = target_ar * float(np.exp(rng.uniform(-0.1, 0.1)))
        cw = round(float(np.sqrt(area * ar)))
        ch = round(float(np.sqrt(area / ar)))
        if 16 <= cw <= sw and 16 <= ch <= sh:
            break
    else:  # largest centred crop with the target aspect ratio
        cw, ch = (sw, int(sw / target_ar)) if sw / sh < target_ar else (int(sh * target_ar), sh)
        cw, ch = min(cw, sw), min(ch, sh)
    x0 = int(rng.integers(0, sw - cw + 1))
    y0 = int(rng.integers(0, sh - ch + 1))
    crop = src[y0 : y0 + ch, x0 : x0 + cw]
    mode = "RGB" if crop.ndim == 3 else "L"
    im = Image.fromarray(np.ascontiguousarray(crop), mode)
    resample = Image.Resampling.LANCZOS if rng.random() < 0.5 else Image.Resampling.BICUBIC
    im = im.resize((w, h), resample)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    # Camera-like sharpening: the sources are small, so most crops are upscaled
    # and would otherwise be smoother (fewer bits/pixel) than real photographs.
    percent = int(rng.integers(60, 220))
    im = im.filter(ImageFilter.UnsharpMask(radius=float(rng.uniform(0.8, 2.0)), percent=percent, threshold=1))
    return im


def _jitter(im: Image.Image, rng: np.random.Generator) -> np.ndarray:
    """Brightness / per-channel gain / gamma jitter plus mild sensor noise."""
    a = np.asarray(im, dtype=np.float32) / 255.0
    gamma = float(np.exp(rng.uniform(-0.2, 0.2)))
    a = np.power(a, gamma)
    gain = float(rng.uniform(0.8, 1.2))
    if a.ndim == 3:
        gain = gain * rng.uniform(0.92, 1.08, size=3).astype(np.float32)
    a = a * gain * 255.0
    sigma = float(rng.uniform(1.0, 6.0))
    if sigma > 0.2:
        a = a + rng.normal(0.0, sigma, size=a.shape).astype(np.float32)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _pick_kind(rng: np.random.Generator) -> str:
    names = [k for k, _ in KINDS]
    p = np.array([p for _, p in KINDS], dtype=np.float64)
    return str(rng.choice(names, p=p / p.sum()))


def _make_one(args: tuple[int, int, str]) -> dict:
    """Generate image ``i`` for ``seed`` into directory ``out``; return its manifest row."""
    seed, i, out = args
    rng = np.random.default_rng([seed, i, RECIPE_VERSION])
    src_all = _load_sources()
    kind = _pick_kind(rng)
    grey = kind in ("jpeg-grey", "png-l")
    if grey and rng.random() < 0.5:
        src_name = str(rng.choice(GREY_SOURCES))
    else:
        wts = np.array([_SOURCE_WEIGHT.get(k, 1.0) for k in COLOUR_SOURCES])
        src_name = str(rng.choice(COLOUR_SOURCES, p=wts / wts.sum()))
    w, h = _target_size(rng)
    im = _random_resized_crop(src_all[src_name], w, h, rng)
    if grey:
        im = im.convert("L")
    elif im.mode == "L":
        im = im.convert("RGB")
    arr = _jitter(im, rng)
    im = Image.fromarray(arr, "L" if arr.ndim == 2 else "RGB")

    stem = f"img_{i:06d}"
    info: dict = {"kind": kind, "source": src_name, "width": w, "height": h}
    if kind.startswith("jpeg"):
        quality = int(rng.integers(85, 96))
        info["quality"] = quality
        name = stem + (".JPEG" if rng.random() < 0.1 else ".jpg")
        kw: dict = {"quality": quality}
        if kind in ("jpeg-420", "jpeg-progressive-420", "jpeg-cmyk"):
            kw["subsampling"] = "4:2:0"
        elif kind == "jpeg-444":
            kw["subsampling"] = "4:4:4"
        elif kind == "jpeg-422":
            kw["subsampling"] = "4:2:2"
        if kind == "jpeg-progressive-420":
            kw["progressive"] = True
        if kind == "jpeg-cmyk":
            im = im.convert("CMYK")  # Pillow writes Adobe (inverted) CMYK JPEG
            kw.pop("subsampling")
        if kind != "jpeg-grey" and rng.random() < 0.3:
            kw["optimize"] = True  # optimised Huffman tables, like many cameras/tools
        im.save(os.path.join(out, name), "JPEG", **kw)
    else:
        name = stem + ".png"
        if kind == "png-rgba":
            alpha = np.full((h, w), 255, np.uint8)
            alpha[: h // 4] = rng.integers(128, 256, size=(h // 4, w), dtype=np.uint8)
            im = im.convert("RGB")
            im.putalpha(Image.fromarray(alpha, "L"))
        im.save(os.path.join(out, name), "PNG", compress_level=int(rng.integers(3, 8)))
    info["file"] = name
    info["bytes"] = os.path.getsize(os.path.join(out, name))
    return info


def default_root(seed: int = 0) -> Path:
    return DEFAULT_CACHE / f"corpus-s{seed}"


def build_corpus(
    n: int = 2000,
    root: str | os.PathLike | None = None,
    seed: int = 0,
    workers: int | None = None,
    verbose: bool = False,
) -> list[Path]:
    """Return paths of ``n`` corpus images under ``root``, generating missing ones.

    ``root`` defaults to ``bench/.cache/corpus-s{seed}`` (git-ignored).  The
    cache is valid when its manifest has the same seed and recipe version and
    every file exists with its recorded size; otherwise the missing or invalid
    images are (re)generated.  Output is sorted by index.
    """
    root = Path(root) if root is not None else default_root(seed)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / "manifest.json"
    rows: dict[int, dict] = {}
    if manifest_path.exists():
        try:
            m = json.loads(manifest_path.read_text())
            if m.get("seed") == seed and m.get("recipe") == RECIPE_VERSION:
                rows = {int(k): v for k, v in m["images"].items()}
        except (ValueError, KeyError):
            rows = {}
    valid = {}
    for i, r in rows.items():
        p = root / r["file"]
        if i < n and p.is_file() and p.stat().st_size == r["bytes"]:
            valid[i] = r
    todo = [i for i in range(n) if i not in valid]
    if todo:
        t0 = time.perf_counter()
        jobs = [(seed, i, str(root)) for i in todo]
        workers = workers or min(len(todo), os.cpu_count() or 1)
        if workers > 1 and len(todo) > 8:
            with ProcessPoolExecutor(workers) as ex:
                made = list(ex.map(_make_one, jobs, chunksize=16))
        else:
            made = [_make_one(j) for j in jobs]
        for i, r in zip(todo, made, strict=True):
            valid[i] = r
        if verbose:
            print(
                f"generated {len(todo)} images in {time.perf_counter() - t0:.1f}s",
                file=sys.stderr,
            )
    # keep rows beyond n that are still valid (a larger earlier build)
    for i, r in rows.items():
        if i >= n and (root / r["file"]).is_file():
            valid.setdefault(i, r)
    # drop stale generated files (e.g. from an older recipe) so the directory
    # holds exactly the manifest's images
    keep = {r["file"] for r in valid.values()}
    for f in root.glob("img_*"):
        if f.name not in keep and f.suffix in (".jpg", ".JPEG", ".png"):
            f.unlink()
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {"seed": seed, "recipe": RECIPE_VERSION, "images": {str(k): valid[k] for k in sorted(valid)}},
            indent=0,
        )
    )
    os.replace(tmp, manifest_path)
    return [root / valid[i]["file"] for i in range(n)]


def load_manifest(root: str | os.PathLike) -> dict[str, dict]:
    """Map file name -> manifest row for a built corpus."""
    m = json.loads((Path(root) / "manifest.json").read_text())
    return {r["file"]: r for r in m["images"].values()}


def corpus_summary(paths: list[Path]) -> dict:
    """Image count, pixels, bytes and JPEG/PNG kinds of corpus files, from the manifest."""
    manifest = load_manifest(paths[0].parent)
    kinds: dict[str, int] = {}
    pixels = nbytes = 0
    for path in paths:
        record = manifest[path.name]
        kinds[record["kind"]] = kinds.get(record["kind"], 0) + 1
        pixels += record["width"] * record["height"]
        nbytes += record["bytes"]
    jpeg = sum(count for kind, count in kinds.items() if kind.startswith("jpeg"))
    return {"images": len(paths), "pixels": pixels, "bytes": nbytes, "jpeg": jpeg, "png": len(paths) - jpeg, "kinds": kinds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    ap.add_argument("--root", default=None, help="output dir (default bench/.cache/corpus-s{seed})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    a = ap.parse_args(argv)
    paths = build_corpus(a.n, a.root, a.seed, a.workers, verbose=True)
    root = paths[0].parent if paths else Path(a.root or default_root(a.seed))
    summary = corpus_summary(paths)
    kinds, px, nbytes = summary["kinds"], summary["pixels"], summary["bytes"]
    print(f"{len(paths)} images in {root}")
    print(f"  {px / len(paths) / 1e3:.0f} kpx/image mean, {nbytes / 2**20:.1f} MiB total")
    for k, c in sorted(kinds.items()):
        print(f"  {k:22s} {c:6d}  ({100 * c / len(paths):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

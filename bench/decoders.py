"""Measure per-image decode + exact-histogram cost on this machine.

Prints tables of:

1. per-image Python-level overhead (stat, open+read, header parsing, the
   fixed cost of a whole decode+histogram on a 16x16 image), in µs;
2. single-thread decode cost in ns/pixel: Pillow ``Image.open(f).convert("RGB")``
   vs ``simplejpeg.decode_jpeg(data, colorspace="RGB")`` (per JPEG kind too);
3. single-thread exact-statistics cost in ns/pixel (768-bin RGB histogram:
   PIL ``histogram()``, ``Image.frombuffer(...).histogram()`` on a numpy array,
   numpy ``bincount`` variants);
4. end-to-end (path -> 768-int histogram, summed over the corpus): serial,
   2 threads and 2 processes (chunks of paths; workers read the files
   themselves and return only a 768-int histogram per chunk), for Pillow and
   for simplejpeg (PNG / CMYK / damaged JPEG fall back to Pillow);
5. pixel identity of simplejpeg vs Pillow on every JPEG of the corpus;
6. behaviour of both decoders on truncated / corrupted JPEGs.

Method.  Files are read once first (page cache warm).  Single-thread numbers
(sections 2, 3 and the serial part of 4) are *interleaved*: the corpus is cut
into batches of 50 images and every method runs on each batch in turn (order
rotated per round), timing each image with the thread's CPU clock and the wall
clock; a "round" is one pass of every method over the whole set, and the
reported value is the median over ``--repeat`` rounds (default 3).  This makes
the comparisons robust to slow drifts of a shared / virtualised machine.
Parallel runs (section 4) are timed per pass with the wall clock, rounds
round-robin over the configurations.  Before each pass the script waits (up to
``--wait-s``) for other processes to go quiet; the ``others`` column gives the
cores used by *other* processes during the kept passes (from /proc/stat), so
contended numbers are visible as such.

Bench-only dependencies: ``pip install simplejpeg scikit-image`` (scikit-image
only to build the corpus, see ``bench/corpus.py``).

Usage::

    python bench/decoders.py                 # 2000-image corpus (built if needed)
    python bench/decoders.py --n 300         # quicker
    python bench/decoders.py --skip e2e,identity --json out.json
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageFile, features

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus  # noqa: E402  (bench/corpus.py, imported from this script's directory)

try:
    import simplejpeg
except ImportError:  # pragma: no cover
    simplejpeg = None

JPEG_EXT = (".jpg", ".jpeg")
RESULTS: dict = {}
QUIET = {"max_others": 0.3, "wait_s": 30.0, "enabled": True}
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


# --------------------------------------------------------------------------- load accounting
def _busy_jiffies() -> int:
    """Machine-wide busy CPU time (all cores, incl. steal) in clock ticks, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return sum(v) - v[3] - v[4]  # minus idle, iowait


def _own_jiffies(pids=()) -> int:
    """CPU ticks used by this process (all threads) and by ``pids`` (pool workers)."""
    tot = 0
    for pid in ("self", *pids):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            tot += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError):
            pass
    return tot


def foreign_load(dt: float = 0.25, pids=()) -> float:
    """Cores' worth of CPU used by *other* processes during the next ``dt`` seconds."""
    b0, o0, t0 = _busy_jiffies(), _own_jiffies(pids), time.perf_counter()
    time.sleep(dt)
    return ((_busy_jiffies() - b0) - (_own_jiffies(pids) - o0)) / _HZ / (time.perf_counter() - t0)


def wait_quiet(pids=()) -> None:
    """Wait (at most QUIET['wait_s']) until other processes use < QUIET['max_others'] cores."""
    if not QUIET["enabled"]:
        return
    t_end = time.perf_counter() + QUIET["wait_s"]
    while foreign_load(0.2, pids) > QUIET["max_others"] and time.perf_counter() < t_end:
        pass


class LoadMeter:
    """Context manager: wall time, own CPU (self + pids) and foreign cores over a block."""

    def __init__(self, pids=()):
        self.pids = tuple(pids)

    def __enter__(self):
        self.b0, self.o0 = _busy_jiffies(), _own_jiffies(self.pids)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.own = (_own_jiffies(self.pids) - self.o0) / _HZ
        busy = (_busy_jiffies() - self.b0) / _HZ
        self.others = max(0.0, (busy - self.own) / self.wall) if self.wall > 0.05 else 0.0
        return False


class Timing(float):
    """Median wall seconds (a float) with .cpu (own CPU s) and .others (foreign cores)."""

    cpu: float
    others: float


def _summarise(reps) -> Timing:
    """reps: list of (others, wall, cpu); keep the quiet ones, median of ``repeat``."""
    repeat = QUIET["repeat"]
    good = [r for r in reps if r[0] <= QUIET["max_others"]]
    kept = good if len(good) >= repeat else sorted(reps)[:repeat]
    t = Timing(statistics.median(r[1] for r in kept))
    t.cpu = statistics.median(r[2] for r in kept)
    t.others = max(r[0] for r in kept)
    return t


def median_time(fn, repeat: int, pids=()) -> Timing:
    """Median wall time of ``repeat`` quiet calls of ``fn()`` (retrying up to 3x ``repeat``)."""
    reps = []
    while True:
        wait_quiet()
        gc.collect()
        with LoadMeter(pids() if callable(pids) else pids) as m:
            fn()
        reps.append((m.others, m.wall, m.own))
        n_good = sum(1 for r in reps if r[0] <= QUIET["max_others"])
        if len(reps) >= repeat and (not QUIET["enabled"] or n_good >= repeat or len(reps) >= 3 * repeat):
            return _summarise(reps)


def interleaved(methods: dict, items: list, repeat: int, batch: int = 50) -> dict:
    """Per-item CPU and wall seconds of each method, interleaved by batch.

    ``methods``: name -> (fn(item), applies(item) -> bool).  Returns
    name -> {"cpu": array(rounds, n), "wall": array(rounds, n), "others": [per round]}
    with NaN where a method does not apply.  Rounds whose foreign load exceeded
    QUIET['max_others'] are re-run (up to 2x ``repeat`` rounds in all) and the
    quietest ``repeat`` rounds are kept.
    """
    names = list(methods)
    n = len(items)
    rounds = []  # (others, {name: (cpu[n], wall[n])})
    while True:
        r = len(rounds)
        wait_quiet()
        gc.collect()
        cpu = {k: np.full(n, np.nan) for k in names}
        wall = {k: np.full(n, np.nan) for k in names}
        with LoadMeter() as m:
            for b0 in range(0, n, batch):
                order = names[r % len(names):] + names[: r % len(names)]
                for k in order:
                    fn, applies = methods[k]
                    ck, wk = cpu[k], wall[k]
                    for i in range(b0, min(n, b0 + batch)):
                        it = items[i]
                        if not applies(it):
                            continue
                        c0 = time.thread_time()
                        w0 = time.perf_counter()
                        fn(it)
                        wk[i] = time.perf_counter() - w0
                        ck[i] = time.thread_time() - c0
        rounds.append((m.others, cpu, wall))
        good = [x for x in rounds if x[0] <= QUIET["max_others"]]
        if len(rounds) >= repeat and (not QUIET["enabled"] or len(good) >= repeat or len(rounds) >= 2 * repeat):
            break
    kept = good[:repeat] if len(good) >= repeat else sorted(rounds, key=lambda x: x[0])[:repeat]
    return {
        k: {
            "cpu": np.stack([x[1][k] for x in kept]),
            "wall": np.stack([x[2][k] for x in kept]),
            "others": [x[0] for x in kept],
        }
        for k in names
    }


def per_px(res: dict, mask: np.ndarray, px: np.ndarray, what: str = "cpu") -> float:
    """Median over rounds of (sum of per-item seconds over ``mask``) / pixels, in ns/px."""
    a = res[what][:, mask]
    return float(np.median(np.nansum(a, axis=1)) / px[mask].sum() * 1e9)


def per_item_us(res: dict, mask: np.ndarray, what: str = "cpu") -> float:
    a = res[what][:, mask]
    return float(np.median(np.nansum(a, axis=1)) / mask.sum() * 1e6)


# --------------------------------------------------------------------------- misc helpers
def is_jpeg(p) -> bool:
    return str(p).lower().endswith(JPEG_EXT)


def table(title: str, header: list[str], rows: list[list]) -> None:
    print(f"\n== {title}")
    cols = [header] + [[c if isinstance(c, str) else f"{c}" for c in r] for r in rows]
    w = [max(len(r[i]) for r in cols) for i in range(len(header))]
    for j, r in enumerate(cols):
        print("  " + "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)))
        if j == 0:
            print("  " + "  ".join("-" * x for x in w))
    sys.stdout.flush()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


# --------------------------------------------------------------------------- per-image work
# Module-level so that process pools (fork or spawn) can pickle them.
def hist_pillow_path(path) -> np.ndarray:
    """Path -> 768-bin RGB histogram: ``Image.open(path).convert("RGB").histogram()``."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").histogram(), dtype=np.int64)


def hist_pillow_noconv_path(path) -> np.ndarray:
    """Same result, but no convert() copy when the decoded image is already RGB."""
    with Image.open(path) as im:
        im.load()
        if im.mode != "RGB":
            im = im.convert("RGB")
        return np.asarray(im.histogram(), dtype=np.int64)


SJ_COLORSPACES = ("YCbCr", "Gray")  # where simplejpeg RGB == Pillow convert("RGB") exactly


def _sj_decode(data: bytes, colorspace: str = "RGB") -> np.ndarray | None:
    """simplejpeg decode, or None where the result might differ from Pillow's.

    CMYK (and YCCK / RGB) JPEGs are left to Pillow: simplejpeg decodes CMYK to
    RGB without error but off by one from Pillow's CMYK->RGB.  Any libjpeg
    warning or error (strict=True raises ValueError: truncated file, corrupt
    data) also goes to Pillow, so damaged files get exactly Pillow's verdict.
    """
    try:
        if simplejpeg.decode_jpeg_header(data)[2] not in SJ_COLORSPACES:
            return None
        return simplejpeg.decode_jpeg(data, colorspace=colorspace)
    except ValueError:
        return None


def hist_sj_array(arr: np.ndarray) -> list:
    """768-bin histogram of an HxWx3 (RGB) or HxWx4 (RGBX) uint8 array via Pillow."""
    h, w, c = arr.shape
    if c == 3:  # Pillow stores RGB as 4 bytes/px: this unpacks (copies)
        return Image.frombuffer("RGB", (w, h), arr, "raw", "RGB", 0, 1).histogram()
    # zero-copy view; the 4th (padding) band is counted too and dropped
    return Image.frombuffer("RGBA", (w, h), arr, "raw", "RGBA", 0, 1).histogram()[:768]


def _hist_sj_path(path, colorspace) -> np.ndarray:
    if is_jpeg(path):
        with open(path, "rb") as f:
            data = f.read()
        arr = _sj_decode(data, colorspace)
        if arr is not None:
            return np.asarray(hist_sj_array(arr), dtype=np.int64)
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB").histogram(), dtype=np.int64)
    return hist_pillow_path(path)


def hist_simplejpeg_path(path) -> np.ndarray:
    """Path -> histogram: simplejpeg RGB for JPEG (Pillow fallback), Pillow otherwise."""
    return _hist_sj_path(path, "RGB")


def hist_simplejpeg_rgbx_path(path) -> np.ndarray:
    """As hist_simplejpeg_path but decoding to RGBX (zero-copy into Pillow)."""
    return _hist_sj_path(path, "RGBX")


ENGINES = {
    "pillow": hist_pillow_path,
    "pillow-noconv": hist_pillow_noconv_path,
    "simplejpeg": hist_simplejpeg_path,
    "simplejpeg-rgbx": hist_simplejpeg_rgbx_path,
}


def hist_chunk(args) -> np.ndarray:
    """Worker task: (engine name, list of paths) -> summed 768-int histogram."""
    engine, paths = args
    fn = ENGINES[engine]
    acc = np.zeros(768, np.int64)
    for p in paths:
        acc += fn(p)
    return acc


def _noop(x=None):
    return x


# --------------------------------------------------------------------------- sections
def section_env(paths, sizes) -> None:
    npx = sum(w * h for w, h in sizes.values())
    nj = sum(1 for p in paths if is_jpeg(p))
    info = {
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "pillow": PIL.__version__,
        "pillow_libjpeg_turbo": features.version("libjpeg_turbo"),
        "pillow_zlib": features.version("zlib"),
        "pillow_zlib_ng": features.version("zlib_ng") if "zlib_ng" in features.features else None,
        "simplejpeg": getattr(simplejpeg, "__version__", None),
        "numpy": np.__version__,
        "images": len(paths),
        "jpeg": nj,
        "png": len(paths) - nj,
        "mean_kpx": round(npx / len(paths) / 1e3, 1),
        "mean_kB": round(sum(os.path.getsize(p) for p in paths) / len(paths) / 1e3, 1),
        "load_avg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }
    RESULTS["env"] = info
    print("chanstats decoder bench")
    for k, v in info.items():
        print(f"  {k:22s} {v}")
    sys.stdout.flush()


def section_overhead(paths, datas, repeat) -> None:
    jd = [datas[p] for p in paths if is_jpeg(p)]
    n = len(paths)

    def stat():
        for p in paths:
            os.stat(p)

    def open_read():
        for p in paths:
            with open(p, "rb") as f:
                f.read()

    def pil_open_path():
        for p in paths:
            with Image.open(p) as im:
                _ = im.size

    def pil_open_bytes():
        for p in paths:
            with Image.open(io.BytesIO(datas[p])) as im:
                _ = im.size

    def sj_header():
        for d in jd:
            simplejpeg.decode_jpeg_header(d)

    def call_loop():
        for p in paths:
            _noop(p)

    def list_to_array():
        h = list(range(768))
        for _ in paths:
            np.asarray(h, dtype=np.int64)

    # Fixed per-image cost of the whole pipeline, measured on a tiny (16x16)
    # image so that per-pixel work is negligible: file open/read, header
    # parsing, decoder set-up, convert, histogram, result conversion.
    tiny_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"chanstats-bench-tiny-{os.getpid()}"
    tiny_dir.mkdir(exist_ok=True)
    tiny_rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    tiny_jpg, tiny_png = tiny_dir / "t.jpg", tiny_dir / "t.png"
    tiny_rgb.save(tiny_jpg, quality=90)
    tiny_rgb.save(tiny_png)
    reps_tiny = 2000

    def tiny(engine, path):
        fn = ENGINES[engine]

        def f():
            for _ in range(reps_tiny):
                fn(path)
        return f

    rows = []
    for name, fn, cnt in [
        ("python loop + call", call_loop, n),
        ("os.stat(path)", stat, n),
        ("open(path,'rb').read() (mean file %.0f kB)" % (sum(map(len, datas.values())) / n / 1e3), open_read, n),
        ("Image.open(path) header only", pil_open_path, n),
        ("Image.open(BytesIO) header only", pil_open_bytes, n),
        ("simplejpeg.decode_jpeg_header(bytes)", sj_header if simplejpeg else None, len(jd)),
        ("np.asarray(768-int list)", list_to_array, n),
        ("whole Pillow pipeline, 16x16 JPEG file", tiny("pillow", tiny_jpg), reps_tiny),
        ("whole Pillow pipeline, 16x16 PNG file", tiny("pillow", tiny_png), reps_tiny),
        ("whole simplejpeg pipeline, 16x16 JPEG", tiny("simplejpeg", tiny_jpg) if simplejpeg else None, reps_tiny),
    ]:
        if fn is None:
            continue
        t = median_time(fn, repeat)
        rows.append([name, f"{t / cnt * 1e6:.1f}"])
        RESULTS.setdefault("overhead_us", {})[name] = t / cnt * 1e6
    for f in (tiny_jpg, tiny_png):
        f.unlink()
    tiny_dir.rmdir()
    with ThreadPoolExecutor(2) as ex:
        list(ex.map(_noop, range(100)))
        t = median_time(lambda: list(ex.map(_noop, paths)), repeat)
    rows.append(["ThreadPoolExecutor(2).map, per task", f"{t / n * 1e6:.1f}"])
    RESULTS["overhead_us"]["threadpool_task"] = t / n * 1e6
    table("Per-image Python-level overhead (single thread, wall, median of passes)", ["operation", "µs/image"], rows)


def section_decode(paths, datas, sizes, kinds, repeat) -> None:
    """Single-thread decode cost, interleaved per batch."""
    px = np.array([sizes[p][0] * sizes[p][1] for p in paths], dtype=np.float64)
    jpeg = np.array([is_jpeg(p) for p in paths])
    cmyk = np.array([kinds[p] == "jpeg-cmyk" for p in paths])
    idx = list(range(len(paths)))

    def pil_path_convert(i):
        with Image.open(paths[i]) as im:
            im.convert("RGB")

    def pil_bytes_convert(i):
        with Image.open(io.BytesIO(datas[paths[i]])) as im:
            im.convert("RGB")

    def pil_bytes_load(i):
        with Image.open(io.BytesIO(datas[paths[i]])) as im:
            im.load()

    def sj(colorspace, **kw):
        def f(i):
            simplejpeg.decode_jpeg(datas[paths[i]], colorspace=colorspace, **kw)
        return f

    def always(i):
        return True

    def sj_ok(i):
        return bool(jpeg[i] and not cmyk[i])

    methods = {
        "Pillow open(path).convert('RGB')": (pil_path_convert, always),
        "Pillow open(BytesIO).convert('RGB')": (pil_bytes_convert, always),
        "Pillow open(BytesIO).load() (no convert)": (pil_bytes_load, always),
    }
    if simplejpeg:
        methods.update({
            "simplejpeg decode_jpeg(RGB)": (sj("RGB"), sj_ok),
            "simplejpeg decode_jpeg(RGBX)": (sj("RGBX"), sj_ok),
            "simplejpeg RGB fastdct+fastupsample": (sj("RGB", fastdct=True, fastupsample=True), sj_ok),
        })
    res = interleaved(methods, idx, repeat)
    groups = {"JPEG": jpeg, "JPEG non-CMYK": jpeg & ~cmyk, "PNG": ~jpeg}
    if not cmyk.any():
        del groups["JPEG non-CMYK"]
    rows = []
    out = {}
    for name, r in res.items():
        for g, mask in groups.items():
            valid = ~np.isnan(r["cpu"][0])
            if not (mask & valid).any() or (mask & ~valid).any():
                continue
            c, w = per_px(r, mask, px, "cpu"), per_px(r, mask, px, "wall")
            out[f"{name} [{g}]"] = {"cpu_ns_px": c, "wall_ns_px": w, "ms_image": per_item_us(r, mask) / 1e3,
                                    "others": max(r["others"])}
            rows.append([name, g, int(mask.sum()), f"{c:.2f}", f"{w:.2f}",
                         f"{per_item_us(r, mask) / 1e3:.2f}", f"{max(r['others']):.2f}"])
    table("Single-thread decode from in-memory bytes (interleaved, median of rounds)",
          ["decoder", "files", "n", "cpu ns/px", "wall ns/px", "cpu ms/img", "others"], rows)
    RESULTS["decode"] = out

    rows = []
    per_kind = {}
    kind_arr = np.array([kinds[p] for p in paths])
    for kind in sorted(set(kind_arr)):
        mask = kind_arr == kind
        conv = per_px(res["Pillow open(BytesIO).convert('RGB')"], mask, px)
        load = per_px(res["Pillow open(BytesIO).load() (no convert)"], mask, px)
        sjv = None
        if simplejpeg and kind.startswith("jpeg") and kind != "jpeg-cmyk":
            sjv = per_px(res["simplejpeg decode_jpeg(RGB)"], mask, px)
        per_kind[kind] = {"n": int(mask.sum()), "pillow_convert": conv, "pillow_load": load, "simplejpeg": sjv}
        rows.append([kind, int(mask.sum()), f"{conv:.2f}", f"{load:.2f}", "n/a" if sjv is None else f"{sjv:.2f}",
                     "" if sjv is None else f"{load / sjv:.2f}x"])
    table("Decode cpu ns/px by file kind (same interleaved run)",
          ["kind", "n", "PIL convert", "PIL load", "simplejpeg", "sj vs load"], rows)
    RESULTS["decode_by_kind"] = per_kind


def section_stats(paths, datas, repeat, limit=600) -> None:
    """Exact 768-bin histogram cost on already-decoded images (interleaved)."""
    ps = [p for p in paths if is_jpeg(p)][:limit]
    ims, arrs, arrs4 = [], [], []
    for p in ps:
        with Image.open(io.BytesIO(datas[p])) as im:
            rgb = im.convert("RGB")
        ims.append(rgb)
        a = np.asarray(rgb).copy()  # C-contiguous HxWx3 uint8, like simplejpeg RGB output
        arrs.append(a)
        a4 = np.empty(a.shape[:2] + (4,), np.uint8)  # like simplejpeg RGBX output
        a4[..., :3] = a
        a4[..., 3] = 255
        arrs4.append(a4)
    px = np.array([a.shape[0] * a.shape[1] for a in arrs], dtype=np.float64)
    offs = np.array([0, 256, 512], np.uint16)

    def bincount_per_channel(a):
        return np.concatenate([np.bincount(a[..., c].ravel(), minlength=256) for c in range(3)])

    def bincount_offset(a):
        return np.bincount((a.reshape(-1, 3) + offs).ravel(), minlength=768)

    def sum_sumsq(a):  # the "obvious" direct way, for reference
        f = a.reshape(-1, 3)
        x = f.astype(np.uint32)
        return f.sum(axis=0, dtype=np.uint64), (x * x).sum(axis=0, dtype=np.uint64)

    for k in range(3):  # correctness: all methods agree
        ref = np.asarray(ims[k].histogram())
        for h in (hist_sj_array(arrs[k]), hist_sj_array(arrs4[k]), bincount_per_channel(arrs[k]),
                  bincount_offset(arrs[k])):
            assert (np.asarray(h) == ref).all()

    def always(i):
        return True

    methods = {
        "PIL img.histogram() (decoded RGB image)": (lambda i: ims[i].histogram(), always),
        "Image.frombuffer('RGB', HxWx3).histogram()": (lambda i: hist_sj_array(arrs[i]), always),
        "Image.frombuffer('RGBA', HxWx4).histogram()": (lambda i: hist_sj_array(arrs4[i]), always),
        "np.bincount per channel (strided ravel)": (lambda i: bincount_per_channel(arrs[i]), always),
        "np.bincount(arr + [0,256,512])": (lambda i: bincount_offset(arrs[i]), always),
        "numpy sum + sum of squares (ref)": (lambda i: sum_sumsq(arrs[i]), always),
    }
    res = interleaved(methods, list(range(len(arrs))), repeat)
    mask = np.ones(len(arrs), bool)
    rows = []
    out = {}
    for name, r in res.items():
        c = per_px(r, mask, px)
        out[name] = {"cpu_ns_px": c, "us_image": per_item_us(r, mask), "others": max(r["others"])}
        rows.append([name, f"{c:.3f}", f"{per_px(r, mask, px, 'wall'):.3f}", f"{per_item_us(r, mask):.0f}",
                     f"{max(r['others']):.2f}"])
    table(f"Exact per-channel statistics on decoded pixels ({len(arrs)} images, single thread, interleaved)",
          ["method", "cpu ns/px", "wall ns/px", "cpu µs/img", "others"], rows)
    RESULTS["stats"] = out


def section_pipeline(paths, sizes, repeat) -> None:
    """Whole path -> histogram pipelines, single thread, interleaved."""
    px = np.array([sizes[p][0] * sizes[p][1] for p in paths], dtype=np.float64)
    jpeg = np.array([is_jpeg(p) for p in paths])
    engines = [e for e in ENGINES if simplejpeg or not e.startswith("simplejpeg")]
    res = interleaved({e: (ENGINES[e], lambda p: True) for e in engines}, list(paths), repeat)
    rows = []
    out = {}
    for e in engines:
        r = res[e]
        vals = [per_px(r, m, px) for m in (jpeg, ~jpeg, np.ones_like(jpeg))]
        us = per_item_us(r, np.ones_like(jpeg))
        out[e] = {"cpu_ns_px_jpeg": vals[0], "cpu_ns_px_png": vals[1], "cpu_ns_px_all": vals[2], "cpu_us_image": us}
        rows.append([e, *(f"{v:.2f}" for v in vals), f"{us:.0f}", f"{1e6 / us:.0f}", f"{max(r['others']):.2f}"])
    table("Single-thread pipeline path -> 768-int histogram (interleaved; cpu)",
          ["engine", "JPEG ns/px", "PNG ns/px", "all ns/px", "µs/img", "img/s/core", "others"], rows)
    RESULTS["pipeline_serial"] = out


def section_end_to_end(paths, sizes, repeat) -> None:
    """Serial vs 2 threads vs 2 processes, wall clock, rounds round-robin over configs."""
    npx = sum(w * h for w, h in sizes.values())
    n = len(paths)
    tex = ThreadPoolExecutor(2)
    pex = ProcessPoolExecutor(2, mp_context=mp.get_context("fork"))
    list(tex.map(_noop, range(4)))
    list(pex.map(_noop, range(4)))  # start the workers outside the timing
    workers = tuple(pex._processes)  # pids, for CPU accounting

    def chunks(engine, cs):
        return [(engine, paths[i:i + cs]) for i in range(0, n, cs)]

    def serial(engine):
        return lambda: hist_chunk((engine, paths))

    def threads(engine):
        fn = ENGINES[engine]

        def f():
            acc = np.zeros(768, np.int64)
            for h in tex.map(fn, paths):
                acc += h
            return acc
        return f

    def threads_chunked(engine, cs):
        return lambda: sum(tex.map(hist_chunk, chunks(engine, cs)))

    def procs(engine, cs):
        return lambda: sum(pex.map(hist_chunk, chunks(engine, cs)))

    configs = {}
    for e in ("pillow", "simplejpeg", "pillow-noconv", "simplejpeg-rgbx"):
        if e.startswith("simplejpeg") and simplejpeg is None:
            continue
        full = e in ("pillow", "simplejpeg")
        configs[(e, "serial")] = serial(e)
        configs[(e, "2 threads, 1 path/task")] = threads(e)
        if full:
            configs[(e, "2 threads, chunks of 32")] = threads_chunked(e, 32)
        for cs in ((8, 32, 128) if full else (32,)):
            configs[(e, f"2 processes, chunks of {cs}")] = procs(e, cs)

    reps = {k: [] for k in configs}
    results = {}
    for r in range(3 * repeat):
        todo = [k for k in configs if sum(1 for x in reps[k] if x[0] <= QUIET["max_others"]) < repeat]
        if not todo or (r >= repeat and not QUIET["enabled"]):
            break
        for k in todo:
            pids = workers if "process" in k[1] else ()
            wait_quiet(pids)
            gc.collect()
            with LoadMeter(pids) as m:
                h = configs[k]()
            reps[k].append((m.others, m.wall, m.own))
            results.setdefault(k[0], h)
            assert (h == results[k[0]]).all(), k
    tex.shutdown()
    pex.shutdown()

    rows = []
    out = {}
    serial_t = {}
    for k, rr in reps.items():
        t = _summarise(rr)
        if k[1] == "serial":
            serial_t[k[0]] = t
        out[f"{k[0]}: {k[1]}"] = {"wall_ns_px": t / npx * 1e9, "img_per_s": n / t, "cores_used": t.cpu / t,
                                  "others": t.others}
        rows.append([f"{k[0]}: {k[1]}", f"{t / npx * 1e9:.2f}", f"{t / n * 1e6:.0f}", f"{n / t:.0f}",
                     f"{serial_t[k[0]] / t:.2f}x", f"{t.cpu / t:.2f}", f"{t.others:.2f}"])
    same = {e: bool((h == results["pillow"]).all()) for e, h in results.items()}
    table(f"End-to-end path -> summed 768-int histogram ({n} images, {npx / 1e6:.0f} Mpx, wall clock)",
          ["engine: executor", "ns/px", "µs/img", "img/s", "vs serial", "cores used", "others"], rows)
    print(f"  corpus histogram identical to Pillow's: {same}")
    RESULTS["end_to_end"] = out
    RESULTS["e2e_histograms_identical"] = same

    # pool start-up cost (first task round-trip), by start method
    rows = []
    for method in ("fork", "forkserver", "spawn"):
        try:
            ctx = mp.get_context(method)
        except ValueError:
            continue
        wait_quiet()
        t0 = time.perf_counter()
        with ProcessPoolExecutor(2, mp_context=ctx) as ex:
            list(ex.map(_noop, range(2)))
            t1 = time.perf_counter()
        t2 = time.perf_counter()
        rows.append([f"ProcessPoolExecutor(2, {method}) first result", f"{(t1 - t0) * 1e3:.0f}"])
        rows.append([f"ProcessPoolExecutor(2, {method}) shutdown", f"{(t2 - t1) * 1e3:.0f}"])
        RESULTS.setdefault("pool_startup_ms", {})[method] = (t1 - t0) * 1e3
    for label, code in [("fresh interpreter: import PIL.Image, numpy", "import PIL.Image, numpy"),
                        ("fresh interpreter: import torch, torchvision", "import torch, torchvision")]:
        wait_quiet()
        t0 = time.perf_counter()
        ok = subprocess.run([sys.executable, "-c", code], capture_output=True, check=False).returncode == 0
        dt = (time.perf_counter() - t0) * 1e3
        rows.append([label, f"{dt:.0f}" if ok else "n/a"])
        RESULTS.setdefault("import_ms", {})[label] = dt if ok else None
    table("Start-up costs (this script's workers import PIL, numpy, simplejpeg)", ["what", "ms"], rows)


def section_identity(paths, datas, kinds) -> None:
    if simplejpeg is None:
        return
    jp = [p for p in paths if is_jpeg(p)]
    variants = {
        "RGB (defaults)": ("RGB", {}),
        "RGBX[..., :3]": ("RGBX", {}),
        "RGB fastupsample=True": ("RGB", {"fastupsample": True}),
        "RGB fastdct=True": ("RGB", {"fastdct": True}),
    }
    by_kind: dict = {}
    notes: dict = {}
    for p in jp:
        k = kinds[p]
        d = datas[p]
        with Image.open(io.BytesIO(d)) as im:
            src_mode = im.mode
            ref = np.asarray(im.convert("RGB"))
        row = by_kind.setdefault(k, {"n": 0, "modes": set(), **{v: [0, 0, 0.0] for v in variants}})
        row["n"] += 1
        row["modes"].add(src_mode)
        for v, (cs, kw) in variants.items():
            try:
                arr = simplejpeg.decode_jpeg(d, colorspace=cs, **kw)[..., :3]
            except ValueError as e:
                notes.setdefault(k, f"simplejpeg raises ValueError: {e}")
                continue
            if arr.shape == ref.shape and np.array_equal(arr, ref):
                row[v][0] += 1
            else:
                row[v][1] = max(row[v][1], int(np.abs(arr.astype(int) - ref.astype(int)).max()))
                row[v][2] = max(row[v][2], float((arr != ref).any(axis=-1).mean()))
    rows = []
    for k in sorted(by_kind):
        r = by_kind[k]
        cells = [k, "/".join(sorted(r["modes"]))]
        for v in variants:
            ident, maxd, frac = r[v]
            diff = f" (max|d|={maxd}, {100 * frac:.0f}%px)" if ident < r["n"] and maxd else ""
            cells.append(f"{ident}/{r['n']}{diff}")
        rows.append(cells)
    table("Pixel identity: simplejpeg.decode_jpeg(data, colorspace=..., ...) vs Pillow convert('RGB')",
          ["kind", "PIL mode"] + list(variants), rows)
    tot = sum(r["n"] for r in by_kind.values())
    ident = sum(r["RGB (defaults)"][0] for r in by_kind.values())
    print(f"  decode_jpeg(data, colorspace='RGB') with default kwargs: {ident}/{tot} JPEGs pixel-identical")
    for k, msg in notes.items():
        print(f"  {k}: {msg}")
    RESULTS["identity"] = {
        k: {"n": r["n"], "pil_modes": sorted(r["modes"]), **{v: r[v][0] for v in variants}}
        for k, r in by_kind.items()
    }
    RESULTS["identity_notes"] = notes


def _same(a, ref) -> str:
    if a is None or ref is None:
        return ""
    return " =PIL" if np.array_equal(a, ref) else " !=PIL"


def section_truncation(paths, datas, kinds) -> None:
    """How each decoder reacts to damaged JPEG files."""
    picks = {}
    for p in paths:
        k = kinds[p]
        if k in ("jpeg-420", "jpeg-progressive-420") and k not in picks:
            picks[k] = p
    rng = np.random.default_rng(0)

    def cases(d: bytes):
        mid = len(d) // 2
        yield "intact", d
        yield "truncated at 50%", d[:mid]
        yield "truncated at 98%", d[: int(len(d) * 0.98)]
        yield "only EOI marker missing", d[:-2] if d.endswith(b"\xff\xd9") else d
        yield "header only (first 600 B)", d[:600]
        bad = bytearray(d)
        pos = int(len(d) * 0.6)
        bad[pos:pos + 64] = rng.integers(0, 255, 64, dtype=np.uint8).tobytes()  # no 0xFF
        yield "64 garbage bytes in scan data", bytes(bad)
        yield "junk appended after EOI", d + b"\x00" * 100
        # like ImageNet's "Corrupt JPEG data: N extraneous bytes before marker 0xd9"
        yield "extraneous bytes before EOI", d[:-2] + b"\x00" * 37 + d[-2:]

    def run_pil(d):
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with Image.open(io.BytesIO(d)) as im:
                return "ok", np.asarray(im.convert("RGB"))
        except Exception as e:  # noqa: BLE001
            return f"{type(e).__name__}: {str(e)[:32]}", None

    def run_sj(d, strict):
        try:
            return "ok", simplejpeg.decode_jpeg(d, colorspace="RGB", strict=strict)
        except Exception as e:  # noqa: BLE001
            return f"{type(e).__name__}: {str(e)[:32]}", None

    rows = []
    res = {}
    for kind, p in picks.items():
        intact = None
        for name, d in cases(datas[p]):
            m_pil, a_pil = run_pil(d)
            m_s, a_s = run_sj(d, True)
            m_l, a_l = run_sj(d, False)
            if name == "intact":
                intact = a_pil
            if name != "intact":
                m_pil += "" if a_pil is None else (" =intact" if np.array_equal(a_pil, intact) else " (damaged px)")
            row = [f"{kind}: {name}", m_pil, m_s + _same(a_s, a_pil), m_l + _same(a_l, a_pil)]
            res[row[0]] = row[1:]
            rows.append(row)
    hdr = ["case", "Pillow (LOAD_TRUNCATED_IMAGES=False)", "simplejpeg strict=True", "simplejpeg strict=False"]
    table("Damaged JPEG behaviour (=PIL: pixels identical to Pillow's output)", hdr, rows)
    RESULTS["damaged"] = res


# --------------------------------------------------------------------------- main
SECTIONS = ("overhead", "decode", "stats", "pipeline", "e2e", "identity", "damaged")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="decoder / histogram micro-benchmarks")
    ap.add_argument("--n", type=int, default=2000, help="corpus size (default 2000)")
    ap.add_argument("--root", default=None, help="corpus dir (default bench/.cache/corpus-s0)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: " + ",".join(SECTIONS))
    ap.add_argument("--only", default="", help="comma list of sections to run")
    ap.add_argument("--json", default=None, help="write raw results here")
    ap.add_argument("--no-wait-quiet", action="store_true",
                    help="do not wait for / retry around CPU load from other processes")
    ap.add_argument("--wait-s", type=float, default=30.0,
                    help="max seconds to wait for a quiet machine before each pass (default 30)")
    ap.add_argument("--max-others", type=float, default=0.3,
                    help="max cores used by other processes during a kept pass (default 0.3)")
    a = ap.parse_args(argv)
    run = set(filter(None, a.only.split(","))) or set(SECTIONS)
    run -= set(filter(None, a.skip.split(",")))
    QUIET.update(enabled=not a.no_wait_quiet, max_others=a.max_others, wait_s=a.wait_s, repeat=a.repeat)
    ImageFile.LOAD_TRUNCATED_IMAGES = False

    paths = corpus.build_corpus(a.n, a.root, a.seed, verbose=True)
    man = corpus.load_manifest(paths[0].parent)
    kinds = {p: man[p.name]["kind"] for p in paths}
    datas = {p: p.read_bytes() for p in paths}  # also warms the page cache
    sizes = {}
    for p in paths:
        with Image.open(io.BytesIO(datas[p])) as im:
            sizes[p] = im.size

    section_env(paths, sizes)
    t0 = time.perf_counter()
    if "overhead" in run:
        section_overhead(paths, datas, a.repeat)
    if "decode" in run:
        section_decode(paths, datas, sizes, kinds, a.repeat)
    if "stats" in run:
        section_stats(paths, datas, a.repeat)
    if "pipeline" in run:
        section_pipeline(paths, sizes, a.repeat)
    if "e2e" in run:
        section_end_to_end(paths, sizes, a.repeat)
    if "identity" in run:
        section_identity(paths, datas, kinds)
    if "damaged" in run and simplejpeg is not None:
        section_truncation(paths, datas, kinds)
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"\n(total {time.perf_counter() - t0:.0f} s; load avg at end {load})")
    if a.json:
        Path(a.json).write_text(json.dumps(RESULTS, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

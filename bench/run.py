"""End-to-end benchmark: chanstats vs the decode-only limit vs the community recipe.

Measures, in one run and on the same files (``bench/corpus.py``'s cached
ImageNet-like corpus of real photographs, JPEG + PNG; page cache warmed first):

1. ``chanstats compute DIR -q -o out.json`` through the installed CLI, as a
   subprocess, default options and default workers: wall time, images/s, MP/s,
   CPU cores used and peak memory (see "Memory" below);
2. the decode-only limit: ``ProcessPoolExecutor(N)`` (fork), chunks of 32
   paths, each worker reads its files and decodes them to RGB, returning only a
   counter: (a) Pillow ``Image.open(BytesIO(data)).convert("RGB")``;
   (b) simplejpeg ``decode_jpeg(data, colorspace="RGB")`` for YCbCr / grey
   JPEGs, Pillow for PNG and CMYK JPEGs; (c) as (b) with pyspng (libspng) for
   PNGs, when pyspng is installed; (d) as (b) with chanstats' own PNG decoder
   (``chanstats.fastpng.decode_png``: ISA-L inflation + the compiled unfilter), which is
   what chanstats uses.  Every fast decoder's pixels are checked against
   Pillow's on every file of its kind in the corpus, in the same run; a decoder
   counts as "pixel-identical" only if all of them match;
3. the community recipe: torchvision ``ImageFolder`` + ``ToTensor()`` +
   ``DataLoader(batch_size=64, num_workers=N, collate_fn=list)``, full
   resolution, mean of per-image float32 means and mean of per-image stds (the
   common wrong recipe); its images/s and its error against chanstats' exact
   values;
4. scaling: ``chanstats compute --workers 1`` vs default;
5. start-up: ``chanstats --help`` (median of 5) and ``python -X importtime``
   proof that ``compute`` without a transform imports no torch/torchvision
   (the same trace tells which decoders chanstats uses);
6. memory at two corpus sizes (``--n`` and ``--big``) and its growth.

Every timed measurement is repeated ``--repeat`` times, the measurements
interleaved (rotated order in each round) because the machine may be shared;
tables show the median and the spread (min-max) of the repeats; ratios are
ratios of medians, with the range of the per-round ratios beside them.

Timing boundaries: chanstats is timed from process launch to exit (interpreter
start, imports, listing, worker start-up, output write all included).  The
decode-only runs are timed from pool creation to pool shutdown inside an
already started helper process (no interpreter start, no imports, no listing):
a strict limit; the same runs are also timed from launch to exit (a whole
decode-only program: interpreter, imports of its decoder, reading its file
list), which is the like-for-like comparison with the chanstats command; and
chanstats is also timed without its start-up, from the end of listing to the
end of writing (its ``--timings``), like the decode-only pool; all three
ratios are reported.  The recipe is timed from ``ImageFolder(...)`` to the final
division, after ``import torch, torchvision`` (import time shown apart): also
favourable to the recipe.

Memory: (a) ``ru_maxrss`` of the CLI from ``os.wait4`` -- the largest peak
RSS of any *single* process in the CLI's tree (the CLI and every worker it
waited for; Linux folds waited-for descendants into the max, it does not sum
them); exact, no sampling.  (b) the peak of the *sum* of RSS over the CLI's
process tree, polled every 25 ms with psutil: an upper bound on the tree's
footprint (pages shared after fork are counted once per process) that may
miss spikes shorter than the poll interval.  The growth target must hold for
both.  Polling walks /proc and costs CPU, so memory comes from separate,
untimed runs of the same commands; timed runs are not polled.

Usage::

    python bench/run.py [--n 2000] [--big 8000] [--workers N] [--repeat 3] [--quick]
    python bench/run.py --quick          # 200 / 400 images, 1 round: smoke test

``--workers N`` sets the processes of the decode-only and recipe runs and is
passed on to chanstats; without it chanstats runs with its default (all
cores) and the others with ``len(os.sched_getaffinity(0))``.  Results go to
stdout and to ``bench/RESULTS.md`` (``--md PATH`` to change, ``--json PATH``
for the raw numbers).

Bench-only dependencies (not chanstats dependencies)::

    pip install -e ".[bench]"        # scikit-image (the corpus) and psutil (memory polling)
"""

from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

JPEG_EXT = (".jpg", ".jpeg")
CHUNK = 32
SJ_COLORSPACES = ("YCbCr", "Gray")  # where simplejpeg RGB == Pillow convert("RGB") (bench/decoders.py)

TARGETS = {
    "fastest": 0.80,
    "own": 0.90,
    "recipe": 8.0,
    "scaling": 1.7,
    "help_s": 0.5,
    "rss_growth": 0.10,
}


# --------------------------------------------------------------------------- workers
# Module-level so that forked pool workers can run them.


def _decode_pillow_chunk(paths: list[str]) -> tuple[int, int]:
    from PIL import Image

    n = px = 0
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        with Image.open(io.BytesIO(data)) as im:
            rgb = im.convert("RGB")
        n += 1
        px += rgb.width * rgb.height
    return n, px


def _sj_or_none(data: bytes):
    import simplejpeg

    try:
        if simplejpeg.decode_jpeg_header(data)[2] not in SJ_COLORSPACES:
            return None
        return simplejpeg.decode_jpeg(data, colorspace="RGB")
    except ValueError:
        return None


def _decode_mixed_chunk(paths: list[str], png_decoder=None) -> tuple[int, int]:
    """simplejpeg for YCbCr / grey JPEGs, ``png_decoder`` (bytes -> array or None) for PNGs,
    Pillow for everything they decline."""
    from PIL import Image

    n = px = 0
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        name = p.lower()
        arr = None
        if name.endswith(JPEG_EXT):
            arr = _sj_or_none(data)
        elif png_decoder is not None and name.endswith(".png"):
            arr = png_decoder(data)
        if arr is not None:
            px += arr.shape[0] * arr.shape[1]
        else:
            with Image.open(io.BytesIO(data)) as im:
                rgb = im.convert("RGB")
            px += rgb.width * rgb.height
        n += 1
    return n, px


def _decode_simplejpeg_chunk(paths: list[str]) -> tuple[int, int]:
    return _decode_mixed_chunk(paths)


def _pyspng_or_none(data: bytes):
    import pyspng

    try:
        return pyspng.load(data)
    except Exception:
        return None


def _decode_pyspng_chunk(paths: list[str]) -> tuple[int, int]:
    return _decode_mixed_chunk(paths, _pyspng_or_none)


def _decode_chanstats_png_chunk(paths: list[str]) -> tuple[int, int]:
    from chanstats.fastpng import decode_png

    return _decode_mixed_chunk(paths, decode_png)


# Decode-only programs: name -> (chunk function, modules it needs).
DECODERS = {
    "pillow": (_decode_pillow_chunk, ()),
    "simplejpeg": (_decode_simplejpeg_chunk, ("simplejpeg",)),
    "simplejpeg+pyspng": (_decode_pyspng_chunk, ("simplejpeg", "pyspng")),
    "simplejpeg+chanstats-png": (_decode_chanstats_png_chunk, ("simplejpeg", "chanstats.fastpng")),
}


DECODER_LABELS = {
    "pillow": "Pillow",
    "simplejpeg": "simplejpeg JPEG, Pillow PNG",
    "simplejpeg+pyspng": "simplejpeg JPEG, pyspng PNG",
    "simplejpeg+chanstats-png": "simplejpeg JPEG, chanstats PNG (ISA-L + kernel)",
}


def available_decoders() -> list[str]:
    import importlib.util

    def have(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ImportError:
            return False

    return [name for name, (_, needs) in DECODERS.items() if all(have(m) for m in needs)]


# Fast decoders checked pixel for pixel against Pillow: name -> (files it decodes, bytes -> array
# or None when it declines the file). JPEGs are compared with convert("RGB"), what simplejpeg is
# asked for; PNGs with Pillow's pixels as stored, which is what the PNG decoders return.
def _fast_decoders() -> dict:
    from chanstats.fastpng import decode_png

    return {"simplejpeg": (JPEG_EXT, _sj_or_none), "pyspng": ((".png",), _pyspng_or_none), "chanstats-png": ((".png",), decode_png)}


def _identity_chunk(decoder: str, paths: list[str]) -> tuple[int, int, int]:
    """(identical, compared, left to Pillow) for one fast decoder vs Pillow on its files."""
    import numpy as np
    from PIL import Image

    _, fast = _fast_decoders()[decoder]
    same = cmp = fallback = 0
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        arr = fast(data)
        if arr is None:
            fallback += 1
            continue
        with Image.open(io.BytesIO(data)) as im:
            ref = np.asarray(im.convert("RGB") if decoder == "simplejpeg" else im)
        cmp += 1
        same += int(arr.size == ref.size and np.array_equal(ref, arr.reshape(ref.shape)))
    return same, cmp, fallback


def _chunks(seq: list, k: int = CHUNK) -> list[list]:
    return [seq[i : i + k] for i in range(0, len(seq), k)]


def helper_decode(argv: list[str]) -> int:
    """``run.py _decode DECODER WORKERS LISTFILE``: decode-only pass, prints JSON."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    import importlib

    import PIL.Image  # noqa: F401  (imports before the clock starts)

    fn, needs = DECODERS[argv[0]]
    for module in needs:
        importlib.import_module(module)
    workers = int(argv[1])
    paths = Path(argv[2]).read_text().splitlines()
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
        res = list(ex.map(fn, _chunks(paths)))
    wall = time.perf_counter() - t0
    print(json.dumps({"wall": wall, "images": sum(r[0] for r in res), "pixels": sum(r[1] for r in res)}))
    return 0


def helper_recipe(argv: list[str]) -> int:
    """``run.py _recipe ROOT WORKERS``: the copy-pasted community recipe, prints JSON."""
    t_imp = time.perf_counter()
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    t_imp = time.perf_counter() - t_imp
    root, workers = argv[0], int(argv[1])

    t0 = time.perf_counter()
    dataset = datasets.ImageFolder(root, transform=transforms.ToTensor())
    loader = DataLoader(
        dataset, batch_size=64, num_workers=workers, shuffle=False, collate_fn=lambda batch: batch
    )
    mean = torch.zeros(3)
    std = torch.zeros(3)
    n = 0
    for batch in loader:
        for img, _label in batch:
            mean += img.mean(dim=(1, 2))
            std += img.std(dim=(1, 2))
            n += 1
    mean /= n
    std /= n
    wall = time.perf_counter() - t0
    print(json.dumps({"wall": wall, "images": n, "mean": mean.tolist(), "std": std.tolist(), "import_s": t_imp}))
    return 0


# --------------------------------------------------------------------------- plumbing


def chanstats_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("chanstats")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("chanstats")
    return [found] if found else [sys.executable, "-m", "chanstats"]


class Run:
    """One finished subprocess: wall time, rusage of its whole tree, polled tree RSS."""

    def __init__(self, cmd: list[str], poll_s: float | None = None, env: dict | None = None):
        self.cmd = cmd
        out = tempfile.TemporaryFile()
        err = tempfile.TemporaryFile()
        self.peak_tree_rss = 0
        done = threading.Event()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)

        def poll() -> None:
            try:
                import psutil

                root = psutil.Process(proc.pid)
            except Exception:
                return
            while not done.is_set():
                total = 0
                try:
                    procs = [root] + root.children(recursive=True)
                except Exception:
                    break
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except Exception:
                        pass
                self.peak_tree_rss = max(self.peak_tree_rss, total)
                done.wait(poll_s)

        # Polling costs CPU (it walks /proc), so timed runs do not poll; memory runs do.
        th = threading.Thread(target=poll, daemon=True)
        if poll_s is not None:
            th.start()
        _, status, ru = os.wait4(proc.pid, 0)
        self.wall = time.perf_counter() - t0
        done.set()
        if th.is_alive():
            th.join()
        proc.returncode = self.rc = os.waitstatus_to_exitcode(status)
        self.maxrss = ru.ru_maxrss * 1024  # KiB on Linux
        self.cpu = ru.ru_utime + ru.ru_stime
        out.seek(0)
        err.seek(0)
        self.stdout = out.read().decode(errors="replace")
        self.stderr = err.read().decode(errors="replace")

    def check(self, what: str) -> None:
        if self.rc != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-6:])
            raise RuntimeError(f"{what} failed (exit {self.rc}): {' '.join(self.cmd)}\n{tail}")


def make_set(paths: list[Path], root: Path) -> Path:
    """``root/all/<file>`` hard links to ``paths`` (a class folder, for ImageFolder).

    chanstats gets ``root`` (listed recursively), ImageFolder gets ``root`` (one
    class, "all"), so both see exactly the same files.  Falls back to copies.
    """
    cls = root / "all"
    cls.mkdir(parents=True, exist_ok=True)
    want = {p.name: p for p in paths}
    for f in cls.iterdir():
        if f.name not in want:
            f.unlink()
    for name, src in want.items():
        dst = cls / name
        try:
            if dst.exists() and os.stat(dst).st_ino == os.stat(src).st_ino:
                continue
            if dst.exists():
                dst.unlink()
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
    return root


def make_big_set(base: list[Path], big: int, root: Path) -> tuple[Path, list[Path]]:
    """``root/all/`` holding ``big`` files: the corpus images, then copies of them.

    Generating thousands more photographs takes long on 2 cores, and memory
    growth does not depend on pixel content, so image ``i >= len(base)`` is a
    *copy* (its own inode: chanstats skips a second hard link to a file it has
    already listed) of ``base[i % len(base)]``, named ``rep{k}_<name>``.
    """
    cls = root / "all"
    cls.mkdir(parents=True, exist_ok=True)
    srcs: list[tuple[str, Path]] = []
    for i in range(big):
        src = base[i % len(base)]
        k = i // len(base)
        srcs.append((src.name if k == 0 else f"rep{k}_{src.name}", src))
    want = dict(srcs)
    for f in cls.iterdir():
        if f.name not in want:
            f.unlink()
    for name, src in srcs:
        dst = cls / name
        same = dst.exists() and os.stat(dst).st_size == os.stat(src).st_size
        if name == src.name:
            if same and os.stat(dst).st_ino == os.stat(src).st_ino:
                continue
            if dst.exists():
                dst.unlink()
            try:
                os.link(src, dst)
                continue
            except OSError:
                pass
        elif same:
            continue
        shutil.copyfile(src, dst)
    return root, [cls / name for name, _ in srcs]


def precompile_chanstats() -> None:
    """Write chanstats' bytecode, as ``pip install`` does for an installed package.

    An editable install only gets it when a first import writes it, which PYTHONDONTWRITEBYTECODE
    forbids: every run (and every decode-only helper importing chanstats.fastpng) would then spend
    about 40 ms compiling chanstats from source, a cost users of an installed chanstats never pay.
    """
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("chanstats")
    if spec is not None and spec.origin:
        compileall.compile_dir(str(Path(spec.origin).parent), quiet=1)


def warm(paths: list[Path]) -> int:
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            total += len(f.read())
    return total


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float]) -> str:
    """Min-max spread of repeats, in % of the median."""
    if len(xs) < 2:
        return "n/a"
    m = med(xs)
    return f"±{100 * (max(xs) - min(xs)) / 2 / m:.1f}%" if m else "n/a"


def machine() -> dict:
    info: dict = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        info["cpu"] = platform.processor() or platform.machine()
    info["cores"] = os.cpu_count()
    info["cores_usable"] = len(os.sched_getaffinity(0))
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
    for mod in ("simplejpeg", "torch", "torchvision", "psutil"):
        try:
            out = subprocess.run(
                [sys.executable, "-c", f"import {mod}; print({mod}.__version__)"],
                capture_output=True, text=True, timeout=120,
            )
            info[mod] = out.stdout.strip() or "missing"
        except Exception:
            info[mod] = "missing"
    try:
        out = subprocess.run(chanstats_cmd() + ["--version"], capture_output=True, text=True, timeout=60)
        info["chanstats"] = out.stdout.strip().rsplit(" ", 1)[-1] if out.returncode == 0 else "?"
    except Exception:
        info["chanstats"] = "?"
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "chanstats"], capture_output=True, text=True
        )
        info["git"] = rev.stdout.strip() + (" + uncommitted changes in chanstats/" if dirty.stdout.strip() else "")
    except OSError:
        pass
    info["date"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return info


def corpus_summary(paths: list[Path]) -> dict:
    import corpus

    return corpus.corpus_summary(paths)


def importtime_modules(stderr: str) -> set[str]:
    mods = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":
                mods.add(name)
    return mods


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_decode":
        return helper_decode(argv[1:])
    if argv and argv[0] == "_recipe":
        return helper_recipe(argv[1:])

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=None, help="images of the main corpus (default 2000; --quick 200)")
    ap.add_argument("--big", type=int, default=None, help="images of the memory-growth corpus (default 8000; --quick 400)")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: chanstats' default / all usable cores)")
    ap.add_argument("--repeat", type=int, default=None, help="rounds of every timed measurement (default 3; --quick 1)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 200/400 images, 1 round")
    ap.add_argument("--md", default=str(HERE / "RESULTS.md"), help="markdown output (default bench/RESULTS.md)")
    ap.add_argument("--json", default=None, help="also write the raw numbers here")
    a = ap.parse_args(argv)
    n = a.n or (200 if a.quick else 2000)
    big = a.big or (400 if a.quick else 8000)
    repeat = a.repeat or (1 if a.quick else 3)
    if big <= n:
        ap.error("--big must be larger than --n")
    workers = a.workers or len(os.sched_getaffinity(0))
    # The options that change what is measured; where the results are written is not one of them
    # (and would put a path of this machine into RESULTS.md).
    measured = [f"--{k} {v}" for k, v in (("n", a.n), ("big", a.big), ("workers", a.workers), ("repeat", a.repeat)) if v]
    command = " ".join(["python bench/run.py", *(["--quick"] if a.quick else []), *measured])

    import corpus

    log = lambda *m: print(*m, file=sys.stderr, flush=True)  # noqa: E731
    precompile_chanstats()
    mach = machine()
    load0 = os.getloadavg()
    log(f"corpus: {n} images (cached under {corpus.default_root()}) ...")
    allp = corpus.build_corpus(n, verbose=True)
    sets = HERE / ".cache" / "sets"
    set_n = make_set(allp, sets / f"n{n}")
    set_big, big_files = make_big_set(allp, big, sets / f"n{big}")
    set_tiny = make_set(allp[:48], sets / "n48")
    files_n = sorted(str(p) for p in (set_n / "all").iterdir())
    list_n = sets / f"n{n}.txt"
    list_n.write_text("\n".join(files_n) + "\n")
    summ_n = corpus_summary(allp)
    summ_big = corpus_summary([allp[i % n] for i in range(big)])
    summ_big["note"] = f": the {n} images then copies of them"
    log(f"warming page cache: {warm(big_files) / 2**20:.0f} MiB")

    tmp = Path(tempfile.mkdtemp(prefix="chanstats-bench-"))
    cs = chanstats_cmd()
    wflag = ["--workers", str(a.workers)] if a.workers else []
    errors: list[str] = []

    # --- 5. start-up and imports (also tells which decoder chanstats uses)
    log("start-up: chanstats --help x5, -X importtime ...")
    help_t = []
    for _ in range(5):
        r = Run(cs + ["--help"])
        if r.rc == 0:
            help_t.append(r.wall)
    imp_help = Run([sys.executable, "-X", "importtime", "-m", "chanstats", "--help"])
    imp_comp = Run(
        [sys.executable, "-X", "importtime", "-m", "chanstats", "compute", str(set_tiny), "-q", "-o", str(tmp / "tiny.json")]
        + wflag
    )
    if imp_comp.rc != 0:
        errors.append(f"importtime compute run failed: {imp_comp.stderr.strip().splitlines()[-1:]}")
    mods_help, mods_comp = importtime_modules(imp_help.stderr), importtime_modules(imp_comp.stderr)
    torchy = lambda ms: sorted(m for m in ms if m.split(".")[0] in ("torch", "torchvision"))  # noqa: E731
    torch_help, torch_comp = torchy(mods_help), torchy(mods_comp)
    # chanstats' own decoders: simplejpeg and its PNG path need the compiled kernel (chanstats._kernels).
    own = "simplejpeg+chanstats-png" if {"simplejpeg", "chanstats._kernels"} <= mods_comp else "pillow"
    decoders = available_decoders()

    # --- pixel identity of every fast decoder vs Pillow, on the corpus' files of its kind
    log("pixel identity of the fast decoders vs Pillow ...")
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    ident: dict[str, list[int]] = {}
    fast_names = [d for d in _fast_decoders() if any(d in name.split("+") for name in decoders)]
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as ex:
        for fast_name in fast_names:
            kinds = _fast_decoders()[fast_name][0]
            files = [p for p in files_n if p.lower().endswith(kinds)]
            ident[fast_name] = [sum(x) for x in zip(*ex.map(partial(_identity_chunk, fast_name), _chunks(files)))] or [0, 0, 0]
    fast_identical = {name: counts[1] > 0 and counts[0] == counts[1] for name, counts in ident.items()}

    # --- timed measurements, interleaved
    jobs = {
        "chanstats": lambda: Run(cs + ["compute", str(set_n), "-q", "--timings", "-o", str(tmp / "out.json")] + wflag),
        "chanstats_w1": lambda: Run(cs + ["compute", str(set_n), "-q", "-o", str(tmp / "out_w1.json"), "--workers", "1"]),
        **{
            f"decode_{d}": partial(lambda d: Run([sys.executable, __file__, "_decode", d, str(workers), str(list_n)]), d)
            for d in decoders
        },
        "recipe": lambda: Run([sys.executable, __file__, "_recipe", str(set_n), str(workers)]),
        "chanstats_big": lambda: Run(cs + ["compute", str(set_big), "-q", "-o", str(tmp / "out_big.json")] + wflag),
        # The same two runs again, with the tree's RSS polled (see "Memory"): not timed.
        "memory_n": lambda: Run(cs + ["compute", str(set_n), "-q", "-o", str(tmp / "mem.json")] + wflag, poll_s=0.025),
        "memory_big": lambda: Run(cs + ["compute", str(set_big), "-q", "-o", str(tmp / "mem_big.json")] + wflag, poll_s=0.025),
    }
    names = list(jobs)
    res: dict[str, list[Run]] = {k: [] for k in names}
    outs: dict[str, list[bytes]] = {"chanstats": [], "chanstats_w1": []}
    for rnd in range(repeat):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for name in order:
            log(f"round {rnd + 1}/{repeat}: {name} ...")
            r = jobs[name]()
            if r.rc != 0:
                errors.append(f"{name} round {rnd + 1}: exit {r.rc}: " + " | ".join(r.stderr.strip().splitlines()[-3:]))
                continue
            res[name].append(r)
            if name in outs:
                outs[name].append((tmp / ("out.json" if name == "chanstats" else "out_w1.json")).read_bytes())
    load1 = os.getloadavg()

    # --- derive numbers
    def times(name: str) -> list[float]:
        if name.startswith("decode") or name == "recipe":
            return [json.loads(r.stdout)["wall"] for r in res[name]]
        return [r.wall for r in res[name]]

    imgs = {k: (summ_big if k == "chanstats_big" else summ_n)["images"] for k in names}
    pix = {k: (summ_big if k == "chanstats_big" else summ_n)["pixels"] for k in names}
    T = {k: times(k) for k in names}
    ips = {k: [imgs[k] / t for t in T[k]] for k in names}

    def ratio(num: str, den: str) -> tuple[float, list[float]]:
        """Throughput of ``num`` / throughput of ``den`` (same files: inverse ratio of wall times)."""
        if not T[num] or not T[den]:
            return float("nan"), []
        per = [td / tn for tn, td in zip(T[num], T[den])]  # same round: interleaved pairs
        return med(T[den]) / med(T[num]), per

    def ratio_launch(num: str, den: str) -> tuple[float, list[float]]:
        """As :func:`ratio`, with the decode-only program also timed from launch to exit."""
        launch = [r.wall for r in res[den]]
        if not T[num] or not launch:
            return float("nan"), []
        return med(launch) / med(T[num]), [td / tn for tn, td in zip(T[num], launch)]

    def after_startup(run: Run) -> float:
        """chanstats' own time once started and listed: measuring + finalizing + writing (--timings)."""
        phases = dict(re.findall(r"(\w+) ([\d.]+) s", run.stderr.split("timings:", 1)[1]))
        return sum(float(phases[p]) for p in ("measuring", "finalizing", "writing"))

    def ratio_inside(num: str, den: str) -> tuple[float, list[float]]:
        """As :func:`ratio`, with chanstats also timed without start-up and listing."""
        inside = [after_startup(r) for r in res[num]]
        if not inside or not T[den]:
            return float("nan"), []
        return med(T[den]) / med(inside), [td / tn for tn, td in zip(inside, T[den])]

    exact, channels = None, ["R", "G", "B"]
    if outs["chanstats"]:
        out_json = json.loads(outs["chanstats"][0])
        exact, channels = out_json["exact"], out_json.get("channels", channels)
    recipe_vals = json.loads(res["recipe"][0].stdout) if res["recipe"] else None
    identical_outputs = (
        len(set(outs["chanstats"] + outs["chanstats_w1"])) == 1 if outs["chanstats"] and outs["chanstats_w1"] else None
    )

    # A combination is pixel-identical when each of its fast decoders was (Pillow is the reference).
    dec_ok = {d: all(fast_identical.get(part, False) for part in d.split("+") if part != "pillow") for d in decoders}
    dec_ips = {d: med(ips[f"decode_{d}"]) if ips[f"decode_{d}"] else 0.0 for d in decoders}
    fastest = max((d for d in decoders if dec_ok[d]), key=lambda d: dec_ips[d])

    memory_run = {"chanstats": "memory_n", "chanstats_big": "memory_big"}
    rss = {k: (med([r.maxrss for r in res[k]]), med([r.peak_tree_rss for r in res[k]])) for k in memory_run.values()}
    measured = res["memory_n"] and res["memory_big"]
    growth_single = rss["memory_big"][0] / rss["memory_n"][0] - 1 if measured else float("nan")
    growth_tree = rss["memory_big"][1] / rss["memory_n"][1] - 1 if measured else float("nan")

    # --- tables
    def row_speed(label: str, k: str) -> list[str]:
        if not T[k]:
            return [label, "failed"]
        t = med(T[k])
        cores = "" if k.startswith("decode") or k == "recipe" else f"{med([r.cpu / r.wall for r in res[k]]):.2f}"
        mem = ""
        if k in memory_run and res[memory_run[k]]:
            m = memory_run[k]
            mem = f"{med([r.maxrss for r in res[m]]) / 2**20:.0f} / {med([r.peak_tree_rss for r in res[m]]) / 2**20:.0f}"
        # Decode-only and recipe programs are timed inside; their whole run, launch to exit, apart.
        whole = med([r.wall for r in res[k]])
        whole_ips = f"{imgs[k] / whole:.0f}" if k.startswith("decode") else ""
        return [label, f"{imgs[k]}", f"{t:.2f}", f"{imgs[k] / t:.0f}", whole_ips, f"{pix[k] / t / 1e6:.1f}", spread(T[k]), cores, mem]

    wdesc = f"{a.workers}" if a.workers else "default"
    speed_rows = [
        row_speed(f"chanstats compute (workers {wdesc})", "chanstats"),
        row_speed("chanstats compute --workers 1", "chanstats_w1"),
        row_speed(f"chanstats compute (workers {wdesc}), big corpus", "chanstats_big"),
        *[row_speed(f"decode-only {DECODER_LABELS[d]}, {workers} processes", f"decode_{d}") for d in decoders],
        row_speed(f"recipe ImageFolder+ToTensor+DataLoader({workers} workers)", "recipe"),
    ]
    speed_head = ["run", "images", "wall s (median)", "images/s", "images/s launch to exit", "MP/s", "spread", "cores used",
                  "peak RSS MiB single / tree"]

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "FAIL")

    def rr(x: float, per: list[float], fmt: str = "{:.2f}") -> str:
        s = (fmt + "×").format(x)
        if len(per) > 1:
            s += f" ({min(per):.2f}–{max(per):.2f})"
        return s

    ratio_rows = []
    r_f, per_f = ratio("chanstats", "decode_" + fastest)
    ratio_rows.append([f"chanstats / decode-only of fastest pixel-identical decoder ({fastest})", rr(r_f, per_f),
                       f"≥ {TARGETS['fastest']:.2f}×", verdict(r_f >= TARGETS["fastest"] if per_f else None)])
    r_o, per_o = ratio("chanstats", "decode_" + own)
    ratio_rows.append([f"chanstats / decode-only of its own decoder ({own}, from -X importtime)", rr(r_o, per_o),
                       f"≥ {TARGETS['own']:.2f}×", verdict(r_o >= TARGETS["own"] if per_o else None)])
    # Like for like: both programs timed from launch to exit, each paying its interpreter start,
    # its imports and its listing; what is left is the cost of statistics, simulation, plumbing.
    for label, decoder, target in (("fastest pixel-identical decoder", fastest, "fastest"), ("its own decoder", own, "own")):
        r_l, per_l = ratio_launch("chanstats", "decode_" + decoder)
        ratio_rows.append([f"same, {label} ({decoder}), both timed from launch to exit", rr(r_l, per_l),
                           f"≥ {TARGETS[target]:.2f}×", verdict(r_l >= TARGETS[target] if per_l else None)])
    # Also like for like: neither pays start-up; chanstats' phases from its own --timings.
    for label, decoder, target in (("fastest pixel-identical decoder", fastest, "fastest"), ("its own decoder", own, "own")):
        r_i, per_i = ratio_inside("chanstats", "decode_" + decoder)
        ratio_rows.append([f"same, {label} ({decoder}), both without start-up (chanstats: measuring + finalizing + "
                           "writing from --timings)", rr(r_i, per_i),
                           f"≥ {TARGETS[target]:.2f}×", verdict(r_i >= TARGETS[target] if per_i else None)])
    for d in decoders:
        if d not in (fastest, own):
            r_d, per_d = ratio("chanstats", "decode_" + d)
            ratio_rows.append([f"chanstats / decode-only {d}", rr(r_d, per_d), "—", "info"])
    r_r, per_r = ratio("chanstats", "recipe")
    ratio_rows.append(["chanstats / community recipe (full resolution)", rr(r_r, per_r, "{:.1f}"),
                       f"≥ {TARGETS['recipe']:.0f}×", verdict(r_r >= TARGETS["recipe"] if per_r else None)])
    r_s, per_s = ratio("chanstats", "chanstats_w1")
    ratio_rows.append([f"chanstats {wdesc} workers / 1 worker", rr(r_s, per_s),
                       f"≥ {TARGETS['scaling']:.1f}×", verdict(r_s >= TARGETS["scaling"] if per_s else None)])
    g_ok = None if growth_single != growth_single else (growth_single <= TARGETS["rss_growth"] and growth_tree <= TARGETS["rss_growth"])
    ratio_rows.append([f"peak RSS growth {n} → {big} images (single process / tree sum)",
                       f"{100 * growth_single:+.1f}% / {100 * growth_tree:+.1f}%", f"≤ {100 * TARGETS['rss_growth']:.0f}%", verdict(g_ok)])
    h = med(help_t) if help_t else float("nan")
    ratio_rows.append(["`chanstats --help` wall (median of 5)", f"{h:.3f} s", f"≤ {TARGETS['help_s']} s",
                       verdict(h <= TARGETS["help_s"] if help_t else None)])
    ratio_rows.append(["`compute` (no transform) imports torch/torchvision", "no" if not torch_comp else "yes: " + ", ".join(torch_comp[:3]),
                       "no", verdict(not torch_comp if imp_comp.rc == 0 else None)])
    ratio_rows.append(["`--help` imports torch/torchvision", "no" if not torch_help else "yes", "no",
                       verdict(not torch_help if imp_help.rc == 0 else None)])
    ratio_head = ["check", "measured (per-round range)", "target", "result"]

    info_rows = [
        *[
            [f"{name} pixels == Pillow's (corpus {'JPEGs' if name == 'simplejpeg' else 'PNGs'})",
             f"{same}/{compared} identical, {declined} left to Pillow"]
            for name, (same, compared, declined) in ident.items()
        ],
        ["chanstats out.json byte-identical across runs and worker counts", {True: "yes", False: "NO", None: "n/a"}[identical_outputs]],
        ["load average before / after", f"{load0[0]:.2f} / {load1[0]:.2f}"],
    ]
    if recipe_vals:
        info_rows.append(["recipe: torch+torchvision import (not in its wall time)", f"{recipe_vals['import_s']:.2f} s"])
    err_rows = []
    if exact and recipe_vals:
        for c, ch in enumerate(channels):
            em, es = exact["mean"][c], exact["std"][c]
            rm, rs = recipe_vals["mean"][c], recipe_vals["std"][c]
            err_rows.append([ch, f"{em:.5f}", f"{rm:.5f}", f"{rm - em:+.5f} ({100 * (rm - em) / em:+.2f}%)",
                             f"{es:.5f}", f"{rs:.5f}", f"{rs - es:+.5f} ({100 * (rs - es) / es:+.2f}%)"])
    err_head = ["channel", "exact mean", "recipe mean", "mean error", "exact std", "recipe std", "std error"]

    # --- output
    def md_table(head: list[str], rows: list[list[str]]) -> str:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
        lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
        return "\n".join(lines)

    def text_table(head: list[str], rows: list[list[str]]) -> str:
        rows = [[str(c) for c in r] + [""] * (len(head) - len(r)) for r in rows]
        w = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
        fmt = lambda r: "  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip()  # noqa: E731
        return "\n".join([fmt(head), fmt(["-" * x for x in w])] + [fmt(r) for r in rows])

    def corpus_line(s: dict) -> str:
        return (f"{s['images']} images ({s['jpeg']} JPEG, {s['png']} PNG), {s['pixels'] / s['images'] / 1e3:.0f} kpx/image mean, "
                f"{s['pixels'] / 1e6:.0f} MP, {s['bytes'] / 2**20:.0f} MiB" + (s.get("note") or ""))

    print()
    print(text_table(ratio_head, ratio_rows))
    print()
    print(text_table(speed_head, speed_rows))
    print()
    print(text_table(["check", "value"], info_rows))
    if err_rows:
        print()
        print(text_table(err_head, err_rows))
    for e in errors:
        print("ERROR:", e)

    mach_rows = [[k, str(v)] for k, v in mach.items()]
    md = [
        "# chanstats benchmark results",
        "",
        f"Command: `{command}` (from the repository root; written by `bench/run.py`, see its docstring for what "
        "each number includes).",
        "",
        "## Targets (issue 4)",
        "",
        md_table(ratio_head, ratio_rows),
        "",
        f"Ratios are ratios of medians of {repeat} interleaved round(s); in brackets the range of the ratio within "
        "each round. Decode-only is timed inside a started helper process (pool start-up to shutdown, no "
        "interpreter start or imports); chanstats from process launch to exit — so the decode-only limit is strict. "
        "The rows 'both timed from launch to exit' time the decode-only program whole, like the chanstats command; "
        "the rows 'both without start-up' time chanstats from the end of listing to the end of writing "
        "(its `--timings`), like the decode-only pool.",
        "",
        "## Throughput",
        "",
        f"Main corpus: {corpus_line(summ_n)}. Big corpus: {corpus_line(summ_big)}. Files in the page cache "
        "(read once before timing).",
        "",
        md_table(speed_head, speed_rows),
        "",
        "wall s and images/s: chanstats from launch to exit; decode-only inside a started pool (their whole "
        "program, launch to exit, in the next column); the recipe from `ImageFolder(...)` on. "
        "spread: half the min–max range of the repeats, in % of the median. cores used: (user+sys CPU of the "
        "process tree) / wall. peak RSS single: `ru_maxrss` from `os.wait4` = the largest single process of the "
        "CLI's tree (the CLI and its waited-for workers; Linux takes the max, it does not sum). tree: peak of "
        "the sum of RSS over the tree polled every 25 ms with psutil (pages shared after fork counted per process).",
        "",
        "## Community recipe vs exact values ([0,1] scale)",
        "",
        "Recipe: mean over images of per-image float32 means, mean over images of per-image stds "
        "(`Tensor.std`, unbiased), full resolution.",
        "",
        md_table(err_head, err_rows) if err_rows else "(not available)",
        "",
        "## Other checks",
        "",
        md_table(["check", "value"], info_rows),
        "",
    ]
    if errors:
        md += ["## Errors", ""] + [f"- {e}" for e in errors] + [""]
    md += ["## Machine", "", md_table(["item", "value"], mach_rows), ""]
    Path(a.md).write_text("\n".join(md))
    print(f"\nwritten {a.md}")
    if a.json:
        raw = {
            "command": command, "machine": mach, "n": summ_n, "big": summ_big, "workers": workers,
            "times": T, "help_s": help_t, "identity": ident, "own_decoder": own,
            "rss": {k: [[r.maxrss, r.peak_tree_rss] for r in res[k]] for k in memory_run.values()},
            "recipe": recipe_vals, "exact": exact, "errors": errors,
        }
        Path(a.json).write_text(json.dumps(raw, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

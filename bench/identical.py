"""Byte-identical outputs across a change: run a fixed set of ``chanstats`` commands on a small
generated corpus of every source kind, keep every output, and compare two such recordings.

The commands cover compute on every source kind (a folder, a tar shard, a ``.tar.gz`` shard, an
``@list`` file, a Parquet table, ``.npy``/``.npz`` stacks, a ``--dataset``, rasters with
``--mode keep``, ``--bands`` and ``--nodata``), bad images skipped, a transform over epochs,
``--sample`` and ``--listing``, the per-image CSV, shards in both partial formats + merge, a
checkpoint interrupted and resumed, torchrun (two ranks), ``compare``, ``check``, every export
format, a video (``--frames``, random clips) and the measurement cache (filled, then reused by
``compute`` and ``check``). Each command's exit code, stdout, stderr and written files are stored; partial-state files
are left out (they name temporary folders).

Run::

    python -m bench.identical record BASELINE_DIR   # before a change
    python -m bench.identical compare BASELINE_DIR  # after it: lists every difference, exit 1 if any

``--no-torchrun`` skips the two-rank run (it costs a few seconds of torch start-up).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

EXPORT_FORMATS = ["torchvision", "timm", "hf", "albumentations", "albumentations-json", "albumentations-yaml",
                  "mmengine", "detectron2", "keras", "kornia", "torchgeo", "percentile-clip", "json", "yaml"]

DATASET_MODULE = '''
import numpy as np


class Stack:
    """Twelve seeded uint8 images, channels last."""

    def __init__(self):
        rng = np.random.default_rng(5)
        self.images = [rng.integers(0, 256, size=(9 + k % 3, 11, 3), dtype=np.uint8) for k in range(12)]

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        return {"image": self.images[index], "label": index % 2}


data = Stack()
'''

TRANSFORM = "- RandomHorizontalFlip: {p: 0.5}\n- RandomCrop: {size: 8}\n"


def _png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def build_corpus(root: Path) -> None:
    """Every source kind, from seeded data: the same bytes on every call."""
    rng = np.random.default_rng(20)
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    encoded: dict[str, bytes] = {}
    for k in range(40):
        array = rng.integers(0, 256, size=(12 + k % 5, 10 + k % 7, 3), dtype=np.uint8)
        name = f"sub/img{k:02d}.jpg" if k % 4 == 0 else f"img{k:02d}.png"
        encoded[name] = _png_bytes(array, "JPEG" if name.endswith(".jpg") else "PNG")
        (images / name).write_bytes(encoded[name])
    for example in sorted(Path("examples/images").iterdir()):
        shutil.copy(example, images / example.name)
    bad = root / "bad"
    bad.mkdir()
    (bad / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (bad / "good.png").write_bytes(encoded["img01.png"])

    for name, compression in (("shard.tar", ""), ("shard.tar.gz", "gz")):
        with tarfile.open(root / name, f"w:{compression}" if compression else "w", format=tarfile.USTAR_FORMAT) as tar:
            for member, data in sorted(encoded.items()):
                info = tarfile.TarInfo(member.replace("/", "_"))
                info.size, info.mtime, info.mode = len(data), 1_600_000_000, 0o644
                tar.addfile(info, io.BytesIO(data))
    if (root / "shard.tar.gz").exists():  # gzip writes the time into its header: rewrite it as 0
        data = bytearray((root / "shard.tar.gz").read_bytes())
        data[4:8] = b"\0\0\0\0"
        (root / "shard.tar.gz").write_bytes(bytes(data))
    (root / "list.txt").write_text("# a list file\nimages/img01.png\nimages/sub\nshard.tar\n\nimages/img03.png\n")

    import pyarrow as pa
    import pyarrow.parquet as pq

    names = sorted(encoded)
    table = pa.table({"image": pa.array([{"bytes": encoded[n], "path": n} for n in names]),
                      "label": pa.array(list(range(len(names))))})
    pq.write_table(table, root / "table.parquet", row_group_size=16)

    stack = rng.integers(0, 256, size=(10, 8, 9, 3), dtype=np.uint8)
    np.save(root / "stack.npy", stack)
    np.savez(root / "stack.npz", a=rng.random((7, 6, 2)).astype(np.float32), b=rng.random((5, 4, 2)).astype(np.float32))
    (root / "ds.py").write_text(DATASET_MODULE)
    (root / "transform.yaml").write_text(TRANSFORM)
    rasters = root / "rasters"
    rasters.mkdir()
    shutil.copy("examples/rasters/tile.tif", rasters / "tile.tif")
    videos = root / "videos"
    videos.mkdir()
    shutil.copy("examples/video/clip.mp4", videos / "clip.mp4")
    # One fixed modification time: the measurement cache stores no file modified in the last two
    # seconds, and its commands must reuse the same entries in every recording.
    for path in root.rglob("*"):
        os.utime(path, (1_600_000_000, 1_600_000_000))


# (name, arguments); each compute writes its config to stdout unless it names -o.
COMMANDS: list[tuple[str, list[str]]] = [
    ("folder", ["compute", "images"]),
    ("folder-workers2", ["compute", "images", "--workers", "2", "--per-image", "OUT/per_image.csv"]),
    ("folder-L-keras", ["compute", "images", "--mode", "L", "--convention", "keras", "--batch-size", "4", "--no-shuffle"]),
    ("tar", ["compute", "shard.tar"]),
    ("tar-gz", ["compute", "shard.tar.gz", "--workers", "2"]),
    ("list", ["compute", "@list.txt"]),
    ("parquet", ["compute", "table.parquet", "--workers", "2"]),
    ("npy", ["compute", "stack.npy"]),
    ("npz", ["compute", "stack.npz", "--workers", "2"]),
    ("dataset", ["compute", "--dataset", "ds.py:data", "--batch-size", "4"]),
    ("dataset-workers2", ["compute", "--dataset", "ds.py:data", "--workers", "2", "--epochs", "2"]),
    ("raster-keep", ["compute", "rasters", "--mode", "keep"]),
    ("raster-bands-nodata", ["compute", "rasters", "--mode", "keep", "--bands", "2,1", "--nodata", "0",
                             "--percentiles", "1,50,99"]),
    ("skip-bad", ["compute", "images", "bad", "--on-error", "skip", "--max-bad", "1"]),
    ("fail-bad", ["compute", "bad"]),
    ("transform-epochs", ["compute", "images", "--transform", "transform.yaml", "--epochs", "2", "--workers", "2"]),
    ("sample-listing", ["compute", "images", "shard.tar", "--sample", "50%", "--listing", "--seed", "3"]),
    ("config", ["compute", "images", "-o", "OUT/config.json"]),
    ("shard1", ["compute", "images", "--shard", "1/2", "--partial", "OUT/p1.json", "--partial-format", "json"]),
    ("shard2", ["compute", "images", "--shard", "2/2", "--partial", "OUT/p2.json", "--partial-format", "columns"]),
    ("merge", ["merge", "OUT/p1.json", "OUT/p2.json"]),
    ("checkpoint", ["compute", "images", "--checkpoint", "OUT/run.ckpt", "--checkpoint-every", "3", "--workers", "0"]),
    ("check", ["check", "images", "--against", "OUT/config.json"]),
    ("compare", ["compare", "images", "--batch-size", "4,16", "--momentum", "0.1,none", "--convention", "torch,keras",
                 "--csv", "OUT/compare.csv"]),
    ("show", ["show", "OUT/config.json"]),
    *[(f"export-{fmt}", ["export", "OUT/config.json", "--to", fmt]) for fmt in EXPORT_FORMATS],
    ("export-bn-state", ["export", "OUT/config.json", "--to", "bn-state", "-o", "OUT/bn.pt"]),
    ("export-raster-torchgeo", ["export", "OUT/raster.json", "--to", "torchgeo"]),
    ("video-frames", ["compute", "videos", "--ext", "video", "--frames", "4", "--workers", "2"]),
    ("video-clips", ["compute", "videos", "--ext", "video", "--clip-len", "6", "--frame-interval", "2", "--seed", "1"]),
    ("cache-cold", ["compute", "images", "shard.tar", "--cache", "OUT/cache", "--workers", "2"]),
    ("cache-warm", ["compute", "images", "shard.tar", "--cache", "OUT/cache", "--workers", "2"]),
    ("cache-warm-check", ["check", "images", "shard.tar", "--against", "OUT/config.json", "--cache", "OUT/cache"]),
]

# Files a command writes that are not compared: partial states name the temporary folders of their
# columns, a bn-state file is a torch pickle (its values are in the json export), and the
# measurement cache's file holds the times its entries were last used.
NOT_COMPARED = ("p1.json", "p2.json", "p2.json.columns", "bn.pt", "cache")

# A run interrupted after its first checkpoint, then resumed by the command line.
INTERRUPT = '''
import sys
from chanstats import api
from chanstats.options import RunOptions
from chanstats.scale.checkpoint import Checkpointer, Interval

class Interrupted(Exception):
    pass

class StopAfterFirstSave(Checkpointer):
    def after_chunk(self, state, count):
        super().after_chunk(state, count)
        if state.done >= 6:
            self.save(state)
            raise Interrupted

run = api.plan(["images"], RunOptions())
try:
    api.measure(run, workers=0, checkpoint=StopAfterFirstSave(sys.argv[1], Interval.parse("2"), False))
except Interrupted:
    print("interrupted")
'''


def _chanstats(args: list[str], cwd: Path, out: Path) -> dict[str, object]:
    args = [a.replace("OUT/", f"{out}/") for a in args]
    env = {**os.environ, "LC_ALL": "C.UTF-8", "OMP_NUM_THREADS": "1"}
    env.pop("CHANSTATS_DEBUG", None)
    done = subprocess.run([sys.executable, "-m", "chanstats", *args, *(["-q"] if args[0] in ("compute", "merge") else [])],
                          cwd=cwd, env=env, capture_output=True, timeout=600)
    return {"code": done.returncode, "stdout": done.stdout.decode("utf-8", "surrogateescape").replace(str(out), "OUT"),
            "stderr": done.stderr.decode("utf-8", "surrogateescape").replace(str(out), "OUT")}


def record(target: Path, torchrun: bool = True) -> None:
    """Build the corpus in a temporary folder, run every command there and store the outputs in
    ``target`` (one JSON of exit codes and streams, and the files the commands wrote)."""
    target.mkdir(parents=True, exist_ok=True)
    repository = Path.cwd()
    with tempfile.TemporaryDirectory(prefix="chanstats-identical-") as temporary:
        root = Path(temporary)
        build_corpus(root)
        out = root / "out"
        out.mkdir()
        streams: dict[str, dict[str, object]] = {}
        raster = _chanstats(["compute", "rasters", "--mode", "keep", "-o", "OUT/raster.json"], root, out)
        streams["raster-config"] = raster
        for name, args in COMMANDS:
            streams[name] = _chanstats(args, root, out)
        env = {**os.environ, "PYTHONPATH": f"{repository}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        interrupted = subprocess.run([sys.executable, "-c", INTERRUPT, str(out / "resume.ckpt")], cwd=root, env=env,
                                     capture_output=True, text=True, timeout=600)
        streams["interrupt"] = {"code": interrupted.returncode, "stdout": interrupted.stdout,
                                "stderr": interrupted.stderr[-2000:]}
        streams["resume"] = _chanstats(["compute", "images", "--checkpoint", "OUT/resume.ckpt", "--workers", "0"], root, out)
        if torchrun:
            command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                       "127.0.0.1", "--master-port", str(_free_port()), "-m", "chanstats", "compute", "images",
                       "--distributed", "--workers", "0", "-q", "-o", str(out / "distributed.json")]
            done = subprocess.run(command, cwd=root, env={**env, "OMP_NUM_THREADS": "1"}, capture_output=True,
                                  text=True, timeout=600)
            streams["torchrun"] = {"code": done.returncode}
        (target / "streams.json").write_text(json.dumps(streams, indent=1, sort_keys=True) + "\n")
        files = target / "files"
        if files.exists():
            shutil.rmtree(files)
        files.mkdir()
        for path in sorted(out.rglob("*")):
            relative = path.relative_to(out)
            if path.is_file() and not any(part in NOT_COMPARED for part in relative.parts):
                (files / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, files / relative)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def compare(baseline: Path, torchrun: bool = True) -> list[str]:
    """Record now into a temporary folder and list every difference from ``baseline``."""
    with tempfile.TemporaryDirectory(prefix="chanstats-identical-now-") as now:
        current = Path(now)
        record(current, torchrun)
        differences = []
        before = json.loads((baseline / "streams.json").read_text())
        after = json.loads((current / "streams.json").read_text())
        for name in sorted(set(before) | set(after)):
            if name == "torchrun" and not torchrun:
                continue
            if before.get(name) != after.get(name):
                differences.append(f"{name}: {before.get(name)!r}\n  now {after.get(name)!r}")
        old = {p.relative_to(baseline / "files") for p in (baseline / "files").rglob("*") if p.is_file()}
        new = {p.relative_to(current / "files") for p in (current / "files").rglob("*") if p.is_file()}
        if not torchrun:
            old.discard(Path("distributed.json"))
        for path in sorted(old ^ new):
            differences.append(f"{path}: {'only before' if path in old else 'only now'}")
        for path in sorted(old & new):
            if (baseline / "files" / path).read_bytes() != (current / "files" / path).read_bytes():
                differences.append(f"{path}: differs")
        return differences


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["record", "compare"])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--no-torchrun", action="store_true", help="skip the two-rank torchrun run")
    args = parser.parse_args(argv)
    if args.action == "record":
        record(args.directory, not args.no_torchrun)
        print(f"recorded {args.directory}")
        return 0
    differences = compare(args.directory, not args.no_torchrun)
    for line in differences:
        print(line)
    print(f"{len(differences)} difference(s)")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())

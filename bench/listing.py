"""Listing scale: time ``chanstats.sources.list_images`` on a generated tree of image-named files
(and on one tar shard holding the same names).

Listing never decodes, so the files are a few bytes each. Prints a table: wall and CPU seconds
(best of ``--repeat``; the first, cold-cache run shown apart) and files per second.

    PYTHONPATH=. python bench/listing.py                      # 200,000 files in 400 folders
    PYTHONPATH=. python bench/listing.py --files 20000 --keep tree-copy
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tarfile
import tempfile
import time

from chanstats.sources.listing import fingerprint, list_images

EXTENSIONS = (".jpg", ".png", ".JPEG", ".webp")


def make_tree(root: str, files: int, per_folder: int) -> None:
    """``files`` tiny files over two folder levels, plus a non-image and a hidden file per folder."""
    for start in range(0, files, per_folder):
        folder = os.path.join(root, f"class{start // (per_folder * 20):04d}", f"part{start // per_folder:05d}")
        os.makedirs(folder, exist_ok=True)
        for i in range(start, min(start + per_folder, files)):
            with open(os.path.join(folder, f"img{i:07d}{EXTENSIONS[i % len(EXTENSIONS)]}"), "wb") as handle:
                handle.write(b"x" * (i % 7))
        open(os.path.join(folder, "labels.txt"), "wb").close()
        open(os.path.join(folder, ".DS_Store"), "wb").close()


def make_tar(path: str, files: int) -> None:
    """One uncompressed shard with ``files`` tiny image members and a label member per image, as
    WebDataset writes them."""
    with tarfile.open(path, "w") as archive:
        for i in range(files):
            for name, data in ((f"{i:07d}{EXTENSIONS[i % len(EXTENSIONS)]}", b"x" * (i % 7)), (f"{i:07d}.cls", b"1")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))


def measure(function, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    value = function(*args)
    return value, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--per-folder", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-tar", action="store_true", help="skip the tar shard measurement")
    parser.add_argument("--keep", help="build (or reuse) the data here instead of a temporary folder")
    args = parser.parse_args()

    base = args.keep or tempfile.mkdtemp(prefix="chanstats-listing-")
    tree, shard = os.path.join(base, "tree"), os.path.join(base, "shard.tar")
    try:
        if not os.path.isdir(tree):
            _, seconds, _ = measure(make_tree, tree, args.files, args.per_folder)
            print(f"built {args.files:,} files under {tree} in {seconds:.1f} s")
        if not args.no_tar and not os.path.exists(shard):
            _, seconds, _ = measure(make_tar, shard, args.files)
            print(f"built {shard} ({2 * args.files:,} members, {os.path.getsize(shard) / 2**20:.0f} MiB) in {seconds:.1f} s")
        rows = []
        for label, target in [("folder tree", tree)] + ([] if args.no_tar else [("tar shard", shard)]):
            runs = [measure(list_images, [target]) for _ in range(max(1, args.repeat))]
            sources = runs[0][0]
            rows.append((f"{label}: first", len(sources), runs[0][1], runs[0][2]))
            if len(runs) > 1:
                best = min(runs[1:], key=lambda run: run[1])
                rows.append((f"{label}: best", len(sources), best[1], best[2]))
            _, wall, cpu = measure(fingerprint, sources)
            rows.append((f"{label}: fingerprint", len(sources), wall, cpu))
        print(f"{'step':<26} {'images':>9} {'wall s':>8} {'cpu s':>8} {'images/s':>10}")
        for step, count, wall, cpu in rows:
            print(f"{step:<26} {count:>9,} {wall:>8.2f} {cpu:>8.2f} {count / wall:>10,.0f}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Listing scale: time ``chanstats.sources.list_images`` on a generated tree of image-named files.

Listing never decodes, so the files are a few bytes each. Prints a table (files, folders, seconds,
files per second) for a cold-ish first call and a warm repeat, plus the fingerprint time.

    PYTHONPATH=. python bench/listing.py              # 200,000 files in 400 folders
    PYTHONPATH=. python bench/listing.py --files 20000 --per-folder 100 --keep /tmp/tree
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from chanstats.sources import fingerprint, list_images

EXTENSIONS = (".jpg", ".png", ".JPEG", ".webp")


def make_tree(root: str, files: int, per_folder: int) -> int:
    """``files`` tiny files spread over two folder levels, with a few non-images and hidden files."""
    folders = 0
    for start in range(0, files, per_folder):
        folder = os.path.join(root, f"class{start // (per_folder * 20):04d}", f"part{start // per_folder:05d}")
        os.makedirs(folder, exist_ok=True)
        folders += 1
        for i in range(start, min(start + per_folder, files)):
            with open(os.path.join(folder, f"img{i:07d}{EXTENSIONS[i % len(EXTENSIONS)]}"), "wb") as handle:
                handle.write(b"x" * (i % 7))
        # Entries the walk must look at and reject.
        open(os.path.join(folder, "labels.txt"), "wb").close()
        open(os.path.join(folder, ".DS_Store"), "wb").close()
    return folders


def timed(function, *args):
    start = time.perf_counter()
    value = function(*args)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--per-folder", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", help="build (or reuse) the tree here instead of a temporary folder")
    args = parser.parse_args()

    root = args.keep or tempfile.mkdtemp(prefix="chanstats-listing-")
    try:
        if not os.path.isdir(root) or not os.listdir(root):
            os.makedirs(root, exist_ok=True)
            _, seconds = timed(make_tree, root, args.files, args.per_folder)
            print(f"built {args.files:,} files under {root} in {seconds:.1f} s")
        rows = []
        for attempt in range(args.repeat):
            sources, seconds = timed(list_images, [root])
            rows.append(("list_images" + (" (first)" if attempt == 0 else ""), len(sources), seconds))
        digest, seconds = timed(fingerprint, sources)
        rows.append(("fingerprint", len(sources), seconds))
        print(f"{'step':<22} {'files':>9} {'seconds':>9} {'files/s':>11}")
        for step, count, seconds in rows:
            print(f"{step:<22} {count:>9,} {seconds:>9.3f} {count / seconds:>11,.0f}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

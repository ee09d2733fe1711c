"""The image sets the benchmark measures: views of the cached corpus (:mod:`bench.corpus`).

Each set is ``root/all/<file>``: chanstats gets ``root`` (listed recursively), ImageFolder gets
``root`` (one class, "all"), so both see exactly the same files.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from bench import corpus

SETS_DIR = corpus.DEFAULT_CACHE / "sets"
#: Images of the set the import trace runs on (more than one chunk of chanstats' engine).
TINY = 48


@dataclass(frozen=True)
class BenchSets:
    """The main set (``n`` images), the memory-growth set (``big``) and the tiny import-trace set,
    with the corpus summaries the tables print."""

    main: Path
    big: Path
    tiny: Path
    big_files: list[Path]
    main_summary: dict
    big_summary: dict


def prepare_sets(n: int, big: int, log) -> BenchSets:
    """Build (or reuse) the corpus and the three sets, and warm the page cache with them."""
    log(f"corpus: {n} images (cached under {corpus.default_root()}) ...")
    images = corpus.build_corpus(n, verbose=True)
    main = make_set(images, SETS_DIR / f"n{n}")
    big_root, big_files = make_big_set(images, big, SETS_DIR / f"n{big}")
    tiny = make_set(images[:TINY], SETS_DIR / f"n{TINY}")
    big_summary = corpus.corpus_summary([images[i % n] for i in range(big)])
    big_summary["note"] = f": the {n} images then copies of them"
    log(f"warming page cache: {warm(big_files) / 2**20:.0f} MiB")
    return BenchSets(main, big_root, tiny, big_files, corpus.corpus_summary(images), big_summary)


def make_set(paths: list[Path], root: Path) -> Path:
    """``root/all/<file>`` hard links to ``paths`` (copies where links fail)."""
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


def warm(paths: list[Path]) -> int:
    """Read every file once (page cache), returning the bytes read."""
    total = 0
    for p in paths:
        with open(p, "rb") as f:
            total += len(f.read())
    return total

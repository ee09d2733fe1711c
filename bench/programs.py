"""The programs the benchmark times as subprocesses; each prints one JSON line.

    python bench/programs.py decode COMBINATION WORKERS LISTFILE
    python bench/programs.py recipe ROOT WORKERS

``decode``: the decode-only limit. ``ProcessPoolExecutor(WORKERS)`` (fork), chunks of 32 files,
each worker reads its files and decodes them (:mod:`bench.decoding`), returning only a counter.
LISTFILE holds one ``FAST_PATH<TAB>PATH`` line per file (``-`` where chanstats uses Pillow). Its
``wall`` runs from pool creation to pool shutdown: no interpreter start, imports or listing.

``recipe``: the copy-pasted community recipe, torchvision ``ImageFolder`` + ``ToTensor()`` +
``DataLoader(batch_size=64, collate_fn=list)``, mean of per-image means and of per-image stds. Its
``wall`` runs from ``ImageFolder(...)`` to the final division, after ``import torch, torchvision``
(``import_s``).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the bench package from the repository
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import decoding  # noqa: E402


def write_list(path: Path, routed: list) -> None:
    """Write a decode program's LISTFILE from :class:`bench.decisions.Routed` files."""
    path.write_text("".join(f"{r.fast_path or '-'}\t{r.path}\n" for r in routed))


def read_list(path: str) -> list[tuple[str | None, str]]:
    files = []
    for line in Path(path).read_text().splitlines():
        fast_path, file = line.split("\t", 1)
        files.append((None if fast_path == "-" else fast_path, file))
    return files


def decode(combination: str, workers: str, list_file: str) -> dict:
    """Decode every listed file once with ``combination`` in a forked pool."""
    import importlib
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    import PIL.Image  # noqa: F401  (imports before the clock starts)

    for module in decoding.modules_of(combination):
        importlib.import_module(module)
    files = read_list(list_file)
    start = time.perf_counter()
    with ProcessPoolExecutor(int(workers), mp_context=mp.get_context("fork")) as pool:
        counts = list(pool.map(partial(decoding.decode_chunk, combination), decoding.chunks(files)))
    wall = time.perf_counter() - start
    return {"wall": wall, "images": sum(c[0] for c in counts), "pixels": sum(c[1] for c in counts)}


def recipe(root: str, workers: str) -> dict:
    """The community recipe at full resolution: per-image float32 means and stds, averaged."""
    import_start = time.perf_counter()
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    import_s = time.perf_counter() - import_start

    start = time.perf_counter()
    dataset = datasets.ImageFolder(root, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=64, num_workers=int(workers), shuffle=False, collate_fn=lambda batch: batch)
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
    wall = time.perf_counter() - start
    return {"wall": wall, "images": n, "mean": mean.tolist(), "std": std.tolist(), "import_s": import_s}


PROGRAMS = {"decode": decode, "recipe": recipe}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in PROGRAMS:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    print(json.dumps(PROGRAMS[argv[0]](*argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

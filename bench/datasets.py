"""How fast chanstats measures the sources that are not folders of files, against the cheapest way
to get the same pixels:

* a map-style dataset of uint8 tensors (each sample a JPEG decoded by torchvision in
  ``__getitem__``): ``chanstats.compute(dataset, workers=P)`` against iterating the dataset alone
  with a DataLoader of P workers (target: at least 0.8×);
* a Parquet table of JPEGs as the ``datasets`` library writes it (row groups of 100 rows):
  ``chanstats compute table.parquet`` against ``chanstats compute folder`` of the same files
  (target: at least 0.8×).

Run: ``python -m bench.datasets [--images N] [--workers P] [--size S]``; prints a table.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import time

import numpy as np


def jpeg_bytes(count: int, size: int, seed: int = 0) -> list[bytes]:
    """``count`` smooth JPEGs of ``size``×``size`` (smooth: they compress as photos do)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        small = rng.integers(0, 256, size=(size // 16, size // 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


class DecodedJpegs:
    """A map-style dataset of uint8 (C, H, W) tensors: each sample decoded by torchvision."""

    def __init__(self, encoded: list[bytes]):
        self.encoded = encoded

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int):
        import torch
        from torchvision.io import decode_jpeg

        return decode_jpeg(torch.frombuffer(bytearray(self.encoded[index]), dtype=torch.uint8))


def best_of(repeats: int, run) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def iterate_alone(dataset, workers: int) -> None:
    import torch

    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
    for _ in loader:
        pass


def dataset_row(encoded: list[bytes], workers: int, repeats: int) -> tuple[str, float, float]:
    import chanstats

    dataset = DecodedJpegs(encoded)
    alone = best_of(repeats, lambda: iterate_alone(dataset, workers))
    measured = best_of(repeats, lambda: chanstats.compute(dataset, workers=workers))
    return "map-style dataset of uint8 tensors vs DataLoader iteration", alone, measured


def parquet_row(encoded: list[bytes], workers: int, repeats: int, folder: str) -> tuple[str, float, float]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    import chanstats

    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    for index, data in enumerate(encoded):
        with open(os.path.join(folder, "images", f"{index:06d}.jpg"), "wb") as handle:
            handle.write(data)
    struct = pa.StructArray.from_arrays(
        [pa.array(encoded, pa.binary()), pa.array([f"{i:06d}.jpg" for i in range(len(encoded))])], names=["bytes", "path"]
    )
    table_path = os.path.join(folder, "train.parquet")
    pq.write_table(pa.table({"image": struct}), table_path, row_group_size=100)
    from_folder = best_of(repeats, lambda: chanstats.compute(os.path.join(folder, "images"), workers=workers))
    from_table = best_of(repeats, lambda: chanstats.compute(table_path, workers=workers))
    same = chanstats.compute(table_path, workers=workers).mean == chanstats.compute(os.path.join(folder, "images"), workers=workers).mean
    return f"Parquet (row groups of 100) vs the same JPEGs in a folder{'' if same else ' (NUMBERS DIFFER)'}", from_folder, from_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    encoded = jpeg_bytes(args.images, args.size)
    with tempfile.TemporaryDirectory() as folder:
        rows = [dataset_row(encoded, args.workers, args.repeats), parquet_row(encoded, args.workers, args.repeats, folder)]
    print(f"{args.images} JPEGs of {args.size}×{args.size}, {args.workers} processes, best of {args.repeats}")
    print(f"{'comparison':<72} {'baseline s':>10} {'chanstats s':>11} {'speed':>6}")
    for label, baseline, chanstats_time in rows:
        print(f"{label:<72} {baseline:>10.2f} {chanstats_time:>11.2f} {baseline / chanstats_time:>5.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())

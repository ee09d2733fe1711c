"""Object storage: chanstats reading from a local S3 server (moto) against s3fs alone plus
decode-only, and what 50 ms of added latency per request costs.

    python bench/storage.py [--images 600] [--size 160] [--workers 2] [--latency 0.05]

Everything runs on 127.0.0.1: moto's S3 server and the fault proxy of the tests (here only
delaying each request) run as threads of this process; chanstats runs as the installed command
and the baseline in its own processes, so neither shares this process's interpreter lock.

Rows (images per second, best of ``--repeat`` runs, listing included):

- ``s3fs cat + decode``: each of ``--workers`` processes fetches its slice of the objects with
  s3fs' concurrent ``cat`` and decodes every image with Pillow (``convert("RGB")``, the pixels
  as an array): the cost of the bytes and the pixels, without statistics.
- ``chanstats``: ``chanstats compute s3://…`` with ``--workers``.
- ``… via proxy``: the same through the proxy with no delay (the proxy's own cost), then with
  ``--latency`` seconds added to every request.
The same for tar shards (``--shards``) of the same images.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.cli import chanstats_command  # noqa: E402
from tests.helpers.object_servers import ACCESS_KEY, SECRET_KEY, FaultProxy, MotoServer  # noqa: E402

BUCKET = "bench"


def write_images(root: Path, count: int, size: int, shards: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "shards").mkdir()
    archives = [tarfile.open(root / "shards" / f"train-{s:03d}.tar", "w") for s in range(shards)]
    for i in range(count):
        # Smooth content, so that JPEG sizes are those of photos (a few KiB per 100×100 pixels).
        y, x = np.mgrid[0:size, 0:size]
        base = (np.sin(x / (7 + i % 5)) + np.cos(y / (5 + i % 3))) * 60 + 128
        pixels = np.clip(np.stack([base, base * 0.8, 255 - base], -1) + rng.normal(0, 4, (size, size, 3)), 0, 255)
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="JPEG", quality=90)
        data = buffer.getvalue()
        (root / "images" / f"{i:05d}.jpg").write_bytes(data)
        info = tarfile.TarInfo(f"{i:05d}.jpg")
        info.size = len(data)
        archives[i * shards // count].addfile(info, io.BytesIO(data))
    for archive in archives:
        archive.close()


def _fetch_and_decode(arguments: tuple[str, list[str]]) -> int:
    endpoint, paths = arguments
    import s3fs
    from PIL import Image

    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
    blobs = fs.cat(paths)
    for path in paths:
        np.asarray(Image.open(io.BytesIO(blobs[path])).convert("RGB"))
    return len(paths)


def baseline(endpoint: str, workers: int) -> float:
    """Seconds for ``workers`` processes to list, fetch (s3fs ``cat``) and decode every image."""
    import s3fs

    began = time.perf_counter()
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
    paths = sorted(fs.find(f"{BUCKET}/images"))
    slices = [(endpoint, paths[k::workers]) for k in range(workers)]
    with get_context("spawn").Pool(workers) as pool:
        assert sum(pool.map(_fetch_and_decode, slices)) == len(paths)
    return time.perf_counter() - began


def chanstats_run(endpoint: str, inputs: list[str], workers: int) -> float:
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint)
    began = time.perf_counter()
    subprocess.run([*chanstats_command(), "compute", "-q", *inputs, "--workers", str(workers)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def best(repeat: int, function, *args) -> float:
    return min(function(*args) for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", type=int, default=160, help="image side in pixels")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to each request")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    os.environ.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1")
    with tempfile.TemporaryDirectory() as folder, MotoServer() as server, FaultProxy(server.endpoint) as proxy:
        root = Path(folder)
        write_images(root, args.images, args.size, args.shards)
        server.upload_tree(BUCKET, root)
        mean_bytes = sum(p.stat().st_size for p in (root / "images").iterdir()) / args.images
        folder_input = [f"s3://{BUCKET}/images"]
        shard_input = [f"s3://{BUCKET}/shards/train-{{000..{args.shards - 1:03d}}}.tar"]
        rows = [("s3fs cat + decode (images)", best(args.repeat, baseline, server.endpoint, args.workers))]
        for label, inputs in (("images", folder_input), ("shards", shard_input)):
            rows.append((f"chanstats ({label})", best(args.repeat, chanstats_run, server.endpoint, inputs, args.workers)))
            rows.append((f"chanstats ({label}) via proxy", best(args.repeat, chanstats_run, proxy.url, inputs, args.workers)))
            proxy.faults.delay = args.latency
            rows.append((f"chanstats ({label}) via proxy, +{args.latency * 1000:.0f} ms",
                         best(args.repeat, chanstats_run, proxy.url, inputs, args.workers)))
            proxy.faults.delay = 0.0
    print(f"{args.images} JPEG images of {args.size}x{args.size} (mean {mean_bytes / 1024:.1f} KiB), "
          f"{args.workers} workers, local moto S3 server; best of {args.repeat}")
    print(f"| {'run':<44} | {'seconds':>8} | {'images/s':>9} |")
    print(f"| {'-' * 44} | {'-' * 8}:| {'-' * 9}:|")
    for label, seconds in rows:
        print(f"| {label:<44} | {seconds:8.2f} | {args.images / seconds:9.0f} |")
    times = dict(rows)
    print(f"\nchanstats / (s3fs + decode), images: {times['s3fs cat + decode (images)'] / times['chanstats (images)']:.2f}x")
    for label in ("images", "shards"):
        zero = times[f"chanstats ({label}) via proxy"]
        slow = times[f"chanstats ({label}) via proxy, +{args.latency * 1000:.0f} ms"]
        print(f"{label}: throughput with +{args.latency * 1000:.0f} ms / without, through the proxy: {zero / slow:.2f}x")


if __name__ == "__main__":
    main()

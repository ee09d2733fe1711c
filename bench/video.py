"""Videos: chanstats against decoding the same frames with PyAV alone, and sparse frames by seeking.

    python -m bench.video [--clips 16] [--frames-per-clip 240] [--workers 2] [--repeat 3]

The corpus is generated once into ``bench/.cache/video``: short H.264 clips (128×96, 30 fps, a
keyframe every 30 frames, moving gradients with some noise), written with PyAV. Three timings,
each the best of ``--repeat`` (the three interleaved), all with the same number of processes:

- **PyAV alone**: a ``multiprocessing`` pool (started inside the timing, as chanstats starts its
  workers) decodes every frame of every clip to RGB (``to_ndarray("rgb24")``, one decoder thread
  per process, as chanstats' workers use) and does nothing else with it: the floor for any tool
  that reads every frame;
- **chanstats, every frame**: ``chanstats.compute`` on the folder (the exact statistics of every
  frame, the BatchNorm simulation, the config);
- **chanstats, --frames 8**: 8 evenly spaced frames per clip, found by seeking to the keyframe
  before each.

It also states the factor seeking allows for ``--frames 8``: all frames over the frames a decoder
must go through (from the keyframe before each wanted frame up to it, a group of pictures once).
"""

from __future__ import annotations

import argparse
import os
from bisect import bisect_right
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from bench.datasets import best_of

CACHE = Path(__file__).resolve().parent / ".cache" / "video"


def make_corpus(clips: int, frames: int) -> Path:
    """``clips`` H.264 clips of ``frames`` frames each (kept between runs)."""
    import av

    folder = CACHE / f"h264-{clips}x{frames}"
    if folder.exists() and len(list(folder.glob("*.mp4"))) == clips:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:128]
    for k in range(clips):
        path = folder / f"clip{k:03d}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=30)
            stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
            stream.options = {"g": "30", "preset": "veryfast"}
            for t in range(frames):
                base = np.stack([(x + 2 * t + 9 * k) % 256, (y + t) % 256, (x + y + 3 * t) % 256], axis=-1)
                noise = rng.integers(-12, 13, base.shape)
                pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return folder


def decode_every_frame(path: str) -> int:
    """PyAV alone: every frame to RGB, one decoder thread (what chanstats' workers use)."""
    import av

    count = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        for frame in container.decode(stream):
            frame.to_ndarray(format="rgb24")
            count += 1
    return count


def frames_to_decode(path: str, wanted: int) -> tuple[int, int]:
    """(all frames, frames a seeking decoder goes through for ``wanted`` evenly spaced ones)."""
    import av

    with av.open(path) as container:
        packets = [p for p in container.demux(video=0) if p.size]
        pts = sorted(p.pts for p in packets)
        keys = sorted(p.pts for p in packets if p.is_keyframe)
    n = len(pts)
    chosen = [(2 * i * (n - 1) + wanted - 1) // (2 * (wanted - 1)) for i in range(wanted)]
    decoded, position = 0, -1
    for index in chosen:
        key = pts.index(keys[bisect_right(keys, pts[index]) - 1])
        start = key if key > position else position + 1
        decoded += max(0, index - start + 1)
        position = max(position, index)
    return n, decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--frames-per-clip", type=int, default=240)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from chanstats import api
    from chanstats.options import RunOptions

    folder = make_corpus(args.clips, args.frames_per_clip)
    paths = sorted(str(p) for p in folder.glob("*.mp4"))
    total_frames = args.clips * args.frames_per_clip

    def pyav_alone() -> None:
        # Started from scratch, as chanstats starts its workers: processes, then PyAV imported in each.
        with get_context("forkserver").Pool(args.workers) as pool:
            pool.map(decode_every_frame, paths, chunksize=1)

    runs = {
        "alone": pyav_alone,
        "every": lambda: api.compute([str(folder)], RunOptions(extensions=("mp4",)), workers=args.workers),
        "sparse": lambda: api.compute([str(folder)], RunOptions(extensions=("mp4",), frames=8), workers=args.workers),
    }
    # Interleaved, best of each: a machine whose load changes during the run treats them alike.
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, run in runs.items():
            timings[name].append(best_of(1, run))
    alone, every, sparse = (min(timings[name]) for name in ("alone", "every", "sparse"))
    counted = [frames_to_decode(path, 8) for path in paths]
    allowed = sum(n for n, _ in counted) / sum(d for _, d in counted)

    print(f"{args.clips} H.264 clips of {args.frames_per_clip} frames (128x96, keyframe every 30), "
          f"{args.workers} processes, best of {args.repeat}; {os.cpu_count()} cores")
    print(f"{'run':<32} {'seconds':>8} {'frames/s':>9} {'vs PyAV alone':>14}")
    print(f"{'PyAV alone, every frame':<32} {alone:8.3f} {total_frames / alone:9.0f} {1.0:13.2f}x")
    print(f"{'chanstats, every frame':<32} {every:8.3f} {total_frames / every:9.0f} {alone / every:13.2f}x")
    print(f"{'chanstats, --frames 8':<32} {sparse:8.3f} {8 * args.clips / sparse:9.0f} {alone / sparse:13.2f}x")
    print(f"--frames 8 is {every / sparse:.2f}x faster than every frame; seeking allows {allowed:.2f}x "
          "(frames decoded: from the keyframe before each wanted frame)")


if __name__ == "__main__":
    main()

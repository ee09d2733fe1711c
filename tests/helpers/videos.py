"""Small real videos written for the tests with PyAV, and PyAV's own decoding of them (the oracle
for lossy codecs)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def write_video(path: Path, frames: np.ndarray | list[np.ndarray], codec: str = "ffv1", pix_fmt: str = "bgr0",
                rate: int = 10, options: dict | None = None, pts: list[int] | None = None,
                time_base: Fraction | None = None, input_format: str = "rgb24") -> Path:
    """Encode ``frames`` ((T, H, W, 3) uint8 RGB, or uint16 with ``input_format="rgb48le"``) into
    ``path`` (the container from its extension). FFV1 with ``bgr0`` is lossless; ``pts`` gives
    each frame's timestamp in ``time_base`` (a variable frame rate)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    frames = list(frames)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if options:
            stream.options = options
        if time_base is not None:
            stream.time_base = time_base
            stream.codec_context.time_base = time_base
        for k, pixels in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=input_format)
            if pts is not None:
                frame.pts, frame.time_base = pts[k], time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decoded_frames(path: Path, fmt: str = "rgb24") -> np.ndarray:
    """Every frame PyAV decodes from ``path``, in presentation order, as ``fmt`` arrays."""
    import av

    with av.open(str(path)) as container:
        frames = sorted(((frame.pts, frame.to_ndarray(format=fmt)) for frame in container.decode(video=0)),
                        key=lambda pair: pair[0])
    return np.stack([pixels for _, pixels in frames])


def random_frames(rng: np.random.Generator, count: int = 10, height: int = 24, width: int = 32,
                  low: int = 0, high: int = 256) -> np.ndarray:
    """``count`` RGB frames of random pixels (each frame's range shifted, so frames differ in mean)."""
    frames = rng.integers(low, high, size=(count, height, width, 3), dtype=np.int32)
    shift = (np.arange(count) * 7 % 50)[:, None, None, None]
    return np.clip(frames - 25 + shift, 0, 255).astype(np.uint8)


def population_stats(pixels: np.ndarray, scale: int = 255) -> tuple[list[float], list[float]]:
    """Per-channel mean and population std of ``(…, C)`` pixels on the [0, 1] scale, in float64."""
    flat = pixels.reshape(-1, pixels.shape[-1]).astype(np.float64)
    return (flat.mean(axis=0) / scale).tolist(), (flat.std(axis=0) / scale).tolist()

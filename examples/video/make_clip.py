"""Writes clip.mp4: a small H.264 video (24 frames of 96×64 at 12 fps, yuv420p) that pans across
examples/images/chelsea.png, for the video examples of docs/video.md. Deterministic (one encoder
thread): the same bytes on every run with the same PyAV and libx264.

    python examples/video/make_clip.py
"""

from pathlib import Path

import av
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
FRAMES, WIDTH, HEIGHT = 24, 96, 64


def frames() -> list[np.ndarray]:
    photo = np.asarray(Image.open(HERE.parent / "images" / "chelsea.png").convert("RGB"))
    top = (photo.shape[0] - HEIGHT) // 2
    step = (photo.shape[1] - WIDTH) // (FRAMES - 1)
    return [np.ascontiguousarray(photo[top : top + HEIGHT, k * step : k * step + WIDTH]) for k in range(FRAMES)]


def main() -> None:
    with av.open(str(HERE / "clip.mp4"), "w") as container:
        container.metadata.clear()
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.thread_count = 1
        stream.options = {"crf": "30", "g": "8", "preset": "medium", "threads": "1"}
        for pixels in frames():
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


if __name__ == "__main__":
    main()

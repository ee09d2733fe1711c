"""Videos → the frames that are measured, decoded with PyAV (FFmpeg) or torchcodec.

Which frames (:func:`frame_indices`): every frame (the default: exact over the whole video),
``--frames N`` evenly spaced, ``--fps F`` (the frame shown at each tick of an F-per-second clock),
or a training-style clip of ``--clip-len T`` frames ``--frame-interval K`` apart whose start is
drawn from ``(seed, epoch, video index)`` alone, as random transforms are. Frames are numbered in
presentation order (by timestamp). Every frame is decoded in one pass; a selection reads the
packets' timestamps first (no decoding) and seeks to the keyframe before each wanted frame when it
is not on the way, so sparse selections decode a fraction of the video.

What a frame becomes: RGB, 8 bits a channel (``rgb24``, FFmpeg's conversion from the stored
YUV), or under ``--mode keep`` its native depth: a video of more than 8 bits a sample (such as
``yuv420p10le``) becomes 16-bit RGB (``rgb48le``, full scale 65535) and a grey video stays grey.
Rotation metadata is not applied: frames are measured as stored (a rotation only permutes the
pixels, so the statistics are the same; the width and height reported are the stored ones).

A video that cannot be read is a :class:`~chanstats.errors.BadImageError` naming it: no video
stream, no frames, a container FFmpeg cannot open (a truncated MP4, a missing ``moov``), or any
error FFmpeg reports while demuxing or decoding (a damaged packet, a file that ends early).
FFmpeg's log is captured, never printed. PyAV is imported only when a video is read.
"""

from __future__ import annotations

import io
from bisect import bisect_right
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import BadImageError, ChanstatsError


@dataclass(frozen=True)
class Timeline:
    """A video stream's frames in presentation order: their timestamps (in the stream's time base)
    and which of them are keyframes (where a decoder can start after a seek)."""

    pts: list[int]
    keyframes: list[int]
    time_base: Fraction


def frame_indices(selection: Any, times: Sequence[Fraction], seed: int, epoch: int, index: int) -> list[int]:
    """The frame numbers (presentation order, repeats allowed, ascending) that ``selection``
    (:class:`~chanstats.options.VideoOptions`) picks from a video whose frames are shown at
    ``times`` (seconds from the first frame); ``(seed, epoch, index)`` draws a clip's start.

    >>> from chanstats.options import VideoOptions
    >>> ten = [Fraction(k, 10) for k in range(10)]
    >>> frame_indices(VideoOptions(frames=4), ten, 0, 0, 0)
    [0, 3, 6, 9]
    >>> frame_indices(VideoOptions(fps=4), ten, 0, 0, 0)
    [0, 2, 5, 7]
    >>> len(frame_indices(VideoOptions(clip_len=3, frame_interval=2), ten, 0, 0, 0))
    3
    """
    count = len(times)
    if selection.frames is not None:
        wanted = selection.frames
        if wanted == 1:
            return [(count - 1) // 2]
        # round(i·(count − 1)/(wanted − 1)), halves up, in integers: np.linspace's spacing.
        return [(2 * i * (count - 1) + wanted - 1) // (2 * (wanted - 1)) for i in range(wanted)]
    if selection.fps is not None:
        step = Fraction(selection.fps).limit_denominator(1 << 20)
        last = times[-1]
        picked, tick = [], 0
        while Fraction(tick) / step <= last:
            picked.append(bisect_right(times, Fraction(tick) / step) - 1)  # the frame shown at that tick
            tick += 1
        return picked
    if selection.clip_len is not None:
        span = (selection.clip_len - 1) * selection.frame_interval + 1
        # Drawn from (seed, epoch, index) alone, as a random transform's draws are: any worker, same clip.
        generator = np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(index)]))
        start = int(generator.integers(0, max(0, count - span) + 1))
        # A video shorter than the clip repeats its last frame, as loaders pad a short clip.
        return [min(start + j * selection.frame_interval, count - 1) for j in range(selection.clip_len)]
    return list(range(count))


def decoder_threads() -> int:
    """FFmpeg threads per decoder: one. The worker pool decodes one video per worker on every core
    already (more threads would oversubscribe them), and what FFmpeg's own threads log bypasses
    the capture that tells a damaged video from a good one (it would reach the terminal instead)."""
    return 1


def describe_decoder(name: str) -> str:
    """The decoder and its version, as configs record them (decoders differ slightly in their RGB)."""
    if name == "torchcodec":
        torchcodec = _import_torchcodec()
        return f"torchcodec {torchcodec.__version__}"
    av = _import_av()
    return f"pyav {av.__version__} (FFmpeg {av.ffmpeg_version_info})"


def read_frames(file: str | None, read: Any, display: str, selection: Any, mode: str, seed: int, epoch: int,
                index: int) -> Iterator[np.ndarray]:
    """The selected frames of one video as ``(H, W, C)`` arrays (uint8, or uint16 under ``keep``
    for a video of more than 8 bits), in presentation order: from the file at ``file``, or the
    bytes ``read()`` gives. ``mode`` is ``RGB``, ``L`` (RGB here; the caller converts as it does
    images) or ``keep``."""
    if selection.decoder == "torchcodec":
        yield from _torchcodec_frames(file, read, display, selection, mode, seed, epoch, index)
        return
    av = _import_av()
    with _Video(av, file if file is not None else io.BytesIO(read()), display) as video:
        if selection.frames is None and selection.fps is None and selection.clip_len is None:
            yield from video.every_frame(mode)
            return
        timeline = video.timeline()
        times = [(pts - timeline.pts[0]) * timeline.time_base for pts in timeline.pts]
        wanted = frame_indices(selection, times, seed, epoch, index)
        yield from video.frames_at([timeline.pts[i] for i in wanted], timeline, mode)


class _Video:
    """One open container and its first video stream, with FFmpeg's log captured for as long as it
    is open: an error FFmpeg logs makes the video bad (checked after every step)."""

    def __init__(self, av: Any, source: Any, display: str) -> None:
        self.av, self.display = av, display
        # FFmpeg's errors must reach the capture (its log is off by default); restored on close.
        self.level = av.logging.get_level()
        av.logging.set_level(av.logging.ERROR)
        self.capture = av.logging.Capture(local=False)  # decoder threads log too
        self.logs = self.capture.__enter__()
        self.checked = 0
        self.container = None
        try:
            self.container = self._call(lambda: av.open(source, "r"))
            if not self.container.streams.video:
                raise BadImageError(display, "no video stream")
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "AUTO"
            self.stream.codec_context.thread_count = decoder_threads()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            if self.container is not None:
                self.container.close()
        finally:
            self.capture.__exit__(None, None, None)
            self.av.logging.set_level(self.level)

    def __enter__(self) -> "_Video":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _call(self, step):
        """Run one FFmpeg step; FFmpeg's errors, raised or logged, become bad-video errors."""
        try:
            result = step()
        except self.av.FFmpegError as error:
            raise BadImageError(self.display, f"cannot decode the video: {_ffmpeg_reason(error)}") from None
        if len(self.logs) > self.checked:  # rare: only errors are logged
            errors = [message for level, _, message in self.logs[self.checked:]
                      if level is not None and level <= self.av.logging.ERROR]
            self.checked = len(self.logs)
            if errors:
                raise BadImageError(self.display, f"damaged video: {' '.join(errors[0].split())}")
        return result

    def _frames(self) -> Iterator[Any]:
        """The stream's frames as the decoder gives them, each checked."""
        decoding = self.container.decode(self.stream)
        while True:
            frame = self._call(lambda: next(decoding, None))
            if frame is None:
                return
            if frame.is_corrupt:
                raise BadImageError(self.display, f"damaged video: frame at {frame.time}s decoded with errors")
            yield frame

    def every_frame(self, mode: str) -> Iterator[np.ndarray]:
        count = 0
        for frame in self._frames():
            count += 1
            yield _pixels(frame, mode)
        if count == 0:
            raise BadImageError(self.display, "a video without frames")

    def timeline(self) -> Timeline:
        """Every frame's timestamp, from the packets alone (nothing is decoded)."""
        pts, keyframes = [], []
        packets = self.container.demux(self.stream)
        while True:
            packet = self._call(lambda: next(packets, None))
            if packet is None:
                break
            if packet.size == 0:  # the demuxer's end-of-stream packet
                continue
            if packet.pts is None:
                raise BadImageError(self.display, "a video whose packets have no timestamps; measure every frame "
                                    "(leave out --frames, --fps and --clip-len)")
            pts.append(packet.pts)
            if packet.is_keyframe:
                keyframes.append(packet.pts)
        if not pts:
            raise BadImageError(self.display, "a video without frames")
        pts.sort()
        keyframes.sort()
        return Timeline(pts, keyframes or pts[:1], Fraction(self.stream.time_base))

    def frames_at(self, targets: list[int], timeline: Timeline, mode: str) -> Iterator[np.ndarray]:
        """The frames with timestamps ``targets`` (ascending, repeats allowed): decoding on from
        where the decoder is when no keyframe lies between, else seeking to the keyframe before."""
        frames: Iterator[Any] | None = None
        current: Any = None
        for target in targets:
            if current is not None and current.pts == target:
                yield pixels
                continue
            keyframe = timeline.keyframes[max(0, bisect_right(timeline.keyframes, target) - 1)]
            if frames is None or current is None or current.pts > target or keyframe > current.pts:
                self._call(lambda: self.container.seek(keyframe, stream=self.stream, backward=True, any_frame=False))
                frames = self._frames()
            current = next((frame for frame in frames if frame.pts is not None and frame.pts >= target), None)
            if current is None or current.pts != target:
                raise BadImageError(self.display, f"damaged video: the frame at {float((target - timeline.pts[0]) * timeline.time_base):g}s "
                                    "listed in its index could not be decoded")
            pixels = _pixels(current, mode)
            yield pixels


def _pixels(frame: Any, mode: str) -> np.ndarray:
    """One decoded frame as an ``(H, W, C)`` array: RGB, or under ``keep`` the native depth
    (16-bit RGB or grey for more than 8 bits a sample, grey for a grey video)."""
    if mode == "keep":
        grey = len(frame.format.components) <= 2 and frame.format.name.startswith(("gray", "ya", "y"))
        wide = max(component.bits for component in frame.format.components) > 8
        target = ("gray16le" if wide else "gray") if grey else ("rgb48le" if wide else "rgb24")
    else:
        target = "rgb24"
    pixels = frame.to_ndarray(format=target)
    return pixels[:, :, np.newaxis] if pixels.ndim == 2 else pixels


def _ffmpeg_reason(error: Exception) -> str:
    """FFmpeg's error without the file name PyAV repeats (the message names the video already)."""
    reason = getattr(error, "strerror", None) or str(error)
    return " ".join(str(reason).split())


def _import_av():
    try:
        import av
        import av.logging
    except ImportError:
        raise ChanstatsError("reading videos needs PyAV: pip install 'chanstats[video]'") from None
    return av


def _import_torchcodec():
    """torchcodec, with the FFmpeg libraries it loads (only when it first decodes: a decoder made
    on no bytes at all tells a missing library from a refused input)."""
    try:
        import torchcodec
        from torchcodec.decoders import VideoDecoder

        VideoDecoder(b"")
    except (ImportError, OSError) as error:
        raise _torchcodec_missing(error) from None
    except (RuntimeError, ValueError) as error:
        if _cannot_load(error):
            raise _torchcodec_missing(error) from None
    return torchcodec


def _cannot_load(error: Exception) -> bool:
    return "could not load" in str(error).lower()


def _torchcodec_missing(error: Exception) -> ChanstatsError:
    detail = " ".join(str(error).split()[:12])
    return ChanstatsError(f"--video-decoder torchcodec needs torchcodec and the FFmpeg libraries it loads "
                          f"(pip install torchcodec, and FFmpeg 4 to 8): {detail}...")


def _torchcodec_frames(file: str | None, read: Any, display: str, selection: Any, mode: str, seed: int, epoch: int,
                       index: int) -> Iterator[np.ndarray]:
    """The selected frames decoded by torchcodec (8-bit RGB only: its output)."""
    _import_torchcodec()
    from torchcodec.decoders import VideoDecoder

    if mode == "keep":
        raise ChanstatsError("--video-decoder torchcodec gives 8-bit RGB frames: use --mode RGB or L, or PyAV for --mode keep")
    try:
        decoder = VideoDecoder(file if file is not None else read(), dimension_order="NHWC", seek_mode="exact")
        times = [Fraction(t).limit_denominator(1 << 30) for t in decoder.get_frames_in_range(0, len(decoder)).pts_seconds.tolist()] \
            if selection.fps is not None else [Fraction(k) for k in range(len(decoder))]
        if not len(decoder):
            raise BadImageError(display, "a video without frames")
        wanted = frame_indices(selection, times, seed, epoch, index)
        batch = decoder.get_frames_at(wanted).data.numpy()
    except (RuntimeError, ValueError) as error:
        if _cannot_load(error):
            raise _torchcodec_missing(error) from None
        raise BadImageError(display, f"cannot decode the video: {' '.join(str(error).split())[:200]}") from None
    yield from batch

"""Video files among the items of any kind: which names are videos, and whether a listing holds any.

A video is not a container kind of its own but a content format, as a TIFF is: a video file sits
in a folder, an ``@list`` file, a tar shard or a bucket like an image file does, is listed by that
kind (one video, one item, one unit of work) and read by it into bytes or a file path. Measuring
(:class:`~chanstats.measure.Measurer`) tells a video by its name and decodes it with
:mod:`chanstats.decoding.video` into the frames that are measured. Folders and shards find videos
when ``--ext`` names their extensions (``--ext video`` names all of :data:`VIDEO_EXTENSIONS`); a
file named as an input is read whatever its extension.
"""

from __future__ import annotations

from typing import Sequence

from .base import VIDEO_EXTENSIONS, ImageSource, Listing

__all__ = ["VIDEO_EXTENSIONS", "is_video", "any_video"]


def is_video(name: str) -> bool:
    """Whether an item named ``name`` is read as a video.

    >>> is_video("clips/a.MP4"), is_video("a.mp4.png")
    (True, False)
    """
    return name.lower().endswith(VIDEO_EXTENSIONS)


def any_video(sources: Sequence[ImageSource]) -> bool:
    """Whether any of ``sources`` is a video, without making a source per item of a packed listing."""
    if isinstance(sources, Listing):
        return sources.any_name_ends_with(tuple(extension.encode() for extension in VIDEO_EXTENSIONS))
    return any(is_video(source.name) for source in sources)

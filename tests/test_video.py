"""Videos as inputs: exact statistics of the frames measured, frame selection, clips, transforms,
bad videos, workers, shards. Every video is written here with PyAV into tmp_path; the oracles are
the frames that were written (lossless FFV1) or PyAV's own decoding of them (lossy codecs),
measured with numpy."""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("av")

from chanstats import api  # noqa: E402
from chanstats.options import RunOptions  # noqa: E402

from .helpers.cli import run_cli  # noqa: E402
from .helpers.videos import decoded_frames, population_stats, random_frames, write_video  # noqa: E402


def compute(paths, workers: int = 0, **options):
    return api.compute([str(p) for p in paths], RunOptions(**options), workers=workers).to_dict()


def assert_stats(result: dict, pixels: np.ndarray, scale: int = 255) -> None:
    mean, std = population_stats(pixels, scale)
    assert result["exact"]["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-15)
    assert result["exact"]["std"] == pytest.approx(std, rel=1e-9)


@pytest.fixture
def lossless(tmp_path: Path, rng: np.random.Generator) -> tuple[Path, np.ndarray]:
    frames = random_frames(rng, 10)
    return write_video(tmp_path / "clip.mkv", frames), frames


def test_lossless_video_is_measured_exactly_over_every_frame(lossless):
    path, frames = lossless
    result = compute([path])
    assert_stats(result, frames)
    assert result["count"]["images"] == result["count"]["videos"] == 1
    assert result["count"]["frames"] == 10 and result["count"]["pixels"] == frames.size // 3
    assert result["exact"]["min"] == frames.reshape(-1, 3).min(axis=0).tolist()
    assert result["options"]["decoder"].startswith("pyav ")


def test_image_configs_record_no_decoder(tmp_path: Path, rng: np.random.Generator):
    from .helpers.files import write_image

    write_image(tmp_path / "a.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    result = compute([tmp_path])
    assert "decoder" not in result["options"] and "frames" not in result["options"]
    assert "videos" not in result["count"] and "frames" not in result["count"]


def test_videos_in_tar_shards_and_list_files(tmp_path: Path, rng: np.random.Generator):
    import tarfile

    first, second = random_frames(rng, 4, 8, 8), random_frames(rng, 3, 8, 8)
    a = write_video(tmp_path / "files" / "a.mkv", first)
    b = write_video(tmp_path / "files" / "b.webm", second, "libvpx-vp9", "yuv420p")
    with tarfile.open(tmp_path / "shard.tar", "w") as shard:
        shard.add(a, "0001.mkv")
        shard.add(b, "0002.webm")
    oracle = np.concatenate([first, decoded_frames(b)])
    from_shard = compute([tmp_path / "shard.tar"], extensions=("video",), frames=2)
    assert_stats(from_shard, np.concatenate([first[[0, 3]], decoded_frames(b)[[0, 2]]]))
    listed = tmp_path / "list.txt"
    listed.write_text("files/a.mkv\nfiles/b.webm\n")
    from_list = compute([f"@{listed}"])  # files named in a list are read whatever --ext says
    assert_stats(from_list, oracle)
    assert from_list["count"]["frames"] == 7


def test_frames_evenly_spaced_and_per_video_rows(tmp_path: Path, rng: np.random.Generator):
    frames = random_frames(rng, 10)
    path = write_video(tmp_path / "v" / "clip.MKV", frames)  # extensions compare case-insensitively
    write_video(tmp_path / "v" / "other.mkv", frames[::-1][:5])
    table = tmp_path / "rows.csv"
    done = run_cli("compute", str(tmp_path / "v"), "--ext", "video", "--frames", "4", "--workers", "0", "-q",
                   "--per-image", str(table))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    # linspace(0, n - 1, 4): frames 0, 3, 6, 9 of the first video; 0, 1, 3, 4 of the second (5 frames)
    chosen = np.concatenate([frames[[0, 3, 6, 9]], frames[::-1][:5][[0, 1, 3, 4]]])
    assert_stats(result, chosen)
    assert result["options"]["frames"] == 4
    rows = list(csv.DictReader(table.open()))
    assert [row["path"] for row in rows] == [str(path), str(tmp_path / "v" / "other.mkv")]
    mean, _ = population_stats(frames[[0, 3, 6, 9]])
    assert [float(rows[0][f"mean_{c}"]) for c in "RGB"] == pytest.approx(mean, rel=1e-12)
    assert (rows[0]["width"], rows[0]["height"], rows[0]["frames"], rows[1]["frames"]) == ("32", "24", "4", "4")


def test_h264_and_vp9_match_pyav_decoding(tmp_path: Path, rng: np.random.Generator):
    frames = random_frames(rng, 12)
    h264 = write_video(tmp_path / "a.mp4", frames, "libx264", "yuv420p", options={"g": "4", "bf": "2"})
    vp9 = write_video(tmp_path / "b.webm", frames, "libvpx-vp9", "yuv420p")
    for path in (h264, vp9):
        oracle = decoded_frames(path)
        assert_stats(compute([path]), oracle)
        # Sparse frames are found by seeking, and are the very frames a full decode gives.
        assert_stats(compute([path], frames=3), oracle[[0, 6, 11]])


def test_ten_bit_video_keeps_its_depth(tmp_path: Path, rng: np.random.Generator):
    frames = random_frames(rng, 6)
    path = write_video(tmp_path / "deep.mkv", frames, "ffv1", "yuv420p10le")
    result = compute([path], mode="keep")
    assert result["dtype"] == "uint16" and result["scale"] == 65535
    assert_stats(result, decoded_frames(path, "rgb48le"), scale=65535)
    # Clips drawn per epoch hold every epoch's pixels in the histogram: with clips as long as the
    # video, each epoch's clip is the whole video, and the percentiles are the frames' own.
    clipped = compute([path], mode="keep", clip_len=6, epochs=2)
    deep = decoded_frames(path, "rgb48le").reshape(-1, 3)
    assert clipped["percentiles"]["raw"][3] == [int(np.percentile(deep[:, c], 50, method="inverted_cdf")) for c in range(3)]
    assert clipped["count"]["frames"] == 12
    eight = compute([path])
    assert eight["dtype"] == "uint8"
    assert_stats(eight, decoded_frames(path, "rgb24"))


def test_fps_follows_timestamps_of_a_variable_frame_rate(tmp_path: Path, rng: np.random.Generator):
    frames = random_frames(rng, 5)
    path = write_video(tmp_path / "vfr.mkv", frames, pts=[0, 100, 150, 400, 900], time_base=Fraction(1, 1000))
    # Ticks at 0, 0.25, 0.5, 0.75 s (up to the last frame, at 0.9 s) show frames 0, 2, 3, 3.
    assert_stats(compute([path], fps=4), frames[[0, 2, 3, 3]])
    assert_stats(compute([path], fps=1), frames[[0]])


def test_rotation_metadata_is_not_applied(tmp_path: Path, rng: np.random.Generator):
    """Frames are measured as stored: a rotation only permutes pixels (the same statistics), and
    the per-video size is the stored one."""
    import av

    frames = random_frames(rng, 4, 24, 32)
    path = write_video(tmp_path / "plain.mkv", frames)
    rotated = tmp_path / "rotated.mp4"
    with av.open(str(path)) as source, av.open(str(rotated), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        stream.set_display_rotation(90)
        for packet in source.demux(source.streams.video[0]):
            if packet.size:
                packet.stream = stream
                target.mux(packet)
    with av.open(str(rotated)) as container:
        assert next(container.decode(video=0)).rotation == 90  # the metadata is there
    result = api.compute([str(rotated)], RunOptions(), workers=0)
    assert_stats(result.to_dict(), frames)
    assert (result.per_image.widths[0], result.per_image.heights[0]) == (32, 24)


def test_clip_sampling_is_seeded_and_worker_independent(tmp_path: Path, rng: np.random.Generator):
    folder = tmp_path / "videos"
    videos = [random_frames(rng, 9, 6, 8) for _ in range(20)]  # more than one chunk of work
    for i, frames in enumerate(videos):
        write_video(folder / f"v{i:02d}.mkv", frames)
    options = dict(extensions=("mkv",), clip_len=3, frame_interval=2, epochs=2, batch_size=4)
    one = api.compute([str(folder)], RunOptions(**options), workers=0)
    two = api.compute([str(folder)], RunOptions(**options), workers=2)
    assert json.dumps(one.to_dict()) == json.dumps(two.to_dict())
    other = compute([folder], seed=1, **options)
    assert other["exact"]["mean"] != one.to_dict()["exact"]["mean"]
    # Each video's samples are clips of 3 frames 2 apart, starting anywhere they fit.
    pooled = one.per_image.mean
    for i, frames in enumerate(videos):
        starts = [frames[[s, s + 2, s + 4]] for s in range(9 - 4)]
        means = [population_stats(clip)[0] for clip in starts]
        # Pooled over 2 epochs: the mean of two possible clip means.
        assert any(np.allclose(pooled[i], (np.array(a) + np.array(b)) / 2, rtol=0, atol=1e-12)
                   for a in means for b in means), i


@pytest.mark.slow  # imports torch and torchvision
def test_transform_draws_once_per_clip(tmp_path: Path, rng: np.random.Generator):
    frames = random_frames(rng, 4, 12, 16)
    path = write_video(tmp_path / "clip.mkv", frames)
    spec = json.dumps([{"RandomCrop": {"size": [5, 7]}}])
    result = compute([path], transform=spec, epochs=3)
    # Every frame cropped at one window (the clip's draw): the pooled statistics of one window.
    windows = [frames[:, y:y + 5, x:x + 7] for y in range(12 - 5 + 1) for x in range(16 - 7 + 1)]
    table = api.compute([str(path)], RunOptions(transform=spec, epochs=3), workers=0).table
    for k in range(3):
        sample_mean = table.mean[k]
        assert any(np.allclose(sample_mean, population_stats(w)[0], rtol=0, atol=1e-12) for w in windows), k
    assert result["count"]["samples"] == 3


def _bad_videos(folder: Path, rng: np.random.Generator) -> dict[str, str]:
    """Each bad video, and the words its reason must hold."""
    import av

    frames = random_frames(rng, 8, 16, 16)
    good = write_video(folder / "tmp" / "good.mp4", frames, "libx264", "yuv420p")
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (folder / "no_moov.mp4").write_bytes(data[: data.index(b"moov") - 4])
    lossless_path = write_video(folder / "tmp" / "good.mkv", frames)
    lossless = lossless_path.read_bytes()
    with av.open(str(lossless_path)) as container:  # damage the inside of the fourth frame's packet
        packet = [p for p in container.demux(video=0) if p.size][3]
        start, size = packet.pos, packet.size
    damaged = bytearray(lossless)
    damaged[start + size // 3 : start + size // 2] = bytes(b ^ 0x55 for b in damaged[start + size // 3 : start + size // 2])
    (folder / "corrupt.mkv").write_bytes(bytes(damaged))
    (folder / "cut.mkv").write_bytes(lossless[: len(lossless) * 2 // 3])
    with av.open(str(folder / "audio.mkv"), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        sound.sample_rate = 8000
        for packet in stream.encode(sound):
            container.mux(packet)
    with av.open(str(folder / "empty.avi"), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "bgr0"
        container.start_encoding()
    for leftover in (folder / "tmp").iterdir():
        leftover.unlink()
    (folder / "tmp").rmdir()
    return {"truncated.mp4": "cannot decode the video", "no_moov.mp4": "cannot decode the video",
            "corrupt.mkv": "damaged video", "cut.mkv": "damaged video", "audio.mkv": "no video stream",
            "empty.avi": "without frames"}


def test_bad_videos_are_named_and_skipped(tmp_path: Path, rng: np.random.Generator, engine):
    bad = tmp_path / "bad"
    bad.mkdir()
    reasons = _bad_videos(bad, rng)
    write_video(tmp_path / "good" / "ok.mkv", random_frames(rng, 3, 8, 8))
    inputs = engine.padded([str(bad), str(tmp_path / "good")], tmp_path / "pad")
    failed = run_cli("compute", *inputs, "--ext", "png,video", "-q", *engine.options)
    assert failed.returncode == 2 and failed.stdout == ""
    for name, words in reasons.items():
        line = next(line for line in failed.stderr.splitlines() if name in line)
        assert words in line, line
    # One line per bad video after the heading: FFmpeg's own log never reaches the terminal.
    assert len(failed.stderr.strip().splitlines()) == 1 + len(reasons), failed.stderr
    skipped = run_cli("compute", *inputs, "--ext", "png,video", "-q", "--on-error", "skip", *engine.options)
    assert skipped.returncode == 0, skipped.stderr
    assert sorted(Path(item["path"]).name for item in json.loads(skipped.stdout)["skipped"]) == sorted(reasons)
    assert skipped.stderr == ""
    if engine.workers == 0:  # the budget is counted after measuring, the same for any engine
        over = run_cli("compute", *inputs, "--ext", "png,video", "-q", "--on-error", "skip", "--max-bad", "2")
        assert over.returncode == 2 and "more than --max-bad 2" in over.stderr


def test_torchcodec_missing_is_one_line(lossless):
    try:
        from chanstats.decoding.video import describe_decoder

        describe_decoder("torchcodec")
    except Exception:
        pass
    else:
        pytest.skip("torchcodec decodes here")
    path, _ = lossless
    done = run_cli("compute", str(path), "--video-decoder", "torchcodec", "--workers", "0")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "--video-decoder torchcodec needs torchcodec" in done.stderr


def test_video_options_are_checked():
    done = run_cli("compute", "x.mp4", "--frames", "3", "--clip-len", "4")
    assert done.returncode == 2 and "--frames and --clip-len" in done.stderr
    done = run_cli("compute", "x.mp4", "--frame-interval", "2")
    assert done.returncode == 2 and "give --clip-len too" in done.stderr


@pytest.mark.slow
def test_video_shards_merge_to_the_same_config(tmp_path: Path, rng: np.random.Generator):
    folder = tmp_path / "videos"
    for i in range(6):
        write_video(folder / f"v{i}.mkv", random_frames(rng, 5, 8, 8))
    common = [str(folder), "--ext", "mkv", "--frames", "3", "-q", "--workers", "0"]
    whole = run_cli("compute", *common)
    parts = [str(tmp_path / f"part{k}.json") for k in (1, 2)]
    for k, part in enumerate(parts, 1):
        assert run_cli("compute", *common, "--shard", f"{k}/2", "--partial", part).returncode == 0
    merged = run_cli("merge", *parts, "-q")
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout == whole.stdout


def test_each_frame_as_a_sample(tmp_path: Path, rng: np.random.Generator):
    for i in range(3):
        write_video(tmp_path / f"v{i}.mkv", random_frames(rng, 6, 8, 8))
    by_frame = compute([tmp_path], extensions=("mkv",), frames=4, video_sample="frame", epochs=2, batch_size=5)
    by_clip = compute([tmp_path], extensions=("mkv",), frames=4, epochs=2, batch_size=5)
    assert by_frame["count"]["samples"] == 3 * 2 * 4 and by_clip["count"]["samples"] == 3 * 2
    assert by_frame["running"]["batches"] == 2 * 3  # 12 frames an epoch in batches of 5: 5, 5, 2
    assert by_frame["exact"] == by_clip["exact"]  # what is measured does not change, only the batches
    assert by_frame["options"]["video_sample"] == "frame"
    refused = run_cli("compute", str(tmp_path), "--ext", "mkv", "--video-sample", "frame")
    assert refused.returncode == 2 and "give --frames N or --clip-len T" in refused.stderr


@pytest.mark.slow  # imports torch
def test_batchnorm_simulation_matches_real_layers_on_clips_and_frames(tmp_path: Path, rng: np.random.Generator):
    import torch

    videos = [random_frames(rng, 4, 6, 8) for _ in range(3)]
    for i, frames in enumerate(videos):
        write_video(tmp_path / f"v{i}.mkv", frames)
    common = dict(extensions=("mkv",), frames=4, shuffle=False)
    tensors = [torch.from_numpy(v).permute(0, 3, 1, 2).double() / 255 for v in videos]  # (T, C, H, W)
    # Clips: a BatchNorm3d fed (B, C, T, H, W) batches of 2 clips, in listing order.
    clips = compute([tmp_path], batch_size=2, **common)
    layer = torch.nn.BatchNorm3d(3, momentum=0.1).double().train()
    stacked = torch.stack([t.permute(1, 0, 2, 3) for t in tensors])
    for start in (0, 2):
        layer(stacked[start:start + 2])
    assert clips["running"]["mean"] == pytest.approx(layer.running_mean.tolist(), rel=1e-6)
    assert clips["running"]["var"] == pytest.approx(layer.running_var.tolist(), rel=1e-6)
    # Frames: a BatchNorm2d fed (B, C, H, W) batches of 5 frames, a video's frames in order.
    frames = compute([tmp_path], batch_size=5, video_sample="frame", **common)
    layer = torch.nn.BatchNorm2d(3, momentum=0.1).double().train()
    every = torch.cat(tensors)
    for start in range(0, len(every), 5):
        layer(every[start:start + 5])
    assert frames["running"]["mean"] == pytest.approx(layer.running_mean.tolist(), rel=1e-6)
    assert frames["running"]["var"] == pytest.approx(layer.running_var.tolist(), rel=1e-6)


def test_check_replays_a_video_config(tmp_path: Path, rng: np.random.Generator):
    path = write_video(tmp_path / "v" / "a.mkv", random_frames(rng, 6, 8, 8))
    config = tmp_path / "video.json"
    done = run_cli("compute", str(tmp_path / "v"), "--ext", "video", "--clip-len", "3", "--epochs", "2",
                   "--workers", "0", "-q", "-o", str(config))
    assert done.returncode == 0, done.stderr
    same = run_cli("check", "--against", str(config), "--workers", "0")
    assert same.returncode == 0, same.stderr
    shown = run_cli("show", str(config))
    assert ": 1 image (1 video, 6 frames), 2 samples," in shown.stdout + shown.stderr
    write_video(path, random_frames(rng, 6, 8, 8, low=200))  # brighter frames: the statistics moved
    moved = run_cli("check", "--against", str(config), "--workers", "0")
    assert moved.returncode == 1, moved.stdout + moved.stderr


def test_help_and_image_runs_do_not_import_pyav():
    import subprocess
    import sys

    code = ("import sys\nfrom click.testing import CliRunner\nfrom chanstats.cli import cli\n"
            "CliRunner().invoke(cli, ['--help'])\nimport chanstats\n"
            f"chanstats.compute({str(Path(__file__).parent.parent / 'examples' / 'images')!r}, workers=0)\n"
            "print('av' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr


def _size_changing_video(path: Path, rng: np.random.Generator) -> Path:
    """An H.264 stream whose frames go from 16×16 to 24×16 after three frames, in Matroska."""
    import io

    import av

    def raw(width: int, height: int, count: int) -> bytes:
        buffer = io.BytesIO()
        with av.open(buffer, "w", format="h264") as container:
            stream = container.add_stream("libx264", rate=10)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            for _ in range(count):
                pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        return buffer.getvalue()

    with av.open(io.BytesIO(raw(16, 16, 3) + raw(24, 16, 2)), format="h264") as source, av.open(str(path), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for k, packet in enumerate(p for p in source.demux(video=0) if p.size):
            packet.pts = packet.dts = k
            packet.time_base = Fraction(1, 10)
            packet.stream = stream
            target.mux(packet)
    return path


def test_frames_that_change_size_are_measured_as_decoded(tmp_path: Path, rng: np.random.Generator):
    import av

    path = _size_changing_video(tmp_path / "sizes.mkv", rng)
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert sorted({frame.shape for frame in decoded}) == [(16, 16, 3), (16, 24, 3)]
    result = api.compute([str(path)], RunOptions(), workers=0)
    assert_stats(result.to_dict(), np.concatenate([frame.reshape(-1, 3) for frame in decoded]))
    assert (result.per_image.widths[0], result.per_image.heights[0]) == (16, 16)  # the first frame's


@pytest.mark.slow  # imports torch
def test_a_clip_for_a_transform_needs_frames_of_one_size(tmp_path: Path, rng: np.random.Generator):
    path = _size_changing_video(tmp_path / "sizes.mkv", rng)
    done = run_cli("compute", str(path), "--transform", '[{"RandomCrop": {"size": 8}}]', "--workers", "0", "-q")
    assert done.returncode == 2
    assert "frames change size mid-stream (16x16, then 24x16)" in done.stderr


def test_a_video_over_http_is_measured_as_the_local_file(tmp_path: Path, rng: np.random.Generator):
    pytest.importorskip("fsspec")
    pytest.importorskip("aiohttp")
    from .helpers.object_servers import HttpFileServer

    frames = random_frames(rng, 5, 8, 8)
    write_video(tmp_path / "served" / "clip.mkv", frames)
    with HttpFileServer(tmp_path / "served") as server:
        remote = compute([f"{server.url}/clip.mkv"], frames=3)
    assert_stats(remote, frames[[0, 2, 4]])
    assert remote["count"]["frames"] == 3


def test_images_beside_videos_pool_and_are_not_counted_as_videos(tmp_path: Path, rng: np.random.Generator):
    from .helpers.files import write_image

    frames = random_frames(rng, 4, 8, 8)
    write_video(tmp_path / "a.mkv", frames)
    photo = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_image(tmp_path / "b.png", photo)
    result = compute([tmp_path], extensions=("png", "video"))
    assert_stats(result, np.concatenate([frames.reshape(-1, 3), photo.reshape(-1, 3)]))
    assert (result["count"]["images"], result["count"]["videos"], result["count"]["frames"]) == (2, 1, 4)
    assert list(api.compute([str(tmp_path)], RunOptions(extensions=("png", "video")), workers=0).per_image.frames) == [4, None]

"""Gzip-compressed shards are inflated once in the workers: each shard goes to one worker, whole and
in order, and the output is the same bytes whatever the number of workers."""

from __future__ import annotations

import json
import os
from pathlib import Path

from chanstats.measure import Measurer
from chanstats.scale.engine import measure_all, work_units
from chanstats.sources import tar as tarshards
from chanstats.sources.listing import list_images

from .helpers.cli import run_cli
from .test_tar_sources import images, write_folder, write_tar


def corpus(root: Path) -> list[str]:
    """Two intact .tar.gz shards of 30 members (one member broken), a folder of 12 images between
    them, and a .tar.gz cut short: inputs holding 83 listed entries."""
    members = images(80, seed=3)
    names = list(members)
    members[names[7]] = b"not a png"
    write_tar(root / "a.tar.gz", {n: members[n] for n in names[:30]}, "w:gz")
    write_folder(root / "plain", {n: members[n] for n in names[30:42]})
    write_tar(root / "b.tar.gz", {n: members[n] for n in names[42:72]}, "w:gz")
    cut = write_tar(root / "c.tar.gz", {n: members[n] for n in names[72:]}, "w:gz")
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])  # the gzip stream ends early: its tail is lost, named
    return [str(root / "a.tar.gz"), str(root / "plain"), str(root / "b.tar.gz"), str(cut)]


def test_cli_output_is_the_same_bytes_with_and_without_workers(tmp_path):
    inputs = corpus(tmp_path)
    outputs = {}
    for workers in ("0", "2"):
        per_image = tmp_path / f"per-image-{workers}.csv"
        done = run_cli("compute", *inputs, "--on-error", "skip", "--workers", workers, "-q", "--per-image", str(per_image))
        assert done.returncode == 0, done.stderr
        outputs[workers] = (done.stdout, per_image.read_bytes())
    assert outputs["0"] == outputs["2"]
    config = json.loads(outputs["2"][0])
    skipped = [entry["path"] for entry in config["skipped"]]
    assert skipped[0] == f"{tmp_path}/a.tar.gz::{sorted(images(80, seed=3))[7]}"
    assert skipped[1].startswith(f"{tmp_path}/c.tar.gz")  # the damaged rest, named after the shard
    rows = outputs["2"][1].decode().splitlines()[1:]
    assert [row.split(",")[0] for row in rows[:2]] == [f"{tmp_path}/a.tar.gz::000000.png", f"{tmp_path}/a.tar.gz::000001.png"]
    assert config["count"]["images"] == len(rows) and 70 <= len(rows) < 80


def test_a_compressed_shard_is_never_split_between_chunks(tmp_path):
    listing = list_images(corpus(tmp_path))
    for workers in (1, 2, 16):
        units = list(work_units(listing, workers, 4, 8))
        assert [start for start, _ in units] == [0] + [stop for _, stop in units[:-1]] and units[-1][1] == len(listing)
        for start, stop in units:
            roots = {s.root for s in listing[start:stop] if getattr(s, "compressed", False)}
            assert len(roots) <= 1
            if roots:  # a compressed shard's chunk holds all of it, and only it
                (root,) = roots
                assert all(s.root == root for s in listing[start:stop])
                assert sum(1 for s in listing if s.root == root) == stop - start


class _RecordingMeasurer:
    """The real measurer, noting which process measured each image."""

    def __init__(self, marks: str) -> None:
        self.marks, self.measurer = marks, Measurer()

    def __call__(self, index, source):
        with open(os.path.join(self.marks, f"{index}"), "w") as handle:
            handle.write(str(os.getpid()))
        return self.measurer(index, source)


def test_each_worker_inflates_a_compressed_shard_once(tmp_path, monkeypatch):
    inputs = corpus(tmp_path / "data")
    opened = tmp_path / "opened"
    opened.mkdir()
    marks = tmp_path / "marks"
    marks.mkdir()
    original_open = tarshards._GzipReader._open

    def counting_open(self, path):  # forked workers inherit this patch
        with open(opened / f"{os.getpid()}-{len(os.listdir(opened))}", "w") as handle:
            handle.write(path)
        original_open(self, path)

    monkeypatch.setattr(tarshards._GzipReader, "_open", counting_open)
    listing = list_images(inputs)
    outcomes = list(measure_all(listing, _RecordingMeasurer(str(marks)), workers=2, chunk_size=4))
    assert [index for index, _ in outcomes] == list(range(len(listing)))
    shards_opened = sorted(path.read_text() for path in opened.iterdir())
    assert shards_opened == sorted(inputs[i] for i in (0, 2, 3))  # each compressed shard once, in all
    for shard in (inputs[0], inputs[2]):
        pids = {(marks / str(i)).read_text() for i, s in enumerate(listing) if s.root == shard}
        assert len(pids) == 1, shard

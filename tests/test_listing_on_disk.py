"""The listing on disk: spilled column files equal the in-memory listing, duplicates are dropped as
a set of identities would, --sample draws the permutation's indices, files are cleaned up, and a
listing kept in a work directory is shared and re-listed when stale."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from chanstats import api
from chanstats.cli import cli
from chanstats.errors import ChanstatsError
from chanstats.sources import shared, stored
from chanstats.sources.listing import FirstSightings, fingerprint, list_images
from chanstats.stats import sampling
from chanstats.stats.sampling import SAMPLE_STREAM, sample_indices


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(5 + seed % 4, 6, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, list[str]]:
    """48 PNGs in nested folders (names that sort differently as paths and per folder), a hard
    link, a symlink to a file, a list file and a tar shard; the inputs given
    overlap (a sub-folder again, the shard twice)."""
    root = tmp_path / "data"
    count = 0
    for folder in ["a", "a-b", "a.x", "a/b", "b"]:
        (root / "tree" / folder).mkdir(parents=True, exist_ok=True)
        for i in range(8):
            (root / "tree" / folder / f"im{i}.png").write_bytes(png(count))
            count += 1
    (root / "tree" / "a.png").write_bytes(png(99))
    os.link(root / "tree" / "a" / "im1.png", root / "tree" / "b" / "hard.png")
    os.symlink("../a/im2.png", root / "tree" / "b" / "sym.png")
    (root / "list.txt").write_text("tree/a.png\ntree/b\n")
    with tarfile.open(root / "shard.tar", "w") as archive:
        for i in range(12):
            data = png(200 + i)
            info = tarfile.TarInfo(f"{i:03d}.png")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    inputs = [str(root / "tree"), str(root / "tree" / "a-b"), f"@{root / 'list.txt'}", str(root / "shard.tar"),
              str(root / "shard.tar")]
    return root, inputs


def on_disk(monkeypatch) -> None:
    """Every listing spills to files, flushed every 5 rows."""
    monkeypatch.setattr(stored, "IN_MEMORY_ROWS", 0)
    monkeypatch.setattr(stored, "FLUSH_ROWS", 5)


def expected_identities(inputs: list[str]) -> list[tuple[str, int]]:
    """The oracle: every path in order (os.walk, sorted by bytes), kept the first time its
    (device, inode) is seen; tar members by their order in the shard."""
    seen: set[tuple] = set()
    kept = []
    for item in inputs:
        if item.startswith("@"):
            base = os.path.dirname(item[1:])
            paths = [os.path.join(base, line) for line in Path(item[1:]).read_text().split()]
        else:
            paths = [item]
        for path in paths:
            if path.endswith(".tar"):
                stat = os.stat(path)
                with tarfile.open(path) as archive:
                    for member in archive.getmembers():
                        if (stat.st_dev, stat.st_ino, member.offset) not in seen:
                            seen.add((stat.st_dev, stat.st_ino, member.offset))
                            kept.append((member.name, member.size))
                continue
            if os.path.isfile(path):
                files = [(os.path.basename(path), path)] if not item.startswith("@") else [(os.path.relpath(path, base), path)]
            else:
                files = []
                visited = set()
                for folder, dirs, names in os.walk(path, followlinks=True):
                    stat = os.stat(folder)
                    if (stat.st_dev, stat.st_ino) in visited:
                        dirs[:] = []
                        continue
                    visited.add((stat.st_dev, stat.st_ino))
                    files += [(os.path.relpath(os.path.join(folder, n), path), os.path.join(folder, n)) for n in names
                              if n.endswith(".png")]
                files.sort(key=lambda pair: os.fsencode(pair[0]))
            for name, full in files:
                stat = os.stat(full)
                if (stat.st_dev, stat.st_ino) not in seen:
                    seen.add((stat.st_dev, stat.st_ino))
                    kept.append((name, stat.st_size))
    return kept


def test_on_disk_listing_equals_in_memory_and_the_oracle(corpus, monkeypatch):
    _, inputs = corpus
    in_memory = list_images(inputs)
    assert not in_memory._columns.mapped
    on_disk(monkeypatch)
    mapped = list_images(inputs)
    assert mapped._columns.mapped
    assert [(s.name, s.size) for s in mapped] == expected_identities(inputs)
    assert list(mapped) == list(in_memory) and mapped == in_memory
    assert fingerprint(mapped) == fingerprint(in_memory) == fingerprint(list(in_memory))  # the last: hashed afresh
    view = mapped[7:40]
    assert pickle.loads(pickle.dumps(view)) == list(in_memory)[7:40]
    assert mapped.archive_keys() == in_memory.archive_keys()


def test_first_sightings_is_a_set_of_identities():
    rng = np.random.default_rng(5)
    seen_oracle: set[tuple] = set()
    seen = FirstSightings()
    for _ in range(30):
        batch = [tuple(int(v) for v in rng.integers(-1, 6, size=int(rng.integers(2, 5)))) for _ in range(200)]
        batch += [(1, 2**64 - 2), (1, (1 << 63) + 5)]
        expected = []
        for identity in batch:
            expected.append(identity not in seen_oracle)
            seen_oracle.add(identity)
        assert seen.first_sightings(batch) == expected


def test_first_sightings_of_files_is_a_set_of_device_inode_pairs():
    rng = np.random.default_rng(8)
    seen_oracle: set[tuple] = set()
    seen = FirstSightings()
    for batch_number in range(40):
        size = int(rng.integers(1, 300))
        # Mostly one device (a folder's files), sometimes several; identities repeat within and across batches.
        devices = [7] * size if batch_number % 3 else [int(d) for d in rng.integers(6, 9, size)]
        inodes = [int(i) for i in rng.integers(0, 500, size)]
        inodes[0] = 2**64 - 1 - batch_number  # the largest inode numbers too
        expected = []
        for identity in zip(devices, inodes):
            expected.append(identity not in seen_oracle)
            seen_oracle.add(identity)
        assert seen.first_sightings_of_files(devices, inodes) == expected
        # Either form remembers for the other: a (device, inode) pair is the same identity.
        assert seen.first_sightings([(devices[0], inodes[0])]) == [False]


@pytest.mark.parametrize("spilled", [False, True])
def test_walked_files_carry_the_modification_time_of_their_one_stat(corpus, monkeypatch, spilled):
    root, _ = corpus
    if spilled:
        on_disk(monkeypatch)
    # The list names tree/a.png (a file) and tree/b (a folder, walked); then tree/a is walked.
    listing = list_images([f"@{root / 'list.txt'}", str(root / "tree" / "a")])
    assert listing._columns.mapped == spilled
    rows = list(listing.local_files())
    assert [(os.fsdecode(name), size) for _, name, size, _, _ in rows] == [(s.name, s.size) for s in listing]
    named = [os.fsdecode(name) for _, name, _, mtime, _ in rows if mtime is None]
    assert named == ["tree/a.png"]  # a file a list names: listed without a walk's stat
    for source_root, name, size, mtime, bad in rows:
        path = os.path.join(source_root, os.fsdecode(name))
        if mtime is not None:
            assert (size, mtime) == (os.stat(path).st_size, os.stat(path).st_mtime_ns), path
        assert not bad
    assert len(rows) == 1 + 10 + 16 - 2  # a.png; tree/b: 8 and two links; tree/a and a/b, less the two linked
    # Views and pickled chunks keep them.
    view = pickle.loads(pickle.dumps(listing[3:20]))
    assert list(view.local_files()) == rows[3:20]


def test_a_saved_listing_read_back_has_no_modification_times(corpus, tmp_path):
    root, _ = corpus
    inputs = [str(root / "tree")]
    saved = shared.list_shared(inputs, (".png",), None, str(tmp_path / "work"))
    assert all(mtime is not None for _, _, _, mtime, _ in saved.local_files())  # this run's own walk
    again = shared.list_shared(inputs, (".png",), None, str(tmp_path / "work"))
    assert again == saved
    assert all(mtime is None for _, _, _, mtime, _ in again.local_files())  # an earlier run's: may be stale


def test_a_walk_beyond_the_kept_entries_reads_folders_again_and_lists_the_same(corpus, monkeypatch):
    from chanstats.sources import folders

    root, _ = corpus
    inputs = [str(root / "tree")]
    everything_kept = list_images(inputs)
    read = []
    real_entries = folders._entries
    monkeypatch.setattr(folders, "_entries", lambda directory: read.append(directory) or real_entries(directory))
    assert list_images(inputs) == everything_kept
    once = len(read)
    monkeypatch.setattr(folders, "KEPT_ENTRIES", 10)  # the first folders' entries kept, the rest read again
    read.clear()
    assert list_images(inputs) == everything_kept
    assert once < len(read) < 2 * once
    assert [(s.name, s.size) for s in everything_kept] == expected_identities(inputs)


@pytest.mark.parametrize("run", [1, 2, 3, 4096])
def test_runs_of_any_length_list_the_files_special_entries_and_folders_in_order(tmp_path, monkeypatch, run):
    # A walk gives a folder's regular files as runs of up to RUN; a special entry (a dangling link,
    # a FIFO) or a sub-folder ends a run, and a run is cut at RUN files. Whatever the cuts, the
    # listing is every entry in the order of its path's bytes, the special ones as bad entries.
    from chanstats.sources import folders

    root = tmp_path / "tree"
    (root / "b").mkdir(parents=True)
    names = []
    for i in range(7):
        (root / f"a{i}.png").write_bytes(png(i))
        names.append(f"a{i}.png")
    os.symlink(root / "gone.png", root / "a3x.png")  # sorts between a3.png and a4.png
    os.mkfifo(root / "a5x.png")
    for i in range(4):
        (root / "b" / f"c{i}.png").write_bytes(png(10 + i))
    (root / "b.png").write_bytes(png(20))  # a file named like the folder sorts before its files
    expected = sorted(names + ["a3x.png", "a5x.png", "b.png"] + [f"b/c{i}.png" for i in range(4)],
                      key=lambda name: name.encode())
    monkeypatch.setattr(folders, "RUN", run)
    listing = list_images([str(root)])
    assert [source.name for source in listing] == expected
    assert {source.name for source in listing if source.problem} == {"a3x.png", "a5x.png"}
    assert [source.size for source in listing if not source.problem] == \
        [(root / name).stat().st_size for name in expected if name not in ("a3x.png", "a5x.png")]


@pytest.mark.parametrize("spilled", [False, True])
def test_any_name_ends_with_looks_at_whole_names_only(tmp_path, monkeypatch, spilled):
    from chanstats.sources.base import ImageSource, Listing
    from chanstats.sources.video import any_video

    if spilled:
        on_disk(monkeypatch)
    writer = stored.ListingWriter()
    names = ["a.mp4.png", "b.MP4x.jpg", "clip.MoV", "c.png", "mp4", "d.webm.tif"]
    for name in names:
        writer.append(ImageSource(str(tmp_path), name, 1))
    listing = writer.finish()
    assert listing._columns.mapped == spilled
    for start in range(len(names)):
        for stop in range(start, len(names) + 1):
            expected = any(name.lower().endswith((".mp4", ".mkv", ".webm", ".avi", ".mov")) for name in names[start:stop])
            assert any_video(listing[start:stop]) == expected, (start, stop)
    assert Listing([ImageSource("r", "x.png", 1)]).any_name_ends_with((b".png",))


@pytest.mark.parametrize("population,size,seed", [(100, 10, 0), (70_001, 2000, 3), (70_001, 70_001, 1)])
def test_sample_indices_are_the_permutations_first(population, size, seed):
    expected = np.sort(np.random.default_rng([seed, SAMPLE_STREAM]).permutation(population)[:size])
    assert sample_indices(population, size, seed).tolist() == expected.tolist()


def test_sample_on_disk_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sampling, "IN_MEMORY_POPULATION", 10)
    expected = np.sort(np.random.default_rng([4, SAMPLE_STREAM]).permutation(1000)[:30])
    assert sample_indices(1000, 30, 4, workdir=str(tmp_path)).tolist() == expected.tolist()
    assert os.listdir(tmp_path) == []


def run_cli(args: list[str]) -> bytes:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return result.stdout_bytes


@pytest.mark.parametrize("extra", [["--listing"], ["--sample", "20"], ["--sample", "30%", "--seed", "2"]])
def test_cli_output_is_the_same_from_disk_through_the_pool(corpus, monkeypatch, extra):
    _, inputs = corpus
    args = ["compute", *inputs, "--workers", "2", "-q", *extra]
    from_memory = run_cli(args)
    on_disk(monkeypatch)
    monkeypatch.setattr(sampling, "IN_MEMORY_POPULATION", 10)
    assert run_cli(args) == from_memory


def test_listing_leaves_no_file_after_success_or_error(corpus, tmp_path, monkeypatch):
    _, inputs = corpus
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    on_disk(monkeypatch)
    listing = list_images(inputs)
    assert listing._columns.mapped and len(listing) > 40
    assert os.listdir(temporary) == []
    broken = tmp_path / "broken.txt"
    broken.write_text("data/tree/a.png\nmissing.png\n")
    with pytest.raises(ChanstatsError, match="missing.png: no such file"):
        list_images(inputs + [f"@{broken}"])
    assert os.listdir(temporary) == []


def test_unwritable_workdir_is_one_clear_line(corpus, tmp_path):
    _, inputs = corpus
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ChanstatsError) as error:
        shared.list_shared(inputs, (".png",), None, str(blocker / "work"))
    assert str(error.value).startswith(f"--workdir {blocker / 'work'}: cannot create it") and "\n" not in str(error.value)


def test_workdir_listing_is_reused_and_listed_again_when_stale(corpus, tmp_path):
    root, inputs = corpus
    workdir = str(tmp_path / "work")
    first = shared.list_shared(inputs, (".png",), None, workdir)
    assert first == list_images(inputs) and fingerprint(first) == fingerprint(list(first))
    (folder,) = os.listdir(workdir)
    reused = shared.list_shared(inputs, (".png",), None, workdir)
    assert reused == first and fingerprint(reused) == fingerprint(first)
    (root / "tree" / "a" / "b" / "new.png").write_bytes(png(7))
    relisted = shared.list_shared(inputs, (".png",), None, workdir)
    assert len(relisted) == len(first) + 1 and relisted == list_images(inputs)
    assert os.listdir(workdir) == [folder]


def test_waiting_rank_reads_the_listing_of_rank_zero(corpus, tmp_path, monkeypatch):
    _, inputs = corpus
    monkeypatch.setattr(shared, "POLL_SECONDS", 0.01)
    workdir = str(tmp_path / "work")
    got: list = []
    waiter = threading.Thread(target=lambda: got.append(shared.list_shared(inputs, (".png",), None, workdir, wait=True)))
    waiter.start()
    listed = shared.list_shared(inputs, (".png",), None, workdir)
    waiter.join(timeout=30)
    assert got and got[0] == listed and fingerprint(got[0]) == fingerprint(list(listed))


def test_waiting_rank_reports_the_listing_error(tmp_path, monkeypatch):
    monkeypatch.setattr(shared, "POLL_SECONDS", 0.01)
    workdir = str(tmp_path / "work")
    with pytest.raises(ChanstatsError):
        shared.list_shared([str(tmp_path / "missing")], (".png",), None, workdir)
    with pytest.raises(ChanstatsError, match="rank 0 could not list the images: .*missing: no such file"):
        shared.list_shared([str(tmp_path / "missing")], (".png",), None, workdir, wait=True)


def test_workers_per_rank_divide_the_cores(monkeypatch):
    from chanstats.scale.engine import default_workers

    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert api.distributed_workers() == max(1, default_workers() // 2)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1000")
    assert api.distributed_workers() == 1


def test_a_kept_listing_removed_while_being_read_is_listed_again(corpus, tmp_path):
    # another process found it stale and removed it between our reading its header and mapping
    # its columns: this run lists afresh instead of failing
    _, inputs = corpus
    workdir = tmp_path / "work"
    args = ["compute", *inputs, "--ext", ".png", "--workdir", str(workdir), "--workers", "0", "-q"]
    first = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert first.exit_code == 0
    (folder,) = workdir.iterdir()
    (folder / "sizes").unlink()
    again = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert again.exit_code == 0 and again.stdout == first.stdout
    assert [p.name for p in workdir.iterdir()] == [folder.name] and (folder / "sizes").exists()

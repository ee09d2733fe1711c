"""The measurement cache (``--cache``): reruns reuse unchanged items' measurements and give the
same bytes as a run without it, whatever changed on disk, and no fault of the cache file gives
wrong numbers.

The oracle of every test is a run *without* the cache on the same files; what the cache reused
is read from the one line it prints (``reused R of N measurements``)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tarfile
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import chanstats.errors
from chanstats import api
from chanstats.scale import cache as cache_module

from .helpers.cli import chanstats_command, run_cli
from .helpers.files import random_rgb, write_image

PAST = time.time() - 3600  # files written by a test get an mtime in the past (see RECENT in the cache)


def aged(path: Path, seconds_ago: float = 3600) -> Path:
    os.utime(path, (time.time() - seconds_ago, time.time() - seconds_ago))
    return path


def image_folder(root: Path, count: int, seed: int = 0, suffix: str = "png") -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        array = random_rgb(rng, 6 + i % 5, 7 + i % 4, low=3 * (i % 7), high=180 + 5 * (i % 9))
        paths.append(aged(write_image(root / f"d{i % 3}" / f"{i:03d}.{suffix}", array)))
    return paths


def config_bytes(tmp_path: Path, inputs, name: str, **kwargs) -> bytes:
    result = api.compute(inputs, **kwargs)
    out = tmp_path / f"{name}.json"
    api.write(result, out)
    return out.read_bytes()


def reused(text: str) -> tuple[int, int]:
    """(reused, total) from the cache's summary line."""
    match = re.search(r"cache: reused (\d+) of (\d+) measurements", text)
    assert match, text
    return int(match.group(1)), int(match.group(2))


def cached_run(tmp_path, capsys, inputs, name, cache, workers, **kwargs) -> tuple[bytes, tuple[int, int]]:
    """A cached run's config bytes and what it reused, and the same run without the cache."""
    capsys.readouterr()
    cached = config_bytes(tmp_path, inputs, name + "-cached", cache=cache, workers=workers, **kwargs)
    counts = reused(capsys.readouterr().err)
    plain = config_bytes(tmp_path, inputs, name + "-plain", workers=workers, **kwargs)
    assert cached == plain, f"{name}: the cached run's config differs from the plain run's"
    return cached, counts


def test_folder_reruns_identical_after_adding_removing_replacing_and_touching(tmp_path, capsys, engine):
    root = tmp_path / "data"
    count = 12 + engine.padding  # through the pool: several chunks, each measured by a worker
    paths = image_folder(root, count)
    cache = tmp_path / "cache"
    inputs = [str(root)]

    _, counts = cached_run(tmp_path, capsys, inputs, "cold", cache, engine.workers)
    assert counts == (0, count)
    _, counts = cached_run(tmp_path, capsys, inputs, "warm", cache, engine.workers)
    assert counts == (count, count)

    aged(write_image(root / "d0" / "new.png", random_rgb(np.random.default_rng(9), 9, 9)))  # added
    paths[1].unlink()  # removed
    aged(write_image(paths[2], random_rgb(np.random.default_rng(8), 11, 5)), 1800)  # replaced: new bytes and mtime
    aged(paths[3], 900)  # touched: same bytes, another mtime
    _, counts = cached_run(tmp_path, capsys, inputs, "changed", cache, engine.workers)
    assert counts == (count - 3, count)  # the new, replaced and touched files are measured again


def test_content_replaced_with_the_same_size_and_mtime_is_found_by_hash(tmp_path, capsys):
    root = tmp_path / "data"
    paths = image_folder(root, 6, suffix="bmp")  # uncompressed: other pixels, same size
    cache = tmp_path / "cache"
    cached_run(tmp_path, capsys, [str(root)], "cold", cache, 0)
    # A copy of the data (new mtimes everywhere): by stat nothing is reused, by hash everything.
    for path in paths:
        aged(path, 7200)
    _, counts = cached_run(tmp_path, capsys, [str(root)], "stat", cache, 0)
    assert counts == (0, 6)
    hashed = cache_module.CacheSettings(str(cache), verify="hash")
    cached_run(tmp_path, capsys, [str(root)], "hash-cold", hashed, 0)
    for path in paths:
        aged(path, 5400)
    _, counts = cached_run(tmp_path, capsys, [str(root)], "hash", hashed, 0)
    assert counts == (6, 6)
    # Other pixels under the same name, size and mtime: stat cannot tell, the hash does.
    stamp = os.stat(paths[0])
    other = np.asarray(Image.open(paths[0])).copy()
    other[0, 0] = (other[0, 0].astype(int) + 1) % 256
    Image.fromarray(other).save(paths[0])
    os.utime(paths[0], ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert os.stat(paths[0]).st_size == stamp.st_size
    _, counts = cached_run(tmp_path, capsys, [str(root)], "hash-changed", hashed, 0)
    assert counts == (5, 6)


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_shard(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return aged(path)


def test_tar_shards_rerun_identical_after_a_shard_changes(tmp_path, capsys, engine):
    rng = np.random.default_rng(3)
    per_shard = 8 + engine.padding // 2
    members = [{f"{s}{i:03d}.png": png(random_rgb(rng, 5 + i % 4, 6 + i % 3)) for i in range(per_shard)} for s in "ab"]
    shards = [write_shard(tmp_path / f"shard-{s}.tar", m) for s, m in zip("ab", members)]
    cache = tmp_path / "cache"
    inputs = [str(shard) for shard in shards]
    cached_run(tmp_path, capsys, inputs, "cold", cache, engine.workers)
    _, counts = cached_run(tmp_path, capsys, inputs, "warm", cache, engine.workers)
    assert counts == (2 * per_shard, 2 * per_shard)
    # Shard b rewritten with one member replaced and one added: its members are measured again.
    members[1][f"b{0:03d}.png"] = png(random_rgb(rng, 9, 9))
    members[1]["b999.png"] = png(random_rgb(rng, 4, 4))
    write_shard(shards[1], members[1])
    os.utime(shards[1], (PAST + 60, PAST + 60))
    _, counts = cached_run(tmp_path, capsys, inputs, "changed", cache, engine.workers)
    assert counts == (per_shard, 2 * per_shard + 1)


def test_parquet_rows_rerun_identical_after_rows_change(tmp_path, capsys):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rng = np.random.default_rng(4)
    # Through the worker pool (more rows than one chunk): each run's workers open the table afresh
    # (this process keeps tables open between runs, and the table is rewritten in place).
    rows = 40
    cells = [png(random_rgb(rng, 5 + i % 3, 7)) for i in range(rows)]
    table = tmp_path / "train.parquet"

    def write(cells):
        pq.write_table(pa.table({"image": pa.array(cells, type=pa.binary())}), table, row_group_size=4)
        aged(table, 3600 - len(cells))

    write(cells)
    cache = tmp_path / "cache"
    cached_run(tmp_path, capsys, [str(table)], "cold", cache, 2)
    _, counts = cached_run(tmp_path, capsys, [str(table)], "warm", cache, 2)
    assert counts == (rows, rows)
    write(cells[:4] + [png(random_rgb(rng, 8, 8))] + cells[5:] + [cells[0]])  # a row replaced, one added
    _, counts = cached_run(tmp_path, capsys, [str(table)], "changed", cache, 2)
    assert counts == (0, rows + 1)  # the file changed: its rows are keyed by the file's identity


def test_other_options_and_other_versions_never_reuse_entries(tmp_path, capsys, monkeypatch):
    root = tmp_path / "data"
    image_folder(root, 5)
    cache = tmp_path / "cache"
    cached_run(tmp_path, capsys, [str(root)], "rgb", cache, 0)
    _, counts = cached_run(tmp_path, capsys, [str(root)], "grey", cache, 0, mode="L")
    assert counts == (0, 5)
    _, counts = cached_run(tmp_path, capsys, [str(root)], "batch", cache, 0, batch_size=2)
    assert counts == (5, 5)  # BatchNorm settings do not change what an image measures
    monkeypatch.setattr(cache_module, "__version__", "999.0")
    _, counts = cached_run(tmp_path, capsys, [str(root)], "version", cache, 0)
    assert counts == (0, 5)


def corrupt_value(cache: Path) -> None:
    with closing(sqlite3.connect(cache / "measurements.sqlite")) as connection:
        # One byte of one entry flipped: what a failing disk or a stray write would leave.
        (key, value) = connection.execute("SELECT key, value FROM entries ORDER BY key LIMIT 1").fetchone()
        connection.execute("UPDATE entries SET value = ? WHERE key = ?", (value[:-1] + bytes([value[-1] ^ 1]), key))
        connection.commit()


@pytest.mark.parametrize("fault", ["garbage", "truncated", "empty", "tampered entry", "other schema", "a folder"])
def test_a_damaged_cache_is_ignored_with_one_line_and_numbers_stay_right(tmp_path, capsys, fault):
    root = tmp_path / "data"
    image_folder(root, 6)
    cache = tmp_path / "cache"
    cached_run(tmp_path, capsys, [str(root)], "cold", cache, 0)
    store = cache / "measurements.sqlite"
    with closing(sqlite3.connect(store)) as connection:  # everything in the main file, as after a clean exit
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if fault == "garbage":
        store.write_bytes(b"not a database " * 500)
    elif fault == "truncated":
        data = store.read_bytes()
        store.write_bytes(data[: len(data) // 3])
    elif fault == "empty":
        store.write_bytes(b"")
    elif fault == "a folder":  # not a file at all: nothing can be opened or created there
        for leftover in cache.iterdir():
            leftover.unlink()
        store.mkdir()
    elif fault == "tampered entry":
        corrupt_value(cache)
    else:
        with closing(sqlite3.connect(store)) as connection:
            connection.execute("UPDATE meta SET value = '99' WHERE name = 'schema'")
            connection.commit()
    capsys.readouterr()
    cached = config_bytes(tmp_path, [str(root)], "after", cache=cache, workers=0)
    err = capsys.readouterr().err
    assert cached == config_bytes(tmp_path, [str(root)], "plain", workers=0)
    notes = [line for line in err.splitlines() if "cache:" in line and "reused" not in line]
    if fault == "empty":  # an empty file is a new, empty database: nothing to say, nothing reused
        assert reused(err)[0] == 0
    else:
        assert len(notes) == 1 and "measurements.sqlite" in notes[0], err


def test_eviction_keeps_the_size_bound_and_drops_the_least_recently_used(tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    image_folder(first, 10, seed=1)
    image_folder(second, 10, seed=2)
    cache = tmp_path / "cache"
    cached_run(tmp_path, capsys, [str(first)], "first", cache, 0)
    store = cache / "measurements.sqlite"
    with closing(sqlite3.connect(store)) as connection:
        (size,) = connection.execute("SELECT sum(size) FROM entries").fetchone()
        connection.execute("UPDATE entries SET used = used - 86400")  # the first folder was used yesterday
        connection.commit()
    bound = cache_module.CacheSettings(str(cache), max_size=int(size * 1.2))
    cached_run(tmp_path, capsys, [str(second)], "second", bound, 0)
    with closing(sqlite3.connect(store)) as connection:
        (total,) = connection.execute("SELECT sum(size) FROM entries").fetchone()
    assert total <= size * 1.2
    _, counts = cached_run(tmp_path, capsys, [str(second)], "second-again", bound, 0)
    assert counts == (10, 10)  # the recent entries stayed
    _, counts = cached_run(tmp_path, capsys, [str(first)], "first-again", bound, 0)
    assert counts[0] < 10  # the old ones went first


def write_spec(path: Path) -> Path:
    path.write_text("- RandomResizedCrop: {size: 6, scale: [0.5, 1.0], antialias: true}\n"
                    "- RandomHorizontalFlip: {p: 0.5}\n")
    return path


@pytest.mark.slow
def test_random_transforms_are_keyed_by_listing_index_so_an_insertion_invalidates_the_shifted_items(tmp_path, capsys):
    pytest.importorskip("torchvision")
    root = tmp_path / "data"
    image_folder(root, 6)
    spec = str(write_spec(tmp_path / "aug.yaml"))
    cache = tmp_path / "cache"
    cached_run(tmp_path, capsys, [str(root)], "cold", cache, 0, transform=spec, epochs=2)
    _, counts = cached_run(tmp_path, capsys, [str(root)], "warm", cache, 0, transform=spec, epochs=2)
    assert counts == (6, 6)
    aged(write_image(root / "d0" / "0000.png", random_rgb(np.random.default_rng(5), 8, 8)))  # sorts first
    _, counts = cached_run(tmp_path, capsys, [str(root)], "inserted", cache, 0, transform=spec, epochs=2)
    assert counts[1] == 7 and counts[0] < 6


def test_a_python_dataset_says_the_cache_does_not_apply(tmp_path, capsys):
    rng = np.random.default_rng(13)
    tiles = [{"image": rng.integers(0, 256, (3, 5, 5), dtype=np.uint8)} for _ in range(4)]
    capsys.readouterr()
    cached = api.compute(tiles, key="image", layout="CHW", workers=0, cache=tmp_path / "cache")
    notes = [line for line in capsys.readouterr().err.splitlines() if "cache:" in line]
    assert len(notes) == 1 and "not used" in notes[0] and "Python dataset" in notes[0], notes
    plain = api.compute(tiles, key="image", layout="CHW", workers=0)
    assert (cached.mean, cached.std) == (plain.mean, plain.std)


@pytest.mark.slow
def test_a_python_transform_says_the_cache_does_not_apply(tmp_path, capsys):
    root = tmp_path / "data"
    image_folder(root, 3)
    (tmp_path / "aug.py").write_text("def T(image):\n    return image.transpose(0)  # a left-right flip\n")
    capsys.readouterr()
    api.compute([str(root)], workers=0, cache=tmp_path / "cache", transform=f"{tmp_path / 'aug.py'}:T")
    notes = [line for line in capsys.readouterr().err.splitlines() if "cache:" in line]
    assert len(notes) == 1 and "not used" in notes[0] and "aug.py:T" in notes[0], notes
    assert not (tmp_path / "cache").exists()


def test_check_and_compare_reuse_the_cache_in_process(tmp_path, capsys):
    root = tmp_path / "data"
    image_folder(root, 8)
    config = api.compute([str(root)], workers=0)
    aged(write_image(root / "d1" / "late.png", random_rgb(np.random.default_rng(6), 7, 7, high=90)))
    config_path = _config(tmp_path, config)
    plain = api.check(config_path, [str(root)], workers=0)
    for attempt in ("cold", "warm"):
        capsys.readouterr()
        cached = api.check(config_path, [str(root)], workers=0, cache=tmp_path / "cache")
        assert json.dumps(cached.to_dict()) == json.dumps(plain.to_dict()), attempt
    assert reused(capsys.readouterr().err) == (9, 9)
    plain_comparison = api.compare([str(root)], workers=0, batch_sizes=(2, 4))
    for attempt in ("cold", "warm"):
        capsys.readouterr()
        comparison = api.compare([str(root)], workers=0, batch_sizes=(2, 4), cache=tmp_path / "cache")
        assert (comparison.to_csv(), comparison.table()) == (plain_comparison.to_csv(), plain_comparison.table()), attempt
    assert reused(capsys.readouterr().err) == (9, 9)


def _config(tmp_path: Path, result) -> str:
    path = tmp_path / "config.json"
    api.write(result, path)
    return str(path)


@pytest.mark.slow
def test_check_and_compare_with_the_cache_print_the_same_bytes(tmp_path):
    root = tmp_path / "data"
    image_folder(root, 8)
    config = tmp_path / "config.json"
    assert run_cli("compute", str(root), "-q", "--workers", "0", "-o", str(config)).returncode == 0
    aged(write_image(root / "d1" / "late.png", random_rgb(np.random.default_rng(6), 7, 7, high=90)))
    cache = str(tmp_path / "cache")
    plain = run_cli("check", str(root), "--against", str(config), "--workers", "0")
    for attempt in ("cold", "warm"):
        cached = run_cli("check", str(root), "--against", str(config), "--workers", "0", "--cache", cache)
        assert (cached.returncode, cached.stdout) == (plain.returncode, plain.stdout), attempt
    assert reused(cached.stderr) == (9, 9)
    plain = run_cli("compare", str(root), "--workers", "0", "--batch-size", "2,4")
    for attempt in ("cold", "warm"):  # compare keeps no histograms: its entries are its own
        cached = run_cli("compare", str(root), "--workers", "0", "--batch-size", "2,4", "--cache", cache)
        assert (cached.returncode, cached.stdout) == (plain.returncode, plain.stdout), attempt
    assert reused(cached.stderr) == (9, 9)


def test_default_location_and_no_cache(tmp_path):
    root = tmp_path / "data"
    image_folder(root, 3)
    home = Path(os.environ["CHANSTATS_CACHE_HOME"])  # the suite's stand-in for ~/.cache/chanstats/measurements
    env = dict(os.environ, CHANSTATS_CACHE="default")
    out = tmp_path / "out.json"
    run = subprocess.run([*chanstats_command(), "compute", str(root), "-q", "--workers", "0", "-o", str(out)],
                         env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and (home / "measurements.sqlite").exists(), run.stderr
    assert str(home) in run.stderr
    off = subprocess.run([*chanstats_command(), "compute", str(root), "-q", "--workers", "0", "--no-cache", "-o",
                          str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert off.returncode == 0 and "cache" not in off.stderr


def test_two_runs_sharing_a_cache_at_once(tmp_path):
    root = tmp_path / "data"
    image_folder(root, 60)
    cache = str(tmp_path / "cache")
    outs = [tmp_path / f"out{i}.json" for i in range(3)]
    runs = [subprocess.Popen([*chanstats_command(), "compute", str(root), "-q", "--workers", "1", "--cache", cache,
                              "-o", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for out in outs[:2]]
    for process in runs:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    assert run_cli("compute", str(root), "-q", "--workers", "0", "-o", str(outs[2])).returncode == 0
    assert outs[0].read_bytes() == outs[1].read_bytes() == outs[2].read_bytes()


def test_kill_9_while_the_cache_is_written_leaves_a_cache_that_gives_the_right_numbers(tmp_path):
    root = tmp_path / "data"
    image_folder(root, 200)
    cache = tmp_path / "cache"
    env = dict(os.environ, CHANSTATS_TEST_DELAY_PER_IMAGE="0.01")
    process = subprocess.Popen([*chanstats_command(), "compute", str(root), "-q", "--workers", "2", "--cache",
                                str(cache), "-o", str(tmp_path / "killed.json")], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = cache / "measurements.sqlite"
    deadline = time.time() + 60
    stored = 0
    while time.time() < deadline and process.poll() is None:
        if store.exists():
            try:
                with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=0.1)) as connection:
                    (stored,) = connection.execute("SELECT count(*) FROM entries").fetchone()
            except sqlite3.Error:
                stored = 0
            if stored:
                break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert stored and not (tmp_path / "killed.json").exists()
    after = run_cli("compute", str(root), "-q", "--workers", "2", "--cache", str(cache), "-o", str(tmp_path / "a.json"))
    assert after.returncode == 0, after.stderr
    assert 0 < reused(after.stderr)[0] < 200
    assert run_cli("compute", str(root), "-q", "--workers", "0", "-o", str(tmp_path / "b.json")).returncode == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_bad_images_are_never_cached_and_skipping_stays_identical(tmp_path, capsys):
    root = tmp_path / "data"
    image_folder(root, 5)
    aged((root / "d0" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage") and root / "d0" / "broken.png")
    cache = tmp_path / "cache"
    cached_run(tmp_path, capsys, [str(root)], "cold", cache, 0, on_error="skip")
    _, counts = cached_run(tmp_path, capsys, [str(root)], "warm", cache, 0, on_error="skip")
    assert counts == (5, 5)  # the bad image is read again (and skipped again), never reused


@pytest.mark.parametrize("percentiles", ["none", "auto"], ids=["numbers", "histograms"])
def test_rasters_of_equal_formats_from_two_containers_keep_the_first_ones_dtype(tmp_path, capsys, engine, percentiles):
    """16-bit grey PNGs and uint16 TIFFs are measured together, the first image's format
    representing them: reused entries of either kind must not change which one that is."""
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(11)
    root = tmp_path / "rasters"
    root.mkdir()
    count = 10 + engine.padding
    for i in range(count):
        pixels = rng.integers(0, 60000, (5 + i % 3, 6), dtype=np.uint16)
        path = root / f"{i:03d}.{'tif' if i % 2 else 'png'}"
        if i % 2:
            tifffile.imwrite(path, pixels)
        else:
            Image.fromarray(pixels).save(path)
        aged(path)
    cache = tmp_path / "cache"
    options = dict(mode="keep", percentiles=percentiles)
    cached_run(tmp_path, capsys, [str(root)], "cold", cache, engine.workers, **options)
    (root / "000.png").unlink()  # now a TIFF comes first, and represents the format
    _, counts = cached_run(tmp_path, capsys, [str(root)], "warm", cache, engine.workers, **options)
    assert counts == (count - 1, count - 1)


def test_images_of_different_formats_fail_with_the_same_message_from_the_cache(tmp_path, capsys):
    root = tmp_path / "data"
    image_folder(root, 4)
    aged(write_image(root / "d2" / "grey.png", np.full((5, 5), 9, dtype=np.uint8)))
    cache = tmp_path / "cache"
    messages = []
    for _ in ("plain", "cold", "warm"):
        with pytest.raises(chanstats.errors.ChanstatsError) as failure:
            api.compute([str(root)], workers=0, mode="keep", cache=cache if messages else None)
        messages.append(str(failure.value))
    assert messages[0] == messages[1] == messages[2] and "different channels" in messages[0]


def test_the_github_actions_example_restores_the_cache_that_check_uses():
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((Path(__file__).resolve().parent.parent / "examples/ci/github-actions.yml").read_text())
    steps = workflow["jobs"]["check-stats"]["steps"]
    restore = [step for step in steps if str(step.get("uses", "")).startswith("actions/cache@")]
    check = [step for step in steps if "chanstats check" in str(step.get("run", ""))]
    assert len(restore) == 1 and len(check) == 1
    assert steps.index(restore[0]) < steps.index(check[0])
    assert restore[0]["with"]["path"] == "~/.cache/chanstats/measurements"  # what --cache default means
    assert "--cache default" in check[0]["run"] and "--cache-verify hash" in check[0]["run"]


def test_files_modified_just_now_are_measured_and_not_stored(tmp_path, capsys):
    root = tmp_path / "data"
    image_folder(root, 4)
    write_image(root / "d0" / "fresh.png", random_rgb(np.random.default_rng(7), 6, 6))  # mtime: now
    capsys.readouterr()
    config_bytes(tmp_path, [str(root)], "first", cache=tmp_path / "cache", workers=0)
    err = capsys.readouterr().err
    assert "stored 4 " in err and "1 not storable" in err, err


def test_shards_measured_with_the_cache_merge_into_the_plain_result(tmp_path, capsys):
    root = tmp_path / "data"
    image_folder(root, 9)
    cache = tmp_path / "cache"
    config_bytes(tmp_path, [str(root)], "fill", cache=cache, workers=0)  # every image cached
    capsys.readouterr()
    parts = [tmp_path / f"part{k}.json" for k in (1, 2)]
    for k, part in enumerate(parts, 1):
        api.compute_shard([str(root)], (k, 2), part, workers=0, cache=cache)
    assert [reused(line) for line in capsys.readouterr().err.splitlines() if "reused" in line] == [(4, 4), (5, 5)]
    merged = tmp_path / "merged.json"
    api.write(api.merge(parts), merged)
    assert merged.read_bytes() == config_bytes(tmp_path, [str(root)], "plain", workers=0)


def test_a_bad_cache_size_is_a_usage_error(tmp_path):
    root = tmp_path / "data"
    image_folder(root, 1)
    result = run_cli("compute", str(root), "--cache", str(tmp_path / "cache"), "--cache-max-size", "banana")
    assert result.returncode == 2 and "--cache-max-size" in result.stderr and "banana" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("options", [{}, {"clip_len": 3, "epochs": 2}], ids=["every-frame", "random-clips"])
def test_videos_rerun_identical_with_the_cache(tmp_path, capsys, options):
    pytest.importorskip("av")
    root = tmp_path / "videos"
    root.mkdir()
    source = Path(__file__).resolve().parent.parent / "examples" / "video" / "clip.mp4"
    videos = [str(aged(Path(shutil.copyfile(source, root / name)))) for name in ("a.mp4", "b.mp4")]
    cache = tmp_path / "cache"
    cached_run(tmp_path, capsys, videos, "cold", cache, 0, **options)
    _, counts = cached_run(tmp_path, capsys, videos, "warm", cache, 0, **options)
    assert counts == (2, 2)
    if options:  # random clips are drawn by listing index: a video listed first shifts the others
        first = str(aged(Path(shutil.copyfile(source, root / "0.mp4"))))
        _, counts = cached_run(tmp_path, capsys, [first, *videos], "shifted", cache, 0, **options)
        assert counts == (0, 3)


@pytest.mark.slow
def test_a_transform_through_the_worker_pool_reruns_identical(tmp_path, capsys):
    """Transform runs start their workers from a clean fork server: the cached measurer travels
    pickled with each chunk and opens its own connection there."""
    pytest.importorskip("torchvision")
    root = tmp_path / "data"
    image_folder(root, 40)
    spec = str(write_spec(tmp_path / "aug.yaml"))
    cache = tmp_path / "cache"
    cached_run(tmp_path, capsys, [str(root)], "cold", cache, 2, transform=spec)
    aged(write_image(root / "d2" / "zz.png", random_rgb(np.random.default_rng(12), 8, 8)))  # sorts last: no shift
    _, counts = cached_run(tmp_path, capsys, [str(root)], "warm", cache, 2, transform=spec)
    assert counts == (40, 41)


@pytest.mark.parametrize("pool_start, pooled", [(-1.0, True), (10.0, False)])
def test_a_warm_run_measured_here_or_by_workers_gives_the_same_bytes(tmp_path, capsys, monkeypatch, pool_start, pooled):
    # A warm run with little to measure skips the worker pool (see MeasurementCache.few_to_measure);
    # either way, a replaced image is measured and the config is the plain run's.
    from chanstats.scale import cache as cache_module
    from chanstats.scale import engine as engine_module

    root = tmp_path / "data"
    paths = image_folder(root, 60)
    cache = tmp_path / "cache"
    cached_run(tmp_path, capsys, [str(root)], "cold", cache, 2)
    aged(write_image(paths[7], random_rgb(np.random.default_rng(9), 9, 9)), 7200)
    monkeypatch.setattr(cache_module, "POOL_START_SECONDS", pool_start)
    started = []
    real = engine_module._parallel_chunks
    monkeypatch.setattr(engine_module, "_parallel_chunks", lambda *args, **kwargs: started.append(1) or real(*args, **kwargs))
    _, counts = cached_run(tmp_path, capsys, [str(root)], "warm", cache, 2)
    assert counts == (59, 60)
    assert len(started) == (2 if pooled else 1)  # the plain run (60 images, 2 workers) starts workers


SCHEMA_1 = (  # the tables chanstats 0.1's first cache wrote (entries keyed by a BLOB primary key)
    "CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE entries (key BLOB PRIMARY KEY, value BLOB NOT NULL, checksum BLOB NOT NULL, "
    "size INTEGER NOT NULL, used INTEGER NOT NULL)",
    "CREATE TABLE formats (tag BLOB PRIMARY KEY, value BLOB NOT NULL)",
    "INSERT INTO meta VALUES ('schema', '1')",
    "INSERT INTO entries VALUES (x'00', x'43', x'00', 10, 0)",
)


def test_a_cache_of_an_older_chanstats_is_emptied_with_one_line_then_filled(tmp_path, capsys):
    root = tmp_path / "data"
    image_folder(root, 6)
    cache = tmp_path / "cache"
    cache.mkdir()
    with closing(sqlite3.connect(cache / "measurements.sqlite")) as connection:
        for statement in SCHEMA_1:
            connection.execute(statement)
        connection.commit()
    capsys.readouterr()
    upgraded = config_bytes(tmp_path, [str(root)], "upgraded", cache=cache, workers=0)
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "cache:" in line and "reused" not in line]
    assert len(notes) == 1 and "older chanstats" in notes[0] and "emptied" in notes[0], err
    assert reused(err) == (0, 6)
    assert upgraded == config_bytes(tmp_path, [str(root)], "plain", workers=0)
    _, counts = cached_run(tmp_path, capsys, [str(root)], "again", cache, 0)
    assert counts == (6, 6)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_listing_kept_by_an_earlier_run_is_not_trusted_for_modification_times(tmp_path, capsys, monkeypatch, workers):
    # A run lists with one stat per file and the cache keys files by those (size, mtime), with no
    # second stat. A listing kept in --workdir by an earlier run is reused while the folders are
    # unchanged, which an image rewritten in place (same name, same size) leaves them: its times
    # are out of date, so the cache must stat the files itself and measure the rewritten one.
    from chanstats.sources import listing as listing_module

    root = tmp_path / "data"
    rng = np.random.default_rng(4)
    paths = [aged(write_image(root / f"{i:02d}.bmp", random_rgb(rng, 8, 8))) for i in range(30)]
    cache, workdir = tmp_path / "cache", tmp_path / "work"
    first = config_bytes(tmp_path, [str(root)], "first", cache=cache, workers=workers, workdir=workdir)
    folder_times = os.stat(root).st_atime_ns, os.stat(root).st_mtime_ns
    size = paths[11].stat().st_size
    write_image(paths[11], random_rgb(rng, 8, 8))  # rewritten in place: an uncompressed BMP keeps its size
    aged(paths[11], 7200)
    os.utime(root, ns=folder_times)
    assert paths[11].stat().st_size == size
    walks = []
    real_walk = listing_module.walk
    monkeypatch.setattr(listing_module, "walk", lambda *args: walks.append(1) or real_walk(*args))
    capsys.readouterr()
    second = config_bytes(tmp_path, [str(root)], "second", cache=cache, workers=workers, workdir=workdir)
    assert not walks, "the kept listing was not reused: the test would prove nothing"
    assert reused(capsys.readouterr().err) == (29, 30)
    assert second == config_bytes(tmp_path, [str(root)], "plain", workers=workers) != first


def test_an_image_rewritten_between_listing_and_measuring_is_not_stored_under_the_listed_time(tmp_path, capsys, monkeypatch):
    # The listing's (size, mtime) keys an image; one rewritten after the listing is measured as it
    # now is, and that measurement must not be stored under the key of the listed content, which a
    # later run of the listed content (its mtime put back) would reuse.
    from chanstats import api as api_module

    root = tmp_path / "data"
    paths = image_folder(root, 8)
    cache = tmp_path / "cache"
    listed_times = paths[3].stat().st_atime_ns, paths[3].stat().st_mtime_ns
    listed_bytes = paths[3].read_bytes()
    real_list = api_module.list_shared

    def list_then_rewrite(*args, **kwargs):
        listing = real_list(*args, **kwargs)
        write_image(paths[3], random_rgb(np.random.default_rng(21), 9, 9))
        aged(paths[3], 7200)
        return listing

    monkeypatch.setattr(api_module, "list_shared", list_then_rewrite)
    config_bytes(tmp_path, [str(root)], "raced", cache=cache, workers=0)
    monkeypatch.setattr(api_module, "list_shared", real_list)
    paths[3].write_bytes(listed_bytes)
    os.utime(paths[3], ns=listed_times)
    capsys.readouterr()
    _, counts = cached_run(tmp_path, capsys, [str(root)], "restored", cache, 0)
    assert counts == (7, 8)

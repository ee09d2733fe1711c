"""``compute --shard K/N --partial`` + ``chanstats merge`` give the single-process config, byte for byte."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from chanstats.cli import cli
from chanstats.scale import state_file
from chanstats.scale.state import shard_bounds
from chanstats.scale.state_file import read_partial
from .helpers.cli import run
from .helpers.files import make_dataset
from .helpers.state_files import reseal

# Small batches so the BatchNorm simulation spans many batches: a wrong global order would show.
OPTIONS = ["--batch-size", "3", "--workers", "0", "-q"]


def invoke(args: list[str]):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    data = make_dataset(root, count=13)
    single = root / "single.json"
    run(["compute", str(data), "-o", str(single), *OPTIONS], cwd=root)
    return root, data, single.read_bytes()


def test_shard_bounds_are_contiguous_and_balanced():
    for total in range(0, 30):
        for n in range(1, 7):
            bounds = [shard_bounds(total, k, n) for k in range(1, n + 1)]
            assert bounds[0][0] == 0 and bounds[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_merge_is_byte_identical_to_single_run(dataset, n):
    root, data, single = dataset
    parts = []
    for k in range(1, n + 1):
        part = root / f"n{n}-part{k}.json"
        result = invoke(["compute", str(data), "--shard", f"{k}/{n}", "--partial", str(part), *OPTIONS])
        assert result.exit_code == 0, result.output
        parts.append(str(part))
    random.Random(n).shuffle(parts)  # the order on the command line must not matter
    merged = root / f"merged-{n}.json"
    result = invoke(["merge", *parts, "-o", str(merged), "-q"])
    assert result.exit_code == 0, result.output
    assert merged.read_bytes() == single
    assert invoke(["merge", *reversed(parts), "-q"]).stdout_bytes == single


def test_merge_through_the_installed_command(dataset):
    root, data, single = dataset
    for k in (1, 2):
        run(["compute", str(data), "--shard", f"{k}/2", "--partial", f"cmd-{k}.json", *OPTIONS], cwd=root)
    out = run(["merge", "cmd-2.json", "cmd-1.json", "-q"], cwd=root).stdout
    assert out.encode() == single


def test_partial_state_round_trips_losslessly(dataset):
    root, data, _ = dataset
    part = root / "roundtrip.json"
    invoke(["compute", str(data), "--shard", "2/3", "--partial", str(part), *OPTIONS])
    state = read_partial(str(part))
    assert state_file.dumps(state_file.loads(state_file.dumps(state), "again")) == part.read_text()
    assert (state.start, state.stop, state.done, state.shard) == (4, 8, 8, (2, 3))
    assert [r.index for r in state.images] == [4, 5, 6, 7]
    header = json.loads(part.read_text())
    total = header["formats"][0]["integer"]
    assert all(isinstance(v, str) for v in total["sums"] + total["sumsq"])  # exact big integers


def test_more_shards_than_images_and_skipped_files(tmp_path, engine):
    data = make_dataset(tmp_path, count=3, corrupt=2)
    engine.pad(data)
    options = ["--on-error", "skip", "--batch-size", "2", "-q", *engine.options]
    single = invoke(["compute", str(data), *options]).stdout_bytes
    # In-process: 5 files in 7 shards, so some slices are empty; through the pool: 2 shards of
    # more than one chunk each.
    count = 2 if engine.workers else 7
    parts = []
    for k in range(1, count + 1):
        part = tmp_path / f"p{k}.json"
        assert invoke(["compute", str(data), "--shard", f"{k}/{count}", "--partial", str(part), *options]).exit_code == 0
        parts.append(str(part))
    merged = invoke(["merge", *parts[::-1], "-q"])
    assert merged.exit_code == 0, merged.output
    assert merged.stdout_bytes == single
    assert len(json.loads(single)["skipped"]) == 2


def test_shard_with_bad_file_fails_fast_under_on_error_fail(tmp_path, engine):
    data = make_dataset(tmp_path, count=3, corrupt=1)
    engine.pad(data)
    result = invoke(["compute", str(data), "--shard", "1/1", "--partial", str(tmp_path / "p.json"), "-q", *engine.options])
    assert result.exit_code == 2
    assert "bad0.png: corrupt or truncated" in result.output
    assert not (tmp_path / "p.json").exists()


# -- refusals --------------------------------------------------------------------------------


def shard_files(root, data, n, extra=(), prefix="r"):
    files = []
    for k in range(1, n + 1):
        part = root / f"{prefix}{k}of{n}.json"
        result = invoke(["compute", str(data), "--shard", f"{k}/{n}", "--partial", str(part), *OPTIONS, *extra])
        assert result.exit_code == 0, result.output
        files.append(str(part))
    return files


def test_merge_refuses_different_options(dataset):
    root, data, _ = dataset
    a = shard_files(root, data, 2)
    b = shard_files(root, data, 2, ["--seed", "5"], prefix="seed5-")
    result = invoke(["merge", a[0], b[1]])
    assert result.exit_code == 2
    assert a[0] in result.output and b[1] in result.output
    assert "different options" in result.output and "seed: 0 vs 5" in result.output


def test_merge_refuses_overlapping_and_missing_slices(dataset):
    root, data, _ = dataset
    halves = shard_files(root, data, 2)
    thirds = shard_files(root, data, 3)
    overlap = invoke(["merge", halves[0], thirds[1], thirds[2]])
    assert overlap.exit_code == 2
    assert "overlap" in overlap.output and halves[0] in overlap.output and thirds[1] in overlap.output
    twice = invoke(["merge", halves[0], halves[0], halves[1]])
    assert twice.exit_code == 2 and "overlap" in twice.output
    missing = invoke(["merge", thirds[0], thirds[2]])
    assert missing.exit_code == 2
    assert "no partial state covers images 4..7 of 13 (shard 2/3?)" in missing.output
    tail = invoke(["merge", thirds[0], thirds[1]])
    assert tail.exit_code == 2 and "images 8..12" in tail.output


def test_merge_refuses_a_changed_listing(tmp_path):
    data = make_dataset(tmp_path, count=6)
    first = shard_files(tmp_path, data, 2, prefix="before")[0]
    (data / "img001.png").unlink()  # the dataset changes between the shard runs
    second = shard_files(tmp_path, data, 2, prefix="after")[1]
    result = invoke(["merge", first, second])
    assert result.exit_code == 2
    assert "different file listings" in result.output and first in result.output and second in result.output


def test_merge_refuses_wrong_version_and_non_partials(dataset, tmp_path):
    root, data, single = dataset
    part = shard_files(root, data, 1)[0]
    old = tmp_path / "old.json"
    # a newer chanstats's partial: a format this one does not know, with a matching digest
    old.write_text(reseal(open(part).read().replace('"partial_version": 4', '"partial_version": 99', 1)))
    result = invoke(["merge", str(old)])
    assert result.exit_code == 2 and str(old) in result.output and "version 99" in result.output
    config = tmp_path / "config.json"
    config.write_bytes(single)
    result = invoke(["merge", str(config)])
    assert result.exit_code == 2 and "not a chanstats partial state" in result.output


def test_shard_needs_partial_and_partial_excludes_output(dataset):
    _, data, _ = dataset
    assert invoke(["compute", str(data), "--shard", "1/2"]).exit_code == 2
    assert invoke(["compute", str(data), "--shard", "3/2", "--partial", "x.json"]).exit_code == 2
    assert invoke(["compute", str(data), "--partial", "x.json", "-o", "y.json"]).exit_code == 2


@pytest.mark.parametrize("spec", ["[RandomHorizontalFlip, {RandomCrop: 4}]", "[{RandomCrop: 4}, ToImage, {ToDtype: {dtype: float32, scale: true}}]"])
def test_merge_with_random_transform_and_epochs_is_byte_identical(tmp_path, spec):
    """Seeding by global index and epoch-major rows survive sharding, on both exact paths."""
    data = make_dataset(tmp_path, count=9)
    options = ["--transform", spec, "--epochs", "2", "--listing", *OPTIONS]
    single = tmp_path / "single.json"
    assert invoke(["compute", str(data), "-o", str(single), *options]).exit_code == 0
    parts = [str(tmp_path / f"part{k}.json") for k in (1, 2, 3)]
    for k, part in enumerate(parts, start=1):
        assert invoke(["compute", str(data), "--shard", f"{k}/3", "--partial", part, *options]).exit_code == 0
    merged = tmp_path / "merged.json"
    assert invoke(["merge", *parts, "-o", str(merged), "-q"]).exit_code == 0
    assert merged.read_bytes() == single.read_bytes()
    config = json.loads(single.read_text())
    assert config["count"]["samples"] == 18 and "listing" in config

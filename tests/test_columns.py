"""Per-image state as column files: partial states in both formats, checkpoints that append to
their columns, damaged column files, and the run directory (``--workdir``) cleaned up after
success, failure and Ctrl-C. Through the installed command and the worker pool."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess

import pytest

from chanstats.scale.checkpoint import TEST_DELAY_ENV
from chanstats.scale.state_file import JSON_LIMIT, choose_format
from chanstats.sources.base import ImageSource, Listing
from chanstats.errors import ChanstatsError

from .helpers.cli import chanstats_command, run
from .helpers.files import make_dataset
from .test_checkpoint import start_and_kill

POOL = ["--workers", "2", "--batch-size", "8", "--on-error", "skip", "-q"]
IMAGES = 46  # more than one chunk: the engine runs in-process up to 16 images


@pytest.fixture(scope="module")
def pool_dataset(tmp_path_factory):
    """46 images and 2 bad files, the single-process config and per-image CSV as references."""
    root = tmp_path_factory.mktemp("columns")
    make_dataset(root, count=IMAGES, corrupt=2)
    run(["compute", "data", "-o", "single.json", "--per-image", "single.csv", "--workers", "0", "--batch-size", "8",
         "--on-error", "skip", "-q"], cwd=root)
    summary = run(["compute", "data", "-o", "summary.json", "--workers", "0", "--batch-size", "8", "--on-error", "skip"],
                  cwd=root)
    (root / "single.txt").write_text(summary.stderr.replace("summary.json", "OUT"))
    return root


def clean_env(tmp_path) -> dict[str, str]:
    """A private TMPDIR, so that a folder left behind is seen."""
    temporary = tmp_path / "tmpdir"
    temporary.mkdir(exist_ok=True)
    return {"TMPDIR": str(temporary)}


def leftovers(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "tmpdir").iterdir() if p.name.startswith("chanstats"))


@pytest.mark.parametrize("formats", [pytest.param(("columns", "columns", "columns"), marks=pytest.mark.slow),
                                     ("columns", "json", "columns"),
                                     pytest.param(("json", "json", "json"), marks=pytest.mark.slow)])
def test_partials_in_either_format_and_mixed_merge_byte_identical(pool_dataset, tmp_path, formats):
    env = clean_env(tmp_path)
    parts = []
    for k, fmt in enumerate(formats, start=1):
        part = tmp_path / f"part{k}.json"
        run(["compute", "data", "--shard", f"{k}/3", "--partial", str(part), "--partial-format", fmt,
             *POOL], cwd=pool_dataset, env=env)
        assert (tmp_path / f"part{k}.json.columns").is_dir() == (fmt == "columns")
        header = json.loads(part.read_text())
        assert header["partial_version"] == (5 if fmt == "columns" else 4)
        parts.append(str(part))
    merged = tmp_path / "merged.json"
    result = run(["merge", *reversed(parts), "-o", str(merged)], cwd=pool_dataset, env=env)
    assert merged.read_bytes() == (pool_dataset / "single.json").read_bytes()
    # the atypical-image summary names images stored with the partials
    assert result.stderr.replace(str(merged), "OUT") == (pool_dataset / "single.txt").read_text()
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("formats", [("json", "columns")])
def test_merge_per_image_is_byte_identical_to_compute_per_image(pool_dataset, tmp_path, formats):
    # two shards of 23 images: each goes through the worker pool; the rows come from the partials
    parts = []
    for k, fmt in enumerate(formats, start=1):
        part = tmp_path / f"part{k}.json"
        run(["compute", "data", "--shard", f"{k}/2", "--partial", str(part), "--partial-format", fmt, *POOL],
            cwd=pool_dataset)
        parts.append(str(part))
    run(["merge", *parts, "-o", str(tmp_path / "merged.json"), "--per-image", str(tmp_path / "merged.csv"), "-q"],
        cwd=pool_dataset)
    assert (tmp_path / "merged.csv").read_bytes() == (pool_dataset / "single.csv").read_bytes()
    assert (tmp_path / "merged.json").read_bytes() == (pool_dataset / "single.json").read_bytes()


def test_per_image_with_partial_is_refused_pointing_at_merge(pool_dataset, tmp_path):
    result = run(["compute", "data", "--shard", "1/2", "--partial", str(tmp_path / "p.json"), "--per-image",
                  str(tmp_path / "p.csv"), *POOL], cwd=pool_dataset, check=False)
    assert result.returncode == 2 and "merge PARTS... --per-image FILE.csv" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "p.json").exists() and not (tmp_path / "p.csv").exists()


def test_a_column_partial_is_small_however_many_images(pool_dataset, tmp_path):
    part = tmp_path / "part.json"
    run(["compute", "data", "--shard", "1/1", "--partial", str(part), "--partial-format", "columns", *POOL],
        cwd=pool_dataset)
    header = json.loads(part.read_text())
    assert header["columns"]["lengths"]["index"] == IMAGES and len(header["bad"]) == 2
    assert len(part.read_bytes()) < 8000  # options, totals, bad images: no per-image record
    rows = (tmp_path / "part.json.columns" / "rows.col").read_bytes()
    assert len(rows) == IMAGES * 7 * 8  # RGB: count, 3 means, 3 M2s per image, float64


def test_auto_format_rule():
    files = Listing(ImageSource("/d", f"{i}.png", 1) for i in range(3))
    assert choose_format("auto", files, JSON_LIMIT) == "json"
    assert choose_format("auto", files, JSON_LIMIT + 1) == "columns"
    assert choose_format("json", files, JSON_LIMIT + 1) == "json"
    items = [ImageSource("/d", "0.png", 1)]  # not a listing of files: a dataset's items
    assert choose_format("auto", items, JSON_LIMIT + 1) == "json"
    with pytest.raises(ChanstatsError, match="--partial-format json"):
        choose_format("columns", items, 5)


@pytest.mark.parametrize("damage", ["truncate", "missing"])
def test_a_damaged_column_file_is_one_line_exit_2(pool_dataset, tmp_path, damage):
    parts = [tmp_path / f"p{k}.json" for k in (1, 2)]
    for k, part in enumerate(parts, start=1):
        run(["compute", "data", "--shard", f"{k}/2", "--partial", str(part), "--partial-format", "columns", *POOL],
            cwd=pool_dataset)
    rows = tmp_path / "p2.json.columns" / "rows.col"
    if damage == "truncate":
        rows.write_bytes(rows.read_bytes()[:-13])
    else:
        rows.unlink()
    result = run(["merge", *map(str, parts), "-o", str(tmp_path / "m.json")], cwd=pool_dataset, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(rows) in lines[0], result.stderr
    assert ("damaged column file" if damage == "truncate" else "cannot read column file") in lines[0]
    assert not (tmp_path / "m.json").exists()


def test_a_header_without_its_column_folder_is_named(pool_dataset, tmp_path):
    part = tmp_path / "p.json"
    run(["compute", "data", "--shard", "1/1", "--partial", str(part), "--partial-format", "columns", *POOL],
        cwd=pool_dataset)
    os.rename(tmp_path / "p.json.columns", tmp_path / "elsewhere")
    result = run(["merge", str(part)], cwd=pool_dataset, check=False)
    assert result.returncode == 2 and "column files are missing" in result.stderr and str(part) in result.stderr


def test_kill_at_random_points_then_resume_is_byte_identical(pool_dataset, tmp_path):
    """kill -9 twice at random points, bytes appended after the last save included; the resumed
    run writes the uninterrupted run's config and per-image CSV."""
    root = tmp_path
    os.symlink(pool_dataset / "data", root / "data")
    args = ["compute", "data", "-o", "out.json", "--per-image", "out.csv", "--checkpoint", "ckpt.json",
            "--checkpoint-every", "1", *POOL]
    rng = random.Random(16)
    held = 0
    for _ in range(2):
        held = start_and_kill(root, args, at_least=held + rng.randint(1, 12), delay=0.03)
        assert held < IMAGES + 2
        header = json.loads((root / "ckpt.json").read_text())
        rows = root / "ckpt.json.columns" / "rows.col"
        assert rows.stat().st_size >= header["columns"]["lengths"]["rows"] * 8
        with open(rows, "ab") as stream:  # what a run appends between two saves, then dies
            stream.write(b"\x7f" * 61)
    run(args, cwd=root)
    assert (root / "out.json").read_bytes() == (pool_dataset / "single.json").read_bytes()
    assert (root / "out.csv").read_bytes() == (pool_dataset / "single.csv").read_bytes()
    assert not (root / "ckpt.json").exists() and not (root / "ckpt.json.columns").exists()


def test_a_checkpoint_whose_columns_are_short_is_refused_by_name(pool_dataset, tmp_path):
    os.symlink(pool_dataset / "data", tmp_path / "data")
    args = ["compute", "data", "-o", "out.json", "--checkpoint", "ckpt.json", "--checkpoint-every", "1", *POOL]
    start_and_kill(tmp_path, args, at_least=20, delay=0.03)
    width = tmp_path / "ckpt.json.columns" / "width.col"
    width.write_bytes(width.read_bytes()[:16])
    result = run(args, cwd=tmp_path, check=False)
    assert result.returncode == 2 and str(width.name) in result.stderr and "damaged column file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert run([*args, "--restart"], cwd=tmp_path).returncode == 0
    assert (tmp_path / "out.json").read_bytes() == (pool_dataset / "single.json").read_bytes()


def test_columns_go_to_the_run_directory(pool_dataset, tmp_path):
    from chanstats.api import finalize, measure, plan
    from chanstats.options import RunOptions

    run_plan = plan(str(pool_dataset / "data"), RunOptions(on_error="skip", batch_size=8))
    state = measure(run_plan, workers=2, directory=str(tmp_path / "run"))
    files = sorted(os.listdir(tmp_path / "run" / "columns"))
    assert "rows.col" in files and "index.col" in files
    state.images.sync()
    assert os.path.getsize(tmp_path / "run" / "columns" / "index.col") == IMAGES * 8
    assert finalize(state).images == IMAGES


def kept_listings(workdir):
    return [p for p in workdir.iterdir() if p.name.startswith("listing-")]


def run_folders(workdir):
    """What a run left in its work directory besides the listing it keeps for reuse."""
    return [p for p in workdir.iterdir() if not p.name.startswith("listing-")]


def test_workdir_is_used_and_nothing_is_left_after_success_or_failure(pool_dataset, tmp_path):
    env = clean_env(tmp_path)
    workdir = tmp_path / "work"
    run(["compute", "data", "-o", str(tmp_path / "out.json"), "--workdir", str(workdir), *POOL], cwd=pool_dataset, env=env)
    # the listing stays there for later runs and shards on the same inputs; the run's columns do not
    assert workdir.is_dir() and run_folders(workdir) == [] and kept_listings(workdir)
    assert leftovers(tmp_path) == []
    # a failure (bad images under --on-error fail) cleans up too
    failed = run(["compute", "data", "-o", str(tmp_path / "fail.json"), "--workers", "2"], cwd=pool_dataset, env=env,
                 check=False)
    assert failed.returncode == 2 and leftovers(tmp_path) == []
    # a workdir that cannot be made is a one-line error naming it
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = run(["compute", "data", "--workdir", str(blocker / "sub"), *POOL], cwd=pool_dataset, check=False)
    assert bad.returncode == 2 and f"--workdir {blocker / 'sub'}" in bad.stderr


@pytest.mark.slow
def test_ctrl_c_removes_the_run_directory(pool_dataset, tmp_path):
    from .test_worker_errors import SLOW_TRANSFORM, wait_for

    (tmp_path / "slow.py").write_text(SLOW_TRANSFORM)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = dict(os.environ, **clean_env(tmp_path), CHANSTATS_TEST_MARKS=str(marks))
    workdir = tmp_path / "work"
    process = subprocess.Popen(
        [*chanstats_command(), "compute", str(pool_dataset / "data"), "-o", str(tmp_path / "out.json"), "--workdir",
         str(workdir), "--transform", f"{tmp_path / 'slow.py'}:slow", *POOL],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(marks.iterdir()), "the workers to start measuring", process)
    assert [p.name[:14] for p in run_folders(workdir)] == ["chanstats-run-"]  # the run's folder, while it runs
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert run_folders(workdir) == [] and leftovers(tmp_path) == []


def test_a_checkpointed_run_keeps_its_columns_beside_the_checkpoint_only(pool_dataset, tmp_path, monkeypatch):
    """Its columns outlive a kill -9 by design; no run directory is made that one would leave behind."""
    monkeypatch.setenv("TMPDIR", clean_env(tmp_path)["TMPDIR"])
    workdir = tmp_path / "work"
    os.symlink(pool_dataset / "data", tmp_path / "data")
    args = ["compute", "data", "-o", "out.json", "--workdir", str(workdir), "--checkpoint", "ckpt.json",
            "--checkpoint-every", "1", *POOL]
    start_and_kill(tmp_path, args, at_least=10, delay=0.03)
    assert (tmp_path / "ckpt.json.columns" / "rows.col").exists()
    assert not workdir.exists() or run_folders(workdir) == []
    assert leftovers(tmp_path) == []

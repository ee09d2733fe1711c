"""Damaged or edited partial states and checkpoints are refused by name with exit 2, never merged
or resumed: bytes flipped, cut or appended in a JSON partial, a column header or its column
files, and edits that keep the digest right (fewer images, a negative count, swapped shards).
Partials and checkpoints of the previous format are refused with what to rerun. Through the
installed command; the parts and the checkpoint come from the worker pool (more than one chunk)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .helpers.cli import run
from .helpers.files import make_dataset
from .helpers.state_files import copy_state, edit_json, flip_byte
from .test_checkpoint import start_and_kill

POOL = ["--workers", "2", "--batch-size", "8", "--on-error", "skip", "-q"]
IMAGES = 46
OLDER = Path(__file__).parent / "data" / "older-states"


@pytest.fixture(scope="module")
def states(tmp_path_factory):
    """Shard 1/2 as a JSON partial, shard 2/2 as columns, a checkpoint of a run killed midway,
    and the single run's config and CSV."""
    root = tmp_path_factory.mktemp("integrity")
    make_dataset(root, count=IMAGES, corrupt=2)
    run(["compute", "data", "-o", "single.json", "--per-image", "single.csv", *POOL], cwd=root)
    run(["compute", "data", "--shard", "1/2", "--partial", "p1.json", "--partial-format", "json", *POOL], cwd=root)
    run(["compute", "data", "--shard", "2/2", "--partial", "p2.json", "--partial-format", "columns", *POOL], cwd=root)
    args = ["compute", "data", "-o", "out.json", "--checkpoint", "ckpt.json", "--checkpoint-every", "1", *POOL]
    start_and_kill(root, args, at_least=20, delay=0.03)
    saved = root / "saved"
    copy_state(root / "ckpt.json", saved)
    shutil.rmtree(root / "ckpt.json.columns")
    (root / "ckpt.json").unlink()
    return root


def merge_refuses(root: Path, work: Path, named: Path) -> str:
    """Merging the (edited) parts in ``work`` exits 2 with one line naming ``named``, writing nothing."""
    out = work / "merged.json"
    result = run(["merge", str(work / "p1.json"), str(work / "p2.json"), "-o", str(out), "--per-image",
                  str(work / "merged.csv")], cwd=root, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr}"
    assert len(lines) == 1 and str(named) in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not (work / "merged.csv").exists()
    return lines[0]


def parts_in(states: Path, work: Path) -> None:
    for name in ("p1.json", "p2.json"):
        copy_state(states / name, work)


def text_edit(old: str, new: str):
    def edit(path: Path) -> None:
        text = path.read_text()
        assert old in text, (old, text[:300])
        path.write_text(text.replace(old, new, 1))
    return edit


def cut(count: int):
    return lambda path: path.write_bytes(path.read_bytes()[:-count])


def append(data: bytes):
    return lambda path: path.write_bytes(path.read_bytes() + data)


def flip(position: int):
    return lambda path: flip_byte(path, position)


def resealed(change):
    return lambda path: edit_json(path, change)


def fewer_done(data):
    data["done"] -= 3


def negative_pixels(data):
    data["formats"][0]["integer"]["pixels"] = "-" + data["formats"][0]["integer"]["pixels"]


def swap_shard(data):
    data["shard"] = [3 - data["shard"][0], data["shard"][1]]


def other_shard_and_slice(data):
    # claims to be the other half, consistently: its images are then outside its slice
    k, n = data["shard"]
    data["shard"] = [3 - k, n]
    total = data["listing_size"]
    data["slice"] = [(2 - k) * total // n, (3 - k) * total // n]
    data["done"] = data["slice"][1]


def drop_image(data):
    data["images"].pop()


def drop_bad(data):
    data["bad"].pop()


def bigger_listing(data):
    data["listing_size"] += 1


def negative_length(data):
    data["columns"]["lengths"]["index"] = -1


def shorter_columns(data):
    for name in data["columns"]["lengths"]:
        if name not in ("rows", "floats"):
            data["columns"]["lengths"][name] -= 1


def fewer_sources(data):
    data["columns"]["sources"]["count"] -= 1


JSON_EDITS = {
    "flip a byte": flip(1500),
    "cut the end": cut(40),
    "append": append(b"{}\n"),
    "fewer done, digest unchanged": text_edit('"done": 24', '"done": 20'),
    "negative count, digest unchanged": text_edit('"pixels": "', '"pixels": "-'),
    "swap shard, digest unchanged": text_edit('"shard": [1, 2]', '"shard": [2, 2]'),
    "fewer done": resealed(fewer_done),
    "negative count": resealed(negative_pixels),
    "swap shard": resealed(swap_shard),
    "other shard and slice": resealed(other_shard_and_slice),
    "one image less": resealed(drop_image),
    "one bad image less": resealed(drop_bad),
    "bigger listing": resealed(bigger_listing),
}
HEADER_EDITS = {
    "flip a byte": flip(300),
    "cut the end": cut(10),
    "append": append(b" "),
    "fewer done, digest unchanged": text_edit('"done": 48', '"done": 45'),
    "fewer done": resealed(fewer_done),
    "negative count": resealed(negative_pixels),
    "swap shard": resealed(swap_shard),
    "other shard and slice": resealed(other_shard_and_slice),
    "negative column length": resealed(negative_length),
    "shorter columns": resealed(shorter_columns),
    "fewer sources": resealed(fewer_sources),
}
COLUMN_EDITS = {
    "rows.col: cut": ("rows.col", cut(8)),
    "rows.col: append": ("rows.col", append(b"\0" * 8)),
    "rows.col: flip a byte": ("rows.col", flip(100)),
    "index.col: flip a byte": ("index.col", flip(0)),
    "format_id.col: flip a byte": ("format_id.col", flip(-1)),
    "names.bin: flip a byte": ("names.bin", flip(5)),
    "source_size.col: cut": ("source_size.col", cut(3)),
}
FAST = {"flip a byte", "negative count", "shorter columns", "rows.col: flip a byte", "swap shard"}


def cases(edits):
    return [pytest.param(name, marks=() if name in FAST else pytest.mark.slow) for name in edits]


@pytest.mark.parametrize("edit", cases(JSON_EDITS))
def test_an_edited_json_partial_is_refused_by_name(states, tmp_path, edit):
    parts_in(states, tmp_path)
    JSON_EDITS[edit](tmp_path / "p1.json")
    line = merge_refuses(states, tmp_path, tmp_path / "p1.json")
    assert "damaged" in line or "overlap" in line or "different file listings" in line


@pytest.mark.parametrize("edit", cases(HEADER_EDITS))
def test_an_edited_column_header_is_refused_by_name(states, tmp_path, edit):
    parts_in(states, tmp_path)
    HEADER_EDITS[edit](tmp_path / "p2.json")
    line = merge_refuses(states, tmp_path, tmp_path / "p2.json")
    assert "damaged" in line or "overlap" in line or "different file listings" in line


@pytest.mark.parametrize("edit", cases(COLUMN_EDITS))
def test_a_damaged_column_file_is_refused_by_name(states, tmp_path, edit):
    parts_in(states, tmp_path)
    name, change = COLUMN_EDITS[edit]
    target = tmp_path / "p2.json.columns" / name
    change(target)
    assert "damaged column file" in merge_refuses(states, tmp_path, target)


def test_swapped_column_files_are_refused(states, tmp_path):
    # same lengths, other content: only the checksums tell
    parts_in(states, tmp_path)
    columns = tmp_path / "p2.json.columns"
    os.rename(columns / "width.col", columns / "tmp")
    os.rename(columns / "height.col", columns / "width.col")
    os.rename(columns / "tmp", columns / "height.col")
    line = merge_refuses(states, tmp_path, columns / "width.col")
    assert "checksum mismatch" in line


def test_the_untouched_parts_still_merge_to_the_single_run(states, tmp_path):
    parts_in(states, tmp_path)
    run(["merge", str(tmp_path / "p2.json"), str(tmp_path / "p1.json"), "-o", str(tmp_path / "m.json"), "-q"],
        cwd=states)
    assert (tmp_path / "m.json").read_bytes() == (states / "single.json").read_bytes()


CHECKPOINT_EDITS = {
    "header: flip a byte": ("ckpt.json", flip(200)),
    "header: cut the end": ("ckpt.json", cut(5)),
    "header: fewer done": ("ckpt.json", resealed(fewer_done)),
    "header: negative count": ("ckpt.json", resealed(negative_pixels)),
    "header: swap shard": ("ckpt.json", resealed(swap_shard)),
    "header: shorter columns": ("ckpt.json", resealed(shorter_columns)),
    "rows.col: flip a byte": ("ckpt.json.columns/rows.col", flip(0)),
    "width.col: cut": ("ckpt.json.columns/width.col", cut(16)),
}
FAST_CHECKPOINT = {"header: negative count", "rows.col: flip a byte"}


@pytest.mark.parametrize("edit", [pytest.param(name, marks=() if name in FAST_CHECKPOINT else pytest.mark.slow)
                                  for name in CHECKPOINT_EDITS])
def test_an_edited_checkpoint_is_refused_by_name_and_restart_recovers(states, tmp_path, edit):
    os.symlink(states / "data", tmp_path / "data")
    copy_state(states / "saved" / "ckpt.json", tmp_path)
    name, change = CHECKPOINT_EDITS[edit]
    change(tmp_path / name)
    args = ["compute", "data", "-o", "out.json", "--per-image", "out.csv", "--checkpoint", "ckpt.json", *POOL]
    result = run(args, cwd=tmp_path, check=False)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and name in lines[0], result.stderr
    assert "damaged" in lines[0] and "--restart" in lines[0]
    assert not (tmp_path / "out.json").exists()
    run([*args, "--restart"], cwd=tmp_path)
    assert (tmp_path / "out.json").read_bytes() == (states / "single.json").read_bytes()
    assert (tmp_path / "out.csv").read_bytes() == (states / "single.csv").read_bytes()


@pytest.mark.parametrize("older", ["partial-v2.json", "columns-v3.json"])
def test_partials_of_the_previous_format_are_refused_with_what_to_rerun(tmp_path, older):
    # written by the chanstats before integrity checks (kept in tests/data)
    result = run(["merge", str(OLDER / older)], cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"Error: {OLDER / older}: written by an older chanstats: rerun the shard that wrote it"


def test_a_checkpoint_of_the_previous_format_is_refused_with_restart(states, tmp_path):
    os.symlink(states / "data", tmp_path / "data")
    shutil.copyfile(OLDER / "columns-v3.json", tmp_path / "ckpt.json")
    args = ["compute", "data", "-o", "out.json", "--checkpoint", "ckpt.json", *POOL]
    result = run(args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert "checkpoint ckpt.json: written by an older chanstats: rerun with --restart" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    run([*args, "--restart"], cwd=tmp_path)
    assert (tmp_path / "out.json").read_bytes() == (states / "single.json").read_bytes()


def test_a_partial_cut_to_nothing_or_not_text_is_refused(states, tmp_path):
    parts_in(states, tmp_path)
    (tmp_path / "p1.json").write_bytes(b"")
    merge_refuses(states, tmp_path, tmp_path / "p1.json")
    (tmp_path / "p1.json").write_bytes(b"\xff\xfe" * 20)
    merge_refuses(states, tmp_path, tmp_path / "p1.json")
    assert json.loads((states / "p1.json").read_text())["partial_version"] == 4


def test_any_flipped_byte_in_a_part_is_refused(states, tmp_path):
    """Seeded random single-byte changes anywhere in either part or its column files, through the
    command's entry point in this process (many variants, quickly): each is refused by name."""
    import random

    from click.testing import CliRunner

    from chanstats.cli import cli

    rng = random.Random(26)
    pristine = tmp_path / "pristine"
    parts_in(states, pristine)
    targets = [pristine / "p1.json", pristine / "p2.json",
               *sorted(p for p in (pristine / "p2.json.columns").iterdir() if p.stat().st_size)]
    for trial in range(40):
        work = tmp_path / f"trial{trial}"
        shutil.copytree(pristine, work)
        target = work / rng.choice(targets).relative_to(pristine)
        data = bytearray(target.read_bytes())
        position = rng.randrange(len(data))
        data[position] = (data[position] + rng.randrange(1, 256)) % 256
        target.write_bytes(bytes(data))
        out = work / "merged.json"
        result = CliRunner().invoke(cli, ["merge", str(work / "p1.json"), str(work / "p2.json"), "-o", str(out)])
        assert result.exit_code == 2, (target, position, result.output)
        assert str(target) in result.output and "Traceback" not in result.output, result.output
        assert not out.exists()

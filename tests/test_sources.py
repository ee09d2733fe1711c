"""Listing: extensions, hidden entries, order, list files, duplicates and symlink loops."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chanstats.errors import ChanstatsError, NoImagesError
from chanstats.sources.base import normalize_extensions
from chanstats.sources.listing import fingerprint, list_images


def touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def names(sources) -> list[str]:
    return [s.name for s in sources]


def test_recursive_sorted_by_bytes_case_insensitive_extensions(tmp_path):
    for name in ["b/2.PNG", "b/10.jpg", "a.JPEG", "B/x.webp", "c/readme.txt", "c/d/e.tif", "Z.bmp"]:
        touch(tmp_path / name)
    expected = sorted(["b/2.PNG", "b/10.jpg", "a.JPEG", "B/x.webp", "c/d/e.tif", "Z.bmp"], key=os.fsencode)
    assert names(list_images([str(tmp_path)])) == expected
    assert expected[0] == "B/x.webp"  # bytes order: upper case before lower case


def test_hidden_files_and_folders_are_skipped(tmp_path):
    touch(tmp_path / ".hidden.png")
    touch(tmp_path / ".cache" / "x.png")
    touch(tmp_path / "ok" / "y.png")
    assert names(list_images([str(tmp_path)])) == ["ok/y.png"]


def test_custom_extensions(tmp_path):
    touch(tmp_path / "a.png")
    touch(tmp_path / "b.gif")
    assert names(list_images([str(tmp_path)], normalize_extensions(["GIF"]))) == ["b.gif"]


def test_list_file_relative_to_itself_with_comments(tmp_path):
    touch(tmp_path / "imgs" / "one.png")
    touch(tmp_path / "imgs" / "two.png")
    listing = tmp_path / "lists" / "train.txt"
    listing.parent.mkdir()
    listing.write_text("# training split\n../imgs/two.png\n\n../imgs/one.png\n")
    assert names(list_images([f"@{listing}"])) == ["../imgs/two.png", "../imgs/one.png"]


def test_list_file_with_missing_entry_names_the_line(tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("missing.png\n")
    with pytest.raises(ChanstatsError, match=r"list\.txt:1: missing\.png: no such file"):
        list_images([f"@{listing}"])


def test_duplicates_and_symlink_loops(tmp_path):
    touch(tmp_path / "data" / "a.png")
    touch(tmp_path / "data" / "sub" / "b.png")
    os.symlink("..", tmp_path / "data" / "sub" / "loop")  # a loop back up the tree
    os.symlink("a.png", tmp_path / "data" / "alias.png")  # the same file twice
    sources = list_images([str(tmp_path / "data"), str(tmp_path / "data" / "a.png")])
    assert names(sources) == ["a.png", "sub/b.png"]


def test_single_file_is_taken_whatever_its_extension(tmp_path):
    path = touch(tmp_path / "photo.raw")
    assert [s.path for s in list_images([str(path)])] == [str(path)]


def test_nothing_found_says_where_and_which_extensions(tmp_path):
    touch(tmp_path / "notes.txt")
    with pytest.raises(NoImagesError, match=r"no images found in .* \(looked for \.jpg .*\.webp"):
        list_images([str(tmp_path)])


def test_missing_input(tmp_path):
    with pytest.raises(ChanstatsError, match="no such file or directory"):
        list_images([str(tmp_path / "nope")])


def test_fingerprint_depends_on_names_and_sizes_not_location(tmp_path):
    touch(tmp_path / "one" / "a.png", b"12")
    touch(tmp_path / "two" / "a.png", b"34")
    assert fingerprint(list_images([str(tmp_path / "one")])) == fingerprint(list_images([str(tmp_path / "two")]))
    touch(tmp_path / "two" / "a.png", b"345")
    assert fingerprint(list_images([str(tmp_path / "one")])) != fingerprint(list_images([str(tmp_path / "two")]))


def test_paths_are_the_inputs_joined_with_names_however_they_are_spelled(tmp_path, monkeypatch):
    touch(tmp_path / "data" / "sub" / "a.png")
    touch(tmp_path / "data" / "b.jpg")
    touch(tmp_path / "c.jpg")
    (tmp_path / "list.txt").write_text(f"data/b.jpg\n./c.jpg\n{tmp_path / 'data' / 'sub'}\n")
    monkeypatch.chdir(tmp_path)
    inputs = ["data/", "data//b.jpg", "./c.jpg", str(tmp_path / "c.jpg"), "@list.txt"]
    listed = {(s.path, s.name) for s in list_images(inputs)}
    # A file reached twice is listed once, under the first spelling that reached it.
    assert listed == {
        ("data/sub/a.png", "sub/a.png"),
        ("data/b.jpg", "b.jpg"),
        ("./c.jpg", "c.jpg"),
    }
    for source in list_images(["data//b.jpg", "@list.txt"]):
        assert source.display == source.path and os.path.exists(source.path)
    # Sources under one folder share one root string instead of each holding its full path.
    roots = {id(s.root) for s in list_images(["data"])}
    assert len(roots) == 1

"""Non-regular files and odd text: named as bad input, never opened, never blocking.

Runs go through the ``chanstats`` command with a timeout (a FIFO opened for reading would hang
the run), in-process and through the worker pool (more images than one chunk, 2 workers).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from .helpers.cli import chanstats_command
from .helpers.files import random_rgb, write_image

COUNT = 40


def cli(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([*chanstats_command(), *args], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr
    return done


def good_folder(root: Path, count: int = COUNT) -> Path:
    rng = np.random.default_rng(7)
    for i in range(count):
        write_image(root / f"img{i:03d}.png", random_rgb(rng, 5 + i % 4, 6 + i % 3))
    return root


@pytest.fixture
def special_folder(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder of good images plus a dangling link, a FIFO, a socket and a link to a device,
    each with an image extension; their expected reasons by path."""
    folder = good_folder(tmp_path / "d")
    os.symlink(folder / "missing.png", folder / "dangling.png")
    os.mkfifo(folder / "fifo.png")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock.jpg"))
    os.symlink("/dev/null", folder / "null.jpg")
    yield folder, {
        f"{folder}/dangling.png": f"dangling symbolic link (to {folder}/missing.png), not a regular file",
        f"{folder}/fifo.png": "not a regular file (a FIFO)",
        f"{folder}/null.jpg": "not a regular file (a character device)",
        f"{folder}/sock.jpg": "not a regular file (a socket)",
    }
    server.close()


@pytest.mark.parametrize("workers", ["0", "2"])
def test_special_files_in_a_folder_are_named_never_opened(tmp_path, special_folder, workers):
    folder, expected = special_folder
    failed = cli("compute", str(folder), "--workers", workers, "-q")
    assert failed.returncode == 2
    assert f"4 of {COUNT + 4} images could not be read" in failed.stderr
    for path, reason in expected.items():
        assert f"  {path}: {reason}\n" in failed.stderr
    skipped = cli("compute", str(folder), "--workers", workers, "-q", "--on-error", "skip")
    assert skipped.returncode == 0, skipped.stderr
    config = json.loads(skipped.stdout)
    assert {item["path"]: item["error"] for item in config["skipped"]} == expected
    oracle = json.loads(cli("compute", str(good_folder(tmp_path / "oracle")), "--workers", "0", "-q").stdout)
    assert config["exact"] == oracle["exact"] and config["count"]["images"] == COUNT


def test_special_files_given_directly_never_block(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    os.mkfifo(tmp_path / "pipe.tar")  # a shard name must not make listing open it either
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.jpg")
    good = good_folder(tmp_path / "good")
    done = cli("compute", str(good), str(tmp_path / "pipe.png"), str(tmp_path / "pipe.tar"),
               str(tmp_path / "dangling.jpg"), "--workers", "2", "-q", "--on-error", "skip")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["skipped"] == [
        {"path": str(tmp_path / "pipe.png"), "error": "not a regular file (a FIFO)"},
        {"path": str(tmp_path / "pipe.tar"), "error": "not a regular file (a FIFO)"},
        {"path": str(tmp_path / "dangling.jpg"), "error": f"dangling symbolic link (to {tmp_path}/gone.jpg), not a regular file"},
    ]


def test_a_list_file_that_is_not_utf8_names_the_line(tmp_path):
    good_folder(tmp_path / "good", 2)
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"good/img000.png\n# comment\ngood/caf\xe9.png\n")
    done = cli("compute", f"@{listing}", "--workers", "0")
    assert done.returncode == 2
    assert done.stderr == f"Error: {listing}:3: not UTF-8 text (byte 0xe9 at column 9); a list file holds one path per line, in UTF-8\n"
    listing.write_bytes(b"good/img000.png\n\0\0\0binary\n")
    done = cli("compute", f"@{listing}", "--workers", "0")
    assert done.returncode == 2 and done.stderr.startswith(f"Error: {listing}:2: holds a NUL byte")


@pytest.mark.parametrize("workers", ["0", "2"])
def test_non_utf8_file_names_are_measured_and_shown_with_escapes(tmp_path, workers):
    folder = good_folder(tmp_path / "d")
    raw = os.fsencode(folder)
    rng = np.random.default_rng(3)
    from PIL import Image

    Image.fromarray(random_rgb(rng, 9, 9)).save(raw + b"/caf\xe9.png", format="PNG")
    with open(raw + b"/broken-\xff.png", "wb") as handle:
        handle.write(b"not a png")
    oracle_folder = good_folder(tmp_path / "oracle")
    Image.fromarray(random_rgb(np.random.default_rng(3), 9, 9)).save(oracle_folder / "cafe.png")
    oracle = json.loads(cli("compute", str(oracle_folder), "--workers", "0", "-q").stdout)

    failed = cli("compute", str(folder), "--workers", workers, "-q")
    assert failed.returncode == 2 and f"  {folder}/broken-\\xff.png: not an image Pillow can read" in failed.stderr
    for fmt in ("json", "yaml"):
        output, per_image = tmp_path / f"out.{fmt}", tmp_path / f"per-image-{fmt}.csv"
        done = cli("compute", str(folder), "--workers", workers, "-q", "--on-error", "skip", "--listing",
                   "-o", str(output), "--per-image", str(per_image))
        assert done.returncode == 0, done.stderr
        text = output.read_text(encoding="utf-8")
        if fmt == "json":
            config = json.loads(text)
            assert config["skipped"] == [{"path": f"{folder}/broken-\\xff.png", "error": "not an image Pillow can read"}]
            assert config["exact"] == oracle["exact"] and config["count"]["images"] == COUNT + 1
        assert "caf\\xe9.png" in per_image.read_text(encoding="utf-8")
    shown = cli("show", str(tmp_path / "out.json"))
    assert shown.returncode == 0 and "broken-\\xff.png" in shown.stdout


BAD_CONFIGS = {
    "binary.json": (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "a binary file, not a chanstats config"),
    "latin.json": (b'{"chanstats": "caf\xe9"}', "not UTF-8 text (byte 0xe9 at offset 18)"),
    "empty.json": (b"", "empty file, not a chanstats config"),
    "blank.yaml": (b"\n  \n", "empty file, not a chanstats config"),
    "text.json": (b"hello there", "not a valid config (Expecting value"),
    "list.json": (b"[1, 2, 3]", "not a chanstats config (no 'chanstats'/'exact' keys)"),
    "scalar.yaml": (b"just words", "not a chanstats config"),
    "broken.yaml": (b"a: [1, 2\nb: {", "not a valid config (while parsing"),
    "deep.json": (b"[" * 100000 + b"]" * 100000, "not a valid config"),
    "exact-not-a-mapping.json": (b'{"chanstats": "1", "exact": 5}', ""),
}


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_unusable_configs_exit_2_with_one_line_never_1(tmp_path, name):
    content, message = BAD_CONFIGS[name]
    path = tmp_path / name
    path.write_bytes(content)
    good_folder(tmp_path / "d", 2)
    for command in (["show", str(path)], ["export", str(path), "--to", "timm"],
                    ["check", "--against", str(path), str(tmp_path / "d"), "--workers", "0"]):
        done = cli(*command)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.startswith(f"Error: {path}: {message}") and done.stderr.count("\n") == 1, done.stderr

"""Tar shards as sources: real archives written with ``tarfile`` in tmp_path, read without extraction."""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chanstats.sources import tar as tarshards
from chanstats.decoding.pillow import decode
from chanstats.errors import BadImageError, BadImagesError, ChanstatsError
from chanstats.api import compute
from chanstats.sources.kinds import read_bytes as read_source
from chanstats.sources.listing import expand_braces, fingerprint, list_images

from .helpers.cli import run_cli


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def images(count: int, seed: int = 0) -> dict[str, bytes]:
    """``count`` small RGB PNGs of different sizes and brightness, by WebDataset-like key."""
    rng = np.random.default_rng(seed)
    return {
        f"{i:06d}.png": png_bytes(rng.integers(5 * (i % 9), 160 + 10 * (i % 9), size=(6 + i % 5, 7 + i % 3, 3), dtype=np.uint8))
        for i in range(count)
    }


def add_file(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def add_special(archive: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    archive.addfile(info)


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, mode) as archive:
        for name, data in members.items():
            add_file(archive, name, data)
    return path


def write_folder(root: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def test_members_in_archive_order_images_only(tmp_path):
    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as archive:
        dir_info = tarfile.TarInfo("b")
        dir_info.type = tarfile.DIRTYPE
        archive.addfile(dir_info)
        add_file(archive, "b/2.png", b"x")
        add_file(archive, "a/1.JPG", b"xy")  # archive order, not sorted order
        add_file(archive, "b/2.cls", b"7")  # WebDataset label: not an image
        add_file(archive, ".hidden.png", b"x")
        add_file(archive, "c/.cache/x.png", b"x")
        add_file(archive, "./d/3.webp", b"xyz")
    sources = list_images([str(shard)])
    assert [s.name for s in sources] == ["b/2.png", "a/1.JPG", "./d/3.webp"]
    assert [s.display for s in sources] == [f"{shard}::b/2.png", f"{shard}::a/1.JPG", f"{shard}::./d/3.webp"]
    assert [s.size for s in sources] == [1, 2, 3]
    assert all(s.path == str(shard) and s.problem is None and not s.compressed for s in sources)
    assert read_source(sources[2]) == b"xyz"  # read straight from the shard at its offset


@pytest.mark.parametrize("suffix, mode", [("tar", "w"), ("tar.gz", "w:gz"), ("tgz", "w:gz")])
def test_statistics_equal_a_folder_of_the_same_files(tmp_path, suffix, mode):
    members = images(40)  # more than one chunk, so worker processes read members themselves
    shard = write_tar(tmp_path / f"shard.{suffix}", members, mode)
    folder = write_folder(tmp_path / "folder", members)
    from_folder = compute(str(folder), workers=2)
    from_shard = compute(str(shard), workers=2)
    assert from_shard.mean == from_folder.mean and from_shard.std == from_folder.std
    # Names and sizes map one to one (the tar was written in sorted order): same fingerprint, and
    # the whole config is the same but for the inputs option.
    assert from_shard.fingerprint == from_folder.fingerprint
    assert compute(str(shard), workers=0).to_dict() == from_shard.to_dict()
    shard_dict, folder_dict = json.loads(from_shard.dumps()), json.loads(from_folder.dumps())
    assert shard_dict["options"].pop("inputs") != folder_dict["options"].pop("inputs")
    assert shard_dict == folder_dict


def test_gzip_members_read_out_of_order_in_one_process(tmp_path):
    members = images(5)
    shard = write_tar(tmp_path / "s.tar.gz", members, "w:gz")
    sources = list_images([str(shard)])
    assert all(s.compressed for s in sources)
    for source in [sources[3], sources[1], sources[4], sources[0]]:  # backwards: the reader reopens
        assert read_source(source) == members[source.name]


def test_links_devices_and_fifos_are_bad_images_naming_the_member(tmp_path, engine):
    shard = tmp_path / "s.tar"
    with tarfile.open(shard, "w") as archive:
        add_file(archive, "ok.png", images(1)["000000.png"])
        add_special(archive, "soft.png", tarfile.SYMTYPE, "ok.png")
        add_special(archive, "hard.png", tarfile.LNKTYPE, "ok.png")
        add_special(archive, "dev.png", tarfile.CHRTYPE)
        add_special(archive, "blk.jpg", tarfile.BLKTYPE)
        add_special(archive, "pipe.png", tarfile.FIFOTYPE)
        add_special(archive, "link-no-image-extension", tarfile.SYMTYPE, "ok.png")
    inputs = engine.padded([str(shard)], tmp_path / "more")
    with pytest.raises(BadImagesError) as failure:
        compute(inputs, workers=engine.workers)
    message = str(failure.value)
    assert f"5 of {6 + engine.padding} images could not be read" in message
    for name, reason in [("soft.png", "symbolic link"), ("hard.png", "hard link"), ("dev.png", "device"),
                         ("blk.jpg", "device"), ("pipe.png", "FIFO")]:
        assert f"{shard}::{name}: tar member is a {reason}" in message
    result = compute(inputs, workers=engine.workers, on_error="skip")
    assert result.images == 1 + engine.padding
    assert [path for path, _ in result.skipped] == [f"{shard}::{n}" for n in ["soft.png", "hard.png", "dev.png", "blk.jpg", "pipe.png"]]


def test_a_member_over_the_size_limit_is_a_bad_image(tmp_path, monkeypatch, engine):
    members = images(3)
    shard = write_tar(tmp_path / "s.tar", members)
    monkeypatch.setattr(tarshards, "MAX_MEMBER_BYTES", min(len(v) for v in members.values()))
    result = compute(engine.padded([str(shard)], tmp_path / "more"), workers=engine.workers, on_error="skip")
    assert result.images == 1 + engine.padding
    assert len(result.skipped) == 2
    assert all("larger than the" in error and "::" in path for path, error in result.skipped)


def test_corrupt_and_truncated_members_follow_the_error_policy(tmp_path, engine):
    members = images(3)
    good = members["000001.png"]
    members["000001.png"] = good[: len(good) // 2]  # truncated PNG
    members["000002.jpg"] = b"not a jpeg at all"
    shard = write_tar(tmp_path / "s.tar", members)
    inputs = engine.padded([str(shard)], tmp_path / "more")
    with pytest.raises(BadImagesError) as failure:
        compute(inputs, workers=engine.workers)
    assert f"{shard}::000001.png: corrupt or truncated image" in str(failure.value)
    assert f"{shard}::000002.jpg: not an image Pillow can read" in str(failure.value)
    result = compute(inputs, workers=engine.workers, on_error="skip")
    assert result.images == 2 + engine.padding and len(result.skipped) == 2
    with pytest.raises(BadImagesError, match="more than --max-bad 1"):
        compute(inputs, workers=engine.workers, on_error="skip", max_bad=1)


def test_a_shard_cut_short_after_listing_is_a_bad_member_not_a_crash(tmp_path):
    members = images(4)
    shard = write_tar(tmp_path / "s.tar", members)
    sources = list_images([str(shard)])
    with open(shard, "r+b") as handle:
        handle.truncate(sources[2].offset + 10)
    with pytest.raises(BadImageError, match=r"::000002.png: member cut short: 10 of"):
        read_source(sources[2])
    with pytest.raises(BadImageError, match=r"::000003.png: member cut short: 0 of"):
        read_source(sources[3])


def test_not_a_tar_is_one_bad_entry_naming_the_shard(tmp_path):
    cases = {
        "bogus.tar": (b"hello" * 200, r"not a readable tar archive"),
        "empty.tar": (b"", r"not a readable tar archive \(ends at byte 0 without"),
        "text.tar.gz": (gzip.compress(b"hello" * 200), r"not a readable gzip tar archive \(.*header checksum in the header at byte 0"),
    }
    for name, (content, reason) in cases.items():
        shard = tmp_path / name
        shard.write_bytes(content)
        [entry] = list_images([str(shard)])
        with pytest.raises(BadImageError, match=rf"{re.escape(name)}: {reason}"):
            read_source(entry)


def test_brace_patterns_expand_to_shards_in_order(tmp_path):
    all_members = images(9)
    names = list(all_members)
    for shard_index in range(3):
        write_tar(tmp_path / f"train-{shard_index:06d}.tar", {n: all_members[n] for n in names[shard_index::3]})
    pattern = str(tmp_path / "train-{000000..000002}.tar")
    sources = list_images([pattern])
    expected = [f"{tmp_path}/train-{s:06d}.tar::{n}" for s in range(3) for n in names[s::3]]
    assert [s.display for s in sources] == expected
    listed = list_images([str(tmp_path / "train-{000002,000000}.tar")])
    assert [s.path for s in listed] == [str(tmp_path / "train-000002.tar")] * 3 + [str(tmp_path / "train-000000.tar")] * 3
    # The same shard given twice is read once.
    assert len(list_images([pattern, str(tmp_path / "train-000001.tar")])) == 9
    with pytest.raises(ChanstatsError, match=r"train-000003.tar and 1 more: no such file \(from the pattern"):
        list_images([str(tmp_path / "train-{000000..000004}.tar")])


def test_expand_braces_padding_and_errors():
    assert expand_braces("s-{08..10}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar"]
    assert expand_braces("s-{8..10}.tar") == ["s-8.tar", "s-9.tar", "s-10.tar"]
    assert expand_braces("s-{0..2}-{a,b}") == ["s-0-a", "s-0-b", "s-1-a", "s-1-b", "s-2-a", "s-2-b"]
    assert expand_braces("no-braces{}.tar") == ["no-braces{}.tar"]
    # A descending range counts down, as in bash and braceexpand.
    assert expand_braces("s-{3..1}.tar") == ["s-3.tar", "s-2.tar", "s-1.tar"]


def test_expand_braces_nested_and_escaped():
    # Nested groups multiply out inside their group, in order.
    assert expand_braces("{train-{0..1},val}.tar") == ["train-0.tar", "train-1.tar", "val.tar"]
    assert expand_braces("x{a,b{1,2}}y") == ["xay", "xb1y", "xb2y"]
    # An escaped brace is a literal one, so a name that holds braces can still be given.
    assert expand_braces(r"a\{b,c\}.tar") == ["a{b,c}.tar"]
    assert expand_braces(r"{a,b}\{1\}.tar") == ["a{1}.tar", "b{1}.tar"]


def test_expand_braces_refuses_huge_ranges(monkeypatch):
    from chanstats.sources import listing

    monkeypatch.setattr(listing, "MAX_EXPANDED_PATHS", 100)
    assert len(expand_braces("s-{1..100}.tar")) == 100
    with pytest.raises(ChanstatsError, match="expands to more than 100 paths"):
        expand_braces("s-{0..99999999999}.tar")  # refused before a value is built
    with pytest.raises(ChanstatsError, match="expands to more than 100 paths"):
        expand_braces("s-{0..20}-{0..20}.tar")  # each group small, together too many


def test_escaped_brace_pattern_names_a_literal_file(tmp_path):
    write_tar(tmp_path / "odd{1}.tar", images(2))
    sources = list_images([str(tmp_path) + r"/odd\{1\}.tar"])
    assert [s.display for s in sources] == [f"{tmp_path}/odd{{1}}.tar::000000.png", f"{tmp_path}/odd{{1}}.tar::000001.png"]


def test_list_file_entries_may_be_shards(tmp_path):
    write_tar(tmp_path / "a.tar", images(2))
    (tmp_path / "list.txt").write_text("a.tar\n")
    assert [s.display for s in list_images([f"@{tmp_path / 'list.txt'}"])] == [
        f"{tmp_path}/a.tar::000000.png", f"{tmp_path}/a.tar::000001.png"]


def test_fingerprint_uses_member_names_and_sizes(tmp_path):
    members = images(3)
    first = fingerprint(list_images([str(write_tar(tmp_path / "a.tar", members))]))
    assert fingerprint(list_images([str(write_tar(tmp_path / "b.tar.gz", members, "w:gz"))])) == first
    members["000001.png"] += b"\0"
    assert fingerprint(list_images([str(write_tar(tmp_path / "c.tar", members))])) != first


def test_decode_takes_a_path_bytes_or_a_file_object(tmp_path):
    data = images(1)["000000.png"]
    (tmp_path / "x.png").write_bytes(data)
    from_path = decode(str(tmp_path / "x.png")).moments()
    assert decode(data).moments() == from_path
    assert decode(io.BytesIO(data)).moments() == from_path
    with pytest.raises(BadImageError, match="^<image bytes>: not an image"):
        decode(b"nope")


def test_cli_reads_shards_from_a_pattern_and_records_member_names(tmp_path, engine):
    members = images(6)
    members["000003.png"] = b"broken"
    names = list(members)
    write_tar(tmp_path / "s-0.tar", {n: members[n] for n in names[:3]})
    write_tar(tmp_path / "s-1.tar.gz", {n: members[n] for n in names[3:]}, "w:gz")
    done = run_cli("compute", str(tmp_path / "s-{0,1}.tar"), "--on-error", "skip", "--workers", "2", "-q")
    assert done.returncode == 2 and "s-1.tar: no such file (from the pattern" in done.stderr
    inputs = engine.padded([str(tmp_path / "s-0.tar"), str(tmp_path / "s-1.tar.gz")], tmp_path / "more")
    done = run_cli("compute", *inputs, "--on-error", "skip", "-q", *engine.options)
    assert done.returncode == 0, done.stderr
    config = json.loads(done.stdout)
    assert config["count"]["images"] == 5 + engine.padding
    assert config["skipped"] == [{"path": f"{tmp_path}/s-1.tar.gz::000003.png", "error": "not an image Pillow can read"}]
    failed = run_cli("compute", *inputs, *engine.options)
    assert failed.returncode == 2 and f"{tmp_path}/s-1.tar.gz::000003.png: not an image" in failed.stderr
    assert "Traceback" not in failed.stderr


@pytest.mark.parametrize("tar_format", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("compression", ["", "gz"])
def test_header_reader_agrees_with_tarfile(tmp_path, tar_format, compression):
    shard = tmp_path / ("s.tar.gz" if compression else "s.tar")
    long_folder = "d" * 120  # ustar splits it into prefix + name; GNU and pax use extension headers
    with tarfile.open(shard, f"w:{compression}" if compression else "w", format=tar_format) as archive:
        folder = tarfile.TarInfo("class/")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
        add_file(archive, "class/a.png", b"a" * 700)
        add_file(archive, f"{long_folder}/b.png", b"b" * 3)
        add_special(archive, "class/link.png", tarfile.SYMTYPE, "a.png")
        add_file(archive, "class/empty.png", b"")
        add_file(archive, "z.jpg", b"z" * 512)
        add_file(archive, "caf\u00e9/\u00e9t\u00e9.png", b"e" * 5)
        if tar_format != tarfile.USTAR_FORMAT:
            add_file(archive, "n" * 150 + ".png", b"long")  # too long for ustar at all
            add_special(archive, "class/long-link.png", tarfile.SYMTYPE, "t" * 130)
    with tarfile.open(shard) as reference:
        expected = [(m.name, m.type, m.size, m.offset_data, m.linkname) for m in reference]
    assert [tuple(h)[:5] for h in tarshards.scan_headers(str(shard), bool(compression))] == expected


def test_header_reader_takes_gnu_and_ustar_archives_with_short_names(tmp_path):
    for tar_format in (tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT):
        shard = tmp_path / f"s{tar_format}.tar"
        with tarfile.open(shard, "w", format=tar_format) as archive:
            add_file(archive, "a/1.png", b"1" * 600)
            add_file(archive, "a/2.png", b"2")
        headers = tarshards.scan_headers(str(shard), False)
        assert [(h.name, h.size, h.offset) for h in headers] == [("a/1.png", 600, 512), ("a/2.png", 1, 512 + 512 + 1024)]

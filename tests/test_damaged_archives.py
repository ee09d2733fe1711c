"""Damaged tar shards lose nothing silently: every damage is named, under fail and skip, through the
``chanstats`` command, in-process and through the worker pool.

Archives are written with :mod:`tarfile` and :mod:`gzip`, then damaged at precise bytes. The
oracle for the members that survive is the folder the archive was made from (reduced to those
members), measured by the same command; which members survive is worked out independently, from
tarfile's offsets and zlib's output on the damaged bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zlib
from pathlib import Path

import pytest

from .helpers.cli import run_cli
from .test_tar_sources import images, write_folder

COUNT = 48  # more than one chunk: the worker pool reads the members


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def layout(data: bytes) -> list[tarfile.TarInfo]:
    """Each member's header offset, data offset and size, as tarfile reads the intact archive."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return archive.getmembers()


def compute_json(*args: str) -> tuple[int, dict | None, str]:
    done = run_cli("compute", *args, "-q")
    assert "Traceback" not in done.stderr
    return done.returncode, (json.loads(done.stdout) if done.returncode == 0 else None), done.stderr


def assert_damage_named(shard: Path, reason: str, good: dict[str, bytes], tmp_path: Path) -> None:
    """Under fail: exit 2 naming the shard; under skip: the good members measured exactly (the
    folder of the same files is the oracle), one skipped entry for the rest, counted by --max-bad."""
    oracle_folder = write_folder(tmp_path / "oracle", good)
    _, oracle, _ = compute_json(str(oracle_folder), "--workers", "0")
    outputs = []
    for workers in ("0", "2"):
        code, _, stderr = compute_json(str(shard), "--workers", workers)
        assert code == 2
        assert f"{shard}: {reason}" in stderr
        code, config, stderr = compute_json(str(shard), "--workers", workers, "--on-error", "skip")
        assert code == 0, stderr
        assert config["skipped"] == [{"path": str(shard), "error": reason}]
        assert config["count"]["images"] == len(good)
        assert config["exact"]["mean"] == oracle["exact"]["mean"] and config["exact"]["std"] == oracle["exact"]["std"]
        outputs.append(config)
        code, _, stderr = compute_json(str(shard), "--workers", workers, "--on-error", "skip", "--max-bad", "0")
        assert code == 2 and "more than --max-bad 0" in stderr and str(shard) in stderr
    assert outputs[0] == outputs[1]


def test_a_damaged_header_checksum_is_named_not_taken_for_the_end(tmp_path):
    members = images(COUNT)
    data = bytearray(tar_bytes(members))
    damaged = layout(bytes(data))[44]
    data[damaged.offset + 150] ^= 0x01  # a digit of the header's checksum field
    shard = tmp_path / "s.tar"
    shard.write_bytes(bytes(data))
    good = dict(list(members.items())[:44])
    reason = (f"damaged after member 000043.png (bad header checksum in the header at byte {damaged.offset}); "
              "the rest of the shard was not read")
    assert_damage_named(shard, reason, good, tmp_path)


def test_a_flipped_byte_in_a_stored_gzip_member_is_caught_by_its_crc(tmp_path):
    # compresslevel 0 stores the tar bytes verbatim in the deflate stream, so the flip leaves the
    # deflate structure valid: only the CRC-32 at the end of the stream can catch it.
    members = images(COUNT)
    compressed = bytearray(gzip.compress(tar_bytes(members), compresslevel=0, mtime=0))
    target = members["000030.png"]
    where = compressed.find(target[20:60])
    assert where > 0
    compressed[where] ^= 0x40
    shard = tmp_path / "s.tar.gz"
    shard.write_bytes(bytes(compressed))
    # The folder it was made from, plus the shard: the folder's images are measured, the shard is named.
    folder = write_folder(tmp_path / "folder", members)
    reason = "damaged (gzip data error (incorrect checksum found) in the gzip member at compressed byte 0); no member of the shard was read"
    for workers in ("0", "2"):
        code, _, stderr = compute_json(str(folder), str(shard), "--workers", workers)
        assert code == 2 and f"{shard}: {reason}" in stderr
        code, config, _ = compute_json(str(folder), str(shard), "--workers", workers, "--on-error", "skip")
        assert config["skipped"] == [{"path": str(shard), "error": reason}] and config["count"]["images"] == COUNT


def test_damage_in_a_later_gzip_member_keeps_the_verified_ones(tmp_path):
    members = images(COUNT)
    data = tar_bytes(members)
    split = layout(data)[25].offset  # a member boundary: gzip member 1 holds the first 25 tar members
    first, second = gzip.compress(data[:split], mtime=0), bytearray(gzip.compress(data[split:], mtime=0))
    second[-6] ^= 0xFF  # inside the second member's CRC-32
    shard = tmp_path / "s.tgz"
    shard.write_bytes(first + bytes(second))
    good = dict(list(members.items())[:25])
    reason = (f"damaged after member 000024.png (gzip data error (incorrect checksum found) in the gzip member at compressed "
              f"byte {len(first)}); the rest of the shard was not read")
    assert_damage_named(shard, reason, good, tmp_path)


def test_a_gzip_stream_cut_mid_way_keeps_what_was_inflated_before_the_cut(tmp_path):
    members = images(COUNT)
    data = tar_bytes(members)
    compressed = gzip.compress(data, mtime=0)
    cut = len(compressed) * 2 // 3
    shard = tmp_path / "s.tar.gz"
    shard.write_bytes(compressed[:cut])
    inflated = len(zlib.decompressobj(31).decompress(compressed[:cut]))  # zlib's own view of the prefix
    whole = [m for m in layout(data) if m.offset_data + m.size <= inflated]
    assert 30 < len(whole) < COUNT - 2
    good = {m.name: members[m.name] for m in whole}
    reason = (f"damaged after member {whole[-1].name} (the gzip stream ends early at compressed byte {cut}); "
              "the rest of the shard was not read")
    assert_damage_named(shard, reason, good, tmp_path)


def test_a_plain_tar_cut_inside_a_member(tmp_path):
    members = images(COUNT)
    data = tar_bytes(members)
    cut_member = layout(data)[41]
    shard = tmp_path / "s.tar"
    shard.write_bytes(data[: cut_member.offset_data + 10])
    good = dict(list(members.items())[:41])
    reason = (f"damaged after member 000040.png (cut short inside member 000041.png: the data ends at byte "
              f"{cut_member.offset_data + 10}); the rest of the shard was not read")
    assert_damage_named(shard, reason, good, tmp_path)


@pytest.mark.parametrize("ending", ["none", "one zero block"])
def test_an_archive_must_end_with_two_zero_blocks_as_gnu_tar_requires(tmp_path, ending):
    members = images(3)
    data = tar_bytes(members)
    last = layout(data)[-1]
    end = last.offset_data + -(-last.size // 512) * 512
    shard = tmp_path / "s.tar"
    shard.write_bytes(data[: end + (512 if ending != "none" else 0)])
    code, config, _ = compute_json(str(shard), "--workers", "0", "--on-error", "skip")
    assert code == 0 and config["count"]["images"] == 3
    [skipped] = config["skipped"]
    assert skipped["path"] == str(shard) and skipped["error"].startswith("damaged after member 000002.png (ends at byte")


def test_a_zeroed_header_followed_by_members_is_damage(tmp_path):
    members = images(5)
    data = bytearray(tar_bytes(members))
    header = layout(bytes(data))[2].offset
    data[header : header + 512] = bytes(512)
    shard = tmp_path / "s.tar"
    shard.write_bytes(bytes(data))
    code, config, _ = compute_json(str(shard), "--workers", "0", "--on-error", "skip")
    assert config["skipped"] == [{"path": str(shard), "error": f"damaged after member 000001.png (a zero block at byte {header} "
                                                                "is followed by more data); the rest of the shard was not read"}]


@pytest.mark.parametrize("suffix, mode", [("tar", "w"), ("tar.gz", "w:gz"), ("tar", "w|"), ("tar.gz", "w|gz")])
def test_intact_archives_have_no_skipped_entry(tmp_path, suffix, mode):
    members = images(COUNT)
    shard = tmp_path / f"s.{suffix}"
    with tarfile.open(str(shard), mode, format=tarfile.PAX_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    folder = write_folder(tmp_path / "folder", members)
    _, from_folder, _ = compute_json(str(folder), "--workers", "2")
    code, from_shard, stderr = compute_json(str(shard), "--workers", "2")
    assert code == 0, stderr
    assert from_shard["skipped"] == [] and from_shard["exact"] == from_folder["exact"]
    assert from_shard["fingerprint"] == from_folder["fingerprint"]

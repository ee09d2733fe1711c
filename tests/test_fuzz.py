"""Seeded mutation fuzzing of the decoders: chanstats agrees with Pillow on every mutant.

Valid JPEG, PNG, WebP, TIFF and tar bytes get random bit flips, truncations, insertions, byte
runs, and format-aware edits: PNG chunk lengths, PNG chunks damaged behind a recomputed CRC (so
Pillow's CRC check does not stop them and the damage reaches the decoders), PNG image data with
altered scanlines behind a valid zlib stream, JPEG segment lengths, JPEG scans cut short behind an
EOI marker, tar size fields behind a recomputed header checksum.

For every image mutant, chanstats' measuring function (fast paths and the Pillow fallback) either
gives exactly Pillow's pixel sums or raises :class:`BadImageError`, exactly when Pillow refuses.
The same mutants then go through ``chanstats compute`` with two workers: exact statistics of what
Pillow decodes, every refused mutant listed, no traceback, no hang. Tar mutants are judged against
GNU tar: a shard GNU tar finds damaged must be named; an intact one must lose no member.
"""

from __future__ import annotations

import csv
import faulthandler
import io
import json
import shutil
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from chanstats.errors import BadImageError
from chanstats.measure import Measurer
from chanstats.sources.base import ImageSource

from .helpers.corpus_runs import GOOD, Corpus, assert_measured_exactly, compute
from .helpers.fault_kinds import (
    PNG_SIGNATURE,
    Expected,
    Sums,
    chunk,
    encode,
    jpeg_segments,
    photo,
    pillow_verdict,
    png_chunks,
    scanlines,
    tar_bytes,
    write_good_tree,
)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about odd TIFF tags

SEED = 20240611
NORMAL_MUTANTS = 520
SLOW_MUTANTS = 4000


# ------------------------------------------------------------------------------------------------
# Valid starting points


def seeds() -> dict[str, bytes]:
    """Small valid files of each format, several kinds each (each fast path's cases included)."""
    rgb, rgba = photo(31, 20, 28), np.dstack([photo(32, 20, 28), photo(33, 20, 28)[:, :, 0]])
    return {
        "baseline.jpg": encode(rgb, "JPEG", quality=90),
        "progressive.jpg": encode(rgb, "JPEG", quality=75, progressive=True),
        "grey.jpg": encode(rgb[:, :, 0], "JPEG", quality=85),
        "restart444.jpg": encode(rgb, "JPEG", quality=80, subsampling=0, restart_marker_blocks=2),
        "rgb.png": encode(rgb, "PNG"),
        "rgba.png": encode(Image.fromarray(rgba, "RGBA"), "PNG"),
        "grey.png": encode(rgb[:, :, 1], "PNG"),
        "greyalpha.png": encode(Image.fromarray(rgba[:, :, 2:], "LA"), "PNG"),
        "palette.png": encode(Image.fromarray(rgb).quantize(12), "PNG"),
        "lossy.webp": encode(rgb, "WEBP", quality=70),
        "lossless.webp": encode(rgb, "WEBP", lossless=True),
        "plain.tif": encode(rgb, "TIFF"),
        "deflate.tif": encode(rgb, "TIFF", compression="tiff_adobe_deflate"),
    }


# ------------------------------------------------------------------------------------------------
# Mutations: each takes the bytes and a seeded generator and returns new bytes


Mutation = Callable[[bytes, np.random.Generator], bytes]


def bit_flips(data: bytes, rng: np.random.Generator) -> bytes:
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        out[int(rng.integers(len(out)))] ^= 1 << int(rng.integers(8))
    return bytes(out)


def truncation(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def insertion(data: bytes, rng: np.random.Generator) -> bytes:
    at = int(rng.integers(len(data) + 1))
    return data[:at] + rng.integers(0, 256, int(rng.integers(1, 17)), dtype=np.uint8).tobytes() + data[at:]


def byte_run(data: bytes, rng: np.random.Generator) -> bytes:
    at, length = int(rng.integers(len(data))), int(rng.integers(1, 33))
    return data[:at] + bytes([int(rng.choice([0x00, 0xFF]))]) * length + data[at + length :]


def _edited_length(old: int, rng: np.random.Generator, top: int) -> int:
    choices = [0, 1, old - 1, old + 1, old + 4, old * 2, top, top // 2, int(rng.integers(0, top + 1))]
    return int(np.clip(choices[int(rng.integers(len(choices)))], 0, top))


def png_chunk_length(data: bytes, rng: np.random.Generator) -> bytes:
    chunks = png_chunks(data)
    if not data.startswith(PNG_SIGNATURE) or not chunks:
        return bit_flips(data, rng)
    position, _ = chunks[int(rng.integers(len(chunks)))]
    (old,) = struct.unpack_from(">I", data, position)
    return data[:position] + struct.pack(">I", _edited_length(old, rng, 0xFFFFFFFF)) + data[position + 4 :]


def png_chunk_behind_good_crc(data: bytes, rng: np.random.Generator) -> bytes:
    """A chunk's body damaged (flips, cut or grown) with its CRC recomputed: Pillow's CRC check
    passes, so the damage reaches the header parser or the image data."""
    chunks = png_chunks(data)
    position, kind = chunks[int(rng.integers(len(chunks) - 1))]  # not IEND
    (length,) = struct.unpack_from(">I", data, position)
    body = data[position + 8 : position + 8 + length]
    choice = int(rng.integers(3))
    if choice == 0 and body:
        body = bit_flips(body, rng)
    elif choice == 1:
        body = body[: int(rng.integers(0, len(body) + 1))]
    else:
        body = insertion(body, rng)
    return data[:position] + chunk(kind, body) + data[position + 12 + length :]


def png_scanlines_behind_good_zlib(data: bytes, rng: np.random.Generator) -> bytes:
    """The inflated image data altered (a filter type byte, data bytes, rows missing or extra)
    and compressed again: a valid zlib stream and valid CRCs carrying wrong scanlines."""
    chunks = png_chunks(data)
    idat = [(p, k) for p, k in chunks if k == b"IDAT"]
    stream = b"".join(data[p + 8 : p + 8 + struct.unpack_from(">I", data, p)[0]] for p, _ in idat)
    raw = bytearray(zlib.decompress(stream))
    width, height = struct.unpack_from(">II", data, 16)
    stride = len(raw) // height
    choice = int(rng.integers(4))
    if choice == 0:
        raw[int(rng.integers(height)) * stride] = int(rng.choice([5, 6, 128, 255, int(rng.integers(256))]))
    elif choice == 1:
        raw = bytearray(bit_flips(bytes(raw), rng))
    elif choice == 2:
        raw = raw[: len(raw) - int(rng.integers(1, stride * 2))]
    else:
        raw += bytes(int(rng.integers(1, stride * 2)))
    first, last = idat[0][0], idat[-1][0] + 12 + struct.unpack_from(">I", data, idat[-1][0])[0]
    return data[:first] + chunk(b"IDAT", zlib.compress(bytes(raw))) + data[last:]


def jpeg_segment_length(data: bytes, rng: np.random.Generator) -> bytes:
    segments = jpeg_segments(data)
    if not segments:
        return bit_flips(data, rng)
    position, _ = segments[int(rng.integers(len(segments)))]
    (old,) = struct.unpack_from(">H", data, position + 2)
    return data[: position + 2] + struct.pack(">H", _edited_length(old, rng, 0xFFFF)) + data[position + 4 :]


def jpeg_cut_then_eoi(data: bytes, rng: np.random.Generator) -> bytes:
    return data[: int(rng.integers(2, len(data)))] + b"\xff\xd9"


COMMON: list[Mutation] = [bit_flips, truncation, insertion, byte_run]
BY_FORMAT: dict[str, list[Mutation]] = {
    "jpg": COMMON + [jpeg_segment_length, jpeg_cut_then_eoi, jpeg_segment_length],
    "png": COMMON + [png_chunk_length, png_chunk_behind_good_crc, png_scanlines_behind_good_zlib, png_scanlines_behind_good_zlib],
    "webp": COMMON,
    "tif": COMMON,
}


def image_mutants(count: int, seed: int = SEED) -> dict[str, tuple[str, bytes]]:
    """``count`` mutants: file name → (mutation name, bytes), reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    originals = list(seeds().items())
    mutants = {}
    for i in range(count):
        name, data = originals[i % len(originals)]
        extension = name.rsplit(".", 1)[1]
        mutation = BY_FORMAT[extension][int(rng.integers(len(BY_FORMAT[extension])))]
        mutants[f"m{i:05d}_{mutation.__name__}_{name}"] = (mutation.__name__, mutation(data, rng))
    return mutants


# ------------------------------------------------------------------------------------------------
# Per-mutant verdicts in this process


def chanstats_verdict(folder: Path, name: str) -> Sums | str:
    """What chanstats' measuring function (what each worker runs) makes of one file."""
    path = folder / name
    source = ImageSource.from_path(str(path), name, path.stat().st_size)
    try:
        measurement = Measurer(mode="RGB")(0, source)
    except BadImageError as error:
        assert error.path == str(path), error
        assert error.reason, error
        return f"refused: {error.reason}"
    moments = measurement.moments[0]
    assert measurement.format.channels == ("R", "G", "B")
    return Sums(moments.pixels, tuple(moments.sums), tuple(moments.sumsq))


def write_mutants(folder: Path, mutants: dict[str, tuple[str, bytes]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (_, data) in mutants.items():
        (folder / name).write_bytes(data)


def check_every_mutant_in_process(folder: Path, mutants: dict[str, tuple[str, bytes]]) -> Expected:
    """Each mutant's verdict from chanstats against Pillow's; returns what a run must give."""
    expected = Expected([folder.name])
    disagreements = []
    faulthandler.dump_traceback_later(600, exit=True)  # a hang ends the run with a stack dump
    try:
        for name, (mutation, data) in mutants.items():
            oracle = pillow_verdict(data)
            verdict = chanstats_verdict(folder, name)
            expected.files[f"{folder.name}/{name}"] = oracle
            if isinstance(oracle, str) != isinstance(verdict, str):
                disagreements.append(f"{name} ({mutation}): Pillow: {_short(oracle)}; chanstats: {_short(verdict)}")
            elif not isinstance(oracle, str) and Sums.of(oracle) != verdict:
                disagreements.append(f"{name} ({mutation}): pixel sums differ from Pillow's")
    finally:
        faulthandler.cancel_dump_traceback_later()
    assert not disagreements, "\n".join(disagreements)
    return expected


def _short(verdict) -> str:
    return verdict if isinstance(verdict, str) else "decoded"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Corpus:
    cwd = tmp_path_factory.mktemp("fuzz")
    pixels = write_good_tree(cwd / GOOD)
    return Corpus(cwd, sum((Sums.of(p) for p in pixels), Sums()), len(pixels))


def fuzz_images(good: Corpus, count: int, seed: int) -> None:
    mutants = image_mutants(count, seed)
    folder = good.cwd / f"mutants_{seed}_{count}"
    write_mutants(folder, mutants)
    # Through the pool first: a crash there is reported by the run, not by killing pytest.
    pooled = compute(good.cwd, [folder.name], "skip", workers=2)
    expected = check_every_mutant_in_process(folder, mutants)
    assert len(expected.refused) >= count // 10 and len(expected.measured) >= count // 10, "both verdicts must be common"
    assert_measured_exactly(pooled, good, expected)


def test_mutation_kinds_all_apply_and_are_reproducible():
    first, again = image_mutants(200), image_mutants(200)
    assert first == again
    used = {mutation for mutation, _ in first.values()}
    assert used == {m.__name__ for ms in BY_FORMAT.values() for m in ms}
    originals = set(seeds().values())
    assert sum(data in originals for _, data in first.values()) <= 2  # mutants really differ


def test_fuzzed_images_agree_with_pillow_in_process_and_through_the_pool(good):
    fuzz_images(good, NORMAL_MUTANTS, SEED)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_more_fuzzed_images_agree_with_pillow(good, seed):
    fuzz_images(good, SLOW_MUTANTS, seed)


# ------------------------------------------------------------------------------------------------
# Tar shards, judged against GNU tar


TAR = shutil.which("tar")


def tar_seed() -> tuple[bytes, dict[str, bytes]]:
    members = {"s/a.png": encode(photo(40, 12, 10), "PNG"), "s/b.jpg": encode(photo(41, 10, 12), "JPEG"), "s/c.png": encode(photo(42, 9, 9), "PNG")}
    return tar_bytes(list(members.items())), members


def tar_size_field(data: bytes, rng: np.random.Generator) -> bytes:
    """A member's size changed, with the header checksum recomputed: a header both tar readers
    accept, describing the wrong extent."""
    with tarfile.open(fileobj=io.BytesIO(data)) as reader:
        headers = [member.offset for member in reader.getmembers()]
    at = headers[int(rng.integers(len(headers)))]
    header = bytearray(data[at : at + 512])
    old = int(header[124:136].split(b"\0")[0] or b"0", 8)
    header[124:136] = b"%011o\0" % _edited_length(old, rng, 0o77777777777)
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return data[:at] + bytes(header) + data[at + 512 :]


TAR_MUTATIONS: list[Mutation] = [bit_flips, truncation, insertion, byte_run, tar_size_field]


def gnu_tar(shard: Path) -> tuple[int, list[tuple[str, str]]]:
    """GNU tar's verdict on a shard: exit status, and (type, name) of each member it lists."""
    done = subprocess.run([TAR, "--quoting-style=literal", "-tvf", str(shard)], capture_output=True, timeout=30)
    members = []
    for line in done.stdout.decode("utf-8", "surrogateescape").splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6:
            members.append((fields[0][0], fields[5].split(" -> ")[0].split(" link to ")[0]))
    return done.returncode, members


def gnu_tar_member(shard: Path, name: str) -> bytes:
    return subprocess.run([TAR, "-xOf", str(shard), name], capture_output=True, timeout=30).stdout


@pytest.mark.skipif(TAR is None, reason="GNU tar is the oracle")
def test_fuzzed_tar_shards_through_the_pool(good):
    rng = np.random.default_rng(SEED)
    archive, _ = tar_seed()
    folder = good.cwd / "tar_mutants"
    folder.mkdir()
    shards = []
    for i in range(60):
        mutation = TAR_MUTATIONS[i % len(TAR_MUTATIONS)]
        shard = folder / f"t{i:03d}_{mutation.__name__}.tar"
        shard.write_bytes(mutation(archive, rng))
        shards.append(shard)
    table = good.cwd / "tar_per_image.csv"
    inputs = [str(shard.relative_to(good.cwd)) for shard in shards]
    run = compute(good.cwd, inputs, "skip", 2, "--per-image", str(table))
    assert run.code == 0, run.stderr
    output = json.loads(run.stdout)
    skipped = [entry["path"] for entry in output["skipped"]]
    with open(table, newline="") as handle:
        measured = [row["path"] for row in csv.DictReader(handle) if "::" in row["path"]]
    total, problems = good.good, []
    for shard, display in zip(shards, inputs):
        status, listed = gnu_tar(shard)
        named = [path for path in skipped if path.startswith(display)]
        for path in (p for p in measured if p.startswith(display + "::")):
            verdict = pillow_verdict(gnu_tar_member(shard, path.split("::", 1)[1]))
            if isinstance(verdict, str):
                problems.append(f"{path}: measured, but GNU tar + Pillow give: {verdict}")
            else:
                total = total + Sums.of(verdict)
        if status != 0 and not named:
            problems.append(f"{display}: GNU tar finds it damaged (exit {status}), chanstats names nothing")
        if status == 0:
            for kind, name in listed:
                shown = f"{display}::{name}"
                if kind == "-" and name.lower().endswith((".png", ".jpg")) and shown not in measured and shown not in skipped:
                    problems.append(f"{shown}: lost silently (neither measured nor skipped)")
    assert not problems, "\n".join(problems)
    mean, std = total.mean_std()
    assert (output["exact"]["mean"], output["exact"]["std"]) == (mean, std)

"""The benchmark's own machinery on a few corpus images: its entry point starts, it routes files
the way the corpus manifest says chanstats' fast paths should take them, its pixel-identity check
and its decode-only programs count what Pillow sees. The full benchmark is not run here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("skimage", reason="the benchmark corpus needs scikit-image (pip install -e '.[bench]')")

from bench import corpus, decoding, jobs, programs  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# The first 24 corpus images hold baseline 4:2:0, 4:4:4, progressive and greyscale JPEGs and RGB
# and RGBA PNGs; a CMYK JPEG, which chanstats leaves to Pillow, is added by hand.
IMAGES = 24

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus_files(tmp_path_factory) -> tuple[list[str], dict[str, str]]:
    """Corpus files and each file's kind: the corpus manifest's, and "jpeg-cmyk" for the added one."""
    root = tmp_path_factory.mktemp("corpus")
    paths = corpus.build_corpus(IMAGES, root=root, workers=1)
    kinds = {str(root / name): row["kind"] for name, row in corpus.load_manifest(root).items()}
    cmyk = root / "cmyk.jpg"
    rgb = np.random.default_rng(0).integers(0, 256, size=(40, 56, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").convert("CMYK").save(cmyk, "JPEG", quality=90)
    kinds[str(cmyk)] = "jpeg-cmyk"
    return [str(p) for p in paths] + [str(cmyk)], kinds


def expected_fast_path(kind: str) -> str | None:
    if kind == "jpeg-cmyk":
        return None  # simplejpeg cannot give Pillow's pixels for Adobe CMYK
    return "jpeg" if kind.startswith("jpeg") else "png"  # every corpus PNG is plain 8-bit


def test_entry_point_starts_without_running_the_benchmark():
    result = subprocess.run([sys.executable, "bench/run.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout


def test_routing_identity_and_decode_programs(corpus_files, tmp_path):
    files, kinds = corpus_files
    routed = jobs.route_files(files, workers=2)

    assert {r.path: r.fast_path for r in routed} == {f: expected_fast_path(kinds[f]) for f in files}
    assert {r.path: r.format for r in routed} == {f: "JPEG" if kinds[f].startswith("jpeg") else "PNG" for f in files}

    combinations = decoding.available_combinations()
    identity = jobs.check_identity(routed, combinations, workers=2)
    jpegs = sum(kind.startswith("jpeg") for kind in kinds.values())
    assert identity["simplejpeg"] == (jpegs - 1, jpegs - 1, 1)
    assert identity["chanstats-png"] == (len(files) - jpegs, len(files) - jpegs, 0)

    list_file = tmp_path / "files.txt"
    programs.write_list(list_file, routed)
    pixels = 0
    for path in files:
        with Image.open(path) as image:
            pixels += image.width * image.height
    for name in ("pillow", "simplejpeg+chanstats-png"):
        result = subprocess.run(
            [sys.executable, jobs.PROGRAMS, "decode", name, "2", str(list_file)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        counts = json.loads(result.stdout)
        assert (counts["images"], counts["pixels"]) == (len(files), pixels)

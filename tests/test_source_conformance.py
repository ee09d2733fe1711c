"""The conformance suite every registered source kind passes (``chanstats.sources.kinds.KINDS``).

Each kind has a writer below that stores the same images (and, on request, one bad item) its way;
the suite then checks, for every kind: the same exact statistics and percentiles as those images
as PNG files in a folder, and as numpy computes them; names stable across listings; a bad item
named by ``on_error="fail"`` and left out by ``"skip"``; a fingerprint that changes when an image
is added; byte-identical output in-process and with 2 workers; shards + merge and an interrupted,
resumed checkpoint byte-identical to one run. A new kind registered without a writer here fails
``test_every_registered_kind_has_a_writer``: writing its fixture is all it takes to get the suite.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from chanstats import api
from chanstats.errors import BadImagesError
from chanstats.options import RunOptions
from chanstats.scale.checkpoint import Checkpointer, Interval
from chanstats.sources.kinds import KINDS

# More images than the engine measures in-process whatever the worker count (16), so that a run
# with workers goes through the pool.
COUNT = 24
BROKEN_PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 40


def images(count: int = COUNT, seed: int = 3) -> list[np.ndarray]:
    """Small RGB images of a few shapes."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(5 + k % 3, 4 + k % 2, 3), dtype=np.uint8) for k in range(count)]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Written:
    """What a writer made: the run's inputs (paths, or a ``--dataset`` spec) and the text naming
    its bad item when one was asked for."""

    paths: list[str]
    dataset: str | None = None
    bad: str | None = None

    def options(self, **changes) -> RunOptions:
        return RunOptions(dataset=self.dataset, **changes)


# --- one writer per kind: (folder, images, with a bad item) -> Written ------------------------------

def write_files(folder: Path, arrays: list[np.ndarray], bad: bool) -> Written:
    root = folder / "files"
    root.mkdir()
    for k, array in enumerate(arrays):
        (root / f"img{k:03d}.png").write_bytes(png(array))
    if bad:
        (root / "img005b.png").write_bytes(BROKEN_PNG)
    return Written([str(root)], bad="img005b.png" if bad else None)


def write_tar(folder: Path, arrays: list[np.ndarray], bad: bool) -> Written:
    path = folder / "shard.tar"
    members = [(f"{k:03d}.png", png(array)) for k, array in enumerate(arrays)]
    if bad:
        members.insert(5, ("005b.png", BROKEN_PNG))
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return Written([str(path)], bad="shard.tar::005b.png" if bad else None)


def write_parquet(folder: Path, arrays: list[np.ndarray], bad: bool) -> Written:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cells = [png(array) for array in arrays]
    if bad:
        cells.insert(5, BROKEN_PNG)
    path = folder / "table.parquet"
    pq.write_table(pa.table({"image": pa.array(cells, pa.binary())}), path, row_group_size=7)
    return Written([str(path)], bad="table.parquet::row 5" if bad else None)


def write_arrays(folder: Path, arrays: list[np.ndarray], bad: bool) -> Written:
    path = folder / "stack.npz"
    members = {f"i{k:03d}": array for k, array in enumerate(arrays)}
    if bad:  # NaN pixels that no nodata leaves out: a bad image
        members = {**dict(list(members.items())[:5]), "nan": np.full((3, 3, 3), np.nan, np.float32),
                   **dict(list(members.items())[5:])}
    np.savez(path, **members)
    return Written([str(path)], bad="stack.npz::nan" if bad else None)


DATASET_MODULE = '''
import numpy as np

# Read whole at import: an open NpzFile shares one file offset with every forked worker.
with np.load({npz!r}) as archive:
    arrays = dict(archive)
order = sorted(arrays)


class Stack:
    def __len__(self):
        return len(order)

    def __getitem__(self, index):
        if order[index] == "bad":
            raise OSError("sample file gone")
        return {{"image": arrays[order[index]], "label": index}}


data = Stack()
'''


def write_dataset(folder: Path, arrays: list[np.ndarray], bad: bool) -> Written:
    members = {f"i{k:03d}": array for k, array in enumerate(arrays)}
    if bad:
        members["bad"] = arrays[0]  # sorted first: sample 0 raises in __getitem__
    np.savez(folder / "samples.npz", **members)
    (folder / "ds.py").write_text(DATASET_MODULE.format(npz=str(folder / "samples.npz")))
    return Written([], dataset=f"{folder / 'ds.py'}:data", bad="index 0" if bad else None)


WRITERS: dict[str, Callable[[Path, list[np.ndarray], bool], Written]] = {
    "image file": write_files,
    "tar shard": write_tar,
    "image table": write_parquet,
    "NumPy file": write_arrays,
    "Python dataset": write_dataset,
}
KIND_NAMES = [kind.name for kind in KINDS]
# Videos are not a kind of their own but a content format that every kind above can hold (a video
# file in a folder, a list, a shard): a video of N frames is one item, not N images, so the suite's
# "the same images stored your way" does not apply; tests/test_video.py covers them.


def test_every_registered_kind_has_a_writer():
    assert sorted(WRITERS) == sorted(KIND_NAMES)


def written(tmp_path: Path, kind: str, arrays: list[np.ndarray] | None = None, bad: bool = False) -> Written:
    folder = tmp_path / kind.replace(" ", "_")
    folder.mkdir()
    return WRITERS[kind](folder, images() if arrays is None else arrays, bad)


def compute(source: Written, workers: int = 0, **options):
    return api.compute(source.paths, source.options(**options), workers=workers)


def numbers(result) -> dict:
    data = result.to_dict()
    return {"channels": data["channels"], "count": data["count"], "exact": data["exact"],
            "percentiles": data.get("percentiles")}


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_same_numbers_as_the_images_in_a_folder_and_as_numpy(kind, tmp_path):
    arrays = images()
    result = compute(written(tmp_path, kind))
    folder = api.compute([write_files(tmp_path, arrays, False).paths[0]], workers=0)
    assert numbers(result) == numbers(folder)
    pixels = np.concatenate([a.reshape(-1, 3) for a in arrays]).astype(np.int64)
    assert result.mean == [float(s) / (len(pixels) * 255) for s in pixels.sum(axis=0)]
    np.testing.assert_allclose(result.std, (pixels / 255).std(axis=0), rtol=1e-12)
    assert result.images == COUNT


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_names_are_stable_and_distinct(kind, tmp_path):
    source = written(tmp_path, kind)
    first = api.plan(source.paths, source.options())
    second = api.plan(source.paths, source.options())
    names = [item.display for item in first.sources]
    assert names == [item.display for item in second.sources]
    assert len(set(names)) == len(names) == COUNT
    assert first.fingerprint == second.fingerprint


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_a_bad_item_is_named_and_can_be_skipped(kind, tmp_path):
    source = written(tmp_path, kind, bad=True)
    with pytest.raises(BadImagesError) as failure:
        compute(source)
    assert len(failure.value.bad) == 1 and failure.value.bad[0][0].endswith(source.bad)
    skipped = compute(source, on_error="skip")
    assert [path for path, _ in skipped.skipped] == [failure.value.bad[0][0]]
    (tmp_path / "good").mkdir()
    good = compute(written(tmp_path / "good", kind))
    assert numbers(skipped)["exact"] == numbers(good)["exact"]


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_the_fingerprint_changes_when_an_image_is_added(kind, tmp_path):
    arrays = images()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    before = written(tmp_path / "a", kind, arrays)
    after = written(tmp_path / "b", kind, arrays + images(1, seed=9))
    assert api.plan(before.paths, before.options()).fingerprint != api.plan(after.paths, after.options()).fingerprint


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_output_is_byte_identical_with_workers(kind, tmp_path):
    source = written(tmp_path, kind)
    alone, pooled = compute(source, workers=0), compute(source, workers=2)
    assert alone.dumps() == pooled.dumps()
    assert alone.per_image.to_csv(alone.channels) == pooled.per_image.to_csv(pooled.channels)


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_shards_merged_are_byte_identical_to_one_run(kind, tmp_path):
    source = written(tmp_path, kind)
    whole = compute(source)
    parts = [tmp_path / f"part{k}.json" for k in (1, 2)]
    for k, part in enumerate(parts, start=1):
        api.compute_shard(source.paths, (k, 2), part, source.options(), workers=0, partial_format="json")
    assert api.merge(parts).dumps() == whole.dumps()


class Interrupted(Exception):
    pass


class StopAfterSaving(Checkpointer):
    """A checkpointer that stops the run once it has saved some images, as a crash would."""

    def after_chunk(self, state, count):
        super().after_chunk(state, count)
        if state.done >= 5:
            self.save(state)
            raise Interrupted


@pytest.mark.parametrize("kind", KIND_NAMES)
def test_an_interrupted_run_resumes_to_the_same_bytes(kind, tmp_path):
    source = written(tmp_path, kind)
    whole = compute(source)
    checkpoint = tmp_path / "run.ckpt"
    stopping = StopAfterSaving(str(checkpoint), Interval.parse("2"), False)
    with pytest.raises(Interrupted):
        api.measure(api.plan(source.paths, source.options()), workers=0, checkpoint=stopping)
    stopping.unlock()  # as the crashed process's exit would
    assert checkpoint.exists()
    resumed = api.compute(source.paths, source.options(), workers=0, checkpoint=checkpoint)
    assert resumed.dumps() == whole.dumps()
    assert not checkpoint.exists()

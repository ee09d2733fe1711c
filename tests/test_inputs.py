"""Bad input around the images, through the real command: link loops and folders that cannot be
listed, damaged Parquet files, user code that exits, iterables that raise, configs that cannot be
used, options that cannot apply, and names that would split a message line. In-process and
through the worker pool (the ``engine`` fixture) wherever measuring is involved."""

from __future__ import annotations

import copy
import io
import json
import math
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import chanstats
from chanstats.errors import ChanstatsError

from .helpers.cli import chanstats_command, run_cli
from .helpers.engines import Engine
from .helpers.files import write_image
from .helpers.optional import require


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error of a run that must fail with exit code 2 and one line on stderr, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stdout == "" and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


def bad_list(result: subprocess.CompletedProcess) -> list[str]:
    """The bad entries an ``--on-error fail`` run lists (exit 2, a summary line then one per entry)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == "", result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Error: ") and "could not be read" in lines[0], result.stderr
    return [line.strip() for line in lines[1:]]


def images(folder: Path, count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (6 + i % 3, 5, 3), dtype=np.uint8) for i in range(count)]
    for i, array in enumerate(arrays):
        write_image(folder / f"img{i:02d}.png", array)
    return arrays


def exact_of(arrays: list[np.ndarray]) -> tuple[list[float], list[float]]:
    """The population mean/std per channel on the [0, 1] scale, by numpy in float64."""
    pixels = np.concatenate([a.reshape(-1, a.shape[-1]) for a in arrays]).astype(np.float64) / 255
    return pixels.mean(axis=0).tolist(), pixels.std(axis=0).tolist()


def compute_json(*args: str) -> dict:
    result = run_cli("compute", *args, "-q")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- folders: link loops, folders that cannot be listed -------------------------------------------

def test_link_loops_anywhere_in_a_tree_never_stop_the_walk(tmp_path, engine: Engine):
    """A loop of links not named as an image is ignored like any other non-image file; one named as
    an image is a bad image, skipped under skip and listed under fail."""
    data = tmp_path / "data"
    arrays = images(data / "sub", 3)
    os.symlink("loop_b", data / "sub" / "loop_a")  # named like a folder
    os.symlink("loop_a", data / "sub" / "loop_b")
    os.symlink("spin.png", data / "spin.png")  # named like an image
    inputs = engine.padded([str(data)], tmp_path / "pad")

    skipped = compute_json(*inputs, *engine.options, "--on-error", "skip")
    assert skipped["skipped"] == [{"path": f"{data}/spin.png", "error": "cannot read: Too many levels of symbolic links"}]
    assert skipped["count"]["images"] == 3 + engine.padding

    assert bad_list(run_cli("compute", *inputs, *engine.options, "-q")) == [
        f"{data}/spin.png: cannot read: Too many levels of symbolic links"]

    os.unlink(data / "spin.png")  # only the loop named like a folder is left: nothing is lost
    alone = compute_json(str(data / "sub"), *engine.options)
    assert alone["skipped"] == [] and alone["count"]["images"] == 3
    mean, std = exact_of(arrays)
    assert alone["exact"]["mean"] == pytest.approx(mean, abs=1e-12)
    assert alone["exact"]["std"] == pytest.approx(std, abs=1e-12)


def _unreadable_folder_runner() -> list[str]:
    """A command prefix under which a ``chmod 000`` folder cannot be listed: none as an ordinary
    user; as root, one without the capabilities that let root read any folder."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: root lists any folder, so none can be made unreadable")
    caps = "-dac_override,-dac_read_search"
    prefix = [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot drop root's capabilities here ({probe.stderr.decode().strip()})")
    return prefix


def test_a_folder_that_cannot_be_listed_is_one_bad_entry(tmp_path, engine: Engine):
    prefix = _unreadable_folder_runner()
    data = tmp_path / "data"
    images(data / "a_ok", 2)
    images(data / "locked", 2)
    inputs = engine.padded([str(data)], tmp_path / "pad")
    (data / "locked").chmod(0)
    try:
        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([*prefix, *chanstats_command(), "compute", *inputs, *engine.options, "-q", *args],
                                  capture_output=True, text=True, timeout=120)

        skipped = run("--on-error", "skip")
        assert skipped.returncode == 0, skipped.stderr
        config = json.loads(skipped.stdout)
        assert config["skipped"] == [{"path": f"{data}/locked/",
                                      "error": "cannot list folder: Permission denied; its images are not measured"}]
        assert config["count"]["images"] == 2 + engine.padding
        assert bad_list(run()) == [f"{data}/locked/: cannot list folder: Permission denied; its images are not measured"]
        over = run("--on-error", "skip", "--max-bad", "0")
        assert over.returncode == 2 and f"{data}/locked/: cannot list folder" in over.stderr
    finally:
        (data / "locked").chmod(0o755)


# --- Parquet files: a damaged file or row group is a bad entry ---------------------------------

def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def _table(path: Path, arrays: list[np.ndarray], rows_per_group: int) -> None:
    pa = require("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": pa.array([_png(a) for a in arrays], pa.binary())}), path,
                   row_group_size=rows_per_group)


def test_a_truncated_parquet_file_is_a_bad_entry_like_a_damaged_shard(tmp_path, engine: Engine):
    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 256, (5, 4, 3), dtype=np.uint8) for _ in range(6)]
    _table(tmp_path / "whole.parquet", arrays, 3)
    data = (tmp_path / "whole.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    inputs = engine.padded([str(tmp_path / "cut.parquet"), str(tmp_path / "whole.parquet")], tmp_path / "pad")

    config = compute_json(*inputs, *engine.options, "--on-error", "skip")
    assert [entry["path"] for entry in config["skipped"]] == [str(tmp_path / "cut.parquet")]
    assert config["skipped"][0]["error"].startswith("not a readable Parquet file (damaged or truncated?): ")
    assert config["count"]["images"] == 6 + engine.padding

    listed = bad_list(run_cli("compute", *inputs, *engine.options, "-q"))
    assert len(listed) == 1 and listed[0].startswith(f"{tmp_path / 'cut.parquet'}: not a readable Parquet file")


def test_a_damaged_row_group_loses_its_rows_only(tmp_path, engine: Engine):
    pq = require("pyarrow.parquet")
    rng = np.random.default_rng(4)
    arrays = [rng.integers(0, 256, (5, 4, 3), dtype=np.uint8) for _ in range(8)]
    _table(tmp_path / "table.parquet", arrays, 4)
    column = pq.ParquetFile(tmp_path / "table.parquet").metadata.row_group(0).column(0)
    damaged = bytearray((tmp_path / "table.parquet").read_bytes())
    damaged[column.data_page_offset: column.data_page_offset + 6] = b"\xff" * 6  # the first page's header
    (tmp_path / "damaged.parquet").write_bytes(bytes(damaged))
    for i, array in enumerate(arrays[4:]):  # the rows that survive, as files: the oracle run
        write_image(tmp_path / "survivors" / f"{i}.png", array)
    pad = tmp_path / "pad"

    config = compute_json(*engine.padded([str(tmp_path / "damaged.parquet")], pad), *engine.options, "--on-error", "skip")
    assert [entry["path"] for entry in config["skipped"]] == [f"{tmp_path / 'damaged.parquet'}::row {r}" for r in range(4)]
    assert all(entry["error"].startswith("cannot read its part of the table (damaged") for entry in config["skipped"])
    same = compute_json(*engine.padded([str(tmp_path / "survivors")], pad), *engine.options)
    assert config["exact"] == same["exact"] and config["count"]["images"] == same["count"]["images"]


# --- user code that exits, iterables that raise ------------------------------------------------

DATASETS = textwrap.dedent('''
    import sys
    import numpy as np

    class Exits:
        """Sample 21 calls sys.exit(0): past the first chunk, so a worker meets it."""
        def __len__(self):
            return 40
        def __getitem__(self, index):
            if index == 21:
                sys.exit(0)
            return np.full((4, 4, 3), index, np.uint8)

    def exits_when_made():
        raise SystemExit(0)

    def breaks_at_two():
        for index in range(5):
            if index == 2:
                raise ValueError("the stream broke")
            yield np.zeros((4, 4, 3), np.uint8)

    class Stream:
        def __iter__(self):
            return breaks_at_two()

    stream = Stream()
''')


@pytest.fixture
def user_code(tmp_path) -> Path:
    (tmp_path / "user_datasets.py").write_text(DATASETS)
    (tmp_path / "exit_at_import.py").write_text("import sys\nsys.exit(0)\nthing = 1\n")
    (tmp_path / "exiting_transform.py").write_text("import sys\n\ndef train(image):\n    sys.exit(0)\n")
    return tmp_path


@pytest.mark.parametrize("on_error", ["fail", pytest.param("skip", marks=pytest.mark.slow)])
def test_a_dataset_that_exits_is_an_error_naming_the_sample(user_code, engine: Engine, on_error):
    spec = f"{user_code / 'user_datasets.py'}:Exits"
    error = one_line_error(run_cli("compute", "--dataset", spec, *engine.options, "--on-error", on_error, "-q"))
    assert error == (f"Error: {spec}::index 21: user code raised SystemExit(0); it must raise an exception, "
                     "not exit the process\n")


def test_a_transform_that_exits_is_an_error_naming_the_image(user_code, engine: Engine):
    images(user_code / "data", 3)
    inputs = engine.padded([str(user_code / "data")], user_code / "pad")
    transform = f"{user_code / 'exiting_transform.py'}:train"
    error = one_line_error(run_cli("compute", *inputs, "--transform", transform, *engine.options, "-q"))
    assert error.startswith(f"Error: transform on {user_code / 'data'}/img00.png (epoch 0): user code raised SystemExit(0)")


def test_code_that_exits_while_a_dataset_is_made_or_imported_names_it(user_code):
    spec = f"{user_code / 'user_datasets.py'}:exits_when_made"
    error = one_line_error(run_cli("compute", "--dataset", spec, "-q"))
    assert error.startswith(f"Error: --dataset {spec}: calling exits_when_made(): user code raised SystemExit(0)")
    spec = f"{user_code / 'exit_at_import.py'}:thing"
    with pytest.raises(ChanstatsError) as refused:
        chanstats.compute([], dataset=spec, workers=0)
    assert str(refused.value).startswith(f"--dataset {spec}: running {user_code / 'exit_at_import.py'}: user code raised SystemExit(0)")
    images(user_code / "data", 2)
    with pytest.raises(ChanstatsError, match=r"^--transform .*exit_at_import.py:thing: .*user code raised SystemExit\(0\)"):
        chanstats.compute(str(user_code / "data"), transform=spec, workers=0)


@pytest.mark.parametrize("on_error", ["fail", pytest.param("skip", marks=pytest.mark.slow)])
def test_an_iterable_that_raises_is_one_line_naming_the_position(user_code, on_error):
    spec = f"{user_code / 'user_datasets.py'}:stream"
    error = one_line_error(run_cli("compute", "--dataset", spec, "--on-error", on_error, "-q"))
    assert error == (f"Error: {spec}::sample 2: the iterable raised ValueError: the stream broke (epoch 0); an iterable "
                     "cannot be resumed past an error, so --on-error skip cannot skip it: fix the dataset, or give a "
                     "map-style one\n")


class Exits:
    def __len__(self):
        return 3

    def __getitem__(self, index):
        raise SystemExit(0)


class Halt(BaseException):
    pass


class Halts(Exits):
    def __getitem__(self, index):
        raise Halt("halt")


class ExitingStream:
    def __iter__(self):
        yield np.zeros((4, 4, 3), np.uint8)
        raise SystemExit(3)


def test_a_dataloader_that_raises_names_the_batch():
    import torch

    class Broken(torch.utils.data.IterableDataset):
        def __iter__(self):
            for index in range(6):
                if index == 4:
                    raise OSError("the shard vanished")
                yield torch.zeros(3, 4, 4, dtype=torch.uint8)

    loader = torch.utils.data.DataLoader(Broken(), batch_size=2)
    with pytest.raises(ChanstatsError) as failure:
        chanstats.compute(loader, on_error="skip", workers=0)
    assert str(failure.value) == (
        "DataLoader::batch 2: the iterable raised OSError: the shard vanished (epoch 0); an iterable cannot be resumed "
        "past an error, so --on-error skip cannot skip it: fix the dataset, or give a map-style one")


def test_the_api_raises_for_user_code_that_exits():
    with pytest.raises(ChanstatsError, match=r"^Exits::index 0: user code raised SystemExit\(0\); it must raise"):
        chanstats.compute(Exits(), workers=0)
    with pytest.raises(ChanstatsError, match=r"^Halts::index 0: user code raised Halt: halt; it must raise"):
        chanstats.compute(Halts(), workers=0)
    with pytest.raises(ChanstatsError, match=r"^ExitingStream::sample 1 \(epoch 0\): user code raised SystemExit\(3\)"):
        chanstats.compute(ExitingStream(), workers=0)


# --- configs read back --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_config(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("config")
    images(folder / "data", 3)
    return compute_json(str(folder / "data"), "--workers", "0")


def _set(path: str, value):
    def change(config: dict) -> None:
        *parents, last = path.split(".")
        target = config
        for key in parents:
            target = target[key]
        if isinstance(target, list):
            last = int(last)
        target[last] = value
    return change


NAN, INF, HUGE = "__nan__", "__inf__", "__huge__"
BAD_CONFIGS = {
    "nan-std": (_set("exact.std.0", NAN), "exact.std[0] is nan, not a finite number"),
    "infinite-mean": (_set("exact.mean.1", INF), "exact.mean[1] is inf, not a finite number"),
    "huge-mean": (_set("exact.mean.2", HUGE), "exact.mean[2] is 10000000000000000000… (401 characters), not a finite number"),
    "negative-std": (_set("exact.std.2", -0.25), "exact.std[2] is -0.25; a standard deviation cannot be negative"),
    "fewer-stds": (lambda c: c["exact"]["std"].pop(), "exact.mean and exact.std must hold one finite number per channel (got 3 and 2 values)"),
    "fewer-channels": (lambda c: c["channels"].pop(), "'channels' must list one name per exact.mean value (3)"),
    "raw-count": (lambda c: c["exact"]["mean_raw"].pop(), "exact.mean_raw holds 2 values for 3 channels"),
    "newer": (_set("chanstats", "99.0.0"), "written by chanstats 99.0.0, newer than this one"),
    "no-version": (_set("chanstats", 7), "'chanstats' must be the version that wrote the config, got 7"),
    "unknown-method": (_set("exact.method", "median"), "unknown exact.method 'median'"),
    "zero-scale": (_set("scale", 0), "'scale' must be a positive finite number, got 0"),
}


def _write_config(path: Path, config: dict) -> None:
    text = json.dumps(config)
    text = text.replace(f'"{NAN}"', "NaN").replace(f'"{INF}"', "Infinity").replace(f'"{HUGE}"', "1" + "0" * 400)
    path.write_text(text)


def _bad_config(tmp_path, good_config, case):
    """The good config changed as BAD_CONFIGS[case] says: (its file, the mapping, the reason given)."""
    change, reason = BAD_CONFIGS[case]
    config = copy.deepcopy(good_config)
    change(config)
    path = tmp_path / "bad.json"
    _write_config(path, config)
    return path, config, reason


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_every_command_that_reads_a_config_refuses_an_unusable_one(tmp_path, good_config, case):
    path, config, reason = _bad_config(tmp_path, good_config, case)
    error = one_line_error(run_cli("show", str(path)))
    assert error.startswith(f"Error: {path}: {reason}"), error
    for read in (lambda: chanstats.export(str(path), "json"), lambda: chanstats.check(str(path), workers=0)):
        with pytest.raises(ChanstatsError) as refused:
            read()
        assert str(refused.value).startswith(f"{path}: {reason}")
    if case not in ("nan-std", "infinite-mean", "huge-mean"):  # a mapping cannot come from JSON with those
        with pytest.raises(ChanstatsError) as refused:
            chanstats.export(config, "torchvision")
        assert str(refused.value).startswith(f"config: {reason}")


@pytest.mark.parametrize("case", ["nan-std", "newer"])
def test_show_export_and_check_share_the_one_validation(tmp_path, good_config, case):
    path, _, reason = _bad_config(tmp_path, good_config, case)
    for command in (["show", str(path)], ["export", str(path), "--to", "torchvision"],
                    ["export", str(path), "--to", "json"], ["check", "--against", str(path)]):
        error = one_line_error(run_cli(*command))
        assert error.startswith(f"Error: {path}: {reason}"), (command, error)


def test_a_zero_std_shows_but_does_not_export(tmp_path):
    write_image(tmp_path / "flat" / "a.png", np.full((4, 4, 3), 9, np.uint8))
    write_image(tmp_path / "flat" / "b.png", np.full((4, 4, 3), 9, np.uint8))
    assert run_cli("compute", str(tmp_path / "flat"), "-q", "-o", str(tmp_path / "flat.json")).returncode == 0
    shown = run_cli("show", str(tmp_path / "flat.json"))
    assert shown.returncode == 0 and "Normalize(mean=[0.0352941" in shown.stdout
    error = one_line_error(run_cli("export", str(tmp_path / "flat.json"), "--to", "torchvision"))
    assert error == (f"Error: {tmp_path / 'flat.json'}: exact std is 0 for channel R, G, B (every pixel has one value "
                     "there): normalizing would divide by zero\n")


def test_configs_this_version_writes_still_read(tmp_path, good_config):
    path = tmp_path / "good.json"
    path.write_text(json.dumps(good_config))
    for command in (["show", str(path)], ["export", str(path), "--to", "timm"]):
        assert run_cli(*command).returncode == 0
    older = dict(good_config, chanstats="0.0.9")
    path.write_text(json.dumps(older))
    assert run_cli("show", str(path)).returncode == 0


# --- options that cannot apply ---------------------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--key", "image"], "--key image applies to a --dataset's samples only, and these inputs are paths"),
    (["--layout", "CHW"], "--layout CHW applies to a --dataset's samples only, and these inputs are paths"),
    (["--batches", "loader"], "--batches loader follows a DataLoader's own batches (a --dataset), and these inputs are paths"),
    (["--column", "image"], "--column image applies to Parquet and Arrow tables, and the inputs hold none"),
    (["--max-bad", "3"], "--max-bad 3 applies with --on-error skip only (under --on-error fail any bad image ends the run)"),
    (["--scale", "1e-320"], "--scale '1e-320': must be a positive number from 1e-30 to 1e+30 (the raw value that maps to 1.0)"),
    (["--scale", "1e31"], "--scale '1e31': must be a positive number from 1e-30 to 1e+30 (the raw value that maps to 1.0)"),
    (["--resize", "4", "--histogram"], "--percentiles and --histogram are not computed on transformed samples "
                                        "(--transform, --resize, --center-crop): drop them, or the transform"),
    (["--center-crop", "2", "--percentiles", "50"], "--percentiles and --histogram are not computed on transformed "
                                                     "samples (--transform, --resize, --center-crop): drop them, or the transform"),
])
def test_options_that_cannot_apply_are_refused_in_one_line(tmp_path, args, message):
    images(tmp_path / "data", 2)
    assert one_line_error(run_cli("compute", str(tmp_path / "data"), *args, "-q")) == f"Error: {message}\n"


def test_the_api_refuses_them_too(tmp_path):
    images(tmp_path / "data", 2)
    for overrides in ({"key": "image"}, {"layout": "HWC"}, {"batches": "loader"}, {"column": "image"}, {"max_bad": 1}):
        with pytest.raises(ChanstatsError, match="applies|follows"):
            chanstats.compute(str(tmp_path / "data"), workers=0, **overrides)
    with pytest.raises(ChanstatsError, match="--column image applies to Parquet and Arrow tables, not to a --dataset"):
        chanstats.compute([np.zeros((2, 2, 3), np.uint8)], column="image")


def test_the_extreme_scales_in_range_give_normal_numbers(tmp_path):
    arrays = images(tmp_path / "data", 2)
    mean, std = exact_of(arrays)
    for scale in ("1e-30", "1e30"):
        config = compute_json(str(tmp_path / "data"), "--scale", scale, "--workers", "0")
        factor = 255 / float(scale)
        assert config["exact"]["mean"] == pytest.approx([m * factor for m in mean], rel=1e-12)
        assert config["exact"]["std"] == pytest.approx([s * factor for s in std], rel=1e-9)
        assert all(math.isfinite(v) and v != 0 for v in config["exact"]["mean"])


# --- --mode L with a dataset -----------------------------------------------------------------------

GREY_DATASETS = textwrap.dedent('''
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(11)
    data = [rng.integers(0, 256, (5, 7, 3 + index % 2), dtype=np.uint8) for index in range(40)]

    class Arrays:
        def __len__(self):
            return len(data)
        def __getitem__(self, index):
            return data[index]

    class Pictures(Arrays):
        def __getitem__(self, index):
            return Image.fromarray(data[index])

    class Floats(Arrays):
        def __getitem__(self, index):
            return data[index].astype(np.float32)

    class Stream:
        def __iter__(self):
            return iter(data)

    stream = Stream()
''')


def _grey_oracle() -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(11)
    data = [rng.integers(0, 256, (5, 7, 3 + index % 2), dtype=np.uint8) for index in range(40)]
    return exact_of([np.asarray(Image.fromarray(a).convert("L"))[:, :, None] for a in data])  # Pillow itself


def test_mode_l_converts_dataset_samples_as_pillow_converts_files(tmp_path, engine: Engine):
    (tmp_path / "grey_datasets.py").write_text(GREY_DATASETS)
    mean, std = _grey_oracle()
    config = compute_json("--dataset", f"{tmp_path / 'grey_datasets.py'}:Arrays", "--mode", "L", *engine.options)
    assert config["channels"] == ["L"]
    assert config["exact"]["mean"] == pytest.approx(mean, abs=1e-12)
    assert config["exact"]["std"] == pytest.approx(std, abs=1e-12)


def test_mode_l_refuses_samples_it_cannot_convert(tmp_path):
    (tmp_path / "grey_datasets.py").write_text(GREY_DATASETS)
    spec = f"{tmp_path / 'grey_datasets.py'}:Floats"
    with pytest.raises(ChanstatsError) as refused:
        chanstats.compute([], dataset=spec, mode="L", workers=0)
    assert str(refused.value).startswith(f"{spec}::index 0: --mode L converts 8-bit grey or colour samples")


@pytest.mark.slow
def test_mode_l_converts_pil_samples_iterables_and_transform_inputs(tmp_path, engine: Engine):
    (tmp_path / "grey_datasets.py").write_text(GREY_DATASETS)
    (tmp_path / "unchanged.py").write_text("def same(image):\n    return image\n")
    mean, std = _grey_oracle()
    runs = [("Pictures",), ("stream",), ("Arrays", "--transform", f"{tmp_path / 'unchanged.py'}:same"),
            ("Pictures", "--transform", f"{tmp_path / 'unchanged.py'}:same")]
    for name, *more in runs:
        config = compute_json("--dataset", f"{tmp_path / 'grey_datasets.py'}:{name}", "--mode", "L", *engine.options, *more)
        assert config["channels"] == ["L"], name
        assert config["exact"]["mean"] == pytest.approx(mean, abs=1e-12), (name, more)
        assert config["exact"]["std"] == pytest.approx(std, abs=1e-12), (name, more)


# --- names that would split a line -------------------------------------------------------------------

def test_a_name_with_a_newline_stays_on_its_line(tmp_path, engine: Engine):
    data = tmp_path / "data"
    images(data, 2)
    (data / "bad\nname.png").write_bytes(b"not a picture")
    (data / "plain.png").write_bytes(b"not a picture either")
    inputs = engine.padded([str(data)], tmp_path / "pad")
    listed = bad_list(run_cli("compute", *inputs, *engine.options, "-q"))
    assert listed == [f"{data}/bad\\nname.png: not an image Pillow can read",
                      f"{data}/plain.png: not an image Pillow can read"]
    config = compute_json(*inputs, *engine.options, "--on-error", "skip")
    assert [entry["path"] for entry in config["skipped"]] == [f"{data}/bad\\nname.png", f"{data}/plain.png"]
    per_image = tmp_path / "rows.csv"
    assert run_cli("compute", *inputs, *engine.options, "--on-error", "skip", "-q", "-o", str(tmp_path / "c.json"),
                   "--per-image", str(per_image)).returncode == 0
    assert len(per_image.read_text().splitlines()) == 1 + 2 + engine.padding


def test_a_config_recorded_with_max_bad_under_fail_still_checks(tmp_path, good_config):
    """Recorded before --max-bad was refused without skip: it never had an effect, so it replays."""
    config = copy.deepcopy(good_config)
    config["options"]["max_bad"] = "3"
    assert config["options"]["on_error"] == "fail"
    assert chanstats.check(config, workers=0).passed

"""Augmentation-aware statistics: ``--transform``, ``--resize``/``--center-crop``, ``--epochs``, seeding.

Oracles are torchvision itself (its transforms applied directly to the decoded images) and plain
Python integers / numpy float64 on the pixels it returns; never chanstats' own numbers.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from torchvision.transforms import v2

import chanstats
from chanstats.cli import cli
from chanstats.errors import BadSpecError
from chanstats.transforms import resolve

from .helpers.oracles import torchvision_pil_loader

N_IMAGES = 24  # more than one engine chunk (16), so workers=1/2 really run in worker processes


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """RGB PNGs of different sizes and brightness, in two class folders."""
    root = tmp_path_factory.mktemp("transforms") / "data"
    rng = np.random.default_rng(55)
    for i in range(N_IMAGES):
        height, width = 18 + (i * 5) % 13, 22 + (i * 7) % 11
        array = rng.integers(5 * (i % 4), 200 + 2 * i, size=(height, width, 3), dtype=np.uint8)
        path = root / f"class{i % 2}" / f"img{i:02d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
    return root


def image_paths(root: Path) -> list[Path]:
    return sorted(root.rglob("*.png"), key=lambda p: str(p.relative_to(root)).encode())


def exact_oracle(arrays: list[np.ndarray]) -> tuple[list[Fraction], list[Fraction]]:
    """Exact mean and variance (ddof 0) per channel of uint8 (H, W, C) arrays, on the [0, 1] scale."""
    channels = arrays[0].shape[-1]
    n = sum(a.shape[0] * a.shape[1] for a in arrays)
    sums = [sum(int(a[..., c].astype(np.int64).sum()) for a in arrays) for c in range(channels)]
    sumsq = [sum(int((a[..., c].astype(np.int64) ** 2).sum()) for a in arrays) for c in range(channels)]
    mean = [Fraction(s, n * 255) for s in sums]
    var = [Fraction(n * q - s * s, n * n * 255 * 255) for s, q in zip(sums, sumsq)]
    return mean, var


def float_oracle(tensors: list[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """float64 mean and population std per channel of (C, H, W) tensors, all pixels pooled."""
    pooled = np.concatenate([t.double().numpy().reshape(t.shape[0], -1) for t in tensors], axis=1)
    mean = pooled.mean(axis=1)
    return mean, np.sqrt(((pooled - mean[:, None]) ** 2).mean(axis=1))


def assert_rel(actual, expected, tol: float) -> None:
    for a, e in zip(actual, expected, strict=True):
        assert abs(a - float(e)) <= tol * abs(float(e)), (a, float(e))


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


RANDOM_SPEC = """
- RandomResizedCrop: {size: 12, scale: [0.3, 1.0]}
- RandomHorizontalFlip
- ColorJitter: {brightness: 0.4, contrast: 0.4, saturation: 0.4}
"""


# --- spec parsing ------------------------------------------------------------------------------


def test_yaml_and_json_specs_parse_to_the_same_pipeline(tmp_path):
    steps = [
        {"Resize": {"size": 20, "interpolation": "bicubic"}},
        "RandomHorizontalFlip",
        {"RandomApply": {"transforms": [{"ColorJitter": {"brightness": 0.2}}], "p": 0.5}},
        [{"CenterCrop": 16}],
        "ToImage",
        {"ToDtype": {"dtype": "float32", "scale": True}},
        {"Normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}},
    ]
    yaml_spec = write(tmp_path / "spec.yaml", """
- Resize: {size: 20, interpolation: bicubic}
- RandomHorizontalFlip
- RandomApply:
    transforms:
      - ColorJitter: {brightness: 0.2}
    p: 0.5
- - CenterCrop: 16
- ToImage
- ToDtype: {dtype: float32, scale: true}
- Normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}
""")
    json_spec = write(tmp_path / "spec.json", json.dumps(steps))
    for text in (yaml_spec, json_spec, json.dumps(steps)):
        spec, recorded = resolve(text)
        assert recorded == steps  # the content is recorded, not the file name
        pipeline = spec.build()
        kinds = [type(t) for t in pipeline.transforms]
        assert kinds == [v2.Resize, v2.RandomHorizontalFlip, v2.RandomApply, v2.Compose, v2.ToImage, v2.ToDtype, v2.Normalize]
        resize, apply, crop, to_dtype = pipeline.transforms[0], pipeline.transforms[2], pipeline.transforms[3], pipeline.transforms[5]
        assert resize.interpolation == v2.InterpolationMode.BICUBIC
        assert type(apply.transforms[0]) is v2.ColorJitter and apply.p == 0.5
        assert type(crop.transforms[0]) is v2.CenterCrop and list(crop.transforms[0].size) == [16, 16]
        assert to_dtype.dtype == torch.float32 and to_dtype.scale is True


def test_shorthands_come_first_and_are_recorded_separately():
    spec, recorded = resolve([{"ToImage": {}}], resize=32, center_crop=28)
    assert recorded == [{"ToImage": {}}]
    kinds = [type(t) for t in spec.build().transforms]
    assert kinds == [v2.Resize, v2.CenterCrop, v2.ToImage]
    assert resolve(None) == (None, None)


def test_unknown_name_lists_close_matches():
    with pytest.raises(BadSpecError) as caught:
        resolve([{"Resize": {"size": 8}}, {"RandomResizeCrop": {"size": 8}}])[0].build()
    message = str(caught.value)
    assert "step 2" in message and "'RandomResizeCrop'" in message and "RandomResizedCrop" in message
    with pytest.raises(BadSpecError, match="did you mean ColorJitter"):
        resolve(["colorjitter"])[0].build()


def test_bad_kwargs_name_the_step():
    with pytest.raises(BadSpecError) as caught:
        resolve(["RandomHorizontalFlip", {"ColorJitter": {"brightnes": 0.4}}])[0].build()
    assert "step 2 (ColorJitter)" in str(caught.value) and "brightnes" in str(caught.value)
    with pytest.raises(BadSpecError, match=r"step 1 \(Resize\): interpolation 'smooth'"):
        resolve([{"Resize": {"size": 8, "interpolation": "smooth"}}])[0].build()
    with pytest.raises(BadSpecError, match=r"step 1, transforms step 1 \(Resise\)|step 1 \(RandomApply\), transforms step 1"):
        resolve([{"RandomApply": {"transforms": [{"Resise": {"size": 3}}]}}])[0].build()


@pytest.mark.parametrize(
    "spec_text, expected",
    [
        ("- RandomResizeCrop: {size: 8}\n", "did you mean RandomResizedCrop"),
        ("- ColorJitter: {brightnes: 0.4}\n", "step 1 (ColorJitter)"),
        ("RandomHorizontalFlip: {}\n", "a transform spec is a list of steps"),
        ("- [unclosed\n", "not valid YAML/JSON"),
        ("- {Resize: {size: 8}, CenterCrop: {size: 4}}\n", "expected a name or {Name: {kwargs}}"),
    ],
)
def test_cli_bad_spec_is_a_one_line_exit_2(folder, tmp_path, spec_text, expected):
    spec = write(tmp_path / "bad.yaml", spec_text)
    result = CliRunner().invoke(cli, ["compute", str(folder), "--transform", spec, "-q"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], result.stderr


@pytest.mark.parametrize(
    "value, expected",
    [
        ("missing.yaml", "cannot read"),
        ("no_such_module_xyz:train", "cannot import 'no_such_module_xyz'"),
        ("{here}/tf.py:trian", "has no attribute 'trian'; did you mean train?"),
        ("{here}/tf.py:NOT_CALLABLE", "not a callable transform"),
        ("[{Normalize: {mean: [0.5, 0.5], std: [0.2, 0.2]}}]", "class0/img00.png (epoch 0): Normalize() does not support PIL images"),
        ("[FiveCrop]", "FiveCrop"),
        ("[{FiveCrop: 4}]", "it must end in one image"),
    ],
)
def test_cli_bad_transform_values_exit_2(folder, tmp_path, value, expected):
    write(tmp_path / "tf.py", "train = lambda image: image\nNOT_CALLABLE = 3\n")
    result = CliRunner().invoke(cli, ["compute", str(folder), "--transform", value.replace("{here}", str(tmp_path)), "-q", "--workers", "0"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], result.stderr


# --- values against torchvision applied directly --------------------------------------------------


def test_deterministic_spec_equals_torchvision_applied_directly(folder, tmp_path):
    resize_crop = v2.Compose([v2.Resize(16), v2.CenterCrop(14)])
    arrays = [np.asarray(resize_crop(torchvision_pil_loader(p))) for p in image_paths(folder)]
    mean, var = exact_oracle(arrays)
    pixels = sum(a.shape[0] * a.shape[1] for a in arrays)

    spec = write(tmp_path / "spec.yaml", "- Resize: 16\n- CenterCrop: {size: 14}\n")
    via_spec = chanstats.compute(str(folder), transform=spec, workers=0)
    via_shorthands = chanstats.compute(str(folder), resize=16, center_crop=14, workers=0)
    for result in (via_spec, via_shorthands):
        assert result.exact_method == "integer" and result.scale == 255
        assert result.exact.pixels == pixels and result.samples == N_IMAGES
        assert_rel(result.mean, mean, 1e-12)
        assert_rel(result.std, [math.sqrt(v) for v in var], 1e-12)
    assert via_spec.options["transform"] == [{"Resize": 16}, {"CenterCrop": {"size": 14}}]
    assert via_shorthands.options["resize"] == 16 and via_shorthands.options["center_crop"] == 14


def test_float_spec_ending_in_normalize_equals_torchvision_float_output(folder):
    mean_in, std_in = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    steps = [
        {"Resize": {"size": 15}},
        "ToImage",
        {"ToDtype": {"dtype": "float32", "scale": True}},
        {"Normalize": {"mean": mean_in, "std": std_in}},
    ]
    direct = v2.Compose([v2.Resize(15), v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean_in, std_in)])
    outputs = [direct(torchvision_pil_loader(p)) for p in image_paths(folder)]
    assert all(t.dtype == torch.float32 for t in outputs)
    expected_mean, expected_std = float_oracle(outputs)

    result = chanstats.compute(str(folder), transform=steps, workers=0)
    assert result.exact_method == "float64" and result.to_dict()["exact"]["method"] == "float64"
    assert result.exact.pixels == sum(t.shape[1] * t.shape[2] for t in outputs)
    assert np.allclose(result.mean, expected_mean, rtol=1e-9, atol=1e-12)
    assert_rel(result.std, expected_std, 1e-9)


def test_normalizing_with_the_datasets_own_stats_gives_mean_0_std_1(folder):
    mean, var = exact_oracle([np.asarray(torchvision_pil_loader(p)) for p in image_paths(folder)])
    steps = [
        "ToImage",
        {"ToDtype": {"dtype": "float32", "scale": True}},
        {"Normalize": {"mean": [float(m) for m in mean], "std": [math.sqrt(v) for v in var]}},
    ]
    result = chanstats.compute(str(folder), transform=steps, workers=0)
    assert result.exact_method == "float64"
    assert np.allclose(result.mean, 0.0, atol=1e-6)
    assert np.allclose(result.std, 1.0, atol=1e-6)


def test_flip_only_pipeline_equals_no_pipeline_exactly(folder):
    flips = [{"RandomHorizontalFlip": {"p": 0.5}}, {"RandomVerticalFlip": {"p": 0.5}}]
    flipped = chanstats.compute(str(folder), transform=flips, epochs=2, batch_size=5, workers=0).to_dict()
    plain = chanstats.compute(str(folder), epochs=2, batch_size=5, workers=0).to_dict()
    assert flipped["exact"]["method"] == "integer"
    for key in ("exact", "running", "gap", "count", "channels", "scale", "fingerprint"):
        assert flipped[key] == plain[key], key


def test_uint8_tensor_output_stays_on_the_exact_integer_path(folder):
    via_tensor = chanstats.compute(str(folder), transform=["ToImage"], workers=0)
    plain = chanstats.compute(str(folder), workers=0)
    assert via_tensor.exact_method == "integer"
    assert via_tensor.to_dict()["exact"] == plain.to_dict()["exact"]


# --- seeding and epochs --------------------------------------------------------------------------


def test_same_seed_is_byte_identical_for_any_workers_and_seeds_differ(folder, tmp_path):
    spec = write(tmp_path / "random.yaml", RANDOM_SPEC)
    outputs = {}
    for name, workers, seed in (("w1", 1, 7), ("w2", 2, 7), ("w0", 0, 7), ("seed8", 2, 8)):
        out = tmp_path / f"{name}.json"
        result = CliRunner().invoke(
            cli, ["compute", str(folder), "--transform", spec, "--epochs", "2", "--seed", str(seed),
                  "--batch-size", "8", "--workers", str(workers), "-q", "-o", str(out)]
        )
        assert result.exit_code == 0, result.output
        outputs[name] = out.read_bytes()
    assert outputs["w1"] == outputs["w2"] == outputs["w0"]
    config, other = json.loads(outputs["w1"]), json.loads(outputs["seed8"])
    assert config["exact"]["mean"] != other["exact"]["mean"]
    assert config["options"]["seed"] == 7 and other["options"]["seed"] == 8
    assert config["options"]["transform"][0] == {"RandomResizedCrop": {"size": 12, "scale": [0.3, 1.0]}}


def test_epochs_count_samples_and_draw_fresh_randomness(folder):
    crop = [{"RandomResizedCrop": {"size": 6}}, "RandomHorizontalFlip"]
    result = chanstats.compute(str(folder), transform=crop, epochs=3, batch_size=10, workers=0)
    config = result.to_dict()
    assert config["count"]["images"] == N_IMAGES
    assert config["count"]["samples"] == 3 * N_IMAGES and len(result.table) == 3 * N_IMAGES
    assert config["count"]["pixels"] == 3 * N_IMAGES * 36
    assert config["running"]["batches"] == 3 * math.ceil(N_IMAGES / 10)
    assert config["options"]["epochs"] == 3
    # Table rows are epoch-major; a random crop gives each epoch of an image its own sample.
    epoch_means = result.table.mean.reshape(3, N_IMAGES, 3)
    assert not np.array_equal(epoch_means[0], epoch_means[1])


def test_epochs_without_transform_repeat_the_images(folder):
    mean, var = exact_oracle([np.asarray(torchvision_pil_loader(p)) for p in image_paths(folder)])
    result = chanstats.compute(str(folder), epochs=3, workers=0)
    assert result.samples == 3 * N_IMAGES and result.exact_method == "integer"
    assert_rel(result.mean, mean, 1e-15)
    assert_rel(result.std, [math.sqrt(v) for v in var], 1e-15)


def test_options_replay_the_run(folder, tmp_path):
    spec = write(tmp_path / "random.yaml", RANDOM_SPEC)
    first = chanstats.compute(str(folder), transform=spec, epochs=2, seed=3, center_crop=16, workers=0)
    os.remove(spec)  # the recorded content is enough
    options = json.loads(json.dumps(first.options))
    replayed = chanstats.compute(options.pop("inputs"), workers=0, **options)
    assert replayed.to_dict() == first.to_dict()


# --- module:attr and file.py:attr ------------------------------------------------------------------

USER_MODULE = """
from torchvision.transforms import v2

train = v2.Compose([v2.Resize(16), v2.CenterCrop(14)])


def grey(image):
    return image.convert("L")
"""


def test_file_reference_loads_the_users_callable(folder, tmp_path):
    write(tmp_path / "project" / "tfs" / "aug.py", USER_MODULE)
    arrays = [np.asarray(v2.Compose([v2.Resize(16), v2.CenterCrop(14)])(torchvision_pil_loader(p))) for p in image_paths(folder)]
    mean, var = exact_oracle(arrays)
    reference = str(tmp_path / "project" / "tfs" / "aug.py") + ":train"
    for workers in (0, 2):
        result = chanstats.compute(str(folder), transform=reference, workers=workers)
        assert result.options["transform"] == reference
        assert_rel(result.mean, mean, 1e-12)
        assert_rel(result.std, [math.sqrt(v) for v in var], 1e-12)

    grey = chanstats.compute(str(folder), transform=reference.replace(":train", ":grey"), workers=0)
    grey_mean, _ = exact_oracle([np.asarray(torchvision_pil_loader(p).convert("L"))[:, :, None] for p in image_paths(folder)])
    assert grey.channels == ("L",) and grey.exact_method == "integer"
    assert_rel(grey.mean, grey_mean, 1e-12)


def test_module_reference_from_the_working_directory_with_the_installed_command(folder, tmp_path):
    project = tmp_path / "project"
    write(project / "user_aug_module.py", USER_MODULE)
    arrays = [np.asarray(v2.Compose([v2.Resize(16), v2.CenterCrop(14)])(torchvision_pil_loader(p))) for p in image_paths(folder)]
    mean, _ = exact_oracle(arrays)
    script = shutil.which("chanstats", path=os.path.dirname(sys.executable)) or shutil.which("chanstats")
    command = [script] if script else [sys.executable, "-m", "chanstats"]
    run = subprocess.run(
        [*command, "compute", str(folder), "--transform", "user_aug_module:train", "--workers", "0", "-q"],
        cwd=project, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    config = json.loads(run.stdout)
    assert config["options"]["transform"] == "user_aug_module:train"
    assert_rel(config["exact"]["mean"], mean, 1e-12)


def test_module_reference_reaches_worker_processes(folder, tmp_path, monkeypatch):
    write(tmp_path / "user_aug_workers.py", USER_MODULE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # resolving may add the working directory
    arrays = [np.asarray(v2.Compose([v2.Resize(16), v2.CenterCrop(14)])(torchvision_pil_loader(p))) for p in image_paths(folder)]
    mean, _ = exact_oracle(arrays)
    result = chanstats.compute(str(folder), transform="user_aug_workers:train", workers=2)
    assert_rel(result.mean, mean, 1e-12)


def test_compute_without_transform_does_not_import_torch_or_albumentations(folder):
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "chanstats", "compute", str(folder), "-q", "--workers", "0"],
        capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" not in imported and "torchvision" not in imported and "albumentations" not in imported


@pytest.mark.slow  # a transform's workers start from a fork server, with torch: several seconds
def test_a_transform_run_under_a_temporary_folder_too_long_for_a_unix_socket(tmp_path):
    # The fork server's socket lives in a folder under TMPDIR; past the socket path limit (107
    # bytes) Python 3.11 fails with "AF_UNIX path too long" unless chanstats moves that folder.
    from .helpers.cli import run
    from .helpers.files import make_dataset

    make_dataset(tmp_path, count=20)
    long_tmp = tmp_path / ("t" * max(1, 110 - len(str(tmp_path))))
    long_tmp.mkdir()
    args = ["compute", "data", "--transform", "[{CenterCrop: {size: 8}}]", "--workers", "2", "-q"]
    plain = run([*args, "-o", "plain.json"], cwd=tmp_path)
    assert plain.returncode == 0
    under_long = run([*args, "-o", "long.json"], cwd=tmp_path, env={"TMPDIR": str(long_tmp)})
    assert under_long.returncode == 0, under_long.stderr
    assert (tmp_path / "long.json").read_bytes() == (tmp_path / "plain.json").read_bytes()
    assert list(long_tmp.iterdir()) == []  # the run folder removed, nothing else left there

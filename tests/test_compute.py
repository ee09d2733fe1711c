"""``chanstats compute`` end to end on real files, against independent oracles."""

from __future__ import annotations

import json
import re
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import chanstats
from chanstats.errors import BadImagesError, ChanstatsError

from .helpers.cli import run_cli
from .helpers.engines import POOL
from .helpers.files import EXAMPLES, random_rgb, write_image
from .helpers.oracles import exact_oracle, torchvision_loader


def image_files(root: Path) -> list[Path]:
    return sorted((p for p in root.rglob("*") if p.suffix.lower() in (".png", ".jpg")), key=lambda p: bytes(p.relative_to(root).as_posix(), "utf-8"))


def test_exact_statistics_equal_integer_oracle_bit_for_bit(rgb_folder):
    result = chanstats.compute(str(rgb_folder), workers=0)
    mean, std = exact_oracle(image_files(rgb_folder))
    assert result.mean == mean
    assert result.std == std
    assert result.exact.pixels == sum(torchvision_loader(p).shape[0] * torchvision_loader(p).shape[1] for p in image_files(rgb_folder))


def test_examples_exact_and_counts():
    result = chanstats.compute(str(EXAMPLES), workers=0)
    files = image_files(EXAMPLES)
    mean, std = exact_oracle(files)
    assert (result.mean, result.std) == (mean, std)
    data = result.to_dict()
    assert data["count"]["images"] == len(files) >= 3
    assert data["channels"] == ["R", "G", "B"] and data["scale"] == 255
    assert data["exact"]["ddof"] == 0


def same_size_folder(root: Path, rng, count: int = 11) -> list[Path]:
    return [write_image(root / f"im{i:02d}.png", random_rgb(rng, 6, 5, low=3 * i, high=180 + 6 * i)) for i in range(count)]


def batchnorm_oracle(paths: list[Path], batch_size: int, momentum: float | None, drop_last: bool = False):
    """Feed ToTensor-like float batches in listing order to a real BatchNorm2d and return its buffers."""
    layer = torch.nn.BatchNorm2d(3, momentum=momentum, dtype=torch.float64).train()
    tensors = [torch.from_numpy(torchvision_loader(p).astype(np.float64) / 255).permute(2, 0, 1) for p in paths]
    for start in range(0, len(tensors), batch_size):
        batch = tensors[start : start + batch_size]
        if drop_last and len(batch) < batch_size:
            break
        layer(torch.stack(batch))
    return layer.running_mean.numpy(), layer.running_var.numpy()


@pytest.mark.parametrize("momentum,batch_size,drop_last", [(0.1, 4, False), (0.3, 3, True), (None, 4, False)])
def test_running_estimate_equals_real_batchnorm(tmp_path, rng, momentum, batch_size, drop_last):
    paths = same_size_folder(tmp_path / "d", rng)
    result = chanstats.compute(
        str(tmp_path / "d"), workers=0, batch_size=batch_size, momentum=momentum, shuffle=False, drop_last=drop_last
    )
    expected_mean, expected_var = batchnorm_oracle(paths, batch_size, momentum, drop_last)
    np.testing.assert_allclose(result.running.mean, expected_mean, rtol=1e-10)
    np.testing.assert_allclose(result.running.var, expected_var, rtol=1e-10)
    assert result.running.batches == (len(paths) // batch_size if drop_last else -(-len(paths) // batch_size))


def test_shuffled_running_estimate_equals_batchnorm_on_documented_order(tmp_path, rng):
    paths = same_size_folder(tmp_path / "d", rng)
    result = chanstats.compute(str(tmp_path / "d"), workers=0, batch_size=4, seed=7)
    # The documented order: numpy's permutation seeded by (seed, epoch).
    order = np.random.default_rng([7, 0]).permutation(len(paths))
    expected_mean, expected_var = batchnorm_oracle([paths[i] for i in order], 4, 0.1)
    np.testing.assert_allclose(result.running.mean, expected_mean, rtol=1e-10)
    np.testing.assert_allclose(result.running.var, expected_var, rtol=1e-10)
    other = chanstats.compute(str(tmp_path / "d"), workers=0, batch_size=4, seed=8)
    assert not np.array_equal(other.running.mean, result.running.mean)


def test_keras_convention_equals_keras_formula(tmp_path, rng):
    paths = same_size_folder(tmp_path / "d", rng)
    result = chanstats.compute(str(tmp_path / "d"), workers=0, batch_size=4, convention="keras", shuffle=False)
    moving_mean, moving_var = np.zeros(3), np.ones(3)
    for start in range(0, len(paths), 4):
        # Keras: channels-last batch, moments over (N, H, W), biased variance, momentum 0.99.
        batch = np.stack([torchvision_loader(p).astype(np.float64) / 255 for p in paths[start : start + 4]])
        moving_mean = moving_mean * 0.99 + batch.mean(axis=(0, 1, 2)) * 0.01
        moving_var = moving_var * 0.99 + batch.var(axis=(0, 1, 2)) * 0.01
    np.testing.assert_allclose(result.running.mean, moving_mean, rtol=1e-10)
    np.testing.assert_allclose(result.running.var, moving_var, rtol=1e-10)
    assert result.to_dict()["running"]["momentum"] == 0.99


def test_workers_do_not_change_a_single_byte(rgb_folder, tmp_path):
    POOL.pad(rgb_folder)  # enough images for the pool to split them into chunks
    outputs = []
    for workers in ("1", "2", "0"):
        target = tmp_path / f"w{workers}.json"
        run = run_cli("compute", str(rgb_folder), "--workers", workers, "--batch-size", "2", "-o", str(target), "-q")
        assert run.returncode == 0, run.stderr
        outputs.append(target.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_console_script_on_examples():
    run = run_cli("compute", str(EXAMPLES))
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["exact"]["mean"] == exact_oracle(image_files(EXAMPLES))[0]
    assert "transforms.Normalize(mean=[" in run.stderr
    for key in ("chanstats", "channels", "scale", "count", "exact", "running", "gap", "options", "fingerprint", "skipped"):
        assert key in data
    assert set(data["running"]) >= {"convention", "momentum", "batch_size", "shuffle", "seed", "drop_last", "batches", "mean", "var", "std"}


def test_timings_name_every_phase_even_when_quiet(rgb_folder, tmp_path):
    target = tmp_path / "out.json"
    run = run_cli("compute", str(rgb_folder), "-q", "--timings", "-o", str(target))
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(r"timings: listing [\d.]+ s, measuring [\d.]+ s, finalizing [\d.]+ s, writing [\d.]+ s; kernel (avx2|sse2|scalar|none)\n", run.stderr)
    assert json.loads(target.read_text())["count"]["images"] == 7
    refused = run_cli("compute", str(rgb_folder), "--timings", "--distributed")
    assert refused.returncode == 2 and "--timings" in refused.stderr


def test_python_dash_m_and_version():
    import subprocess

    run = subprocess.run([sys.executable, "-m", "chanstats", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and chanstats.__version__ in run.stdout


def test_yaml_output_by_extension(rgb_folder, tmp_path):
    target = tmp_path / "norm.yaml"
    run = run_cli("compute", str(rgb_folder), "-o", str(target), "-q")
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert yaml.safe_load(target.read_text())["exact"]["mean"] == exact_oracle(image_files(rgb_folder))[0]


@pytest.fixture
def folder_with_bad_files(rgb_folder: Path, engine) -> Path:
    """Seven good images, a truncated JPEG and a text file named .png (plus the engine's padding)."""
    good = (rgb_folder / "class0" / "img00.jpg").read_bytes()
    (rgb_folder / "zz_truncated.jpg").write_bytes(good[: len(good) // 2])
    (rgb_folder / "notes.png").write_text("not a picture")
    engine.pad(rgb_folder)
    return rgb_folder


def test_on_error_fail_lists_every_bad_file_and_writes_nothing(folder_with_bad_files, engine, tmp_path):
    target = tmp_path / "out.json"
    run = run_cli("compute", str(folder_with_bad_files), "-o", str(target), *engine.options)
    assert run.returncode == 2
    assert f"2 of {9 + engine.padding} images could not be read" in run.stderr
    assert "notes.png: not an image" in run.stderr and "zz_truncated.jpg: corrupt or truncated" in run.stderr
    assert "Traceback" not in run.stderr
    assert not target.exists() and list(tmp_path.glob(".chanstats-*")) == []


def test_on_error_skip_records_skipped(folder_with_bad_files, engine):
    result = chanstats.compute(str(folder_with_bad_files), on_error="skip", workers=engine.workers)
    data = result.to_dict()
    assert data["count"]["skipped"] == 2 and data["count"]["images"] == 7 + engine.padding
    assert sorted(Path(s["path"]).name for s in data["skipped"]) == ["notes.png", "zz_truncated.jpg"]
    good = [p for p in image_files(folder_with_bad_files) if p.name not in ("notes.png", "zz_truncated.jpg")]
    assert result.mean == exact_oracle(good)[0]


@pytest.mark.parametrize("budget,code", [("1", 2), ("2", 0), ("under", 2), ("over", 0)])
def test_max_bad_budget(folder_with_bad_files, engine, budget, code):
    share = 100 * 2 / (9 + engine.padding)  # two bad images: their share in percent
    percent = {"under": f"{0.9 * share:.3f}%", "over": f"{1.1 * share:.3f}%"}
    run = run_cli("compute", str(folder_with_bad_files), "--on-error", "skip", "--max-bad", percent.get(budget, budget),
                  "-q", *engine.options)
    assert run.returncode == code, run.stderr
    assert "Traceback" not in run.stderr
    if code:
        assert "more than --max-bad" in run.stderr and "notes.png" in run.stderr


def test_no_images_is_exit_2_with_where_and_extensions(tmp_path):
    (tmp_path / "readme.txt").write_text("x")
    run = run_cli("compute", str(tmp_path))
    assert run.returncode == 2
    assert run.stderr.startswith("Error: no images found in") and ".webp" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_mixed_channel_counts_under_keep_name_an_example_of_each(tmp_path, rng):
    write_image(tmp_path / "a_colour.png", random_rgb(rng, 4, 4))
    write_image(tmp_path / "b_grey.png", rng.integers(0, 256, (4, 4), dtype=np.uint8))
    with pytest.raises(ChanstatsError, match=r"RGB 8-bit \(e\.g\. .*a_colour\.png\); L 8-bit \(e\.g\. .*b_grey\.png\)"):
        chanstats.compute(str(tmp_path), mode="keep", workers=0)
    assert chanstats.compute(str(tmp_path), mode="RGB", workers=0).channels == ("R", "G", "B")


def test_alpha_is_dropped_and_counted(tmp_path, rng):
    write_image(tmp_path / "a.png", rng.integers(0, 256, (4, 4, 4), dtype=np.uint8), "RGBA")
    write_image(tmp_path / "b.png", random_rgb(rng, 4, 4))
    run = run_cli("compute", str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["count"]["dropped_alpha"] == 1
    assert "1 images had transparency" in run.stderr


def test_sixteen_bit_keep_reports_65535_scale(tmp_path, rng, engine):
    values = rng.integers(0, 65536, size=(5, 6), dtype=np.uint16)
    write_image(tmp_path / "deep.png", values)
    result = chanstats.compute(str(tmp_path), mode="keep", workers=0)
    assert result.scale == 65535 and result.channels == ("L",)
    assert result.mean == [float(Fraction(int(values.astype(np.int64).sum()), values.size * 65535))]
    engine.pad(tmp_path)
    run = run_cli("compute", str(tmp_path), *engine.options)
    assert run.returncode == 2 and "deep.png: 16-bit image" in run.stderr and "--mode keep" in run.stderr


def test_usage_errors_exit_2(rgb_folder):
    assert run_cli("compute", str(rgb_folder), "--momentum", "fast").returncode == 2
    assert run_cli("compute", str(rgb_folder), "--batch-size", "0").returncode == 2
    assert run_cli("compute").returncode == 2


def test_compute_without_transform_does_not_import_torch(rgb_folder):
    import subprocess

    code = (
        "import sys, chanstats.cli, chanstats;"
        f"chanstats.compute({str(rgb_folder)!r}, workers=0);"
        "assert 'torch' not in sys.modules and 'torchvision' not in sys.modules, 'torch imported'"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_output_has_no_run_dependent_fields(rgb_folder):
    text = chanstats.compute(str(rgb_folder), workers=0).dumps()
    for word in ("time", "duration", "host", "workers", "elapsed"):
        assert word not in text

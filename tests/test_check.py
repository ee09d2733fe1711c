"""`chanstats check`: every exit code, drift on a bright image, file-list changes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from chanstats.cli import cli
from .helpers.files import write_constant, write_dataset
from .helpers.oracles import exact_mean_std


@pytest.fixture()
def dataset(tmp_path):
    paths = write_dataset(tmp_path / "data", count=6)
    config = tmp_path / "stats.json"
    result = CliRunner().invoke(cli, ["compute", str(tmp_path / "data"), "-o", str(config), "--workers", "0", "-q", "--listing"])
    assert result.exit_code == 0, result.output
    return tmp_path, paths, config


# The distribution tests switched off, for tests about the mean/std tolerance alone.
MEAN_STD_ONLY = ("--max-wasserstein", "inf", "--max-jsd", "inf", "--max-psi", "inf", "--max-ks", "1")


def run(*args):
    return CliRunner().invoke(cli, list(args))


def deltas(output: str) -> dict[str, tuple[float, float]]:
    """channel → (Δ mean, Δ std) parsed from the report table."""
    found = {}
    for line in output.splitlines():
        m = re.match(r"^([RGB])\s+\S+\s+\S+\s+(\S+)\s+\S+\s+\S+\s+(\S+)", line)
        if m:
            found[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    return found


def test_unchanged_data_passes(dataset):
    tmp_path, _, config = dataset
    result = run("check", str(tmp_path / "data"), "--against", str(config), "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "OK" in result.output and "files: unchanged" in result.output
    assert deltas(result.output) == {c: (0.0, 0.0) for c in "RGB"}


def test_recorded_inputs_are_the_default_paths(dataset, monkeypatch):
    tmp_path, _, config = dataset
    monkeypatch.chdir("/")  # recorded inputs are absolute here (tmp_path), so any cwd works
    result = run("check", "--against", str(config), "--workers", "0")
    assert result.exit_code == 0, result.output


def test_bright_image_is_drift_with_exit_1(dataset):
    tmp_path, paths, config = dataset
    bright = write_constant(tmp_path / "data" / "zz_bright.png", 255)
    result = run("check", str(tmp_path / "data"), "--against", str(config), "--workers", "0")
    assert result.exit_code == 1, result.output
    assert "DRIFT" in result.output
    old_mean, old_std = exact_mean_std(paths)
    new_mean, new_std = exact_mean_std(paths + [bright])
    for c, name in enumerate("RGB"):
        d_mean, d_std = deltas(result.output)[name]
        assert d_mean == pytest.approx(new_mean[c] - old_mean[c], abs=1e-6)
        assert d_std == pytest.approx(new_std[c] - old_std[c], abs=1e-6)
        assert d_mean > 0.01
    assert "files: CHANGED (6 → 7 images; 1 added, 0 removed, 0 modified)" in result.output
    assert "added: zz_bright.png" in result.output


def test_large_tolerance_accepts_the_same_change(dataset):
    tmp_path, paths, config = dataset
    bright = write_constant(tmp_path / "data" / "zz_bright.png", 255)
    new_mean, new_std = exact_mean_std(paths + [bright])
    old_mean, old_std = exact_mean_std(paths)
    worst = max(np.abs(new_mean - old_mean).max(), np.abs(new_std - old_std).max())
    result = run("check", str(tmp_path / "data"), "--against", str(config), "--workers", "0", "--tolerance", str(worst * 1.01), *MEAN_STD_ONLY)
    assert result.exit_code == 0, result.output
    result = run("check", str(tmp_path / "data"), "--against", str(config), "--workers", "0", "--tolerance", str(worst * 0.99), *MEAN_STD_ONLY)
    assert result.exit_code == 1, result.output


def test_removed_file_counted_and_listing_optional(dataset, tmp_path):
    _, paths, config = dataset
    os.remove(paths[0])
    result = run("check", str(tmp_path / "data"), "--against", str(config), "--workers", "0", "--tolerance", "1", *MEAN_STD_ONLY)
    assert result.exit_code == 0, result.output
    assert "0 added, 1 removed" in result.output and "img_00.png" in result.output
    # without a recorded listing the change is still seen, through the fingerprint
    plain = json.loads(config.read_text())
    del plain["listing"], plain["options"]["listing"]
    config.write_text(json.dumps(plain))
    result = run("check", str(tmp_path / "data"), "--against", str(config), "--workers", "0", "--tolerance", "1", *MEAN_STD_ONLY)
    assert result.exit_code == 0, result.output
    assert "files: CHANGED (6 → 5 images; fingerprint differs" in result.output


def test_yaml_config(tmp_path):
    write_dataset(tmp_path / "data", count=4)
    config = tmp_path / "stats.yaml"
    assert run("compute", str(tmp_path / "data"), "-o", str(config), "--workers", "0", "-q", "--mode", "L").exit_code == 0
    result = run("check", str(tmp_path / "data"), "--against", str(config), "--workers", "0")
    assert result.exit_code == 0, result.output
    assert re.search(r"^L\s", result.output, re.M)  # the recorded --mode L was replayed


def test_missing_config_is_exit_2(tmp_path):
    write_dataset(tmp_path / "data", count=2)
    result = run("check", str(tmp_path / "data"), "--against", str(tmp_path / "nope.json"))
    assert result.exit_code == 2
    assert "nope.json: cannot read" in result.output


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not a valid config"),
        ('{"hello": 1}', "not a chanstats config"),
        ('{"chanstats": "0.1.0", "exact": {}}', "no usable exact.mean"),
    ],
)
def test_bad_config_is_exit_2(tmp_path, content, message):
    write_dataset(tmp_path / "data", count=2)
    config = tmp_path / "bad.json"
    config.write_text(content)
    result = run("check", str(tmp_path / "data"), "--against", str(config))
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_unknown_recorded_option_is_refused(dataset):
    tmp_path, _, config = dataset
    data = json.loads(config.read_text())
    data["options"]["from_the_future"] = 3
    config.write_text(json.dumps(data))
    result = run("check", str(tmp_path / "data"), "--against", str(config), "--workers", "0")
    assert result.exit_code == 2
    assert "from_the_future" in result.output and "not known" in result.output


def test_missing_images_and_bad_tolerance_are_exit_2(dataset):
    tmp_path, _, config = dataset
    assert run("check", str(tmp_path / "nowhere"), "--against", str(config)).exit_code == 2
    assert run("check", str(tmp_path / "data"), "--against", str(config), "--tolerance", "-1").exit_code == 2


def test_installed_command_exit_code(dataset):
    """The real process exit status, as CI sees it."""
    tmp_path, _, config = dataset
    write_constant(tmp_path / "data" / "zz_bright.png", 255)
    command = [sys.executable, "-m", "chanstats", "check", str(tmp_path / "data"), "--against", str(config), "--workers", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "DRIFT" in done.stdout

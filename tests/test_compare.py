"""`chanstats compare`: every combination, each equal to a single `compute` run; CSV and PNG plot."""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from chanstats.cli import cli
from .helpers.files import write_dataset
from .helpers.oracles import exact_mean_std

BATCH_SIZES, MOMENTA, SEEDS = (2, 3), ("0.1", "0.01", "none"), (0, 1)


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("compare")
    paths = write_dataset(tmp_path / "data", count=9)
    result = CliRunner().invoke(cli, [
        "compare", str(tmp_path / "data"), "--batch-size", "2,3", "--momentum", ",".join(MOMENTA),
        "--convention", "torch,keras", "--seeds", "0,1", "--csv", str(tmp_path / "rows.csv"), "--workers", "0",
    ])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "rows.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    return tmp_path, paths, result.output, rows


def test_all_combinations_present(compared):
    _, _, output, rows = compared
    got = {(r["convention"], int(r["batch_size"]), r["momentum"], int(r["seed"])) for r in rows}
    expected = {("torch", b, m, s) for b, m, s in itertools.product(BATCH_SIZES, MOMENTA, SEEDS)}
    expected |= {("keras", b, m, s) for b, m, s in itertools.product(BATCH_SIZES, ("0.1", "0.01"), SEEDS)}
    assert got == expected
    assert len(rows) == 3 * len(expected)  # one row per channel
    assert "skipped for keras" in output  # torch's cumulative average has no keras form, and says so
    assert output.count("\ntorch ") + output.count("\nkeras ") == len(rows)


def test_exact_columns_match_numpy(compared):
    _, paths, _, rows = compared
    mean, std = exact_mean_std(paths)
    for row in rows:
        c = "RGB".index(row["channel"])
        assert float(row["exact_mean"]) == pytest.approx(mean[c], abs=1e-12)
        assert float(row["exact_std"]) == pytest.approx(std[c], abs=1e-12)
        assert float(row["gap_mean"]) == pytest.approx(float(row["running_mean"]) - mean[c], abs=1e-12)
        assert float(row["rel_gap_std"]) == pytest.approx((float(row["running_std"]) - std[c]) / std[c], rel=1e-9)


def test_each_combination_equals_single_compute(compared):
    tmp_path, _, _, rows = compared
    by_combo: dict[tuple, dict[str, dict]] = {}
    for row in rows:
        by_combo.setdefault((row["convention"], row["batch_size"], row["momentum"], row["seed"]), {})[row["channel"]] = row
    for (convention, batch, momentum, seed), channels in by_combo.items():
        result = CliRunner().invoke(cli, [
            "compute", str(tmp_path / "data"), "--workers", "0", "-q", "--convention", convention,
            "--batch-size", batch, "--momentum", momentum, "--seed", seed,
        ])
        assert result.exit_code == 0, result.output
        running = json.loads(result.output)["running"]
        for c, name in enumerate("RGB"):
            assert float(channels[name]["running_mean"]) == running["mean"][c]
            assert float(channels[name]["running_std"]) == running["std"][c]
            assert int(channels[name]["batches"]) == running["batches"]


def test_plot_is_a_png_matplotlib_reads(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    write_dataset(tmp_path / "data", count=5)
    plot = tmp_path / "trajectories.png"
    result = CliRunner().invoke(cli, [
        "compare", str(tmp_path / "data"), "--batch-size", "2", "--momentum", "0.1,none", "--seeds", "0,1",
        "--plot", str(plot), "--workers", "0",
    ])
    assert result.exit_code == 0, result.output
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(str(plot))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 300


def test_plot_without_matplotlib_fails_fast_with_a_clear_message(tmp_path):
    write_dataset(tmp_path / "data", count=2)
    blocker = tmp_path / "blocker" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is not installed here')\n")
    env = dict(__import__("os").environ)
    env["PYTHONPATH"] = f"{blocker.parent}{__import__('os').pathsep}{env.get('PYTHONPATH', '')}"
    done = subprocess.run(
        [sys.executable, "-m", "chanstats", "compare", str(tmp_path / "data"), "--plot", str(tmp_path / "p.png")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 2
    assert "pip install 'chanstats[plot]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("args, message", [
    (["--batch-size", "two"], "comma-separated integers"),
    (["--momentum", "fast"], "expected a number or 'none'"),
    (["--convention", "caffe"], "unknown BatchNorm convention"),
    (["--convention", "keras", "--momentum", "none"], "no valid combination"),
])
def test_bad_settings_are_exit_2(tmp_path, args, message):
    write_dataset(tmp_path / "data", count=2)
    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "data"), "--workers", "0", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_compare_measures_the_augmented_samples_like_compute(tmp_path):
    write_dataset(tmp_path / "data", count=6)
    augment = ["--transform", "[RandomHorizontalFlip, {RandomCrop: 3}]", "--epochs", "2", "--workers", "0"]
    result = CliRunner().invoke(cli, [
        "compare", str(tmp_path / "data"), "--batch-size", "4", "--momentum", "0.1", "--seeds", "5",
        "--csv", str(tmp_path / "rows.csv"), *augment,
    ])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "rows.csv", newline="") as stream:
        rows = {row["channel"]: row for row in csv.DictReader(stream)}
    single = CliRunner().invoke(cli, ["compute", str(tmp_path / "data"), "-q", "--batch-size", "4", "--seed", "5", *augment])
    config = json.loads(single.output)
    assert config["count"]["samples"] == 12
    for c, name in enumerate("RGB"):
        assert float(rows[name]["exact_mean"]) == config["exact"]["mean"][c]
        assert float(rows[name]["running_mean"]) == config["running"]["mean"][c]
        assert int(rows[name]["batches"]) == config["running"]["batches"] == 4

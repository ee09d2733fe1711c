"""`chanstats check` beyond mean and std: the histograms and per-image properties a config records,
the distances it reports (checked against scipy on the same histograms and columns), the
thresholds and exit codes, the JSON report, the GitHub step summary and the plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp as scipy_ks_2samp
from scipy.stats import wasserstein_distance

from chanstats.cli import cli
from chanstats.report.distribution import MAX_RECORDED_BINS, ImageProperties, RecordedHistogram
from chanstats.stats.drift import js_divergence, ks_2samp, psi, wasserstein_1
from chanstats.stats.histogram import ChannelHistogram
from chanstats.stats.moments import MomentsTable
from chanstats.stats.per_image import PerImage

from .helpers.cli import run as run_command

SIZE = (64, 148)  # height, width: 9472 pixels = 37 × 256 = 32 × 296


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


# --- the data: the same mean and std per channel, another distribution ----------------------


def flat_values() -> np.ndarray:
    """Every 8-bit value equally often: mean 127.5, variance (256² − 1) / 12 = 5461.25."""
    return np.tile(np.arange(256), 37)


def bimodal_values() -> np.ndarray:
    """Two modes (53/54 and 201/202), symmetric about 127.5, with exactly the flat variance:
    89 pairs at distance 73.5 and 59 pairs at 74.5 give (89·73.5² + 59·74.5²) / 148 = 5461.25."""
    pairs = [54] * 89 + [53] * 59
    block = np.array(pairs + [255 - v for v in pairs])
    return np.tile(block, 32)


def test_the_two_distributions_share_mean_and_variance_exactly():
    from fractions import Fraction

    for values in (flat_values(), bimodal_values()):
        assert values.size == SIZE[0] * SIZE[1]
        n = values.size
        assert Fraction(int(values.sum()), n) == Fraction(255, 2)
        assert Fraction(int((values.astype(np.int64) ** 2).sum()), n) - Fraction(255, 2) ** 2 == Fraction(2184500, 400)


def write_images(folder: Path, values: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    """``count`` RGB PNGs whose every channel is a seeded shuffle of ``values``; returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = []
    for i in range(count):
        array = np.stack([rng.permutation(values) for _ in range(3)], axis=-1).reshape(*SIZE, 3).astype(np.uint8)
        Image.fromarray(array, "RGB").save(folder / f"img_{i:02d}.png")
        arrays.append(array)
    return arrays


@pytest.fixture()
def same_moments(tmp_path):
    """A config of flat images, and a folder of bimodal images with the same mean and std."""
    flat = write_images(tmp_path / "flat", flat_values(), 3, seed=1)
    bimodal = write_images(tmp_path / "bimodal", bimodal_values(), 3, seed=2)
    config = tmp_path / "stats.json"
    result = invoke("compute", str(tmp_path / "flat"), "--histogram", "-o", str(config), "--workers", "0", "-q")
    assert result.exit_code == 0, result.output
    return tmp_path, config, flat, bimodal


def histograms(arrays: list[np.ndarray]) -> np.ndarray:
    """(3, 256) pixel counts per channel, by numpy."""
    pixels = np.concatenate([a.reshape(-1, 3) for a in arrays])
    return np.stack([np.bincount(pixels[:, c], minlength=256) for c in range(3)])


def psi_oracle(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI written out bin by bin, empty proportions replaced by 1e-4 (Evidently's convention)."""
    e_total, a_total = float(expected.sum()), float(actual.sum())
    total = 0.0
    for e_count, a_count in zip(expected.tolist(), actual.tolist()):
        if e_count == 0 and a_count == 0:
            continue
        e, a = max(e_count / e_total, 1e-4), max(a_count / a_total, 1e-4)
        total += (a - e) * math.log(a / e)
    return total


def test_same_mean_and_std_other_distribution_fails_only_the_distribution_tests(same_moments):
    tmp_path, config, flat, bimodal = same_moments
    report_path = tmp_path / "report.json"
    result = invoke("check", str(tmp_path / "bimodal"), "--against", str(config), "--workers", "0",
                    "--report", str(report_path))
    assert result.exit_code == 1, result.output
    assert result.output.rstrip().splitlines()[-1] == "DRIFT: wasserstein R, G, B; jsd R, G, B; psi R, G, B"
    report = json.loads(report_path.read_text())
    tests = {(t["test"], t["channel"]): t for t in report["tests"]}
    for c, name in enumerate("RGB"):
        assert tests["mean", name]["value"] == 0.0 and tests["mean", name]["passed"]
        assert tests["std", name]["value"] == 0.0 and tests["std", name]["passed"]
        # Every image has mean 0.5 and the same std on both sides: the per-image tests pass.
        assert tests["ks_brightness", name]["value"] == 0.0 and tests["ks_brightness", name]["passed"]
        assert tests["ks_contrast", name]["value"] == 0.0 and tests["ks_contrast", name]["passed"]
    old, new = histograms(flat), histograms(bimodal)
    positions = np.arange(256) / 255
    for c, name in enumerate("RGB"):
        w1 = wasserstein_distance(positions, positions, old[c], new[c])
        jsd = jensenshannon(old[c], new[c], base=2) ** 2  # scipy returns the distance: its square root
        assert tests["wasserstein", name]["value"] == pytest.approx(w1, rel=1e-9)
        assert tests["jsd", name]["value"] == pytest.approx(jsd, rel=1e-9)
        assert tests["jsd", name]["js_distance"] == pytest.approx(jensenshannon(old[c], new[c], base=2), rel=1e-9)
        assert tests["psi", name]["value"] == pytest.approx(psi_oracle(old[c], new[c]), rel=1e-9)
        for test in ("wasserstein", "jsd", "psi"):
            assert not tests[test, name]["passed"]
    assert tests["ks_area", None]["passed"] and tests["ks_aspect", None]["passed"]
    assert report["verdict"] == "DRIFT" and report["passed"] is False
    assert report["failures"] == ["wasserstein R, G, B", "jsd R, G, B", "psi R, G, B"]
    assert report["thresholds"] == {"tolerance": 0.01, "wasserstein": 0.02, "jsd": 0.01, "psi": 0.2, "ks": 0.1,
                                    "ks_alpha": 0.05}
    assert all(t["threshold"] == report["thresholds"]["tolerance"] for t in report["tests"] if t["test"] in ("mean", "std"))


def test_unchanged_data_passes_every_test_with_zero_distances(same_moments):
    tmp_path, config, _, _ = same_moments
    report_path = tmp_path / "report.json"
    result = invoke("check", "--against", str(config), "--workers", "0", "--report", str(report_path))
    assert result.exit_code == 0, result.output
    report = json.loads(report_path.read_text())
    assert report["verdict"] == "OK" and report["failures"] == [] and report["notes"] == []
    assert {t["test"] for t in report["tests"]} == {"mean", "std", "wasserstein", "jsd", "psi", "ks_brightness",
                                                     "ks_contrast", "ks_area", "ks_aspect"}
    assert all(t["value"] == 0.0 and t["passed"] for t in report["tests"])


def test_thresholds_are_options(same_moments):
    tmp_path, config, flat, bimodal = same_moments
    old, new = histograms(flat), histograms(bimodal)
    positions = np.arange(256) / 255
    worst_w1 = max(wasserstein_distance(positions, positions, old[c], new[c]) for c in range(3))
    worst_jsd = max(jensenshannon(old[c], new[c], base=2) ** 2 for c in range(3))
    worst_psi = max(psi_oracle(old[c], new[c]) for c in range(3))
    loose = ["--max-wasserstein", str(worst_w1 * 1.001), "--max-jsd", str(worst_jsd * 1.001), "--max-psi", str(worst_psi * 1.001)]
    result = invoke("check", str(tmp_path / "bimodal"), "--against", str(config), "--workers", "0", *loose)
    assert result.exit_code == 0, result.output
    tight_jsd = ["--max-wasserstein", str(worst_w1 * 1.001), "--max-jsd", str(worst_jsd * 0.999), "--max-psi", str(worst_psi * 1.001)]
    result = invoke("check", str(tmp_path / "bimodal"), "--against", str(config), "--workers", "0", *tight_jsd)
    assert result.exit_code == 1
    assert result.output.rstrip().splitlines()[-1].startswith("DRIFT: jsd ")


# --- per-image properties: KS against scipy -----------------------------------------------------


def write_levels(folder: Path, levels: list[int], seed: int) -> list[np.ndarray]:
    """One 20×30 RGB image per level: noise of ±20 around it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = []
    for i, level in enumerate(levels):
        array = np.clip(rng.integers(level - 20, level + 21, size=(20, 30, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(array, "RGB").save(folder / f"img_{i:03d}.png")
        arrays.append(array)
    return arrays


def rounded(values) -> list[float]:
    return sorted(float(f"{v:.6g}") for v in values)


def test_per_image_brightness_shift_fails_ks_and_agrees_with_scipy(tmp_path):
    old = write_levels(tmp_path / "old", list(range(40, 180, 4)), seed=3)  # 35 images
    new = write_levels(tmp_path / "new", list(range(100, 240, 4)), seed=4)  # 60 levels brighter
    config = tmp_path / "stats.json"
    assert invoke("compute", str(tmp_path / "old"), "-o", str(config), "--workers", "0", "-q").exit_code == 0
    report_path = tmp_path / "report.json"
    result = invoke("check", str(tmp_path / "new"), "--against", str(config), "--workers", "0", "--report", str(report_path),
                    "--tolerance", "1", "--max-wasserstein", "inf", "--max-jsd", "inf", "--max-psi", "inf")
    assert result.exit_code == 1, result.output
    assert result.output.rstrip().splitlines()[-1] == "DRIFT: ks_brightness R, G, B"
    tests = {(t["test"], t["channel"]): t for t in json.loads(report_path.read_text())["tests"]}
    for c, name in enumerate("RGB"):
        for prop, of in (("brightness", lambda a: a[..., c].mean() / 255), ("contrast", lambda a: a[..., c].std() / 255)):
            expected = scipy_ks_2samp(rounded(of(a) for a in old), rounded(of(a) for a in new), method="exact")
            test = tests[f"ks_{prop}", name]
            assert test["value"] == pytest.approx(expected.statistic, abs=1e-12)
            assert test["p_value"] == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)
            assert (test["n_old"], test["n_new"]) == (35, 35)
        assert not tests["ks_brightness", name]["passed"]
        assert tests["ks_contrast", name]["passed"]


def test_distances_agree_with_scipy_on_random_histograms_and_columns():
    rng = np.random.default_rng(5)
    for _ in range(20):
        bins = int(rng.integers(2, 300))
        p = rng.integers(0, 1000, bins) * (rng.random(bins) < 0.7)
        q = rng.integers(0, 1000, bins) * (rng.random(bins) < 0.7)
        p[0] += 1
        q[-1] += 1
        positions = np.sort(rng.random(bins))
        assert wasserstein_1(positions, p, q) == pytest.approx(wasserstein_distance(positions, positions, p, q), rel=1e-9, abs=1e-15)
        assert js_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2, rel=1e-9, abs=1e-15)
        assert psi(p, q) == pytest.approx(psi_oracle(p, q), rel=1e-9)
        a, b = rng.normal(size=int(rng.integers(5, 400))), rng.normal(0.3, size=int(rng.integers(5, 400)))
        statistic, p_value = ks_2samp(a, b)
        expected = scipy_ks_2samp(a, b, method="exact")
        assert statistic == pytest.approx(expected.statistic, abs=1e-12)
        assert p_value == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-12)


# --- what the config records ----------------------------------------------------------------------


@pytest.mark.parametrize("high, width", [(255, 1), (1023, 1), (4095, 4), (65535, 64)])
def test_recorded_histogram_is_exact_or_binned_at_a_power_of_two(high, width):
    rng = np.random.default_rng(6)
    pixels = rng.integers(0, high + 1, size=(50, 40, 2)).astype(np.uint16)
    pixels[0, 0] = [0, high]
    recorded = RecordedHistogram.of(ChannelHistogram.empty(2).update(pixels))
    assert recorded.width == width
    for c in range(2):
        expected = np.bincount(pixels[..., c].ravel() // width)
        first = int(np.flatnonzero(expected)[0])
        band = recorded.channels[c]
        assert band.low == first * width and band.counts.size <= MAX_RECORDED_BINS
        assert band.counts.tolist() == expected[first:].tolist()
    section = json.loads(json.dumps(recorded.to_config()))
    assert RecordedHistogram.from_config(section, 2).to_config() == recorded.to_config()


def test_image_properties_are_a_bounded_seeded_sample():
    rng = np.random.default_rng(7)
    n = 1500
    table = MomentsTable.from_rows([(100, [m], [s]) for m, s in zip(rng.random(n), rng.random(n) * 100)], 1)
    widths, heights = rng.integers(10, 20, n), rng.integers(10, 20, n)
    per_image = PerImage([f"{i}" for i in range(n)], widths, heights, table)
    first, again, other_seed = ImageProperties.of(per_image, 0), ImageProperties.of(per_image, 0), ImageProperties.of(per_image, 1)
    assert (first.images, first.recorded) == (n, 1000)
    assert first == again and first.brightness != other_seed.brightness
    assert set(first.brightness[0]) <= set(rounded(table.mean[:, 0]))
    assert first.area == sorted(first.area) and len(first.area) == 1000


def test_sixteen_bit_round_trip_passes(tmp_path):
    rng = np.random.default_rng(8)
    (tmp_path / "data").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 65536, size=(30, 40)).astype(np.uint16)).save(tmp_path / "data" / f"g{i}.png")
    config = tmp_path / "stats.json"
    assert invoke("compute", str(tmp_path / "data"), "--mode", "keep", "-o", str(config), "--workers", "0", "-q").exit_code == 0
    data = json.loads(config.read_text())
    assert data["histogram"]["bin_width"] == 64 and len(data["histogram"]["channels"][0]["counts"]) <= MAX_RECORDED_BINS
    result = invoke("check", "--against", str(config), "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "histograms compared in bins of 64 raw values" in result.output


# --- configs without histograms, bad configs, exit codes ------------------------------------------


def test_config_of_the_previous_version_is_checked_on_mean_and_std(same_moments):
    tmp_path, config, _, _ = same_moments
    data = json.loads(config.read_text())
    del data["histogram"], data["image_properties"]
    config.write_text(json.dumps(data))
    result = invoke("check", str(tmp_path / "bimodal"), "--against", str(config), "--workers", "0")
    assert result.exit_code == 0, result.output  # mean and std are the same: nothing else to compare
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert notes == [
        "note: histogram tests not run: the config records no histogram (they need a config computed by this chanstats version with --histogram, or of integer data wider than 8 bits)",
        "note: per-image property tests not run: the config records no image_properties (recompute it with this chanstats version)",
    ]


def test_config_without_percentiles_has_no_histogram_and_says_so(tmp_path):
    write_images(tmp_path / "flat", flat_values(), 2, seed=1)
    config = tmp_path / "stats.json"
    assert invoke("compute", str(tmp_path / "flat"), "--percentiles", "none", "-o", str(config), "--workers", "0", "-q").exit_code == 0
    data = json.loads(config.read_text())
    assert "histogram" not in data and "image_properties" in data
    result = invoke("check", "--against", str(config), "--workers", "0")
    assert result.exit_code == 0, result.output
    assert "note: histogram tests not run: the config records no histogram" in result.output
    assert "ks_area" in result.output


@pytest.mark.parametrize("section, value, message", [
    ("histogram", {"bin_width": 0, "channels": []}, "'histogram' must hold bin_width"),
    ("histogram", {"bin_width": 1, "channels": [{"low": 0, "counts": [1]}]}, "one entry per channel (3)"),
    ("histogram", {"bin_width": 1, "channels": [{"low": 0, "counts": [-1]}] * 3}, "'histogram' must hold"),
    ("image_properties", {"images": 2}, "'image_properties' must hold"),
])
def test_unusable_recorded_distribution_is_exit_2(same_moments, section, value, message):
    tmp_path, config, _, _ = same_moments
    data = json.loads(config.read_text())
    data[section] = value
    config.write_text(json.dumps(data))
    result = invoke("check", "--against", str(config), "--workers", "0")
    assert result.exit_code == 2, result.output
    assert message in result.output and str(config) in result.output and "Traceback" not in result.output


def test_bad_threshold_is_exit_2(same_moments):
    tmp_path, config, _, _ = same_moments
    for option in ("--max-jsd", "--max-wasserstein", "--max-psi", "--max-ks", "--ks-alpha"):
        result = invoke("check", "--against", str(config), option, "-1")
        assert result.exit_code == 2, (option, result.output)


# --- through the real command: the JSON report, the step summary, the plot ------------------------


def test_report_and_step_summary_through_the_command(same_moments, monkeypatch):
    tmp_path, config, _, _ = same_moments
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    report_path = tmp_path / "report.json"
    run = run_command(["check", str(tmp_path / "bimodal"), "--against", str(config), "--workers", "0",
                       "--report", str(report_path)], tmp_path, env={"GITHUB_STEP_SUMMARY": str(summary)}, check=False)
    assert run.returncode == 1, run.stderr
    assert run.stdout.rstrip().splitlines()[-1] == "DRIFT: wasserstein R, G, B; jsd R, G, B; psi R, G, B"
    report = json.loads(report_path.read_text())
    assert report["verdict"] == "DRIFT" and report["config"] == str(config)
    assert report["files"]["images_old"] == 3 and report["files"]["changed"] is True
    text = summary.read_text()
    assert text.startswith("earlier step\n### chanstats check: ❌ DRIFT\n")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows[0] == "| channel | Δ mean | Δ std | Wasserstein | JSD (bits) | PSI | KS brightness | KS contrast |"
    assert rows[-1] == "| *threshold* | ±0.01 | ±0.01 | 0.02 | 0.01 | 0.2 | 0.1 | 0.1 |"
    tests = {(t["test"], t["channel"]): t for t in report["tests"]}
    for name in "RGB":
        row = next(line for line in rows if line.startswith(f"| {name} |")).split(" | ")
        assert row[1:3] == ["+0.000000", "+0.000000"]
        assert row[3] == f"**{tests['wasserstein', name]['value']:.6f}** ❌"
        assert row[6] == "0.000000"  # KS brightness passes
    assert "**Failing:** wasserstein R, G, B; jsd R, G, B; psi R, G, B" in text
    # Without the variable, nothing is written there.
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert invoke("check", "--against", str(config), "--workers", "0").exit_code == 0
    assert summary.read_text() == text


@pytest.mark.slow  # matplotlib's import and a six-panel figure
def test_plot_marks_the_failing_channels(same_moments):
    pytest.importorskip("matplotlib")
    tmp_path, config, _, _ = same_moments
    plot = tmp_path / "drift.png"
    result = invoke("check", str(tmp_path / "bimodal"), "--against", str(config), "--workers", "0", "--plot", str(plot))
    assert result.exit_code == 1, result.output
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] > 1000
        pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    red = (np.abs(pixels - [0xC0, 0x39, 0x2B]).sum(axis=1) < 30).sum()
    assert red > 500  # the failing channels' red titles and frames


def test_drift_is_found_alike_in_process_and_through_the_worker_pool(tmp_path, engine):
    """More images than one chunk through the pool: the recorded sections and the verdict are those
    of an in-process run (the same padding images on both sides keep mean and std equal)."""
    write_images(tmp_path / "flat", flat_values(), 3, seed=1)
    write_images(tmp_path / "bimodal", bimodal_values(), 3, seed=2)
    padding = engine.padded([], tmp_path / "pad")
    config = tmp_path / "stats.json"
    assert invoke("compute", str(tmp_path / "flat"), *padding, "--histogram", "-o", str(config), "-q", "--workers", "0").exit_code == 0
    pooled = tmp_path / "pooled.json"
    assert invoke("compute", str(tmp_path / "flat"), *padding, "--histogram", "-o", str(pooled), "-q", *engine.options).exit_code == 0
    assert pooled.read_bytes() == config.read_bytes()
    result = invoke("check", str(tmp_path / "bimodal"), *padding, "--against", str(config), *engine.options)
    assert result.exit_code == 1, result.output
    assert result.output.rstrip().splitlines()[-1] == "DRIFT: wasserstein R, G, B; jsd R, G, B; psi R, G, B"

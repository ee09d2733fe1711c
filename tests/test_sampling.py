"""--sample: seeded subsets and cluster confidence intervals whose coverage is checked by simulation.

Reference t quantiles are scipy.stats.t.ppf values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chanstats.errors import ChanstatsError
from chanstats.stats.moments import MomentsTable
from chanstats.api import compute
from chanstats.stats.sampling import SampleSpec, cluster_intervals, sample_indices, t_quantile

from .helpers.cli import run_cli


def population(size: int = 3000, channels: int = 3, seed: int = 7) -> MomentsTable:
    """Per-image moments with strong between-image variation: pixel counts from 50 to 5000,
    image means from a skewed Beta, one channel's mean tied to image size (so a per-image average
    would be biased), within-image stds from 0.02 to 0.25."""
    rng = np.random.default_rng(seed)
    count = rng.integers(50, 5000, size)
    mean = rng.beta(2, 5, (size, channels))
    mean[:, 1] = np.clip(mean[:, 1] + 0.3 * count / 5000, 0, 1)
    std = rng.uniform(0.02, 0.25, (size, channels))
    return MomentsTable(count.astype(np.int64), mean, std**2 * count[:, None])


def truth(table: MomentsTable) -> tuple[np.ndarray, np.ndarray]:
    pooled = table.totals()
    return pooled.mean, np.sqrt(pooled.m2 / pooled.pixels)


@pytest.mark.parametrize("k", [100, 600])
def test_intervals_cover_the_truth_at_close_to_the_nominal_rate(k):
    table = population()
    true_mean, true_std = truth(table)
    seeds = 400
    covered_mean = np.zeros(table.channels)
    covered_std = np.zeros(table.channels)
    for seed in range(seeds):
        intervals = cluster_intervals(table.take(sample_indices(len(table), k, seed)), len(table))
        covered_mean += [lo <= m <= hi for (lo, hi), m in zip(intervals.mean_ci, true_mean)]
        covered_std += [lo <= s <= hi for (lo, hi), s in zip(intervals.std_ci, true_std)]
    rates = np.concatenate([covered_mean, covered_std]) / seeds
    assert np.all((rates >= 0.90) & (rates <= 0.99)), rates


def test_a_per_pixel_interval_would_be_far_too_narrow():
    # Why clusters: treating the sampled pixels as independent gives a much shorter interval.
    table = population()
    sample = table.take(sample_indices(len(table), 100, seed=1))
    intervals = cluster_intervals(sample, len(table))
    pixels = sample.count.sum()
    per_pixel_half_width = 1.96 * np.array(intervals.std) / np.sqrt(pixels)
    cluster_half_width = np.array([(hi - lo) / 2 for lo, hi in intervals.mean_ci])
    assert np.all(cluster_half_width > 10 * per_pixel_half_width)


def test_point_estimates_are_the_pooled_sample_statistics_and_a_census_is_exact():
    table = population(size=200)
    true_mean, true_std = truth(table)
    census = cluster_intervals(table.take(sample_indices(200, 200, seed=3)), 200)
    assert np.allclose(census.mean, true_mean, rtol=1e-12) and np.allclose(census.std, true_std, rtol=1e-12)
    for (lo, hi), m in zip(census.mean_ci, census.mean):
        assert lo == pytest.approx(m, abs=1e-15) and hi == pytest.approx(m, abs=1e-15)
    single = cluster_intervals(table.take(np.array([5])), 200)
    assert single.mean_ci is None and single.std_ci is None


def test_sample_indices_are_seeded_sorted_and_nested():
    small, large = sample_indices(1000, 50, seed=4), sample_indices(1000, 200, seed=4)
    assert small.tolist() == sorted(set(small.tolist())) and len(small) == 50
    assert set(small.tolist()) <= set(large.tolist())
    assert sample_indices(1000, 50, seed=4).tolist() == small.tolist()
    assert sample_indices(1000, 50, seed=5).tolist() != small.tolist()


def test_sample_spec_parsing():
    assert SampleSpec.parse("10%").size(25) == 3  # 2.5 rounds half up
    assert SampleSpec.parse("0.1%").size(10) == 1  # at least one image
    assert SampleSpec.parse("100%").size(7) == 7
    assert SampleSpec.parse("50").size(7) == 7
    assert str(SampleSpec.parse("12.5%")) == "12.5%"
    for bad in ["0", "-3", "0%", "101%", "ten", "1.5"]:
        with pytest.raises(ChanstatsError, match="--sample"):
            SampleSpec.parse(bad)


def test_t_quantile_against_known_values():
    assert t_quantile(0.975, 1) == pytest.approx(12.706204736, rel=1e-9)
    assert t_quantile(0.975, 2) == pytest.approx(4.302652730, rel=1e-9)
    assert t_quantile(0.975, 29) == pytest.approx(2.045229642, rel=1e-9)
    assert t_quantile(0.975, 1000) == pytest.approx(1.962339081, rel=1e-9)
    assert t_quantile(0.975, 1001) == pytest.approx(1.96233670528088, rel=1e-9)  # Cornish-Fisher side
    assert t_quantile(0.975, 5000) == pytest.approx(1.96043855170651, rel=1e-9)
    assert t_quantile(0.025, 10) == -t_quantile(0.975, 10)


def write_images(root: Path, count: int) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir()
    for i in range(count):
        level = int(rng.integers(20, 230))
        array = np.clip(rng.normal(level, 20, size=(8, 10, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(array).save(root / f"{i:03d}.png")
    return root


def test_compute_with_sample_measures_exactly_the_sampled_images(tmp_path):
    root = write_images(tmp_path / "data", 30)
    sampled = compute(str(root), sample="10", seed=2, workers=0)
    chosen = sample_indices(30, 10, seed=2)
    listed = [f"{i:03d}.png" for i in chosen]
    assert [s.name for s in sampled.sources] == listed
    direct = compute([str(root / name) for name in listed], workers=0)
    assert sampled.mean == direct.mean and sampled.std == direct.std
    assert sampled.fingerprint == compute(str(root), workers=0).fingerprint  # the whole listing's
    block = sampled.to_dict()["sample"]
    assert (block["images"], block["of"], block["seed"], block["level"]) == (10, 30, 2, 0.95)
    for (lo, hi), mean in zip(block["ci"]["mean"], sampled.mean):
        assert 0 <= lo < mean < hi <= 1
    assert "sample" not in compute(str(root), workers=0).to_dict()


def test_cli_sample_output_is_marked_and_reproducible(tmp_path):
    root = write_images(tmp_path / "data", 80)  # a sample of 20: more than one chunk, so workers=2 uses the pool
    runs = [run_cli("compute", str(root), "--sample", "25%", "--seed", "9", "--workers", str(w)) for w in (0, 2)]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    config = json.loads(runs[0].stdout)
    assert config["sample"]["images"] == 20 and config["sample"]["of"] == 80
    assert config["options"]["sample"] == "25%" and config["count"]["images"] == 20
    assert "sampled: 20 of 80 images" in runs[0].stderr and "95% CI mean" in runs[0].stderr
    bad = run_cli("compute", str(root), "--sample", "0%")
    assert bad.returncode == 2 and "Error: --sample '0%'" in bad.stderr


def test_an_image_seen_over_several_epochs_is_still_one_cluster(tmp_path):
    # A deterministic transform seen twice doubles every cluster's totals; the ratio estimator
    # and its variance are unchanged (K samples of one image are not K independent draws).
    root = write_images(tmp_path / "data", 20)
    once = compute(str(root), sample="8", resize=6, workers=0)
    twice = compute(str(root), sample="8", resize=6, epochs=2, workers=0)
    assert twice.samples == 2 * once.samples == 16
    for key in ("mean", "std"):
        for a, b in zip(once.sample["ci"][key], twice.sample["ci"][key]):
            assert a == pytest.approx(b, rel=1e-12, abs=1e-15)


def test_show_prints_the_intervals_of_a_sampled_config(tmp_path):
    root = write_images(tmp_path / "data", 12)
    config = tmp_path / "stats.json"
    compute(str(root), sample="50%", workers=0).write(str(config))
    shown = run_cli("show", str(config))
    assert shown.returncode == 0, shown.stderr
    assert "sampled: 6 of 12 images" in shown.stdout + shown.stderr
    assert "95% CI mean" in shown.stdout + shown.stderr


def test_a_sampled_run_sharded_and_merged_equals_the_single_run(tmp_path):
    from chanstats.options import RunOptions
    from chanstats.scale import state_file
    from chanstats.scale.merge import merge_states
    from chanstats.api import finalize, measure, plan

    root = write_images(tmp_path / "data", 23)
    options = dict(sample="40%", seed=5, listing=True)
    single = compute(str(root), workers=0, **options).dumps()
    run = plan(str(root), RunOptions(**options))
    assert len(run.sources) == 9 and run.fingerprint == compute(str(root), workers=0).fingerprint
    for parts in (2, 3):
        # Through the partial files' text, as `chanstats merge` reads them.
        states = [state_file.loads(state_file.dumps(measure(run, shard=(k, parts), workers=0)), f"part-{k}")
                  for k in range(1, parts + 1)]
        merged = finalize(merge_states(states, [f"part-{k}" for k in range(1, parts + 1)]))
        assert merged.dumps() == single
    assert len(json.loads(single)["listing"]) == 23  # --listing records every file, not the sample

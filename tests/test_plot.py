"""Pictures: `show --plot` (per-channel histograms with the statistics marked) and `compare --plot`
(running estimates against images seen). The data drawn are checked against numpy and the config;
the files are checked to be PNGs of a sensible size written by the real command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers.cli import run_cli

matplotlib = pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_images(folder: Path, count: int, size: int = 12, seed: int = 0) -> list[np.ndarray]:
    """``count`` small RGB PNGs with different colour casts; returns their pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = []
    for i in range(count):
        base = rng.integers(30, 220, 3)
        pixels = np.clip(rng.normal(base, 35, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
        arrays.append(pixels)
    return arrays


def assert_png(path: Path, min_width: int = 600, min_height: int = 300) -> None:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        width, height = image.size
    assert min_width <= width <= 4000 and min_height <= height <= 3000


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot")
    arrays = write_images(root / "data", 40)
    config = root / "stats.json"
    done = run_cli("compute", str(root / "data"), "--histogram", "--percentiles", "1,50,99", "--batch-size", "8",
                   "-q", "-o", str(config), "--workers", "0")
    assert done.returncode == 0, done.stderr
    return root, config, np.concatenate([a.reshape(-1, 3) for a in arrays])


def test_histogram_record_counts_every_pixel_of_every_channel(photos):
    _, config, pixels = photos
    record = json.loads(config.read_text())["histogram"]
    assert record["bin_width"] == 1  # 8-bit data: one bin per value, exact counts
    for c in range(3):
        low, counts = record["channels"][c]["low"], record["channels"][c]["counts"]
        expected = np.bincount(pixels[:, c], minlength=256)
        assert counts == expected[low:low + len(counts)].tolist()
        assert expected[:low].sum() == 0 and expected[low + len(counts):].sum() == 0


def test_show_plot_writes_a_png_through_the_command(photos, tmp_path):
    _, config, _ = photos
    picture = tmp_path / "stats.png"
    done = run_cli("show", str(config), "--plot", str(picture))
    assert done.returncode == 0, done.stderr
    assert "transforms.Normalize" in done.stdout and f"wrote {picture}" in done.stderr
    assert_png(picture, min_width=1000)


def test_drawn_histograms_and_marks_are_the_configs(photos):
    from chanstats.report.plot import channel_pictures, draw_config

    _, config_path, pixels = photos
    config = json.loads(config_path.read_text())
    pictures = channel_pictures(config)
    figure = draw_config(config)
    try:
        for c, (picture, axis) in enumerate(zip(pictures, figure.axes)):
            fractions, edges = np.histogram(pixels[:, c], bins=np.arange(-0.5, 256.5))
            fractions = fractions / pixels.shape[0]
            present = slice(int(pixels[:, c].min()), int(pixels[:, c].max()) + 1)
            low = config["histogram"]["channels"][c]["low"]
            np.testing.assert_allclose(picture.fractions, fractions[low:low + picture.fractions.size], rtol=0, atol=1e-15)
            np.testing.assert_allclose(picture.edges, edges[low:low + picture.fractions.size + 1] / 255, rtol=0, atol=1e-15)
            assert picture.fractions[present.start - low] > 0
            stairs = [p for p in axis.patches if type(p).__name__ == "StepPatch"]
            np.testing.assert_allclose(stairs[0].get_data().values, 100 * picture.fractions)
            assert picture.mean == config["exact"]["mean"][c] and picture.std == config["exact"]["std"][c]
            assert picture.running_mean == config["running"]["mean"][c]
            drawn = sorted(line.get_xdata()[0] for line in axis.lines if line.get_linestyle() == ":" and len(line.get_xdata()))
            expected = sorted({np.percentile(pixels[:, c], q, method="inverted_cdf") / 255 for q in (1, 50, 99)})
            np.testing.assert_allclose(drawn, expected, rtol=0, atol=1e-12)
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def test_show_plot_of_a_config_without_histogram_draws_the_statistics(tmp_path):
    write_images(tmp_path / "data", 6)
    config, picture = tmp_path / "stats.json", tmp_path / "stats.png"
    assert run_cli("compute", str(tmp_path / "data"), "-q", "-o", str(config), "--workers", "0").returncode == 0
    assert "histogram" not in json.loads(config.read_text())  # only when asked
    done = run_cli("show", str(config), "--plot", str(picture))
    assert done.returncode == 0, done.stderr
    assert_png(picture, min_width=1000)


def test_samples_seen_follows_the_batches_of_each_epoch():
    from chanstats.options import running_settings
    from chanstats.report.plot import samples_seen

    assert samples_seen(running_settings(batch_size=8), 20).tolist() == [8, 16, 20]
    assert samples_seen(running_settings(batch_size=8, drop_last=True), 40, epochs=2).tolist() == [8, 16, 24, 32]  # dropped samples are never seen
    assert samples_seen(running_settings(batch_size=5), 30, epochs=3).tolist() == list(range(5, 31, 5))


@pytest.mark.slow  # test_compare.py's plot test is the fast representative
def test_compare_plot_draws_each_estimate_against_images_seen(tmp_path):
    from chanstats import api
    from chanstats.report.plot import draw_comparison

    write_images(tmp_path / "data", 30)
    picture = tmp_path / "compare.png"
    done = run_cli("compare", str(tmp_path / "data"), "--batch-size", "4,16", "--momentum", "0.1,none",
                   "--plot", str(picture), "--workers", "0")
    assert done.returncode == 0, done.stderr
    assert_png(picture, min_width=900)

    comparison = api.compare([str(tmp_path / "data")], batch_sizes=[4, 16], momenta=[0.1, "none"], trajectory=True,
                             workers=0)
    figure = draw_comparison(comparison)
    try:
        mean_axis = figure.axes[0]
        curves = [line for line in mean_axis.lines if line.get_color() != "black"]  # not the exact line
        assert len(curves) == len(comparison.estimates) == 4
        colours, styles = {}, {}
        for estimate, line in zip(comparison.estimates, curves):
            size = estimate.settings.batch_size
            ends = np.minimum(np.arange(size, 30 + size, size), 30)  # images seen after each batch
            assert line.get_xdata().tolist() == ends.tolist()
            np.testing.assert_array_equal(line.get_ydata(), estimate.trajectory_mean[:, 0])
            colours.setdefault(size, set()).add(line.get_color() if isinstance(line.get_color(), str) else tuple(line.get_color()))
            styles.setdefault(estimate.settings.cumulative, set()).add(line.get_linestyle())
        assert all(len(v) == 1 for v in colours.values()) and len({next(iter(v)) for v in colours.values()}) == 2
        assert all(len(v) == 1 for v in styles.values()) and len({next(iter(v)) for v in styles.values()}) == 2
        # The legends sit outside every axes: no curve is covered.
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        for legend in figure.legends:
            box = legend.get_window_extent(renderer)
            assert all(not box.overlaps(axis.get_window_extent(renderer)) for axis in figure.axes)
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)

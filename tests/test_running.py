"""The BatchNorm running-average simulator, checked against a real ``torch.nn.BatchNorm2d``.

The oracle is never chanstats itself: torch's own module for the torch convention, a plain numpy
re-statement of Keras' update (on the raw pixels of each batch) for the keras convention.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings as hyp_settings, strategies as st

from chanstats.errors import BadSpecError, ChanstatsError
from chanstats.stats.moments import FloatMoments, MomentsTable
from chanstats.stats.batchnorm import RunningEstimate, RunningSettings, batch_order, simulate, simulate_many


def random_images(kind: str, n: int = 37, shape: tuple[int, int, int] = (3, 5, 7), seed: int = 1) -> np.ndarray:
    """(N, C, H, W) float64 pixels that float32 represents exactly (so both BatchNorm dtypes see them)."""
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        x = rng.random((n, *shape))
    elif kind == "near_200":  # mean/std ≈ 1e7: where E[x²] − E[x]² would lose every digit
        x = 200 / 255 + 1e-7 * rng.standard_normal((n, *shape))
    else:
        raise ValueError(kind)
    return x.astype(np.float32).astype(np.float64) if kind == "uniform" else x


def table_of(images: list[np.ndarray] | np.ndarray) -> MomentsTable:
    """Two-pass per-image (count, mean, M2) of (C, H, W) arrays."""
    rows = []
    for image in images:
        flat = image.reshape(image.shape[0], -1)
        mean = flat.mean(axis=1)
        rows.append((flat.shape[1], mean, ((flat - mean[:, None]) ** 2).sum(axis=1)))
    return MomentsTable.from_rows(rows, channels=images[0].shape[0])


def batchnorm_run(images: np.ndarray, batches: list[np.ndarray], momentum: float | None, dtype: torch.dtype,
                  every_batch: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Feed the batches to a real BatchNorm2d in training mode; its running_mean/var (after each batch)."""
    bn = torch.nn.BatchNorm2d(images.shape[1], momentum=momentum, dtype=dtype).train()
    means, variances = [], []
    with torch.no_grad():
        for index in batches:
            bn(torch.from_numpy(images[index]).to(dtype))
            means.append(bn.running_mean.double().numpy().copy())
            variances.append(bn.running_var.double().numpy().copy())
    if every_batch:
        return np.array(means), np.array(variances)
    return means[-1], variances[-1]


def pooled(images: list[np.ndarray], index: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean, M2 and count per channel of all pixels of a batch, concatenated."""
    pixels = np.concatenate([images[i].reshape(images[i].shape[0], -1) for i in index], axis=1)
    mean = pixels.mean(axis=1)
    return mean, ((pixels - mean[:, None]) ** 2).sum(axis=1), pixels.shape[1]


def keras_reference(images: list[np.ndarray], batches: list[np.ndarray], momentum: float) -> tuple[np.ndarray, np.ndarray]:
    """Keras BatchNormalization: moving = moving·m + batch·(1 − m), biased batch variance, from 0 and 1."""
    channels = images[0].shape[0]
    moving_mean, moving_var = np.zeros(channels), np.ones(channels)
    for index in batches:
        mean, m2, n = pooled(images, index)
        moving_mean = moving_mean * momentum + mean * (1 - momentum)
        moving_var = moving_var * momentum + (m2 / n) * (1 - momentum)
    return moving_mean, moving_var


@pytest.mark.parametrize("kind", ["uniform", "near_200"])
@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("momentum", [0.1, 0.01])
def test_torch_convention_matches_batchnorm2d_float64(kind: str, shuffle: bool, momentum: float) -> None:
    images = random_images(kind)
    settings = RunningSettings(momentum=momentum, batch_size=8, shuffle=shuffle, seed=3)
    estimate = simulate(table_of(images), settings)
    batches = batch_order(len(images), settings)
    mean, var = batchnorm_run(images, batches, momentum, torch.float64)
    assert estimate.batches == len(batches) == 5
    np.testing.assert_allclose(estimate.mean, mean, rtol=1e-10, atol=0)
    np.testing.assert_allclose(estimate.var, var, rtol=1e-10, atol=0)
    np.testing.assert_array_equal(estimate.std, np.sqrt(estimate.var))
    assert estimate.trajectory_mean is None and estimate.trajectory_var is None


@pytest.mark.parametrize("kind", ["uniform", "near_200"])
def test_cumulative_matches_batchnorm2d_momentum_none_after_every_batch(kind: str) -> None:
    # Cumulative averaging forgets the initial running_var of 1 after the first batch, so here the
    # tiny batch variances of the near-constant data are the whole answer, not a 1e-13 ripple on 1.
    images = random_images(kind)
    settings = RunningSettings(cumulative=True, batch_size=6, seed=5)
    estimate = simulate(table_of(images), settings, trajectory=True)
    batches = batch_order(len(images), settings)
    means, variances = batchnorm_run(images, batches, None, torch.float64, every_batch=True)
    assert estimate.trajectory_mean is not None and estimate.trajectory_var is not None
    assert estimate.trajectory_mean.shape == estimate.trajectory_var.shape == (len(batches), 3)
    np.testing.assert_allclose(estimate.trajectory_mean, means, rtol=1e-10, atol=0)
    np.testing.assert_allclose(estimate.trajectory_var, variances, rtol=1e-10, atol=0)
    np.testing.assert_array_equal(estimate.trajectory_mean[-1], estimate.mean)
    # ... and the oracle is no accident: the plain average of the unbiased batch variances.
    listed = list(images)
    unbiased = [pooled(listed, index)[1] / (pooled(listed, index)[2] - 1) for index in batches]
    np.testing.assert_allclose(estimate.var, np.mean(unbiased, axis=0), rtol=1e-10)
    if kind == "near_200":
        assert np.all(estimate.var < 1e-13) and np.all(estimate.var > 1e-15)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_float32_batchnorm2d_agrees_to_float32_precision(momentum: float | None) -> None:
    images = random_images("uniform", n=53, shape=(3, 9, 11))
    settings = RunningSettings(momentum=momentum, cumulative=momentum is None, batch_size=16, seed=2)
    estimate = simulate(table_of(images), settings)
    mean, var = batchnorm_run(images, batch_order(len(images), settings), momentum, torch.float32)
    np.testing.assert_allclose(estimate.mean, mean, rtol=1e-5)
    np.testing.assert_allclose(estimate.var, var, rtol=1e-5)


@pytest.mark.parametrize("momentum", [None, 0.9])
@pytest.mark.parametrize("kind", ["uniform", "near_200"])
def test_keras_convention_matches_keras_formula(momentum: float | None, kind: str) -> None:
    images = random_images(kind)
    settings = RunningSettings(convention="keras", momentum=momentum, batch_size=10, seed=7)
    assert settings.effective_momentum == (0.99 if momentum is None else momentum)
    estimate = simulate(table_of(images), settings)
    mean, var = keras_reference(list(images), batch_order(len(images), settings), settings.effective_momentum)
    np.testing.assert_allclose(estimate.mean, mean, rtol=1e-12, atol=0)
    np.testing.assert_allclose(estimate.var, var, rtol=1e-12, atol=0)


def test_keras_variance_is_biased_and_torch_unbiased() -> None:
    # One batch of 3 images of 2×2 pixels: n = 12, so n/(n−1) is a visible 9 %.
    images = random_images("uniform", n=3, shape=(2, 2, 2))
    table = table_of(images)
    torch_estimate = simulate(table, RunningSettings(momentum=0.1, batch_size=3, shuffle=False))
    keras_estimate = simulate(table, RunningSettings(convention="keras", momentum=0.9, batch_size=3, shuffle=False))
    mean, m2, n = pooled(list(images), np.arange(3))
    assert n == 12
    np.testing.assert_allclose(torch_estimate.mean, 0.1 * mean, rtol=1e-15)
    np.testing.assert_allclose(keras_estimate.mean, torch_estimate.mean, rtol=1e-15)
    np.testing.assert_allclose(torch_estimate.var, 0.9 + 0.1 * m2 / 11, rtol=1e-15)
    np.testing.assert_allclose(keras_estimate.var, 0.9 + 0.1 * m2 / 12, rtol=1e-15)
    assert np.all(torch_estimate.var > keras_estimate.var)
    np.testing.assert_allclose((torch_estimate.var - 0.9) / (keras_estimate.var - 0.9), 12 / 11, rtol=1e-12)


def test_drop_last_drops_the_partial_batch() -> None:
    images = random_images("uniform")
    kept = RunningSettings(batch_size=8, seed=4)
    dropped = RunningSettings(batch_size=8, seed=4, drop_last=True)
    kept_batches, dropped_batches = batch_order(37, kept), batch_order(37, dropped)
    assert [len(b) for b in kept_batches] == [8, 8, 8, 8, 5]
    assert [len(b) for b in dropped_batches] == [8, 8, 8, 8]
    for a, b in zip(kept_batches, dropped_batches):
        np.testing.assert_array_equal(a, b)
    estimate = simulate(table_of(images), dropped)
    assert estimate.batches == 4
    mean, var = batchnorm_run(images, dropped_batches, 0.1, torch.float64)
    np.testing.assert_allclose(estimate.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(estimate.var, var, rtol=1e-10)
    assert not np.allclose(estimate.mean, simulate(table_of(images), kept).mean, rtol=1e-6)


def test_batch_larger_than_dataset_is_one_batch() -> None:
    images = random_images("uniform", n=11)
    table = table_of(images)
    settings = RunningSettings(batch_size=64, seed=9)
    (only,) = batch_order(11, settings)
    assert sorted(only.tolist()) == list(range(11))
    estimate = simulate(table, settings)
    mean, var = batchnorm_run(images, [only], 0.1, torch.float64)
    assert estimate.batches == 1
    np.testing.assert_allclose(estimate.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(estimate.var, var, rtol=1e-10)
    with pytest.raises(BadSpecError, match="no batch"):
        simulate(table, RunningSettings(batch_size=64, drop_last=True))


def test_one_value_per_channel_fails_like_torch() -> None:
    images = random_images("uniform", n=6, shape=(3, 1, 1))
    table = table_of(images)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        batchnorm_run(images, [np.array([0])], 0.1, torch.float64)
    with pytest.raises(BadSpecError, match=r"batch_size=1\).*Expected more than 1 value per channel"):
        simulate(table, RunningSettings(batch_size=1))
    # A last partial batch of one 1-pixel image: same failure, and drop_last is the cure.
    with pytest.raises(BadSpecError, match=r"batch 3 \(1 sample.*drop_last"):
        simulate(table_of(images[:5]), RunningSettings(batch_size=2, shuffle=False))
    assert simulate(table_of(images[:5]), RunningSettings(batch_size=2, drop_last=True)).batches == 2
    # Keras computes a (zero) biased variance from one value and carries on.
    keras = simulate(table, RunningSettings(convention="keras", batch_size=1))
    assert keras.batches == 6 and np.all(keras.var < 1)


def test_shuffle_order_seed_and_determinism() -> None:
    listing = batch_order(37, RunningSettings(batch_size=8, shuffle=False))
    np.testing.assert_array_equal(np.concatenate(listing), np.arange(37))
    order = np.concatenate(batch_order(37, RunningSettings(batch_size=8, seed=11)))
    np.testing.assert_array_equal(order, np.random.default_rng([11, 0]).permutation(37))
    again = np.concatenate(batch_order(37, RunningSettings(batch_size=8, seed=11)))
    np.testing.assert_array_equal(order, again)
    other = np.concatenate(batch_order(37, RunningSettings(batch_size=8, seed=12)))
    assert sorted(other.tolist()) == list(range(37)) and not np.array_equal(order, other)
    table = table_of(random_images("uniform"))
    a = simulate(table, RunningSettings(batch_size=8, seed=11))
    b = simulate(table, RunningSettings(batch_size=8, seed=11))
    c = simulate(table, RunningSettings(batch_size=8, seed=12))
    assert a.mean.tobytes() == b.mean.tobytes() and a.var.tobytes() == b.var.tobytes()
    assert not np.array_equal(a.mean, c.mean)


def test_epochs_shuffle_independently_and_double_the_batches() -> None:
    first, second = random_images("uniform", seed=1), random_images("uniform", seed=2)  # two augmented epochs
    images = np.concatenate([first, second])
    settings = RunningSettings(batch_size=8, seed=6)
    batches = batch_order(74, settings, epochs=2)
    assert len(batches) == 2 * len(batch_order(37, settings)) == 10
    epoch0, epoch1 = np.concatenate(batches[:5]), np.concatenate(batches[5:])
    np.testing.assert_array_equal(epoch0, np.random.default_rng([6, 0]).permutation(37))
    np.testing.assert_array_equal(epoch1 - 37, np.random.default_rng([6, 1]).permutation(37))
    assert not np.array_equal(epoch0, epoch1 - 37)
    estimate = simulate(table_of(images), settings, epochs=2, trajectory=True)
    assert estimate.batches == 10
    assert estimate.trajectory_mean is not None and estimate.trajectory_mean.shape == (10, 3)
    mean, var = batchnorm_run(images, batches, 0.1, torch.float64)
    np.testing.assert_allclose(estimate.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(estimate.var, var, rtol=1e-10)
    with pytest.raises(BadSpecError, match="epochs"):
        simulate(table_of(images[:73]), settings, epochs=2)


def test_images_of_different_sizes_pool_all_their_pixels() -> None:
    rng = np.random.default_rng(8)
    images = [rng.random((3, int(h), int(w))) * 255 for h, w in rng.integers(1, 12, size=(29, 2))]
    table = table_of(images)
    # momentum 1: the running values are exactly the last batch's statistics, batch after batch
    settings = RunningSettings(momentum=1.0, batch_size=4, seed=1)
    estimate = simulate(table, settings, trajectory=True)
    keras = simulate(table, RunningSettings(convention="keras", momentum=0.5, batch_size=4, seed=1))
    batches = batch_order(len(images), settings)
    assert estimate.trajectory_mean is not None and estimate.trajectory_var is not None
    for b, index in enumerate(batches):
        mean, m2, n = pooled(images, index)
        np.testing.assert_allclose(estimate.trajectory_mean[b], mean, rtol=1e-12)
        np.testing.assert_allclose(estimate.trajectory_var[b], m2 / (n - 1), rtol=1e-12)
    mean, var = keras_reference(images, batches, 0.5)
    np.testing.assert_allclose(keras.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(keras.var, var, rtol=1e-12)


@hyp_settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(1, 1000), min_size=1, max_size=30),
    batch_size=st.integers(1, 12),
    offset=st.sampled_from([0.0, 200 / 255, 1e6]),
)
def test_batch_pooling_equals_sequential_chan_merges(counts: list[int], batch_size: int, offset: float) -> None:
    rng = np.random.default_rng(len(counts) * 31 + batch_size)
    table = MomentsTable(np.array(counts), offset + rng.random((len(counts), 2)), rng.random((len(counts), 2)) * 5)
    settings = RunningSettings(momentum=1.0, batch_size=batch_size, seed=batch_size)
    if any(sum(counts[i] for i in b) < 2 for b in batch_order(len(counts), settings)):
        return
    estimate = simulate(table, settings, trajectory=True)
    assert estimate.trajectory_mean is not None and estimate.trajectory_var is not None
    for b, index in enumerate(batch_order(len(counts), settings)):
        merged = FloatMoments.empty(2)
        for i in index:
            merged.merge(FloatMoments(int(table.count[i]), table.mean[i], table.m2[i], np.zeros(2), np.zeros(2)))
        np.testing.assert_allclose(estimate.trajectory_mean[b], merged.mean, rtol=1e-13)
        np.testing.assert_allclose(estimate.trajectory_var[b], merged.m2 / (merged.pixels - 1), rtol=1e-9)


def test_simulate_many_equals_one_by_one_in_order() -> None:
    table = table_of(random_images("uniform"))
    settings_list = [
        RunningSettings(batch_size=8),
        RunningSettings(convention="keras", batch_size=8),
        RunningSettings(batch_size=5, momentum=0.3),
        RunningSettings(cumulative=True, batch_size=8),
        RunningSettings(batch_size=8, shuffle=False),
    ]
    many = simulate_many(table, settings_list, trajectory=True)
    assert [e.settings for e in many] == settings_list
    for estimate, settings in zip(many, settings_list):
        single = simulate(table, settings, trajectory=True)
        assert isinstance(estimate, RunningEstimate) and estimate.batches == single.batches
        for field in ("mean", "var", "std", "trajectory_mean", "trajectory_var"):
            np.testing.assert_array_equal(getattr(estimate, field), getattr(single, field))
    assert simulate_many(table, []) == []


@pytest.mark.parametrize(
    "bad, message",
    [
        (RunningSettings(batch_size=0), "batch size"),
        (RunningSettings(batch_size=-3), "batch size"),
        (RunningSettings(batch_size=2.5), "batch size"),  # type: ignore[arg-type]
        (RunningSettings(momentum=0.0), "momentum"),
        (RunningSettings(momentum=-0.1), "momentum"),
        (RunningSettings(momentum=1.5), "momentum"),
        (RunningSettings(momentum=math.nan), "momentum"),
        (RunningSettings(convention="keras", cumulative=True), "cumulative"),
        (RunningSettings(cumulative=True, momentum=0.1), "cumulative"),
        (RunningSettings(convention="jax"), "convention"),
        (RunningSettings(seed=-1), "seed"),
    ],
)
def test_bad_settings_raise_bad_spec(bad: RunningSettings, message: str) -> None:
    with pytest.raises(BadSpecError, match=message):
        bad.validate()
    with pytest.raises(BadSpecError, match=message):
        simulate(table_of(random_images("uniform", n=4)), bad)


def test_effective_momentum_and_no_samples() -> None:
    assert RunningSettings().effective_momentum == 0.1
    assert RunningSettings(convention="keras").effective_momentum == 0.99
    assert RunningSettings(momentum=0.2).effective_momentum == 0.2
    assert RunningSettings(cumulative=True).effective_momentum is None
    assert RunningSettings().validate() == RunningSettings()
    with pytest.raises(ChanstatsError, match="no samples to simulate"):
        simulate(MomentsTable.from_rows([], channels=3), RunningSettings())
    with pytest.raises(BadSpecError, match="epochs"):
        batch_order(10, RunningSettings(), epochs=0)


def test_importing_the_simulator_does_not_import_torch() -> None:
    code = "import sys, chanstats.stats.batchnorm; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)

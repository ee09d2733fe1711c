"""`chanstats export` read back the way each framework reads it, and `chanstats show`."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from torchvision.transforms import v2

from chanstats.cli import cli
from .helpers.files import write_dataset
from .helpers.oracles import exact_mean_std


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("export")
    paths = write_dataset(tmp_path / "data", count=5)
    config = tmp_path / "stats.json"
    result = CliRunner().invoke(cli, ["compute", str(tmp_path / "data"), "-o", str(config), "--workers", "0"])
    assert result.exit_code == 0, result.output
    mean, std = exact_mean_std(paths)
    return tmp_path, config, mean, std, result.output


def export(config, fmt, *extra):
    result = CliRunner().invoke(cli, ["export", str(config), "--to", fmt, *extra])
    assert result.exit_code == 0, result.output
    return result.output


def images_uint8(seed=0):
    """A batch of HWC uint8 images and its torchvision-normalized (N, C, H, W) reference."""
    x = np.random.default_rng(seed).integers(0, 256, (4, 7, 9, 3), dtype=np.uint8)
    return x


def reference(x, mean, std):
    tensor = torch.from_numpy(x).permute(0, 3, 1, 2).to(torch.float64) / 255
    return v2.Normalize(mean=list(mean), std=list(std))(tensor).numpy()


def call_kwargs(snippet: str, name: str) -> dict:
    """Keyword arguments of the call to ``…name(...)`` in a Python snippet, as literals."""
    for node in ast.walk(ast.parse(snippet)):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == name:
            return {k.arg: ast.literal_eval(k.value) for k in node.keywords}
    raise AssertionError(f"no {name}(...) call in:\n{snippet}")


def test_config_matches_numpy(made):
    _, config, mean, std, _ = made
    data = json.loads(config.read_text())
    np.testing.assert_allclose(data["exact"]["mean"], mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(data["exact"]["std"], std, rtol=0, atol=1e-12)


def test_torchvision_snippet_runs(made):
    _, config, mean, std, _ = made
    namespace: dict = {}
    exec(export(config, "torchvision"), namespace)
    normalize = namespace["normalize"]
    assert isinstance(normalize, v2.Normalize)
    np.testing.assert_allclose(normalize.mean, mean, atol=1e-12)
    np.testing.assert_allclose(normalize.std, std, atol=1e-12)


def test_bn_state_equals_normalize(made, tmp_path):
    _, config, mean, std, _ = made
    out = tmp_path / "bn.pt"
    export(config, "bn-state", "-o", str(out))
    state = torch.load(out, weights_only=True)
    bn = torch.nn.BatchNorm2d(3, affine=False)
    bn.load_state_dict(state)
    bn.eval()
    x = torch.rand(8, 3, 16, 16)
    expected = v2.Normalize(mean=list(mean), std=list(std))(x)
    with torch.no_grad():
        assert torch.max(torch.abs(bn(x) - expected)).item() <= 1e-5
    np.testing.assert_allclose(state["running_var"].double().numpy(), std**2 - 1e-5, rtol=1e-6)


def test_bn_state_needs_a_file(made):
    _, config, *_ = made
    result = CliRunner().invoke(cli, ["export", str(config), "--to", "bn-state"])
    assert result.exit_code == 2 and "-o" in result.output


def test_timm_json(made):
    _, config, mean, std, _ = made
    data = json.loads(export(config, "timm"))
    assert set(data) == {"mean", "std"}
    np.testing.assert_allclose(data["mean"], mean, atol=1e-12)
    np.testing.assert_allclose(data["std"], std, atol=1e-12)


def test_hf_preprocessor_config(made):
    _, config, mean, std, _ = made
    data = json.loads(export(config, "hf"))
    assert data["do_normalize"] is True and data["do_rescale"] is True
    assert data["rescale_factor"] == pytest.approx(1 / 255, rel=1e-15)
    x = images_uint8()
    # What transformers' image processors do: rescale, then (x − image_mean) / image_std, channels last.
    got = (x * data["rescale_factor"] - np.array(data["image_mean"])) / np.array(data["image_std"])
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), reference(x, mean, std), atol=1e-9)


def test_albumentations_normalize(made):
    _, config, mean, std, _ = made
    kwargs = call_kwargs(export(config, "albumentations"), "Normalize")
    assert kwargs["max_pixel_value"] == 255.0
    x = images_uint8(1)
    # albumentations.Normalize: (img − mean·max_pixel_value) / (std·max_pixel_value), channels last.
    m, s = np.array(kwargs["mean"]), np.array(kwargs["std"])
    got = (x - m * kwargs["max_pixel_value"]) / (s * kwargs["max_pixel_value"])
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), reference(x, mean, std), atol=1e-9)


def test_mmengine_on_0_255_scale(made):
    _, config, mean, std, _ = made
    namespace: dict = {}
    exec(export(config, "mmengine"), namespace)
    pre = namespace["data_preprocessor"]
    np.testing.assert_allclose(pre["mean"], mean * 255, atol=1e-9)
    np.testing.assert_allclose(pre["std"], std * 255, atol=1e-9)
    assert pre["bgr_to_rgb"] is True
    x = images_uint8(2)
    bgr = x[..., ::-1]  # what mmcv's loader hands over
    rgb = bgr[..., ::-1] if pre["bgr_to_rgb"] else bgr
    got = (rgb - np.array(pre["mean"])) / np.array(pre["std"])
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), reference(x, mean, std), atol=1e-9)


def test_mmengine_single_channel_has_no_swap(tmp_path):
    write_dataset(tmp_path / "data", count=3)
    config = tmp_path / "grey.json"
    assert CliRunner().invoke(cli, ["compute", str(tmp_path / "data"), "-o", str(config), "--mode", "L", "--workers", "0", "-q"]).exit_code == 0
    namespace: dict = {}
    exec(export(config, "mmengine"), namespace)
    assert namespace["data_preprocessor"]["bgr_to_rgb"] is False
    assert len(namespace["data_preprocessor"]["mean"]) == 1


def test_keras_variance_is_std_squared(made):
    _, config, mean, std, _ = made
    text = export(config, "keras")
    kwargs = call_kwargs(text, "Normalization")
    assert kwargs["axis"] == -1
    np.testing.assert_allclose(kwargs["variance"], std**2, rtol=1e-12)
    x = images_uint8(3)
    # keras.layers.Normalization after Rescaling(1/255): (x − mean) / sqrt(variance), channels last.
    got = (x / 255 - np.array(kwargs["mean"])) / np.sqrt(np.array(kwargs["variance"]))
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), reference(x, mean, std), atol=1e-9)
    assert "Rescaling(1 / 255)" in text


@pytest.mark.parametrize("fmt, load", [("json", json.loads), ("yaml", yaml.safe_load)])
def test_json_and_yaml_are_the_config(made, fmt, load):
    _, config, *_ = made
    assert load(export(config, fmt)) == json.loads(config.read_text())


def test_export_to_file_and_bad_input(made, tmp_path):
    _, config, mean, _, _ = made
    out = tmp_path / "timm.json"
    export(config, "timm", "-o", str(out))
    np.testing.assert_allclose(json.loads(out.read_text())["mean"], mean, atol=1e-12)
    assert CliRunner().invoke(cli, ["export", str(tmp_path / "missing.json"), "--to", "timm"]).exit_code == 2
    assert CliRunner().invoke(cli, ["export", str(config), "--to", "caffe"]).exit_code == 2


def test_show_prints_the_summary(made):
    _, config, mean, std, compute_stderr = made
    result = CliRunner().invoke(cli, ["show", str(config)])
    assert result.exit_code == 0, result.output
    for c, name in enumerate("RGB"):
        line = next(l for l in result.output.splitlines() if l.startswith(name + " "))
        assert float(line.split()[1]) == pytest.approx(mean[c], abs=5e-7)
        assert float(line.split()[2]) == pytest.approx(std[c], abs=5e-7)
    assert "transforms.Normalize(mean=[" in result.output
    # the same table compute printed when it wrote the config
    assert result.output.strip() in compute_stderr


def test_show_bad_config_is_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    result = CliRunner().invoke(cli, ["show", str(bad)])
    assert result.exit_code == 2 and "not a chanstats config" in result.output

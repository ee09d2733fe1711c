"""`chanstats export`: the numbers, the options and the errors, `Result.normalize/export`, and `chanstats show`.

Each format loaded by its framework's own loader is tested in test_export_consumers.py."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image
from torchvision.transforms import v2

from chanstats.cli import cli
from .helpers.cli import run_cli
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


@pytest.mark.parametrize("flag, affine", [((), True), (("--affine",), True), (("--no-affine",), False)])
def test_bn_state_loads_strictly_and_equals_normalize(made, tmp_path, flag, affine):
    _, config, mean, std, _ = made
    out = tmp_path / "bn.pt"
    result = CliRunner().invoke(cli, ["export", str(config), "--to", "bn-state", "-o", str(out), *flag])
    assert result.exit_code == 0, result.output
    note = "nn.BatchNorm2d(3, eps=1e-05)" if affine else "nn.BatchNorm2d(3, eps=1e-05, affine=False)"
    assert note in result.output and "eval()" in result.output
    state = torch.load(out, weights_only=True)
    assert note in state._metadata[""]["chanstats"] and "eval()" in state._metadata[""]["chanstats"]
    bn = torch.nn.BatchNorm2d(3, affine=affine)
    bn.load_state_dict(state, strict=True)
    if affine:
        assert torch.equal(bn.weight, torch.ones(3)) and torch.equal(bn.bias, torch.zeros(3))
    other = torch.nn.BatchNorm2d(3, affine=not affine)
    with pytest.raises(RuntimeError):  # the file says which module it fits because the other one refuses it
        other.load_state_dict(state, strict=True)
    bn.eval()
    x = torch.rand(8, 3, 16, 16)
    expected = (x.double() - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.max(torch.abs(bn(x).double() - expected)).item() <= 1e-5
    np.testing.assert_allclose(state["running_var"].double().numpy(), std**2 - 1e-5, rtol=1e-6)


def test_bn_state_other_eps(made, tmp_path):
    _, config, mean, std, _ = made
    out = tmp_path / "bn.pt"
    export(config, "bn-state", "-o", str(out), "--eps", "1e-3")
    bn = torch.nn.BatchNorm2d(3, eps=1e-3)
    bn.load_state_dict(torch.load(out, weights_only=True))
    x = torch.rand(2, 3, 5, 5)
    with torch.no_grad():
        got = bn.eval()(x).double()
    expected = (x.double() - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.max(torch.abs(got - expected)).item() <= 1e-5


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


def test_mmengine_on_0_255_scale(made):
    _, config, mean, std, _ = made
    namespace: dict = {}
    exec(export(config, "mmengine"), namespace)
    pre = namespace["data_preprocessor"]
    assert "type" not in pre  # merges into a base's preprocessor instead of replacing its type
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


@pytest.mark.parametrize("fmt, option", [
    ("timm", ["--base", "model"]),
    ("hf", ["--flavour", "mmdet"]),
    ("torchvision", ["--type", "ImgDataPreprocessor"]),
    ("mmengine", ["--no-affine"]),
    ("keras", ["--eps", "1e-3"]),
])
def test_an_option_for_another_format_is_refused(made, tmp_path, fmt, option):
    _, config, *_ = made
    out = tmp_path / "out.txt"
    result = CliRunner().invoke(cli, ["export", str(config), "--to", fmt, "-o", str(out), *option])
    assert result.exit_code == 2
    assert f"{option[0]}" in result.output and "applies to --to" in result.output
    assert not out.exists()


def write_base(folder, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "preprocessor_config.json").write_text(text)
    return folder


@pytest.mark.parametrize("base_text, reason", [
    (None, "cannot read"),
    ("{not json", "not valid JSON"),
    ('{"do_normalize": true, "image_mean": [0.5, 0.5, 0.5]}', "no image_processor_type"),
    ('{"image_processor_type": "ViTImageProcessor", "do_rescale": false}', "do_rescale false"),
    ('{"image_processor_type": "ViTImageProcessor", "rescale_factor": 1.0}', "rescales by 1.0"),
    ('{"image_processor_type": "ViTImageProcessor", "image_mean": [0.5]}', "normalizes 1 channels, the config has 3"),
])
def test_hf_base_that_cannot_work_is_refused(made, tmp_path, base_text, reason):
    _, config, *_ = made
    base = tmp_path / "model"
    if base_text is not None:
        write_base(base, base_text)
    out = tmp_path / "ours.json"
    result = CliRunner().invoke(cli, ["export", str(config), "--to", "hf", "--base", str(base), "-o", str(out)])
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert len(message.splitlines()) == 1 and str(base) in message and reason in message
    assert not out.exists()


def edited_config(made, tmp_path, **changes):
    """The module's config with some top-level or exact.* values replaced."""
    _, config, *_ = made
    data = json.loads(config.read_text())
    for key, value in changes.items():
        if key == "method":
            data["exact"]["method"] = value
        else:
            data[key] = value
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("fmt", ["mmengine", "albumentations", "albumentations-json", "detectron2"])
def test_raw_pixel_formats_refuse_float_pipeline_statistics(made, tmp_path, fmt):
    config = edited_config(made, tmp_path, method="float64")
    result = CliRunner().invoke(cli, ["export", str(config), "--to", fmt])
    assert result.exit_code == 2 and "float pipeline" in result.output


def test_hf_for_float_pipeline_statistics_does_not_rescale(made, tmp_path):
    config = edited_config(made, tmp_path, method="float64")
    assert json.loads(export(config, "hf"))["do_rescale"] is False


@pytest.mark.parametrize("changes, reason", [({"scale": 65535}, "8-bit"), ({"channels": ["R", "G", "A"]}, "RGB or L")])
def test_detectron2_refuses_what_it_cannot_read(made, tmp_path, changes, reason):
    result = CliRunner().invoke(cli, ["export", str(edited_config(made, tmp_path, **changes)), "--to", "detectron2"])
    assert result.exit_code == 2 and reason in result.output


def test_detectron2_yaml_is_bgr_on_the_0_255_scale(made):
    _, config, mean, std, _ = made
    data = yaml.safe_load(export(config, "detectron2"))
    assert data["INPUT"] == {"FORMAT": "BGR"}
    np.testing.assert_allclose(data["MODEL"]["PIXEL_MEAN"], (mean * 255)[::-1], rtol=1e-12)
    np.testing.assert_allclose(data["MODEL"]["PIXEL_STD"], (std * 255)[::-1], rtol=1e-12)


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """A Result computed by the worker pool (2 workers, more images than one chunk), and its config."""
    import chanstats

    tmp_path = tmp_path_factory.mktemp("pooled")
    paths = write_dataset(tmp_path / "data", count=40, seed=3)
    result = chanstats.compute(str(tmp_path / "data"), workers=2)
    config = tmp_path / "stats.json"
    result.write(str(config))
    return result, config, paths


def test_result_normalize_is_a_torchvision_normalize(pooled):
    result, _, paths = pooled
    normalize = result.normalize()
    assert isinstance(normalize, v2.Normalize)
    mean, std = exact_mean_std(paths)
    np.testing.assert_allclose(normalize.mean, mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(normalize.std, std, rtol=0, atol=1e-12)
    x = torch.from_numpy(np.asarray(Image.open(paths[0]).convert("RGB"), dtype=np.float64) / 255).permute(2, 0, 1)
    expected = (x.numpy() - mean[:, None, None]) / std[:, None, None]
    assert np.max(np.abs(normalize(x).numpy() - expected)) <= 1e-12


EXTRA = {"bn-state": ["--no-affine", "--eps", "1e-4"], "mmengine": ["--flavour", "mmdet"]}


@pytest.mark.parametrize("fmt", ["torchvision", "timm", "hf", "albumentations", "albumentations-json",
                                 "albumentations-yaml", "mmengine", "detectron2", "keras", "bn-state", "json", "yaml"])
def test_result_export_is_what_the_command_writes(pooled, tmp_path, fmt):
    result, config, _ = pooled
    out = tmp_path / "out"
    command = CliRunner().invoke(cli, ["export", str(config), "--to", fmt, "-o", str(out), *EXTRA.get(fmt, [])])
    assert command.exit_code == 0, command.output
    options = {"bn-state": {"affine": False, "eps": 1e-4}, "mmengine": {"flavour": "mmdet"}}.get(fmt, {})
    content = result.export(fmt, **options)
    assert content == (out.read_bytes() if fmt == "bn-state" else out.read_text())


def test_installed_command_writes_the_same_bn_state(pooled, tmp_path):
    result, config, _ = pooled
    done = run_cli("export", str(config), "--to", "bn-state", "-o", str(tmp_path / "bn.pt"))
    assert done.returncode == 0, done.stderr
    assert "nn.BatchNorm2d(3, eps=1e-05)" in done.stderr and "eval()" in done.stderr
    assert (tmp_path / "bn.pt").read_bytes() == result.export("bn-state")


# What each format is, written out here independently of chanstats' own table: the extensions an
# output may have, and a known extension it may not.
OUTPUT_NAMES = {
    "torchvision": ([".py"], ".json"),
    "timm": ([".json", ".yaml", ".yml"], ".py"),  # timm's JSON is also the YAML train.py -c reads
    "hf": ([".json"], ".yaml"),
    "albumentations-json": ([".json"], ".yaml"),
    "albumentations-yaml": ([".yaml", ".yml"], ".json"),
    "mmengine": ([".py"], ".json"),
    "detectron2": ([".yaml", ".yml"], ".py"),
    "keras": ([".py"], ".yaml"),
    "kornia": ([".py"], ".json"),
    "torchgeo": ([".py"], ".yaml"),
    "bn-state": ([".pt", ".pth"], ".json"),
    "json": ([".json"], ".yaml"),
    "yaml": ([".yaml", ".yml"], ".json"),
}


@pytest.mark.parametrize("fmt", sorted(OUTPUT_NAMES))
def test_every_format_accepts_its_extensions_and_refuses_another_in_one_line(made, tmp_path, fmt):
    _, config, *_ = made
    extra = ["--no-affine"] if fmt == "bn-state" else []
    fits, wrong = OUTPUT_NAMES[fmt]
    unnamed = tmp_path / "unnamed"  # an extension chanstats does not read as a format: written as asked
    assert CliRunner().invoke(cli, ["export", str(config), "--to", fmt, "-o", str(unnamed), *extra]).exit_code == 0
    for extension in fits:
        out = tmp_path / f"out{extension}"
        result = CliRunner().invoke(cli, ["export", str(config), "--to", fmt, "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        assert out.read_bytes() == unnamed.read_bytes()
    out = tmp_path / f"wrong{wrong}"
    result = CliRunner().invoke(cli, ["export", str(config), "--to", fmt, "-o", str(out), *extra])
    assert result.exit_code == 2 and not out.exists()
    message = result.output.strip()
    assert "\n" not in message and message.startswith("Error: ") and f"--to {fmt}" in message and wrong in message
    assert all(extension in message for extension in fits)


def test_percentile_clip_is_json(made, tmp_path):
    _, config, *_ = made
    out = tmp_path / "clip.yaml"
    result = CliRunner().invoke(cli, ["export", str(config), "--to", "percentile-clip", "-o", str(out)])
    assert result.exit_code == 2 and "writes JSON" in result.output and "*.json" in result.output and not out.exists()


@pytest.mark.parametrize(("name", "loads"), [("aug.json", json.loads), ("aug.yaml", yaml.safe_load), ("aug.yml", yaml.safe_load)])
def test_albumentations_form_follows_the_output_extension(made, tmp_path, name, loads):
    _, config, mean, std, _ = made
    out = tmp_path / name
    result = CliRunner().invoke(cli, ["export", str(config), "--to", "albumentations", "-o", str(out)])
    assert result.exit_code == 0, result.output
    pipeline = loads(out.read_text())  # data, not Python code
    (normalize,) = pipeline["transform"]["transforms"]
    np.testing.assert_allclose(normalize["mean"], mean, rtol=0, atol=1e-15)
    np.testing.assert_allclose(normalize["std"], std, rtol=0, atol=1e-15)

"""Every `chanstats export` format loaded by its framework's own loader, run on real photographs.

The oracle is numpy: ``(x / 255 − mean) / std`` with the exact mean/std of the config (itself
checked against numpy over the same photographs). Frameworks come from the ``export-test`` extra;
see tests/consumers.py for when a missing one skips.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from PIL import Image

from chanstats.cli import cli
from .helpers.files import EXAMPLES
from .helpers.optional import require

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every processor here is read from a local folder
os.environ.setdefault("KERAS_BACKEND", "torch")  # Keras 3 on the torch already installed

TOLERANCE = 1e-5
PHOTOS = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".png", ".jpg"))


class Stats:
    """A config computed on examples/images, with its exact values as numpy arrays."""

    def __init__(self, config: Path):
        self.config = config
        data = json.loads(config.read_text())
        self.channels = data["channels"]
        self.mean = np.array(data["exact"]["mean"])
        self.std = np.array(data["exact"]["std"])
        self.mean_raw = [float(v) for v in data["exact"]["mean_raw"]]
        self.std_raw = [float(v) for v in data["exact"]["std_raw"]]

    def oracle(self, pixels: np.ndarray) -> np.ndarray:
        """(C, H, W) float64: what every export must produce from (H, W, C) 0-255 pixels."""
        return ((pixels.astype(np.float64) / 255 - self.mean) / self.std).transpose(2, 0, 1)


def compute_config(folder: Path, mode: str) -> Stats:
    config = folder / f"stats-{mode}.json"
    # Percentiles by name: 8-bit photos get none by default, and percentile-clip needs them.
    result = CliRunner().invoke(cli, ["compute", str(EXAMPLES), "-o", str(config), "--mode", mode, "--workers", "0", "-q",
                                      "--percentiles", "0.5,1,2,50,98,99,99.5"])
    assert result.exit_code == 0, result.output
    return Stats(config)


@pytest.fixture(scope="module")
def rgb(tmp_path_factory) -> Stats:
    stats = compute_config(tmp_path_factory.mktemp("consumers"), "RGB")
    flat = np.concatenate([photo.reshape(-1, 3) for photo in photos("RGB")]).astype(np.float64) / 255
    np.testing.assert_allclose(stats.mean, flat.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(stats.std, flat.std(axis=0), rtol=0, atol=1e-12)
    return stats


@pytest.fixture(scope="module")
def grey(tmp_path_factory) -> Stats:
    return compute_config(tmp_path_factory.mktemp("consumers-grey"), "L")


def photos(mode: str = "RGB") -> list[np.ndarray]:
    """examples/images as (H, W, C) uint8 arrays, decoded by Pillow."""
    arrays = [np.array(Image.open(path).convert(mode)) for path in PHOTOS]
    return [a[..., None] if a.ndim == 2 else a for a in arrays]


def export(stats: Stats, fmt: str, out: Path, *options: str) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    result = CliRunner().invoke(cli, ["export", str(stats.config), "--to", fmt, "-o", str(out), *options])
    assert result.exit_code == 0, result.output
    return out


def assert_close(got, expected) -> None:
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == expected.shape
    assert np.max(np.abs(got - expected)) <= TOLERANCE


# --- Hugging Face: AutoImageProcessor.from_pretrained(folder) --------------------------------


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_hf_standalone_loads_with_auto_image_processor(request, tmp_path, mode):
    transformers = require("transformers")
    stats = request.getfixturevalue("rgb" if mode == "RGB" else "grey")
    folder = export(stats, "hf", tmp_path / "processor" / "preprocessor_config.json").parent
    processor = transformers.AutoImageProcessor.from_pretrained(str(folder))
    assert type(processor).__name__.startswith("ViTImageProcessor")
    for pixels in photos(mode):
        out = processor(images=pixels.copy(), return_tensors="np")["pixel_values"][0]
        assert_close(out, stats.oracle(pixels))  # same shape: no class-default resize slipped in


# Processor configs as models on the Hub publish them: a current CLIP-style one (resize + crop) and
# a legacy ViT one that only names a feature extractor.
CLIP_BASE = {
    "image_processor_type": "CLIPImageProcessor",
    "do_convert_rgb": True,
    "do_resize": True,
    "size": {"shortest_edge": 224},
    "resample": 3,
    "do_center_crop": True,
    "crop_size": {"height": 224, "width": 224},
    "do_rescale": True,
    "rescale_factor": 0.00392156862745098,
    "do_normalize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}
LEGACY_VIT_BASE = {
    "feature_extractor_type": "ViTFeatureExtractor",
    "do_resize": True,
    "size": 224,
    "resample": 2,
    "do_normalize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
}


@pytest.mark.parametrize("base, as_folder", [(CLIP_BASE, True), (CLIP_BASE, False), (LEGACY_VIT_BASE, True)],
                         ids=["clip-folder", "clip-file", "legacy-vit-folder"])
def test_hf_base_changes_only_mean_and_std(rgb, tmp_path, base, as_folder):
    transformers = require("transformers")
    model = tmp_path / "model"
    model.mkdir()
    (model / "preprocessor_config.json").write_text(json.dumps(base, indent=2))
    given = model if as_folder else model / "preprocessor_config.json"
    out = export(rgb, "hf", tmp_path / "ours" / "preprocessor_config.json", "--base", str(given))
    assert json.loads(out.read_text()) == {**base, "image_mean": list(rgb.mean), "image_std": list(rgb.std)}
    processor = transformers.AutoImageProcessor.from_pretrained(str(out.parent))
    unnormalized = transformers.AutoImageProcessor.from_pretrained(str(out.parent), do_normalize=False)
    for pixels in photos():
        got = processor(images=pixels.copy(), return_tensors="np")["pixel_values"][0]
        before = unnormalized(images=pixels.copy(), return_tensors="np")["pixel_values"][0].astype(np.float64)
        assert got.shape == (3, 224, 224)  # the base's resize (and crop) kept
        assert_close(got, (before - rgb.mean[:, None, None]) / rgb.std[:, None, None])


# --- mmengine: Config.fromfile on a config with _base_, then MODELS.build --------------------

IMAGENET_MEAN_STD = "mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]"
# Base configs shaped like each code base's own (_base_/datasets or _base_/models files).
MM_BASES = {
    "mmengine": f"model = dict(type='ToyClassifier')\n"
                f"data_preprocessor = dict(type='ImgDataPreprocessor', {IMAGENET_MEAN_STD}, bgr_to_rgb=True, pad_size_divisor=32)\n",
    "mmpretrain": f"dataset_type = 'ImageNet'\n"
                  f"data_preprocessor = dict(num_classes=1000, {IMAGENET_MEAN_STD}, to_rgb=True)\n",
    "mmdet": f"model = dict(\n    type='FasterRCNN',\n"
             f"    data_preprocessor=dict(type='DetDataPreprocessor', {IMAGENET_MEAN_STD}, bgr_to_rgb=True, pad_size_divisor=32),\n"
             f"    backbone=dict(type='ResNet', depth=50, num_stages=4))\n",
    "mmseg": f"norm_cfg = dict(type='SyncBN', requires_grad=True)\n"
             f"data_preprocessor = dict(type='SegDataPreProcessor', {IMAGENET_MEAN_STD}, bgr_to_rgb=True, pad_val=0, seg_pad_val=255)\n"
             f"model = dict(type='EncoderDecoder', data_preprocessor=data_preprocessor, backbone=dict(type='ResNetV1c', depth=50))\n",
}
# What the merge must keep from each base.
MM_KEPT = {
    "mmengine": {"type": "ImgDataPreprocessor", "pad_size_divisor": 32},
    "mmpretrain": {"num_classes": 1000},
    "mmdet": {"type": "DetDataPreprocessor", "pad_size_divisor": 32},
    "mmseg": {"type": "SegDataPreProcessor", "pad_val": 0, "seg_pad_val": 255},
}
# The keyword arguments each preprocessor's __init__ accepts (the codebases are not installed):
# mmpretrain: mmpretrain/models/utils/data_preprocessor.py, ClsDataPreprocessor (mmpretrain 1.2);
# mmdet: mmdet/models/data_preprocessors/data_preprocessor.py, DetDataPreprocessor (mmdet 3.3);
# mmseg: mmseg/models/data_preprocessor.py, SegDataPreProcessor (mmseg 1.2). "type" is the registry's.
MM_ACCEPTED = {
    "mmpretrain": {"mean", "std", "pad_size_divisor", "pad_value", "to_rgb", "to_onehot", "num_classes", "batch_augments"},
    "mmdet": {"mean", "std", "pad_size_divisor", "pad_value", "pad_mask", "mask_pad_value", "pad_seg", "seg_pad_value",
              "bgr_to_rgb", "rgb_to_bgr", "boxtype2tensor", "batch_augments"},
    "mmseg": {"mean", "std", "size", "size_divisor", "pad_val", "seg_pad_val", "bgr_to_rgb", "rgb_to_bgr",
              "batch_augments", "test_cfg"},
}


def merged_preprocessor(flavour: str, cfg) -> dict:
    if flavour in ("mmdet", "mmseg"):
        if flavour == "mmseg":
            assert cfg.data_preprocessor.to_dict() == cfg.model.data_preprocessor.to_dict()
        return cfg.model.data_preprocessor.to_dict()
    return cfg.data_preprocessor.to_dict()


def img_data_preprocessor(merged: dict):
    """mmengine's ImgDataPreprocessor with the merged dict's normalization. DetDataPreprocessor
    subclasses it; ClsDataPreprocessor and SegDataPreProcessor do the same swap, then
    (x − mean) / std, with the swap key named to_rgb in mmpretrain."""
    from mmengine.model import ImgDataPreprocessor
    from mmengine.registry import MODELS

    accepted = set(inspect.signature(ImgDataPreprocessor.__init__).parameters) - {"self"}
    settings = {key: value for key, value in merged.items() if key in accepted}
    settings["bgr_to_rgb"] = merged.get("bgr_to_rgb", merged.get("to_rgb"))
    return MODELS.build(dict(type="ImgDataPreprocessor", **settings))


def run_preprocessor(preprocessor, stats: Stats, mode: str = "RGB") -> None:
    """Feed each photo as mmcv hands it over (BGR, uint8, C×H×W) and compare with the oracle."""
    for pixels in photos(mode):
        as_loaded = pixels[..., ::-1] if mode == "RGB" else pixels
        tensor = torch.from_numpy(np.ascontiguousarray(as_loaded.transpose(2, 0, 1)))
        out = preprocessor({"inputs": [tensor]}, training=False)["inputs"][0]
        height, width = pixels.shape[:2]
        assert_close(out[:, :height, :width].numpy(), stats.oracle(pixels))  # padding aside


def load_mm_config(tmp_path: Path, base: str, snippet: str):
    mmengine = require("mmengine")
    (tmp_path / "base.py").write_text(base)
    (tmp_path / "train.py").write_text("_base_ = ['./base.py']\n\n" + snippet)
    return mmengine.Config.fromfile(str(tmp_path / "train.py"))


@pytest.mark.parametrize("flavour", list(MM_BASES))
def test_mmengine_flavour_merges_into_its_base_and_builds(rgb, tmp_path, flavour):
    require("mmengine")
    options = [] if flavour == "mmengine" else ["--flavour", flavour]
    snippet = export(rgb, "mmengine", tmp_path / "out" / "norm.py", *options).read_text()
    assert "type=" not in snippet
    merged = merged_preprocessor(flavour, load_mm_config(tmp_path, MM_BASES[flavour], snippet))
    assert merged["mean"] == rgb.mean_raw and merged["std"] == rgb.std_raw
    assert {key: merged.get(key) for key in MM_KEPT[flavour]} == MM_KEPT[flavour]
    if flavour == "mmengine":
        from mmengine.registry import MODELS

        preprocessor = MODELS.build(merged)  # the base's own type, built as merged
    else:
        assert set(merged) - {"type"} <= MM_ACCEPTED[flavour]
        assert ("to_rgb" in merged) != ("bgr_to_rgb" in merged)  # never both
        preprocessor = img_data_preprocessor(merged)
    run_preprocessor(preprocessor, rgb)


def test_mmengine_type_for_a_config_without_a_preprocessor(grey, tmp_path):
    require("mmengine")
    from mmengine.registry import MODELS

    snippet = export(grey, "mmengine", tmp_path / "out" / "norm.py", "--type", "ImgDataPreprocessor").read_text()
    cfg = load_mm_config(tmp_path, "model = dict(type='ToyClassifier')\n", snippet)
    assert cfg.data_preprocessor.bgr_to_rgb is False  # one channel: nothing to swap
    run_preprocessor(MODELS.build(cfg.data_preprocessor), grey, mode="L")


# --- albumentations: A.load (JSON, YAML) and the Python form ----------------------------------


@pytest.mark.parametrize(("fmt", "name"), [("albumentations-json", "normalize.json"), ("albumentations-yaml", "normalize.yaml"),
                                         ("albumentations", "normalize.py"),
                                         # --to albumentations: the -o extension picks the form
                                         ("albumentations", "aug.json"), ("albumentations", "aug.yml")])
def test_albumentations_pipeline_on_uint8_photos(rgb, tmp_path, fmt, name):
    A = require("albumentations")
    out = export(rgb, fmt, tmp_path / name)
    text = out.read_text()
    assert "max_pixel_value" in text and "uint8" in text  # the file says what input it expects
    if name.endswith(".py"):
        namespace: dict = {}
        exec(text, namespace)
        transform = namespace["normalize"]
    else:
        transform = A.load(str(out), data_format="json" if name.endswith(".json") else "yaml")
    for pixels in photos():
        assert pixels.dtype == np.uint8
        assert_close(transform(image=pixels)["image"].transpose(2, 0, 1), rgb.oracle(pixels))


# --- timm: each documented route -------------------------------------------------------------

TIMM_MODEL = "resnet18"  # built with pretrained=False: no weights are downloaded


def timm_train_py_args(path: Path) -> dict:
    """What timm's train.py does with ``-c FILE``: yaml.safe_load it into the argument parser's
    defaults (train.py's _parse_args), where --mean/--std are ``type=float, nargs='+'``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mean", type=float, nargs="+", default=None)
    parser.add_argument("--std", type=float, nargs="+", default=None)
    with open(path) as stream:
        parser.set_defaults(**yaml.safe_load(stream))
    return vars(parser.parse_args([]))


@pytest.mark.parametrize("route", ["resolve_data_config", "pretrained_cfg_overlay", "train.py -c"])
def test_timm_route(rgb, tmp_path, route):
    timm = require("timm")
    from timm.data import create_transform, resolve_data_config
    from torchvision import transforms

    path = export(rgb, "timm", tmp_path / "timm.json")
    exported = json.loads(path.read_text())
    if route == "resolve_data_config":
        data_config = resolve_data_config(args=exported, model=timm.create_model(TIMM_MODEL, pretrained=False))
    elif route == "pretrained_cfg_overlay":
        model = timm.create_model(TIMM_MODEL, pretrained=False, pretrained_cfg_overlay=exported)
        data_config = resolve_data_config(model=model)
    else:
        data_config = resolve_data_config(timm_train_py_args(path), model=timm.create_model(TIMM_MODEL, pretrained=False))
    assert list(data_config["mean"]) == list(rgb.mean) and list(data_config["std"]) == list(rgb.std)
    transform = create_transform(**data_config)
    before_normalize = transforms.Compose(transform.transforms[:-1])  # resize, crop, to [0, 1] tensor
    for path in PHOTOS:
        image = Image.open(path).convert("RGB")
        unit = before_normalize(image).numpy().astype(np.float64)
        assert_close(transform(image).numpy(), (unit - rgb.mean[:, None, None]) / rgb.std[:, None, None])


# --- Keras 3 (torch backend) -----------------------------------------------------------------


def test_keras_preprocess_layers(rgb, tmp_path):
    keras = require("keras")
    namespace: dict = {}
    exec(export(rgb, "keras", tmp_path / "keras.py").read_text(), namespace)
    for pixels in photos():
        out = keras.ops.convert_to_numpy(namespace["preprocess"](pixels[None].astype("float32")))[0]
        assert_close(out.transpose(2, 0, 1), rgb.oracle(pixels))


# --- detectron2: its config system (fvcore's CfgNode) and its normalization -------------------

# The keys detectron2/config/defaults.py defines for this, with its defaults; detectron2's
# get_cfg() returns a subclass of fvcore's CfgNode that merges files the same way.
D2_DEFAULTS = {
    "MODEL": {"META_ARCHITECTURE": "GeneralizedRCNN", "PIXEL_MEAN": [103.53, 116.28, 123.675], "PIXEL_STD": [1.0, 1.0, 1.0]},
    "INPUT": {"FORMAT": "BGR", "MIN_SIZE_TEST": 800},
}
D2_BASE = "MODEL:\n  META_ARCHITECTURE: GeneralizedRCNN\nINPUT:\n  MIN_SIZE_TEST: 800\n"
D2_MODEL = (
    "_BASE_: Base-RCNN.yaml\n"
    "MODEL:\n  PIXEL_MEAN: [123.675, 116.28, 103.53]\n  PIXEL_STD: [58.395, 57.12, 57.375]\nINPUT:\n  FORMAT: RGB\n"
)


def detectron2_normalized(cfg, path: Path) -> np.ndarray:
    """detectron2's path from file to model input: read_image(path, cfg.INPUT.FORMAT) (Pillow,
    RGB reversed for BGR, a trailing axis for L), HWC → CHW, then GeneralizedRCNN's
    (x − PIXEL_MEAN) / PIXEL_STD."""
    image_format = cfg.INPUT.FORMAT
    pixels = np.array(Image.open(path).convert("L" if image_format == "L" else "RGB"))
    pixels = pixels[..., None] if image_format == "L" else pixels[..., ::-1] if image_format == "BGR" else pixels
    x = torch.as_tensor(np.ascontiguousarray(pixels.transpose(2, 0, 1))).float()
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(-1, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(-1, 1, 1)
    return ((x - mean) / std).numpy()


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_detectron2_fragment_merges_after_a_model_config(rgb, grey, tmp_path, mode):
    CfgNode = require("fvcore.common.config").CfgNode
    stats = rgb if mode == "RGB" else grey
    (tmp_path / "Base-RCNN.yaml").write_text(D2_BASE)
    (tmp_path / "model.yaml").write_text(D2_MODEL)
    fragment = export(stats, "detectron2", tmp_path / "normalization.yaml")
    cfg = CfgNode(D2_DEFAULTS)
    cfg.merge_from_file(str(tmp_path / "model.yaml"))
    cfg.merge_from_file(str(fragment))
    assert cfg.INPUT.FORMAT == ("BGR" if mode == "RGB" else "L")
    for path, pixels in zip(PHOTOS, photos(mode)):
        out = detectron2_normalized(cfg, path)
        assert_close(out[::-1] if mode == "RGB" else out, stats.oracle(pixels))  # back to RGB order


# --- the exporters themselves never import a framework ---------------------------------------


def test_exports_import_no_framework(rgb, tmp_path):
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from chanstats.report.export import FORMATS, export\n"
        f"config = json.load(open({str(rgb.config)!r}))\n"
        "for fmt in FORMATS:\n"
        "    export(config, fmt)\n"
        "loaded = [m for m in ('transformers', 'timm', 'albumentations', 'mmengine', 'keras', 'fvcore', 'cv2') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr


def test_a_missing_consumer_skips_outside_ci_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception):
        require("chanstats_no_such_framework")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception):
        require("chanstats_no_such_framework")

"""A config's exact statistics in the form each training framework reads.

Every exporter takes the config dict (as :func:`chanstats.report.read_config` returns it) and
returns text, or bytes for ``bn-state``. Numbers are written with ``repr`` so no digit is lost.

Scales: torchvision, timm, Hugging Face and Keras take the [0, 1]-scale mean/std (after
``ToDtype(scale=True)``/``rescale_factor``/``Rescaling``); mmengine takes raw 0–255 (0–65535)
values; albumentations takes [0, 1] values with ``max_pixel_value`` = the full-scale value.
All std values are population std (ddof 0), as ``Normalize`` expects.
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable

from ..errors import BadSpecError
from .files import dumps

BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default eps


def _floats(values) -> str:
    return "[" + ", ".join(repr(float(v)) for v in values) + "]"


def _exact(config: dict[str, Any]) -> tuple[list[float], list[float]]:
    try:
        mean = [float(v) for v in config["exact"]["mean"]]
        std = [float(v) for v in config["exact"]["std"]]
    except (KeyError, TypeError, ValueError):
        raise BadSpecError("config has no usable exact.mean / exact.std") from None
    if not mean or len(mean) != len(std):
        raise BadSpecError("config's exact.mean and exact.std must be non-empty and of equal length")
    return mean, std


def _integer_scale(config: dict[str, Any], fmt: str) -> int:
    """Full-scale pixel value (255, 65535); refused for float-pipeline configs, whose statistics
    are in the pipeline's output units and have no raw-pixel meaning."""
    if config["exact"].get("method", "integer") != "integer":
        raise BadSpecError(
            f"--to {fmt} needs raw-pixel statistics, but this config was computed on a float pipeline "
            "output; export torchvision/timm/hf/keras instead, or recompute without the float transform"
        )
    return int(config.get("scale", 255))


def _channels(config: dict[str, Any]) -> list[str]:
    return [str(c) for c in config.get("channels") or []]


def to_torchvision(config: dict[str, Any]) -> str:
    mean, std = _exact(config)
    return (
        f"# chanstats {config.get('chanstats')}: exact per-channel statistics, channels {_channels(config)}, "
        "std with ddof 0\n"
        "from torchvision.transforms import v2\n\n"
        f"normalize = v2.Normalize(mean={_floats(mean)}, std={_floats(std)})\n"
    )


def to_timm(config: dict[str, Any]) -> str:
    mean, std = _exact(config)
    # timm's pretrained_cfg / data config keys; JSON has no tuples, timm accepts lists.
    return json.dumps({"mean": mean, "std": std}, indent=2) + "\n"


def to_hf(config: dict[str, Any]) -> str:
    mean, std = _exact(config)
    integer = config["exact"].get("method", "integer") == "integer"
    fields = {
        "do_rescale": integer,
        "rescale_factor": 1 / int(config.get("scale", 255)),
        "do_normalize": True,
        "image_mean": mean,
        "image_std": std,
    }
    return json.dumps(fields, indent=2) + "\n"


def to_albumentations(config: dict[str, Any]) -> str:
    mean, std = _exact(config)
    scale = _integer_scale(config, "albumentations")
    # albumentations computes (img − mean·max_pixel_value) / (std·max_pixel_value).
    return (
        f"# chanstats {config.get('chanstats')}: channels {_channels(config)} (albumentations works on RGB arrays)\n"
        "import albumentations as A\n\n"
        f"normalize = A.Normalize(mean={_floats(mean)}, std={_floats(std)}, max_pixel_value={float(scale)!r})\n"
    )


def to_mmengine(config: dict[str, Any]) -> str:
    mean, std = _exact(config)
    scale = _integer_scale(config, "mmengine")
    channels = _channels(config)
    raw_mean = [v * scale for v in mean] if "mean_raw" not in config["exact"] else [float(v) for v in config["exact"]["mean_raw"]]
    raw_std = [v * scale for v in std] if "std_raw" not in config["exact"] else [float(v) for v in config["exact"]["std_raw"]]
    rgb = channels == ["R", "G", "B"]
    note = (
        "# mean/std are in RGB order on the 0-255 scale; mmcv decodes images as BGR, so bgr_to_rgb=True\n"
        "# converts them to RGB before normalizing (keep it True, or reverse both lists).\n"
        if rgb
        else f"# channels {channels}, raw 0-{scale} scale; not colour, so no channel swap.\n"
    )
    return (
        f"# chanstats {config.get('chanstats')}: exact per-channel statistics (std ddof 0)\n"
        + note
        + "data_preprocessor = dict(\n"
        "    type='ImgDataPreprocessor',\n"
        f"    mean={_floats(raw_mean)},\n"
        f"    std={_floats(raw_std)},\n"
        f"    bgr_to_rgb={rgb},\n"
        ")\n"
    )


def to_keras(config: dict[str, Any]) -> str:
    mean, std = _exact(config)
    integer = config["exact"].get("method", "integer") == "integer"
    scale = int(config.get("scale", 255))
    variance = [s * s for s in std]
    rescale = f"keras.layers.Rescaling(1 / {scale}),  # to the [0, 1] scale of the statistics\n    " if integer else ""
    return (
        f"# chanstats {config.get('chanstats')}: channels-last (axis=-1), channels {_channels(config)};\n"
        "# Keras' Normalization takes the variance (population std squared), not the std.\n"
        "import keras\n\n"
        "preprocess = keras.Sequential([\n"
        f"    {rescale}keras.layers.Normalization(axis=-1, mean={_floats(mean)}, variance={_floats(variance)}),\n"
        "])\n"
    )


def bn_state(config: dict[str, Any], eps: float = BN_EPS) -> bytes:
    """``state_dict`` of ``nn.BatchNorm2d(C, affine=False, eps=eps)`` that in eval mode computes
    exactly ``Normalize(mean, std)``: eval divides by ``sqrt(running_var + eps)``, so
    ``running_var = std² − eps``. Saved with ``torch.save``; ``torch.load(weights_only=True)`` reads it."""
    import torch

    mean, std = _exact(config)
    variance = [s * s - eps for s in std]
    if min(variance) <= 0:
        names = [c for c, v in zip(_channels(config) or range(len(std)), variance) if v <= 0]
        raise BadSpecError(f"channel(s) {names}: std² ≤ eps={eps:g}, no BatchNorm running_var reproduces it (lower --eps)")
    state = {
        "running_mean": torch.tensor(mean, dtype=torch.float32),
        "running_var": torch.tensor(variance, dtype=torch.float32),
        "num_batches_tracked": torch.tensor(0, dtype=torch.long),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


EXPORTERS: dict[str, Callable[[dict[str, Any]], str | bytes]] = {
    "torchvision": to_torchvision,
    "timm": to_timm,
    "hf": to_hf,
    "albumentations": to_albumentations,
    "mmengine": to_mmengine,
    "keras": to_keras,
    "bn-state": bn_state,
    "json": lambda config: dumps(config, "json"),
    "yaml": lambda config: dumps(config, "yaml"),
}
FORMATS = tuple(EXPORTERS)
BINARY_FORMATS = ("bn-state",)


def export(config: dict[str, Any], fmt: str, *, eps: float = BN_EPS) -> str | bytes:
    """``config`` rendered for framework ``fmt`` (one of :data:`FORMATS`); bytes for ``bn-state``."""
    if fmt not in EXPORTERS:
        raise BadSpecError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt == "bn-state":
        return bn_state(config, eps)
    return EXPORTERS[fmt](config)

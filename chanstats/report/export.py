"""A config's exact statistics in the form each training framework loads them.

Every exporter takes the config dict (as :func:`chanstats.report.read_config` returns it) and
returns text, or bytes for ``bn-state``. Numbers are written with ``repr`` (or YAML's full-precision
float form) so no digit is lost. No framework is imported here: the files are generated as plain
text, so exporting never needs the framework installed (``bn-state`` uses torch, a dependency).

Scales: torchvision, timm, Hugging Face, Keras and kornia take the [0, 1]-scale mean/std (after
``ToDtype(scale=True)``/``rescale_factor``/``Rescaling``); mmengine and detectron2 take raw 0–255
(0–65535) values, as does the torchgeo style (raw file values); albumentations takes [0, 1] values with ``max_pixel_value`` = the full-scale
value. All std values are population std (ddof 0), as ``Normalize`` expects.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections import OrderedDict
from typing import Any, Callable

from ..errors import BadSpecError
from .files import dumps

BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default eps

# The image processor class written when no --base is given: a plain resize/rescale/normalize
# processor that AutoImageProcessor resolves by this key alone.
HF_PROCESSOR_TYPE = "ViTImageProcessor"
HF_CONFIG_NAME = "preprocessor_config.json"

# Where each OpenMMLab code base keeps the data preprocessor, and its channel-swap key.
MM_FLAVOURS = ("mmengine", "mmpretrain", "mmdet", "mmseg")
_MM_SWAP_KEY = {"mmengine": "bgr_to_rgb", "mmpretrain": "to_rgb", "mmdet": "bgr_to_rgb", "mmseg": "bgr_to_rgb"}
_MM_TYPE_HINT = {
    "mmengine": "ImgDataPreprocessor",
    "mmdet": "DetDataPreprocessor",
    "mmseg": "SegDataPreProcessor",
}


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
    flat = [str(name) for name, value in zip(_channels(config) or range(len(std)), std) if value == 0]
    if flat:
        raise BadSpecError(f"exact std is 0 for channel {', '.join(flat)} (every pixel has one value there): "
                           "normalizing would divide by zero")
    return mean, std


def _is_integer_method(config: dict[str, Any]) -> bool:
    return config["exact"].get("method", "integer") == "integer"


def _integer_scale(config: dict[str, Any], fmt: str) -> int:
    """Full-scale pixel value (255, 65535); refused for float-pipeline configs, whose statistics
    are in the pipeline's output units and have no raw-pixel meaning."""
    if not _is_integer_method(config):
        raise BadSpecError(
            f"--to {fmt} needs raw-pixel statistics, but this config was computed on a float pipeline "
            "output; export torchvision/timm/hf/keras instead, or recompute without the float transform"
        )
    return int(config.get("scale", 255))


def _raw(config: dict[str, Any], fmt: str) -> tuple[list[float], list[float], int]:
    """Mean/std on the raw 0..scale pixel scale (the recorded ``*_raw`` values when present)."""
    mean, std = _exact(config)
    scale = _integer_scale(config, fmt)
    exact = config["exact"]
    raw_mean = [float(v) for v in exact["mean_raw"]] if "mean_raw" in exact else [v * scale for v in mean]
    raw_std = [float(v) for v in exact["std_raw"]] if "std_raw" in exact else [v * scale for v in std]
    return raw_mean, raw_std, scale


def _channels(config: dict[str, Any]) -> list[str]:
    return [str(c) for c in config.get("channels") or []]


def _is_rgb(config: dict[str, Any]) -> bool:
    return _channels(config) == ["R", "G", "B"]


def _header(config: dict[str, Any]) -> str:
    return f"chanstats {config.get('chanstats')}: exact per-channel statistics, channels {_channels(config)}, std with ddof 0"


def _yaml_text(comment_lines: list[str], data: dict[str, Any]) -> str:
    """``#`` comments, then ``data`` as block YAML with per-channel lists on one line. PyYAML writes floats
    at full precision and always with a dot (``1.0e-05``), so YAML readers get floats back."""
    import yaml

    class RowDumper(yaml.SafeDumper):
        """Mappings as blocks, lists of numbers as one-line rows: per-channel values read across."""

    def represent_list(dumper, items):
        row = all(not isinstance(item, (dict, list)) for item in items)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=row)

    RowDumper.add_representer(list, represent_list)
    body = yaml.dump(data, Dumper=RowDumper, sort_keys=False, default_flow_style=False, width=1000)
    return "".join(f"# {line}\n" for line in comment_lines) + body


# --- torchvision, timm, keras ---------------------------------------------------------------


def to_torchvision(config: dict[str, Any]) -> str:
    """Python: ``normalize = v2.Normalize(mean=[...], std=[...])`` on the [0, 1] scale."""
    mean, std = _exact(config)
    return (
        f"# {_header(config)}\n"
        "from torchvision.transforms import v2\n\n"
        f"normalize = v2.Normalize(mean={_floats(mean)}, std={_floats(std)})\n"
    )


def to_timm(config: dict[str, Any]) -> str:
    """JSON ``{"mean": [...], "std": [...]}``: timm's data-config keys. It is read unchanged by
    ``resolve_data_config(args=...)``, by ``create_model(..., pretrained_cfg_overlay=...)`` and (JSON
    being YAML) by ``train.py -c``; extra keys would break ``pretrained_cfg_overlay``, so there are none."""
    mean, std = _exact(config)
    return json.dumps({"mean": mean, "std": std}, indent=2) + "\n"


def to_keras(config: dict[str, Any]) -> str:
    """Python: ``Rescaling(1/scale)`` + ``Normalization(axis=-1, mean, variance=std²)``."""
    mean, std = _exact(config)
    scale = int(config.get("scale", 255))
    variance = [s * s for s in std]
    rescale = f"keras.layers.Rescaling(1 / {scale}),  # to the [0, 1] scale of the statistics\n    " if _is_integer_method(config) else ""
    return (
        f"# {_header(config)}\n"
        "# channels-last (axis=-1); Keras' Normalization takes the variance (population std squared), not the std.\n"
        "import keras\n\n"
        "preprocess = keras.Sequential([\n"
        f"    {rescale}keras.layers.Normalization(axis=-1, mean={_floats(mean)}, variance={_floats(variance)}),\n"
        "])\n"
    )


# --- Hugging Face ---------------------------------------------------------------------------


def to_hf(config: dict[str, Any], base: str | None = None) -> str:
    """``preprocessor_config.json`` that ``AutoImageProcessor.from_pretrained(folder)`` loads.

    Without ``base``: a ``ViTImageProcessor`` that only rescales (1/scale) and normalizes, with
    resizing off, so no class default (224×224) slips in. With ``base`` (a model's folder or its
    ``preprocessor_config.json``): that config with only ``image_mean``/``image_std`` replaced.
    """
    mean, std = _exact(config)
    if base is not None:
        fields = _read_hf_base(base)
        _check_hf_base_fits(fields, config, base, len(mean))
        fields["image_mean"], fields["image_std"] = mean, std
        return json.dumps(fields, indent=2) + "\n"
    fields = {
        "image_processor_type": HF_PROCESSOR_TYPE,
        "do_resize": False,
        "do_rescale": _is_integer_method(config),
        "rescale_factor": 1 / int(config.get("scale", 255)),
        "do_normalize": True,
        "image_mean": mean,
        "image_std": std,
    }
    return json.dumps(fields, indent=2) + "\n"


def _read_hf_base(base: str) -> dict[str, Any]:
    path = os.path.join(base, HF_CONFIG_NAME) if os.path.isdir(base) else base
    try:
        with open(path, encoding="utf-8") as stream:
            fields = json.load(stream)
    except OSError as error:
        raise BadSpecError(f"{path}: cannot read the --base processor config: {error.strerror or error}") from None
    except ValueError as error:
        raise BadSpecError(f"{path}: --base is not valid JSON ({error})") from None
    if not isinstance(fields, dict):
        raise BadSpecError(f"{path}: --base is not an image processor config (not a JSON object)")
    auto_map = fields.get("auto_map") if isinstance(fields.get("auto_map"), dict) else {}
    named = {"image_processor_type", "feature_extractor_type"} & set(fields)
    if not named and not {"AutoImageProcessor", "AutoFeatureExtractor"} & set(auto_map):
        # Without either key AutoImageProcessor can only guess from a config.json next to it,
        # which the exported file will not have.
        raise BadSpecError(f"{path}: --base has no image_processor_type, so AutoImageProcessor could not load the result")
    return fields


def _check_hf_base_fits(fields: dict[str, Any], config: dict[str, Any], base: str, channels: int) -> None:
    """Refuse a base whose normalization would not see the values the statistics describe."""
    old_mean = fields.get("image_mean")
    if isinstance(old_mean, list) and len(old_mean) != channels:
        raise BadSpecError(f"{base}: --base normalizes {len(old_mean)} channels, the config has {channels}")
    if not _is_integer_method(config):
        return  # float-pipeline statistics: the user vouches that the units match
    scale = int(config.get("scale", 255))
    if fields.get("do_rescale") is False:
        raise BadSpecError(f"{base}: --base has do_rescale false, but the statistics are on the [0, 1] scale (pixels / {scale})")
    factor = fields.get("rescale_factor")
    if isinstance(factor, (int, float)) and not math.isclose(factor, 1 / scale, rel_tol=1e-6):
        raise BadSpecError(f"{base}: --base rescales by {factor!r}, but the statistics are on the scale of pixels / {scale}")


# --- albumentations -------------------------------------------------------------------------


def _albumentations_parts(config: dict[str, Any], fmt: str) -> tuple[list[float], list[float], float, str]:
    mean, std = _exact(config)
    scale = float(_integer_scale(config, fmt))
    dtype = "uint8" if scale == 255 else "float32 (uint16 values cast to float32; Normalize takes uint8 or float32)"
    expects = (
        f"input: {dtype} arrays (H, W, C) with raw 0-{scale:g} pixel values, channels {_channels(config)}; "
        f"Normalize computes (img - mean*max_pixel_value) / (std*max_pixel_value) with max_pixel_value={scale!r}. "
        "Images already scaled to float [0, 1] need max_pixel_value=1.0 instead."
    )
    return mean, std, scale, expects


def _albumentations_pipeline(config: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The dict ``A.to_dict(A.Compose([A.Normalize(...)]))`` writes, built by hand; ``A.load``
    reads only its ``transform`` key, so the ``chanstats`` note next to it is ignored."""
    mean, std, scale, expects = _albumentations_parts(config, fmt)
    normalize = {"__class_fullname__": "Normalize", "mean": mean, "std": std, "max_pixel_value": scale, "p": 1.0}
    return {
        "chanstats": {"version": config.get("chanstats"), "note": expects, "max_pixel_value": scale},
        "transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms": [normalize]},
    }


def to_albumentations(config: dict[str, Any]) -> str:
    """Python: ``normalize = A.Normalize(mean, std, max_pixel_value=255.0)``."""
    mean, std, scale, expects = _albumentations_parts(config, "albumentations")
    return (
        f"# {_header(config)}\n"
        f"# {expects}\n"
        "import albumentations as A\n\n"
        f"normalize = A.Normalize(mean={_floats(mean)}, std={_floats(std)}, max_pixel_value={scale!r}, p=1.0)\n"
    )


def to_albumentations_json(config: dict[str, Any]) -> str:
    """A serialized ``Compose([Normalize])`` for ``A.load(path)``."""
    return json.dumps(_albumentations_pipeline(config, "albumentations-json"), indent=2) + "\n"


def to_albumentations_yaml(config: dict[str, Any]) -> str:
    """A serialized ``Compose([Normalize])`` for ``A.load(path, data_format="yaml")``."""
    pipeline = _albumentations_pipeline(config, "albumentations-yaml")
    note = pipeline.pop("chanstats")  # YAML has comments for it
    comments = [_header(config), note["note"], 'load with A.load(path, data_format="yaml")']
    return _yaml_text(comments, pipeline)


# --- OpenMMLab (mmengine) -------------------------------------------------------------------


def to_mmengine(config: dict[str, Any], flavour: str = "mmengine", preprocessor_type: str | None = None) -> str:
    """Python config snippet that merges into a base config's data preprocessor.

    There is no ``type`` unless ``preprocessor_type`` is given: merged through ``_base_``, the
    base's type (``DetDataPreprocessor``, ``SegDataPreProcessor``...) and its padding settings
    stay. ``flavour`` picks where the dict goes and the channel-swap key: ``to_rgb`` for
    mmpretrain, ``bgr_to_rgb`` otherwise; mmdet keeps it in ``model``, mmseg in both places.
    """
    if flavour not in MM_FLAVOURS:
        raise BadSpecError(f"unknown mmengine flavour {flavour!r}: choose one of {', '.join(MM_FLAVOURS)}")
    raw_mean, raw_std, scale = _raw(config, "mmengine")
    rgb = _is_rgb(config)
    swap_key = _MM_SWAP_KEY[flavour]
    fields = ([f"type={preprocessor_type!r}"] if preprocessor_type else []) + [
        f"mean={_floats(raw_mean)}",
        f"std={_floats(raw_std)}",
        f"{swap_key}={rgb}",
    ]
    return f"# {_header(config)}\n" + _mm_notes(config, flavour, swap_key, rgb, scale, preprocessor_type) + _mm_assignment(flavour, fields)


def _mm_notes(config, flavour: str, swap_key: str, rgb: bool, scale: int, preprocessor_type: str | None) -> str:
    channels = (
        f"# mean/std in RGB order on the 0-{scale} scale; mmcv decodes images as BGR, so {swap_key}=True converts\n"
        "# them to RGB before normalizing (keep it True, or reverse both lists).\n"
        if rgb
        else f"# channels {_channels(config)}, raw 0-{scale} scale; not colour, so no channel swap.\n"
    )
    if preprocessor_type:
        merge = f"# type={preprocessor_type!r} replaces whatever type a base config sets.\n"
    elif flavour == "mmpretrain":
        merge = "# Paste after _base_: merges into the base's data_preprocessor (ImageClassifier adds type ClsDataPreprocessor).\n"
    else:
        merge = (
            "# Paste after _base_: these keys merge into the base's data_preprocessor, whose type and padding stay.\n"
            f"# No base data_preprocessor? Export with --type {_MM_TYPE_HINT[flavour]}.\n"
        )
    if flavour in ("mmengine", "mmpretrain") and not preprocessor_type:
        merge += "# mmengine's Runner gives this top-level dict to a model config that has no data_preprocessor of its own.\n"
    return channels + merge


def _mm_assignment(flavour: str, fields: list[str]) -> str:
    if flavour == "mmdet":  # mmdet's base configs keep it inside the model
        inner = "".join(f"        {field},\n" for field in fields)
        return "model = dict(\n    data_preprocessor=dict(\n" + inner + "    ))\n"
    top = "data_preprocessor = dict(\n" + "".join(f"    {field},\n" for field in fields) + ")\n"
    if flavour == "mmseg":  # mmseg's bases copy the top-level dict into the model; so do we
        return top + "model = dict(data_preprocessor=data_preprocessor)\n"
    return top  # mmengine's Runner hands the top-level dict to a model that has none


# --- detectron2 -----------------------------------------------------------------------------


def to_detectron2(config: dict[str, Any]) -> str:
    """YAML fragment: ``MODEL.PIXEL_MEAN``/``PIXEL_STD`` on the 0–255 scale in ``INPUT.FORMAT``'s
    channel order (BGR, detectron2's default, for RGB statistics; L for greyscale)."""
    raw_mean, raw_std, scale = _raw(config, "detectron2")
    channels = _channels(config)
    if scale != 255:
        raise BadSpecError(f"--to detectron2 needs 8-bit statistics (detectron2 reads images as 0-255), this config is 0-{scale}")
    if channels == ["R", "G", "B"]:
        image_format, raw_mean, raw_std = "BGR", raw_mean[::-1], raw_std[::-1]
    elif channels == ["L"]:
        image_format = "L"
    else:
        raise BadSpecError(f"--to detectron2 needs RGB or L statistics (detectron2's INPUT.FORMAT), this config has channels {channels}")
    comments = [
        _header(config),
        f"detectron2 convention: 0-255 scale, channel order of INPUT.FORMAT ({image_format}"
        + (", the RGB measurement reversed)" if image_format == "BGR" else ")"),
        'merge after the model config: cfg.merge_from_file("model.yaml"); cfg.merge_from_file("this.yaml")',
    ]
    data = {"MODEL": {"PIXEL_MEAN": raw_mean, "PIXEL_STD": raw_std}, "INPUT": {"FORMAT": image_format}}
    return _yaml_text(comments, data)


# --- BatchNorm state ------------------------------------------------------------------------


def bn_state(config: dict[str, Any], eps: float = BN_EPS, affine: bool = True) -> bytes:
    """``state_dict`` of ``nn.BatchNorm2d(C, eps=eps, affine=affine)`` that in eval mode computes
    exactly ``Normalize(mean, std)``: eval divides by ``sqrt(running_var + eps)``, so
    ``running_var = std² − eps``; affine adds ``weight`` 1 and ``bias`` 0. Saved with
    ``torch.save``; ``torch.load(weights_only=True)`` reads it and ``load_state_dict`` takes it
    strictly. The module it fits is stated in the state dict's ``_metadata`` (which torch keeps)."""
    import torch

    mean, std = _exact(config)
    variance = [s * s - eps for s in std]
    if min(variance) <= 0:
        names = [c for c, v in zip(_channels(config) or range(len(std)), variance) if v <= 0]
        raise BadSpecError(f"channel(s) {names}: std² ≤ eps={eps:g}, no BatchNorm running_var reproduces it (lower --eps)")
    state: OrderedDict[str, Any] = OrderedDict()
    if affine:
        state["weight"] = torch.ones(len(mean), dtype=torch.float32)
        state["bias"] = torch.zeros(len(mean), dtype=torch.float32)
    state["running_mean"] = torch.tensor(mean, dtype=torch.float32)
    state["running_var"] = torch.tensor(variance, dtype=torch.float32)
    state["num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    # load_state_dict reads the version from here and ignores other keys: the note rides along.
    state._metadata = OrderedDict({"": {"version": 2, "chanstats": bn_module_note(len(mean), eps, affine)}})  # type: ignore[attr-defined]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def bn_module_note(channels: int, eps: float, affine: bool) -> str:
    """Which module a ``bn-state`` file fits, and how to keep it equal to ``Normalize``."""
    module = f"nn.BatchNorm2d({channels}, eps={eps!r}" + (")" if affine else ", affine=False)")
    weights = " (weight 1, bias 0: freeze them with requires_grad_(False) to keep it a Normalize)" if affine else ""
    return f"state_dict for {module}{weights}; load_state_dict strictly and keep the module in eval()"


# --- kornia, torchgeo, percentile clipping -------------------------------------------------


def to_kornia(config: dict[str, Any]) -> str:
    """Python: ``kornia.augmentation.Normalize`` with torch tensors, on the config's [0, 1] scale
    (pixels divided by the full-scale value first, as ``ToDtype(scale=True)`` does for 8/16 bits)."""
    mean, std = _exact(config)
    scale = config.get("scale", 255)
    scale_note = (f"pixels divided by {scale!r} (the full-scale value), i.e. on the [0, 1] scale"
                  if _is_integer_method(config) else "the float pipeline's output units")
    return (
        f"# {_header(config)}\n"
        f"# Statistics of {scale_note}.\n"
        "import kornia.augmentation as K\n"
        "import torch\n\n"
        f"normalize = K.Normalize(mean=torch.tensor({_floats(mean)}), std=torch.tensor({_floats(std)}))\n"
    )


def _raw_units(config: dict[str, Any], fmt: str) -> tuple[list[float], list[float]]:
    """Mean/std in raw pixel units: recorded beside the scaled values, else derived for integer data."""
    exact = config["exact"]
    if "mean_raw" in exact and "std_raw" in exact:
        return [float(v) for v in exact["mean_raw"]], [float(v) for v in exact["std_raw"]]
    mean, std, _ = _raw(config, fmt)
    return mean, std


def to_torchgeo(config: dict[str, Any]) -> str:
    """Python in torchgeo's style: ``MEAN``/``STD`` tensors in raw units, one band a line with its
    name, and ``K.Normalize(mean=MEAN, std=STD)``. Raw units because torchgeo's raster datasets
    yield the files' values as float tensors without rescaling (its datamodules normalize by
    raw-unit statistics the same way)."""
    _exact(config)
    mean, std = _raw_units(config, "torchgeo")
    names = _channels(config) or [str(i) for i in range(len(mean))]
    width = max(len(repr(float(v))) for v in mean + std) + 1

    def tensor(label: str, values: list[float]) -> str:
        rows = "".join(f"    {repr(float(v)) + ',':<{width}}  # {name}\n" for v, name in zip(values, names))
        return f"{label} = torch.tensor([\n{rows}])\n"

    return (
        f"# {_header(config)}\n"
        f"# Raw pixel units (the values stored in the files, before any --scale): torchgeo datasets\n"
        "# return them unscaled as float tensors.\n"
        "import kornia.augmentation as K\n"
        "import torch\n\n"
        + tensor("MEAN", mean) + tensor("STD", std)
        + "\nnormalize = K.Normalize(mean=MEAN, std=STD)\n"
    )


DEFAULT_CLIP = (0.5, 99.5)


def parse_clip(text: str) -> tuple[float, float]:
    """``"LOW,HIGH"`` percentiles → floats, LOW < HIGH, both in 0..100."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise BadSpecError(f"--clip {text!r}: expected two percentiles such as 0.5,99.5") from None
    if not 0 <= low < high <= 100:
        raise BadSpecError(f"--clip {text!r}: need 0 <= LOW < HIGH <= 100")
    return low, high


def to_percentile_clip(config: dict[str, Any], clip: tuple[float, float] | None = None) -> str:
    """JSON for nnU-Net-style percentile clipping: per channel, clip to the ``clip`` percentiles
    (default 0.5/99.5), then ``(x - mean) / std`` with the exact mean/std of the clipped pixels.

    The bounds and clipped statistics come from the config's ``percentiles`` section, where
    ``compute`` records them exactly (from the full histograms) for each pair (q, 100 - q) of its
    ``--percentiles``; other pairs need a recompute with those percentiles."""
    from fractions import Fraction

    low, high = clip or DEFAULT_CLIP
    section = config.get("percentiles")
    if not section:
        raise BadSpecError("--to percentile-clip needs a config with percentiles: compute it with --percentiles 0.5,99.5 "
                          "(8-bit images get none by default)")
    wanted = [Fraction(str(low)), Fraction(str(high))]
    for entry in section.get("clipped") or ():
        if [Fraction(str(q)) for q in entry["q"]] == wanted:
            break
    else:
        have = [f"{a:g},{b:g}" for a, b in (e["q"] for e in section.get("clipped") or ())]
        why = ("the config has exact clipped statistics only for integer data" if not have
               else f"it has {' '.join(have)}")
        raise BadSpecError(f"no clipped statistics for --clip {low:g},{high:g} in this config ({why}); "
                           f"recompute with --percentiles including {low:g},{high:g}")
    qs = [Fraction(str(q)) for q in section["q"]]
    rows = [section["raw"][qs.index(w)] for w in wanted]
    scaled = [section["scaled"][qs.index(w)] for w in wanted]
    data = {
        "note": ("per channel: clip to [low, high], then (x - mean) / std; mean and std are of the "
                 "clipped pixels (population std, ddof 0), exact; 'raw' in the files' units, "
                 f"'scaled' divided by scale {config.get('scale')!r}"),
        "percentiles": [low, high],
        "channels": _channels(config),
        "scale": config.get("scale"),
        "raw": {"low": rows[0], "high": rows[1], "mean": entry["mean_raw"], "std": entry["std_raw"]},
        "scaled": {"low": scaled[0], "high": scaled[1], "mean": entry["mean"], "std": entry["std"]},
    }
    return json.dumps(data, indent=2) + "\n"


# --- dispatch -------------------------------------------------------------------------------

EXPORTERS: dict[str, Callable[..., str | bytes]] = {
    "torchvision": to_torchvision,
    "timm": to_timm,
    "hf": to_hf,
    "albumentations": to_albumentations,
    "albumentations-json": to_albumentations_json,
    "albumentations-yaml": to_albumentations_yaml,
    "mmengine": to_mmengine,
    "detectron2": to_detectron2,
    "keras": to_keras,
    "kornia": to_kornia,
    "torchgeo": to_torchgeo,
    "percentile-clip": to_percentile_clip,
    "bn-state": bn_state,
    "json": lambda config: dumps(config, "json"),
    "yaml": lambda config: dumps(config, "yaml"),
}
FORMATS = tuple(EXPORTERS)
BINARY_FORMATS = ("bn-state",)

# What each format's output is, and the -o extensions that say so (the first is the usual one).
# timm's JSON is also the YAML that ``train.py -c`` reads, so it may be named either way; hf is
# the preprocessor_config.json that from_pretrained reads; mmengine writes a Python config (the
# snippet holds comments and assignments, which JSON or YAML cannot).
SERIALISED_AS: dict[str, tuple[str, tuple[str, ...]]] = {
    "torchvision": ("Python", (".py",)),
    "timm": ("JSON", (".json", ".yaml", ".yml")),
    "hf": ("JSON", (".json",)),
    "albumentations": ("Python", (".py",)),
    "albumentations-json": ("JSON", (".json",)),
    "albumentations-yaml": ("YAML", (".yaml", ".yml")),
    "mmengine": ("Python", (".py",)),
    "detectron2": ("YAML", (".yaml", ".yml")),
    "keras": ("Python", (".py",)),
    "kornia": ("Python", (".py",)),
    "torchgeo": ("Python", (".py",)),
    "percentile-clip": ("JSON", (".json",)),
    "bn-state": ("a torch.save state_dict", (".pt", ".pth")),
    "json": ("JSON", (".json",)),
    "yaml": ("YAML", (".yaml", ".yml")),
}
# The extensions chanstats reads as a serialised form; an output named otherwise (no extension,
# .txt, a device) is written as the format says, unchecked.
KNOWN_EXTENSIONS = tuple(sorted({ext for _, exts in SERIALISED_AS.values() for ext in exts}))
# A framework written in several forms: the -o extension picks one (as compute -o x.yaml does).
FORM_BY_EXTENSION = {
    "albumentations": {".py": "albumentations", ".json": "albumentations-json", ".yaml": "albumentations-yaml",
                       ".yml": "albumentations-yaml"},
}


_KIND = {".py": "Python", ".json": "JSON", ".yaml": "YAML", ".yml": "YAML", ".pt": "torch.save", ".pth": "torch.save"}
_FAMILY = {"json": "config", "yaml": "config"}  # formats that are one thing written two ways


def format_for_output(fmt: str, output: str | os.PathLike | None) -> str:
    """The format ``--to fmt -o output`` writes: ``fmt``, or the form of the framework that the
    extension names (``--to albumentations -o aug.json`` is ``albumentations-json``). An output
    whose extension is another format's (``--to hf -o x.yaml``, ``--to bn-state -o x.json``) is
    refused in one line; an extension chanstats does not read as a format is left alone.

    >>> format_for_output("albumentations", "aug.yml"), format_for_output("timm", "timm.yaml")
    ('albumentations-yaml', 'timm')
    """
    if fmt not in SERIALISED_AS or output is None:
        return fmt
    extension = os.path.splitext(os.fspath(output))[1].lower()
    if extension not in KNOWN_EXTENSIONS:
        return fmt
    fmt = FORM_BY_EXTENSION.get(fmt, {}).get(extension, fmt)
    what, extensions = SERIALISED_AS[fmt]
    if extension not in extensions:
        family = _FAMILY.get(fmt, fmt.split("-")[0])
        others = [name for name, (_, exts) in SERIALISED_AS.items()
                  if extension in exts and _FAMILY.get(name, name.split("-")[0]) == family]
        hint = f", or --to {others[0]}" if others else ""
        raise BadSpecError(f"--to {fmt} writes {what} but -o {os.fspath(output)!r} names a {_KIND[extension]} file: "
                           f"use *{' or *'.join(extensions)}{hint}")
    return fmt


# Options that only one format takes: (option name as the command spells it, format).
_OPTION_FORMATS = {"eps": ("--eps", "bn-state"), "affine": ("--affine/--no-affine", "bn-state"),
                   "base": ("--base", "hf"), "flavour": ("--flavour", "mmengine"), "preprocessor_type": ("--type", "mmengine"),
                   "clip": ("--clip", "percentile-clip")}


def export(
    config: dict[str, Any],
    fmt: str,
    *,
    eps: float | None = None,
    affine: bool | None = None,
    base: str | None = None,
    flavour: str | None = None,
    preprocessor_type: str | None = None,
    clip: tuple[float, float] | str | None = None,
) -> str | bytes:
    """``config`` rendered for framework ``fmt`` (one of :data:`FORMATS`); bytes for ``bn-state``.

    ``eps``/``affine`` shape ``bn-state``; ``base`` (a folder or ``preprocessor_config.json``)
    is updated by ``hf``; ``flavour`` (one of :data:`MM_FLAVOURS`) and ``preprocessor_type`` shape
    ``mmengine``; ``clip`` (``(low, high)`` or ``"LOW,HIGH"``) picks ``percentile-clip``'s
    percentiles. An option given for another format is refused rather than silently ignored.
    """
    if fmt not in EXPORTERS:
        raise BadSpecError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    given = {"eps": eps, "affine": affine, "base": base, "flavour": flavour, "preprocessor_type": preprocessor_type,
             "clip": clip}
    for name, value in given.items():
        option, owner = _OPTION_FORMATS[name]
        if value is not None and fmt != owner:
            raise BadSpecError(f"{option} applies to --to {owner} only, not --to {fmt}")
    if fmt == "bn-state":
        return bn_state(config, BN_EPS if eps is None else eps, True if affine is None else affine)
    if fmt == "hf":
        return to_hf(config, base)
    if fmt == "mmengine":
        return to_mmengine(config, flavour or "mmengine", preprocessor_type)
    if fmt == "percentile-clip":
        return to_percentile_clip(config, parse_clip(clip) if isinstance(clip, str) else clip)
    return EXPORTERS[fmt](config)

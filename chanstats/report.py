"""The result of a run: its schema, atomic JSON/YAML writing, safe reading and the human summary.

The written config holds no timestamps, durations, host names or worker counts, so the same inputs
and options give the same bytes.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from dataclasses import dataclass, field
from typing import Any

from .errors import ChanstatsError
from .moments import ChannelStats, MomentsTable
from .per_image import PerImage
from .running import RunningEstimate
from .sources import ImageSource

FORMATS = ("json", "yaml")


@dataclass
class Result:
    """Everything one ``compute`` found.

    ``exact`` holds the exact statistics (mean/std on the [0, 1] scale, ``*_raw`` on 0..scale,
    population std, ddof 0); ``running`` the simulated BatchNorm running estimate (on [0, 1]);
    ``table`` the per-sample moments in listing order and ``sources`` the images measured.
    """

    version: str
    channels: tuple[str, ...]
    scale: int
    images: int
    samples: int
    exact: ChannelStats
    exact_method: str
    running: RunningEstimate
    options: dict[str, Any]
    fingerprint: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    dropped_alpha: int = 0
    table: MomentsTable | None = field(default=None, repr=False)
    sources: list[ImageSource] = field(default_factory=list, repr=False)
    per_image: PerImage | None = field(default=None, repr=False)
    listing: list[tuple[str, int]] | None = field(default=None, repr=False)
    # Set when only a seeded random subset was measured (--sample): its size and confidence
    # intervals, see chanstats.sampling.describe. ``exact`` is then exact for that subset.
    sample: dict[str, Any] | None = None

    @property
    def mean(self) -> list[float]:
        """Per-channel mean on the [0, 1] scale: what ``Normalize(mean=...)`` takes."""
        return list(self.exact.mean)

    @property
    def std(self) -> list[float]:
        """Per-channel population std (ddof 0) on the [0, 1] scale: ``Normalize(std=...)``."""
        return list(self.exact.std)

    def normalize(self):
        """``torchvision.transforms.v2.Normalize`` with the exact mean/std ([0, 1] scale, ddof 0)."""
        from torchvision.transforms import v2

        return v2.Normalize(mean=self.mean, std=self.std)

    def export(self, fmt: str, **options: Any) -> str | bytes:
        """What ``chanstats export CONFIG --to fmt`` writes for this result: text, or bytes for
        ``bn-state``. ``options`` are :func:`chanstats.export.export`'s (``eps``, ``affine``,
        ``base``, ``flavour``, ``preprocessor_type``)."""
        from .export import export

        return export(self.to_dict(), fmt, **options)

    def to_dict(self) -> dict[str, Any]:
        exact = self.exact
        running = self.running
        settings = running.settings
        data = {
            "chanstats": self.version,
            "channels": list(self.channels),
            "scale": self.scale,
            "count": {
                "images": self.images,
                "samples": self.samples,
                "pixels": exact.pixels,
                "skipped": len(self.skipped),
                "dropped_alpha": self.dropped_alpha,
            },
            "exact": {
                "method": self.exact_method,
                "mean": list(exact.mean),
                "std": list(exact.std),
                "mean_raw": list(exact.mean_raw),
                "std_raw": list(exact.std_raw),
                "min": [_number(v) for v in exact.min],
                "max": [_number(v) for v in exact.max],
                "ddof": 0,
            },
            "running": {
                **settings.to_dict(),
                "batches": running.batches,
                "mean": _floats(running.mean),
                "var": _floats(running.var),
                "std": _floats(running.std),
            },
            "gap": {
                "mean": [float(r) - e for r, e in zip(running.mean, exact.mean)],
                "std": [float(r) - e for r, e in zip(running.std, exact.std)],
            },
            "options": self.options,
            "fingerprint": self.fingerprint,
            "skipped": [{"path": path, "error": error} for path, error in self.skipped],
            **({"listing": [[name, size] for name, size in self.listing]} if self.listing is not None else {}),
        }
        if self.sample is not None:
            data["sample"] = self.sample
        return data

    def dumps(self, fmt: str = "json") -> str:
        return dumps(self.to_dict(), fmt)

    def write(self, path: str, fmt: str | None = None) -> None:
        """Write the config atomically; the format comes from ``fmt`` or the file's extension."""
        write_atomic(path, self.dumps(fmt or format_for_path(path)))


def _floats(values) -> list[float]:
    return [float(v) for v in values]


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def format_for_path(path: str) -> str:
    return "yaml" if path.lower().endswith((".yaml", ".yml")) else "json"


def dumps(data: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return _json_text(data, "") + "\n"
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)
    raise ChanstatsError(f"unknown format {fmt!r}: choose json or yaml")


def _json_text(value: Any, indent: str) -> str:
    """Indented JSON with each list of scalars on one line, so per-channel values read as a row."""
    inner = indent + "  "
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(str(k))}: {_json_text(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        items = [inner + _json_text(v, inner) for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value, allow_nan=False)


def write_atomic(path: str, text: str | bytes) -> None:
    """Write ``text`` (or bytes) to ``path`` so that readers see the old file or the new one, never half."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        handle, temporary = tempfile.mkstemp(prefix=".chanstats-", suffix=".tmp", dir=directory)
    except OSError as error:
        raise ChanstatsError(f"{path}: cannot write: {error.strerror or error}") from None
    try:
        binary = isinstance(text, bytes)
        with os.fdopen(handle, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, _permissions_for(path))
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _permissions_for(path: str) -> int:
    """What ``open(path, "w")`` would leave: an existing file keeps its permissions, a new one gets
    0o666 less the umask (the temporary file starts at 0o600 whatever the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        pass
    umask = os.umask(0o022)  # the only way to read it; set straight back
    os.umask(umask)
    return 0o666 & ~umask


def read_config(path: str) -> dict[str, Any]:
    """Read a config written by chanstats (JSON or YAML), with a one-line error for anything else.

    Every way a file can fail to be a config (unreadable, empty, binary, not UTF-8, not JSON/YAML,
    not a mapping, no statistics) raises :class:`ChanstatsError` naming the file, so ``check``
    can never mistake an unusable config for drift.
    """
    try:
        with open(path, "rb") as stream:
            raw = stream.read()
    except OSError as error:
        raise ChanstatsError(f"{path}: cannot read: {error.strerror or error}") from None
    if not raw.strip():
        raise ChanstatsError(f"{path}: empty file, not a chanstats config")
    if b"\0" in raw:
        raise ChanstatsError(f"{path}: a binary file, not a chanstats config (JSON or YAML text)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ChanstatsError(f"{path}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start}), not a chanstats config") from None
    data = _parse_config(path, text)
    if not isinstance(data, dict) or "chanstats" not in data or "exact" not in data:
        raise ChanstatsError(f"{path}: not a chanstats config (no 'chanstats'/'exact' keys)")
    return data


def _parse_config(path: str, text: str) -> Any:
    try:
        if format_for_path(path) == "yaml":
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except RecursionError:
        raise ChanstatsError(f"{path}: not a valid config (nested too deeply)") from None
    except Exception as error:  # json.JSONDecodeError, and yaml.YAMLError, which is no ValueError
        reason = " ".join(str(error).split())  # one line: YAML errors span several
        raise ChanstatsError(f"{path}: not a valid config ({reason})") from None


def summary(result: Result) -> str:
    """The human table: exact vs running per channel, then a paste-ready Normalize line."""
    return config_summary(result.to_dict())


def config_summary(config: dict[str, Any]) -> str:
    """:func:`summary` of a config as written (``chanstats show`` reads it back from a file)."""
    exact, running, count = config["exact"], config.get("running") or {}, config.get("count") or {}
    channels = config.get("channels") or [str(c) for c in range(len(exact["mean"]))]
    unit = "[0,1] scale" if exact.get("method", "integer") == "integer" else "pipeline output units"
    pixels = count.get("pixels")
    lines = [
        f"chanstats {config.get('chanstats')}: {count.get('images')} images, {count.get('samples')} samples, "
        f"{pixels:,} pixels per channel ({unit}, std ddof 0)" if isinstance(pixels, int) else
        f"chanstats {config.get('chanstats')}: {count.get('images')} images ({unit}, std ddof 0)",
        f"{'channel':<8} {'mean':>10} {'std':>10} {'run mean':>10} {'run std':>10} {'gap mean':>10} {'gap std':>10}",
    ]
    run_mean = running.get("mean") or [math.nan] * len(channels)
    run_std = running.get("std") or [math.nan] * len(channels)
    for c, name in enumerate(channels):
        mean, std = exact["mean"][c], exact["std"][c]
        lines.append(
            f"{name:<8} {mean:>10.6f} {std:>10.6f} {run_mean[c]:>10.6f} "
            f"{run_std[c]:>10.6f} {run_mean[c] - mean:>+10.6f} {run_std[c] - std:>+10.6f}"
        )
    if running:
        momentum = running.get("momentum")
        momentum = "none (cumulative)" if momentum in (None, "none") else f"{float(momentum):g}"
        order = f"shuffled, seed {running.get('seed')}" if running.get("shuffle") else "listing order"
        lines.append(
            f"running: BatchNorm {running.get('convention')} convention, momentum {momentum}, batch size "
            f"{running.get('batch_size')}, {running.get('batches')} batches ({order})"
        )
    if count.get("dropped_alpha"):
        mode = (config.get("options") or {}).get("mode")
        lines.append(f"note: {count['dropped_alpha']} images had transparency; --mode {mode} dropped it")
    skipped = config.get("skipped") or []
    if skipped:
        lines.append(f"skipped {len(skipped)} bad images:")
        lines.extend(f"  {item['path']}: {item['error']}" for item in skipped)
    if config.get("sample") is not None:
        lines.extend(_sample_lines(config["sample"], channels))
    mean = ", ".join(f"{v:.6g}" for v in exact["mean"])
    std = ", ".join(f"{v:.6g}" for v in exact["std"])
    lines.append(f"transforms.Normalize(mean=[{mean}], std=[{std}])")
    return "\n".join(lines)


def _sample_lines(sample: dict[str, Any], channels: list[str]) -> list[str]:
    lines = [
        f"sampled: {sample['images']} of {sample['of']} images ({sample['fraction']:.2%}, seed {sample['seed']}); "
        f"the numbers above are exact for the sample"
    ]
    ci = sample.get("ci") or {}
    if ci.get("mean") is None:
        lines.append("  (no confidence interval from fewer than 2 images)")
        return lines
    level = f"{sample['level']:.0%}"
    for c, name in enumerate(channels):
        (mean_lo, mean_hi), (std_lo, std_hi) = ci["mean"][c], ci["std"][c]
        lines.append(f"  {name:<6} {level} CI mean [{mean_lo:.6f}, {mean_hi:.6f}]  std [{std_lo:.6f}, {std_hi:.6f}]")
    return lines

"""The training transform: built from a YAML/JSON spec, CLI shorthands or ``module:attr``; seeded per sample.

A spec is a list of ``torchvision.transforms.v2`` steps, each ``{Name: {kwargs}}``, ``{Name: [args]}``,
``{Name: arg}`` or a bare ``Name``::

    - RandomResizedCrop: {size: 224}
    - RandomHorizontalFlip
    - ToImage
    - ToDtype: {dtype: float32, scale: true}
    - Normalize: {mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}

Strings naming a torch dtype (``float32``, ``torch.uint8``) become that dtype; ``interpolation``
and ``policy`` strings become torchvision's enums; a ``transforms`` argument (``RandomApply``,
``RandomChoice``, ``RandomOrder``, ``Compose``) is itself a list of steps, and a list inside the
list of steps is a ``Compose``. Instead of a spec, ``module:attr`` or ``path/to/file.py:attr``
names any callable (the user's own training transform).

Randomness: before each sample, torch's, Python's and numpy's global generators are seeded from
``(seed, epoch, index)`` only (and restored afterwards), so a sample's draws do not depend on the
worker that ran it or on what ran before it.

torch and torchvision are imported only when a transform is built: a plain ``chanstats compute``
never loads them.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import json
import os
import random
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from .errors import BadSpecError

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
_REFERENCE = re.compile(r"^(?P<target>[A-Za-z_][\w.]*|.+\.py):(?P<attr>[A-Za-z_][\w.]*)$")
_DTYPE_NAMES = (
    "float16", "float32", "float64", "bfloat16", "half", "float", "double",
    "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "bool",
)


@dataclass(frozen=True)
class TransformSpec:
    """What to apply to each decoded image: plain, picklable, hashable data.

    ``steps_json`` is the canonical JSON of the list of steps (the CLI shorthands first, then the
    user's spec), or ``reference`` a ``module:attr`` / ``file.py:attr`` string, resolved with
    ``search_dir`` (the directory it was given in) on the import path. ``options`` is what the
    output records so that the run can be replayed.
    """

    steps_json: str | None = None
    reference: str | None = None
    search_dir: str = ""
    prefix_json: str = "[]"

    def build(self) -> Callable[[Any], Any]:
        """The callable, built once per process and cached (workers rebuild it from this spec)."""
        built = _BUILT.get(self)
        if built is None:
            built = _build(self)
            _BUILT[self] = built
        return built


_BUILT: dict[TransformSpec, Callable[[Any], Any]] = {}


def resolve(
    transform: str | list | None = None, *, resize: int | None = None, center_crop: int | None = None
) -> tuple[TransformSpec | None, Any]:
    """Turn user-level values into a :class:`TransformSpec` and the JSON-able value to record.

    ``transform``: a path to a ``.yaml``/``.yml``/``.json`` file, an inline YAML/JSON list, a
    ``module:attr`` or ``path/to/file.py:attr`` reference, or an already parsed list of steps.
    ``resize``/``center_crop`` prepend ``Resize(N)`` / ``CenterCrop(N)``. Returns ``(None, None)``
    when there is nothing to apply. The recorded value is the list of steps (the content, not the
    file name) or the reference string, so ``resolve(recorded, ...)`` rebuilds the same transform.
    """
    prefix: list[Any] = []
    for name, value in (("Resize", resize), ("CenterCrop", center_crop)):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                option = "--" + ("resize" if name == "Resize" else "center-crop")
                raise BadSpecError(f"{option} must be a positive integer, got {value!r}")
            prefix.append({name: {"size": value}})
    if transform is None or (isinstance(transform, str) and not transform.strip()):
        if not prefix:
            return None, None
        return TransformSpec(steps_json=_canonical(prefix)), None
    if isinstance(transform, str):
        match = None if transform.strip().startswith("[") else _REFERENCE.match(transform.strip())
        if match and not _looks_like_spec_file(transform):
            spec = TransformSpec(reference=transform.strip(), search_dir=os.getcwd(), prefix_json=_canonical(prefix))
            return spec, transform.strip()
        steps = load_steps(transform)
    elif isinstance(transform, list):
        steps = transform
    else:
        raise BadSpecError(f"transform must be a spec file, a module:attr reference or a list of steps, got {type(transform).__name__}")
    _check_shape(steps)
    return TransformSpec(steps_json=_canonical(prefix + steps)), steps


def load_steps(text: str) -> list:
    """Read a list of steps from a YAML/JSON file, or from inline YAML/JSON starting with ``[``."""
    import yaml

    source = text.strip()
    if source.startswith("["):
        where = "inline transform spec"
        content = source
    else:
        where = source
        try:
            with open(source, encoding="utf-8") as stream:
                content = stream.read()
        except OSError as error:
            hint = "" if source.lower().endswith(SPEC_SUFFIXES) else " (expected a .yaml/.json file or module:attr)"
            raise BadSpecError(f"--transform {source}: cannot read: {error.strerror or error}{hint}") from None
    try:
        steps = yaml.safe_load(content)  # JSON is YAML too
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise BadSpecError(f"{where}: not valid YAML/JSON ({detail})") from None
    if not isinstance(steps, list):
        raise BadSpecError(f"{where}: a transform spec is a list of steps, got {type(steps).__name__}")
    return steps


def _looks_like_spec_file(text: str) -> bool:
    return text.strip().lower().endswith(SPEC_SUFFIXES) or os.path.isfile(text.strip())


def _check_shape(steps: list) -> None:
    """Reject what JSON cannot record (so the output stays replayable) before touching torch."""
    try:
        json.dumps(steps, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise BadSpecError(f"transform spec holds a value that JSON cannot record ({error})") from None


def _canonical(steps: list) -> str:
    return json.dumps(steps, sort_keys=True, separators=(",", ":"))


# --- building --------------------------------------------------------------------------------


def _build(spec: TransformSpec) -> Callable[[Any], Any]:
    from torchvision.transforms import v2

    prefix = json.loads(spec.prefix_json)
    if spec.reference is not None:
        user = load_reference(spec.reference, spec.search_dir)
        return v2.Compose([*build_steps(prefix), user]) if prefix else user
    steps = build_steps(json.loads(spec.steps_json or "[]"))
    return v2.Compose(steps) if steps else v2.Identity()


def transform_names() -> list[str]:
    """Every ``torchvision.transforms.v2`` transform class name."""
    from torchvision.transforms import v2

    return sorted(
        name
        for name in dir(v2)
        if name != "Transform" and isinstance(getattr(v2, name), type) and issubclass(getattr(v2, name), v2.Transform)
    )


def build_steps(steps: list, where: str = "step") -> list:
    """Instantiate each step; errors name the step (``step 2 (ColorJitter)``) and close matches."""
    from torchvision.transforms import v2

    built = []
    for number, step in enumerate(steps, 1):
        label = f"{where} {number}"
        if isinstance(step, list):
            built.append(v2.Compose(build_steps(step, f"{label}, step")))
            continue
        name, arguments = _split_step(step, label)
        cls = _transform_class(name, label)
        args, kwargs = _arguments(arguments, f"{label} ({name})")
        try:
            built.append(cls(*args, **kwargs))
        except Exception as error:  # torchvision raises TypeError, ValueError, RuntimeError...
            raise BadSpecError(f"transform {label} ({name}): {_one_line(error)}") from None
    return built


def _split_step(step: Any, label: str) -> tuple[str, Any]:
    if isinstance(step, str):
        return step.strip(), None
    if isinstance(step, dict) and len(step) == 1:
        name, arguments = next(iter(step.items()))
        if isinstance(name, str):
            return name.strip(), arguments
    raise BadSpecError(f"transform {label}: expected a name or {{Name: {{kwargs}}}}, got {json.dumps(step)}")


def _transform_class(name: str, label: str) -> type:
    from torchvision.transforms import v2

    names = transform_names()
    if name in names:
        return getattr(v2, name)
    folded = {n.lower(): n for n in names}
    close = ([folded[name.lower()]] if name.lower() in folded else []) + difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    close = list(dict.fromkeys(close))
    hint = f"; did you mean {', '.join(close)}?" if close else "; see torchvision.transforms.v2 for the list"
    raise BadSpecError(f"transform {label}: unknown torchvision.transforms.v2 transform {name!r}{hint}")


def _arguments(arguments: Any, label: str) -> tuple[list, dict]:
    if arguments is None:
        return [], {}
    if isinstance(arguments, dict):
        kwargs = {}
        for key, value in arguments.items():
            if not isinstance(key, str):
                raise BadSpecError(f"transform {label}: argument names must be strings, got {key!r}")
            kwargs[key] = _argument(key, value, label)
        return [], kwargs
    if isinstance(arguments, list):
        return [_argument("", value, label) for value in arguments], {}
    return [_argument("", arguments, label)], {}


def _argument(key: str, value: Any, label: str) -> Any:
    import torch
    from torchvision.transforms import v2

    if key == "transforms" and isinstance(value, list):
        return build_steps(value, f"{label}, transforms step")
    enums = {"interpolation": v2.InterpolationMode, "policy": v2.AutoAugmentPolicy}
    if key in enums and isinstance(value, str):
        try:
            return enums[key](value.lower())
        except ValueError:
            choices = ", ".join(member.value for member in enums[key])
            raise BadSpecError(f"transform {label}: {key} {value!r} is not one of {choices}") from None
    if isinstance(value, str):
        bare = value[len("torch."):] if value.startswith("torch.") else value
        if bare in _DTYPE_NAMES:
            return getattr(torch, bare)
        return value
    if isinstance(value, list):
        return [_argument("", item, label) for item in value]
    if isinstance(value, dict):
        return {_argument("", k, label) if isinstance(k, str) else k: _argument("", v, label) for k, v in value.items()}
    return value


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def load_reference(reference: str, search_dir: str = "") -> Callable[[Any], Any]:
    """Import ``module:attr`` or ``path/to/file.py:attr`` (relative to ``search_dir``) and return it."""
    match = _REFERENCE.match(reference)
    if not match:
        raise BadSpecError(f"--transform {reference}: expected module:attr or path/to/file.py:attr")
    target, attr = match["target"], match["attr"]
    if target.endswith(".py"):
        module = _load_file(os.path.join(search_dir, target) if search_dir else target, reference)
    else:
        module = _import_module(target, search_dir, reference)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise BadSpecError(f"--transform {reference}: {target} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise BadSpecError(f"--transform {reference}: {attr} is a {type(obj).__name__}, not a callable transform")
    return obj


def _import_module(name: str, search_dir: str, reference: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        # A console script does not put the working directory on sys.path; ``python -m`` does.
        top = name.split(".")[0]
        if error.name != top or not search_dir or search_dir in sys.path:
            raise BadSpecError(f"--transform {reference}: cannot import {name!r} ({_one_line(error)})") from None
    sys.path.insert(0, search_dir)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        raise BadSpecError(f"--transform {reference}: cannot import {name!r} ({_one_line(error)}; looked in {search_dir} and sys.path)") from None
    except Exception as error:
        raise BadSpecError(f"--transform {reference}: importing {name!r} failed: {_one_line(error)}") from None


def _load_file(path: str, reference: str):
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise BadSpecError(f"--transform {reference}: no such file {path}")
    name = "chanstats_user_transform_" + hashlib.sha256(path.encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise BadSpecError(f"--transform {reference}: cannot load {path} as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # so pickling and dataclasses inside the file work
    try:
        module_spec.loader.exec_module(module)
    except Exception as error:
        del sys.modules[name]
        raise BadSpecError(f"--transform {reference}: running {path} failed: {_one_line(error)}") from None
    return module


# --- seeding ---------------------------------------------------------------------------------


def sample_seeds(seed: int, epoch: int, index: int) -> np.ndarray:
    """Four 32-bit words derived from ``(seed, epoch, index)`` alone (numpy's SeedSequence hash).

    >>> sample_seeds(0, 0, 0).tolist() == sample_seeds(0, 0, 0).tolist() != sample_seeds(0, 0, 1).tolist()
    True
    """
    return np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(4, np.uint32)


@contextmanager
def seeded(seed: int, epoch: int, index: int) -> Iterator[None]:
    """Seed torch's, Python's and numpy's global generators for one sample; restore them after.

    Transforms (torchvision's and users' own) draw from these global generators, so seeding them
    per sample makes every draw a function of ``(seed, epoch, index)`` only.
    """
    import torch

    words = [int(w) for w in sample_seeds(seed, epoch, index)]
    saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
    torch.manual_seed(words[0] << 32 | words[1])
    random.seed(words[2] << 32 | words[3])
    np.random.seed(words)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        random.setstate(saved[1])
        np.random.set_state(saved[2])


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch ops on one thread: some CPU reductions depend on the thread count, and the output
    must not depend on which process (or how many cores) ran a sample."""
    import torch

    threads = torch.get_num_threads()
    if threads != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if threads != 1:
            torch.set_num_threads(threads)

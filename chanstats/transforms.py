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
names any callable (the user's own training transform). An albumentations pipeline works too:
a ``Compose`` (or any albumentations transform) given by reference, passed as a Python object, or
serialized with ``A.save`` (a YAML/JSON document whose ``transform`` holds ``__class_fullname__``)
is called as albumentations expects, ``t(image=hwc_uint8_array)["image"]``.

Randomness: before each sample, torch's, Python's and numpy's global generators are seeded from
``(seed, epoch, index)`` only (and restored afterwards), and so are the private generators of every
albumentations transform found in the pipeline, so a sample's draws do not depend on the worker
that ran it or on what ran before it. Any other generator (a ``random.Random()`` of the user's own)
is caught by :func:`same_output`: each process runs its first sample twice and refuses a transform
whose two outputs differ.

torch, torchvision and albumentations are imported only when a transform is built: a plain
``chanstats compute`` never loads them.
"""

from __future__ import annotations

import difflib
import json
import os
import pickle
import random
import re
import sys
import types
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Iterator

import numpy as np

from .errors import BadSpecError
from .user_code import load_reference as load_user_reference

SPEC_SUFFIXES = (".yaml", ".yml", ".json")
_REFERENCE = re.compile(r"^(?P<target>[A-Za-z_][\w.]*|.+\.py):(?P<attr>[A-Za-z_][\w.]*)$")
_DTYPE_NAMES = (
    "float16", "float32", "float64", "bfloat16", "half", "float", "double",
    "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "bool",
)


@dataclass(frozen=True)
class TransformSpec:
    """What to apply to each decoded image: plain, picklable, hashable data.

    Exactly one source is set: ``steps_json``, the canonical JSON of the list of steps (the CLI
    shorthands first, then the user's spec); ``reference``, a ``module:attr`` / ``file.py:attr``
    string resolved with ``search_dir`` (the directory it was given in) on the import path;
    ``albumentations_json``, a serialized albumentations pipeline (``A.to_dict``); or ``pickled``,
    a transform object passed from Python. The last three run after the ``prefix_json`` steps.
    """

    steps_json: str | None = None
    reference: str | None = None
    search_dir: str = ""
    prefix_json: str = "[]"
    albumentations_json: str | None = None
    pickled: bytes | None = None

    def build(self) -> Callable[[Any], Any]:
        """The callable, built once per process and cached (workers rebuild it from this spec)."""
        built = _BUILT.get(self)
        if built is None:
            built = _build(self)
            _BUILT[self] = built
        return built

    def own_generators(self) -> tuple[Any, ...]:
        """The albumentations transforms in the built pipeline, whose private generators
        :func:`seeded` reseeds per sample (found once per process)."""
        found = _OWN_GENERATORS.get(self)
        if found is None:
            found = albumentations_in(self.build())
            _OWN_GENERATORS[self] = found
        return found

    def describe(self) -> str:
        """How the user named this transform, for error messages."""
        if self.reference is not None:
            return f"--transform {self.reference}"
        if self.albumentations_json is not None:
            return "the albumentations transform pipeline"
        if self.pickled is not None:
            return "the transform object passed to chanstats"
        return "the transform spec"


_BUILT: dict[TransformSpec, Callable[[Any], Any]] = {}
_OWN_GENERATORS: dict[TransformSpec, tuple[Any, ...]] = {}


def resolve(
    transform: Any = None, *, resize: int | None = None, center_crop: int | None = None
) -> tuple[TransformSpec | None, Any]:
    """Turn user-level values into a :class:`TransformSpec` and the JSON-able value to record.

    ``transform``: a path to a ``.yaml``/``.yml``/``.json`` file (a list of torchvision steps, or
    an albumentations pipeline saved with ``A.save``), an inline YAML/JSON list, a ``module:attr``
    or ``path/to/file.py:attr`` reference, an already parsed list of steps or albumentations
    dict, or a callable transform object (an albumentations ``Compose``, a ``v2.Compose``...).
    ``resize``/``center_crop`` prepend ``Resize(N)`` / ``CenterCrop(N)``. Returns ``(None, None)``
    when there is nothing to apply. The recorded value is the list of steps or albumentations
    dict (the content, not the file name) or the reference string, so ``resolve(recorded, ...)``
    rebuilds the same transform.
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
        if transform.strip().startswith(_UNRECORDED):
            raise BadSpecError(
                f"transform {transform.strip()}: the config records a transform object passed from Python, "
                "which cannot be rebuilt from it; pass the transform again"
            )
        match = None if transform.strip().startswith("[") else _REFERENCE.match(transform.strip())
        if match and not _looks_like_spec_file(transform):
            spec = TransformSpec(reference=transform.strip(), search_dir=os.getcwd(), prefix_json=_canonical(prefix))
            return spec, transform.strip()
        document = load_document(transform)
    elif isinstance(transform, (list, dict)):
        document = transform
    elif callable(transform):
        return _object_spec(transform, prefix)
    else:
        raise BadSpecError(
            f"transform must be a spec file, a module:attr reference, a list of steps or a callable, got {type(transform).__name__}"
        )
    _check_shape(document)
    if isinstance(document, dict):
        if not is_albumentations_document(document):
            raise BadSpecError("transform: a mapping must be an albumentations pipeline (A.to_dict / A.save); got other keys")
        return TransformSpec(albumentations_json=_canonical(document), prefix_json=_canonical(prefix)), document
    return TransformSpec(steps_json=_canonical(prefix + document)), document


def load_steps(text: str) -> list:
    """Read a list of steps from a YAML/JSON file, or from inline YAML/JSON starting with ``[``."""
    steps = load_document(text)
    if not isinstance(steps, list):
        where = "inline transform spec" if text.strip().startswith("[") else text.strip()
        raise BadSpecError(f"{where}: a transform spec is a list of steps, got {type(steps).__name__}")
    return steps


def load_document(text: str) -> list | dict:
    """Read a transform spec file (or inline YAML/JSON starting with ``[``): a list of
    torchvision steps, or an albumentations pipeline serialized with ``A.save``."""
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
        except UnicodeDecodeError:
            raise BadSpecError(f"--transform {source}: not a UTF-8 text file") from None
    try:
        document = yaml.safe_load(content)  # JSON is YAML too
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise BadSpecError(f"{where}: not valid YAML/JSON ({detail})") from None
    if isinstance(document, dict) and is_albumentations_document(document):
        return document
    if not isinstance(document, list):
        raise BadSpecError(f"{where}: a transform spec is a list of steps, got {type(document).__name__}")
    return document


def is_albumentations_document(document: Any) -> bool:
    """Whether ``document`` is what ``A.to_dict`` / ``A.save`` write: ``{"transform": {"__class_fullname__": ...}}``."""
    return (
        isinstance(document, dict)
        and isinstance(document.get("transform"), dict)
        and "__class_fullname__" in document["transform"]
    )


# What a config records for a transform object that has no replayable form.
_UNRECORDED = "<python object"


def _object_spec(transform: Any, prefix: list) -> tuple[TransformSpec, Any]:
    """A transform passed as a Python object: pickled (so worker processes get a copy) and recorded
    in a replayable form where there is one."""
    try:
        pickled = pickle.dumps(transform, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # PicklingError, AttributeError (lambdas, local classes), TypeError
        raise BadSpecError(
            f"transform {_object_name(transform)}: cannot be sent to worker processes ({_one_line(error)}); "
            "define it at module level or pass a module:attr reference"
        ) from None
    return TransformSpec(pickled=pickled, prefix_json=_canonical(prefix)), _recorded_object(transform)


def _recorded_object(transform: Any) -> Any:
    """The albumentations dict for an albumentations pipeline, ``module:qualname`` for an
    importable function or class, else a marker that replay refuses with a clear message."""
    if _is_albumentations(transform):
        import albumentations

        try:
            document = albumentations.to_dict(transform)
            json.dumps(document, allow_nan=False)
            return json.loads(_canonical(document))
        except Exception:  # Lambda and custom transforms cannot be serialized
            pass
    module, qualname = getattr(transform, "__module__", None), getattr(transform, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and module != "__main__" and "<" not in qualname:
        return f"{module}:{qualname}"
    return f"{_UNRECORDED} {_object_name(transform)}>"


def _object_name(transform: Any) -> str:
    kind = type(transform)
    return getattr(transform, "__qualname__", None) or f"{kind.__module__}.{kind.__qualname__}"


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
    # albumentations checks PyPI for a newer version when imported (a network call in every
    # worker); a measurement has no use for it. A user's explicit setting wins.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from torchvision.transforms import v2

    prefix = build_steps(json.loads(spec.prefix_json))
    if spec.steps_json is not None:
        steps = build_steps(json.loads(spec.steps_json))
        return v2.Compose(steps) if steps else v2.Identity()
    if spec.reference is not None:
        user = load_reference(spec.reference, spec.search_dir)
    elif spec.albumentations_json is not None:
        user = _load_albumentations(json.loads(spec.albumentations_json))
    else:
        user = _unpickle(spec.pickled or b"")
    if _is_albumentations(user):
        user = AlbumentationsAdapter(user)
    return v2.Compose([*prefix, user]) if prefix else user


class AlbumentationsAdapter:
    """Calls an albumentations transform the way albumentations expects: ``t(image=array)["image"]``
    on the decoded image as an ``H×W×C`` (``H×W`` for ``L``) uint8 numpy array, as
    ``np.asarray(PIL image)`` gives it; the output is whatever the pipeline makes of it (a numpy
    array, or a tensor after ``ToTensorV2``)."""

    def __init__(self, pipeline: Any):
        self.pipeline = pipeline

    def __call__(self, image: Any) -> Any:
        array = np.array(image) if not isinstance(image, np.ndarray) else image  # a writable copy
        return self.pipeline(image=array)["image"]

    def __repr__(self) -> str:
        return f"AlbumentationsAdapter({self.pipeline!r})"


def _load_albumentations(document: dict) -> Any:
    try:
        import albumentations
    except ImportError:
        raise BadSpecError("transform: this is an albumentations pipeline; install albumentations to run it") from None
    try:
        return albumentations.from_dict(document)
    except Exception as error:  # unknown class names, bad arguments...
        raise BadSpecError(f"transform: cannot build the albumentations pipeline: {_one_line(error)}") from None


def _unpickle(pickled: bytes) -> Any:
    try:
        return pickle.loads(pickled)
    except Exception as error:  # a worker that cannot import what the object's class needs
        raise BadSpecError(f"the transform object passed to chanstats cannot be rebuilt in this process: {_one_line(error)}") from None


def _is_albumentations(obj: Any) -> bool:
    """An albumentations transform or composition (duck-typed on its package, so any 1.x/2.x class)."""
    module = getattr(type(obj), "__module__", "") or ""
    return module.split(".")[0] == "albumentations" and callable(obj)


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
    found = load_user_reference(reference, "--transform", "transform", search_dir)
    if not callable(found):
        attr = reference.rpartition(":")[2]
        raise BadSpecError(f"--transform {reference}: {attr} is a {type(found).__name__}, not a callable transform")
    return found


# --- seeding ---------------------------------------------------------------------------------


def sample_seeds(seed: int, epoch: int, index: int) -> np.ndarray:
    """Four 32-bit words derived from ``(seed, epoch, index)`` alone (numpy's SeedSequence hash).

    >>> sample_seeds(0, 0, 0).tolist() == sample_seeds(0, 0, 0).tolist() != sample_seeds(0, 0, 1).tolist()
    True
    """
    return np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(4, np.uint32)


@contextmanager
def seeded(seed: int, epoch: int, index: int, own_generators: tuple[Any, ...] = ()) -> Iterator[None]:
    """Seed torch's, Python's and numpy's global generators for one sample; restore them after.

    Transforms (torchvision's and users' own) draw from these global generators, so seeding them
    per sample makes every draw a function of ``(seed, epoch, index)`` only. ``own_generators``
    are albumentations transforms, which draw from generators of their own: each gets a fresh
    pair derived from the same triple (see :func:`albumentations_generators`).
    """
    import torch

    words = [int(w) for w in sample_seeds(seed, epoch, index)]
    saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
    torch.manual_seed(words[0] << 32 | words[1])
    random.seed(words[2] << 32 | words[3])
    np.random.seed(words)
    if own_generators:
        numpy_generator, python_generator = albumentations_generators(seed, epoch, index)
        for transform in own_generators:
            # One shared pair, as a Compose shares its own with every transform inside it.
            transform.set_random_state(numpy_generator, python_generator)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        random.setstate(saved[1])
        np.random.set_state(saved[2])


def albumentations_generators(seed: int, epoch: int, index: int) -> tuple[np.random.Generator, random.Random]:
    """The numpy and Python generators an albumentations pipeline draws from for one sample.

    They come from children of the sample's ``SeedSequence((seed, epoch, index))``, so they are
    independent of the global generators' seeds and of each other.

    >>> a, b = albumentations_generators(0, 0, 0), albumentations_generators(0, 0, 0)
    >>> a[0].random() == b[0].random() and a[1].random() == b[1].random()
    True
    """
    numpy_child, python_child = np.random.SeedSequence([int(seed), int(epoch), int(index)]).spawn(2)
    python_seed = int.from_bytes(python_child.generate_state(4, np.uint32).tobytes(), "little")
    return np.random.default_rng(numpy_child), random.Random(python_seed)


def albumentations_in(root: Any, max_depth: int = 6) -> tuple[Any, ...]:
    """The outermost albumentations transforms reachable from ``root``: ``root`` itself, the items
    of a ``Compose`` or list, an object's attributes, a function's closure, defaults and the module
    globals its code names (a ``def train(img): return pipeline(image=...)`` finds ``pipeline``).

    Only albumentations transforms that expose ``set_random_state`` (albumentations 2.x) count;
    1.x draws from the global generators, which :func:`seeded` seeds anyway. A pipeline hidden
    deeper than this search goes is caught by the reproducibility check instead.
    """
    if "albumentations" not in sys.modules:  # nothing can hold one
        return ()
    found: dict[int, Any] = {}
    seen: set[int] = set()

    def visit(obj: Any, depth: int) -> None:
        if depth > max_depth or id(obj) in seen or isinstance(obj, _LEAVES) or len(seen) > _MAX_VISITS:
            return
        seen.add(id(obj))
        if _is_albumentations(obj):
            if hasattr(obj, "set_random_state"):
                found.setdefault(id(obj), obj)  # its set_random_state reaches everything inside
            return
        for child in _children(obj):
            visit(child, depth + 1)

    visit(root, 0)
    return tuple(found.values())


_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), np.ndarray, types.ModuleType, type)
_MAX_VISITS = 20_000


def _children(obj: Any) -> list[Any]:
    """What :func:`albumentations_in` looks inside: containers, partials, methods, functions and
    instances' attributes."""
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if isinstance(obj, partial):
        return [obj.func, *obj.args, *obj.keywords.values()]
    if isinstance(obj, types.MethodType):
        return [obj.__self__, obj.__func__]
    if isinstance(obj, types.FunctionType):
        return _function_children(obj)
    children: list[Any] = []
    attributes = getattr(obj, "__dict__", None)
    if isinstance(attributes, dict):
        children.extend(attributes.values())
    call = getattr(type(obj), "__call__", None)
    if isinstance(call, types.FunctionType) and not type(obj).__module__.startswith(("torch", "torchvision")):
        children.append(call)  # a callable class of the user's, whose __call__ names a global pipeline
    return children


def _function_children(function: types.FunctionType) -> list[Any]:
    children: list[Any] = [cell.cell_contents for cell in (function.__closure__ or ()) if _has_contents(cell)]
    children.extend(function.__defaults__ or ())
    children.extend((function.__kwdefaults__ or {}).values())
    names = _global_names(function.__code__)
    children.extend(function.__globals__[name] for name in names if name in function.__globals__)
    return children


def _global_names(code: types.CodeType) -> list[str]:
    """Names a function's code (and the code of functions defined inside it) may load as globals."""
    names = list(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names.extend(_global_names(constant))
    return names


def _has_contents(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


def same_output(first: Any, second: Any) -> bool:
    """Whether two outputs of a transform are identical: same kind, shape, dtype and bytes
    (so a NaN equals itself)."""
    if type(first) is not type(second):
        return False
    from PIL import Image

    if isinstance(first, Image.Image):
        return (first.mode, first.size) == (second.mode, second.size) and first.tobytes() == second.tobytes()
    if isinstance(first, np.ndarray):
        return (first.dtype, first.shape) == (second.dtype, second.shape) and first.tobytes() == second.tobytes()
    if "torch" in sys.modules:
        import torch

        if isinstance(first, torch.Tensor):
            a, b = first.detach().cpu().contiguous(), second.detach().cpu().contiguous()
            if (a.dtype, a.shape) != (b.dtype, b.shape):
                return False
            return bool(torch.equal(a.view(-1).view(torch.uint8), b.view(-1).view(torch.uint8)))
    return True  # not an image: measuring it will say so


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

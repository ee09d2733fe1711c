"""Failures where users meet them: errors that cross process boundaries, workers that crash or die,
Ctrl-C, and what the Python API accepts."""

from __future__ import annotations

import importlib
import inspect
import io
import json
import os
import pathlib
import pickle
import pkgutil
import re
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import chanstats
from chanstats.scale.engine import measure_all
from chanstats.errors import BadImageError, BadImagesError, BadSpecError, ChanstatsError, WorkerError
from chanstats.measure import Measurer
from chanstats.report.files import write_atomic
from chanstats.sources.listing import list_images

from .helpers.cli import chanstats_command, run_cli
from .helpers.engines import POOL
from .helpers.files import write_image

# -- every error survives pickling -------------------------------------------------------------

# Arguments for the classes whose __init__ takes more than a message; any other class is built
# from its signature (strings for str, lists of pairs for list...), so new classes are covered too.
EXAMPLES = {
    BadImageError: ("data/a.jpg", "corrupt or truncated image (broken data stream)"),
    BadImagesError: ([("data/a.jpg", "not an image"), ("s.tar::b.png", "tar member is a FIFO")], "2 of 9 images:"),
}


def chanstats_exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in any chanstats module, subpackages included."""
    found = set()
    for module_info in pkgutil.walk_packages(chanstats.__path__, "chanstats."):
        if module_info.name.endswith("__main__"):
            continue
        module = importlib.import_module(module_info.name)
        for _, value in inspect.getmembers(module, inspect.isclass):
            if issubclass(value, BaseException) and value.__module__ == module.__name__:
                found.add(value)
    return sorted(found, key=lambda cls: (cls.__module__, cls.__name__))


def example_arguments(cls: type[BaseException]) -> tuple:
    if cls in EXAMPLES:
        return EXAMPLES[cls]
    by_annotation = {"str": "data/x.png: a message", "int": 3, "float": 2.5, "bool": True}
    arguments = []
    for parameter in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or parameter.default is not parameter.empty:
            continue
        annotation = str(parameter.annotation)
        if annotation.startswith("list"):
            arguments.append([("data/x.png", "a reason")])
        else:
            arguments.append(by_annotation.get(annotation, "data/x.png: a message"))
    return tuple(arguments) if arguments or cls.__init__ is not BaseException.__init__ else ("data/x.png: a message",)


def test_the_list_of_exception_classes_is_complete():
    names = {f"{cls.__module__}.{cls.__name__}" for cls in chanstats_exception_classes()}
    assert {"chanstats.errors.ChanstatsError", "chanstats.errors.BadImageError", "chanstats.errors.BadImagesError",
            "chanstats.errors.WorkerError", "chanstats.scale.distributed.OtherRankFailed"} <= names


@pytest.mark.parametrize("cls", chanstats_exception_classes(), ids=lambda cls: f"{cls.__module__}.{cls.__name__}")
def test_every_exception_survives_pickling(cls):
    original = cls(*example_arguments(cls))
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is cls
    assert str(copy) == str(original) and copy.args == original.args
    assert vars(copy) == vars(original)  # path, reason, bad, summary...


# -- unexpected exceptions and dead workers ----------------------------------------------------


@dataclass(frozen=True)
class FailsOn:
    """Measures like chanstats, except on the file named ``name``: raises or dies as ``how`` says."""

    name: str
    how: str

    def __call__(self, index, source):
        if source.name == self.name:
            if self.how == "exit":
                os._exit(3)
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise {"value": ValueError("bad\nvalue"), "key": KeyError("width"), "memory": MemoryError(),
                   "spec": BadSpecError("transform failed on it")}[self.how]
        return Measurer()(index, source)


@pytest.fixture(scope="module")
def pool_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pool") / "data"
    POOL.pad(folder)
    return folder


@pytest.mark.parametrize("how, message", [
    ("value", r"p017\.png: unexpected error while measuring it: ValueError: bad value \(not a bad image: a bug in"),
    ("key", r"p017\.png: unexpected error while measuring it: KeyError: 'width' \(not a bad image"),
    ("memory", r"p017\.png: out of memory while measuring it \(MemoryError\)$"),
])
@pytest.mark.parametrize("workers", [0, 2])
def test_an_unexpected_exception_names_the_file(pool_folder, how, message, workers):
    sources = list_images([str(pool_folder)])
    with pytest.raises(WorkerError, match=message) as failure:
        list(measure_all(sources, FailsOn("pad/p017.png", how), workers=workers))
    assert "\n" not in str(failure.value)
    # The original stays attached for --debug: itself in-process, its traceback from a worker.
    original = {"value": "ValueError", "key": "KeyError", "memory": "MemoryError"}[how]
    cause = failure.value.__cause__
    if workers:
        assert type(cause).__name__ == "_RemoteTraceback" and f"{original}" in str(cause) and "in __call__" in str(cause)
    else:
        assert type(cause).__name__ == original


def test_errors_of_chanstats_itself_cross_from_a_worker_unchanged(pool_folder):
    sources = list_images([str(pool_folder)])
    with pytest.raises(BadSpecError, match="^transform failed on it$"):
        list(measure_all(sources, FailsOn("pad/p030.png", "spec"), workers=2))


@pytest.mark.parametrize("how, reason", [("exit", "it exited with code 3"), ("kill", "killed by SIGKILL, often the out-of-memory killer")])
def test_a_worker_that_dies_is_named_by_the_file_it_was_measuring(pool_folder, how, reason):
    sources = list_images([str(pool_folder)])
    with pytest.raises(WorkerError) as failure:
        list(measure_all(sources, FailsOn("pad/p025.png", how), workers=2))
    assert str(failure.value) == f"{pool_folder}/pad/p025.png: a worker process died while measuring it ({reason})"


def run_patched_cli(args: list[str], fail_on: str, folder: Path) -> subprocess.CompletedProcess:
    """The real command in a real process, with a bug planted in reading one file (workers forked
    from it inherit the bug)."""
    script = folder / "patched.py"
    script.write_text(
        "import sys\n"
        "from chanstats import measure\n"
        "real = measure.read_item\n"
        "def read(source):\n"
        f"    if source.name == {fail_on!r}:\n"
        "        raise KeyError('width')\n"
        "    return real(source)\n"
        "measure.read_item = read\n"
        "from chanstats.cli import main\n"
        f"sys.argv = ['chanstats', *{args!r}]\n"
        "main()\n"
    )
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)


def test_a_bug_in_a_worker_is_one_line_exit_2_and_debug_shows_the_original(pool_folder, tmp_path):
    output = tmp_path / "out.json"
    for on_error in ("fail", "skip"):
        run = run_patched_cli(["compute", str(pool_folder), "--workers", "2", "--on-error", on_error, "-o", str(output)],
                              "pad/p020.png", tmp_path)
        assert run.returncode == 2
        assert run.stderr.startswith(f"Error: {pool_folder}/pad/p020.png: unexpected error while measuring it: KeyError: 'width'")
        assert len(run.stderr.splitlines()) == 1 and not output.exists()
    debug = run_patched_cli(["--debug", "compute", str(pool_folder), "--workers", "2"], "pad/p020.png", tmp_path)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and "chanstats.errors.WorkerError: " in debug.stderr
    assert "raise KeyError('width')" in debug.stderr  # the worker's own frame, where the bug is


# -- Ctrl-C and kill -9 ------------------------------------------------------------------------


def wait_for(condition, what: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"ended before {what}: {process.communicate()[1]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    if int(handle.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return found


linux_only = pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")

SLOW_TRANSFORM = '''
import os, time, pathlib

def slow(image):
    pathlib.Path(os.environ["CHANSTATS_TEST_MARKS"], str(os.getpid())).touch()
    time.sleep(0.2)
    return image
'''


@dataclass(frozen=True)
class Sleepy:
    """Measures like chanstats, slowly, leaving a mark named by the process id that measured."""

    marks: str

    def __call__(self, index, source):
        Path(self.marks, str(os.getpid())).touch()
        time.sleep(0.5)
        return Measurer()(index, source)


@linux_only
def test_an_interrupt_stops_the_workers_at_once(pool_folder, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    sent = []

    def interrupt_once_busy() -> None:  # the main thread is then inside measure_all
        while not any(marks.iterdir()):
            time.sleep(0.01)
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_once_busy, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        list(measure_all(list_images([str(pool_folder)]), Sleepy(str(marks)), workers=2))
    # The 40 images would take 10 s; the chunks in flight are not waited for.
    assert time.monotonic() - sent[0] < 3
    workers = [int(mark.name) for mark in marks.iterdir()]
    assert workers and not any(alive(pid) for pid in workers)


@pytest.mark.slow
@linux_only
def test_ctrl_c_while_workers_measure_is_one_line_exit_130_and_no_output(pool_folder, tmp_path):
    (tmp_path / "slow.py").write_text(SLOW_TRANSFORM)
    marks = tmp_path / "marks"
    marks.mkdir()
    output = tmp_path / "out.json"
    process = subprocess.Popen(
        [*chanstats_command(), "compute", str(pool_folder), "--transform", f"{tmp_path / 'slow.py'}:slow", "--workers", "2",
         "-o", str(output)],
        env=dict(os.environ, CHANSTATS_TEST_MARKS=str(marks)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def workers_busy() -> list[int]:  # marks left by the transform in worker processes
        return [int(mark.name) for mark in marks.iterdir() if int(mark.name) != process.pid]

    wait_for(workers_busy, "the workers to start measuring", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr == "Interrupted\n"
    assert not output.exists() and not list(tmp_path.glob(".chanstats-*"))
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers_busy()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers_busy())


def start_slow_checkpointed_run(folder: Path, tmp_path: Path) -> tuple[subprocess.Popen, list[int]]:
    """A pool run that the checkpoint test hook slows down in the main process; returns it once its
    checkpoint shows progress, with its worker processes."""
    from chanstats.scale.checkpoint import TEST_DELAY_ENV

    checkpoint = tmp_path / "ckpt.json"
    process = subprocess.Popen(
        [*chanstats_command(), "compute", str(folder), "--workers", "2", "-o", str(tmp_path / "out.json"),
         "--checkpoint", str(checkpoint), "--checkpoint-every", "1"],
        env=dict(os.environ, **{TEST_DELAY_ENV: "0.1"}), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def progress() -> bool:
        try:
            return json.loads(checkpoint.read_text())["done"] >= 3
        except (OSError, ValueError, KeyError):
            return False

    wait_for(progress, "checkpoint progress", process)
    return process, children_of(process.pid)


@linux_only
def test_ctrl_c_while_the_main_process_is_busy_is_one_line_exit_130(pool_folder, tmp_path):
    process, workers = start_slow_checkpointed_run(pool_folder, tmp_path)
    assert len(workers) == 2
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert (process.returncode, stderr) == (130, "Interrupted\n")
    assert not (tmp_path / "out.json").exists()
    assert not any(alive(pid) for pid in workers)


@linux_only
def test_workers_end_with_a_killed_main_process(pool_folder, tmp_path):
    process, workers = start_slow_checkpointed_run(pool_folder, tmp_path)
    process.kill()  # kill -9, as the out-of-memory killer does: no cleanup in the main process
    process.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers and not any(alive(pid) for pid in workers)
    process.communicate(timeout=10)  # the workers held stderr open while they lived


# -- bad input: the same bytes whatever the worker count -------------------------------------


def test_bad_input_gives_the_same_bytes_in_process_and_through_the_pool(tmp_path, rng):
    folder = tmp_path / "data"
    POOL.pad(folder)
    good = write_image(folder / "m" / "good.jpg", rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).read_bytes()
    (folder / "m" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (folder / "z" / "text.png").parent.mkdir()
    (folder / "z" / "text.png").write_text("<html>not an image</html>")
    with tarfile.open(tmp_path / "s.tar", "w") as archive:
        for name, data in (("a.png", b"broken"), ("b.jpg", good)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    inputs = [str(folder), str(tmp_path / "s.tar")]
    outputs = {}
    for workers in ("0", "2"):
        failed = run_cli("compute", *inputs, "--workers", workers)
        skipped = run_cli("compute", *inputs, "--workers", workers, "--on-error", "skip")
        assert failed.returncode == 2 and skipped.returncode == 0, skipped.stderr
        outputs[workers] = (failed.stderr, skipped.stderr, skipped.stdout)
    assert outputs["0"] == outputs["2"]
    failure = outputs["0"][0]
    assert f"3 of {POOL.padding + 5} images could not be read" in failure and "Traceback" not in failure
    assert len(json.loads(outputs["0"][2])["skipped"]) == 3


# -- Pillow's settings reach every worker ------------------------------------------------------


def test_the_callers_bomb_limit_reaches_workers_started_from_scratch(pool_folder, monkeypatch):
    sources = list_images([str(pool_folder)])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30)  # the 8×8 images are over twice it
    outcomes = list(measure_all(sources, Measurer(), workers=2, start_method="spawn"))
    assert len(outcomes) == len(sources)
    assert all(isinstance(outcome, BadImageError) and "decompression bomb" in outcome.reason for _, outcome in outcomes)


# -- the Python API --------------------------------------------------------------------------


def test_compute_takes_pathlib_paths(pool_folder, rgb_folder):
    as_text = chanstats.compute(str(rgb_folder), workers=0).dumps()
    assert chanstats.compute(pathlib.Path(rgb_folder), workers=0).dumps() == as_text
    both = chanstats.compute([pathlib.Path(rgb_folder), str(pool_folder)], workers=0)
    assert both.to_dict()["options"]["inputs"] == [str(rgb_folder), str(pool_folder)]
    assert both.images == 7 + POOL.padding
    assert chanstats.compute(iter([pathlib.Path(rgb_folder)]), workers=0).dumps() == as_text
    with pytest.raises(TypeError, match="paths must be"):
        chanstats.compute(42, workers=0)
    with pytest.raises(TypeError, match="paths must be str or pathlib.Path, got bytes"):
        chanstats.compute([b"folder"], workers=0)


def test_a_misspelled_keyword_names_compute(rgb_folder):
    with pytest.raises(TypeError, match=r"^compute\(\) got an unexpected keyword argument 'batchsize'; did you mean 'batch_size'\?$"):
        chanstats.compute(rgb_folder, batchsize=32)
    with pytest.raises(TypeError, match=r"^compute\(\) got an unexpected keyword argument 'worker'; did you mean 'workers'\?$"):
        chanstats.compute(rgb_folder, worker=0)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_honour_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        write_atomic(str(tmp_path / "new.json"), "{}")
        with open(tmp_path / "plain.json", "w") as handle:  # the oracle: what open() does
            handle.write("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == stat.S_IMODE((tmp_path / "plain.json").stat().st_mode)
    assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o666 & ~umask


def test_rewriting_a_file_keeps_its_permissions(tmp_path):
    target = tmp_path / "config.json"
    target.write_text("old")
    target.chmod(0o640)
    write_atomic(str(target), "new")
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_writing_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_atomic(str(link), "new")
    assert link.is_symlink() and target.read_text() == "new"


def test_writing_to_a_fifo_writes_into_it_and_leaves_the_fifo(tmp_path):
    # -o /dev/stdout or -o >(gzip > x): renaming over the path would replace the pipe (or, for
    # -o /dev/null, the device node itself) with a regular file.
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    write_atomic(str(fifo), '{"a": 1}')
    reader.join(timeout=10)
    assert received == ['{"a": 1}'] and stat.S_ISFIFO(fifo.stat().st_mode)


def test_the_command_honours_the_umask(rgb_folder, tmp_path):
    target = tmp_path / "out.json"
    run = subprocess.run(["sh", "-c", 'umask 027 && exec "$@"', "sh", *chanstats_command(), "compute", str(rgb_folder),
                          "-o", str(target), "-q"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def _refuse_to_load():
    raise RuntimeError("cannot be rebuilt here")


class Unloadable:
    """Pickles in the worker but cannot be unpickled in the main process."""

    def __reduce__(self):
        return _refuse_to_load, ()


@dataclass(frozen=True)
class ReturnsOddly:
    """Returns a result that cannot be sent back (``how="unpicklable"``) or not read back."""

    how: str

    def __call__(self, index, source):
        if source.name != "pad/p021.png":
            return Measurer()(index, source)
        return (lambda: None) if self.how == "unpicklable" else Unloadable()


@pytest.mark.parametrize("how, message", [
    ("unpicklable", r"(?P<first>p\d{3})\.png and the images after it: measuring failed in a worker process: .*(Pickl|pickle)"),
    ("unloadable", r"(?P<first>p\d{3})\.png and the images after it: a worker's result could not be read back \(RuntimeError: cannot be rebuilt here\)"),
])
def test_a_result_that_cannot_cross_back_names_its_chunk(pool_folder, how, message):
    # p021 is in the second chunk of 16. A result that cannot be read back breaks the whole pool,
    # and the pool reports it on whichever chunk the main process was waiting for: the message
    # names the first image of that chunk, which is p021's own chunk or an earlier one, never a
    # later one (then "and the images after it" would not include p021).
    with pytest.raises(WorkerError) as failure:
        list(measure_all(list_images([str(pool_folder)]), ReturnsOddly(how), workers=2))
    found = re.search(message, str(failure.value))
    assert found, str(failure.value)
    assert found["first"] in ("p000", "p016"), str(failure.value)
    assert "\n" not in str(failure.value)

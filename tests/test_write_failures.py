"""Outputs that cannot be written, where users meet them: the real ``chanstats`` command on a real
full file system, a read-only one, a missing folder, /dev/full and a closed pipe.

Each failure is one line naming the path and the reason, exit code 2 (1 is `check`'s drift), and
leaves nothing behind: no output, no temporary file, no run folder. Destinations are checked before
the work starts, and a command writes all its outputs or none.

The full and read-only file systems are small tmpfs mounts; where mounting is not permitted (not
root, no CAP_SYS_ADMIN), those tests are skipped and the /dev/full and missing-folder ones remain.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chanstats.exits import EXIT_BROKEN_PIPE, EXIT_CODES_HELP, EXIT_INPUT_ERROR

from .helpers.cli import chanstats_command
from .helpers.files import write_dataset

FULL = "No space left on device"
READ_ONLY = "Read-only file system"
IMAGES = 6


def chanstats(args: list[str], cwd: Path, env: dict[str, str] | None = None, **popen) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("CHANSTATS_DEBUG", None)
    popen.setdefault("capture_output", True)
    return subprocess.run([*chanstats_command(), *args], cwd=cwd, env=full_env, text=True, timeout=120, **popen)


def mount_tmpfs(folder: Path, options: str) -> None:
    folder.mkdir()
    if not sys.platform.startswith("linux"):
        pytest.skip("tmpfs mounts need Linux")
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here: cannot make a small file system")
    if done.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not permitted here ({done.stderr.strip()})")


def unmount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def full(tmp_path):
    """A 64 KiB file system filled to the last byte (files can still be created, not written)."""
    folder = tmp_path / "full"
    mount_tmpfs(folder, "size=64k")
    try:
        with open(folder / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 4096)
                filler.flush()
    except OSError as error:
        assert error.errno == errno.ENOSPC
    yield folder
    unmount(folder)


@pytest.fixture
def read_only(tmp_path):
    folder = tmp_path / "ro"
    mount_tmpfs(folder, "ro,size=64k")
    yield folder
    unmount(folder)


@pytest.fixture
def data(tmp_path) -> Path:
    write_dataset(tmp_path / "data", count=IMAGES)
    return tmp_path / "data"


def everything_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def assert_one_line(result: subprocess.CompletedProcess, path: str, reason: str) -> None:
    assert result.returncode == EXIT_INPUT_ERROR, result.stderr
    assert result.stderr == f"Error: cannot write {path}: {reason}\n"


# -- a full disk ------------------------------------------------------------------------------


@pytest.mark.parametrize("option, name", [("-o", "out.json"), ("-o", "out.yaml"), ("--partial", "part.json")])
def test_a_full_disk_under_the_output_is_one_line_and_leaves_nothing(tmp_path, data, full, option, name):
    result = chanstats(["compute", str(data), "--workers", "0", "-q", option, f"full/{name}"], tmp_path)
    assert_one_line(result, f"full/{name}", FULL)
    assert everything_under(full) == ["filler"]


def test_a_columns_partial_on_a_full_disk_leaves_neither_header_nor_columns(tmp_path, data, full):
    result = chanstats(["compute", str(data), "--workers", "0", "-q", "--partial", "full/part",
                        "--partial-format", "columns"], tmp_path)
    assert result.returncode == EXIT_INPUT_ERROR
    assert result.stderr.startswith("Error: cannot write full/part") and result.stderr.endswith(f": {FULL}\n")
    assert result.stderr.count("\n") == 1
    assert everything_under(full) == ["filler"]


def test_a_per_image_csv_on_a_full_disk_writes_no_config_either(tmp_path, data, full):
    result = chanstats(["compute", str(data), "--workers", "2", "-q", "-o", "out.json", "--per-image", "full/rows.csv"],
                       tmp_path)
    assert_one_line(result, "full/rows.csv", FULL)
    assert not (tmp_path / "out.json").exists()
    assert everything_under(full) == ["filler"] and not list(tmp_path.glob(".chanstats-*"))


def test_a_checkpoint_on_a_full_disk_is_one_line_and_leaves_no_columns(tmp_path, data, full):
    result = chanstats(["compute", str(data), "--workers", "0", "-q", "-o", "out.json", "--checkpoint", "full/ckpt",
                        "--checkpoint-every", "1"], tmp_path)
    assert result.returncode == EXIT_INPUT_ERROR
    line = result.stderr
    assert line.startswith("Error: cannot write full/ckpt") and line.endswith(f": {FULL}\n") and line.count("\n") == 1
    assert everything_under(full) == ["filler"]
    assert not (tmp_path / "out.json").exists()


@pytest.mark.slow
def test_the_checkpoint_outlives_an_output_that_could_not_be_written(tmp_path, data, full):
    result = chanstats(["compute", str(data), "--workers", "0", "-q", "-o", "full/out.json", "--checkpoint", "ckpt"],
                       tmp_path)
    assert_one_line(result, "full/out.json", FULL)
    # The work is not lost: the checkpoint says every image is done, and a rerun resumes from it.
    assert json.loads((tmp_path / "ckpt").read_text())["done"] == IMAGES
    rerun = chanstats(["compute", str(data), "--workers", "0", "-q", "-o", "out.json", "--checkpoint", "ckpt"], tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    fresh = chanstats(["compute", str(data), "--workers", "0", "-q"], tmp_path)
    assert (tmp_path / "out.json").read_text() == fresh.stdout
    assert not (tmp_path / "ckpt").exists()


def test_a_workdir_on_a_full_disk_says_so_and_leaves_no_listing_or_failure_file(tmp_path, data, full):
    result = chanstats(["compute", str(data), "--workers", "0", "-q", "--workdir", "full/work"], tmp_path)
    assert result.returncode == EXIT_INPUT_ERROR
    assert result.stderr.startswith("Error: cannot write ") and "full/work" in result.stderr
    assert result.stderr.endswith(f": {FULL}\n") and result.stderr.count("\n") == 1
    assert everything_under(full) == ["filler", "work"]  # the folder asked for, empty


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_full_temporary_folder_is_one_line_and_leaves_no_run_folder(tmp_path, data, full, workers):
    # Python passes over a TMPDIR it cannot write a few bytes to: leave it two pages, fewer than
    # the run's column files need.
    os.truncate(full / "filler", (full / "filler").stat().st_size - 8192)
    result = chanstats(["compute", str(data), "--workers", workers, "-q"], tmp_path, env={"TMPDIR": str(full)})
    assert result.returncode == EXIT_INPUT_ERROR
    assert result.stderr.startswith(f"Error: cannot write {full}/chanstats-run-") and result.stderr.endswith(f": {FULL}\n")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert everything_under(full) == ["filler"]


@pytest.mark.slow
def test_merge_compare_and_export_on_a_full_disk(tmp_path, data, full):
    assert chanstats(["compute", str(data), "--workers", "0", "-q", "--partial", "part.json"], tmp_path).returncode == 0
    assert chanstats(["compute", str(data), "--workers", "0", "-q", "-o", "config.json"], tmp_path).returncode == 0
    runs = {
        "full/merged.json": ["merge", "part.json", "-q", "-o", "full/merged.json"],
        "full/runs.csv": ["compare", str(data), "--workers", "0", "--csv", "full/runs.csv"],
        "full/norm.py": ["export", "config.json", "--to", "torchvision", "-o", "full/norm.py"],
    }
    for path, args in runs.items():
        result = chanstats(args, tmp_path)
        assert_one_line(result, path, FULL)
    assert everything_under(full) == ["filler"]


def test_export_on_a_full_disk(tmp_path, data, full):
    assert chanstats(["compute", str(data), "--workers", "0", "-q", "-o", "config.json"], tmp_path).returncode == 0
    result = chanstats(["export", "config.json", "--to", "json", "-o", "full/copy.json"], tmp_path)
    assert_one_line(result, "full/copy.json", FULL)
    assert everything_under(full) == ["filler"]


# -- read-only folders: refused before the work ---------------------------------------------


@pytest.mark.parametrize("args, path", [
    (["-o", "ro/out.json"], "ro/out.json"),
    (["-o", "out.json", "--per-image", "ro/rows.csv"], "ro/rows.csv"),
    (["--partial", "ro/part"], "ro/part"),
    (["-o", "out.json", "--checkpoint", "ro/ckpt"], "ro/ckpt"),
])
def test_a_read_only_destination_is_refused_before_any_image_is_read(tmp_path, data, read_only, args, path):
    # A broken image would fail the run once it is read: the destination is named instead.
    (data / "broken.png").write_bytes(b"not a png")
    result = chanstats(["compute", str(data), "--workers", "0", "-q", *args], tmp_path)
    assert_one_line(result, path, READ_ONLY)
    assert not (tmp_path / "out.json").exists()


def test_a_read_only_workdir_is_one_line(tmp_path, data, read_only):
    result = chanstats(["compute", str(data), "--workers", "0", "-q", "--workdir", "ro/work"], tmp_path)
    assert result.returncode == EXIT_INPUT_ERROR
    assert result.stderr == f"Error: --workdir ro/work: cannot create it: {READ_ONLY}\n"


def test_compare_and_export_refuse_a_read_only_destination_first(tmp_path, data, read_only):
    (tmp_path / "config.json").write_text("not a config")  # would be refused once read
    result = chanstats(["export", "config.json", "--to", "torchvision", "-o", "ro/norm.py"], tmp_path)
    assert_one_line(result, "ro/norm.py", READ_ONLY)
    (data / "broken.png").write_bytes(b"not a png")
    result = chanstats(["compare", str(data), "--workers", "0", "--csv", "ro/runs.csv"], tmp_path)
    assert_one_line(result, "ro/runs.csv", READ_ONLY)


# -- missing folders, folders in the way, one file twice (no mount needed) --------------------


def test_a_missing_per_image_folder_is_found_before_the_work_and_writes_no_config(tmp_path, data):
    (data / "broken.png").write_bytes(b"not a png")
    result = chanstats(["compute", str(data), "--workers", "0", "-q", "-o", "out.json", "--per-image", "missing/rows.csv"],
                       tmp_path)
    assert result.returncode == EXIT_INPUT_ERROR
    assert result.stderr == f"Error: cannot write missing/rows.csv: the folder {tmp_path / 'missing'} does not exist\n"
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("option", ["--report", "--plot"])
def test_check_outputs_are_checked_before_the_recompute(tmp_path, data, option):
    assert chanstats(["compute", str(data), "--workers", "0", "-q", "-o", "config.json"], tmp_path).returncode == 0
    (data / "broken.png").write_bytes(b"not a png")  # would fail the recompute: the destination is named instead
    result = chanstats(["check", str(data), "--against", "config.json", "--workers", "0", "--report", "report.json",
                        option, "missing/out"], tmp_path)
    assert result.returncode == EXIT_INPUT_ERROR
    assert result.stderr == f"Error: cannot write missing/out: the folder {tmp_path / 'missing'} does not exist\n"
    assert not (tmp_path / "report.json").exists()


@pytest.mark.parametrize("args", [["-o", "taken"], ["--partial", "taken"], ["-o", "out.json", "--checkpoint", "taken"],
                                  ["-o", "out.json", "--per-image", "taken"]])
def test_a_folder_in_the_way_is_one_line(tmp_path, data, args):
    (tmp_path / "taken").mkdir()
    result = chanstats(["compute", str(data), "--workers", "0", "-q", *args], tmp_path)
    assert result.returncode == EXIT_INPUT_ERROR
    assert "taken" in result.stderr and "directory" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.json").exists()


def test_a_file_under_a_file_is_refused_up_front(tmp_path, data):
    (tmp_path / "plain").write_text("a file, not a folder")
    result = chanstats(["compute", str(data), "--workers", "0", "-q", "-o", "out.json", "--per-image", "plain/rows.csv"],
                       tmp_path)
    assert result.returncode == EXIT_INPUT_ERROR
    assert result.stderr == f"Error: cannot write plain/rows.csv: the folder {tmp_path / 'plain'} is not a folder\n"
    assert not (tmp_path / "out.json").exists()


def test_two_outputs_naming_one_file_are_refused(tmp_path, data):
    result = chanstats(["compute", str(data), "--workers", "0", "-q", "-o", "same.json", "--per-image", "same.json"],
                       tmp_path)
    assert result.returncode == EXIT_INPUT_ERROR
    assert result.stderr == "Error: cannot write same.json: -o and --per-image both name it\n"
    assert not (tmp_path / "same.json").exists()


def test_the_api_checks_a_partial_destination_before_measuring(tmp_path, data):
    from chanstats import api
    from chanstats.errors import ChanstatsError

    (tmp_path / "taken").mkdir()
    (data / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ChanstatsError, match="^cannot write .*taken: a folder is in the way$"):
        api.compute_shard([str(data)], (1, 1), tmp_path / "taken", workers=0)


# -- standard output ----------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_stdout_on_a_full_device_is_one_line_exit_2(tmp_path, data):
    with open("/dev/full", "w") as device:
        result = chanstats(["compute", str(data), "--workers", "0", "-q"], tmp_path, capture_output=False,
                           stdout=device, stderr=subprocess.PIPE)
    assert (result.returncode, result.stderr) == (EXIT_INPUT_ERROR, f"Error: cannot write standard output: {FULL}\n")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_per_image_csv_is_not_written_when_stdout_fails(tmp_path, data):
    with open("/dev/full", "w") as device:
        result = chanstats(["compute", str(data), "--workers", "0", "-q", "--per-image", "rows.csv"], tmp_path,
                           capture_output=False, stdout=device, stderr=subprocess.PIPE)
    assert result.returncode == EXIT_INPUT_ERROR
    assert not (tmp_path / "rows.csv").exists() and not list(tmp_path.glob(".chanstats-*"))


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_an_output_on_a_full_device_writes_no_other_output(tmp_path, data):
    # No mount needed: /dev/full is written to directly and fails as a full disk does.
    result = chanstats(["compute", str(data), "--workers", "0", "-q", "-o", "/dev/full", "--per-image", "rows.csv"],
                       tmp_path)
    assert_one_line(result, "/dev/full", FULL)
    assert not (tmp_path / "rows.csv").exists() and not list(tmp_path.glob(".chanstats-*"))


def test_every_output_is_left_as_it_was_when_one_cannot_be_written(tmp_path, monkeypatch):
    from chanstats.errors import ChanstatsError
    from chanstats.report import files

    (tmp_path / "a.json").write_text("old a")
    real_fsync = os.fsync
    calls = []

    def fsync_fails_the_second_time(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", fsync_fails_the_second_time)
    with pytest.raises(ChanstatsError) as error:
        files.write_all([(str(tmp_path / "a.json"), "new a"), (str(tmp_path / "b.csv"), "new b")])
    assert str(error.value) == f"cannot write {tmp_path / 'b.csv'}: {FULL}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    assert (tmp_path / "a.json").read_text() == "old a"


def test_a_closed_pipe_ends_quietly_with_exit_141(tmp_path, data):
    env = dict(os.environ)
    env.pop("CHANSTATS_DEBUG", None)
    process = subprocess.Popen([*chanstats_command(), "compute", str(data), "--workers", "0"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader is gone before the config is printed, as `| head -c 10` can be
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == EXIT_BROKEN_PIPE == 141
    assert "Traceback" not in stderr and "Exception ignored" not in stderr and "Error" not in stderr


def test_the_help_lists_every_exit_code(tmp_path):
    result = chanstats(["--help"], tmp_path)
    assert " ".join(EXIT_CODES_HELP.split()) in " ".join(result.stdout.split())
    for code, meaning in [("0", "ok"), ("1", "check failed"), ("2", "usage or input error"),
                          ("130", "interrupted (Ctrl-C)"), ("141", "stdout closed"), ("143", "terminated (SIGTERM)")]:
        assert f"{code} {meaning}" in " ".join(result.stdout.split())

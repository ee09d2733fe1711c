"""Ray: ``--engine ray`` (chanstats' units of work as Ray tasks) and ``ray.data.Dataset`` sources.

A real local Ray cluster of 2 CPUs is started once for the module and shut down at its end; the
two-node cluster and the fault tests (a worker killed mid-run, Ctrl-C) are marked slow. The oracle
is always a run of chanstats in one process (workers=0) on the same data, whose output must be
byte-identical: Ray only schedules.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from chanstats import api
from chanstats.errors import BadImagesError
from chanstats.report.files import dumps

from .helpers.cli import chanstats_command, run_cli
from .helpers.files import write_image
from .helpers.optional import require

# The suite runs each file in one xdist worker (--dist loadfile): one Ray cluster for the module.

OBJECT_STORE_BYTES = 200 * 1024 * 1024
COUNT = 70  # more images than one chunk: several Ray tasks per run


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs for the whole module; its address, for other drivers."""
    ray = require("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES, log_to_driver=False,
             configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def arrays(count: int = COUNT, seed: int = 5) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (6 + k % 5, 7 + k % 3, 3), dtype=np.uint8) for k in range(count)]


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


BROKEN_PNG = png(np.zeros((4, 4, 3), np.uint8))[:40]


def write_folder(root: Path, images: list[np.ndarray], bad: bool = False) -> list[str]:
    for k, array in enumerate(images):
        write_image(root / f"d{k % 3}" / f"{k:03d}.png", array)
    if bad:
        (root / "d1" / "030b.png").write_bytes(BROKEN_PNG)
        (root / "d2" / "050b.jpg").write_bytes(b"not a jpeg")
    return [str(root)]


def write_tars(root: Path, images: list[np.ndarray], bad: bool = False) -> list[str]:
    root.mkdir(parents=True)
    paths = []
    for shard in range(2):
        path = root / f"shard-{shard}.tar"
        with tarfile.open(path, "w") as tar:
            for k in range(shard, len(images), 2):
                data = BROKEN_PNG if bad and k == 33 else png(images[k])
                info = tarfile.TarInfo(f"{k:03d}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        paths.append(str(path))
    return paths


def write_parquet(root: Path, images: list[np.ndarray], bad: bool = False) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True)
    cells = [BROKEN_PNG if bad and k == 33 else png(array) for k, array in enumerate(images)]
    path = root / "table.parquet"
    pq.write_table(pa.table({"image": pa.array(cells, pa.binary())}), path, row_group_size=9)
    return [str(path)]


WRITERS = {"folder": write_folder, "tar shards": write_tars, "parquet table": write_parquet}


def config_text(result) -> str:
    return dumps(result.to_dict(), "json")


@pytest.mark.parametrize("kind", list(WRITERS))
def test_engine_ray_gives_the_bytes_of_one_process(ray_cluster, tmp_path, kind):
    paths = WRITERS[kind](tmp_path / "data", arrays())
    local = api.compute(paths, workers=0, histogram=True)
    on_ray = api.compute(paths, engine="ray", histogram=True)
    assert config_text(on_ray) == config_text(local)
    assert on_ray.images == COUNT


def test_bad_images_are_named_as_in_a_local_run(ray_cluster, tmp_path):
    paths = write_folder(tmp_path / "data", arrays(), bad=True)
    with pytest.raises(BadImagesError) as local:
        api.compute(paths, workers=0)
    with pytest.raises(BadImagesError) as on_ray:
        api.compute(paths, engine="ray")
    assert str(on_ray.value) == str(local.value)
    assert "030b.png" in str(local.value) and "050b.jpg" in str(local.value)
    skipped_local = api.compute(paths, workers=0, on_error="skip")
    skipped_ray = api.compute(paths, engine="ray", on_error="skip")
    assert config_text(skipped_ray) == config_text(skipped_local)
    assert len(skipped_ray.skipped) == 2


def test_check_and_checkpoint_on_ray(ray_cluster, tmp_path):
    paths = write_folder(tmp_path / "data", arrays())
    config = tmp_path / "config.json"
    local = api.compute(paths, workers=0)
    config.write_text(config_text(local))
    report = api.check(config, paths, engine="ray")
    assert report.passed and report.result.mean == local.mean
    checkpoint = tmp_path / "run.ckpt"
    resumed = api.compute(paths, engine="ray", checkpoint=checkpoint, checkpoint_every="10")
    assert config_text(resumed) == config_text(local)
    assert not checkpoint.exists()


def test_the_command_line_on_a_running_cluster(ray_cluster, tmp_path):
    paths = write_tars(tmp_path / "data", arrays())
    local = run_cli("compute", *paths, "--workers", "0", "-q")
    on_ray = run_cli("compute", *paths, "--engine", "ray", "--ray-address", ray_cluster, "-q")
    assert on_ray.returncode == 0, on_ray.stderr
    assert on_ray.stdout == local.stdout
    assert json.loads(on_ray.stdout)["count"]["images"] == COUNT


def test_a_missing_ray_is_one_line_naming_the_extra(tmp_path):
    write_image(tmp_path / "a.png", arrays(1)[0])
    hide_ray = ("import sys; sys.modules['ray'] = None; from chanstats.cli import main; "
                f"sys.argv = ['chanstats', 'compute', {str(tmp_path)!r}, '--engine', 'ray']; main()")
    finished = subprocess.run([sys.executable, "-c", hide_ray], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 2
    assert finished.stdout == ""
    assert finished.stderr.strip().splitlines() == ["Error: Ray is not installed: pip install 'chanstats[ray]'"]


def test_help_and_plain_runs_do_not_import_ray(tmp_path):
    write_image(tmp_path / "a.png", arrays(1)[0])
    probe = ("import sys; from chanstats.cli import main\n"
             "sys.argv = ['chanstats'] + sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('ray' in sys.modules, file=sys.stderr)")
    for args in (["compute", "--help"], ["compute", str(tmp_path), "-q", "--workers", "0"]):
        finished = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120)
        assert finished.stderr.strip().splitlines()[-1] == "False", (args, finished.stderr)


# --- ray.data.Dataset sources ------------------------------------------------------------------

def numbers(result) -> dict:
    """Everything a result says about the pixels: not how the source was named or listed, nor
    ``dtype``, which a config records for pixels given as arrays (by a dataset), not for files."""
    data = result.to_dict()
    return {key: value for key, value in data.items() if key not in ("options", "fingerprint", "dtype")}


def test_a_read_images_dataset_gives_the_numbers_of_the_same_folder(ray_cluster, tmp_path):
    import ray.data

    folder = tmp_path / "images"
    rng = np.random.default_rng(9)
    for k in range(30):
        array = rng.integers(0, 256, (10 + k, 12, 3), dtype=np.uint8)
        write_image(folder / ("sub" if k % 4 == 0 else "") / f"{k:03d}.{'jpg' if k % 2 else 'png'}", array)
    write_image(folder / "grey.png", rng.integers(0, 256, (9, 9), dtype=np.uint8))  # RGB by replication in both
    from_folder = api.compute(str(folder), workers=0, histogram=True)
    dataset = ray.data.read_images(str(folder), mode="RGB")
    from_ray = api.compute(dataset, histogram=True)
    assert numbers(from_ray) == numbers(from_folder)
    assert from_ray.to_dict()["options"]["dataset_kind"] == "Ray Dataset"


def test_a_read_parquet_dataset_of_encoded_images_decodes_them_as_chanstats_does(ray_cluster, tmp_path):
    import ray.data

    (table,) = write_parquet(tmp_path / "data", arrays(50))
    from_table = api.compute(table, workers=0, histogram=True)
    from_ray = api.compute(ray.data.read_parquet(table), key="image", histogram=True)
    assert numbers(from_ray) == numbers(from_table)


def test_a_dataset_of_arrays_against_numpy_with_a_bad_sample_named(ray_cluster):
    import ray.data

    images = arrays(40, seed=3)
    rows = [{"image": array} for array in images]
    rows.insert(17, {"image": np.zeros((2, 2, 2, 2), np.uint8)})  # four dimensions: not an image
    dataset = ray.data.from_items(rows)
    with pytest.raises(BadImagesError, match=r"ray\.data\.Dataset::sample 17"):
        api.compute(dataset)
    result = api.compute(dataset, on_error="skip")
    pixels = np.concatenate([a.reshape(-1, 3) for a in images]).astype(np.int64)
    assert result.mean == [float(s) / (len(pixels) * 255) for s in pixels.sum(axis=0)]
    np.testing.assert_allclose(result.std, (pixels / 255).std(axis=0), rtol=1e-12)
    assert result.images == 40 and [name for name, _ in result.skipped] == ["ray.data.Dataset::sample 17"]


# --- faults and clusters (slow) ------------------------------------------------------------------

SLOW_TRANSFORM = '''
import time

def slow(image):
    time.sleep(0.05)  # keeps each Ray task busy long enough to be killed mid-way
    return image
'''


def _task_processes() -> list[int]:
    """Process ids of Ray workers now running chanstats' measuring task (Ray titles them ray::NAME)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as stream:
                    if stream.read().startswith(b"ray::_measure_unit"):
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_run_changes_nothing(ray_cluster, tmp_path):
    paths = write_folder(tmp_path / "data", arrays(120))
    (tmp_path / "slow.py").write_text(SLOW_TRANSFORM)
    transform = f"{tmp_path / 'slow.py'}:slow"
    local = api.compute(paths, workers=0, transform=transform)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = api.compute(paths, engine="ray", transform=transform)
        except BaseException as error:  # handed to the test's thread
            outcome["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.monotonic() + 60
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        busy = _task_processes()
        if busy:
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    thread.join(120)
    assert killed is not None, "no Ray task was seen running"
    assert "error" not in outcome, outcome.get("error")
    assert config_text(outcome["result"]) == config_text(local)


@pytest.mark.slow
def test_ctrl_c_cancels_the_tasks_and_writes_nothing(ray_cluster, tmp_path):
    paths = write_folder(tmp_path / "data", arrays(200))
    output = tmp_path / "out.json"
    env = dict(os.environ, CHANSTATS_TEST_DELAY_PER_IMAGE="0.05")
    process = subprocess.Popen([*chanstats_command(), "compute", *paths, "--engine", "ray", "--ray-address", ray_cluster,
                                "-o", str(output), "-q"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    time.sleep(8)  # connected and measuring: the delay makes the run last ~10 s
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "Interrupted"
    assert not output.exists()
    deadline = time.monotonic() + 20
    while _task_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _task_processes() == []


@pytest.mark.slow
def test_a_killed_driver_resumes_its_checkpoint_on_ray(ray_cluster, tmp_path):
    paths = write_folder(tmp_path / "data", arrays(200))
    output, checkpoint = tmp_path / "out.json", tmp_path / "run.ckpt"
    command = [*chanstats_command(), "compute", *paths, "--engine", "ray", "--ray-address", ray_cluster, "-o",
               str(output), "-q", "--checkpoint", str(checkpoint), "--checkpoint-every", "10"]
    slow = dict(os.environ, CHANSTATS_TEST_DELAY_PER_IMAGE="0.05")
    process = subprocess.Popen(command, env=slow, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1)
    process.kill()  # kill -9: nothing is cleaned up but what the kernel and Ray do
    process.wait(30)
    saved = json.loads(checkpoint.read_text())["done"]
    assert 0 < saved < 200 and not output.exists()
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    local = run_cli("compute", *paths, "--workers", "0", "-q")
    assert output.read_text() == local.stdout
    assert not checkpoint.exists()


@pytest.mark.slow
def test_a_two_node_cluster_gives_the_bytes_of_one_process(tmp_path):
    require("ray")
    from ray.cluster_utils import Cluster

    paths = write_parquet(tmp_path / "data", arrays(90))
    local = run_cli("compute", *paths, "--workers", "0", "-q")
    cluster = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, include_dashboard=False,
                                                                object_store_memory=OBJECT_STORE_BYTES))
    try:
        cluster.add_node(num_cpus=1, object_store_memory=OBJECT_STORE_BYTES)
        cluster.wait_for_nodes()
        on_ray = run_cli("compute", *paths, "--engine", "ray", "--ray-address", cluster.address, "-q")
    finally:
        cluster.shutdown()
    assert on_ray.returncode == 0, on_ray.stderr
    assert on_ray.stdout == local.stdout

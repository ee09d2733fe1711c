"""Data in object storage and over HTTP, against real servers started here on 127.0.0.1: moto's S3
server, a plain HTTP file server, and a fault-injecting proxy in front of them.

The oracle of every result is the same run on the same files on local disk: the configs must be
byte-identical but for the two fields that name where the data is (``fingerprint``, which holds
the objects' ETags, and ``options.inputs``).
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.cli import run
from tests.helpers.files import random_rgb, write_image
from tests.helpers.object_servers import ACCESS_KEY, SECRET_KEY, FaultProxy, HttpFileServer, MotoServer

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")
pytest.importorskip("aiohttp")

BUCKET = "data"


def _write_tree(root: Path, count: int = 36) -> None:
    """``count`` small images in nested folders, plus a hidden file and a non-image to leave out."""
    rng = np.random.default_rng(22)
    for i in range(count):
        array = random_rgb(rng, 6 + i % 5, 9 - i % 4, low=5 * (i % 7), high=180 + i)
        folder = ("a", "a/b", "a-b", "z")[i % 4]
        write_image(root / "tree" / folder / f"img{i:03d}.{'png' if i % 3 else 'jpg'}", array, quality=90)
    write_image(root / "tree" / ".hidden" / "x.png", np.zeros((4, 4, 3), np.uint8))
    (root / "tree" / "notes.txt").write_text("not an image")


def _write_shards(root: Path, shards: int = 3, per_shard: int = 8) -> None:
    rng = np.random.default_rng(23)
    (root / "shards").mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        with tarfile.open(root / "shards" / f"train-{s:03d}.tar", "w", format=tarfile.USTAR_FORMAT) as archive:
            for m in range(per_shard):
                buffer = io.BytesIO()
                from PIL import Image

                Image.fromarray(random_rgb(rng, 7, 5 + m % 3)).save(buffer, format="PNG")
                info = tarfile.TarInfo(f"sample{s}{m:02d}.png")
                info.size = len(buffer.getvalue())
                archive.addfile(info, io.BytesIO(buffer.getvalue()))
                meta = tarfile.TarInfo(f"sample{s}{m:02d}.json")
                meta.size = 2
                archive.addfile(meta, io.BytesIO(b"{}"))


def _write_table(root: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(24)
    cells = []
    for i in range(12):
        buffer = io.BytesIO()
        Image.fromarray(random_rgb(rng, 5 + i % 3, 6)).save(buffer, format="PNG")
        cells.append({"bytes": buffer.getvalue(), "path": None})
    table = pa.table({"image": cells, "label": list(range(12))})
    pq.write_table(table, root / "table.parquet", row_group_size=4)


@pytest.fixture(scope="module")
def local_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("local")
    _write_tree(root)
    _write_shards(root)
    _write_table(root)
    import gzip

    (root / "shards" / "train-001.tar.gz").write_bytes(gzip.compress((root / "shards" / "train-001.tar").read_bytes()))
    # Relative entries: resolved against the list file's own folder, local or in the bucket.
    (root / "list.txt").write_text("# a list of its neighbours\ntree/a/img004.png\ntree/z\nshards/train-001.tar.gz\n")
    return root


@pytest.fixture(scope="module")
def moto(local_data: Path):
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    patch = pytest.MonkeyPatch()
    patch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    patch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        patch.delenv(name, raising=False)
    with MotoServer() as server:
        server.upload_tree(BUCKET, local_data)
        patch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        yield server
    patch.undo()


@pytest.fixture(scope="module")
def http_server(local_data: Path):
    with HttpFileServer(local_data) as server:
        yield server


@pytest.fixture
def proxy(moto: MotoServer, monkeypatch):
    """The fault-injecting proxy in front of the S3 server, which the runs then talk to."""
    with FaultProxy(moto.endpoint) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        yield server


def _compute(args: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None):
    return run(["compute", "-q", *args], cwd, env=env, check=check)


def _same_but_location(local_text: str, remote_text: str, inputs: dict[str, str]) -> None:
    """``remote_text`` is ``local_text`` byte for byte once its fingerprint and its recorded
    inputs (``inputs``: remote → local, as recorded) are put back."""
    local, remote = json.loads(local_text), json.loads(remote_text)
    assert remote["fingerprint"] != local["fingerprint"]  # ETags are in it
    text = remote_text.replace(remote["fingerprint"], local["fingerprint"])
    for remote_input, local_input in inputs.items():
        text = text.replace(json.dumps(remote_input), json.dumps(local_input))
    assert text == local_text


def test_prefix_of_s3_bucket_is_measured_as_the_local_folder(moto, local_data, tmp_path, engine):
    local = _compute([str(local_data / "tree"), *engine.options], tmp_path).stdout
    remote = _compute([f"s3://{BUCKET}/tree", *engine.options], tmp_path).stdout
    assert json.loads(remote)["count"]["images"] == 36  # the hidden folder and the text file left out
    _same_but_location(local, remote, {f"s3://{BUCKET}/tree": str(local_data / "tree")})


def test_tar_shard_pattern_and_parquet_objects_on_s3(moto, local_data, tmp_path):
    pattern, table = "shards/train-{000..002}.tar", "table.parquet"
    local = _compute([str(local_data / pattern), str(local_data / table), "--workers", "2"], tmp_path).stdout
    remote = _compute([f"s3://{BUCKET}/{pattern}", f"s3://{BUCKET}/{table}", "--workers", "2"], tmp_path).stdout
    assert json.loads(remote)["count"]["images"] == 3 * 8 + 12
    _same_but_location(local, remote, {f"s3://{BUCKET}/{pattern}": str(local_data / pattern),
                                       f"s3://{BUCKET}/{table}": str(local_data / table)})


def test_list_file_mixing_local_paths_and_http_urls(http_server, local_data, tmp_path):
    names = sorted(p.relative_to(local_data).as_posix() for p in (local_data / "tree").rglob("*.png")
                   if ".hidden" not in p.parts and "z" not in p.parts)
    remote_list, local_list = tmp_path / "remote.txt", tmp_path / "local.txt"
    # Every other line a URL: the same files, in the same order; then a folder served over HTTP
    # (its index pages are followed; the hidden folder and the text file are left out).
    remote_list.write_text("\n".join(f"{http_server.url}/{n}" if i % 2 else str(local_data / n)
                                     for i, n in enumerate(names)) + f"\n{http_server.url}/tree/z\n")
    local_list.write_text("\n".join(str(local_data / n) for n in names) + f"\n{local_data / 'tree/z'}\n")
    remote = _compute([f"@{remote_list}", f"{http_server.url}/shards/train-{{000..001}}.tar"], tmp_path).stdout
    local = _compute([f"@{local_list}", str(local_data / "shards/train-{000..001}.tar")], tmp_path).stdout
    assert json.loads(remote)["count"]["images"] == 18 + 9 + 2 * 8
    _same_but_location(local, remote, {f"@{remote_list}": f"@{local_list}",
                                       f"{http_server.url}/shards/train-{{000..001}}.tar":
                                           str(local_data / "shards/train-{000..001}.tar")})


def test_list_file_that_is_an_object_and_a_gzip_shard(moto, local_data, tmp_path):
    local = _compute([f"@{local_data / 'list.txt'}", "--workers", "2"], tmp_path).stdout
    remote = _compute([f"@s3://{BUCKET}/list.txt", "--workers", "2"], tmp_path).stdout
    assert json.loads(remote)["count"]["images"] == 1 + 9 + 8
    _same_but_location(local, remote, {f"@s3://{BUCKET}/list.txt": f"@{local_data / 'list.txt'}"})


@pytest.mark.slow
def test_raster_object_with_mode_keep(moto, tmp_path):
    raster = Path(__file__).resolve().parents[1] / "examples" / "rasters" / "tile.tif"
    moto.client().put_object(Bucket=BUCKET, Key="rasters/tile.tif", Body=raster.read_bytes())
    local = _compute([str(raster), "--mode", "keep"], tmp_path).stdout
    remote = _compute([f"s3://{BUCKET}/rasters/tile.tif", "--mode", "keep"], tmp_path).stdout
    _same_but_location(local, remote, {f"s3://{BUCKET}/rasters/tile.tif": str(raster)})


def test_a_prefix_is_listed_a_page_at_a_time(proxy, local_data, monkeypatch):
    import chanstats
    from chanstats.sources import storage

    monkeypatch.setattr(storage, "PAGE_KEYS", 5)
    before = proxy.faults.requests
    remote = chanstats.compute(f"s3://{BUCKET}/tree", workers=0)
    local = chanstats.compute(str(local_data / "tree"), workers=0)
    pages = proxy.faults.requests - before - 36 - 2  # a GET per image; a HEAD and a probe of the prefix
    assert pages == 8  # 38 keys (with the hidden and the text object) in pages of 5
    assert remote.dumps().replace(remote.fingerprint, local.fingerprint).replace(
        json.dumps(f"s3://{BUCKET}/tree"), json.dumps(str(local_data / "tree"))) == local.dumps()


def test_fingerprint_changes_with_the_etag_not_only_the_size(moto, tmp_path):
    import chanstats

    client = moto.client()
    image = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.full((4, 4, 3), 10, np.uint8)).save(image, format="BMP")  # fixed size
    client.put_object(Bucket=BUCKET, Key="one/a.bmp", Body=image.getvalue())
    first = chanstats.compute(f"s3://{BUCKET}/one", workers=0).fingerprint
    Image.fromarray(np.full((4, 4, 3), 99, np.uint8)).save(changed := io.BytesIO(), format="BMP")
    assert len(changed.getvalue()) == len(image.getvalue())
    client.put_object(Bucket=BUCKET, Key="one/a.bmp", Body=changed.getvalue())
    second = chanstats.compute(f"s3://{BUCKET}/one", workers=0).fingerprint
    assert first != second


def test_a_url_whose_package_is_missing_names_the_extra(tmp_path):
    # gcsfs is not a test dependency: the message is what a user without it sees.
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed")
    except ImportError:
        pass
    result = _compute(["gs://bucket/train"], tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Error: gs://bucket/train: reading gs:// needs gcsfs: pip install 'chanstats[gcs]'"]


def test_a_password_inside_a_url_is_refused_without_being_shown(tmp_path):
    result = _compute(["https://user:pw-Secret-99@127.0.0.1:9/data/a.png"], tmp_path, check=False)
    assert result.returncode == 2
    assert "pw-Secret-99" not in result.stderr + result.stdout
    assert result.stderr.strip().splitlines() == [
        "Error: https://user:***@127.0.0.1:9/data/a.png: a password inside a URL would be written to the outputs; "
        "give it as --storage-option headers.Authorization=... or in the environment instead"]


def test_missing_object_and_access_denied_are_one_line(proxy, tmp_path):
    missing = _compute([f"s3://{BUCKET}/no/such/thing.png"], tmp_path, check=False)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [f"Error: s3://{BUCKET}/no/such/thing.png: no such object or prefix"]
    proxy.faults.denied.add(f"/{BUCKET}/tree/z/img003.png")
    denied = _compute([f"s3://{BUCKET}/tree/z/img003.png"], tmp_path, check=False)
    assert denied.returncode == 2
    lines = denied.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: s3://{BUCKET}/tree/z/img003.png: access denied"), lines


def test_retries_give_the_same_bytes_through_resets_and_503s(proxy, moto, local_data, tmp_path):
    local = _compute([str(local_data / "tree/z"), str(local_data / "shards/train-000.tar")], tmp_path).stdout
    proxy.faults.fail_every, proxy.faults.drop_every = 3, 4
    remote = _compute([f"s3://{BUCKET}/tree/z", f"s3://{BUCKET}/shards/train-000.tar"], tmp_path).stdout
    assert proxy.faults.failed >= 2 and proxy.faults.dropped >= 2
    _same_but_location(local, remote, {f"s3://{BUCKET}/tree/z": str(local_data / "tree/z"),
                                       f"s3://{BUCKET}/shards/train-000.tar": str(local_data / "shards/train-000.tar")})


@pytest.mark.slow
def test_retries_through_the_worker_pool(proxy, moto, local_data, tmp_path):
    local = _compute([str(local_data / "tree"), str(local_data / "shards/train-{000..002}.tar"), "--workers", "2"],
                     tmp_path).stdout
    proxy.faults.fail_every, proxy.faults.drop_every = 3, 4
    remote = _compute([f"s3://{BUCKET}/tree", f"s3://{BUCKET}/shards/train-{{000..002}}.tar", "--workers", "2"],
                      tmp_path).stdout
    assert proxy.faults.failed > 3 and proxy.faults.dropped > 3
    _same_but_location(local, remote, {f"s3://{BUCKET}/tree": str(local_data / "tree"),
                                       f"s3://{BUCKET}/shards/train-{{000..002}}.tar":
                                           str(local_data / "shards/train-{000..002}.tar")})


def test_an_exhausted_retry_budget_is_one_line_and_exit_2(proxy, tmp_path):
    proxy.faults.always_fail = True
    result = _compute([f"s3://{BUCKET}/tree", "--storage-option", "retries=2"], tmp_path, check=False)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"Error: s3://{BUCKET}/tree: still failing after 3 attempts (HTTP 503"), lines
    assert proxy.faults.requests == 3
    assert result.stdout == ""


@pytest.mark.parametrize("workers", [0, 2])
def test_objects_that_vanish_or_change_after_listing_are_named_bad_images(moto, proxy, workers):
    import chanstats
    from chanstats.api import finalize, measure, plan
    from chanstats.options import RunOptions

    client = moto.client()
    rng = np.random.default_rng(5)
    for i in range(24):  # more than one chunk of work
        buffer = io.BytesIO()
        from PIL import Image

        Image.fromarray(random_rgb(rng, 5, 5)).save(buffer, format="BMP")
        client.put_object(Bucket=BUCKET, Key=f"moving{workers}/{i:02d}.bmp", Body=buffer.getvalue())
    run_plan = plan(f"s3://{BUCKET}/moving{workers}", RunOptions(on_error="skip"))
    client.delete_object(Bucket=BUCKET, Key=f"moving{workers}/03.bmp")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(same_size := io.BytesIO(), format="BMP")
    client.put_object(Bucket=BUCKET, Key=f"moving{workers}/20.bmp", Body=same_size.getvalue())
    result = finalize(measure(run_plan, workers=workers))
    skipped = dict(result.skipped)
    assert set(skipped) == {f"s3://{BUCKET}/moving{workers}/03.bmp", f"s3://{BUCKET}/moving{workers}/20.bmp"}
    assert "vanished since listing" in skipped[f"s3://{BUCKET}/moving{workers}/03.bmp"]
    assert "changed since listing" in skipped[f"s3://{BUCKET}/moving{workers}/20.bmp"]
    assert result.images == 22
    del chanstats


@pytest.mark.parametrize("workers", [0, 2])
def test_a_shard_that_changes_after_listing_gives_bad_members_not_mixed_bytes(moto, local_data, workers):
    from chanstats.api import finalize, measure, plan
    from chanstats.options import RunOptions

    client = moto.client()
    shards = local_data / "shards"
    key = f"moving-shards{workers}/train.tar"
    client.put_object(Bucket=BUCKET, Key=key, Body=(shards / "train-000.tar").read_bytes())
    # More members than the engine measures in-process: with workers, forked workers read them.
    run_plan = plan([f"s3://{BUCKET}/shards/train-001.tar", f"s3://{BUCKET}/{key}", f"s3://{BUCKET}/shards/train-002.tar"],
                    RunOptions(on_error="skip"))
    client.put_object(Bucket=BUCKET, Key=key, Body=(shards / "train-001.tar").read_bytes())
    result = finalize(measure(run_plan, workers=workers))
    assert len(result.skipped) == 8 and result.images == 16
    for path, error in result.skipped:
        assert path.startswith(f"s3://{BUCKET}/{key}::") and "the shard changed since listing" in error


def test_no_secret_is_written_or_printed(moto, proxy, local_data, tmp_path):
    token = "chanstats-session-token-Pq2!leak"
    env = {"AWS_SESSION_TOKEN": token}
    out = tmp_path / "out"
    out.mkdir()
    options = ["--storage-option", f"key={ACCESS_KEY}", "--storage-option", f"secret={SECRET_KEY}",
               "--storage-option", f"token={token}"]
    ok = _compute([f"s3://{BUCKET}/tree/z", *options, "-o", str(out / "config.json"), "--per-image", str(out / "rows.csv"),
                   "--workdir", str(out / "work"), "--listing"], tmp_path, env=env)
    part = _compute([f"s3://{BUCKET}/tree/z", *options, "--shard", "1/2", "--partial", str(out / "part1.json"),
                     "--workdir", str(out / "work")], tmp_path, env=env)
    proxy.faults.always_fail = True
    failed = _compute([f"s3://{BUCKET}/tree", *options, "--storage-option", "retries=0",
                       "--checkpoint", str(out / "ck.json")], tmp_path, env=env, check=False)
    assert failed.returncode == 2
    texts = [ok.stdout, ok.stderr, part.stdout, part.stderr, failed.stdout, failed.stderr]
    files = [path for path in out.rglob("*") if path.is_file()]
    assert len(files) >= 3
    for secret in (ACCESS_KEY, SECRET_KEY, token):
        assert not any(secret in text for text in texts)
        for path in files:
            assert secret.encode() not in path.read_bytes(), path


@pytest.mark.slow
def test_shards_merge_checkpoint_and_check_with_remote_data_and_local_state(moto, proxy, tmp_path):
    single = _compute([f"s3://{BUCKET}/tree", "--workers", "2"], tmp_path).stdout
    for k in (1, 2):
        _compute([f"s3://{BUCKET}/tree", "--shard", f"{k}/2", "--partial", str(tmp_path / f"p{k}.json"),
                  "--workers", "2"], tmp_path)
    merged = run(["merge", str(tmp_path / "p1.json"), str(tmp_path / "p2.json")], tmp_path).stdout
    assert merged == single
    # The store fails for good half-way through: the checkpoint keeps what was measured, and the
    # rerun resumes from it.
    checkpoint = tmp_path / "ck.json"
    proxy.faults.fail_after = proxy.faults.requests + 25
    failed = _compute([f"s3://{BUCKET}/tree", "--checkpoint", str(checkpoint), "--checkpoint-every", "4",
                       "--workers", "0", "--storage-option", "retries=0"], tmp_path, check=False)
    assert failed.returncode == 2 and "still failing after 1 attempts" in failed.stderr
    assert checkpoint.exists()
    proxy.faults.fail_after = 0
    before = proxy.faults.requests
    resumed = _compute([f"s3://{BUCKET}/tree", "--checkpoint", str(checkpoint), "--workers", "0"], tmp_path).stdout
    assert resumed == single
    assert proxy.faults.requests - before < 36  # not every object read again
    (tmp_path / "config.json").write_text(single)
    assert run(["check", "--against", str(tmp_path / "config.json")], tmp_path).returncode == 0


@pytest.mark.slow
def test_latency_of_50_ms_per_request_gives_the_same_result(proxy, local_data, tmp_path):
    local = _compute([str(local_data / "tree"), str(local_data / "shards/train-{000..002}.tar")], tmp_path).stdout
    proxy.faults.delay = 0.05
    remote = _compute([f"s3://{BUCKET}/tree", f"s3://{BUCKET}/shards/train-{{000..002}}.tar"], tmp_path).stdout
    _same_but_location(local, remote, {f"s3://{BUCKET}/tree": str(local_data / "tree"),
                                       f"s3://{BUCKET}/shards/train-{{000..002}}.tar":
                                           str(local_data / "shards/train-{000..002}.tar")})



def test_the_storage_benchmark_starts():
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "bench/storage.py", "--help"], cwd=repo, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--latency" in result.stdout

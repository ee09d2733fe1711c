"""``torchrun --nproc-per-node 2 -m chanstats compute ... --distributed``: same bytes as one process.

Two real processes on the loopback interface with the gloo backend. torch's import alone takes
seconds per process, hence the slow mark (the test still runs in CI).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from .helpers.cli import run
from .helpers.files import make_dataset

OPTIONS = ["--batch-size", "3", "--workers", "0", "-q"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(root, args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "chanstats", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_torchrun_two_ranks_is_byte_identical_to_single_process(tmp_path):
    make_dataset(tmp_path, count=11, corrupt=1)
    options = [*OPTIONS, "--on-error", "skip"]
    run(["compute", "data", "-o", "single.json", *options], cwd=tmp_path)
    result = torchrun(tmp_path, ["compute", "data", "--distributed", "-o", "dist.json",
                                 "--checkpoint", "ckpt-{rank}.json", *options])
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "dist.json").read_bytes() == (tmp_path / "single.json").read_bytes()
    assert not list(tmp_path.glob("ckpt-*.json"))  # each rank's checkpoint is gone after success

    # a bad image under --on-error fail: one clear message from rank 0, every rank exits non-zero
    failed = torchrun(tmp_path, ["compute", "data", "--distributed", "-o", "fail.json", *OPTIONS])
    assert failed.returncode != 0
    assert "bad0.png" in failed.stderr and not (tmp_path / "fail.json").exists()


def test_distributed_outside_torchrun_is_a_clear_error(tmp_path):
    make_dataset(tmp_path, count=2)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    result = subprocess.run([sys.executable, "-m", "chanstats", "compute", "data", "--distributed", "-q"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "needs torchrun" in result.stderr and "Traceback" not in result.stderr


def test_plain_compute_does_not_import_torch(tmp_path):
    make_dataset(tmp_path, count=2)
    code = ("import sys; from chanstats.cli import main; sys.argv = ['chanstats', 'compute', 'data', '-q', '--workers', '0'];\n"
            "try: main()\nexcept SystemExit: pass\nassert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

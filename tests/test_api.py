"""The public Python API: every command is one call, and gives what the command gives."""

from __future__ import annotations

import inspect
import json

import pytest

import chanstats
from chanstats.errors import BadSpecError

from .helpers.cli import run_cli
from .helpers.files import EXAMPLES, make_dataset
from .helpers.oracles import exact_mean_std


def test_compute_shows_its_options_and_names_itself_on_a_typo():
    parameters = inspect.signature(chanstats.compute).parameters
    assert {"options", "workers", "checkpoint"} <= set(parameters)
    assert set(chanstats.RunOptions.names()) <= set(parameters)  # help() lists every option
    with pytest.raises(TypeError, match=r"compute\(\) got an unexpected keyword argument 'batch_sise'"):
        chanstats.compute(str(EXAMPLES), workers=0, batch_sise=3)


def test_options_object_and_keywords_give_the_command_s_bytes(tmp_path):
    command = run_cli("compute", str(EXAMPLES), "-q", "--workers", "0", "--mode", "L", "--batch-size", "2")
    assert command.returncode == 0, command.stderr
    options = chanstats.RunOptions(mode="L")
    assert chanstats.compute(str(EXAMPLES), options, batch_size=2, workers=0).dumps() == command.stdout
    assert chanstats.compute(EXAMPLES, mode="L", batch_size=2, workers=0).dumps() == command.stdout  # a Path
    assert options.mode == "L" and chanstats.RunOptions().mode == "RGB"  # frozen: overrides made a copy


def test_record_round_trips_through_from_record():
    config = chanstats.compute(str(EXAMPLES), workers=0, seed=3, momentum="none").to_dict()
    options = chanstats.RunOptions.from_record(config["options"])
    assert options.to_record(config["options"]["inputs"]) == config["options"]
    with pytest.raises(BadSpecError, match="not known to this chanstats version"):
        chanstats.RunOptions.from_record({**config["options"], "gamma": 2})


def test_shard_merge_check_compare_export_through_the_api(tmp_path):
    data = make_dataset(tmp_path, count=40)
    single = chanstats.compute(str(data), workers=2)
    parts = [tmp_path / f"part-{k}.json" for k in (1, 2, 3)]
    for k, part in enumerate(parts, start=1):
        chanstats.compute_shard(str(data), (k, 3), part, workers=2 if k == 2 else 0)
    merged = chanstats.merge(list(reversed(parts)))
    assert merged.dumps() == single.dumps()

    config = tmp_path / "config.json"
    single.write(str(config))
    report = chanstats.check(config, workers=2)
    assert report.passed and report.result.dumps() == single.dumps()

    comparison = chanstats.compare(str(data), batch_sizes=[4, 8], momenta=[0.1, "none"], workers=0)
    assert len(comparison.to_csv().splitlines()) == 1 + 2 * 2 * 3  # header + combinations × channels

    mean, std = exact_mean_std(sorted(p for p in data.rglob("*") if p.is_file()))
    exported = json.loads(chanstats.export(config, "timm"))
    assert exported["mean"] == pytest.approx(list(mean), abs=1e-12)
    assert exported["std"] == pytest.approx(list(std), abs=1e-12)

"""Options are typed from resolving on, and the command line takes every default and choice list
from :mod:`chanstats.options`: one place, so the two cannot drift apart."""

from __future__ import annotations

import click
import pytest

from chanstats import cli
from chanstats.options import (
    BATCHES,
    CONVENTION_NAMES,
    DEFAULTS,
    LAYOUTS,
    ON_ERROR,
    RecordedOptions,
    RunOptions,
)
from chanstats.decoding.formats import MODES


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {param.name: param for param in command.params}


def test_the_convention_names_are_the_simulations_conventions():
    from chanstats.stats.batchnorm import CONVENTIONS

    assert CONVENTION_NAMES == tuple(CONVENTIONS)


@pytest.mark.parametrize("flag, option", [("mode", "mode"), ("batch_size", "batch_size"), ("momentum", "momentum"),
                                          ("convention", "convention"), ("seed", "seed"), ("on_error", "on_error"),
                                          ("epochs", "epochs"), ("percentiles", "percentiles"), ("layout", "layout"),
                                          ("batches", "batches")])
def test_compute_flags_default_to_the_options_defaults(flag, option):
    assert _params(cli.compute)[flag].default == getattr(RunOptions(), option) == getattr(DEFAULTS, option)


@pytest.mark.parametrize("flag, choices", [("mode", MODES), ("convention", CONVENTION_NAMES), ("on_error", ON_ERROR),
                                           ("layout", LAYOUTS), ("batches", BATCHES)])
def test_compute_choices_are_the_options_choices(flag, choices):
    assert tuple(_params(cli.compute)[flag].type.choices) == tuple(choices)


def test_export_offers_every_format_the_exporter_renders():
    from chanstats.report import export

    assert tuple(_params(cli.export)["fmt"].type.choices) == tuple(export.EXPORTERS)


def test_a_record_reads_back_typed():
    record = RunOptions(on_error="skip", max_bad="2%", epochs=3, sample="50%", percentiles="1,99.5",
                        nodata="0").to_record(["data"])
    recorded = RecordedOptions.parse(record)
    assert (recorded.on_error, str(recorded.budget), recorded.epochs) == ("skip", "2%", 3)
    assert str(recorded.sample) == "50%" and recorded.percentiles == (1, 99.5) and recorded.nodata == "0"
    assert recorded.settings.convention == "torch" and recorded.settings.batch_size == 64


def test_a_default_record_reads_back_with_the_defaults():
    recorded = RecordedOptions.parse(RunOptions().to_record(["data"]))
    assert recorded.percentiles == (0.5, 1, 2, 50, 98, 99, 99.5)
    assert recorded.sample is None and recorded.budget is None and recorded.nodata is None and recorded.epochs == 1


def test_resolved_options_are_frozen():
    resolved = RunOptions().resolve(["data"])
    with pytest.raises(AttributeError):
        resolved.settings = None  # type: ignore[misc]
    extended = resolved.recording(dataset="x", dataset_kind="map-style dataset")
    assert "dataset" not in resolved.record and extended.record["dataset"] == "x"

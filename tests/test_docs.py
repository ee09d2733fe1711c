"""The README keeps its promises, and every command explains itself."""

from __future__ import annotations

import re
from pathlib import Path

import click
from click.testing import CliRunner

from chanstats.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_has_the_two_setup_commands():
    assert "pip install . && chanstats compute examples/images" in README
    assert 'pip install -e ".[test]" && pytest' in README


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert 'pip install -e ".[test]" && pytest' in ci.splitlines()


def test_examples_ship_real_photographs_with_a_licence():
    images = [p for p in (ROOT / "examples" / "images").iterdir() if p.suffix in (".png", ".jpg")]
    assert len(images) >= 3 and {p.suffix for p in images} == {".png", ".jpg"}
    assert sum(p.stat().st_size for p in images) < 1_000_000
    licence = (ROOT / "examples" / "LICENSE.md").read_text(encoding="utf-8")
    for image in images:
        assert image.name in licence


def test_every_command_and_option_has_help():
    assert cli.help
    for name, command in cli.commands.items():
        assert command.help, f"{name} has no help"
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help"
        result = CliRunner().invoke(cli, [name, "--help"])
        assert result.exit_code == 0


def test_readme_mentions_every_command():
    for name in cli.commands:
        assert re.search(rf"chanstats {name}\b", README), f"README does not mention chanstats {name}"

"""`--help` shows every option under one heading, and errors stay click's plain lines."""

from __future__ import annotations

import re

import click
import pytest
from click.testing import CliRunner

from chanstats.cli import cli
from chanstats.cli_help import COMMAND_SECTIONS, OPTION_GROUPS, GroupedCommand, grouping_problems, option_name
from tests.helpers.cli import run_cli


def test_every_option_of_every_command_is_in_exactly_one_group():
    assert set(OPTION_GROUPS) == set(cli.commands)
    for name, command in cli.commands.items():
        assert grouping_problems(name, command.params) == [], name
        declared = sorted(max(p.opts, key=len) for p in command.params if isinstance(p, click.Option))
        grouped = [option for _, options in OPTION_GROUPS[name] for option in options if option != "--help"]
        assert sorted(grouped) == declared, name
        assert sum(options.count("--help") for _, options in OPTION_GROUPS[name]) == 1, name


def test_every_command_is_in_exactly_one_section():
    listed = [command for _, commands in COMMAND_SECTIONS for command in commands]
    assert sorted(listed) == sorted(cli.commands)


def test_an_option_without_a_group_is_a_problem_and_shown_under_other_options():
    params = [click.Option(["--new-option"], help="Added without a group.")]
    assert grouping_problems("show", params) == ["chanstats show --new-option: in no group",
                                                 "chanstats show --plot: no such option"]
    assert grouping_problems("merge", params) == ["chanstats merge --new-option: in no group"] + [
        f"chanstats merge {name}: no such option" for name in ["--format", "--output", "--per-image", "--quiet", "--workdir"]]
    assert grouping_problems("not-a-command", []) == ["chanstats not-a-command has no entry in OPTION_GROUPS"]
    command = GroupedCommand(name="check", params=[*cli.commands["check"].params, *params], help="x")
    text = CliRunner().invoke(click.Group(commands=[command]), ["check", "--help"]).output
    assert sections(text) == {heading: options for heading, options in OPTION_GROUPS["check"]} | {
        "Other options": ["--new-option"]}


def sections(help_text: str) -> dict[str, list[str]]:
    """Heading → the option names listed under it, read from the help text."""
    found: dict[str, list[str]] = {}
    heading = None
    for line in help_text.splitlines():
        if re.fullmatch(r"[A-Z][^:]*:", line):
            heading = line[:-1]
            found[heading] = []
        elif heading and (match := re.match(r"  (?:-\w, )?(--[\w-]+)", line)):
            found[heading].append(match.group(1))
    return found


@pytest.mark.parametrize("name", sorted(OPTION_GROUPS))
def test_help_lists_the_options_under_their_headings_in_table_order(name):
    result = CliRunner().invoke(cli, [name, "--help"])
    assert result.exit_code == 0
    assert sections(result.output) == {heading: options for heading, options in OPTION_GROUPS[name]}


def test_top_level_help_lists_commands_under_their_sections():
    text = CliRunner().invoke(cli, ["--help"]).output
    for heading, commands in COMMAND_SECTIONS:
        block = text.split(f"\n{heading}:\n", 1)[1].split("\n\n", 1)[0]
        assert [line.split()[0] for line in block.splitlines()] == commands


def test_option_name_is_the_long_spelling():
    assert option_name(click.Option(["-o", "--output"])) == "--output"


def test_usage_errors_keep_clicks_plain_format():
    done = run_cli("compute", "--bogus")
    assert done.returncode == 2
    assert done.stderr == ("Usage: chanstats compute [OPTIONS] [PATHS]...\n"
                           "Try 'chanstats compute --help' for help.\n\n"
                           "Error: No such option '--bogus'.\n")


def test_input_errors_stay_one_line(tmp_path):
    done = run_cli("compute", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert done.stderr == f"Error: {tmp_path / 'missing'}: no such file or directory\n"

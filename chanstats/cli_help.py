"""How ``chanstats --help`` and ``chanstats COMMAND --help`` are laid out: tables of groups, by name.

The options themselves are declared in ``cli.py``; this module only says under which heading each
one is shown (cloup draws the headings). Every option of every command must be in exactly one
group of ``OPTION_GROUPS``, and every name there must be an option of its command:
tests/test_cli_help.py checks the whole table (``grouping_problems``), so an option added later
without a group fails the tests; until then it is shown under "Other options".
"""

from __future__ import annotations

import click
import cloup

# command → [(heading, [option names as typed on the command line])], in display order.
# "--help" names the heading that shows the help option.
OPTION_GROUPS: dict[str, list[tuple[str, list[str]]]] = {
    "compute": [
        ("Inputs", ["--dataset", "--key", "--layout", "--ext", "--column", "--storage-option", "--mode", "--workers"]),
        ("Augmentation", ["--transform", "--resize", "--center-crop", "--epochs", "--seed"]),
        ("Rasters and value range", ["--bands", "--channels", "--nodata", "--scale", "--percentiles", "--histogram"]),
        ("BatchNorm simulation", ["--batch-size", "--momentum", "--convention", "--batches", "--no-shuffle",
                                  "--drop-last"]),
        ("Bad input and sampling", ["--on-error", "--max-bad", "--sample"]),
        ("Cache", ["--cache", "--no-cache", "--cache-verify", "--cache-max-size"]),
        ("Scale and resume", ["--shard", "--partial", "--partial-format", "--distributed", "--workdir",
                              "--checkpoint", "--checkpoint-every", "--restart"]),
        ("Output", ["--output", "--format", "--per-image", "--listing", "--quiet", "--timings", "--help"]),
    ],
    "compare": [
        ("Inputs", ["--dataset", "--key", "--layout", "--ext", "--column", "--storage-option", "--mode", "--workers"]),
        ("Augmentation", ["--transform", "--resize", "--center-crop", "--epochs"]),
        ("Rasters and value range", ["--bands", "--channels", "--nodata", "--scale", "--percentiles"]),
        ("BatchNorm settings to compare", ["--batch-size", "--momentum", "--convention", "--seeds", "--no-shuffle",
                                           "--drop-last"]),
        ("Cache", ["--cache", "--no-cache", "--cache-verify", "--cache-max-size"]),
        ("Output", ["--csv", "--plot", "--help"]),
    ],
    "check": [
        ("Config and tolerance", ["--against", "--tolerance", "--storage-option", "--workers"]),
        ("Distribution drift", ["--max-wasserstein", "--max-jsd", "--max-psi", "--max-ks", "--ks-alpha"]),
        ("Cache", ["--cache", "--no-cache", "--cache-verify", "--cache-max-size"]),
        ("Output", ["--report", "--plot", "--help"]),
    ],
    "merge": [
        ("Options", ["--output", "--format", "--per-image", "--quiet", "--workdir", "--help"]),
    ],
    "export": [
        ("Target", ["--to", "--output", "--help"]),
        ("Format-specific", ["--base", "--flavour", "--type", "--affine", "--eps", "--clip"]),
    ],
    "show": [
        ("Options", ["--plot", "--help"]),
    ],
}

# The commands of `chanstats --help`, under these headings in this order.
COMMAND_SECTIONS: list[tuple[str, list[str]]] = [
    ("Measure", ["compute", "compare", "merge"]),
    ("Use a config", ["check", "export", "show"]),
]


def option_name(option: click.Option) -> str:
    """The name an option is listed under in the tables: its longest spelling (``--output``)."""
    return max(option.opts, key=len)


def grouping_problems(command: str, params: list[click.Parameter]) -> list[str]:
    """What is wrong with ``OPTION_GROUPS[command]`` for these parameters: an option in no group or
    in several, a name that is no option of the command. Empty when the table is right."""
    groups = OPTION_GROUPS.get(command)
    if groups is None:
        return [f"chanstats {command} has no entry in OPTION_GROUPS"]
    options = {option_name(p) for p in params if isinstance(p, click.Option)}
    listed = [name for _, names in groups for name in names]
    problems = [f"chanstats {command} {name}: in no group" for name in sorted(options - set(listed))]
    problems += [f"chanstats {command} {name}: in {listed.count(name)} groups" for name in sorted(set(listed))
                 if listed.count(name) > 1]
    problems += [f"chanstats {command} {name}: no such option" for name in sorted(set(listed) - options - {"--help"})]
    return problems


class GroupedCommand(cloup.Command):
    """A command whose help shows its options under the headings ``OPTION_GROUPS`` gives them.

    An option the table misses is shown under "Other options" (and fails tests/test_cli_help.py)."""

    def __init__(self, *args, **kwargs):
        name = kwargs.get("name", args[0] if args else None)
        groups = OPTION_GROUPS.get(name, [])
        options = {option_name(p): p for p in kwargs.get("params") or [] if isinstance(p, click.Option)}
        self.help_heading = next((heading for heading, names in groups if "--help" in names), None)
        for heading, names in groups:
            group = cloup.OptionGroup(heading)
            for option in names:
                if option in options:
                    options[option].group = group  # what cloup reads
        super().__init__(*args, **kwargs)
        # Headings and the options under them in table order (the parameters keep theirs: click
        # processes them in declaration order, which decides which of two errors is reported).
        order = [heading for heading, _ in groups]
        self.option_groups.sort(key=lambda group: order.index(group.title))
        rank = {option: i for i, option in enumerate(n for _, names in groups for n in names)}
        for group in self.option_groups:
            group.options = sorted(group.options, key=lambda option: rank[option_name(option)])

    def _shows_help_in_a_group(self) -> bool:
        return any(group.title == self.help_heading for group in self.option_groups)

    def get_ungrouped_options(self, ctx: click.Context):
        if self._shows_help_in_a_group():
            return self.ungrouped_options
        return super().get_ungrouped_options(ctx)  # with cloup's "Options" (or "Other options")

    def make_option_group_help_section(self, group: cloup.OptionGroup, ctx: click.Context):
        section = super().make_option_group_help_section(group, ctx)
        help_option = self.get_help_option(ctx)
        if group in self.option_groups and group.title == self.help_heading and help_option is not None:
            section.definitions.append(help_option.get_help_record(ctx))
        return section


class GroupedHelpGroup(cloup.Group):
    """A click group whose commands are :class:`GroupedCommand` s, listed under the headings of
    ``COMMAND_SECTIONS``."""

    command_class = GroupedCommand

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.command_sections = {heading: cloup.Section(heading) for heading, _ in COMMAND_SECTIONS}
        for section in self.command_sections.values():
            self.add_section(section)

    def add_command(self, cmd: click.Command, name: str | None = None, section: cloup.Section | None = None,
                    fallback_to_default_section: bool = True) -> None:
        name = name or cmd.name
        heading = next((heading for heading, names in COMMAND_SECTIONS if name in names), None)
        if section is None and heading is not None:
            section = self.command_sections[heading]
        super().add_command(cmd, name, section, fallback_to_default_section)
        if section is not None and heading is not None:  # in table order, not definition order
            order = dict(COMMAND_SECTIONS)[heading]
            section.commands = dict(sorted(section.commands.items(), key=lambda item: order.index(item[0])))

"""How ``chanstats --help`` and ``chanstats COMMAND --help`` are laid out: tables of groups, by name.

The options themselves are declared in ``cli.py``; this module only says under which heading each
one is shown (cloup draws the headings). Every option of every command must be in exactly one
group of ``OPTION_GROUPS``, and every name there must be an option of its command: a command
refuses to be built otherwise, and tests/test_cli_help.py checks the whole table, so an option
added later without a group fails the tests instead of landing in a catch-all heading.
"""

from __future__ import annotations

import click
import cloup

# command → [(heading, [option names as typed on the command line])], in display order.
# "--help" names the heading that shows the help option.
OPTION_GROUPS: dict[str, list[tuple[str, list[str]]]] = {
    "compute": [
        ("Inputs", ["--dataset", "--key", "--layout", "--ext", "--column", "--mode", "--workers"]),
        ("Augmentation", ["--transform", "--resize", "--center-crop", "--epochs", "--seed"]),
        ("Rasters and value range", ["--bands", "--channels", "--nodata", "--scale", "--percentiles"]),
        ("BatchNorm simulation", ["--batch-size", "--momentum", "--convention", "--batches", "--no-shuffle",
                                  "--drop-last"]),
        ("Bad input and sampling", ["--on-error", "--max-bad", "--sample"]),
        ("Scale and resume", ["--shard", "--partial", "--partial-format", "--distributed", "--workdir",
                              "--checkpoint", "--checkpoint-every", "--restart"]),
        ("Output", ["--output", "--format", "--per-image", "--listing", "--quiet", "--timings", "--help"]),
    ],
    "compare": [
        ("Inputs", ["--dataset", "--key", "--layout", "--ext", "--column", "--mode", "--workers"]),
        ("Augmentation", ["--transform", "--resize", "--center-crop", "--epochs"]),
        ("Rasters and value range", ["--bands", "--channels", "--nodata", "--scale", "--percentiles"]),
        ("BatchNorm settings to compare", ["--batch-size", "--momentum", "--convention", "--seeds", "--no-shuffle",
                                           "--drop-last"]),
        ("Output", ["--csv", "--plot", "--help"]),
    ],
    "check": [
        ("Options", ["--against", "--tolerance", "--workers", "--help"]),
    ],
    "merge": [
        ("Options", ["--output", "--format", "--quiet", "--workdir", "--help"]),
    ],
    "export": [
        ("Target", ["--to", "--output", "--help"]),
        ("Format-specific", ["--base", "--flavour", "--type", "--affine", "--eps", "--clip"]),
    ],
    "show": [
        ("Options", ["--help"]),
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


class GroupedCommand(cloup.Command):
    """A command whose help shows its options under the headings ``OPTION_GROUPS`` gives them."""

    def __init__(self, *args, **kwargs):
        name = kwargs.get("name", args[0] if args else None)
        self.help_heading = _mark_groups(name, kwargs.get("params") or [])
        super().__init__(*args, **kwargs)
        # Headings and the options under them in table order (the parameters keep theirs: click
        # processes them in declaration order, which decides which of two errors is reported).
        order = [heading for heading, _ in OPTION_GROUPS[name]]
        self.option_groups.sort(key=lambda group: order.index(group.title))
        rank = {option: i for i, option in enumerate(n for _, names in OPTION_GROUPS[name] for n in names)}
        for group in self.option_groups:
            group.options = sorted(group.options, key=lambda option: rank[option_name(option)])

    def get_ungrouped_options(self, ctx: click.Context):
        if any(group.title == self.help_heading for group in self.option_groups):
            return self.ungrouped_options  # the help option is shown in its group instead
        return super().get_ungrouped_options(ctx)  # a command with no other option: cloup's "Options"

    def make_option_group_help_section(self, group: cloup.OptionGroup, ctx: click.Context):
        section = super().make_option_group_help_section(group, ctx)
        help_option = self.get_help_option(ctx)
        if group in self.option_groups and group.title == self.help_heading and help_option is not None:
            section.definitions.append(help_option.get_help_record(ctx))
        return section


def _mark_groups(command: str, params: list[click.Parameter]) -> str:
    """Mark each option of ``command`` with its group (cloup reads ``option.group``), in table
    order; return the heading that shows ``--help``."""
    if command not in OPTION_GROUPS:
        raise ValueError(f"chanstats {command}: no option groups in chanstats/cli_help.py")
    options = {option_name(p): p for p in params if isinstance(p, click.Option)}
    listed = [name for _, names in OPTION_GROUPS[command] for name in names if name != "--help"]
    if sorted(listed) != sorted(options):
        raise ValueError(f"chanstats {command}: the options {sorted(set(options) ^ set(listed))} must each be "
                         f"in exactly one group of OPTION_GROUPS (chanstats/cli_help.py)")
    help_heading = ""
    for heading, names in OPTION_GROUPS[command]:
        group = cloup.OptionGroup(heading)
        for name in names:
            if name == "--help":
                help_heading = heading
            else:
                options[name].group = group
    return help_heading


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

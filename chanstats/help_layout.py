"""How chanstats' help is drawn: cloup lays out the headings of :mod:`chanstats.cli_help`'s tables.

Imported only when help is shown. The commands that parse and run are plain click commands; to
draw one's help, a cloup twin is made with the same parameters and texts and asked for its help in
a cloup context that sits where the command's context sits (same parent, width and help options).
"""

from __future__ import annotations

from typing import Callable

import click
import cloup

Heading = tuple[str, list[str]]  # a heading and the names listed under it, in display order


def grouped_help(command: click.Command, ctx: click.Context, groups: list[Heading],
                 name_of: Callable[[click.Option], str]) -> str:
    """The help text of ``command`` with its options under the headings of ``groups`` (options
    named by ``name_of``; ``"--help"`` names the heading that shows the help option)."""
    twin = _DrawnCommand(groups, name_of, name=command.name, params=command.params, **_texts(command))
    return twin.get_help(_context_for(twin, ctx))


def sectioned_help(group: click.Group, ctx: click.Context, sections: list[Heading]) -> str:
    """The help text of ``group`` with its commands under the headings of ``sections`` (any other
    command under cloup's default heading)."""
    twin = cloup.Group(name=group.name, params=group.params, invoke_without_command=group.invoke_without_command,
                       no_args_is_help=group.no_args_is_help, **_texts(group))
    for heading, names in sections:
        twin.add_section(cloup.Section(heading, [group.commands[name] for name in names if name in group.commands]))
    for name, command in group.commands.items():
        if name not in twin.commands:
            twin.add_command(command, name)
    return twin.get_help(_context_for(twin, ctx))


def _texts(command: click.Command) -> dict:
    return {"help": command.help, "epilog": command.epilog, "short_help": command.short_help,
            "options_metavar": command.options_metavar, "add_help_option": command.add_help_option,
            "hidden": command.hidden, "deprecated": command.deprecated,
            "context_settings": command.context_settings}


def _context_for(twin: click.Command, ctx: click.Context) -> cloup.Context:
    return cloup.Context(twin, info_name=ctx.info_name, parent=ctx.parent, terminal_width=ctx.terminal_width,
                         max_content_width=ctx.max_content_width, help_option_names=ctx.help_option_names,
                         color=ctx.color, show_default=ctx.show_default)


class _DrawnCommand(cloup.Command):
    """The cloup twin of a command: its options under the headings of ``groups``, an option the
    table misses under "Other options"."""

    def __init__(self, groups: list[Heading], name_of: Callable[[click.Option], str], **kwargs):
        options = {name_of(p): p for p in kwargs.get("params") or [] if isinstance(p, click.Option)}
        self.help_heading = next((heading for heading, names in groups if "--help" in names), None)
        for heading, names in groups:
            group = cloup.OptionGroup(heading)
            for option in names:
                if option in options:
                    options[option].group = group  # what cloup reads
        super().__init__(**kwargs)
        # Headings and the options under them in table order (the parameters keep theirs: click
        # processes them in declaration order, which decides which of two errors is reported).
        order = [heading for heading, _ in groups]
        self.option_groups.sort(key=lambda group: order.index(group.title))
        rank = {option: i for i, option in enumerate(n for _, names in groups for n in names)}
        for group in self.option_groups:
            group.options = sorted(group.options, key=lambda option: rank[name_of(option)])

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

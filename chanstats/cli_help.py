"""How ``chanstats --help`` and ``chanstats COMMAND --help`` are laid out: tables of groups, by name.

The options themselves are declared in ``cli.py``; this module only says under which heading each
one is shown. cloup draws the headings (:mod:`chanstats.help_layout`), and only when help is shown:
importing it costs about 30 ms, which every run would otherwise pay at start-up. Every option of every command must be in exactly one
group of ``OPTION_GROUPS``, and every name there must be an option of its command:
tests/test_cli_help.py checks the whole table (``grouping_problems``), so an option added later
without a group fails the tests; until then it is shown under "Other options".
"""

from __future__ import annotations

import click

# command → [(heading, [option names as typed on the command line])], in display order.
# "--help" names the heading that shows the help option.
OPTION_GROUPS: dict[str, list[tuple[str, list[str]]]] = {
    "compute": [
        ("Inputs", ["--dataset", "--key", "--layout", "--ext", "--column", "--storage-option", "--mode", "--workers"]),
        ("Augmentation", ["--transform", "--resize", "--center-crop", "--epochs", "--seed"]),
        ("Rasters and value range", ["--bands", "--channels", "--nodata", "--scale", "--percentiles", "--histogram"]),
        ("Video", ["--frames", "--fps", "--clip-len", "--frame-interval", "--video-decoder", "--video-sample"]),
        ("BatchNorm simulation", ["--batch-size", "--momentum", "--convention", "--batches", "--no-shuffle",
                                  "--drop-last"]),
        ("Bad input and sampling", ["--on-error", "--max-bad", "--sample"]),
        ("Cache", ["--cache", "--no-cache", "--cache-verify", "--cache-max-size"]),
        ("Scale and resume", ["--shard", "--partial", "--partial-format", "--distributed", "--workdir",
                              "--checkpoint", "--checkpoint-every", "--restart", "--engine", "--ray-address"]),
        ("Output", ["--output", "--format", "--per-image", "--listing", "--quiet", "--timings", "--help"]),
    ],
    "compare": [
        ("Inputs", ["--dataset", "--key", "--layout", "--ext", "--column", "--storage-option", "--mode", "--workers",
                    "--engine", "--ray-address"]),
        ("Augmentation", ["--transform", "--resize", "--center-crop", "--epochs"]),
        ("Rasters and value range", ["--bands", "--channels", "--nodata", "--scale", "--percentiles"]),
        ("Video", ["--frames", "--fps", "--clip-len", "--frame-interval", "--video-decoder", "--video-sample"]),
        ("BatchNorm settings to compare", ["--batch-size", "--momentum", "--convention", "--seeds", "--no-shuffle",
                                           "--drop-last"]),
        ("Cache", ["--cache", "--no-cache", "--cache-verify", "--cache-max-size"]),
        ("Output", ["--csv", "--plot", "--help"]),
    ],
    "check": [
        ("Config and tolerance", ["--against", "--tolerance", "--storage-option", "--workers", "--engine",
                                  "--ray-address"]),
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


class GroupedCommand(click.Command):
    """A click command whose help shows its options under the headings ``OPTION_GROUPS`` gives
    them; parsing and running are click's own. An option the table misses is shown under "Other
    options" (and fails tests/test_cli_help.py)."""

    def get_help(self, ctx: click.Context) -> str:
        from .help_layout import grouped_help

        return grouped_help(self, ctx, OPTION_GROUPS.get(self.name, []), option_name)


class GroupedHelpGroup(click.Group):
    """A click group whose commands are :class:`GroupedCommand` s, and whose help lists them under
    the headings of ``COMMAND_SECTIONS``."""

    command_class = GroupedCommand

    def get_help(self, ctx: click.Context) -> str:
        from .help_layout import sectioned_help

        return sectioned_help(self, ctx, COMMAND_SECTIONS)

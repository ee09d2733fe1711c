"""The ``chanstats`` command: click parsing and printing over the Python API, nothing more.

Library errors (:class:`~chanstats.errors.ChanstatsError`) become one line on stderr and exit
code 2 here, and nowhere else; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import ChanstatsError

EXIT_INPUT_ERROR = 2


class ChanstatsGroup(click.Group):
    """Turns library errors into a clean message and exit code 2 for every subcommand."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ChanstatsError as error:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {error}", err=True)
            ctx.exit(EXIT_INPUT_ERROR)


@click.group(cls=ChanstatsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="chanstats")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Exact per-channel mean/std for image datasets, as the model sees them.

    Exit codes: 0 ok, 1 check failed, 2 usage or input error.
    """
    ctx.obj = {"debug": debug}


def _csv_list(value: str) -> list[str]:
    return [item for item in (part.strip() for part in value.split(",")) if item]


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the config here (JSON, or YAML for .yaml/.yml) instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["json", "yaml"]), help="Output format (default: from the -o extension, else JSON).")
@click.option("--mode", type=click.Choice(["RGB", "L", "keep"]), default="RGB", show_default=True,
              help="RGB: like torchvision's loader (grey replicated, alpha dropped); L: greyscale; keep: native channels and bit depth (16-bit grey too).")
@click.option("--ext", "extensions", default=None, metavar="EXTS",
              help="Comma-separated image extensions to look for (default: torchvision's: .jpg,.jpeg,.png,.ppm,.bmp,.pgm,.tif,.tiff,.webp).")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="BatchNorm simulation: images per batch.")
@click.option("--momentum", default="default", show_default=True,
              help="BatchNorm momentum: a number, or 'none' for torch's cumulative average (default: 0.1 torch, 0.99 keras).")
@click.option("--convention", type=click.Choice(["torch", "keras"]), default="torch", show_default=True,
              help="torch: running = (1-m)·running + m·batch, unbiased var; keras: moving = m·moving + (1-m)·batch, biased var.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the batch shuffle and of random augmentations.")
@click.option("--no-shuffle", is_flag=True, help="Batch in listing order instead of a seeded shuffle.")
@click.option("--drop-last", is_flag=True, help="Drop the last partial batch, like DataLoader(drop_last=True).")
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="fail: list every bad image and exit 2; skip: leave them out and list them in the output.")
@click.option("--max-bad", default=None, metavar="N|P%", help="With --on-error skip: fail when more than N images (or P% of them) are bad.")
@click.option("--workers", type=int, default=None, help="Worker processes (default: all cores; 0: in this process).")
@click.option("--transform", default=None, metavar="SPEC",
              help="Training transform: a YAML/JSON list of torchvision.transforms.v2 steps, or module:attr / file.py:attr.")
@click.option("--resize", type=click.IntRange(min=1), default=None, metavar="N", help="Resize(N) before any --transform.")
@click.option("--center-crop", type=click.IntRange(min=1), default=None, metavar="N", help="CenterCrop(N) after --resize, before any --transform.")
@click.option("--epochs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Pass every image this many times, with fresh random draws (samples = images × epochs).")
@click.option("-q", "--quiet", is_flag=True, help="No summary or progress bar on stderr.")
def compute(paths, output, fmt, mode, extensions, batch_size, momentum, convention, seed, no_shuffle, drop_last,
            on_error, max_bad, workers, transform, resize, center_crop, epochs, quiet):
    """Compute exact per-channel mean/std of the images under PATHS.

    PATHS are folders (searched recursively, hidden entries skipped), image files, or @list.txt
    files with one path per line (relative to the list file). The config goes to stdout or -o;
    a summary table and a paste-ready Normalize line go to stderr.
    """
    from .pipeline import compute as compute_statistics
    from .report import dumps, format_for_path, summary, write_atomic
    from .sources import IMAGE_EXTENSIONS

    result = compute_statistics(
        list(paths),
        mode=mode,
        extensions=_csv_list(extensions) if extensions is not None else IMAGE_EXTENSIONS,
        batch_size=batch_size,
        momentum=momentum,
        convention=convention,
        seed=seed,
        shuffle=not no_shuffle,
        drop_last=drop_last,
        on_error=on_error,
        max_bad=max_bad,
        workers=workers,
        progress=not quiet and sys.stderr.isatty(),
        transform=transform,
        epochs=epochs,
        resize=resize,
        center_crop=center_crop,
    )
    text = dumps(result.to_dict(), fmt or (format_for_path(output) if output else "json"))
    if output:
        write_atomic(output, text)
    else:
        click.echo(text, nl=False)
    if not quiet:
        click.echo(summary(result), err=True)
        if output:
            click.echo(f"wrote {output}", err=True)


def main() -> None:
    cli(prog_name="chanstats")

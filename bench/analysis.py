"""From raw runs to the numbers the tables show: medians, ratios with their per-round range,
the fastest pixel-identical decoder, memory growth, the recipe's error.

Ratios are throughput ratios on the same files, so inverse ratios of wall times; the per-round
ratios pair the runs of the same round (the rounds are interleaved).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from typing import NamedTuple

from bench import decisions
from bench.decoding import COMBINATIONS, Identity
from bench.jobs import Finished, Rounds

#: The memory runs (polled, untimed) of the chanstats runs they repeat.
MEMORY_RUNS = {"chanstats": "memory_n", "chanstats_big": "memory_big"}


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: list[float]) -> str:
    """Min-max spread of repeats, in % of the median."""
    if len(xs) < 2:
        return "n/a"
    m = med(xs)
    return f"±{100 * (max(xs) - min(xs)) / 2 / m:.1f}%" if m else "n/a"


class Ratio(NamedTuple):
    """A ratio of medians and the same ratio within each round (empty: not measured)."""

    value: float
    per_round: list[float]

    @property
    def measured(self) -> bool:
        return bool(self.per_round)


NOT_MEASURED = Ratio(float("nan"), [])


def _ratio(num: list[float], den: list[float]) -> Ratio:
    """Throughput of the ``num`` runs / throughput of the ``den`` runs, from their wall times."""
    if not num or not den:
        return NOT_MEASURED
    return Ratio(med(den) / med(num), [d / n for n, d in zip(num, den)])


def is_program(name: str) -> bool:
    """Decode-only programs and the recipe report their own inside time; chanstats is timed whole."""
    return name.startswith("decode") or name == "recipe"


@dataclass
class Measured:
    """The runs of one benchmark and what they were run on (images and pixels per job)."""

    rounds: Rounds
    images: dict[str, int]
    pixels: dict[str, int]

    def runs(self, name: str) -> list[Finished]:
        return self.rounds.runs.get(name, [])

    def times(self, name: str) -> list[float]:
        """Timed wall seconds: inside the program for decode-only and recipe, launch to exit else."""
        if is_program(name):
            return [json.loads(r.stdout)["wall"] for r in self.runs(name)]
        return [r.wall for r in self.runs(name)]

    def launch_to_exit(self, name: str) -> list[float]:
        return [r.wall for r in self.runs(name)]

    def after_listing(self, name: str) -> list[float]:
        """chanstats' own time once started and listed (its ``--timings``)."""
        return [decisions.seconds_after_listing(r.stderr) for r in self.runs(name)]

    def ratio(self, num: str, den: str) -> Ratio:
        return _ratio(self.times(num), self.times(den))

    def ratio_launch(self, num: str, den: str) -> Ratio:
        """As :meth:`ratio`, with ``den`` (a decode-only program) also timed from launch to exit."""
        return _ratio(self.times(num), self.launch_to_exit(den))

    def ratio_inside(self, num: str, den: str) -> Ratio:
        """As :meth:`ratio`, with ``num`` (chanstats) timed without start-up and listing."""
        return _ratio(self.after_listing(num), self.times(den))

    def cores(self, name: str) -> float:
        return med([r.cpu / r.wall for r in self.runs(name)])

    def peak_rss(self, memory_run: str) -> tuple[float, float]:
        """Median peak RSS of a memory run: the largest single process, and the polled tree sum."""
        runs = self.runs(memory_run)
        return med([r.maxrss for r in runs]), med([r.peak_tree_rss for r in runs])

    def memory_growth(self) -> tuple[float, float]:
        """Peak RSS growth from the main to the big set: (single process, tree sum)."""
        if not (self.runs("memory_n") and self.runs("memory_big")):
            return float("nan"), float("nan")
        (single_n, tree_n), (single_big, tree_big) = self.peak_rss("memory_n"), self.peak_rss("memory_big")
        return single_big / single_n - 1, tree_big / tree_n - 1


def fastest_identical(measured: Measured, combinations: list[str], identity: dict[str, Identity]) -> str | None:
    """The fastest decode-only combination whose fast decoders all gave Pillow's pixels on every
    file they decoded (Pillow itself is the reference)."""

    def identical(decoder: str) -> bool:
        counts = identity.get(decoder)
        return counts is not None and counts.compared > 0 and counts.identical == counts.compared

    def images_per_s(name: str) -> float:
        times = measured.times(f"decode_{name}")
        return measured.images[f"decode_{name}"] / med(times) if times else 0.0

    candidates = [name for name in combinations if all(identical(d) for d in COMBINATIONS[name].fast_decoders)]
    return max(candidates, key=images_per_s, default=None)


class Exact(NamedTuple):
    """chanstats' exact values from its out.json, and whether its outputs were byte-identical
    across runs and worker counts (None: not enough runs to tell)."""

    channels: list[str]
    values: dict | None
    identical_outputs: bool | None


def exact_values(rounds: Rounds) -> Exact:
    default, one = rounds.outputs.get("chanstats", []), rounds.outputs.get("chanstats_w1", [])
    channels, values = ["R", "G", "B"], None
    if default:
        out = json.loads(default[0])
        values, channels = out["exact"], out.get("channels", channels)
    identical = len(set(default + one)) == 1 if default and one else None
    return Exact(channels, values, identical)


def recipe_values(measured: Measured) -> dict | None:
    runs = measured.runs("recipe")
    return json.loads(runs[0].stdout) if runs else None

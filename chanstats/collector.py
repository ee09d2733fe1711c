"""When Python's cyclic garbage collector runs in the ``chanstats`` command.

Start-up imports and builds a few hundred thousand objects (modules, classes, the parsed options,
the listing) that live until the process ends and are never garbage; the collector's passes over
them, during the imports and again and again while the work runs, cost tens of milliseconds of a
run that decodes 2,000 photos in 1.5 s. So the command pauses the collector from launch
(:func:`pause`) until the work starts (:func:`work_starts`), then freezes what exists
(``gc.freeze``: kept for good and never traversed again; forked workers then leave those pages
shared instead of touching them) and collects as usual from there. Cycles made during start-up are
few and small; what the work makes is collected as before.

A library caller never calls :func:`pause`, and :func:`work_starts` then changes nothing but the
freeze of what exists (which only spares the collector work).
"""

from __future__ import annotations

import gc

_paused_here = False


def pause() -> None:
    """Stop collecting until :func:`work_starts` (the command's launch)."""
    global _paused_here
    if gc.isenabled():
        gc.disable()
        _paused_here = True


def work_starts() -> None:
    """Freeze every object made so far and collect again if :func:`pause` stopped it."""
    global _paused_here
    gc.freeze()
    if _paused_here:
        gc.enable()
        _paused_here = False

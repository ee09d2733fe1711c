"""Finding images: folders, files, ``@list`` files and tar shards, behind one listing function.

:mod:`.base` holds what every kind shares; :mod:`.folders` and :mod:`.tar` each import only the
base; :mod:`.listing` dispatches an input to its kind, and is what the rest of chanstats uses.
"""

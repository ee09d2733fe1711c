"""``python -m chanstats``: the same as the ``chanstats`` command."""

from .cli import main

if __name__ == "__main__":
    main()

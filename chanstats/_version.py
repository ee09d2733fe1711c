"""The version of chanstats (read by packaging, configs and ``--version``)."""

__version__ = "0.1.0"

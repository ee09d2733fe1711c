"""Running at scale: the worker pool, per-image columns, partial states and their file format, merge, checkpoints and torchrun."""

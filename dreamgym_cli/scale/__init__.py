"""Scaling out on existing engines: Ray for env workers, accelerate for multi-process training.

Nothing here is imported by the single-process path: `ray` and the launch environment are only
touched when a stage is given `--ray` or runs under `accelerate launch`.
"""

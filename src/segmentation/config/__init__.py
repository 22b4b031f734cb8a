"""Typed, layered configuration (moved from ``config.py``; split into modules in the next commit)."""

from segmentation.config.settings import *  # noqa: F403

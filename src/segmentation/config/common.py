"""What every settings module shares: the error users fix, the frozen base model and where a key was set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

CATCH_ALL = "true"
COMMAND_LINE = "<command line>"


class ConfigError(ValueError):
    """A configuration problem the user must fix: names the file, the key and, where relevant, the rule."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _source_of(loc: Sequence[Any], origin: Mapping[str, str], sources: Sequence[str]) -> str:
    """The last layer that set the key at ``loc``, one of its parents, or one of its children."""
    dotted = ".".join(str(p) for p in loc if not isinstance(p, int))
    related = [
        src
        for key, src in origin.items()
        if key == dotted or key.startswith(dotted + ".") or dotted.startswith(key + ".")
    ]
    if not related:
        return sources[-1] if sources else COMMAND_LINE
    return max(related, key=lambda src: sources.index(src) if src in sources else -1)

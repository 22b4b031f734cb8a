"""Loading: YAML layers merged in order (later files win), then ``dotted.key=value`` overrides, then validation.

Every error message names the file (or the command line) that set the offending key.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from segmentation.config.common import COMMAND_LINE, ConfigError, _source_of
from segmentation.config.settings import Settings


def _merge(
    base: dict[str, Any], layer: Mapping[str, Any], source: str, origin: dict[str, str], prefix: str = ""
) -> None:
    """Deep-merge ``layer`` into ``base`` recording which source set each dotted key."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, source, origin, dotted + ".")
        else:
            base[key] = _plain(value)
            origin[dotted] = source


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``dotted.key=value`` override; the value is read as YAML so numbers and lists keep their type."""
    if "=" not in text:
        raise ConfigError(f"{COMMAND_LINE}: override '{text}' is not of the form dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{COMMAND_LINE}: override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{COMMAND_LINE}: override '{text}': value is not valid YAML") from exc
    return key, value


def _nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _format_loc(loc: Sequence[Any], data: Mapping[str, Any]) -> str:
    """Dotted key with rule names instead of list positions where the list holds rules."""
    out: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            item = node[part]
            label = item.get("name") if isinstance(item, dict) else None
            out.append(f"[{part}]" if label is None else f"[{part}:{label}]")
            node = item
        else:
            out.append(("." if out else "") + str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return "".join(out)


def _missing_source(loc: Sequence[Any], origin: Mapping[str, str], sources: Sequence[str]) -> str:
    """The layer a missing key belongs in: the first one that set its closest enclosing section, else the first file.

    No layer set the key, so no layer can be blamed for it; the closest useful answer is the file that holds its
    section (``base.yaml`` for every business default), where the user adds the key.
    """
    parts = [str(p) for p in loc if not isinstance(p, int)]
    for depth in range(len(parts) - 1, 0, -1):
        section = ".".join(parts[:depth])
        setters = [
            src
            for key, src in origin.items()
            if key == section or key.startswith(section + ".") or section.startswith(key + ".")
        ]
        if setters:
            return min(setters, key=lambda src: sources.index(src) if src in sources else len(sources))
    return sources[0]


def resolve_base(conf_files: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files to merge: ``base.yaml`` beside the first file comes first unless it is already listed."""
    paths = [Path(p) for p in conf_files]
    if not paths:
        raise ConfigError("no configuration file given (use --conf conf/local.yaml)")
    base = paths[0].parent / "base.yaml"
    if base.exists() and all(p.resolve() != base.resolve() for p in paths):
        paths.insert(0, base)
    return paths


def load_settings(conf_files: Sequence[str | os.PathLike[str]], overrides: Iterable[str] = ()) -> Settings:
    """Merge the YAML layers and overrides and validate them.

    Raises:
        ConfigError: naming the file (or the command line), the dotted key, the rule and the reason.
    """
    paths = resolve_base(conf_files)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in paths:
        _merge(merged, _read_yaml(path), str(path), origin)
    for text in overrides:
        key, value = parse_override(text)
        _merge(merged, _nest(key, value), COMMAND_LINE, origin)
    try:
        settings = Settings.model_validate(merged)
        settings._origin = dict(origin)
        settings._sources = (*[str(p) for p in paths], COMMAND_LINE)
        return settings
    except ValidationError as exc:
        files = [str(p) for p in paths] + [COMMAND_LINE]
        lines = []
        for err in exc.errors():
            loc = err["loc"]
            source = _source_of(loc, origin, files)
            key = _format_loc(loc, merged)
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            elif err["type"] == "missing":
                source = _missing_source(loc, origin, files)
                message = "missing key"
            lines.append(f"{source}: {key}: {message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def parse_as_of(text: str) -> dt.date:
    """The as-of date of a run (YYYY-MM-DD). No job reads the clock."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{COMMAND_LINE}: --as-of '{text}' is not a date of the form YYYY-MM-DD") from exc

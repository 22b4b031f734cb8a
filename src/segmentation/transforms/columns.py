"""Column functions shared by the transforms."""

from __future__ import annotations

import datetime as dt

import pyspark.sql.functions as F
from pyspark.sql import Column

_EPOCH = dt.date(1970, 1, 1)
SECONDS_PER_DAY = 86_400


def utc_day(ts: Column) -> Column:
    """Days since 1970-01-01 of a timestamp, in UTC, whatever the session or machine time zone."""
    return F.floor(F.unix_seconds(ts) / SECONDS_PER_DAY).cast("int")


def day_number(date: dt.date) -> int:
    """Days since 1970-01-01 of a calendar date."""
    return (date - _EPOCH).days


def day_to_date(day: Column) -> Column:
    """Inverse of ``utc_day``: a day number back to a DATE."""
    return F.date_from_unix_date(day)


def end_of_day_seconds(as_of: dt.date) -> int:
    """Epoch seconds of the first instant after the as-of date (UTC): orders at or after it are in the future."""
    return (day_number(as_of) + 1) * SECONDS_PER_DAY


# What is trimmed from both ends of keys and codes: Unicode separators (\p{Z}: space, no-break space U+00A0,
# ideographic space U+3000, ...), control characters (\p{Cc}: tab, newline, ...) and invisible format characters
# (\p{Cf}: zero-width space U+200B, word joiner U+2060, byte-order mark U+FEFF, ...). Java regex classes, so the
# expression runs inside Spark; ``F.trim`` removes only the ASCII space.
_EDGE = r"[\p{Z}\p{Cc}\p{Cf}]+"


def clean_text(text: Column) -> Column:
    """Text without leading or trailing Unicode whitespace or invisible characters (null stays null)."""
    return F.regexp_replace(text, f"^{_EDGE}|{_EDGE}$", "")


def is_blank(text: Column) -> Column:
    """Null, empty, or nothing but Unicode whitespace and invisible characters: a missing value."""
    return text.isNull() | (clean_text(text) == "")


def safe_ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator as double, null when the denominator is 0 or null."""
    return F.when(denominator != 0, numerator.cast("double") / denominator.cast("double"))


def wall_clock_as_utc(ts_ntz: Column) -> Column:
    """A timestamp without time zone read as a UTC wall clock, independent of the session time zone.

    Formatting a TIMESTAMP_NTZ involves no zone; parsing the text with an explicit ``+0000`` fixes the instant.
    """
    text = F.date_format(ts_ntz, "yyyy-MM-dd HH:mm:ss.SSSSSS")
    return F.try_to_timestamp(F.concat(text, F.lit(" +0000")), F.lit("yyyy-MM-dd HH:mm:ss.SSSSSS Z"))


_ZONE_LETTERS = frozenset("XxZOVz")


def _has_zone(pattern: str) -> bool:
    """Whether a datetime pattern carries a zone or offset (letters outside quoted literals)."""
    unquoted = pattern.split("'")[::2]
    return any(ch in _ZONE_LETTERS for part in unquoted for ch in part)


def parse_utc_timestamp(text: Column, formats: list[str] | tuple[str, ...]) -> Column:
    """Text to a timestamp trying ``formats`` in order; null when none fits.

    A pattern without a zone reads the text as UTC, whatever the session or machine time zone: the text gets an
    explicit ``+0000`` offset before parsing. Text with its own offset keeps it.
    """
    trimmed = F.trim(text)
    attempts = []
    for fmt in formats:
        if _has_zone(fmt):
            attempts.append(F.try_to_timestamp(trimmed, F.lit(fmt)))
        else:
            attempts.append(F.try_to_timestamp(F.concat(trimmed, F.lit(" +0000")), F.lit(f"{fmt} Z")))
    return F.coalesce(*attempts)

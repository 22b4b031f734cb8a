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


def safe_ratio(numerator: Column, denominator: Column) -> Column:
    """numerator / denominator as double, null when the denominator is 0 or null."""
    return F.when(denominator != 0, numerator.cast("double") / denominator.cast("double"))

"""Row-level validation of orders: every row is either valid or carries a reason code, never dropped.

``valid + rejected = input`` holds by construction: one ``reject_reason`` column is computed for every input row and
the two outputs are its null and non-null halves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame, Window

from segmentation.config import QualitySettings
from segmentation.errors import InputError
from segmentation.transforms.columns import end_of_day_seconds, parse_utc_timestamp

REASON = "reject_reason"
PARSE_REASON = "_parse_reason"
EXCLUDED = "_excluded"
DUP_RANK = "_dup_rank"
_REPEATED = "_repeated_key"
DUPLICATE_KEY = ("channel", "order_id")
KEY_HASH = "_order_key_hash"

# Reason codes, in priority order: a row with several problems gets the first.
MISSING_CUSTOMER_ID = "missing_customer_id"
EXCLUDED_CUSTOMER = "excluded_customer"
MISSING_ORDER_ID = "missing_order_id"
UNPARSEABLE_ORDER_TS = "unparseable_order_ts"
MISSING_ORDER_TS = "missing_order_ts"
NON_NUMERIC_AMOUNT = "non_numeric_amount"
INVALID_AMOUNT = "invalid_amount"
INVALID_DISCOUNT = "invalid_discount"
UNKNOWN_CURRENCY = "unknown_currency"
UNKNOWN_STATUS = "unknown_status"
FUTURE_ORDER_TS = "future_order_ts"
DUPLICATE_ORDER = "duplicate_order"

# Rows set aside on purpose (staff, test accounts): reported in orders_rejected, not counted as bad input.
INTENTIONAL_REASONS = frozenset({EXCLUDED_CUSTOMER})


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def reject_reason(as_of: dt.date, quality: QualitySettings, *, parsed: bool = False, excluded: bool = False) -> Column:
    """The first problem of a row, or null for a valid row (needs the ``_dup_rank`` column).

    ``parsed``: the row carries ``_parse_reason`` from ``with_parsed_text``. ``excluded``: it carries the boolean
    ``_excluded`` from ``with_exclusion_flag``.
    """
    amount = F.col("amount")
    bad_amount = amount.isNull() | (amount < 0) | ((amount == 0) if not quality.allow_zero_amount else F.lit(False))
    reason = F.when(_blank(F.col("customer_id")), F.lit(MISSING_CUSTOMER_ID))
    if excluded:
        reason = reason.when(F.col(EXCLUDED), F.lit(EXCLUDED_CUSTOMER))
    reason = reason.when(_blank(F.col("order_id")), F.lit(MISSING_ORDER_ID))
    if parsed:
        reason = reason.when(F.col(PARSE_REASON).isNotNull(), F.col(PARSE_REASON))
    return (
        reason.when(F.col("order_ts").isNull(), F.lit(MISSING_ORDER_TS))
        .when(bad_amount, F.lit(INVALID_AMOUNT))
        .when(F.col("discount_amount") < 0, F.lit(INVALID_DISCOUNT))
        .when(~F.upper(F.trim(F.col("currency"))).isin(*[c.upper() for c in quality.currencies]), UNKNOWN_CURRENCY)
        .when(~F.lower(F.trim(F.col("status"))).isin(*[s.lower() for s in quality.statuses]), UNKNOWN_STATUS)
        .when(F.unix_seconds(F.col("order_ts")) >= F.lit(end_of_day_seconds(as_of)), F.lit(FUTURE_ORDER_TS))
        .when(F.col(DUP_RANK) > 1, F.lit(DUPLICATE_ORDER))
    )


def order_key_hash() -> Column:
    """A 64-bit hash of ``(channel, order_id)``: what the duplicate check groups and joins on instead of the strings."""
    return F.xxhash64("channel", "order_id").alias(KEY_HASH)


def duplicate_keys(orders_df: DataFrame) -> DataFrame:
    """Hashes of the ``(channel, order_id)`` keys found on more than one row (column ``_order_key_hash``).

    A hash aggregate of one long per order: the shuffle carries eight bytes per order, not the order rows, and the
    result is as small as the input is clean. Two different keys with the same hash only make a few more rows
    candidates; the window that ranks candidates is partitioned by the real key, so they still rank 1 each.
    """
    return orders_df.groupBy(order_key_hash()).count().where(F.col("count") > 1).drop("count")


def _duplicate_order() -> list[Column]:
    return [F.col(c).asc_nulls_last() for c in ("order_ts", "customer_id", "amount", "status", "currency")]


def with_duplicate_rank(orders_df: DataFrame, duplicate_keys_df: DataFrame | None = None) -> DataFrame:
    """Add ``_dup_rank``: 1 for the copy of an order that is kept, 2, 3, ... for the others.

    Without ``duplicate_keys_df`` every row goes through one window partitioned by the order key (a shuffle and
    sort of every order row). With it (see :func:`duplicate_keys`, small enough to broadcast) rows whose key is
    not repeated get rank 1 on the spot, and only the repeated ones are ranked by the window; the result is the same.
    """
    w = Window.partitionBy(*DUPLICATE_KEY).orderBy(*_duplicate_order())
    if duplicate_keys_df is None:
        return orders_df.withColumn(DUP_RANK, F.row_number().over(w))
    keys = duplicate_keys_df.select(KEY_HASH, F.lit(True).alias(_REPEATED))
    flagged = orders_df.withColumn(KEY_HASH, order_key_hash()).join(F.broadcast(keys), KEY_HASH, "left").drop(KEY_HASH)
    singles = flagged.where(F.col(_REPEATED).isNull()).withColumn(DUP_RANK, F.lit(1))
    repeated = flagged.where(F.col(_REPEATED)).withColumn(DUP_RANK, F.row_number().over(w))
    return singles.unionByName(repeated).drop(_REPEATED)


def with_reject_reason(
    orders_df: DataFrame,
    as_of: dt.date,
    quality: QualitySettings,
    excluded_df: DataFrame | None = None,
    duplicate_keys_df: DataFrame | None = None,
) -> DataFrame:
    """Tag every order with ``reject_reason`` (null when valid).

    A duplicate is a second row with the same (channel, order_id): exact replays across files and conflicting
    versions alike. The copy kept is the earliest by timestamp, then by content, so the choice is deterministic.

    Args:
        orders_df: conformed orders, optionally with ``_parse_reason`` (see ``with_parsed_text``).
        as_of: orders after this date (UTC) are in the future.
        quality: accepted currencies, statuses, amount rules.
        excluded_df: the ids to set aside (see ``exclusion_keys``); their rows get ``excluded_customer``.
        duplicate_keys_df: the repeated order keys (see :func:`duplicate_keys`), when small enough to broadcast:
            then only their rows are ranked by a window. None: every row is (same result, one more full shuffle).
    """
    parsed = PARSE_REASON in orders_df.columns
    if excluded_df is not None:
        orders_df = with_exclusion_flag(orders_df, excluded_df)
    return (
        with_duplicate_rank(orders_df, duplicate_keys_df)
        .withColumn(REASON, reject_reason(as_of, quality, parsed=parsed, excluded=excluded_df is not None))
        .drop(DUP_RANK, PARSE_REASON, EXCLUDED)
    )


def with_parsed_text(raw_df: DataFrame, timestamp_formats: list[str]) -> DataFrame:
    """Parse text ``order_ts``, ``amount`` and ``discount_amount`` columns and note rows that do not parse.

    Only columns stored as strings are touched. A blank or null text is simply missing (its usual reason applies);
    a text that does not parse sets ``_parse_reason`` (``unparseable_order_ts``, ``non_numeric_amount`` or
    ``invalid_discount``) and the value becomes null. Text timestamps without a zone are UTC.
    """
    types = dict(raw_df.dtypes)
    checks: list[tuple[Column, str]] = []
    df = raw_df
    for column, kind, reason in (
        ("order_ts", "timestamp", UNPARSEABLE_ORDER_TS),
        ("amount", "decimal", NON_NUMERIC_AMOUNT),
        ("discount_amount", "decimal", INVALID_DISCOUNT),
    ):
        if types.get(column) != "string":
            continue
        text = F.when(~_blank(F.col(column)), F.trim(F.col(column)))
        value = parse_utc_timestamp(text, timestamp_formats) if kind == "timestamp" else text.try_cast("decimal(18,2)")
        checks.append((text.isNotNull() & value.isNull(), reason))
        df = df.withColumn(f"_parsed_{column}", value)
    if not checks:
        return df.withColumn(PARSE_REASON, F.lit(None).cast("string"))
    reason: Column = F.lit(None).cast("string")
    for failed, code in reversed(checks):
        reason = F.when(failed, F.lit(code)).otherwise(reason)
    df = df.withColumn(PARSE_REASON, reason)
    for column in ("order_ts", "amount", "discount_amount"):
        if f"_parsed_{column}" in df.columns:
            df = df.withColumn(column, F.col(f"_parsed_{column}")).drop(f"_parsed_{column}")
    return df


def exclusion_keys(exclusions_df: DataFrame, identity_df: DataFrame | None = None) -> DataFrame:
    """The ids whose orders are set aside, one row per id: ``(_excl_id, _excl_all_channels, _excl_channels)``.

    An exclusion names a ``customer_id`` and optionally a ``channel``. Without a channel it matches that id on any
    channel, so both a channel-scoped id and a unified id work; with the identity map, a unified id also excludes
    every channel id mapped to it. One row per id keeps the join from multiplying orders.
    """
    has_channel = "channel" in exclusions_df.columns
    direct = exclusions_df.select(
        F.trim("customer_id").alias("_excl_id"),
        (F.trim("channel") if has_channel else F.lit(None).cast("string")).alias("_excl_channel"),
    ).where(~_blank(F.col("_excl_id")))
    keys = direct
    if identity_df is not None:
        unified = direct.select(F.col("_excl_id").alias("_unified")).distinct()
        mapped = identity_df.join(unified, F.trim(identity_df["customer_id"]) == unified["_unified"]).select(
            F.trim("channel_customer_id").alias("_excl_id"), F.col("channel").alias("_excl_channel")
        )
        keys = direct.unionByName(mapped)
    return keys.groupBy("_excl_id").agg(
        F.max(F.col("_excl_channel").isNull()).alias("_excl_all_channels"),
        F.collect_set("_excl_channel").alias("_excl_channels"),
    )


def with_exclusion_flag(orders_df: DataFrame, keys_df: DataFrame) -> DataFrame:
    """Add the boolean ``_excluded``: the order's customer id (on its channel) is on the exclusion list."""
    joined = orders_df.join(F.broadcast(keys_df), F.trim(orders_df["customer_id"]) == keys_df["_excl_id"], "left")
    flag = F.coalesce(
        F.col("_excl_all_channels") | F.array_contains(F.col("_excl_channels"), F.col("channel")), F.lit(False)
    )
    return joined.withColumn(EXCLUDED, flag).drop("_excl_id", "_excl_all_channels", "_excl_channels")


def valid_orders(tagged_df: DataFrame) -> DataFrame:
    """Valid rows, normalised (trimmed ids, lower-case status, upper-case currency)."""
    return (
        tagged_df.where(F.col(REASON).isNull())
        .drop(REASON)
        .withColumn("customer_id", F.trim("customer_id"))
        .withColumn("status", F.lower(F.trim("status")))
        .withColumn("currency", F.upper(F.trim("currency")))
    )


def rejected_orders(tagged_df: DataFrame, as_of: dt.date, run_id: str) -> DataFrame:
    """Rejected rows with their reason, the run that rejected them and the as-of date of that run."""
    return (
        tagged_df.where(F.col(REASON).isNotNull())
        .withColumn("run_id", F.lit(run_id))
        .withColumn("as_of_date", F.lit(as_of))
    )


def reason_counts(tagged_df: DataFrame) -> DataFrame:
    """One row per reason (null = valid) with its count: small, safe to collect."""
    return tagged_df.groupBy(REASON).count()


def count_reasons(rejected_df: DataFrame, input_rows: int) -> dict[str | None, int]:
    """Rows per reason with the valid rows under ``None``, from the rejected rows and the input row count.

    Every input row is either valid or rejected, so the valid count is the difference: the large valid half is
    never scanned for this.
    """
    counts: dict[str | None, int] = {r[REASON]: int(r["count"]) for r in reason_counts(rejected_df).collect()}
    counts[None] = input_rows - sum(counts.values())
    return counts


def check_rejected_share(counts: Mapping[str | None, int], max_share: float, source: str) -> None:
    """Stop (``InputError``) when the table is empty or the share of invalid rows is above ``max_share``.

    Intentional rejections (excluded customers) are neither invalid nor part of the base the share is taken of.
    """
    total = sum(counts.values())
    intentional = sum(v for k, v in counts.items() if k in INTENTIONAL_REASONS)
    rejected = total - counts.get(None, 0) - intentional
    share = rejected / (total - intentional) if total > intentional else 0.0
    if total == 0:
        raise InputError(f"the orders table {source} is empty")
    if share > max_share:
        detail = ", ".join(f"{k}={v:,}" for k, v in sorted((k, v) for k, v in counts.items() if k is not None))
        raise InputError(
            f"{rejected:,} of {total - intentional:,} order rows ({share:.2%}) are invalid"
            + (f" ({intentional:,} excluded rows not counted)" if intentional else "")
            + f", above quality.max_rejected_share={max_share:.2%}; no output was written. Reasons: {detail}"
        )

"""Row-level validation of orders: every row is either valid or carries a reason code, never dropped.

``valid + rejected = input`` holds by construction: one ``reject_reason`` column is computed for every input row and
the two outputs are its null and non-null halves.
"""

from __future__ import annotations

import datetime as dt

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame, Window

from segmentation.config import QualitySettings
from segmentation.transforms.columns import end_of_day_seconds

REASON = "reject_reason"

# Reason codes, in priority order: a row with several problems gets the first.
MISSING_CUSTOMER_ID = "missing_customer_id"
MISSING_ORDER_ID = "missing_order_id"
MISSING_ORDER_TS = "missing_order_ts"
INVALID_AMOUNT = "invalid_amount"
INVALID_DISCOUNT = "invalid_discount"
UNKNOWN_CURRENCY = "unknown_currency"
UNKNOWN_STATUS = "unknown_status"
FUTURE_ORDER_TS = "future_order_ts"
DUPLICATE_ORDER = "duplicate_order"


def _blank(col: Column) -> Column:
    return col.isNull() | (F.trim(col) == "")


def reject_reason(as_of: dt.date, quality: QualitySettings) -> Column:
    """The first problem of a row, or null for a valid row (needs the ``_dup_rank`` column)."""
    amount = F.col("amount")
    bad_amount = amount.isNull() | (amount < 0) | ((amount == 0) if not quality.allow_zero_amount else F.lit(False))
    return (
        F.when(_blank(F.col("customer_id")), F.lit(MISSING_CUSTOMER_ID))
        .when(_blank(F.col("order_id")), F.lit(MISSING_ORDER_ID))
        .when(F.col("order_ts").isNull(), F.lit(MISSING_ORDER_TS))
        .when(bad_amount, F.lit(INVALID_AMOUNT))
        .when(F.col("discount_amount") < 0, F.lit(INVALID_DISCOUNT))
        .when(~F.upper(F.trim(F.col("currency"))).isin(*[c.upper() for c in quality.currencies]), UNKNOWN_CURRENCY)
        .when(~F.lower(F.trim(F.col("status"))).isin(*[s.lower() for s in quality.statuses]), UNKNOWN_STATUS)
        .when(F.unix_seconds(F.col("order_ts")) >= F.lit(end_of_day_seconds(as_of)), F.lit(FUTURE_ORDER_TS))
        .when(F.col("_dup_rank") > 1, F.lit(DUPLICATE_ORDER))
    )


def with_reject_reason(orders_df: DataFrame, as_of: dt.date, quality: QualitySettings) -> DataFrame:
    """Tag every order with ``reject_reason`` (null when valid).

    A duplicate is a second row with the same (channel, order_id): exact replays across files and conflicting
    versions alike. The copy kept is the earliest by timestamp, then by content, so the choice is deterministic.
    """
    order = [F.col(c).asc_nulls_last() for c in ("order_ts", "customer_id", "amount", "status", "currency")]
    w = Window.partitionBy("channel", "order_id").orderBy(*order)
    return (
        orders_df.withColumn("_dup_rank", F.row_number().over(w))
        .withColumn(REASON, reject_reason(as_of, quality))
        .drop("_dup_rank")
    )


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

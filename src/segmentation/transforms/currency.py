"""Conversion of order amounts to the reporting currency, before any aggregate.

Every valid order in another currency is converted with the rate of its order date (UTC): the latest rate dated on or
before that day. The lookup runs on the distinct (currency, day) pairs of the orders, a few thousand rows at most, so
the range join never touches the order rows and needs no global window; the result is broadcast back onto the orders.
A valid order whose currency has no rate on or before its date becomes a rejected row (``missing_fx_rate``): an
amount is never summed unconverted, never with a silent rate of 1. A converted amount that decimal(18,2) cannot hold,
or above the configured maximum, is a rejected row too (``amount_out_of_range``), never an overflow error. Currency
codes are compared trimmed of Unicode whitespace and in upper case on both sides (``columns.clean_text``).
"""

from __future__ import annotations

from decimal import Decimal

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from segmentation.transforms.columns import clean_text, utc_day
from segmentation.transforms.quality import AMOUNT_OUT_OF_RANGE, AMOUNT_TYPE, REASON

MISSING_FX_RATE = "missing_fx_rate"

AMOUNT_COLUMNS = ("amount", "discount_amount")
RATE_TYPE = "decimal(18,8)"


def _currency_code(column: str = "currency"):
    return F.upper(clean_text(F.col(column)))


def rates_by_order_day(tagged_df: DataFrame, fx_df: DataFrame, reporting_currency: str) -> DataFrame:
    """``(_fx_currency, _fx_day, _fx_rate)`` for every (currency, UTC order day) a valid foreign order needs.

    A pair absent from the result has no rate on or before that day. Ties on the same rate date resolve to the
    larger rate so a rerun picks the same one.
    """
    needed = (
        tagged_df.where(F.col(REASON).isNull() & (_currency_code() != F.lit(reporting_currency.upper())))
        .select(_currency_code().alias("_fx_currency"), utc_day(F.col("order_ts")).alias("_fx_day"))
        .distinct()
    )
    rates = fx_df.select(
        _currency_code().alias("_rate_currency"),
        F.unix_date(F.col("rate_date").cast("date")).alias("_rate_day"),
        F.col("rate_to_reporting").cast(RATE_TYPE).alias("_rate"),
    ).where(F.col("_rate").isNotNull() & (F.col("_rate") > 0) & F.col("_rate_day").isNotNull())
    candidates = needed.join(
        rates, (needed["_fx_currency"] == rates["_rate_currency"]) & (rates["_rate_day"] <= needed["_fx_day"])
    )
    return candidates.groupBy("_fx_currency", "_fx_day").agg(
        F.max(F.struct("_rate_day", "_rate"))["_rate"].alias("_fx_rate")
    )


def with_reporting_currency(
    tagged_df: DataFrame, fx_df: DataFrame | None, reporting_currency: str, max_amount: Decimal | None = None
) -> DataFrame:
    """Convert valid orders to ``reporting_currency``; reject valid foreign orders without a rate or too large.

    The output has the input's columns: valid rows carry converted ``amount`` and ``discount_amount`` (rounded half
    up to cents) and ``currency`` = the reporting currency; rejected rows keep their original values, so
    ``orders_rejected`` shows what arrived.

    Args:
        tagged_df: orders with ``reject_reason`` (see ``quality.with_reject_reason``).
        fx_df: ``currency``, ``rate_date``, ``rate_to_reporting`` (one unit of currency in the reporting currency);
            None when no FX table is configured: then only orders already in the reporting currency stay valid.
        reporting_currency: the currency every aggregate is in.
        max_amount: a converted amount above it is ``amount_out_of_range`` (``quality.max_order_amount``); None: only
            amounts decimal(18,2) cannot hold are.
    """
    reporting = reporting_currency.upper()
    columns = tagged_df.columns
    is_valid = F.col(REASON).isNull()
    is_foreign = _currency_code() != F.lit(reporting)
    if fx_df is None:
        rate = F.lit(None).cast(RATE_TYPE)
        df = tagged_df
    else:
        lookup = rates_by_order_day(tagged_df, fx_df, reporting)
        df = tagged_df.join(
            F.broadcast(lookup),
            (_currency_code() == lookup["_fx_currency"]) & (utc_day(F.col("order_ts")) == lookup["_fx_day"]),
            "left",
        )
        rate = F.col("_fx_rate")
    effective = F.when(is_foreign, rate).otherwise(F.lit(1).cast(RATE_TYPE))
    converted = {c: F.round(F.col(c) * effective, 2).try_cast(AMOUNT_TYPE) for c in AMOUNT_COLUMNS}
    fits = converted["amount"].isNotNull() & (
        F.col("discount_amount").isNull() | converted["discount_amount"].isNotNull()
    )
    if max_amount is not None:
        fits = fits & (converted["amount"] <= F.lit(max_amount))
    df = df.withColumn(
        REASON,
        F.when(is_valid & is_foreign & rate.isNull(), F.lit(MISSING_FX_RATE))
        .when(is_valid & is_foreign & ~fits, F.lit(AMOUNT_OUT_OF_RANGE))
        .otherwise(F.col(REASON)),
    )
    convert = F.col(REASON).isNull() & is_foreign & rate.isNotNull()  # the reason just set: rejected rows keep values
    for column in AMOUNT_COLUMNS:
        df = df.withColumn(column, F.when(convert, converted[column]).otherwise(F.col(column)))
    df = df.withColumn("currency", F.when(convert, F.lit(reporting)).otherwise(F.col("currency")))
    return df.select(*columns)

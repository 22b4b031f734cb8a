"""Per-customer features in one pass over the orders.

Every window (30/60/90/... days), the whole-history totals, the channel and category shares and the customer's own
inter-purchase interval come out of a single shuffle by ``customer_id``: the gap to the previous purchase day is a
window function partitioned by customer, and the aggregation that follows reuses that partitioning.
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame, Window

from segmentation.config import FeatureSettings, QualitySettings
from segmentation.transforms.columns import day_number, day_to_date, safe_ratio, utc_day

KEY = "customer_id"
AMOUNT_TYPE = "decimal(18,2)"
MAX_AMOUNT = Decimal("9999999999999999.99")  # the largest decimal(18,2)


def money(column: str, name: str | None = None) -> Column:
    """A per-customer sum (accumulated as decimal(28,2), which cannot overflow) as the decimal(18,2) of every amount.

    ``quality.max_order_amount`` keeps sums far below the bound in practice (a customer would need 10,000 orders at
    that maximum). A sum beyond it stops the job with a message naming the customer and the column, never the
    ANSI overflow error of a plain cast.
    """
    name = name or column
    total = F.col(column)
    message = F.concat(
        F.lit(f"customer_features: {name} of customer "),
        F.col(KEY),
        F.lit(" is "),
        total.cast("string"),
        F.lit(f", beyond decimal(18,2) ({MAX_AMOUNT:,}): check the unit of the amounts or quality.max_order_amount"),
    )
    fits = F.abs(total) <= F.lit(MAX_AMOUNT)
    return F.when(fits, total.cast(AMOUNT_TYPE)).otherwise(F.raise_error(message)).alias(name)


def identifier(text: str) -> str:
    """A value (channel, category) as a column-name suffix: lower case, non-alphanumerics to '_'."""
    return re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")


def channel_share_column(channel: str) -> str:
    return f"channel_share_{identifier(channel)}"


def category_share_column(category: str) -> str:
    return f"category_share_{identifier(category)}"


def with_purchase_gaps(orders_df: DataFrame, sale_status: str) -> DataFrame:
    """Add ``order_day`` (UTC day number), ``is_sale`` and ``gap_days``: days since the customer's previous purchase
    day, null for the first purchase and for a second purchase on the same day (gaps are between distinct days)."""
    is_sale = F.col("status") == F.lit(sale_status)
    sale_day = F.when(is_sale, F.col("order_day"))
    w = Window.partitionBy(KEY).orderBy("order_day", "order_ts", "order_id").rowsBetween(Window.unboundedPreceding, -1)
    previous = F.max(sale_day).over(w)
    gap = sale_day - previous
    return (
        orders_df.withColumn("order_day", utc_day(F.col("order_ts")))
        .withColumn("is_sale", is_sale)
        .withColumn("gap_days", F.when(gap > 0, gap))
    )


def _count_if(cond: Column) -> Column:
    return F.count(F.when(cond, F.lit(1)))


def feature_aggregations(as_of: dt.date, features: FeatureSettings, quality: QualitySettings) -> list[Column]:
    """The aggregate columns of ``customer_features``: all windows in one ``groupBy``."""
    today = F.lit(day_number(as_of))
    day = F.col("order_day")
    sale = F.col("is_sale")
    amount = F.col("amount")
    zero = F.lit(0).cast("decimal(28,2)")

    def in_window(days: int | None) -> Column:
        return sale if days is None else sale & (day > today - F.lit(days))

    rfm_window = in_window(features.rfm_window_days)
    aggs: list[Column] = [
        F.min(F.when(sale, day)).alias("_first_day"),
        F.max(F.when(sale, day)).alias("_last_day"),
        _count_if(rfm_window).alias("frequency"),
        F.coalesce(F.sum(F.when(rfm_window, amount)), zero).alias("monetary"),
        _count_if(sale).alias("orders_total"),
        F.coalesce(F.sum(F.when(sale, amount)), zero).alias("amount_total"),
    ]
    for days in features.windows_days:
        aggs.append(_count_if(in_window(days)).alias(f"orders_{days}d"))
        aggs.append(F.coalesce(F.sum(F.when(in_window(days), amount)), zero).alias(f"amount_{days}d"))
    aggs += [
        (_count_if(F.col("gap_days").isNotNull()) + F.lit(1)).alias("distinct_order_days"),
        F.avg("gap_days").alias("mean_interval_days"),
        F.stddev_samp("gap_days").alias("std_interval_days"),
        F.mode(F.when(sale, F.col("channel")), deterministic=True).alias("preferred_channel"),
        F.mode(F.when(sale, F.col("category")), deterministic=True).alias("top_category"),
        F.size(F.collect_set(F.when(sale, F.col("channel")))).alias("channel_count"),
        F.coalesce(F.sum(F.when(sale, F.col("discount_amount"))), zero).alias("_discount"),
        _count_if(sale & F.col("coupon_code").isNotNull() & (F.trim("coupon_code") != "")).alias("_coupon_orders"),
        _count_if(F.col("status") == F.lit(quality.refund_status)).alias("_refunds"),
        F.count(F.lit(1)).alias("_all_orders"),
    ]
    for channel in features.channels:
        aggs.append(_count_if(sale & (F.col("channel") == channel)).alias(f"_n_{channel_share_column(channel)}"))
    for category in features.categories:
        aggs.append(_count_if(sale & (F.col("category") == category)).alias(f"_n_{category_share_column(category)}"))
    return aggs


def customer_features(
    orders_df: DataFrame, as_of: dt.date, features: FeatureSettings, quality: QualitySettings
) -> DataFrame:
    """One row per customer with at least one completed order up to ``as_of``.

    Args:
        orders_df: valid, identity-stitched orders (``customer_id``, ``order_ts``, ``amount``, ``status``, ...).
        as_of: the snapshot date; windows end on it (a 30-day window holds the as-of day and the 29 before).
        features: windows, RFM window and the channels/categories that get share columns.
        quality: which status is a sale and which a refund.
    """
    today = F.lit(day_number(as_of))
    per_customer = (
        orders_df.transform(with_purchase_gaps, quality.sale_status)
        .groupBy(KEY)
        .agg(*feature_aggregations(as_of, features, quality))
        .where(F.col("orders_total") > 0)
    )
    sales = F.col("orders_total")
    share_cols = [
        safe_ratio(F.col(f"_n_{name}"), sales).alias(name)
        for name in [channel_share_column(c) for c in features.channels]
        + [category_share_column(c) for c in features.categories]
    ]
    window_cols = [c for d in features.windows_days for c in (f"orders_{d}d", f"amount_{d}d")]
    return per_customer.select(
        F.lit(as_of).alias("as_of_date"),
        KEY,
        day_to_date(F.col("_first_day")).alias("first_order_date"),
        day_to_date(F.col("_last_day")).alias("last_order_date"),
        (today - F.col("_last_day")).alias("recency_days"),
        (today - F.col("_first_day")).alias("tenure_days"),
        "frequency",
        money("monetary"),
        "orders_total",
        money("amount_total"),
        *[money(c) if c.startswith("amount_") else F.col(c) for c in window_cols],
        safe_ratio(F.col("amount_total"), sales).alias("avg_order_value"),
        "distinct_order_days",
        "mean_interval_days",
        "std_interval_days",
        "preferred_channel",
        "top_category",
        "channel_count",
        safe_ratio(F.col("_discount"), F.col("_discount") + F.col("amount_total")).alias("discount_share"),
        safe_ratio(F.col("_coupon_orders"), sales).alias("coupon_share"),
        safe_ratio(F.col("_refunds"), F.col("_refunds") + sales).alias("refund_share"),
        *share_cols,
    )

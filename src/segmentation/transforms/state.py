"""Customer state: the additive per-customer aggregates every column of ``customer_features`` follows from.

The state of day D over the clean orders up to D holds, per customer: first and last purchase day; order counts and
amount sums for the whole history and for every window ending on D; the number of distinct purchase days and the
count, sum and sum of squares of the gaps between them; discount, coupon, refund and order counts; and the purchases
per channel and per category. A full build aggregates every order once (``from_orders``); a daily build adds the
orders that enter (new days, late arrivals) and subtracts, per window, the orders that left it (``advance``). Every
quantity is an exact integer or decimal sum, so both routes give the same state, and ``features`` turns a state into
the feature columns the same way for both.

Gap statistics need purchases in time order: a new purchase before a customer's last purchase day (a late order for
an old day) changes the gaps in the middle of the sequence, which cannot be added. ``late_purchases`` finds them; the
caller recomputes the state from the orders in that case.
"""

from __future__ import annotations

import datetime as dt

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame, Window

from segmentation.config import FeatureSettings, QualitySettings
from segmentation.transforms.columns import day_number, day_to_date, safe_ratio, utc_day

KEY = "customer_id"
DAY = "order_day"
SUM_TYPE = "decimal(28,2)"
COUNTS = ("orders_total", "distinct_days", "gap_n", "gap_sum", "gap_sumsq", "coupon_orders", "refunds", "all_orders")
SUMS = ("amount_total", "discount_total")
VALUE_COUNTS = {"channel": "channel_sales", "category": "category_sales"}


def windows(features: FeatureSettings) -> dict[str, int | None]:
    """Column prefix -> window length in days (None: the whole history) of every windowed count and sum."""
    out: dict[str, int | None] = {"rfm": features.rfm_window_days}
    out.update({f"w{d}": d for d in features.windows_days})
    return out


def _window_columns(prefix: str) -> tuple[str, str]:
    return f"{prefix}_orders", f"{prefix}_amount"


def order_facts(orders_df: DataFrame, quality: QualitySettings) -> DataFrame:
    """One row per clean order with what the state needs: customer, UTC day, sale flag, amounts and codes."""
    is_sale = F.col("status") == F.lit(quality.sale_status)
    has_coupon = F.col("coupon_code").isNotNull() & (F.trim("coupon_code") != "")
    return orders_df.select(
        KEY,
        utc_day(F.col("order_ts")).alias(DAY),
        is_sale.alias("is_sale"),
        F.when(is_sale, F.col("amount")).alias("sale_amount"),
        F.when(is_sale, F.col("discount_amount")).alias("sale_discount"),
        (is_sale & has_coupon).alias("is_coupon_sale"),
        (F.col("status") == F.lit(quality.refund_status)).alias("is_refund"),
        F.when(is_sale, F.col("channel")).alias("sale_channel"),
        F.when(is_sale, F.col("category")).alias("sale_category"),
    )


def _count_if(cond: Column) -> Column:
    return F.count(F.when(cond, F.lit(1)))


def _sum_if(cond: Column, value: Column) -> Column:
    return F.coalesce(F.sum(F.when(cond, value)), F.lit(0).cast(SUM_TYPE)).cast(SUM_TYPE)


def _order_aggregations(today: int, spans: dict[str, int | None]) -> list[Column]:
    """Counts and sums over order facts, windows ending on day ``today``."""
    sale = F.col("is_sale")
    aggs = [
        F.min(F.when(sale, F.col(DAY))).alias("first_day"),
        F.max(F.when(sale, F.col(DAY))).alias("last_day"),
        _count_if(sale).alias("orders_total"),
        _sum_if(sale, F.col("sale_amount")).alias("amount_total"),
        _sum_if(sale, F.col("sale_discount")).alias("discount_total"),
        _count_if(F.col("is_coupon_sale")).alias("coupon_orders"),
        _count_if(F.col("is_refund")).alias("refunds"),
        F.count(F.lit(1)).alias("all_orders"),
    ]
    for prefix, days in spans.items():
        inside = sale if days is None else sale & (F.col(DAY) > F.lit(today - days))
        orders_col, amount_col = _window_columns(prefix)
        aggs += [_count_if(inside).alias(orders_col), _sum_if(inside, F.col("sale_amount")).alias(amount_col)]
    return aggs


def _gap_stats(facts_df: DataFrame, seed_df: DataFrame | None = None) -> DataFrame:
    """Per customer: distinct purchase days and the count, sum and sum of squares of the gaps between them.

    ``seed_df`` (customer, ``last_day``) is the last purchase day already counted in a state: the first new day's gap
    is measured from it, and a new purchase on that very day adds no day.
    """
    days_df = facts_df.where("is_sale").select(KEY, DAY).distinct().withColumn("is_seed", F.lit(False))
    if seed_df is not None:
        seeds = seed_df.where(F.col("last_day").isNotNull()).select(KEY, F.col("last_day").alias(DAY))
        days_df = days_df.join(seeds, [KEY, DAY], "left_anti").unionByName(seeds.withColumn("is_seed", F.lit(True)))
    previous = F.lag(DAY).over(Window.partitionBy(KEY).orderBy(DAY))
    gaps_df = days_df.withColumn("gap", F.col(DAY) - previous).where(~F.col("is_seed"))
    return gaps_df.groupBy(KEY).agg(
        F.count(F.lit(1)).alias("distinct_days"),
        F.count("gap").alias("gap_n"),
        F.coalesce(F.sum("gap"), F.lit(0)).cast("long").alias("gap_sum"),
        F.coalesce(F.sum(F.col("gap").cast("long") * F.col("gap")), F.lit(0)).cast("long").alias("gap_sumsq"),
    )


def _value_counts(facts_df: DataFrame) -> DataFrame:
    """Per customer: purchases per channel and per category as maps (value -> count), from a hash aggregate."""
    out = None
    for value, column in VALUE_COUNTS.items():
        counted = (
            facts_df.where(F.col(f"sale_{value}").isNotNull())
            .groupBy(KEY, F.col(f"sale_{value}").alias("value"))
            .agg(F.count(F.lit(1)).alias("n"))
            .groupBy(KEY)
            .agg(F.map_from_entries(F.collect_list(F.struct("value", "n"))).alias(column))
        )
        out = counted if out is None else out.join(counted, KEY, "full")
    return out


def from_orders(facts_df: DataFrame, as_of: dt.date, features: FeatureSettings) -> DataFrame:
    """The state of ``as_of`` from the order facts of every order up to that day (one aggregation per part)."""
    today = day_number(as_of)
    upto = facts_df.where(F.col(DAY) <= F.lit(today))
    totals = upto.groupBy(KEY).agg(*_order_aggregations(today, windows(features)))
    return _normalised(totals.join(_gap_stats(upto), KEY, "left").join(_value_counts(upto), KEY, "left"), features)


def _normalised(df: DataFrame, features: FeatureSettings) -> DataFrame:
    """State columns in a fixed order with zeros and empty maps instead of nulls."""
    empty = F.create_map().cast("map<string,bigint>")
    counts = [F.coalesce(F.col(c), F.lit(0)).cast("long").alias(c) for c in COUNTS]
    sums = [F.coalesce(F.col(c), F.lit(0).cast(SUM_TYPE)).cast(SUM_TYPE).alias(c) for c in SUMS]
    spans = []
    for prefix in windows(features):
        orders_col, amount_col = _window_columns(prefix)
        spans += [
            F.coalesce(F.col(orders_col), F.lit(0)).cast("long").alias(orders_col),
            F.coalesce(F.col(amount_col), F.lit(0).cast(SUM_TYPE)).cast(SUM_TYPE).alias(amount_col),
        ]
    maps = [F.coalesce(F.col(c), empty).alias(c) for c in VALUE_COUNTS.values()]
    return df.select(KEY, "first_day", "last_day", *counts, *sums, *spans, *maps)


def late_purchases(state_df: DataFrame, entering_df: DataFrame) -> DataFrame:
    """Customers with an entering purchase before their last purchase day in the state (gaps cannot be added)."""
    sales = entering_df.where("is_sale").groupBy(KEY).agg(F.min(DAY).alias("_first_new"))
    return sales.join(state_df.select(KEY, "last_day"), KEY).where(F.col("_first_new") < F.col("last_day")).select(KEY)


def advance(
    state_df: DataFrame,
    entering_df: DataFrame,
    leaving_df: DataFrame,
    state_as_of: dt.date,
    as_of: dt.date,
    features: FeatureSettings,
) -> DataFrame:
    """The state of ``as_of`` from the state of ``state_as_of`` (earlier) without reading the history.

    Args:
        state_df: the state of ``state_as_of``.
        entering_df: order facts entering the state: days in (state_as_of, as_of], and orders that arrived since the
            state was made for days up to ``state_as_of`` (late arrivals; none of them a purchase before the
            customer's last purchase day: see ``late_purchases``).
        leaving_df: order facts already counted in the state whose day may leave a window: days in
            (state_as_of - longest window, state_as_of].
    """
    today, before = day_number(as_of), day_number(state_as_of)
    spans = windows(features)
    added = entering_df.groupBy(KEY).agg(*_order_aggregations(today, spans))
    added = added.join(_gap_stats(entering_df, state_df.select(KEY, "last_day")), KEY, "left")
    added = _normalised(added.join(_value_counts(entering_df), KEY, "left"), features)
    left_aggs = []
    for prefix, days in spans.items():
        if days is None:
            continue
        orders_col, amount_col = _window_columns(prefix)
        # In the window on the state's day, out of it on the new day.
        gone = (F.col(DAY) > F.lit(before - days)) & (F.col(DAY) <= F.lit(min(before, today - days))) & F.col("is_sale")
        left_aggs += [_count_if(gone).alias(orders_col), _sum_if(gone, F.col("sale_amount")).alias(amount_col)]
    old, new = state_df.alias("o"), added.alias("n")
    joined = old.join(new, KEY, "full")
    if left_aggs:
        joined = joined.join(leaving_df.groupBy(KEY).agg(*left_aggs).alias("l"), KEY, "left")

    def plus(column: str, zero: Column) -> Column:
        return F.coalesce(F.col(f"o.{column}"), zero) + F.coalesce(F.col(f"n.{column}"), zero)

    zero_sum = F.lit(0).cast(SUM_TYPE)
    columns = [
        F.least(F.col("o.first_day"), F.col("n.first_day")).alias("first_day"),
        F.greatest(F.col("o.last_day"), F.col("n.last_day")).alias("last_day"),
        *[plus(c, F.lit(0)).alias(c) for c in COUNTS],
        *[plus(c, zero_sum).alias(c) for c in SUMS],
    ]
    for prefix, days in spans.items():
        orders_col, amount_col = _window_columns(prefix)
        orders_expr, amount_expr = plus(orders_col, F.lit(0)), plus(amount_col, zero_sum)
        if days is not None:
            orders_expr = orders_expr - F.coalesce(F.col(f"l.{orders_col}"), F.lit(0))
            amount_expr = amount_expr - F.coalesce(F.col(f"l.{amount_col}"), zero_sum)
        columns += [orders_expr.alias(orders_col), amount_expr.alias(amount_col)]
    for column in VALUE_COUNTS.values():
        merged = F.map_zip_with(
            F.coalesce(F.col(f"o.{column}"), F.create_map().cast("map<string,bigint>")),
            F.coalesce(F.col(f"n.{column}"), F.create_map().cast("map<string,bigint>")),
            lambda _, a, b: F.coalesce(a, F.lit(0)) + F.coalesce(b, F.lit(0)),
        )
        columns.append(merged.alias(column))
    return _normalised(joined.select(KEY, *columns), features)


def _top(counts: Column) -> Column:
    """The most frequent value of a value -> count map; ties go to the smallest value (as ``mode`` does)."""
    ranked = F.transform(F.map_entries(counts), lambda e: F.struct((-e["value"]).alias("n"), e["key"].alias("v")))
    return F.when(F.size(counts) > 0, F.array_min(ranked)["v"])


def features(state_df: DataFrame, as_of: dt.date, features: FeatureSettings, quality: QualitySettings) -> DataFrame:
    """``customer_features`` of ``as_of`` from the state of that day: one row per customer with a purchase."""
    from segmentation.transforms.features import category_share_column, channel_share_column

    today = F.lit(day_number(as_of))
    sales = F.col("orders_total")
    rfm_orders, rfm_amount = _window_columns("rfm")
    window_cols = []
    for d in features.windows_days:
        orders_col, amount_col = _window_columns(f"w{d}")
        window_cols += [
            F.col(orders_col).alias(f"orders_{d}d"),
            F.col(amount_col).cast("decimal(18,2)").alias(f"amount_{d}d"),
        ]
    gap_n, gap_sum = F.col("gap_n").cast("double"), F.col("gap_sum").cast("double")
    variance = (F.col("gap_n") * F.col("gap_sumsq") - F.col("gap_sum") * F.col("gap_sum")).cast("double") / (
        gap_n * (gap_n - F.lit(1.0))
    )
    shares = [
        safe_ratio(F.coalesce(F.col("channel_sales")[c], F.lit(0)), sales).alias(channel_share_column(c))
        for c in features.channels
    ] + [
        safe_ratio(F.coalesce(F.col("category_sales")[c], F.lit(0)), sales).alias(category_share_column(c))
        for c in features.categories
    ]
    return state_df.where(sales > 0).select(
        F.lit(as_of).alias("as_of_date"),
        KEY,
        day_to_date(F.col("first_day")).alias("first_order_date"),
        day_to_date(F.col("last_day")).alias("last_order_date"),
        (today - F.col("last_day")).alias("recency_days"),
        (today - F.col("first_day")).alias("tenure_days"),
        F.col(rfm_orders).alias("frequency"),
        F.col(rfm_amount).cast("decimal(18,2)").alias("monetary"),
        "orders_total",
        F.col("amount_total").cast("decimal(18,2)").alias("amount_total"),
        *window_cols,
        safe_ratio(F.col("amount_total"), sales).alias("avg_order_value"),
        F.col("distinct_days").alias("distinct_order_days"),
        F.when(F.col("gap_n") > 0, gap_sum / gap_n).alias("mean_interval_days"),
        F.when(F.col("gap_n") > 1, F.sqrt(F.greatest(variance, F.lit(0.0)))).alias("std_interval_days"),
        _top(F.col("channel_sales")).alias("preferred_channel"),
        _top(F.col("category_sales")).alias("top_category"),
        F.size("channel_sales").alias("channel_count"),
        safe_ratio(F.col("discount_total"), F.col("discount_total") + F.col("amount_total")).alias("discount_share"),
        safe_ratio(F.col("coupon_orders"), sales).alias("coupon_share"),
        safe_ratio(F.col("refunds"), F.col("refunds") + sales).alias("refund_share"),
        *shares,
    )

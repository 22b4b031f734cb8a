"""What an orders table holds against the configuration: the aggregates of ``segmentation profile`` and build's checks.

``value_counts`` is the profile's one pass over the orders: every row is tagged with the product's own reject reason
(``quality.with_reject_reason``) before it gets here, then one aggregation counts rows per value of every dimension
(reason, currency, status, channel, category) and valid sales per customer. Everything else is computed from that
result, whose size is the number of customers plus a few hundred value rows; only capped value lists and a
distribution reach the driver.

The checks at the end (``require_purchasers``, ``unused_value_warnings``, ``empty_tag_groups``) are what a build can
call on frames it already has, so configured values that never occur are warned about without another pass over the
orders.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, Window

from segmentation.config import FeatureSettings, QualitySettings, RuleSet
from segmentation.errors import InputError
from segmentation.transforms.features import category_share_column, channel_share_column, identifier
from segmentation.transforms.quality import REASON

log = logging.getLogger(__name__)

DIMENSIONS = ("reject_reason", "currency", "status", "channel", "category")
CUSTOMER, TOTAL = "_customer", "_total"
VALUE_CAP = 50
ORDER_BUCKETS = ((1, 1), (2, 2), (3, 3), (4, 5), (6, 10), (11, 20), (21, 50), (51, None))


def value_counts(tagged_df: DataFrame, quality: QualitySettings) -> DataFrame:
    """``(dimension, value, rows, valid_rows, first_ts, last_ts)`` in one aggregation over the tagged orders.

    Dimensions: every column of ``DIMENSIONS`` (null values as null), ``_total`` (one row: the whole table) and
    ``_customer`` (one row per customer id with valid sales; ``valid_rows`` is its number of valid completed orders).
    """
    is_valid = F.col(REASON).isNull()
    is_sale = is_valid & (F.lower(F.trim(F.col("status"))) == F.lit(quality.sale_status.lower()))
    pairs = [F.struct(F.lit(d).alias("dimension"), F.col(d).cast("string").alias("value")) for d in DIMENSIONS]
    pairs.append(F.struct(F.lit(TOTAL).alias("dimension"), F.lit(None).cast("string").alias("value")))
    customer = F.when(is_sale, F.trim(F.col("customer_id")))
    pairs.append(F.struct(F.lit(CUSTOMER).alias("dimension"), customer.alias("value")))
    exploded = tagged_df.select(
        F.explode(F.array(*pairs)).alias("p"), is_valid.alias("_valid"), is_sale.alias("_sale"), "order_ts"
    ).where((F.col("p.dimension") != CUSTOMER) | F.col("p.value").isNotNull())
    return exploded.groupBy(F.col("p.dimension").alias("dimension"), F.col("p.value").alias("value")).agg(
        F.count(F.lit(1)).alias("rows"),
        F.count(F.when(F.col("_valid") & (F.col("p.dimension") != CUSTOMER), 1)).alias("valid_rows"),
        F.count(F.when(F.col("_sale"), 1)).alias("sales"),
        F.min("order_ts").alias("first_ts"),
        F.max("order_ts").alias("last_ts"),
        F.min(F.when(F.col("_valid"), F.col("order_ts"))).alias("first_valid_ts"),
        F.max(F.when(F.col("_valid"), F.col("order_ts"))).alias("last_valid_ts"),
    )


def capped_values(counts_df: DataFrame, cap: int = VALUE_CAP) -> DataFrame:
    """The ``cap`` most frequent values of every dimension (customers excluded), with the number of distinct values."""
    w = Window.partitionBy("dimension").orderBy(F.desc("rows"), F.asc_nulls_first("value"))
    counted = Window.partitionBy("dimension")
    return (
        counts_df.where(F.col("dimension") != CUSTOMER)
        .withColumn("rank", F.row_number().over(w))
        .withColumn("distinct_values", F.count(F.lit(1)).over(counted))
        .withColumn("dimension_rows", F.sum("rows").over(counted))
        .where(F.col("rank") <= cap)
    )


def orders_per_customer(counts_df: DataFrame) -> DataFrame:
    """Customers per bucket of valid completed orders (1, 2, 3, 4-5, ... 51+): a handful of rows."""
    n = F.col("sales")
    label = F.lit(None).cast("string")
    for low, high in reversed(ORDER_BUCKETS):
        text = f"{low}" if low == high else (f"{low}+" if high is None else f"{low}-{high}")
        label = F.when(n >= low if high is None else n.between(low, high), F.lit(text)).otherwise(label)
    return (
        counts_df.where(F.col("dimension") == CUSTOMER)
        .groupBy(label.alias("orders"))
        .agg(F.count(F.lit(1)).alias("customers"), F.min(n).alias("_order"), F.sum(n).alias("sales"))
        .orderBy("_order")
        .drop("_order")
    )


def customer_stats(counts_df: DataFrame) -> dict:
    """Customers with a valid sale, and the median, 90th and 99th percentile and maximum of their orders."""
    row = (
        counts_df.where(F.col("dimension") == CUSTOMER)
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.percentile_approx("sales", [0.5, 0.9, 0.99], 1000).alias("quantiles"),
            F.max("sales").alias("max"),
        )
        .first()
    )
    quantiles = row["quantiles"] or [None, None, None]
    return {"customers": row["customers"], "p50": quantiles[0], "p90": quantiles[1], "p99": quantiles[2],
            "max": row["max"]}  # fmt: skip


# -- comparing with the configuration ---------------------------------------------------------------------------------
def normalise(dimension: str, value: str | None) -> str | None:
    """How the product compares a value with the configuration: currencies upper case, statuses lower case, trimmed."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    return text.upper() if dimension == "currency" else text.lower() if dimension == "status" else text


def configured_values(dimension: str, quality: QualitySettings, features: FeatureSettings) -> list[str]:
    return {
        "currency": [c.upper() for c in quality.currencies],
        "status": [s.lower() for s in quality.statuses],
        "channel": list(features.channels),
        "category": list(features.categories),
    }.get(dimension, [])


def compare(dimension: str, found: Mapping[str | None, int], configured: Sequence[str]) -> dict[str, list]:
    """Found values (normalised, with rows) split into configured and not, and configured values never found."""
    rows: dict[str, int] = {}
    for value, count in found.items():
        key = normalise(dimension, value)
        if key is not None:
            rows[key] = rows.get(key, 0) + count
    known = set(configured)
    ordered = sorted(rows.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "configured": [(v, n) for v, n in ordered if v in known],
        "not_configured": [(v, n) for v, n in ordered if v not in known],
        "never_found": [v for v in configured if v not in rows],
    }


def suggested_conf(found: Mapping[str, Mapping[str | None, int]], quality: QualitySettings,
                   features: FeatureSettings) -> dict:  # fmt: skip
    """A configuration layer fitting the values found: pass it with ``--conf`` after the environment file.

    Currencies and channels/categories follow the data (most frequent first; the reporting currency is the most
    frequent currency); statuses only when the data has others. Changing channels or categories renames the
    ``channel_share_<x>``/``category_share_<x>`` feature columns, so the tag rule sets built on them are rewritten for
    the new values too (a rule naming a column that no longer exists would stop the build).
    """
    out: dict = {}
    currencies = [v for v, _ in _sorted(found.get("currency", {}), "currency")]
    statuses = [v for v, _ in _sorted(found.get("status", {}), "status")]
    channels = [v for v, _ in _sorted(found.get("channel", {}), "channel")][:VALUE_CAP]
    categories = [v for v, _ in _sorted(found.get("category", {}), "category")][:VALUE_CAP]
    if currencies:
        out["quality"] = {"currencies": currencies, "reporting_currency": currencies[0]}
    if statuses and set(statuses) - {s.lower() for s in quality.statuses}:
        out.setdefault("quality", {})["statuses"] = sorted(set(statuses) | {s.lower() for s in quality.statuses})
    feature_keys = {}
    if channels and channels != list(features.channels):
        feature_keys["channels"] = channels
    if categories and categories != list(features.categories):
        feature_keys["categories"] = categories
    if feature_keys:
        out["features"] = feature_keys
    tag_sets = {}
    if "categories" in feature_keys:
        tag_sets["category_preference"] = _tag_set(
            categories, lambda c: f"orders_total >= 2 AND {category_share_column(c)} >= 0.5"
        )
    if "channels" in feature_keys:
        tag_sets["preferred_channel"] = _tag_set(
            channels, lambda c: "preferred_channel = '" + c.replace("'", "''") + "'"
        )
    if tag_sets:
        out["tags"] = {"rule_sets": tag_sets}
    return out


def _sorted(found: Mapping[str | None, int], dimension: str) -> list[tuple[str, int]]:
    return compare(dimension, found, [])["not_configured"]


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _tag_set(values: Sequence[str], condition) -> dict:
    names: dict[str, str] = {}
    for v in values:
        name = identifier(v) or "value"
        while name in names.values():
            name += "_"
        names[v] = name
    return {"kind": "tags", "rules": [{"name": names[v], "condition": condition(v)} for v in values]}


# -- checks a build can call on frames it already has ------------------------------------------------------------------
def require_purchasers(features_df: DataFrame, source: str, sale_status: str) -> None:
    """Stop with an InputError when no customer has a valid completed order (nothing to segment).

    ``customer_features`` holds exactly the customers with at least one valid sale, so one row is enough to know.
    """
    if features_df.limit(1).count() == 0:
        raise InputError(
            f"the orders table {source} has no valid order with status '{sale_status}' up to the as-of date, so there "
            f"is no customer to segment. Check quality.sale_status and quality.statuses against the statuses of the "
            f"table, and the as-of date; `segmentation profile` lists what the table holds."
        )


def unused_value_warnings(features_df: DataFrame, features: FeatureSettings) -> list[str]:
    """Configured channels and categories that no customer bought in: one small aggregation over the features."""
    columns = {(f"channel '{c}'", "features.channels"): channel_share_column(c) for c in features.channels}
    columns.update({(f"category '{c}'", "features.categories"): category_share_column(c) for c in features.categories})
    present = {k: c for k, c in columns.items() if c in features_df.columns}
    if not present:
        return []
    row = features_df.agg(*[F.max(F.coalesce(F.col(c), F.lit(0.0))).alias(c) for c in present.values()]).first()
    return [
        f"configured {what} ({key}) never occurs in a valid completed order: {column} is 0 for every customer"
        for (what, key), column in present.items()
        if not row[column]
    ]


def empty_tag_groups(tags_df: DataFrame, rule_sets: Mapping[str, RuleSet]) -> list[str]:
    """Tag groups that tag nobody, from the ``customer_tags`` frame (one small aggregation)."""
    if not rule_sets:
        return []
    tagged = {r["tag_group"] for r in tags_df.groupBy("tag_group").count().collect()}
    return [f"tag group '{g}' (tags.rule_sets.{g}) tags nobody" for g in rule_sets if g not in tagged]


def log_warnings(warnings: Sequence[str]) -> None:
    for warning in warnings:
        log.warning("%s", warning)

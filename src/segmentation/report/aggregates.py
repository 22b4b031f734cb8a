"""Spark aggregations that turn output tables into plot-sized lists of rows; only these reach the driver.

Every function here runs one small Spark job (group by segment, score cell, bin, campaign) and collects at most a few
hundred rows, so no customer-level data is ever collected.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from segmentation.config import Settings

NEW, GONE = "(new)", "(gone)"
FUNNEL_ORDER = ("prospect", "new", "active", "repeat", "churn_warning", "dormant")
HISTOGRAM_BINS = 25


def _ordered(names: set[str], preferred: Sequence[str]) -> list[str]:
    first = list(dict.fromkeys(n for n in preferred if n in names))
    return first + sorted(n for n in names if n not in first)


def has_values(df: DataFrame | None, column: str) -> bool:
    """Whether ``df`` exists, has ``column`` and at least one non-null value in it (one short Spark job)."""
    return df is not None and column in df.columns and df.where(F.col(column).isNotNull()).limit(1).count() > 0


def segment_sizes(segments_df: DataFrame, dimension: str) -> list[dict]:
    """Customers, revenue and mean scores/predictions per segment of one dimension, largest first."""
    extras = [F.avg(c).alias(f"avg_{c}") for c in ("clv", "churn_probability") if c in segments_df.columns]
    rows = (
        segments_df.groupBy(F.col(dimension).cast("string").alias("segment"))
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.sum(F.col("monetary").cast("double")).alias("revenue"),
            F.avg("r_score").alias("avg_r"),
            F.avg("f_score").alias("avg_f"),
            F.avg("m_score").alias("avg_m"),
            *extras,
        )
        .orderBy(F.desc("customers"), "segment")
        .collect()
    )
    out = [r.asDict() for r in rows]
    customers = sum(r["customers"] for r in out) or 1
    revenue = sum(r["revenue"] or 0.0 for r in out) or 1.0
    for r in out:
        r["share"] = r["customers"] / customers
        r["revenue_share"] = (r["revenue"] or 0.0) / revenue
    return out


def rf_cells(segments_df: DataFrame) -> list[dict]:
    """Customers and mean M score per (R, F) score cell."""
    rows = (
        segments_df.groupBy("r_score", "f_score")
        .agg(F.count(F.lit(1)).alias("customers"), F.avg("m_score").alias("mean_m"))
        .collect()
    )
    return [r.asDict() for r in rows if r["r_score"] is not None and r["f_score"] is not None]


def migration_from_table(migration_df: DataFrame, dimension: str) -> list[dict] | None:
    """From → to counts of ``segment_migration`` for one dimension; None when its layout is not recognised."""
    columns = set(migration_df.columns)
    source = next((c for c in ("from_segment", "previous_segment", "segment_from", "from") if c in columns), None)
    target = next((c for c in ("to_segment", "current_segment", "segment_to", "to") if c in columns), None)
    count = next((c for c in ("customers", "count", "n") if c in columns), None)
    if not (source and target and count):
        return None
    df = migration_df
    if "dimension" in columns:
        df = df.where(F.col("dimension") == dimension)
    rows = (
        df.groupBy(F.col(source).cast("string").alias("source"), F.col(target).cast("string").alias("target"))
        .agg(F.sum(count).cast("long").alias("customers"))
        .collect()
    )
    return [{"source": r["source"] or NEW, "target": r["target"] or GONE, "customers": r["customers"]} for r in rows]


def migration_between(current_df: DataFrame, previous_df: DataFrame, dimension: str) -> list[dict]:
    """From → to counts between two snapshots (customers only in one of them are new or gone), joined in Spark."""
    previous = previous_df.select("customer_id", F.col(dimension).cast("string").alias("source"))
    current = current_df.select("customer_id", F.col(dimension).cast("string").alias("target"))
    rows = (
        previous.join(current, "customer_id", "full_outer")
        .groupBy(F.coalesce("source", F.lit(NEW)).alias("source"), F.coalesce("target", F.lit(GONE)).alias("target"))
        .agg(F.count(F.lit(1)).alias("customers"))
        .collect()
    )
    return [r.asDict() for r in rows]


def log_value(column: str) -> Column:
    """``log10(1 + value)``: spreads a long-tailed money amount (CLV) over the histogram instead of one bar at zero."""
    return F.log10(F.lit(1.0) + F.greatest(F.col(column).cast("double"), F.lit(0.0)))


def histogram(
    segments_df: DataFrame, value: Column, by: str, low: float, high: float, bins: int, *, clip: bool = True
) -> list[dict]:
    """Counts of ``value`` in equal-width bins over [low, high] per ``by`` group.

    ``clip``: values outside the range count in the end bins. Otherwise they get bin -1 (below ``low``) or ``bins``
    (above ``high``), so a chart can leave them out and say how many it left out.
    """
    width = (high - low) / bins if high > low else 1.0
    raw = F.floor((value - F.lit(low)) / F.lit(width))
    if clip:
        index = F.least(F.greatest(raw, F.lit(0)), F.lit(bins - 1))
    else:
        index = (
            F.when(value < F.lit(low), F.lit(-1))
            .when(value > F.lit(high), F.lit(bins))
            .otherwise(F.least(raw, F.lit(bins - 1)))
        )
    rows = (
        segments_df.where(value.isNotNull())
        .groupBy(F.col(by).cast("string").alias("group"), index.cast("int").alias("bin"))
        .agg(F.count(F.lit(1)).alias("customers"))
        .collect()
    )
    return [r.asDict() for r in rows]


def log_range(segments_df: DataFrame, column: str, upper_quantile: float = 0.99) -> tuple[float, float]:
    """The plotting range of a positive long-tailed amount on a log axis: its smallest positive value (at least 1) up to
    a high quantile, in one pass. Values outside it are counted apart, never piled into the end bins."""
    value = F.col(column).cast("double")
    row = segments_df.agg(
        F.min(F.when(value > 0, value)).alias("low"),
        F.percentile_approx(value, upper_quantile, 1000).alias("high"),
    ).first()
    low = max(float(row["low"] or 1.0), 1.0)
    high = float(row["high"] or 0.0)
    return (low, high) if high > low * 1.01 else (low, low * 10.0)


def value_range(segments_df: DataFrame, value: Column, upper_quantile: float = 0.99) -> tuple[float, float]:
    """The plotting range of a long-tailed value: its minimum up to a high quantile, in one pass."""
    row = segments_df.agg(
        F.min(value).cast("double").alias("low"),
        F.percentile_approx(value.cast("double"), upper_quantile, 1000).alias("high"),
    ).first()
    low, high = float(row["low"] or 0.0), float(row["high"] or 0.0)
    return (low, high) if high > low else (low, low + 1.0)


def lifecycle_funnel(segments_df: DataFrame, settings: Settings) -> list[dict]:
    """Customers per lifecycle stage in lifecycle order (prospect → dormant), not in rule priority order."""
    stages = segment_sizes(segments_df, "lifecycle_stage")
    rule_set = settings.segments.rule_sets.get("lifecycle_stage")
    configured = [r.name for r in rule_set.rules] if rule_set else []
    by_name = {s["segment"]: s for s in stages}
    return [by_name[n] for n in _ordered(set(by_name), [*FUNNEL_ORDER, *configured])]


def audience_arms(audiences_df: DataFrame) -> list[dict]:
    """Treatment and control counts per campaign, with the control share each campaign got."""
    keys = ["campaign_id"] + (["objective"] if "objective" in audiences_df.columns else [])
    rows = (
        audiences_df.groupBy(*keys)
        .agg(
            F.count(F.lit(1)).alias("customers"),
            F.sum(F.when(F.col("arm") == "control", 1).otherwise(0)).alias("control"),
        )
        .orderBy(*keys)
        .collect()
    )
    out = [r.asDict() for r in rows]
    for r in out:
        r.setdefault("objective", None)
        r["treatment"] = r["customers"] - r["control"]
        r["control_share"] = r["control"] / r["customers"] if r["customers"] else 0.0
    return out


def entries_and_exits(changes_df: DataFrame, dimension: str, start, end) -> list[dict]:
    """Per segment of one dimension, the ``segment_changes`` entries and exits dated ``start`` to ``end`` (inclusive).

    A move from A to B is an exit from A and an entry into B; ``new`` counts the entries of customers not in the
    dimension before (first seen, returning), ``left`` the exits of customers who are gone.
    """
    rows = (
        changes_df.where((F.col("dimension") == dimension) & F.col("as_of_date").between(F.lit(start), F.lit(end)))
        .select(
            F.explode(
                F.array(
                    F.struct(
                        F.col("to_value").alias("segment"),
                        F.lit(1).alias("entered"),
                        F.col("from_value").isNull().cast("int").alias("new"),
                        F.lit(0).alias("exited"),
                        F.lit(0).alias("left"),
                    ),
                    F.struct(
                        F.col("from_value").alias("segment"),
                        F.lit(0).alias("entered"),
                        F.lit(0).alias("new"),
                        F.lit(1).alias("exited"),
                        F.col("to_value").isNull().cast("int").alias("left"),
                    ),
                )
            ).alias("e")
        )
        .where(F.col("e.segment").isNotNull())
        .groupBy(F.col("e.segment").alias("segment"))
        .agg(*[F.sum(f"e.{c}").cast("long").alias(c) for c in ("entered", "new", "exited", "left")])
        .collect()
    )
    return [{**r.asDict(), "net": r["entered"] - r["exited"]} for r in rows]

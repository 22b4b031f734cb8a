"""Customer segments and their summary: scores, named rule sets, value classes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from segmentation.config import RuleSet
from segmentation.transforms.rules import with_exclusive

SEGMENT_KEY = ("as_of_date", "customer_id")
SCORE_COLUMNS = ("r_score", "f_score", "m_score", "rfm_cell")
PREDICTION_COLUMNS = {
    "clv": "double",
    "p_alive": "double",
    "expected_purchases": "double",
    "expected_purchases_low": "double",
    "expected_purchases_high": "double",
    "clv_low": "double",
    "clv_high": "double",
    "churn_probability": "double",
}


RuleCheck = Callable[[DataFrame, str, RuleSet], None]
"""Called with (the frame a rule set is about to see, its configuration key, the rule set): the pre-flight check of
the rules hooks in here, so it sees exactly the columns the build gives each rule set."""


def with_rule_sets(df: DataFrame, rule_sets: Mapping[str, RuleSet], check: RuleCheck | None = None) -> DataFrame:
    """Add one column per exclusive rule set, in configuration order (later sets may use earlier columns)."""
    for column, rule_set in rule_sets.items():
        if check is not None:
            check(df, f"segments.rule_sets.{column}", rule_set)
        df = with_exclusive(df, column, rule_set)
    return df


def segment_columns(rule_set_names: Sequence[str]) -> list[str]:
    return [
        "as_of_date",
        "customer_id",
        "recency_days",
        "frequency",
        "monetary",
        *SCORE_COLUMNS,
        *rule_set_names,
        "value_class",
    ]


def segments_snapshot(scored_df: DataFrame, rule_set_names: Sequence[str], run_id: str) -> DataFrame:
    """The ``customer_segments`` rows: one per customer, model predictions empty until ``score`` fills them."""
    return scored_df.select(
        *segment_columns(rule_set_names),
        *[F.lit(None).cast(t).alias(c) for c, t in PREDICTION_COLUMNS.items()],
        F.lit(run_id).alias("run_id"),
    )


def segment_summary(
    segments_df: DataFrame, dimensions: Mapping[str, RuleSet | None], as_of: dt.date, run_id: str
) -> DataFrame:
    """Size, share, revenue and average R/F/M per segment of every dimension, in one aggregation.

    The result is long: ``(as_of_date, dimension, segment, display names, customers, share, revenue, ...)``, one row
    per segment of every exclusive rule set and of ``value_class``; the grouping sets run in one pass over the
    segments.
    """
    dims = list(dimensions)
    stacked = segments_df.select(
        F.explode(
            F.array(*[F.struct(F.lit(d).alias("dimension"), F.col(d).cast("string").alias("segment")) for d in dims])
        ).alias("d"),
        "recency_days",
        "frequency",
        "monetary",
        "r_score",
        "f_score",
        "m_score",
    ).select("d.dimension", "d.segment", "recency_days", "frequency", "monetary", "r_score", "f_score", "m_score")
    agg = stacked.groupBy("dimension", "segment").agg(
        F.count(F.lit(1)).alias("customers"),
        F.sum("monetary").cast("decimal(20,2)").alias("revenue"),
        F.avg("recency_days").alias("avg_recency_days"),
        F.avg("frequency").alias("avg_frequency"),
        F.avg("monetary").cast("double").alias("avg_monetary"),
        F.avg("r_score").alias("avg_r_score"),
        F.avg("f_score").alias("avg_f_score"),
        F.avg("m_score").alias("avg_m_score"),
    )
    names = [
        (dim, rule.name, rule.display_name, rule.display_name_zh)
        for dim, rs in dimensions.items()
        if rs is not None
        for rule in rs.rules
    ]
    spark = segments_df.sparkSession
    names_df = spark.createDataFrame(
        names, "dimension string, segment string, display_name string, display_name_zh string"
    )
    totals = agg.groupBy("dimension").agg(
        F.sum("customers").alias("_customers_total"), F.sum("revenue").alias("_revenue_total")
    )
    return (
        agg.join(F.broadcast(totals), "dimension")
        .join(F.broadcast(names_df), ["dimension", "segment"], "left")
        .select(
            F.lit(as_of).alias("as_of_date"),
            "dimension",
            "segment",
            "display_name",
            "display_name_zh",
            "customers",
            (F.col("customers") / F.col("_customers_total")).alias("share"),
            "revenue",
            F.when(F.col("_revenue_total") > 0, F.col("revenue") / F.col("_revenue_total"))
            .cast("double")
            .alias("revenue_share"),
            "avg_recency_days",
            "avg_frequency",
            "avg_monetary",
            "avg_r_score",
            "avg_f_score",
            "avg_m_score",
            F.lit(run_id).alias("run_id"),
        )
    )

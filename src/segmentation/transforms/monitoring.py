"""Segment migration and share warnings: is the segmentation moving the way the business is, or did a rule break?

``segment_migration`` counts, per dimension (every exclusive rule set, the membership tier, the value class), how
many customers went from one segment to another since the previous snapshot. ``stayed`` and ``moved`` rows together
hold exactly the customers present in both snapshots; customers who appear (first order, new profile) or disappear
are counted apart as ``entered`` and ``left`` so they never blur the transition counts.

``with_share_warnings`` flags summary rows whose share is extreme or jumped since the previous run: a segment holding
80% of customers, or one that doubled overnight, is more often a data or rule problem than a market change.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from segmentation.config import MonitoringSettings

log = logging.getLogger(__name__)

KEY = "customer_id"
STAYED, MOVED, ENTERED, LEFT = "stayed", "moved", "entered", "left"
MIGRATION_COLUMNS = (
    "as_of_date date, previous_as_of_date date, dimension string, from_segment string, to_segment string,"
    " transition string, customers bigint, run_id string"
)


def _labels(df: DataFrame, dimensions: Sequence[str], prefix: str, flag: str) -> DataFrame:
    present = set(df.columns)
    return df.select(
        KEY,
        *[
            (F.col(d) if d in present else F.lit(None)).cast("string").alias(f"{prefix}{i}")
            for i, d in enumerate(dimensions)
        ],
        F.lit(True).alias(flag),
    )


def segment_migration(
    current_df: DataFrame,
    previous_df: DataFrame,
    dimensions: Sequence[str],
    as_of: dt.date,
    previous_as_of: dt.date,
    run_id: str,
) -> DataFrame:
    """From -> to counts per dimension between two ``customer_segments`` snapshots, in one join and one aggregation.

    Returns:
        ``(as_of_date, previous_as_of_date, dimension, from_segment, to_segment, transition, customers, run_id)``
        with ``transition`` in stayed/moved (customers in both snapshots), entered (only in the current one, from
        null) and left (only in the previous one, to null). A dimension the previous snapshot lacks counts as moved
        from null.
    """
    joined = _labels(current_df, dimensions, "_to", "_in_current").join(
        _labels(previous_df, dimensions, "_from", "_in_previous"), KEY, "full"
    )
    pairs = F.array(
        *[
            F.struct(
                F.lit(d).alias("dimension"),
                F.col(f"_from{i}").alias("from_segment"),
                F.col(f"_to{i}").alias("to_segment"),
            )
            for i, d in enumerate(dimensions)
        ]
    )
    in_current = F.coalesce(F.col("_in_current"), F.lit(False))
    in_previous = F.coalesce(F.col("_in_previous"), F.lit(False))
    stacked = joined.select(
        F.explode(pairs).alias("p"), in_current.alias("in_current"), in_previous.alias("in_previous")
    )
    transition = (
        F.when(
            F.col("in_current") & F.col("in_previous"),
            F.when(F.col("p.from_segment").eqNullSafe(F.col("p.to_segment")), F.lit(STAYED)).otherwise(F.lit(MOVED)),
        )
        .when(F.col("in_current"), F.lit(ENTERED))
        .otherwise(F.lit(LEFT))
    )
    return (
        stacked.groupBy(
            F.col("p.dimension").alias("dimension"),
            F.col("p.from_segment").alias("from_segment"),
            F.col("p.to_segment").alias("to_segment"),
            transition.alias("transition"),
        )
        .agg(F.count(F.lit(1)).alias("customers"))
        .select(
            F.lit(as_of).alias("as_of_date"),
            F.lit(previous_as_of).alias("previous_as_of_date"),
            "dimension",
            "from_segment",
            "to_segment",
            "transition",
            "customers",
            F.lit(run_id).alias("run_id"),
        )
    )


def with_share_warnings(
    summary_df: DataFrame, previous_summary_df: DataFrame | None, settings: MonitoringSettings
) -> DataFrame:
    """Add ``previous_share``, ``share_change`` and warning flags to ``segment_summary`` rows.

    ``is_share_high``: share above ``max_segment_share``; ``is_share_low``: below ``min_segment_share``;
    ``is_share_moved``: the share changed by more than ``max_share_change`` (absolute, in share points) since the
    previous snapshot (false when the segment did not exist then). ``warning`` lists the raised flags, null if none.
    """
    if previous_summary_df is None:
        joined = summary_df.withColumn("previous_share", F.lit(None).cast("double"))
    else:
        prev = previous_summary_df.select(
            F.col("dimension").alias("_p_dimension"),
            F.col("segment").alias("_p_segment"),
            F.col("share").cast("double").alias("previous_share"),
        )
        condition = (summary_df["dimension"] == prev["_p_dimension"]) & summary_df["segment"].eqNullSafe(
            prev["_p_segment"]
        )
        joined = summary_df.join(F.broadcast(prev), condition, "left").drop("_p_dimension", "_p_segment")
    change = F.col("share") - F.col("previous_share")
    high = F.col("share") > F.lit(settings.max_segment_share)
    low = F.col("share") < F.lit(settings.min_segment_share)
    moved = F.coalesce(F.abs(change) > F.lit(settings.max_share_change), F.lit(False))
    return (
        joined.withColumn("share_change", change)
        .withColumn("is_share_high", high)
        .withColumn("is_share_low", low)
        .withColumn("is_share_moved", moved)
        .withColumn(
            "warning",
            F.when(
                high | low | moved,
                F.concat_ws(
                    ", ",
                    F.when(high, F.lit("share_high")),
                    F.when(low, F.lit("share_low")),
                    F.when(moved, F.lit("share_moved")),
                ),
            ),
        )
    )


def log_share_warnings(summary_df: DataFrame) -> None:
    """Log the flagged segments of a summary (a handful of rows), one line per dimension, so an operator sees them in
    the job log without a 27-cell grid flooding it."""
    flagged = (
        summary_df.where(F.col("warning").isNotNull())
        .select("dimension", "segment", "share", "previous_share", "warning")
        .orderBy("dimension", "segment")
        .collect()
    )
    by_dimension: dict[str, list[str]] = {}
    for row in flagged:
        previous = "" if row["previous_share"] is None else f" from {row['previous_share']:.1%}"
        by_dimension.setdefault(row["dimension"], []).append(
            f"{row['segment']} {row['share']:.1%}{previous} ({row['warning']})"
        )
    for dimension, entries in by_dimension.items():
        log.warning("segment share warnings in %s: %s", dimension, "; ".join(entries))

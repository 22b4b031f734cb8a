"""Campaign uplift: treatment minus control, per campaign and per segment, with a normal-approximation interval.

The control group is the campaign audience's held-out arm, so the difference of the two arms' outcomes is the
campaign's effect. Customers of the audience without a response row did not convert and spent nothing: responses
tables only list the customers who did something. Everything is one aggregation per (campaign, segment) with
conditional sums per arm, so the driver only ever sees the small result.

Intervals (``z`` = 1.96 for 95%):

- conversion: ``(p1 - p0) ± z * sqrt(p1 (1 - p1) / n1 + p0 (1 - p0) / n0)``;
- revenue per customer (Welch): ``(m1 - m0) ± z * sqrt(s1² / n1 + s0² / n0)`` with per-arm sample variances.

An arm with no customers leaves its rate, the uplift and the interval null; an arm with one customer has no sample
variance, so the revenue interval is null.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from segmentation.transforms.audiences import CONTROL, TREATMENT
from segmentation.transforms.columns import day_number, utc_day

KEY = "customer_id"
ALL = "all"


def attributable_responses(responses_df: DataFrame, as_of: dt.date, window_days: int) -> DataFrame:
    """One row per (campaign, customer): converted if any response converted, revenue summed.

    Responses dated before the audience's as-of date or ``window_days`` or more after it belong to another wave of
    the campaign; a response without a date is kept (the source did not record when).
    """
    day = utc_day(F.col("responded_at").cast("timestamp"))
    start = day_number(as_of)
    in_window = F.col("responded_at").isNull() | ((day >= F.lit(start)) & (day < F.lit(start + window_days)))
    return (
        responses_df.where(in_window & F.col("campaign_id").isNotNull() & F.col(KEY).isNotNull())
        .groupBy("campaign_id", KEY)
        .agg(
            F.max(F.coalesce(F.col("converted").cast("boolean"), F.lit(False)).cast("int")).alias("_converted"),
            F.sum(F.coalesce(F.col("revenue").cast("double"), F.lit(0.0))).alias("_revenue"),
        )
    )


def _per_arm(arm: str) -> list[Column]:
    is_arm = F.col("arm") == F.lit(arm)
    return [
        F.count(F.when(is_arm, F.lit(1))).alias(f"{arm}_customers"),
        F.coalesce(F.sum(F.when(is_arm, F.col("_converted"))), F.lit(0)).cast("long").alias(f"{arm}_conversions"),
        F.avg(F.when(is_arm, F.col("_revenue"))).alias(f"{arm}_revenue_per_customer"),
        F.var_samp(F.when(is_arm, F.col("_revenue"))).alias(f"_{arm}_revenue_var"),
    ]


def campaign_uplift(
    audiences_df: DataFrame,
    responses_df: DataFrame,
    segments_df: DataFrame,
    dimensions: Sequence[str],
    as_of: dt.date,
    window_days: int,
    z: float,
    run_id: str,
) -> DataFrame:
    """Uplift rows per campaign: one for the whole audience (``dimension`` = ``segment`` = ``all``) and one per
    segment of each of ``dimensions`` (columns of ``segments_df``, the same as-of snapshot)."""
    responses = attributable_responses(responses_df, as_of, window_days)
    members = (
        audiences_df.select("campaign_id", "objective", KEY, "arm")
        .join(responses, ["campaign_id", KEY], "left")
        .select(
            "campaign_id",
            "objective",
            KEY,
            "arm",
            F.coalesce(F.col("_converted"), F.lit(0)).alias("_converted"),
            F.coalesce(F.col("_revenue"), F.lit(0.0)).alias("_revenue"),
        )
        .join(segments_df.select(KEY, *[F.col(d).cast("string").alias(d) for d in dimensions]), KEY, "left")
    )
    groups = F.array(
        F.struct(F.lit(ALL).alias("dimension"), F.lit(ALL).alias("segment")),
        *[F.struct(F.lit(d).alias("dimension"), F.col(d).alias("segment")) for d in dimensions],
    )
    stacked = members.select("campaign_id", "objective", "arm", "_converted", "_revenue", F.explode(groups).alias("g"))
    agg = stacked.groupBy(
        "campaign_id", "objective", F.col("g.dimension").alias("dimension"), F.col("g.segment").alias("segment")
    ).agg(*_per_arm(TREATMENT), *_per_arm(CONTROL))

    n1, n0 = F.col(f"{TREATMENT}_customers"), F.col(f"{CONTROL}_customers")
    p1 = F.when(n1 > 0, F.col(f"{TREATMENT}_conversions") / n1)
    p0 = F.when(n0 > 0, F.col(f"{CONTROL}_conversions") / n0)
    both = (n1 > 0) & (n0 > 0)
    conversion_se = F.when(both, F.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0))
    m1, m0 = F.col(f"{TREATMENT}_revenue_per_customer"), F.col(f"{CONTROL}_revenue_per_customer")
    revenue_se = F.when(both, F.sqrt(F.col(f"_{TREATMENT}_revenue_var") / n1 + F.col(f"_{CONTROL}_revenue_var") / n0))
    zz = F.lit(float(z))
    return agg.select(
        F.lit(as_of).alias("as_of_date"),
        "campaign_id",
        "objective",
        "dimension",
        "segment",
        f"{TREATMENT}_customers",
        f"{CONTROL}_customers",
        f"{TREATMENT}_conversions",
        f"{CONTROL}_conversions",
        p1.alias(f"{TREATMENT}_conversion_rate"),
        p0.alias(f"{CONTROL}_conversion_rate"),
        (p1 - p0).alias("conversion_uplift"),
        (p1 - p0 - zz * conversion_se).alias("conversion_uplift_ci_low"),
        (p1 - p0 + zz * conversion_se).alias("conversion_uplift_ci_high"),
        m1.alias(f"{TREATMENT}_revenue_per_customer"),
        m0.alias(f"{CONTROL}_revenue_per_customer"),
        (m1 - m0).alias("revenue_uplift"),
        (m1 - m0 - zz * revenue_se).alias("revenue_uplift_ci_low"),
        (m1 - m0 + zz * revenue_se).alias("revenue_uplift_ci_high"),
        F.lit(run_id).alias("run_id"),
    )

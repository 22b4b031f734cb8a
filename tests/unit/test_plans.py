"""No physical plan of the build job moves all rows into one partition.

A window without ``partitionBy``, a global sort to rank customers or a ``limit`` shows up in the physical plan as an
``Exchange SinglePartition`` over row-level data: on one core it is the step that stops a job at 100M orders. The
tests take every DataFrame the build job writes from its own ``build_frames``, on a small hand-made input, and walk
their physical plans. A global aggregate is allowed: its exchange carries one partial-aggregate row per
partition, not the rows.

The second test proves the checker bites: it flags the naive reference's ``ntile`` over unpartitioned windows.
"""

from __future__ import annotations

import datetime as dt

import pyspark.sql.functions as F
import pytest
from pyspark.sql import DataFrame

from segmentation.bench.references import naive as bench_reference
from segmentation.pipelines.build import BUILD_TABLES, BuildInputs, build_frames
from segmentation.transforms import quality
from segmentation.transforms.identity import stitch_identities
from tests.conftest import ORDER_COLUMNS, order_row

pytestmark = pytest.mark.spark

AS_OF = dt.date(2026, 6, 30)
RUN_ID = "plan-test"
_PARTIAL_AGGREGATES = ("HashAggregate", "ObjectHashAggregate", "SortAggregate")


def plan_text(df: DataFrame) -> str:
    """The physical plan as Spark prints it; adaptive and cached sub-plans are part of the tree string."""
    return df._jdf.queryExecution().executedPlan().toString()


def single_partition_exchanges(plan: str) -> list[str]:
    """Lines of ``plan`` with an ``Exchange SinglePartition`` that moves rows (not partial aggregates)."""
    lines = plan.splitlines()
    offenders = []
    for i, line in enumerate(lines):
        if "Exchange SinglePartition" not in line:
            continue
        child = lines[i + 1] if i + 1 < len(lines) else ""
        if any(agg in child for agg in _PARTIAL_AGGREGATES) and "partial_" in child:
            continue
        offenders.append(line.strip())
    return offenders


def _orders():
    return [
        order_row("o1", "c1", "2026-06-20T08:00:00", 100),
        order_row("o2", "c1", "2026-06-20T09:00:00", 100),  # tie: same day, same amount
        order_row("o3", "c2", "2026-01-02T10:00:00", 30, channel="app", category="home"),
        order_row("o4", "c2", "2026-03-01T10:00:00", 50, channel="app", status="refunded"),
        order_row("o5", "c3", "2025-07-01T10:00:00", 999.99, channel="store", discount="10.00", coupon="CPN1"),
        order_row("o6", None, "2026-06-01T10:00:00", 20),  # null customer: rejected
        order_row("o6", "c4", "2026-06-01T10:00:00", 20, channel="social"),
        order_row("o7", "c5", "2026-07-02T10:00:00", 20),  # after the as-of date: rejected
        order_row("o1", "c1", "2026-06-20T08:00:00", 100),  # exact duplicate: rejected
    ]


@pytest.fixture(scope="module")
def build_plans(spark, conf_dir, tmp_path_factory):
    """Physical plans of every DataFrame the build job writes, from the job's own ``build_frames``.

    Planning reads no data; only the quantile pass of the scores runs (on nine rows), so this stays fast. The previous
    snapshot is today's segments again, so the migration and tier-state joins are planned too.
    """
    from segmentation.config import load_settings

    settings = load_settings(
        [conf_dir / "local.yaml"],
        [f"outputs.path={tmp_path_factory.mktemp('plans')}", "inputs.profiles=null", "spark.master=local[2]"],
    )
    orders_df = spark.createDataFrame(_orders(), ORDER_COLUMNS)
    identity_df = spark.createDataFrame(
        [("web", "c1", "u1"), ("app", "c2", "u2"), ("store", "c3", "u1")],
        "channel string, channel_customer_id string, customer_id string",
    )
    tagged_df = quality.with_reject_reason(orders_df, AS_OF, settings.quality)
    valid_df = stitch_identities(quality.valid_orders(tagged_df), identity_df)
    first = build_frames(BuildInputs(valid_df, tagged_df), settings, AS_OF, RUN_ID)
    previous = AS_OF - dt.timedelta(days=1)
    inputs = BuildInputs(
        valid_df,
        tagged_df,
        previous_as_of=previous,
        previous_segments_df=first["customer_segments"].withColumn("as_of_date", F.lit(previous)),
        previous_summary_df=first["segment_summary"],
    )
    frames = build_frames(inputs, settings, AS_OF, RUN_ID)
    assert set(frames) == set(BUILD_TABLES)
    return settings, orders_df, {name: plan_text(df) for name, df in frames.items()}


def test_build_plans_never_move_all_rows_to_one_partition(build_plans):
    _, _, plans = build_plans
    offenders = {name: found for name, plan in plans.items() if (found := single_partition_exchanges(plan))}
    assert offenders == {}


def test_checker_flags_the_naive_reference(build_plans):
    settings, orders_df, _ = build_plans
    features_df = bench_reference.naive_features(orders_df, AS_OF, settings)
    offenders = single_partition_exchanges(plan_text(bench_reference.naive_scores(features_df, settings)))
    # The first ntile moves every customer into one partition; the other two then sort that same partition again.
    assert len(offenders) == 1


def test_checker_allows_global_aggregates_but_not_global_sorts(spark):
    df = spark.range(100).selectExpr("id", "id % 7 AS k")
    assert single_partition_exchanges(plan_text(df.agg({"id": "max"}))) == []
    assert len(single_partition_exchanges(plan_text(df.selectExpr("rank() OVER (ORDER BY k) AS r")))) == 1

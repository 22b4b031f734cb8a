"""The membership MERGE at scale: N customers, a share of them changed, against rewriting the snapshot slice.

A daily build writes ``customer_segments`` as a whole slice (every customer, every day) and upserts
``segment_membership`` with the changes only. This measures both on the same synthetic customers, through the same
code the build runs (``transforms.membership.next_state`` and ``io.merge_state``; ``io.write_snapshot``): week 1
creates the membership, week 2 changes ``changed_share`` of the customers' RFM segment, then the week-2 MERGE is timed
against writing the week-2 slice, with the rows each wrote from Delta's operation metrics. With deletion vectors a
MERGE writes the changed rows only; without, every file holding a changed row is rewritten (nearly all of them when
the changes are spread over the customers).

Run it on its own: ``measure_membership_merge(spark, "/tmp/bench", 200_000)`` (one local session, two cores: see
docs/activation.md for the figures).
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame, SparkSession

from segmentation import io
from segmentation.transforms import membership

log = logging.getLogger(__name__)

WEEK_1, WEEK_2 = dt.date(2026, 6, 23), dt.date(2026, 6, 30)
SEGMENTS = ("champions", "loyal", "potential", "one_time", "at_risk", "hibernating", "needs_attention")
DIMENSIONS = {
    "rfm_segment": SEGMENTS,
    "lifecycle_stage": ("new", "active", "repeat", "churn_warning", "dormant"),
    "membership_tier": ("registered", "growth", "high_value", "premium"),
    "r_level": ("high", "mid", "low"),
    "f_level": ("high", "mid", "low"),
    "m_level": ("high", "mid", "low"),
    "value_segment": ("core_high_value", "growth", "low_value_dormant", "other"),
    "value_class": ("A", "B", "C"),
}


def _pick(values: tuple[str, ...], salt: int) -> Column:
    index = F.pmod(F.xxhash64(F.col("id"), F.lit(salt)), F.lit(len(values))).cast("int") + F.lit(1)
    return F.element_at(F.array(*[F.lit(v) for v in values]), index)


def synthetic_segments(spark: SparkSession, customers: int, changed_share: float, changed: bool) -> DataFrame:
    """``customer_id`` and the dimensions of ``customers`` customers; with ``changed``, ``changed_share`` of them (by
    a hash of the id, so spread over every file) hold the next RFM segment."""
    df = spark.range(customers).select(
        "id",
        F.format_string("C%09d", "id").alias("customer_id"),
        *[_pick(values, i).alias(name) for i, (name, values) in enumerate(DIMENSIONS.items())],
    )
    if changed:
        moves = F.pmod(F.xxhash64(F.col("id"), F.lit(99)), F.lit(1_000_000)) < F.lit(int(changed_share * 1_000_000))
        shifted = F.element_at(
            F.array(*[F.lit(v) for v in SEGMENTS]),
            F.pmod(
                F.array_position(F.array(*[F.lit(v) for v in SEGMENTS]), F.col("rfm_segment")), F.lit(len(SEGMENTS))
            ).cast("int")
            + F.lit(1),
        )
        df = df.withColumn("rfm_segment", F.when(moves, shifted).otherwise(F.col("rfm_segment")))
    return df.drop("id")


def _merge(spark: SparkSession, path: str, current_df: DataFrame, as_of: dt.date, deletion_vectors: bool) -> dict:
    state_df = io.read_table(spark, _ref(path)).df if io.is_delta_table(spark, path) else None
    next_df = membership.next_state(current_df, state_df, list(DIMENSIONS), as_of)
    properties = {"delta.enableChangeDataFeed": "true"}
    if deletion_vectors:
        properties["delta.enableDeletionVectors"] = "true"
    start = time.perf_counter()
    result = io.merge_state(membership.merge_source(next_df), path, membership.KEY, as_of, properties=properties)
    seconds = time.perf_counter() - start
    m = result.metrics
    written = m.get("numTargetRowsUpdated", 0) + m.get("numTargetRowsInserted", 0) + m.get("numTargetRowsCopied", 0)
    return {
        "seconds": round(seconds, 2),
        "rows_written": written,
        "rows_changed": m.get("numTargetRowsUpdated", 0) + m.get("numTargetRowsInserted", 0),
        "rows_copied": m.get("numTargetRowsCopied", 0),
        "files_added": m.get("numTargetFilesAdded", 0),
        "files_removed": m.get("numTargetFilesRemoved", 0),
    }


def _ref(path: str):
    from segmentation.config import TableRef

    return TableRef(path=path)


def measure_membership_merge(
    spark: SparkSession,
    root: str | Path,
    customers: int,
    changed_share: float = 0.03,
    *,
    files: int = 8,
) -> dict[str, Any]:
    """Time the week-2 membership MERGE (with and without deletion vectors) against writing the week-2 slice.

    Returns:
        ``customers``, ``changed`` and, per way of writing (``merge_deletion_vectors``, ``merge_copy_on_write``,
        ``snapshot_slice``), the seconds and the rows written.
    """
    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    week_1 = synthetic_segments(spark, customers, changed_share, changed=False).repartition(files, "customer_id")
    week_2 = synthetic_segments(spark, customers, changed_share, changed=True).repartition(files, "customer_id")
    week_1, week_2 = week_1.cache(), week_2.cache()
    changed = week_1.join(week_2, "customer_id").where(week_1["rfm_segment"] != week_2["rfm_segment"]).count()
    out: dict[str, Any] = {"customers": customers, "changed": changed}
    for name, deletion_vectors in (("merge_deletion_vectors", True), ("merge_copy_on_write", False)):
        path = str(root / name)
        _merge(spark, path, week_1, WEEK_1, deletion_vectors)
        out[name] = _merge(spark, path, week_2, WEEK_2, deletion_vectors)
        log.info("%s: %s", name, out[name])
    path = str(root / "snapshot_slice")
    slice_df = week_2.withColumn("as_of_date", F.lit(WEEK_2))
    io.write_snapshot(week_1.withColumn("as_of_date", F.lit(WEEK_1)), path, WEEK_1)
    start = time.perf_counter()
    io.write_snapshot(slice_df, path, WEEK_2)
    out["snapshot_slice"] = {"seconds": round(time.perf_counter() - start, 2), "rows_written": customers}
    log.info("snapshot_slice: %s", out["snapshot_slice"])
    week_1.unpersist()
    week_2.unpersist()
    return out

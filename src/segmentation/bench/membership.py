"""The membership MERGE at scale: N customers, a share of them changed, against rewriting the data in full.

A daily build writes ``customer_segments`` as a whole slice (every customer, every day) and upserts
``segment_membership`` with the changes only. This measures, on the same synthetic customers and through the code the
build runs (``transforms.membership.next_state``, ``io.merge_state``, ``io.write_snapshot``): week 1 creates the
membership, week 2 changes ``changed_share`` of the customers' RFM segment (spread over every file by a hash of the
id), then week 2 is written four ways, each timed from the same cached week-2 values:

- ``merge_deletion_vectors`` (shipped): next state, then MERGE of the changed rows into a table with deletion vectors;
- ``merge_copy_on_write``: the same MERGE without deletion vectors (every file holding a changed row is rewritten);
- ``state_overwrite``: the next state of every customer written over the whole table (what a state kept without
  MERGE would cost; its Change Data Feed would then carry every customer);
- ``snapshot_slice``: a ``customer_segments``-shaped slice of every customer (32 columns) replacing its date.

The dimensions are those of the configuration the bench runs with (14 with the shipped one: every rule set,
``value_class``, one per campaign and the predicted-value tier), so the state has the width of the real table. Rows
written come from Delta's operation metrics.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame, SparkSession

from segmentation import io
from segmentation.transforms import membership

log = logging.getLogger(__name__)

WEEK_1, WEEK_2 = dt.date(2026, 6, 23), dt.date(2026, 6, 30)
CHANGED = "rfm_segment"  # the dimension week 2 moves (the first one when the configuration has no such rule set)
VALUES = 6  # distinct synthetic values per dimension
AUDIENCE_SHARE = 0.2  # share of customers in each campaign audience (null otherwise, as in the real table)


def _pick(dimension: str, salt: int) -> Column:
    index = F.pmod(F.xxhash64(F.col("id"), F.lit(salt)), F.lit(VALUES))
    value = F.concat(F.lit(f"{dimension}_"), index.cast("string"))
    if dimension.startswith(membership.AUDIENCE_PREFIX):
        inside = F.pmod(F.xxhash64(F.col("id"), F.lit(-salt)), F.lit(1000)) < F.lit(int(AUDIENCE_SHARE * 1000))
        return F.when(inside, F.when(index % 2 == 0, F.lit("treatment")).otherwise(F.lit("control")))
    return value


def synthetic_segments(
    spark: SparkSession, customers: int, changed_share: float, changed: bool, dimensions: Sequence[str]
) -> DataFrame:
    """``customer_id`` and the ``dimensions`` of ``customers`` customers; with ``changed``, ``changed_share`` of them
    (by a hash of the id, so spread over every file) hold the next value of the changed dimension."""
    df = spark.range(customers).select(
        "id",
        F.format_string("C%09d", "id").alias("customer_id"),
        *[_pick(d, i).alias(d) for i, d in enumerate(dimensions)],
    )
    if changed:
        moving = CHANGED if CHANGED in dimensions else dimensions[0]
        moves = F.pmod(F.xxhash64(F.col("id"), F.lit(99)), F.lit(1_000_000)) < F.lit(int(changed_share * 1_000_000))
        df = df.withColumn(moving, F.when(moves, F.concat(F.col(moving), F.lit("+"))).otherwise(F.col(moving)))
    return df.drop("id")


def segments_slice(values_df: DataFrame, as_of: dt.date) -> DataFrame:
    """A ``customer_segments``-shaped slice (the 32 columns of the shipped configuration) over the same customers."""
    h = F.xxhash64("customer_id")
    dims = [c for c in values_df.columns if c != "customer_id" and not c.startswith(membership.AUDIENCE_PREFIX)]
    history = dims[:3]
    return values_df.select(
        "customer_id",
        F.pmod(h, F.lit(730)).cast("int").alias("recency_days"),
        F.pmod(h, F.lit(40)).alias("frequency"),
        (F.pmod(h, F.lit(10_000_000)) / 100).cast("decimal(18,2)").alias("monetary"),
        *[F.pmod(h, F.lit(k)).cast("int").alias(n) for k, n in ((5, "r_score"), (7, "f_score"), (11, "m_score"))],
        F.pmod(h, F.lit(125)).cast("string").alias("rfm_cell"),
        *[F.col(d) for d in dims],
        F.lit("growth").alias("tier_qualified"),
        F.lit(WEEK_1).alias("tier_since"),
        F.lit(None).cast("date").alias("tier_below_since"),
        *[
            (F.pmod(h, F.lit(k)) / F.lit(k)).alias(n)
            for k, n in ((997, "clv"), (991, "p_alive"), (983, "expected_purchases"))
        ],
        (F.pmod(h, F.lit(977)) / F.lit(977)).alias("churn_probability"),
        F.lit("bench").alias("run_id"),
        *[c for d in history for c in (F.col(d).alias(f"previous_{d}"), F.lit(WEEK_1).alias(f"{d}_since"))],
        F.lit(as_of).alias("as_of_date"),
    )


def _state_df(spark: SparkSession, path: str) -> DataFrame | None:
    from segmentation.config import TableRef

    return io.read_table(spark, TableRef(path=path)).df if io.is_delta_table(spark, path) else None


def _merge(spark: SparkSession, path: str, current_df: DataFrame, as_of: dt.date, deletion_vectors: bool) -> dict:
    start = time.perf_counter()
    next_df = membership.next_state(current_df, _state_df(spark, path), list(current_df.columns[1:]), as_of)
    properties = {"delta.enableChangeDataFeed": "true"}
    if deletion_vectors:
        properties["delta.enableDeletionVectors"] = "true"
    result = io.merge_state(membership.merge_source(next_df), path, membership.KEY, as_of, properties=properties)
    seconds = time.perf_counter() - start
    m = result.metrics
    changed = m.get("numTargetRowsUpdated", 0) + m.get("numTargetRowsInserted", 0)
    return {
        "seconds": round(seconds, 2),
        "rows_written": changed + m.get("numTargetRowsCopied", 0),
        "rows_changed": changed,
        "rows_copied": m.get("numTargetRowsCopied", 0),
        "files_added": m.get("numTargetFilesAdded", 0),
        "files_removed": m.get("numTargetFilesRemoved", 0),
        "merge_s": round(m.get("executionTimeMs", 0) / 1000, 2),
    }


def _overwrite(spark: SparkSession, path: str, current_df: DataFrame, as_of: dt.date) -> dict:
    start = time.perf_counter()
    next_df = membership.next_state(current_df, _state_df(spark, path), list(current_df.columns[1:]), as_of)
    rows = next_df.drop(membership.CHANGES, "_in_source")
    rows.write.format("delta").mode("overwrite").option("overwriteSchema", "true").save(path)
    return {
        "seconds": round(time.perf_counter() - start, 2),
        "rows_written": io.read_table(spark, _ref(path)).df.count(),
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
    dimensions: Sequence[str],
    files: int = 8,
    copy_on_write: bool = True,
) -> dict[str, Any]:
    """Time week 2 written four ways (module docstring) from the same cached week-1 and week-2 values.

    Returns:
        ``customers``, ``changed``, ``dimensions`` and, per way of writing (``merge_deletion_vectors``,
        ``merge_copy_on_write``, ``state_overwrite``, ``snapshot_slice``), the seconds and the rows written; for the
        MERGEs also the rows changed and copied, the files added and removed and the MERGE command's own seconds
        (the rest is deriving the next state). ``copy_on_write`` False leaves out ``merge_copy_on_write``.
    """
    root = Path(root)
    shutil.rmtree(root, ignore_errors=True)
    dimensions = list(dict.fromkeys(dimensions))
    week_1 = synthetic_segments(spark, customers, changed_share, False, dimensions).repartition(files, "customer_id")
    week_2 = synthetic_segments(spark, customers, changed_share, True, dimensions).repartition(files, "customer_id")
    week_1, week_2 = week_1.cache(), week_2.cache()
    moving = CHANGED if CHANGED in dimensions else dimensions[0]
    changed = week_1.join(week_2, "customer_id").where(week_1[moving] != week_2[moving]).count()
    out: dict[str, Any] = {"customers": customers, "changed": changed, "dimensions": len(dimensions)}
    try:
        ways = (("merge_deletion_vectors", True), ("merge_copy_on_write", False))
        for name, deletion_vectors in ways if copy_on_write else ways[:1]:
            path = str(root / name)
            _merge(spark, path, week_1, WEEK_1, deletion_vectors)
            out[name] = _merge(spark, path, week_2, WEEK_2, deletion_vectors)
            log.info("%s: %s", name, out[name])
        path = str(root / "state_overwrite")
        _overwrite(spark, path, week_1, WEEK_1)
        out["state_overwrite"] = _overwrite(spark, path, week_2, WEEK_2)
        log.info("state_overwrite: %s", out["state_overwrite"])
        path = str(root / "snapshot_slice")
        io.write_snapshot(segments_slice(week_1, WEEK_1), path, WEEK_1)
        slice_df = segments_slice(week_2, WEEK_2).cache()
        slice_df.count()  # the slice's values are computed by the build before its write: time the write only
        start = time.perf_counter()
        io.write_snapshot(slice_df, path, WEEK_2)
        out["snapshot_slice"] = {"seconds": round(time.perf_counter() - start, 2), "rows_written": customers}
        slice_df.unpersist()
        log.info("snapshot_slice: %s", out["snapshot_slice"])
    finally:
        week_1.unpersist()
        week_2.unpersist()
    return out

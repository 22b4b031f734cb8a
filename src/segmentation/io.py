"""The only module that reads or writes tables.

Outputs are snapshots keyed by ``as_of_date``: each write replaces exactly its date's slice in one Delta commit
(``replaceWhere``), so a rerun or an orchestrator retry leaves the same content and never duplicates rows, and readers
of other dates are untouched. No business rule lives here.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from segmentation.config import TableRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadResult:
    """A table read with the Delta version it was read at (``None`` for non-Delta sources)."""

    df: DataFrame
    version: int | None


def is_delta_table(spark: SparkSession, path: str) -> bool:
    from delta.tables import DeltaTable

    return DeltaTable.isDeltaTable(spark, path)


def table_version(spark: SparkSession, path: str) -> int | None:
    """Current version of a Delta table, or None if there is no table at ``path``."""
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        return None
    row = DeltaTable.forPath(spark, path).history(1).select("version").first()
    return int(row["version"]) if row else None


def read_table(spark: SparkSession, ref: TableRef, version: int | None = None) -> ReadResult:
    """Read an input table, pinning the Delta version so every stage of a job sees the same snapshot."""
    if ref.format == "delta":
        pinned = version if version is not None else table_version(spark, ref.path)
        if pinned is None:
            raise FileNotFoundError(f"no Delta table at {ref.path}")
        df = spark.read.format("delta").option("versionAsOf", pinned).load(ref.path)
        log.info("read %s at version %s", ref.path, pinned)
        return ReadResult(df, pinned)
    df = spark.read.format(ref.format).load(ref.path)
    log.info("read %s (%s)", ref.path, ref.format)
    return ReadResult(df, None)


def read_output(spark: SparkSession, path: str, as_of: dt.date | None = None) -> DataFrame | None:
    """An output table (optionally one as-of slice), or None when it does not exist yet."""
    if not is_delta_table(spark, path):
        return None
    df = spark.read.format("delta").load(path)
    if as_of is not None:
        import pyspark.sql.functions as F

        df = df.where(F.col("as_of_date") == F.lit(as_of))
    return df


def previous_as_of(spark: SparkSession, path: str, as_of: dt.date) -> dt.date | None:
    """The latest snapshot date strictly before ``as_of`` in an output table (small: one row per date)."""
    import pyspark.sql.functions as F

    df = read_output(spark, path)
    if df is None:
        return None
    row = df.where(F.col("as_of_date") < F.lit(as_of)).agg(F.max("as_of_date").alias("d")).first()
    return row["d"] if row else None


def qualify(path: str) -> str:
    """An absolute location: local relative paths resolve against the working directory, URIs stay as they are."""
    if "://" in path or path.startswith("dbfs:"):
        return path
    return os.path.abspath(path)


def ensure_table(
    spark: SparkSession,
    path: str,
    schema: T.StructType,
    partition_by: tuple[str, ...] = (),
    properties: Mapping[str, str] | None = None,
) -> None:
    """Create an empty Delta table with its partitioning and properties unless one exists.

    Properties such as Change Data Feed are set before the first row lands, so the feed covers every version.
    """
    from delta.tables import DeltaTable

    builder = DeltaTable.createIfNotExists(spark).location(qualify(path)).addColumns(schema)
    if partition_by:
        builder = builder.partitionedBy(*partition_by)
    for key, value in (properties or {}).items():
        builder = builder.property(key, value)
    builder.execute()


def write_snapshot(
    df: DataFrame,
    path: str,
    as_of: dt.date,
    *,
    partition_by: tuple[str, ...] = ("as_of_date",),
    properties: Mapping[str, str] | None = None,
    max_records_per_file: int | None = None,
) -> int:
    """Atomically replace the ``as_of_date`` slice of a Delta table with ``df`` in one commit.

    Returns:
        The table version this write committed.
    """
    spark = df.sparkSession
    ensure_table(spark, path, df.schema, partition_by, properties)
    writer = df.write.format("delta").mode("overwrite").option("replaceWhere", f"as_of_date = DATE'{as_of}'")
    if max_records_per_file:
        writer = writer.option("maxRecordsPerFile", max_records_per_file)
    writer.save(qualify(path))
    version = table_version(spark, path)
    log.info("wrote %s as_of_date=%s -> version %s", path, as_of, version)
    return int(version) if version is not None else -1


def overwrite_table(df: DataFrame, path: str, partition_by: tuple[str, ...] = ()) -> int:
    """Replace a whole table (synthetic inputs, reference data) in one commit."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)
    version = table_version(df.sparkSession, path)
    log.info("wrote %s -> version %s", path, version)
    return int(version) if version is not None else -1

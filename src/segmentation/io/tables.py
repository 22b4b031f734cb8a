"""Reading and writing tables: input reads pinned to a Delta version, output snapshots replaced atomically.

Outputs are snapshots keyed by ``as_of_date``: each write replaces exactly its date's slice in one Delta commit
(``replaceWhere``), so a rerun or an orchestrator retry leaves the same content and never duplicates rows, and readers
of other dates are untouched. No business rule lives here.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from segmentation.config import TableRef
from segmentation.io.location import Location
from segmentation.io.location import qualify as qualify  # re-exported: callers import it from here

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadResult:
    """A table read with the Delta version it was read at (``None`` for non-Delta sources)."""

    df: DataFrame
    version: int | None


def is_delta_table(spark: SparkSession, path: str | Location) -> bool:
    """Whether the table exists: a Delta table at a path, or a table of that name in the catalog."""
    return Location.of(path).exists(spark)


def table_version(spark: SparkSession, path: str | Location) -> int | None:
    """Current version of a Delta table (by path or name), or None if there is no such table."""
    return Location.of(path).version(spark)


def read_table(spark: SparkSession, ref: TableRef | Location, version: int | None = None) -> ReadResult:
    """Read an input table (by path or name), pinning the Delta version so every stage of a job sees one snapshot."""
    loc = Location.of(ref)
    if loc.format == "delta":
        pinned = version if version is not None else loc.version(spark)
        if pinned is None:
            raise FileNotFoundError(f"no Delta table at {loc}")
        df = loc.read(spark, pinned)
        log.info("read %s at version %s", loc, pinned)
        return ReadResult(df, pinned)
    df = loc.read(spark)
    log.info("read %s (%s)", loc, loc.format)
    return ReadResult(df, None)


def read_output(spark: SparkSession, path: str | Location, as_of: dt.date | None = None) -> DataFrame | None:
    """An output table (optionally one as-of slice), or None when it does not exist yet."""
    loc = Location.of(path)
    if not loc.exists(spark):
        return None
    df = loc.read(spark)
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


# Delta errors raised when another writer committed first; the losing transaction changed nothing and may retry.
CONCURRENT_COMMIT_ERRORS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "DELTA_CONCURRENT_",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
)
DEFAULT_COMMIT_RETRIES = 5


def is_concurrent_commit_error(exc: BaseException) -> bool:
    """Whether ``exc`` is Delta's optimistic-concurrency conflict (safe to retry: nothing was committed)."""
    text = f"{type(exc).__name__} {exc}"
    return any(marker in text for marker in CONCURRENT_COMMIT_ERRORS)


def is_concurrent_creation_error(exc: BaseException) -> bool:
    """Whether creating a table met a folder another run is creating right now (its first commit not yet visible)."""
    text = f"{type(exc).__name__} {exc}"
    # Both runs wrote version 0 of the log at once: the loser's put-if-absent fails; on retry the table exists.
    markers = ("DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION", "FileAlreadyExistsException")
    return is_concurrent_commit_error(exc) or any(marker in text for marker in markers)


def _with_commit_retries(action, what: str, retries: int, retryable=is_concurrent_commit_error):
    """Run ``action`` again (with a growing, jittered pause) while it loses commit races, at most ``retries`` times."""
    import random
    import time

    attempt = 0
    while True:
        try:
            return action()
        except Exception as exc:
            if attempt >= retries or not retryable(exc):
                raise
            attempt += 1
            pause = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
            log.warning("%s lost a race with a concurrent commit; retry %d/%d in %.1fs", what, attempt, retries, pause)
            time.sleep(pause)


def _constrained_schema(schema: T.StructType, not_null: Collection[str]) -> T.StructType:
    return T.StructType(
        [T.StructField(f.name, f.dataType, f.nullable and f.name not in not_null, f.metadata) for f in schema.fields]
    )


def ensure_table(
    spark: SparkSession,
    path: str | Location,
    schema: T.StructType,
    partition_by: tuple[str, ...] = (),
    properties: Mapping[str, str] | None = None,
    *,
    not_null: Collection[str] = (),
    checks: Mapping[str, str] | None = None,
    retries: int = DEFAULT_COMMIT_RETRIES,
) -> None:
    """Create an empty Delta table with its partitioning, properties and constraints unless one exists.

    Properties such as Change Data Feed are set before the first row lands, so the feed covers every version. NOT NULL
    columns and CHECK constraints (``delta.constraints.<name>``) are part of the creating commit, so no reader ever sees
    the table without them and no data can slip in between. Two runs creating the same table at once is not an
    error: the loser's retry finds the winner's table and leaves it as it is. A table by name is created in the catalog
    (its schema too when missing) as ``CREATE TABLE ... USING DELTA``; one by path as ``delta.`<path>```.
    """
    loc = Location.of(path)

    def create() -> None:
        if loc.exists(spark):
            return
        constrained = _constrained_schema(schema, set(not_null))
        loc.create(spark, constrained, partition_by, properties, not_null=not_null, checks=checks)

    _with_commit_retries(create, f"creation of {loc}", retries, retryable=is_concurrent_creation_error)


def _committed_version(spark: SparkSession, path: str | Location, marker: str) -> int:
    """The version of the commit tagged ``marker``: exact even when other runs committed right after it."""
    import pyspark.sql.functions as F

    row = (
        Location.of(path)
        .history(spark, 100)
        .where(F.col("userMetadata") == F.lit(marker))
        .agg(F.max("version").alias("v"))
        .first()
    )
    if row is None or row["v"] is None:
        version = table_version(spark, path)
        return int(version) if version is not None else -1
    return int(row["v"])


def write_snapshot(
    df: DataFrame,
    path: str | Location,
    as_of: dt.date,
    *,
    partition_by: tuple[str, ...] = ("as_of_date",),
    properties: Mapping[str, str] | None = None,
    max_records_per_file: int | None = None,
    not_null: Collection[str] = (),
    checks: Mapping[str, str] | None = None,
    retries: int = DEFAULT_COMMIT_RETRIES,
) -> int:
    """Atomically replace the ``as_of_date`` slice of a Delta table with ``df`` in one commit.

    Runs for other dates may write the same table at the same time: their slices are disjoint partitions, and a
    commit that still loses a race is retried (bounded by ``retries``). Two runs for the same date each replace the
    whole slice, so the last commit wins and the slice is always one run's rows, never a mix.

    Returns:
        The table version this write committed (not a later one another run committed meanwhile).
    """
    import uuid

    spark = df.sparkSession
    ensure_table(spark, path, df.schema, partition_by, properties, not_null=not_null, checks=checks, retries=retries)
    marker = f"segmentation as_of_date={as_of} write={uuid.uuid4().hex}"
    writer = (
        df.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"as_of_date = DATE'{as_of}'")
        .option("userMetadata", marker)
    )
    if max_records_per_file:
        writer = writer.option("maxRecordsPerFile", max_records_per_file)
    loc = Location.of(path)
    _with_commit_retries(lambda: loc.save(writer), f"write of {loc} as_of_date={as_of}", retries)
    version = _committed_version(spark, path, marker)
    log.info("wrote %s as_of_date=%s -> version %s", path, as_of, version)
    return version


def overwrite_table(df: DataFrame, path: str | Location, partition_by: tuple[str, ...] = ()) -> int:
    """Replace a whole table (synthetic inputs, reference data), by path or by name, in one commit."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    Location.of(path).save(writer)
    version = table_version(df.sparkSession, path)
    log.info("wrote %s -> version %s", path, version)
    return int(version) if version is not None else -1


def write_text(path: str, text: str) -> str:
    """Write a small text artefact (the HTML report) to a local path, creating its folder; returns the absolute path.

    The file is written beside its final name and renamed, so a browser or a mail job never sees half a report.
    """
    target = os.path.abspath(path)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    partial = f"{target}.partial"
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(partial, target)
    log.info("wrote %s (%d bytes)", target, len(text.encode("utf-8")))
    return target

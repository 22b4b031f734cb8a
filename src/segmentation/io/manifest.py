"""The run manifest ``segment_runs``: which as-of dates each job completed, and at which table versions.

Every job appends one row when it ends (``complete`` with the versions it wrote, or ``failed``); readers take only
dates with a complete row, at the versions it lists, so a run that crashed halfway or is still writing is invisible.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from segmentation.io.commits import DEFAULT_COMMIT_RETRIES, save_committed
from segmentation.io.location import Location
from segmentation.io.tables import _committed_version, ensure_table, read_output

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------------------
RUN_COMPLETE = "complete"
RUN_FAILED = "failed"

RUNS_SCHEMA = T.StructType(
    [
        T.StructField("as_of_date", T.DateType()),
        T.StructField("job", T.StringType()),
        T.StructField("run_id", T.StringType()),
        T.StructField("status", T.StringType()),
        T.StructField("started_at", T.TimestampType()),
        T.StructField("finished_at", T.TimestampType()),
        T.StructField("table_versions", T.MapType(T.StringType(), T.LongType())),
        T.StructField("input_versions", T.MapType(T.StringType(), T.LongType())),
        T.StructField("message", T.StringType()),
    ]
)


@dataclass(frozen=True)
class RunRecord:
    """One row of the run manifest. The timestamps are for people reading the log; no output depends on them."""

    as_of: dt.date
    job: str
    run_id: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime
    table_versions: Mapping[str, int]
    input_versions: Mapping[str, int | None]
    message: str | None = None


def append_run(
    spark: SparkSession,
    path: str,
    record: RunRecord,
    *,
    not_null: Collection[str] = (),
    checks: Mapping[str, str] | None = None,
    retries: int = DEFAULT_COMMIT_RETRIES,
) -> int:
    """Append one run to the manifest table (created on first use); returns the manifest version committed.

    The manifest is append-only: a failed attempt and the rerun that completes it are two rows, so the history of
    a date stays visible. Appends of concurrent runs do not conflict.
    """
    import uuid

    row = (
        record.as_of,
        record.job,
        record.run_id,
        record.status,
        record.started_at,
        record.finished_at,
        {k: int(v) for k, v in record.table_versions.items()},
        {k: (None if v is None else int(v)) for k, v in record.input_versions.items()},
        record.message,
    )
    df = spark.createDataFrame([row], RUNS_SCHEMA)
    ensure_table(spark, path, RUNS_SCHEMA, not_null=not_null, checks=checks, retries=retries)
    marker = f"segmentation run_id={record.run_id} status={record.status} write={uuid.uuid4().hex}"
    writer = df.coalesce(1).write.format("delta").mode("append").option("userMetadata", marker)
    location = Location.of(path)
    version = save_committed(
        spark,
        lambda: location.save(writer),
        f"manifest append to {location}",
        retries,
        read_back=lambda: _committed_version(spark, path, marker),
    )
    log.info("manifest %s: %s %s as_of_date=%s run %s", path, record.job, record.status, record.as_of, record.run_id)
    return version


def complete_runs(spark: SparkSession, manifest_path: str, job: str = "build") -> DataFrame | None:
    """The latest complete run of ``job`` per as-of date (one row per date), or None before the first run.

    Latest is by finish time, then run id: a rerun that completes after an earlier complete run supersedes it.
    """
    import pyspark.sql.functions as F

    runs = read_output(spark, manifest_path)
    if runs is None:
        return None
    latest = F.max_by(F.struct(*[F.col(c) for c in runs.columns]), F.struct("finished_at", "run_id"))
    return (
        runs.where((F.col("job") == F.lit(job)) & (F.col("status") == F.lit(RUN_COMPLETE)))
        .groupBy("as_of_date")
        .agg(latest.alias("r"))
        .select("r.*")
    )


def complete_as_of_dates(spark: SparkSession, manifest_path: str, job: str = "build") -> list[dt.date]:
    """As-of dates the manifest marks complete for ``job``, ascending: the only dates downstream should read."""
    runs = complete_runs(spark, manifest_path, job)
    if runs is None:
        return []
    return sorted(r["as_of_date"] for r in runs.select("as_of_date").collect())


def read_complete_snapshot(
    spark: SparkSession,
    manifest_path: str,
    table: str,
    table_path: str,
    as_of: dt.date,
    job: str | None = None,
) -> DataFrame:
    """The ``as_of`` slice of an output table exactly as the latest complete run of that date left it.

    The latest complete run (of any job, or of ``job``) that wrote ``table`` for the date decides the version: after
    ``build`` then ``score`` a reader sees the scored snapshot, after a later rebuild the rebuilt one. The table is
    read at that version (Delta time travel), so a run that crashed halfway, or is still writing, is invisible.

    Raises:
        LookupError: no complete run of the date wrote ``table``.
    """
    import pyspark.sql.functions as F

    runs = read_output(spark, manifest_path)
    row = None
    if runs is not None:
        wrote = runs.where(
            (F.col("as_of_date") == F.lit(as_of))
            & (F.col("status") == F.lit(RUN_COMPLETE))
            & F.map_contains_key("table_versions", F.lit(table))
        )
        if job is not None:
            wrote = wrote.where(F.col("job") == F.lit(job))
        row = wrote.orderBy(F.desc("finished_at"), F.desc("run_id")).select("run_id", "table_versions").first()
    if row is None:
        who = f"{job} run" if job else "run"
        raise LookupError(f"no complete {who} for as_of_date={as_of} in {manifest_path} wrote {table}")
    version = row["table_versions"][table]
    df = Location.of(table_path).read(spark, int(version))
    return df.where(F.col("as_of_date") == F.lit(as_of))

"""What changed in an input table between two Delta versions, and writes of the incremental layers.

A daily build reads only the files the orders table gained since the version the last complete build read. Delta
records a snapshot as a set of data files: rows appended by later commits live in files the earlier snapshot did not
have, and a commit that deleted, updated or rewrote rows (DELETE, UPDATE, MERGE, OPTIMIZE, an overwrite) removed
files the earlier snapshot had. So the file sets of the two snapshots tell both what to read and whether reading only
that is correct. File lists are table metadata (one entry per file), never rows.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import posixpath
from dataclasses import dataclass

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from segmentation.config import TableRef
from segmentation.io.commits import save_committed
from segmentation.io.location import Location
from segmentation.io.manifest import RUN_COMPLETE
from segmentation.io.tables import read_output

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileChanges:
    """Data files ``to_version`` has and ``from_version`` lacked, and files ``from_version`` had that are gone."""

    from_version: int
    to_version: int
    added: frozenset[str]
    removed: frozenset[str]

    @property
    def is_append_only(self) -> bool:
        return not self.removed


def _file_names(spark: SparkSession, ref: TableRef, version: int) -> frozenset[str]:
    df = Location.of(ref).read(spark, version)
    return frozenset(posixpath.basename(f) for f in df.inputFiles())


def file_changes(spark: SparkSession, ref: TableRef, from_version: int, to_version: int) -> FileChanges:
    """The data files added and removed between two versions of a Delta table (by file name: unique in a table)."""
    before, after = _file_names(spark, ref, from_version), _file_names(spark, ref, to_version)
    return FileChanges(from_version, to_version, after - before, before - after)


def read_files(spark: SparkSession, ref: TableRef, version: int, names: frozenset[str]) -> DataFrame:
    """The rows of ``version`` that live in the data files ``names`` (Delta's ``_metadata.file_name``)."""
    df = Location.of(ref).read(spark, version)
    # A filter (not a join) keeps the relation's ``_metadata`` columns available to later readers of the rows.
    return df.where(F.col("_metadata.file_name").isin(sorted(names)))


def latest_complete_run(spark: SparkSession, manifest_path: str, job: str, wrote: str | None = None) -> dict | None:
    """The most recently finished complete run of ``job`` (any as-of date) as a dict, or None; with ``wrote``, the
    latest one that wrote that table (a backfill build, for one, keeps the customer state as it was)."""
    runs = read_output(spark, manifest_path)
    if runs is None:
        return None
    done = (F.col("job") == F.lit(job)) & (F.col("status") == F.lit(RUN_COMPLETE))
    if wrote is not None:
        done = done & F.map_contains_key("table_versions", F.lit(wrote))
    row = runs.where(done).orderBy(F.desc("finished_at"), F.desc("run_id")).first()
    return None if row is None else row.asDict(recursive=True)


def read_version(spark: SparkSession, path: str | Location, version: int, as_of: dt.date | None = None) -> DataFrame:
    """An output table (by path or name) at a recorded version (optionally its ``as_of`` slice)."""
    df = Location.of(path).read(spark, int(version))
    return df if as_of is None else df.where(F.col("as_of_date") == F.lit(as_of))


def replace_rows(
    df: DataFrame,
    path: str | Location,
    predicate: str,
    *,
    partition_by: tuple[str, ...] = (),
    metadata: dict | None = None,
    retries: int = 5,
) -> int:
    """Atomically replace the rows matching ``predicate`` (every row of ``df`` must match it) in one commit.

    Creates the table on first use. Rows a crashed run left behind match the predicate too, so they are replaced
    rather than duplicated. Returns the version committed.
    """
    spark = df.sparkSession
    location = Location.of(path)
    exists = location.exists(spark)
    writer = df.write.format("delta").mode("overwrite")
    if metadata is not None:
        writer = writer.option("userMetadata", json.dumps(metadata, sort_keys=True, default=str))
    if exists and predicate != "true":
        writer = writer.option("replaceWhere", predicate)
    else:  # the whole table: a full rebuild may also change its columns
        writer = writer.option("overwriteSchema", "true").partitionBy(*partition_by)
    what = f"write of {location} where {predicate}"
    version = save_committed(
        spark, lambda: location.save(writer), what, retries, read_back=lambda: location.version(spark)
    )
    log.info("wrote %s where %s -> version %s", location, predicate, version)
    return int(version)


def commit_metadata(spark: SparkSession, path: str | Location, version: int) -> dict | None:
    """The JSON ``userMetadata`` a ``replace_rows`` commit stored (what the layer was built from), or None."""
    location = Location.of(path)
    if not location.exists(spark):
        return None
    row = location.history(spark).where(F.col("version") == F.lit(int(version))).select("userMetadata").first()
    if row is None or not row["userMetadata"]:
        return None
    try:
        return json.loads(row["userMetadata"])
    except ValueError:
        return None


def append_rows(df: DataFrame, path: str | Location) -> int:
    """Append rows to an input table (a daily feed), by path or name; returns the version committed."""
    location = Location.of(path)
    spark = df.sparkSession
    writer = df.write.format("delta").mode("append")
    version = save_committed(
        spark, lambda: location.save(writer), f"append to {location}", 0, lambda: location.version(spark)
    )
    return int(version)

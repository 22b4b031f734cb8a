"""Current-state tables maintained by ``MERGE``: only rows that differ are written, so the Change Data Feed is exactly
what changed.

A state table is keyed by one column and carries the as-of date it is up to date with as a table property
(``segmentation.state_as_of_date``). A merge for an earlier date than that (a backfill) is skipped: the state is never
moved back in time. The property is set in its own commit just before the MERGE when the date advances, so a run that
dies between the two leaves a state that claims the newer date; rerunning that date (what an orchestrator retry does)
completes it, and no backfill in between can apply an older state over it.

Delta writes no commit for a MERGE that changes no row (checked with Delta 4.4: neither an empty source nor a source
whose every row equals its target row commits), so a rerun of the same date leaves the table version, and the feed,
as they were. No business rule lives here.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from segmentation.io.commits import DEFAULT_COMMIT_RETRIES, with_commit_retries
from segmentation.io.location import Location
from segmentation.io.tables import ensure_table, table_version

log = logging.getLogger(__name__)

STATE_PROPERTY = "segmentation.state_as_of_date"
_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


@dataclass(frozen=True)
class MergeResult:
    """What a state MERGE did.

    Attributes:
        version: the table version after the merge (its commit, or the current version when nothing was committed).
        committed: whether the MERGE wrote a commit (false when no row differed, or when skipped).
        skipped: the table's state is ahead of the as-of date (a backfill): nothing was done.
        state_as_of: the state date of the table before this merge.
        metrics: Delta's operation metrics of the MERGE commit (rows updated, inserted, copied, files added...).
    """

    version: int
    committed: bool
    skipped: bool
    state_as_of: dt.date | None
    metrics: Mapping[str, int] = field(default_factory=dict)


def state_as_of(spark: SparkSession, path: str | Location) -> dt.date | None:
    """The as-of date a state table is up to date with (its ``segmentation.state_as_of_date``), None without one."""
    loc = Location.of(path)
    if not loc.exists(spark):
        return None
    properties = spark.sql(f"DESCRIBE DETAIL {loc.sql}").select("properties").first()["properties"] or {}
    value = properties.get(STATE_PROPERTY)
    return dt.date.fromisoformat(value) if value else None


def _set_state_as_of(spark: SparkSession, path: str | Location, as_of: dt.date) -> None:
    spark.sql(f"ALTER TABLE {Location.of(path).sql} SET TBLPROPERTIES ('{STATE_PROPERTY}' = '{as_of.isoformat()}')")


def _commit_of(spark: SparkSession, path: str | Location, marker: str) -> tuple[int, dict[str, int]] | None:
    """The version and operation metrics of the commit tagged ``marker``, None when there is none."""
    import pyspark.sql.functions as F

    row = (
        Location.of(path)
        .history(spark, 50)
        .where(F.col("userMetadata") == F.lit(marker))
        .select("version", "operationMetrics")
        .first()
    )
    if row is None:
        return None
    metrics = {k: int(v) for k, v in (row["operationMetrics"] or {}).items() if str(v).lstrip("-").isdigit()}
    return int(row["version"]), metrics


def _differs(columns: Collection[str]) -> str:
    return " OR ".join(f"NOT (t.`{c}` <=> s.`{c}`)" for c in columns)


def merge_state(
    source_df: DataFrame,
    path: str | Location,
    key: str,
    as_of: dt.date,
    *,
    properties: Mapping[str, str] | None = None,
    not_null: Collection[str] = (),
    checks: Mapping[str, str] | None = None,
    retries: int = DEFAULT_COMMIT_RETRIES,
) -> MergeResult:
    """Upsert ``source_df`` into the state table at ``path`` by ``key``, for ``as_of``.

    A source row whose target row is equal in every column (null-safe) is not written, so only real changes reach the
    table and its feed; a source row with a new key is inserted. Source columns the table lacks are added (schema
    evolution); the source must carry every column of the table. The table is created on first use with
    ``properties`` (Change Data Feed, deletion vectors) and its constraints. A commit that loses a race with another
    writer is retried, the state date checked again first. The MERGE is SQL (``MERGE [WITH SCHEMA EVOLUTION] INTO``
    from a temporary view of the source), so it runs by path or by name, classic or over Spark Connect.

    Returns:
        What was done; ``skipped`` when the table's state date is after ``as_of`` (nothing is written then).
    """
    spark = source_df.sparkSession
    loc = Location.of(path)
    source = f"segmentation_merge_source_{uuid.uuid4().hex}"
    # A state row's values may become null later (a customer who leaves), whatever the first source's plan says:
    # the table's NOT NULL columns are ``not_null`` only.
    schema = T.StructType([T.StructField(f.name, f.dataType, True, f.metadata) for f in source_df.schema.fields])
    ensure_table(spark, path, schema, (), properties, not_null=not_null, checks=checks, retries=retries)
    marker = f"segmentation merge as_of_date={as_of} write={uuid.uuid4().hex}"
    before: list[dt.date | None] = []
    rows: list[int] = []

    def attempt() -> bool:
        state = state_as_of(spark, path)
        before.append(state)
        if state is not None and as_of < state:
            return False
        if state is None or as_of > state:
            _set_state_as_of(spark, path, as_of)
        columns = [c for c in source_df.columns if c != key]
        evolve = " WITH SCHEMA EVOLUTION" if set(source_df.columns) - set(loc.read(spark).columns) else ""
        statement = (
            f"MERGE{evolve} INTO {loc.sql} t USING {source} s ON t.`{key}` = s.`{key}` "
            f"WHEN MATCHED AND ({_differs(columns) if columns else 'false'}) THEN UPDATE SET * "
            "WHEN NOT MATCHED THEN INSERT *"
        )
        # The source is computed once per attempt, before the MERGE: Delta would otherwise materialise it itself,
        # re-planning a join with the target inside the command (4x slower at 1M customers), and an empty source
        # needs no MERGE at all (a rerun whose rows all equal the table).
        cached = source_df.storageLevel != StorageLevel.NONE  # the caller's cache is left to the caller
        held = source_df if cached else source_df.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            rows.append(held.count())
            if rows[-1] == 0:
                return True
            held.createOrReplaceTempView(source)
            previous = spark.conf.get(_USER_METADATA, None)
            spark.conf.set(_USER_METADATA, marker)
            try:
                spark.sql(statement)
            finally:
                if previous is None:
                    spark.conf.unset(_USER_METADATA)
                else:
                    spark.conf.set(_USER_METADATA, previous)
                spark.catalog.dropTempView(source)
        finally:
            if not cached:
                held.unpersist()
        return True

    applied = with_commit_retries(attempt, f"merge into {loc} as_of_date={as_of}", retries)
    state = before[0] if before else None
    if not applied:
        log.warning(
            "%s is up to date with %s, after as_of_date=%s: MERGE skipped (a backfill never moves the state back)",
            path,
            before[-1],
            as_of,
        )
        return MergeResult(table_version(spark, path) or 0, committed=False, skipped=True, state_as_of=before[-1])
    commit = _commit_of(spark, path, marker)
    if commit is None:
        version = table_version(spark, path) or 0
        log.info(
            "merge into %s as_of_date=%s: %s candidate rows, none changed: no commit (version %s)",
            path,
            as_of,
            rows[-1] if rows else 0,
            version,
        )
        return MergeResult(version, committed=False, skipped=False, state_as_of=state)
    version, metrics = commit
    log.info(
        "merged into %s as_of_date=%s -> version %s (%s updated, %s inserted)",
        path,
        as_of,
        version,
        metrics.get("numTargetRowsUpdated", 0),
        metrics.get("numTargetRowsInserted", 0),
    )
    return MergeResult(version, committed=True, skipped=False, state_as_of=state, metrics=metrics)

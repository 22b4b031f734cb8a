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
from segmentation.errors import InputError
from segmentation.io.commits import (
    DEFAULT_COMMIT_RETRIES,
    is_concurrent_creation_error,
    save_committed,
    with_commit_retries,
)
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


def read_table(
    spark: SparkSession, ref: TableRef | Location, version: int | None = None, *, name: str | None = None
) -> ReadResult:
    """Read an input table (by path or name), pinning the Delta version so every stage of a job sees one snapshot.

    A table that cannot be read stops the job here (``InputError``, one line naming the table, ``name`` being its
    input name such as ``orders``, and the likely fix): a missing path, a Parquet folder read as Delta, a broken log,
    or data files its log lists that are gone.
    """
    loc = Location.of(ref)
    what = f"{name} table at {loc}" if name else f"table {loc}"
    key = f"inputs.{name}" if name else "its configured location"
    try:
        if loc.format != "delta":
            df = loc.read(spark)
            df.schema  # noqa: B018 - resolves the source now, so a missing one fails here
            log.info("read %s (%s)", loc, loc.format)
            return ReadResult(df, None)
        pinned = version if version is not None else loc.version(spark)
        if pinned is None:
            raise InputError(_not_delta(spark, loc, what, key))
        df = loc.read(spark, pinned)
        df.schema  # noqa: B018 - resolves the snapshot now, so a broken log fails here and not in a later stage
        missing = _missing_files(spark, df.inputFiles())
    except InputError:
        raise
    except Exception as exc:
        if "PATH_NOT_FOUND" in str(exc):
            raise InputError(f"{what} does not exist: check {key}") from exc
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{what} cannot be read ({detail}): check {key}, or restore the table") from exc
    if missing:
        raise InputError(
            f"a data file of an input table is missing: the {what} lists {len(missing)} data file(s) at version "
            f"{pinned} that are gone (first: {missing[0]}); restore them, roll back with RESTORE TABLE {loc.sql} TO "
            f"VERSION AS OF <an earlier version>, or drop them from the log with FSCK REPAIR TABLE {loc.sql}"
        )
    log.info("read %s at version %s", loc, pinned)
    return ReadResult(df, pinned)


def _not_delta(spark: SparkSession, loc: Location, what: str, key: str) -> str:
    """Why there is no Delta table at ``loc``, and what to do: the message of the ``InputError``."""
    if loc.is_name:
        return f"{what} does not exist in the catalog: check {key}"
    try:
        spark.read.format("parquet").load(loc.path).schema  # noqa: B018 - lists the folder, reads one footer
    except Exception as exc:
        if "PATH_NOT_FOUND" in str(exc):
            return f"{what} does not exist: check {key}"
        return f"{what} is not a Delta table (no _delta_log folder): point {key} at a Delta table"
    return (
        f"{what} is a Parquet folder, not a Delta table (no _delta_log folder): set {key}.format: parquet to read it "
        f"as it is, or convert it once with CONVERT TO DELTA parquet.`{qualify(loc.path)}`"
    )


def _missing_files(spark: SparkSession, files: list[str]) -> list[str]:
    """The data files of a snapshot that are not in storage: checked locally, or by one listing per folder through
    Hadoop on a classic session (over Spark Connect remote files are not checked here)."""
    from urllib.parse import unquote, urlparse

    missing, remote = [], {}
    for uri in files:
        parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):
            if not os.path.exists(unquote(parsed.path)):
                missing.append(uri)
        else:
            remote.setdefault(uri.rsplit("/", 1)[0], []).append(uri)
    jvm = getattr(spark, "_jvm", None)
    if remote and jvm is not None:
        conf = spark._jsc.hadoopConfiguration()
        for folder, uris in remote.items():
            where = jvm.org.apache.hadoop.fs.Path(folder)
            fs = where.getFileSystem(conf)
            found = {unquote(str(s.getPath().getName())) for s in fs.listStatus(where)} if fs.exists(where) else set()
            missing += [u for u in uris if unquote(u.rsplit("/", 1)[1]) not in found]
    return missing


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

    with_commit_retries(create, f"creation of {loc}", retries, retryable=is_concurrent_creation_error)


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

    Columns ``df`` has and the table lacks are added (schema evolution: earlier snapshots read them as null), and
    CHECK constraints whose expression changed are replaced first (:func:`update_checks`). Whether a frame fits its
    table at all is for :func:`schema_change` to say before a job writes anything.

    Returns:
        The table version this write committed (not a later one another run committed meanwhile).
    """
    import uuid

    spark = df.sparkSession
    ensure_table(spark, path, df.schema, partition_by, properties, not_null=not_null, checks=checks, retries=retries)
    update_checks(spark, path, checks or {}, retries)
    marker = f"segmentation as_of_date={as_of} write={uuid.uuid4().hex}"
    writer = (
        df.write.format("delta")
        .mode("overwrite")
        .option("replaceWhere", f"as_of_date = DATE'{as_of}'")
        .option("mergeSchema", "true")
        .option("userMetadata", marker)
    )
    if max_records_per_file:
        writer = writer.option("maxRecordsPerFile", max_records_per_file)
    loc = Location.of(path)
    version = save_committed(
        spark,
        lambda: loc.save(writer),
        f"write of {loc} as_of_date={as_of}",
        retries,
        read_back=lambda: _committed_version(spark, path, marker),
    )
    log.info("wrote %s as_of_date=%s -> version %s", path, as_of, version)
    return version


@dataclass(frozen=True)
class SchemaChange:
    """What writing a frame does to an existing table: ``added`` columns, and ``problems`` that cannot be applied."""

    added: tuple[str, ...]
    problems: tuple[str, ...]


def table_schema(spark: SparkSession, path: str | Location) -> T.StructType | None:
    """The schema of the table at ``path`` (from its log, no data read), or None when there is no table."""
    loc = Location.of(path)
    return loc.read(spark).schema if loc.exists(spark) else None


def schema_change(existing: T.StructType, incoming: T.StructType) -> SchemaChange:
    """Compare a frame's schema with its table's. A new column is added by schema evolution; a column the frame no
    longer has, one whose type differs, or one named differently only in case (Delta names are case-insensitive) is
    a problem: readers of the table depend on it, and Delta cannot apply it without rewriting the table."""
    old = {f.name.lower(): f for f in existing.fields}
    new = {f.name.lower(): f for f in incoming.fields}
    problems = []
    for key, field in old.items():
        was = field.dataType.simpleString()
        if key not in new:
            problems.append(f"column '{field.name}' ({was}) would no longer be written")
        elif new[key].name != field.name:
            problems.append(f"column '{field.name}' would be written as '{new[key].name}'")
        elif new[key].dataType.simpleString() != was:
            problems.append(f"column '{field.name}' would change type from {was} to {new[key].dataType.simpleString()}")
    return SchemaChange(tuple(f.name for key, f in new.items() if key not in old), tuple(problems))


def table_checks(spark: SparkSession, path: str | Location) -> dict[str, str]:
    """The CHECK constraints of a table, ``{name: expression}`` (its ``delta.constraints.*`` properties)."""
    prefix = "delta.constraints."
    rows = spark.sql(f"SHOW TBLPROPERTIES {Location.of(path).sql}").collect()
    return {r["key"][len(prefix) :]: r["value"] for r in rows if r["key"].startswith(prefix)}


def same_check(stored: str | None, expression: str) -> bool:
    """Whether a stored CHECK expression is ``expression``: Delta re-spaces what ALTER TABLE ADD CONSTRAINT stores."""
    return stored is not None and "".join(stored.split()) == "".join(expression.split())


def update_checks(spark: SparkSession, path: str | Location, checks: Mapping[str, str], retries: int) -> None:
    """Add CHECK constraints the table lacks and replace those whose expression changed (DROP + ADD CONSTRAINT).

    A changed constraint the existing rows do not all satisfy (e.g. a score range narrowed from 1..5 to 1..3 while
    earlier snapshots hold 5s) is kept as it is, with a warning: earlier snapshots stay valid and the new rows, which
    the narrower rule allows, satisfy the wider one too. Constraints not named in ``checks`` are left alone.
    """
    if not checks:
        return
    loc = Location.of(path)
    current = table_checks(spark, loc)
    for name, expression in checks.items():
        old = current.get(name.lower(), current.get(name))
        if same_check(old, expression):
            continue
        if old is not None and loc.read(spark).where(f"NOT coalesce(({expression}), false)").limit(1).count():
            log.warning("%s: CHECK %s stays (%s): earlier rows do not satisfy (%s)", loc, name, old, expression)
            continue
        statements = [f"ALTER TABLE {loc.sql} DROP CONSTRAINT {name}"] if old is not None else []
        statements.append(f"ALTER TABLE {loc.sql} ADD CONSTRAINT {name} CHECK ({expression})")
        for statement in statements:
            with_commit_retries(lambda s=statement: spark.sql(s), f"{statement[:60]}...", retries)
        log.info("%s: CHECK %s is now (%s)%s", loc, name, expression, f", was ({old})" if old else "")


def overwrite_table(df: DataFrame, path: str | Location, partition_by: tuple[str, ...] = ()) -> int:
    """Replace a whole table (synthetic inputs, reference data), by path or by name, in one commit."""
    writer = df.write.format("delta").mode("overwrite").option("overwriteSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    spark = df.sparkSession
    version = save_committed(
        spark,
        lambda: Location.of(path).save(writer),
        f"write of {path}",
        0,
        read_back=lambda: table_version(spark, path),
    )
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

"""Validate once: the orders table -> ``orders_clean`` (every valid order once) and every rejected row.

A build ingests incrementally when it can: it starts from the last complete build recorded in ``segment_runs`` (the
orders version it read and the versions of ``orders_clean`` and ``orders_rejected`` it wrote), reads only the data
files the orders table gained since, validates those rows, and appends the valid ones to ``orders_clean``. Whatever
cannot be applied that way makes it re-ingest the whole table, with the reason logged and recorded in the manifest:

* no complete build yet, or ``--full-refresh``;
* the quality rules, the identity map, the exclusions or the FX rates changed (their fingerprint differs);
* the orders table lost files since (rows deleted or updated, an overwrite, a compaction);
* a newly arrived copy of an order already in ``orders_clean`` differs from it (the duplicate rule decides which copy
  is kept, over all copies).

Validation does not depend on the as-of date: orders after it are valid and wait in ``orders_clean`` until a later
as-of date includes them. So the rejected rows of the input are the base's plus the new files', and an incremental
ingest leaves exactly what a full one would (``ingested_version`` aside: the orders version a row was ingested at).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import pyspark.sql.functions as F
from pyspark.sql import DataFrame

from segmentation import io
from segmentation.pipelines import common
from segmentation.runs import JobRun
from segmentation.transforms import quality
from segmentation.transforms.columns import utc_day

log = logging.getLogger(__name__)

CLEAN_TABLE, REJECTED_TABLE = "orders_clean", "orders_rejected"
VERSION = "ingested_version"
PARTITION = "order_date"
RAW = common.RAW
KEY = ("channel", "order_id")
NORMALISED_KEY = ("_key_channel", "_key_order_id")


def _keys(q) -> list:
    """The order key normalised as the duplicate check normalises it (``quality.normalised``)."""
    return [quality.normalised(c, q).alias(n) for c, n in zip(KEY, NORMALISED_KEY, strict=True)]


@dataclass(frozen=True)
class Base:
    """What the last complete build left: the orders version it read and the versions of the layers it wrote."""

    as_of: object
    orders_version: int
    clean_version: int
    rejected_version: int
    fingerprint: str | None


@dataclass
class Ingested:
    """The outcome of ingestion: every valid order and every rejected row of the input, and how they were found."""

    mode: str
    reason: str
    rows_read: int
    orders_version: int
    batch_df: DataFrame  # the rows this run writes to orders_clean (all of them after a full ingest)
    rejected_df: DataFrame  # every rejected row of the input, with its reason
    counts: dict[str | None, int]  # rows per reason over the whole input; None = valid
    versions: dict[str, int | None]  # versions of every input table read
    base: Base | None
    references: common.References | None = None


def fingerprint(run: JobRun, versions: dict[str, int | None]) -> str:
    """What decides which rows are valid and how they are stitched and converted, apart from the orders themselves."""
    s = run.settings
    payload = {
        "quality": s.quality.model_dump(mode="json"),
        "inputs": {k: v for k, v in s.inputs.model_dump(mode="json").items() if k != "orders"},
        "versions": {k: v for k, v in sorted(versions.items()) if k != "orders"},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_base(run: JobRun) -> Base | None:
    """The last complete build's recorded versions, or None when there is none (or it predates the clean layer)."""
    out = run.settings.outputs
    last = io.latest_complete_run(run.spark, out.table_path("segment_runs"), "build")
    if last is None:
        return None
    tables, inputs = last["table_versions"] or {}, last["input_versions"] or {}
    if CLEAN_TABLE not in tables or REJECTED_TABLE not in tables or inputs.get("orders") is None:
        return None
    meta = io.commit_metadata(run.spark, out.table_path(CLEAN_TABLE), tables[CLEAN_TABLE]) or {}
    return Base(last["as_of_date"], int(inputs["orders"]), tables[CLEAN_TABLE], tables[REJECTED_TABLE], meta.get("fp"))


def _clean_rows(run: JobRun, tagged_df: DataFrame, refs: common.References, version: int) -> DataFrame:
    return (
        common.stitched(run, tagged_df, refs)
        .withColumn(VERSION, F.lit(version).cast("long"))
        .withColumn(PARTITION, F.date_from_unix_date(utc_day(F.col("order_ts"))))
    )


def _rejected_rows(tagged_df: DataFrame) -> DataFrame:
    return tagged_df.where(F.col(quality.REASON).isNotNull()).drop(*RAW.values())


def ingest(run: JobRun, full_refresh: bool = False) -> Ingested:
    """Read the inputs, decide the mode, validate what needs validating; writes nothing (see ``write``)."""
    spark, settings = run.spark, run.settings
    with run.stage("read orders") as info:
        orders = common.read_orders(spark, settings)
        info["orders_version"] = orders.version
    refs = common.read_references(run)
    versions = {"orders": orders.version, **refs.versions}
    fp = fingerprint(run, versions)
    base, reason = None if full_refresh else read_base(run), "--full-refresh" if full_refresh else ""
    changes = None
    if base is not None:
        reason = _incremental_blocker(run, base, fp, orders.version)
        if not reason:
            changes = io.file_changes(spark, settings.inputs.orders, base.orders_version, orders.version)
            if not changes.is_append_only:
                reason = f"{len(changes.removed)} data files of the orders table were removed or rewritten since"
    elif not full_refresh:
        reason = "no complete build with a clean layer yet"
    if not reason and changes is not None:
        result = _incremental(run, orders, refs, versions, base, changes, fp)
        if result is not None:
            return result
        reason = "a newly arrived copy of an order already ingested differs from it"
    return _full(run, orders, refs, versions, base, reason)


def _incremental_blocker(run: JobRun, base: Base, fp: str, version: int | None) -> str:
    if base.fingerprint != fp:
        return "the quality rules, identity map, exclusions or FX rates changed"
    if version is None or version < base.orders_version:
        return f"the orders table is at version {version}, before the {base.orders_version} already ingested"
    return ""


def _full(run, orders, refs, versions, base, reason) -> Ingested:
    log.info("ingest: full (%s)", reason)
    with run.stage("validate orders") as info:
        tagged = common.finish_rows(run, common.tag_rows(run, orders.df, refs), refs)
        rejected_df = run.persist(_rejected_rows(tagged))
        counts = quality.count_reasons(rejected_df, orders.df.count())
        clean_df = _clean_rows(run, tagged, refs, orders.version)
        info.update({"mode": "full", "read": sum(counts.values()), "rejected": sum(v for k, v in counts.items() if k)})
    rows = sum(counts.values())
    return Ingested("full", reason, rows, orders.version, clean_df, rejected_df, counts, versions, base, refs)


def _incremental(run, orders, refs, versions, base, changes, fp) -> Ingested | None:
    spark, settings = run.spark, run.settings
    out = settings.outputs
    with run.stage("validate new orders") as info:
        old_clean = io.read_version(spark, out.table_path(CLEAN_TABLE), base.clean_version)
        old_rejected = io.read_version(spark, out.table_path(REJECTED_TABLE), base.rejected_version, base.as_of)
        batch = common.conformed_orders(
            spark, settings, io.read_files(spark, settings.inputs.orders, orders.version, changes.added)
        )
        tagged = common.tag_rows(run, batch, refs)
        # A valid new row whose order is already clean: a duplicate if it is the same row, else the rule must decide.
        q = settings.quality
        new_df = quality.valid_orders(tagged, q).withColumns({raw: F.col(c) for c, raw in RAW.items()})
        old_df = old_clean.select(*_keys(q), _row_hash(old_clean).alias("_old"))
        compared = new_df.select(*_keys(q), _row_hash(new_df).alias("_new")).join(old_df, list(NORMALISED_KEY))
        verdict = compared.agg(
            F.count(F.when(F.col("_new") != F.col("_old"), 1)).alias("differ"), F.count(F.lit(1)).alias("known")
        ).first()
        if verdict["differ"]:
            return None
        if verdict["known"]:
            seen = compared.select(*NORMALISED_KEY).distinct().withColumn("_dup", F.lit(True))
            is_dup = F.col(quality.REASON).isNull() & F.col("_dup")
            tagged = (
                tagged.withColumns(dict(zip(NORMALISED_KEY, _keys(q), strict=True)))
                .join(F.broadcast(seen), list(NORMALISED_KEY), "left")
                .withColumn(
                    quality.REASON, F.when(is_dup, F.lit(quality.DUPLICATE_ORDER)).otherwise(F.col(quality.REASON))
                )
                .drop("_dup", *NORMALISED_KEY)
            )
        tagged = common.finish_rows(run, tagged, refs)
        batch_rejected = run.persist(_rejected_rows(tagged))
        batch_counts = quality.count_reasons(batch_rejected, batch.count())
        rejected_df = old_rejected.select(*batch_rejected.columns).unionByName(batch_rejected)
        counts = _merged_counts(old_rejected, batch_counts, orders.df.count())
        batch_clean = _clean_rows(run, tagged, refs, orders.version)
        rows = sum(batch_counts.values())
        info.update(
            {
                "mode": "incremental",
                "read": rows,
                "new_files": len(changes.added),
                "rejected": sum(v for k, v in batch_counts.items() if k),
            }
        )
    log.info(
        "ingest: incremental, %d new order rows in %d files since orders version %d",
        rows,
        len(changes.added),
        base.orders_version,
    )
    return Ingested(
        "incremental",
        f"{rows} new rows",
        rows,
        orders.version,
        batch_clean,
        rejected_df,
        counts,
        versions,
        base,
        refs,
    )


def _row_hash(df: DataFrame):
    """A digest of what makes two copies of an order the same row, as they arrived (normalised, not converted)."""
    customer = "channel_customer_id" if "channel_customer_id" in df.columns else "customer_id"
    columns = [F.col(customer).alias("customer"), "order_ts", *RAW.values(), "status", "category", "coupon_code"]
    text = F.to_json(F.struct(*columns), {"ignoreNullFields": "false"})
    return F.sha2(text, 256)


def _merged_counts(old_rejected: DataFrame, batch_counts: dict, input_rows: int) -> dict[str | None, int]:
    counts: dict[str | None, int] = {
        r[quality.REASON]: int(r["count"]) for r in quality.reason_counts(old_rejected).collect()
    }
    for reason, n in batch_counts.items():
        if reason is not None:
            counts[reason] = counts.get(reason, 0) + n
    counts[None] = input_rows - sum(v for k, v in counts.items() if k is not None)
    return counts


def write_clean(run: JobRun, ingested: Ingested, fp: str) -> DataFrame:
    """Append (after a full ingest, replace) ``orders_clean``; returns every clean order at the version written.

    Rows a crashed run left (ingested after the base) match the replaced predicate, so they are replaced, not doubled;
    the run that crashed never wrote a complete manifest row, so no reader took them as current.
    """
    path = run.settings.outputs.table_path(CLEAN_TABLE)
    predicate = "true" if ingested.mode == "full" else f"{VERSION} > {ingested.base.orders_version}"
    with run.stage("write orders_clean") as info:
        version = io.replace_rows(
            ingested.batch_df,
            path,
            predicate,
            partition_by=(PARTITION,),
            metadata={"fp": fp, "orders_version": ingested.orders_version},
            retries=run.settings.outputs.commit_retries,
        )
        run.wrote(CLEAN_TABLE, version)
        info.update({"mode": ingested.mode, "version": version})
    return io.read_version(run.spark, path, version)

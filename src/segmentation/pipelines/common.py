"""What jobs have in common: reading the inputs held to their contracts, validating orders, previous snapshots.

Each reader returns DataFrames with the Delta version it read, because the versions of everything a run read are what
its run id is derived from.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from segmentation import io, schema
from segmentation.config import Settings, TableRef
from segmentation.errors import InputError
from segmentation.runs import JobRun
from segmentation.transforms import currency, membership, population, quality
from segmentation.transforms.identity import (
    Resolution,
    conflict_rows,
    resolve_identities,
    stitch_identities,
    with_conflicts_rejected,
)

log = logging.getLogger(__name__)


def read_input(spark: SparkSession, ref: TableRef, contract: schema.Contract) -> io.ReadResult:
    """An input table at its current version, checked against its contract (stops naming every bad column)."""
    result = io.read_table(spark, ref, name=contract.name)
    schema.check_columns(result.df, contract, ref.path)
    return result


def read_orders(spark: SparkSession, settings: Settings) -> io.ReadResult:
    """Read the orders and hold them to their contract (stops before any write, naming each bad column)."""
    result = io.read_table(spark, settings.inputs.orders, name="orders")
    return io.ReadResult(conformed_orders(spark, settings, result.df), result.version)


def conformed_orders(spark: SparkSession, settings: Settings, raw_df: DataFrame) -> DataFrame:
    """Raw order rows checked against the contract, text parsed where configured, cast to the contract's types."""
    q = settings.quality
    text_columns = schema.TEXT_PARSED_ORDER_COLUMNS if q.parse_text_columns else ()
    schema.check_columns(raw_df, schema.ORDERS, settings.inputs.orders.path, text_columns)
    df = quality.with_parsed_text(raw_df, q.timestamp_formats)  # text where accepted, and non-decimal amounts
    latest = q.latest_version_column
    if latest is not None and latest not in raw_df.columns:
        raise schema.SchemaError(
            f"orders table at {settings.inputs.orders.path} has no column '{latest}' (quality.latest_version_column):"
            f" name one of {', '.join(raw_df.columns)}, or null"
        )
    keep = (quality.PARSE_REASON, *((latest,) if latest else ()))
    if settings.inputs.orders.format in ("delta", "parquet"):  # file sources: when each row's file was written
        df = df.withColumn(quality.WRITTEN_AT, F.col("_metadata.file_modification_time"))
        keep = (*keep, quality.WRITTEN_AT)
    return schema.conform(df, schema.ORDERS, keep)


def read_optional(spark: SparkSession, ref: TableRef | None, contract: schema.Contract) -> io.ReadResult | None:
    return None if ref is None else read_input(spark, ref, contract)


def read_registrations(spark: SparkSession, settings: Settings, as_of: dt.date) -> DataFrame | None:
    """Registrations from the optional profiles table (``customer_id``, ``registered_at``); None without one."""
    profiles = read_optional(spark, settings.inputs.profiles, schema.PROFILES)
    return None if profiles is None else population.registrations(profiles.df, as_of)


def read_previous(
    spark: SparkSession, settings: Settings, table: str, as_of: dt.date
) -> tuple[dt.date | None, DataFrame | None]:
    """The latest snapshot of output ``table`` before ``as_of`` (tier state, migration, share moves) or (None, None)."""
    path = settings.outputs.table_path(table)
    previous = io.previous_as_of(spark, path, as_of)
    if previous is None:
        return None, None
    return previous, io.read_output(spark, path, previous)


@dataclass
class References:
    """The reference tables a row's validity and customer depend on, with the identity map resolved."""

    identity: io.ReadResult | None
    fx: io.ReadResult | None
    exclusions: io.ReadResult | None
    resolution: Resolution | None
    versions: dict[str, int | None] = field(default_factory=dict)


def read_references(run: JobRun) -> References:
    """The identity map (resolved as a graph), FX rates and exclusions, each held to its contract, with versions."""
    spark, settings = run.spark, run.settings
    identity = read_optional(spark, settings.inputs.identity_map, schema.IDENTITY_MAP)
    fx = read_optional(spark, settings.inputs.fx_rates, schema.FX_RATES)
    exclusions = read_optional(spark, settings.inputs.exclusions, schema.EXCLUSIONS)
    resolution = None
    if identity is not None:
        with run.stage("resolve identities") as info:
            resolution = resolve_identities(identity.df, settings.quality)
            info["conflicts"] = resolution.conflicts
    versions: dict[str, int | None] = {"identity_map": identity.version if identity else None}
    versions.update({k: r.version for k, r in (("fx_rates", fx), ("exclusions", exclusions)) if r is not None})
    return References(identity, fx, exclusions, resolution, versions)


def tag_rows(run: JobRun, orders_df: DataFrame, refs: References) -> DataFrame:
    """Every row of ``orders_df`` with its reject reason from the row rules, exclusions and duplicates among these rows.

    Duplicates are found by a hash aggregate of the order keys first: while the repeated keys are few enough to
    broadcast (``quality.broadcast_duplicate_keys_max``), only their rows are ranked, so no order row is shuffled to
    validate it. Validity does not depend on the as-of date (see ``quality.reject_reason``).
    """
    q = run.settings.quality
    identity_df = refs.resolution.map_df if refs.resolution is not None else None
    keys_df = quality.exclusion_keys(refs.exclusions.df, identity_df, q) if refs.exclusions else None
    duplicates_df = run.persist(quality.duplicate_keys(orders_df, q))
    repeated_keys = duplicates_df.count()
    broadcast = repeated_keys <= q.broadcast_duplicate_keys_max
    log.info(
        "%d repeated order keys: %s",
        repeated_keys,
        "ranking their rows only"
        if broadcast
        else "ranking every order row (above quality.broadcast_duplicate_keys_max)",
    )
    tagged = quality.with_reject_reason(orders_df, None, q, keys_df, duplicates_df if broadcast else None)
    return tagged if broadcast else run.persist(tagged)  # every row passed a window: once for every reader


RAW = {"amount": "raw_amount", "discount_amount": "raw_discount_amount", "currency": "raw_currency"}


def finish_rows(run: JobRun, tagged_df: DataFrame, refs: References) -> DataFrame:
    """Valid rows converted to the reporting currency (what arrived kept in ``raw_*``); rows without a rate, too large
    once converted, or of a conflicted identity (policy ``reject``) become rejected."""
    q = run.settings.quality
    tagged_df = tagged_df.withColumns({raw: F.col(column) for column, raw in RAW.items()})
    if q.reporting_currency is not None:
        fx_df = refs.fx.df if refs.fx else None
        tagged_df = currency.with_reporting_currency(tagged_df, fx_df, q.reporting_currency, q.max_order_amount)
    if refs.resolution is not None:
        tagged_df = with_conflicts_rejected(tagged_df, refs.resolution, q)
    return tagged_df


def stitched(run: JobRun, tagged_df: DataFrame, refs: References) -> DataFrame:
    """The valid rows, normalised and stitched to unified customers."""
    q = run.settings.quality
    return stitch_identities(quality.valid_orders(tagged_df, q), refs.resolution, q)


@dataclass
class Orders:
    """Every order with its ``reject_reason`` and the versions of the tables read to decide it."""

    input_df: DataFrame
    tagged_df: DataFrame
    valid_df: DataFrame
    versions: dict[str, int | None] = field(default_factory=dict)
    identity: Resolution | None = None


def read_and_tag_orders(run: JobRun) -> Orders:
    """Orders and reference tables -> every order tagged with its reject reason, and the valid ones stitched."""
    with run.stage("read orders") as info:
        orders = read_orders(run.spark, run.settings)
        info["orders_version"] = orders.version
    refs = read_references(run)
    with run.stage("find repeated order keys"):
        tagged = finish_rows(run, tag_rows(run, orders.df, refs), refs)
    versions = {"orders": orders.version, **refs.versions}
    return Orders(orders.df, tagged, stitched(run, tagged, refs), versions, refs.resolution)


def validate(run: JobRun, orders: Orders) -> tuple[DataFrame, dict[str | None, int]]:
    """The rejected rows (cached) and the rows per reason; stops above ``quality.max_rejected_share``."""
    with run.stage("validate orders") as info:
        rejected_df = run.persist(orders.tagged_df.where(F.col(quality.REASON).isNotNull()))
        counts = quality.count_reasons(rejected_df, orders.input_df.count())
        q, source = run.settings.quality, run.settings.inputs.orders.path
        quality.check_rejected_share(counts, q.max_rejected_share, source, quality.not_counted_reasons(q))
        info.update({"input": sum(counts.values()), "rejected": sum(v for k, v in counts.items() if k)})
        info["guest_orders"] = counts.get(quality.GUEST_ORDER, 0)
    if orders.identity is not None and run.run_id is not None:  # after begin (build), before any other table
        with run.stage("write identity_conflicts"):
            run.write("identity_conflicts", conflict_rows(orders.identity, run.as_of, run.run_id))
    return rejected_df, counts


def valid_orders(run: JobRun) -> tuple[DataFrame, int | None]:
    """The clean orders up to the as-of date as the last complete build left them, and the orders version they were
    ingested from: ``train`` and ``score`` read the clean layer and never validate again."""
    spark, settings = run.spark, run.settings
    path = settings.outputs.table_path("orders_clean")
    with run.stage("read orders_clean") as info:
        last = io.latest_complete_run(spark, settings.outputs.table_path("segment_runs"), "build")
        version = None if last is None else (last["table_versions"] or {}).get("orders_clean")
        if version is None:
            raise InputError(f"no clean orders under {settings.outputs.path}: run `segmentation build` first")
        meta = io.commit_metadata(spark, path, version) or {}
        clean_df = io.read_version(spark, path, version).where(F.col("order_date") <= F.lit(run.as_of))
        info.update({"orders_clean_version": version, "orders_version": meta.get("orders_version")})
    return run.persist(clean_df), meta.get("orders_version")


def read_snapshot(spark: SparkSession, settings: Settings, table: str, as_of: dt.date) -> DataFrame:
    """The ``as_of`` slice of an output table another job wrote; stops with a hint when there is none."""
    df = io.read_output(spark, settings.outputs.table_path(table), as_of)
    if df is None:
        raise InputError(f"no {table} table at {settings.outputs.table_path(table)}: run build --as-of {as_of} first")
    return df


def read_membership(spark: SparkSession, settings: Settings, as_of: dt.date) -> DataFrame | None:
    """The membership state the build of ``as_of`` compares with (``transforms.membership``).

    The current ``segment_membership``, pinned at its version, when it is up to date with ``as_of`` or an earlier date
    (the same date: a rerun, which the transform rewinds). For a backfill (the table is ahead of ``as_of``, so its
    MERGE will be skipped) and before the table exists, a state rebuilt from the latest ``customer_segments`` and
    ``campaign_audiences`` slices before ``as_of``; None without those either (every customer enters).
    """
    path = settings.outputs.table_path("segment_membership")
    state_as_of = io.state_as_of(spark, path)
    if state_as_of is not None and as_of >= state_as_of:
        return io.read_table(spark, TableRef(path=path)).df
    if state_as_of is not None:
        log.info(
            "backfill: segment_membership is up to date with %s, after %s; changes of %s are against the previous "
            "snapshot and the membership MERGE is skipped",
            state_as_of,
            as_of,
            as_of,
        )
    previous, segments_df = read_previous(spark, settings, "customer_segments", as_of)
    if segments_df is None:
        return None
    audiences_df = io.read_output(spark, settings.outputs.table_path("campaign_audiences"), previous)
    return membership.state_from_snapshot(segments_df, audiences_df, membership.dimensions_of(settings).all)


def merge_predicted_value_tier(run: JobRun, scored_df: DataFrame) -> DataFrame | None:
    """For ``score``: the predicted-value tier of the scored customers into ``segment_membership`` (MERGE).

    ``scored_df`` is the date's scored ``customer_segments`` (``customer_id`` and the prediction column of
    ``activation.predicted_value_tier``). Only current members of the state are updated, and only those whose tier
    changed are written. Returns their change rows (the ``segment_changes`` columns, dimension
    ``predicted_value_tier``), or None when no tier is configured, no build has created the membership yet, or the
    date is a backfill (the state is ahead of it).
    """
    spec = run.settings.activation.predicted_value_tier
    path = run.settings.outputs.table_path("segment_membership")
    state_as_of = io.state_as_of(run.spark, path)
    if spec is None or state_as_of is None:
        return None
    if run.as_of < state_as_of:
        log.info("segment_membership is up to date with %s, after %s: tiers not merged", state_as_of, run.as_of)
        return None
    dims = membership.dimensions_of(run.settings)
    tier_df = membership.predicted_value_tier(scored_df, spec.column, spec.tiers, spec.top_shares)
    state_df = io.read_table(run.spark, TableRef(path=path)).df
    next_df = run.persist(
        membership.next_state(tier_df, state_df, dims.score, run.as_of, carried=dims.build, complete=False)
    )
    with run.stage("merge segment_membership") as info:
        result = run.merge("segment_membership", membership.merge_source(next_df))
        info.update({"version": result.version, "updated": result.metrics.get("numTargetRowsUpdated", 0)})
    return membership.change_rows(next_df, run.as_of, run.run_id)

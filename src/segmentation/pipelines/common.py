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
from segmentation.transforms import currency, population, quality
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
    result = io.read_table(spark, ref)
    schema.check_columns(result.df, contract, ref.path)
    return result


def read_orders(spark: SparkSession, settings: Settings) -> io.ReadResult:
    """Read the orders and hold them to their contract (stops before any write, naming each bad column)."""
    result = io.read_table(spark, settings.inputs.orders)
    q = settings.quality
    text_columns = schema.TEXT_PARSED_ORDER_COLUMNS if q.parse_text_columns else ()
    schema.check_columns(result.df, schema.ORDERS, settings.inputs.orders.path, text_columns)
    df = quality.with_parsed_text(result.df, q.timestamp_formats)  # text where accepted, and non-decimal amounts
    latest = q.latest_version_column
    if latest is not None and latest not in result.df.columns:
        raise schema.SchemaError(
            f"orders table at {settings.inputs.orders.path} has no column '{latest}' (quality.latest_version_column):"
            f" name one of {', '.join(result.df.columns)}, or null"
        )
    keep = (quality.PARSE_REASON, *((latest,) if latest else ()))
    return io.ReadResult(schema.conform(df, schema.ORDERS, keep), result.version)


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
class Orders:
    """Every order with its ``reject_reason`` and the versions of the tables read to decide it.

    ``tagged_df`` is cheap to recompute (a scan plus broadcast joins) unless many order keys repeat, in which case it is
    cached by the run; ``valid_df`` is the valid orders, stitched to unified customers and in the reporting currency.
    """

    input_df: DataFrame
    tagged_df: DataFrame
    valid_df: DataFrame
    versions: dict[str, int | None] = field(default_factory=dict)
    identity: Resolution | None = None  # the resolved identity map and its conflicts (written by ``validate``)


def read_and_tag_orders(run: JobRun) -> Orders:
    """Orders, identity map, FX rates and exclusions -> every order tagged with its reject reason.

    Duplicates are found by a hash aggregate of the order keys first: while the repeated keys are few enough to
    broadcast (``quality.broadcast_duplicate_keys_max``), only their rows are ranked, so no order row is shuffled to
    validate it.
    """
    spark, settings, as_of = run.spark, run.settings, run.as_of
    with run.stage("read orders") as info:
        orders = read_orders(spark, settings)
        identity = read_optional(spark, settings.inputs.identity_map, schema.IDENTITY_MAP)
        fx = read_optional(spark, settings.inputs.fx_rates, schema.FX_RATES)
        exclusions = read_optional(spark, settings.inputs.exclusions, schema.EXCLUSIONS)
        info["orders_version"] = orders.version
    resolution = None
    if identity is not None:
        with run.stage("resolve identities") as info:
            resolution = resolve_identities(identity.df, settings.quality)
            info["conflicts"] = resolution.conflicts
    identity_df = resolution.map_df if resolution is not None else None
    with run.stage("find repeated order keys"):
        keys_df = quality.exclusion_keys(exclusions.df, identity_df, settings.quality) if exclusions else None
        duplicates_df = run.persist(quality.duplicate_keys(orders.df, settings.quality))
        repeated_keys = duplicates_df.count()
        broadcast = repeated_keys <= settings.quality.broadcast_duplicate_keys_max
        log.info(
            "%d repeated order keys: %s",
            repeated_keys,
            "ranking their rows only"
            if broadcast
            else "ranking every order row (above quality.broadcast_duplicate_keys_max)",
        )
        tagged = quality.with_reject_reason(
            orders.df, as_of, settings.quality, keys_df, duplicates_df if broadcast else None
        )
        if settings.quality.reporting_currency is not None:
            tagged = currency.with_reporting_currency(
                tagged, fx.df if fx else None, settings.quality.reporting_currency, settings.quality.max_order_amount
            )
        if not broadcast:
            tagged = run.persist(tagged)  # every row passes a window then: do it once for every reader
    versions = {"orders": orders.version}
    for name, read in (("identity_map", identity), ("fx_rates", fx), ("exclusions", exclusions)):
        if read is not None or name == "identity_map":
            versions[name] = read.version if read else None
    if resolution is not None:
        tagged = with_conflicts_rejected(tagged, resolution, settings.quality)
    valid_df = stitch_identities(quality.valid_orders(tagged, settings.quality), resolution, settings.quality)
    return Orders(orders.df, tagged, valid_df, versions, resolution)


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
    """The valid orders as ``build`` sees them (contract, quality, identities) and the orders version, cached."""
    orders = read_and_tag_orders(run)
    validate(run, orders)
    return run.persist(orders.valid_df), orders.versions["orders"]


def read_snapshot(spark: SparkSession, settings: Settings, table: str, as_of: dt.date) -> DataFrame:
    """The ``as_of`` slice of an output table another job wrote; stops with a hint when there is none."""
    df = io.read_output(spark, settings.outputs.table_path(table), as_of)
    if df is None:
        raise InputError(f"no {table} table at {settings.outputs.table_path(table)}: run build --as-of {as_of} first")
    return df

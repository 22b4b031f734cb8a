"""``generate``: synthetic orders (partitioned by channel and month), identity map and profiles as input tables."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from pyspark.sql import SparkSession

from segmentation import io, synthetic
from segmentation.config import Settings
from segmentation.runs import JobRun, StageListener


@dataclass(frozen=True)
class GenerateResult:
    orders_path: str
    orders_version: int
    identity_map_path: str | None
    profiles_path: str | None


def run_generate(
    spark: SparkSession, settings: Settings, as_of: dt.date, listeners: Iterable[StageListener] = ()
) -> GenerateResult:
    """Write the synthetic input tables; the manifest row lists the versions written."""
    inputs = settings.inputs
    identity_path = inputs.identity_map.path if inputs.identity_map else None
    profiles_path = inputs.profiles.path if inputs.profiles else None
    with JobRun(spark, settings, "generate", as_of, listeners) as run:
        run.begin({})
        tables = synthetic.generate(spark, settings.generate, as_of)
        with run.stage("generate orders") as info:
            orders = tables.orders.repartition("channel", "order_month")
            version = io.overwrite_table(orders, inputs.orders.path, partition_by=("channel", "order_month"))
            run.wrote("orders", version)
            info["rows"] = spark.read.format("delta").load(inputs.orders.path).count()
        if identity_path:
            with run.stage("generate identity map"):
                run.wrote("identity_map", io.overwrite_table(tables.identity_map.coalesce(4), identity_path))
        if profiles_path and tables.profiles is not None:
            with run.stage("generate profiles"):
                run.wrote("profiles", io.overwrite_table(tables.profiles.coalesce(4), profiles_path))
    return GenerateResult(inputs.orders.path, version, identity_path, profiles_path)


def run_append_day(
    spark: SparkSession, settings: Settings, as_of: dt.date, share: float, listeners: Iterable[StageListener] = ()
) -> int:
    """Append one day of orders (the as-of date) to an existing orders table: what a daily feed adds. Returns the
    orders version written; a daily ``build --as-of`` that day then ingests only these rows."""
    path = settings.inputs.orders.path
    with JobRun(spark, settings, "generate", as_of, listeners) as run:
        existing = io.read_table(spark, settings.inputs.orders)
        run.begin({"orders": existing.version})
        with run.stage("append a day of orders") as info:
            day_df = synthetic.next_day_orders(existing.df, as_of, share, settings.generate.seed)
            version = io.append_rows(day_df, path)
            run.wrote("orders", version)
            info.update({"version": version})
    return version

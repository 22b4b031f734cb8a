"""``score``: the ``@champion`` models -> clv, p_alive, expected_purchases, churn_probability in the date's segments.

The closed forms run as Spark column expressions and the churn pipeline as a Spark ML transform, so no customer
reaches the driver; the slice is rewritten with ``replaceWhere`` and the manifest row lists the scored version, so a
reader that follows the manifest sees the scored snapshot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import pyspark.sql.functions as F
from pyspark.sql import SparkSession

from segmentation import io
from segmentation.config import Settings, TableRef
from segmentation.errors import InputError
from segmentation.pipelines import common
from segmentation.runs import JobRun, StageListener
from segmentation.transforms import segments


@dataclass(frozen=True)
class ScoreResult:
    as_of: dt.date
    customers: int
    clv_version: str
    churn_version: str
    segments_version: int


def run_score(
    spark: SparkSession, settings: Settings, as_of: dt.date, listeners: Iterable[StageListener] = ()
) -> ScoreResult:
    """``@champion`` models -> clv, p_alive, expected_purchases, churn_probability in the segments of ``as_of``.

    The closed forms run as Spark column expressions and the churn pipeline as a Spark ML transform, so no customer
    reaches the driver; the slice is rewritten with ``replaceWhere``, so a rerun gives the same table.
    """
    from segmentation.models import churn, tracking
    from segmentation.models import clv_training as ct

    tracking.configure(settings.mlflow)
    cfg = settings.models
    clv_champion = tracking.load_clv_champion(cfg.clv.registered_model)
    churn_champion = tracking.load_churn_champion(cfg.churn.registered_model, settings.mlflow.dfs_tmpdir)
    champions = {cfg.clv.registered_model: clv_champion, cfg.churn.registered_model: churn_champion}
    missing = [name for name, champion in champions.items() if champion is None]
    if missing:
        raise InputError(f"no @champion version of {', '.join(missing)} in {settings.mlflow.tracking_uri}: run train")
    clv_model, clv_version = clv_champion
    churn_model, churn_version = churn_champion

    with JobRun(spark, settings, "score", as_of, listeners) as run:
        segments_read = _read_snapshot(spark, settings, "customer_segments", as_of)
        features_read = _read_snapshot(spark, settings, "customer_features", as_of)
        valid, orders_version = common.valid_orders(run)
        run.begin(
            {
                "orders": orders_version,
                "customer_segments": segments_read.version,
                "customer_features": features_read.version,
                f"model.{cfg.clv.registered_model}": int(clv_version),
                f"model.{cfg.churn.registered_model}": int(churn_version),
            }
        )
        segments_df, features_df = segments_read.df, features_read.df
        summary_df = ct.customer_summary(valid, as_of, clv_model.time_unit, settings.quality.sale_status)
        horizon = ct.Horizon.from_settings(cfg.clv, clv_model.time_unit)
        clv_df = ct.with_predictions(summary_df, clv_model, horizon).drop("expected_spend")
        churn_df = churn.with_churn_probability(churn_model, features_df).select("customer_id", churn.SCORE)
        columns = segments_df.columns
        scored_df = (
            segments_df.drop(*segments.PREDICTION_COLUMNS)
            .join(clv_df, "customer_id", "left")
            .join(churn_df, "customer_id", "left")
            .select(
                *[
                    F.col(c).cast(segments.PREDICTION_COLUMNS[c]).alias(c) if c in segments.PREDICTION_COLUMNS else c
                    for c in columns
                ]
            )
        )
        with run.stage("write scored customer_segments") as info:
            version = info["version"] = run.write("customer_segments", scored_df)
        with run.stage("count scored customers") as info:
            customers = io.read_output(spark, settings.outputs.table_path("customer_segments"), as_of)
            customers = info["customers"] = customers.where(F.col("clv").isNotNull()).count()
    return ScoreResult(as_of, customers, clv_version, churn_version, version)


def _read_snapshot(spark: SparkSession, settings: Settings, table: str, as_of: dt.date) -> io.ReadResult:
    """The ``as_of`` slice of an output table at its current version; stops with a hint when the table is missing."""
    path = settings.outputs.table_path(table)
    if io.table_version(spark, path) is None:
        raise InputError(f"no {table} table at {path}: run build --as-of {as_of} first")
    read = io.read_table(spark, TableRef(path=path))
    return io.ReadResult(read.df.where(F.col("as_of_date") == F.lit(as_of)), read.version)

"""``score``: the ``@champion`` of every model family -> its columns in the date's ``customer_segments`` slice.

Every champion is loaded first, so a missing one stops the job before anything is read or written. Each family's
columns (clv, p_alive, expected_purchases; churn_probability) are Spark expressions or a Spark ML transform joined on
the customer, so no customer reaches the driver; the slice is rewritten with ``replaceWhere`` and the manifest row
lists the scored version, so a reader that follows the manifest sees the scored snapshot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from segmentation import io
from segmentation.config import Settings, TableRef
from segmentation.errors import InputError
from segmentation.models.base import ModelFamily, ScoringInputs
from segmentation.pipelines import common
from segmentation.runs import JobRun, StageListener
from segmentation.transforms.features import KEY


@dataclass(frozen=True)
class ScoreResult:
    as_of: dt.date
    customers: int  # rows of the slice with every family's prediction
    versions: dict[str, str]  # family -> the champion version that scored
    segments_version: int


def run_score(
    spark: SparkSession, settings: Settings, as_of: dt.date, listeners: Iterable[StageListener] = ()
) -> ScoreResult:
    """Every family's ``@champion`` -> its columns in the ``customer_segments`` slice of ``as_of`` (a rerun: same)."""
    from segmentation.models import registry, tracking

    tracking.configure(settings.mlflow)
    families = registry.families(settings)
    champions = _load_champions(families, settings)
    with JobRun(spark, settings, "score", as_of, listeners) as run:
        segments_read = _read_snapshot(spark, settings, "customer_segments", as_of)
        features_read = _read_snapshot(spark, settings, "customer_features", as_of)
        valid_df, orders_version = common.valid_orders(run)
        run.begin(
            {
                "orders": orders_version,
                "customer_segments": segments_read.version,
                "customer_features": features_read.version,
                **{f"model.{f.promotion.registered_model}": int(champions[f.name][1]) for f in families},
            }
        )
        inputs = ScoringInputs(valid_df, features_read.df, as_of, run.persist)
        scores = [(f.score_columns(champions[f.name][0], inputs), f.SCORE_COLUMNS) for f in families]
        scored_df = with_scores(segments_read.df, scores)
        with run.stage("write scored customer_segments") as info:
            version = info["version"] = run.write("customer_segments", scored_df)
        with run.stage("count scored customers") as info:
            # Scored by every family: its headline column filled (p_alive is null under a naive-rate champion).
            scored = reduce(lambda a, b: a & b, [F.col(f.SCORE_COLUMNS[0]).isNotNull() for f in families])
            customers_df = io.read_output(spark, settings.outputs.table_path("customer_segments"), as_of)
            customers = info["customers"] = customers_df.where(scored).count()
    return ScoreResult(as_of, customers, {f.name: champions[f.name][1] for f in families}, version)


def _load_champions(families: Sequence[ModelFamily], settings: Settings) -> dict[str, tuple[Any, str]]:
    """Every family's ``@champion`` model and version; stops naming each registered model without one."""
    from segmentation.models import tracking

    champions = {f.name: tracking.load_champion(f, f.promotion.registered_model) for f in families}
    missing = [f.promotion.registered_model for f in families if champions[f.name] is None]
    if missing:
        raise InputError(f"no @champion version of {', '.join(missing)} in {settings.mlflow.tracking_uri}: run train")
    return champions


def with_scores(segments_df: DataFrame, scores: Sequence[tuple[DataFrame, Sequence[str]]]) -> DataFrame:
    """The segments slice with each ``(customer_id + columns frame, columns)`` joined in, keeping its schema.

    Every scored column replaces the slice's column of that name, cast to its type; a customer a model does not
    score keeps a null.
    """
    columns = segments_df.columns
    scored = [c for _, names in scores for c in names]
    unknown = sorted(set(scored) - set(columns))
    if unknown:
        raise ValueError(f"score columns {', '.join(unknown)} are not columns of customer_segments")
    types = {c: segments_df.schema[c].dataType for c in scored}
    df = segments_df.drop(*scored)
    for score_df, names in scores:
        df = df.join(score_df.select(KEY, *names), KEY, "left")
    return df.select(*[F.col(c).cast(types[c]).alias(c) if c in types else F.col(c) for c in columns])


def _read_snapshot(spark: SparkSession, settings: Settings, table: str, as_of: dt.date) -> io.ReadResult:
    """The ``as_of`` slice of an output table at its current version; stops with a hint when the table is missing."""
    path = settings.outputs.table_path(table)
    if io.table_version(spark, path) is None:
        raise InputError(f"no {table} table at {path}: run build --as-of {as_of} first")
    read = io.read_table(spark, TableRef(path=path))
    return io.ReadResult(read.df.where(F.col("as_of_date") == F.lit(as_of)), read.version)

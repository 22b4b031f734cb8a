"""Churn: will a customer make no completed purchase in the next N days?

Features are the product's own ``customer_features`` computed at a cut-off date from the orders up to that day, so
the model sees exactly what the ``score`` job will give it later; the label comes from the orders in the N days after
the cut-off. Customers are split into training and holdout by a stable hash of their id: the same customer lands on
the same side in every run, so two runs on the same data are evaluated on the same people and their metrics are
comparable.

The classifier is a Spark ML pipeline (null filling, vector assembly, gradient-boosted trees) that trains and scores
on the cluster; a logistic regression on recency alone is trained alongside as the baseline a trained model has to
beat to be worth its complexity. Every metric is computed in Spark: nothing customer-level reaches the driver.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import SQLTransformer, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame

from segmentation.config import ChurnModelSettings, FeatureSettings, QualitySettings
from segmentation.session import default_parallelism
from segmentation.transforms.columns import day_number, utc_day
from segmentation.transforms.features import KEY, customer_features

LABEL = "churned"
SCORE_BINS = 100  # score bins the ROC and lift pictures are drawn from (ties within a bin are one step of the curve)
SCORE = "churn_probability"
BASELINE_FEATURES = ("recency_days",)
GREATER_IS_BETTER: Mapping[str, bool] = {"auc": True, "pr_auc": True, "lift_top_decile": True, "brier": False}
_FEATURE_PREFIX = "f_"
_VECTOR = "features_vector"
_HASH_BUCKETS = 10_000


def default_cutoff(as_of: dt.date, settings: ChurnModelSettings) -> dt.date:
    """The feature cut-off: the configured date, or as-of minus the horizon so every label is fully observed."""
    cutoff = settings.cutoff or as_of - dt.timedelta(days=settings.horizon_days)
    if cutoff + dt.timedelta(days=settings.horizon_days) > as_of:
        raise ValueError(
            f"models.churn.cutoff {cutoff} + horizon_days {settings.horizon_days} ends after the as-of date {as_of}: "
            "the labels would not be observed yet"
        )
    return cutoff


def is_holdout(customer_id: Column, share: float) -> Column:
    """A stable customer-level split: the same id is in the holdout in every run, on every cluster."""
    bucket = F.pmod(F.xxhash64(customer_id), F.lit(_HASH_BUCKETS))
    return bucket < F.lit(round(share * _HASH_BUCKETS))


def churn_labels(orders_df: DataFrame, cutoff: dt.date, horizon_days: int, sale_status: str) -> DataFrame:
    """``(customer_id, has_purchase)`` for customers with a completed purchase in ``(cutoff, cutoff + horizon]``."""
    day = utc_day(F.col("order_ts"))
    start = day_number(cutoff)
    window = (day > F.lit(start)) & (day <= F.lit(start + horizon_days)) & (F.col("status") == F.lit(sale_status))
    return orders_df.where(window).select(KEY).distinct().withColumn("has_purchase", F.lit(True))


def labelled_features(
    orders_df: DataFrame,
    cutoff: dt.date,
    horizon_days: int,
    features: FeatureSettings,
    quality: QualitySettings,
    holdout_share: float,
) -> DataFrame:
    """Features at the cut-off for every customer who bought up to then, with the churn label and the split.

    Args:
        orders_df: valid, identity-stitched orders up to the as-of date.
        cutoff: the feature date; orders after it only decide the label.
        horizon_days: churned = no completed purchase in this many days after the cut-off.
        features: feature windows (as the build job computes them).
        quality: which status is a sale.
        holdout_share: share of customers, by a stable hash of the id, kept out of training.
    """
    past_df = orders_df.where(utc_day(F.col("order_ts")) <= F.lit(day_number(cutoff)))
    features_df = customer_features(past_df, cutoff, features, quality)
    labels_df = churn_labels(orders_df, cutoff, horizon_days, quality.sale_status)
    return (
        features_df.join(labels_df, KEY, "left")
        .withColumn(LABEL, F.when(F.col("has_purchase"), F.lit(0.0)).otherwise(F.lit(1.0)))
        .withColumn("is_holdout", is_holdout(F.col(KEY), holdout_share))
        .drop("has_purchase")
    )


def _fill_statement(columns: Sequence[str], null_fill: float) -> str:
    """SQL of the first pipeline stage: each feature as a double with nulls filled, so the saved model carries it."""
    filled = ", ".join(
        f"coalesce(CAST(`{c}` AS DOUBLE), CAST({null_fill!r} AS DOUBLE)) AS `{_FEATURE_PREFIX}{c}`" for c in columns
    )
    return f"SELECT *, {filled} FROM __THIS__"


def _stages(columns: Sequence[str], null_fill: float) -> list:
    return [
        SQLTransformer(statement=_fill_statement(columns, null_fill)),
        VectorAssembler(inputCols=[f"{_FEATURE_PREFIX}{c}" for c in columns], outputCol=_VECTOR),
    ]


def churn_pipeline(settings: ChurnModelSettings) -> Pipeline:
    """Null filling, vector assembly and gradient-boosted trees over the configured feature columns."""
    gbt = GBTClassifier(
        featuresCol=_VECTOR,
        labelCol=LABEL,
        maxIter=settings.max_iter,
        maxDepth=settings.max_depth,
        stepSize=settings.step_size,
        seed=settings.seed,
    )
    return Pipeline(stages=[*_stages(settings.features, settings.null_fill), gbt])


def baseline_pipeline(settings: ChurnModelSettings) -> Pipeline:
    """Logistic regression on recency alone: the rule of thumb ("long silent, probably gone") as a model."""
    return Pipeline(
        stages=[
            *_stages(BASELINE_FEATURES, settings.null_fill),
            LogisticRegression(featuresCol=_VECTOR, labelCol=LABEL),
        ]
    )


def with_churn_probability(model: PipelineModel, df: DataFrame) -> DataFrame:
    """``df`` with ``churn_probability`` (P(churned) from the model) and none of the model's working columns."""
    scored = model.transform(df)
    return scored.select(*df.columns, vector_to_array(F.col("probability"))[1].alias(SCORE))


def evaluate(scored_df: DataFrame, relative_error: float = 0.001) -> dict[str, float]:
    """The metrics of :func:`evaluate_with_bins`."""
    return evaluate_with_bins(scored_df, relative_error)[0]


def evaluate_with_bins(
    scored_df: DataFrame, relative_error: float = 0.001
) -> tuple[dict[str, float], list[dict[str, int]]]:
    """Holdout metrics of a scored, labelled frame, all computed in Spark.

    Lift in the top decile compares the churn rate among the 10% highest scores with the overall rate; the 90%
    score cut comes from ``approxQuantile`` (one pass, no global sort) and customers tied at the cut fill the
    decile pro rata, as a random tie-break would on average. ``top_decile_share`` is the share the decile
    covers (0.1 unless fewer customers score at or above the cut).

    Returns:
        ``auc``, ``pr_auc``, ``brier``, ``lift_top_decile``, ``top_decile_share``, ``churn_rate``, ``customers``;
        and customers and churned customers per score bin (``bin`` = floor(score × ``SCORE_BINS``), the top bin
        holding a score of 1), from which ROC and lift curves are drawn.
    """
    df = scored_df.select(F.col(LABEL).cast("double").alias(LABEL), F.col(SCORE).cast("double").alias(SCORE))
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        evaluator = BinaryClassificationEvaluator(rawPredictionCol=SCORE, labelCol=LABEL)
        auc = evaluator.setMetricName("areaUnderROC").evaluate(df)
        pr_auc = evaluator.setMetricName("areaUnderPR").evaluate(df)
        cut = df.approxQuantile(SCORE, [0.9], relative_error)[0]
        above, at_cut = F.col(SCORE) > F.lit(cut), F.col(SCORE) == F.lit(cut)
        row = df.agg(
            F.count(F.lit(1)).alias("n"),
            F.avg(F.pow(F.col(SCORE) - F.col(LABEL), 2)).alias("brier"),
            F.avg(LABEL).alias("rate"),
            F.count(F.when(above, F.lit(1))).alias("above_n"),
            F.coalesce(F.sum(F.when(above, F.col(LABEL))), F.lit(0.0)).alias("above_pos"),
            F.count(F.when(at_cut, F.lit(1))).alias("at_n"),
            F.coalesce(F.sum(F.when(at_cut, F.col(LABEL))), F.lit(0.0)).alias("at_pos"),
        ).first()
        bins = (
            df.groupBy(F.least(F.floor(F.col(SCORE) * F.lit(SCORE_BINS)), F.lit(SCORE_BINS - 1)).alias("bin"))
            .agg(F.count(F.lit(1)).alias("customers"), F.sum(LABEL).alias("churned"))
            .orderBy("bin")
            .collect()
        )
    finally:
        df.unpersist()
    rate = row["rate"] or 0.0
    # The decile is the scores above the cut, filled up to 10% from the scores tied at the cut, each tied score
    # counted with the share of the tie it would get under a random tie-break (boosted trees tie a lot).
    fill = min(max(0.1 * row["n"] - row["above_n"], 0.0), row["at_n"])
    top_n = row["above_n"] + fill
    top_pos = row["above_pos"] + (fill * row["at_pos"] / row["at_n"] if row["at_n"] else 0.0)
    top_rate = top_pos / top_n if top_n else 0.0
    return {
        "auc": float(auc),
        "pr_auc": float(pr_auc),
        "brier": float(row["brier"]),
        "lift_top_decile": float(top_rate / rate) if rate > 0 else 0.0,
        "top_decile_share": top_n / row["n"],
        "churn_rate": float(rate),
        "customers": float(row["n"]),
    }, [{"bin": int(b["bin"]), "customers": int(b["customers"]), "churned": int(b["churned"])} for b in bins]


def holdout_evaluation(
    model: PipelineModel, labelled_df: DataFrame, relative_error: float = 0.001
) -> tuple[dict[str, float], list[dict[str, int]]]:
    """:func:`evaluate_with_bins` of ``model`` on the holdout customers (metrics and score bins, one pass).

    Raises:
        AnalysisException: the model needs a column the frame does not have (a feature that no longer exists).
    """
    holdout_df = labelled_df.where(F.col("is_holdout"))
    return evaluate_with_bins(with_churn_probability(model, holdout_df), relative_error)


@dataclass(frozen=True)
class ChurnFit:
    """A trained churn model and its recency-only baseline, with the baseline's holdout metrics."""

    model: PipelineModel
    baseline: PipelineModel
    baseline_metrics: dict[str, float]
    train_customers: int
    holdout_customers: int


def training_partitions(rows: int, rows_per_partition: int, parallelism: int) -> int:
    """Partitions of the training data: one per ``rows_per_partition`` rows, at least one, at most ``parallelism``.

    A boosted tree runs a Spark job per level and per iteration (40 trees of depth 4: a few hundred jobs), so
    thousands of customers spread over the shuffle's partitions pay for tasks that hold a few rows each; the fit is
    also the same whatever ``spark.sql.shuffle.partitions`` is, since the split candidates are sampled per partition.
    """
    return max(1, min(parallelism, -(-rows // rows_per_partition)))


def fit_churn(labelled_df: DataFrame, settings: ChurnModelSettings) -> ChurnFit:
    """Fit the classifier and the baseline on the training customers; evaluate the baseline on the holdout.

    The model's own holdout metrics come from :func:`holdout_evaluation`, the same call that judges the champion.

    Args:
        labelled_df: output of :func:`labelled_features` (features, ``churned``, ``is_holdout``).
        settings: features, tree parameters and the quantile error of the lift metric.

    Raises:
        ValueError: if either side of the split is empty or the training labels are all one class.
    """
    missing = [c for c in settings.features if c not in labelled_df.columns]
    if missing:
        raise ValueError(f"models.churn.features: unknown feature column(s): {', '.join(missing)}")
    columns = sorted({*settings.features, *BASELINE_FEATURES, KEY, LABEL, "is_holdout"})
    counted = labelled_df.groupBy("is_holdout", LABEL).count().collect()
    counts = {(r["is_holdout"], r[LABEL]): r["count"] for r in counted}
    train_n = sum(v for (h, _), v in counts.items() if not h)
    holdout_n = sum(v for (h, _), v in counts.items() if h)
    if train_n == 0 or holdout_n == 0:
        raise ValueError(f"churn split is empty: {train_n} training and {holdout_n} holdout customers")
    if len({label for (h, label) in counts if not h}) < 2:
        raise ValueError("churn training labels are all one class: widen the history or change the horizon")
    parallelism = default_parallelism(labelled_df.sparkSession)
    partitions = training_partitions(train_n + holdout_n, settings.rows_per_partition, parallelism)
    data = labelled_df.select(*columns).coalesce(partitions).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        train_df = data.where(~F.col("is_holdout"))
        model = churn_pipeline(settings).fit(train_df)
        baseline = baseline_pipeline(settings).fit(train_df)
        baseline_metrics = holdout_evaluation(baseline, data, settings.quantile_relative_error)[0]
    finally:
        data.unpersist()
    return ChurnFit(model, baseline, baseline_metrics, int(train_n), int(holdout_n))


def input_example(labelled_df: DataFrame, settings: ChurnModelSettings) -> pd.DataFrame:
    """Three illustrative rows for the logged model: each feature's 10th, 50th and 90th percentile.

    Made of quantiles (one approximate pass), not of any customer's row, so the model artifact carries no
    customer data.
    """
    probabilities = [0.1, 0.5, 0.9]
    columns = list(settings.features)
    quantiles = labelled_df.select(*[F.col(c).cast("double").alias(c) for c in columns]).approxQuantile(
        columns, probabilities, settings.quantile_relative_error
    )
    return pd.DataFrame(
        {
            c: (q if len(q) == len(probabilities) else [settings.null_fill] * 3)
            for c, q in zip(columns, quantiles, strict=True)
        }
    )

"""The holdout test of CLV purchase models: predicted against actual purchases after the calibration window.

Every candidate purchase model and the naive baseline (each customer's own repeat rate carried forward) are judged in
one Spark pass on the same customers, by the same join and aggregation; only per-frequency sums reach the driver.
The summaries and actuals they compare come from :mod:`segmentation.models.clv_training`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from segmentation.models import clv
from segmentation.models.clv.purchase import PurchaseModel
from segmentation.transforms.features import KEY


@dataclass(frozen=True)
class HoldoutEvaluation:
    """Predicted vs actual holdout purchases: metrics, the naive baseline's same metrics and the table by calibration
    frequency."""

    metrics: dict[str, float]
    frequency_table: list[dict[str, Any]]
    baseline_metrics: dict[str, float] = field(default_factory=dict)


def naive_purchases_col(holdout_periods: float) -> Column:
    """The naive forecast of holdout purchases: each customer's own repeat purchase rate so far (``frequency / T``)
    carried over the holdout, as if nobody ever stopped buying; 0 for a customer first seen in the last period."""
    rate = F.when(F.col("T") > 0, F.col("frequency") / F.col("T")).otherwise(F.lit(0.0))
    return rate * F.lit(float(holdout_periods))


def _error_metrics(rows: list, p: str, n: int, actual: float) -> dict[str, float]:
    """The holdout metrics of one forecast (column prefix ``p``) from the per-bucket sums."""
    predicted = sum(r[f"{p}predicted"] for r in rows)
    spend_n = sum(r[f"{p}spend_n"] for r in rows)

    def spend_sum(key: str) -> float:
        return float(sum(r[f"{p}{key}"] or 0.0 for r in rows))

    return {
        "holdout_mae": sum(r[f"{p}abs_error"] for r in rows) / n,
        "holdout_rmse": math.sqrt(sum(r[f"{p}sq_error"] for r in rows) / n),
        "holdout_actual_total": float(actual),
        "holdout_predicted_total": float(predicted),
        "holdout_total_abs_error": abs(predicted - actual),
        "spend_mae": spend_sum("spend_abs_error") / spend_n if spend_n else float("nan"),
        "spend_actual_mean": spend_sum("spend_actual") / spend_n if spend_n else float("nan"),
        "spend_predicted_mean": spend_sum("spend_predicted") / spend_n if spend_n else float("nan"),
        "customers": float(n),
    }


def evaluate_holdout(
    summary_df: DataFrame,
    actuals_df: DataFrame,
    purchase: PurchaseModel | clv.BgNbdParams,
    gamma_gamma: clv.GammaGammaParams,
    holdout_periods: float,
    table_max: int = 7,
) -> HoldoutEvaluation:
    """Compare one model's predictions with the holdout, per customer and in aggregate, in Spark.

    Every calibration customer counts, including those who bought nothing in the holdout (actual 0). The spend
    error covers customers with a repeat purchase in calibration and at least one in the holdout: their mean
    holdout purchase spend against the Gamma-Gamma conditional expectation. The naive baseline
    (:func:`naive_purchases_col` for purchases, the customer's own mean repeat spend for spend) is scored in the
    same pass on the same customers.

    Returns:
        ``holdout_mae``, ``holdout_rmse`` (purchases per customer), ``holdout_actual_total``,
        ``holdout_predicted_total``, ``holdout_total_abs_error``, ``spend_mae``, ``spend_actual_mean``,
        ``spend_predicted_mean``, ``customers``, for the model and for the baseline; and the rows ``frequency``
        0..table_max-1, ``table_max+``.
    """
    model = purchase if isinstance(purchase, PurchaseModel) else PurchaseModel.of("bgnbd", purchase)
    return evaluate_candidates(summary_df, actuals_df, {"model": model}, gamma_gamma, holdout_periods, table_max)[
        "model"
    ]


def evaluate_candidates(
    summary_df: DataFrame,
    actuals_df: DataFrame,
    candidates: Mapping[str, PurchaseModel],
    gamma_gamma: clv.GammaGammaParams,
    holdout_periods: float,
    table_max: int = 7,
) -> dict[str, HoldoutEvaluation]:
    """:func:`evaluate_holdout` of several purchase models (and the naive baseline) in one pass over the customers:
    every candidate is judged on the same customers by the same join and aggregation."""
    forecasts = {
        f"c{i}_": (
            model.expected_purchases_col(float(holdout_periods), "frequency", "recency", "T"),
            clv.expected_spend_col(gamma_gamma, "frequency", "monetary"),
        )
        for i, model in enumerate(candidates.values())
    }
    forecasts["naive_"] = (naive_purchases_col(holdout_periods), F.col("monetary"))
    has_spend = (F.col("frequency") > 0) & F.col("holdout_spend").isNotNull()
    df = summary_df.join(actuals_df, KEY, "left").select(
        F.least(F.col("frequency"), F.lit(table_max)).alias("bucket"),
        F.coalesce(F.col("holdout_purchases"), F.lit(0)).cast("double").alias("actual"),
        F.when(has_spend, F.col("holdout_spend")).alias("a_spend"),
        *[c.alias(f"{p}predicted") for p, (c, _) in forecasts.items()],
        *[F.when(has_spend, c).alias(f"{p}p_spend") for p, (_, c) in forecasts.items()],
    )
    sums = [F.count(F.lit(1)).alias("customers"), F.sum("actual").alias("actual")]
    for p in forecasts:
        error = F.col(f"{p}predicted") - F.col("actual")
        spend_error = F.abs(F.col(f"{p}p_spend") - F.col("a_spend"))
        sums += [
            F.sum(f"{p}predicted").alias(f"{p}predicted"),
            F.sum(F.abs(error)).alias(f"{p}abs_error"),
            F.sum(F.pow(error, 2)).alias(f"{p}sq_error"),
            F.count(F.when(F.col(f"{p}p_spend").isNotNull(), F.col("a_spend"))).alias(f"{p}spend_n"),
            F.sum(spend_error).alias(f"{p}spend_abs_error"),
            F.sum(F.when(F.col(f"{p}p_spend").isNotNull(), F.col("a_spend"))).alias(f"{p}spend_actual"),
            F.sum(f"{p}p_spend").alias(f"{p}spend_predicted"),
        ]
    rows = df.groupBy("bucket").agg(*sums).orderBy("bucket").collect()
    n = sum(r["customers"] for r in rows)
    if n == 0:
        raise ValueError("no calibration customer to evaluate on the holdout")
    actual = sum(r["actual"] for r in rows)
    naive = _error_metrics(rows, "naive_", n, actual)
    evaluations = {}
    for i, name in enumerate(candidates):
        p = f"c{i}_"
        table = [
            {
                "frequency": str(r["bucket"]) if r["bucket"] < table_max else f"{table_max}+",
                "customers": int(r["customers"]),
                "actual_mean": r["actual"] / r["customers"],
                "expected_mean": r[f"{p}predicted"] / r["customers"],
                "naive_mean": r["naive_predicted"] / r["customers"],
            }
            for r in rows
        ]
        evaluations[name] = HoldoutEvaluation(_error_metrics(rows, p, n, actual), table, naive)
    return evaluations

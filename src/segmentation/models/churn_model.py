"""The churn family: gradient-boosted trees on ``customer_features`` at a cut-off, over :mod:`.churn`.

Trained on the features at the cut-off with the label from the following ``horizon_days``, judged on a stable holdout
of customers next to a recency-only baseline (a model that loses to it is guarded: registered, never champion);
scored on the ``customer_features`` snapshot of the as-of date. MLflow stores the fitted Spark ML pipeline, with a
signature over the feature columns and an input example made of quantiles (no customer's row).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame

from segmentation.config import ChurnModelSettings
from segmentation.models import churn, tracking
from segmentation.models.base import CannotScoreError, Evaluation, Fitted, ModelFamily, ScoringInputs
from segmentation.transforms.features import KEY


@dataclass(frozen=True)
class ChurnFrames:
    """Features at the cut-off with the label and the holdout flag (cached)."""

    labelled_df: DataFrame
    as_of: dt.date
    cutoff: dt.date

    @property
    def window(self) -> str:
        return f"features at {self.cutoff}"

    def release(self) -> None:
        self.labelled_df.unpersist()


@dataclass(frozen=True, kw_only=True)
class ChurnFitted(Fitted[PipelineModel]):
    input_example: pd.DataFrame


def roc_lift_figure(bins: list[dict[str, int]]) -> Any:
    """ROC curve and cumulative lift of the holdout, from customers and churned customers per score bin (highest
    scores first: targeting the riskiest customers first)."""
    from matplotlib.figure import Figure

    ordered = sorted(bins, key=lambda b: -b["bin"])
    customers = np.cumsum([0] + [b["customers"] for b in ordered], dtype=float)
    churned = np.cumsum([0] + [b["churned"] for b in ordered], dtype=float)
    stayed = customers - churned
    total, positives, negatives = customers[-1], churned[-1], stayed[-1]
    fig = Figure(figsize=(10, 4.5), dpi=100)
    roc, lift = fig.subplots(1, 2)
    if positives and negatives:
        roc.plot(stayed / negatives, churned / positives, "-", color="#1f77b4", label="model")
    roc.plot([0, 1], [0, 1], ":", color="#888888", label="random")
    roc.set(xlabel="share of customers who stayed", ylabel="share of churned customers found", title="ROC (holdout)")
    reached = customers[1:] / total if total else customers[1:]
    if total and positives:
        lift.plot(reached, (churned[1:] / customers[1:]) / (positives / total), "-", color="#d62728")
    lift.axhline(1.0, linestyle=":", color="#888888")
    lift.set_xlim(0, 1)  # the curve starts at the share of the top score bin (ties cannot be split)
    lift.set(xlabel="share of customers targeted, riskiest first", ylabel="churn rate / overall rate")
    lift.set_title("Cumulative lift (holdout)")
    for ax in (roc, lift):
        ax.grid(alpha=0.3)
    roc.legend()
    fig.tight_layout()
    return fig


def importances_figure(features: list[str], importances: list[float]) -> Any:
    """The trees' feature importances (share of the split gain), largest at the top."""
    from matplotlib.figure import Figure

    order = sorted(range(len(features)), key=lambda i: importances[i])
    fig = Figure(figsize=(8, 0.3 * len(features) + 1.2), dpi=100)
    ax = fig.add_subplot()
    ax.barh([features[i] for i in order], [importances[i] for i in order], color="#1f77b4")
    ax.set(xlabel="importance (share of split gain)", title="Churn model: feature importances")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


class ChurnFamily(ModelFamily[ChurnFrames, ChurnFitted, PipelineModel]):
    """Boosted trees judged on the holdout customers; ``baseline_*`` is logistic regression on recency alone."""

    name = "churn"
    GREATER_IS_BETTER = churn.GREATER_IS_BETTER
    SCORE_COLUMNS = (churn.SCORE,)
    KEY_METRICS = ("auc", "pr_auc", "brier", "lift_top_decile")
    BASELINE = "the recency-only baseline"

    @property
    def config(self) -> ChurnModelSettings:
        return self.settings.models.churn

    def prepare(self, orders_df: DataFrame, as_of: dt.date) -> ChurnFrames:
        cfg, s = self.config, self.settings
        cutoff = churn.default_cutoff(as_of, cfg)
        labelled_df = churn.labelled_features(
            orders_df, cutoff, cfg.horizon_days, s.features, s.quality, cfg.holdout_share
        )
        return ChurnFrames(labelled_df.persist(StorageLevel.MEMORY_AND_DISK), as_of, cutoff)

    def fit(self, frames: ChurnFrames) -> ChurnFitted:
        cfg = self.config
        fit = churn.fit_churn(frames.labelled_df, cfg)
        return ChurnFitted(
            model=fit.model,
            metrics={
                **{f"baseline_{k}": v for k, v in fit.baseline_metrics.items()},
                "train_customers": float(fit.train_customers),
                "holdout_customers": float(fit.holdout_customers),
            },
            baseline_metrics=fit.baseline_metrics,
            details={"train": fit.train_customers, "holdout": fit.holdout_customers},
            input_example=churn.input_example(frames.labelled_df, cfg),
        )

    def evaluate(self, model: PipelineModel, frames: ChurnFrames) -> Evaluation:
        try:
            metrics, bins = churn.holdout_evaluation(model, frames.labelled_df, self.config.quantile_relative_error)
            return Evaluation(metrics, {"holdout_score_bins": bins})
        except AnalysisException as exc:
            raise CannotScoreError(f"the model cannot read the features at {frames.cutoff}: {exc}") from exc

    def images(self, fitted: ChurnFitted, evaluation: Evaluation) -> dict[str, Any]:
        importances = fitted.model.stages[-1].featureImportances.toArray()
        return {
            "holdout_roc_lift": roc_lift_figure(evaluation.tables["holdout_score_bins"]),
            "feature_importances": importances_figure(list(self.config.features), list(importances)),
        }

    def params(self, fitted: ChurnFitted) -> dict[str, float]:
        return {}  # hundreds of trees: no handful of parameters worth reading; the run keeps the model

    def run_params(self, fitted: ChurnFitted, frames: ChurnFrames) -> dict[str, Any]:
        cfg = self.config
        return {
            "as_of": str(frames.as_of),
            "cutoff": str(frames.cutoff),
            "horizon_days": cfg.horizon_days,
            "holdout_share": cfg.holdout_share,
            "features": ",".join(cfg.features),
            "null_fill": cfg.null_fill,
            "max_iter": cfg.max_iter,
            "max_depth": cfg.max_depth,
            "step_size": cfg.step_size,
            "seed": cfg.seed,
            "baseline": "logistic regression on " + ",".join(churn.BASELINE_FEATURES),
        }

    def score_columns(self, model: PipelineModel, inputs: ScoringInputs) -> DataFrame:
        """P(no purchase in the next ``horizon_days``) from the date's ``customer_features``."""
        return churn.with_churn_probability(model, inputs.features_df).select(KEY, *self.SCORE_COLUMNS)

    def log(self, fitted: ChurnFitted, registered_model: str) -> Any:
        features = list(self.config.features)
        return tracking.log_spark_model(
            fitted.model,
            signature=tracking.signature([("double", c) for c in features], [("double", "prediction")]),
            input_example=fitted.input_example,
            registered_model=registered_model,
            dfs_tmpdir=self.settings.mlflow.dfs_tmpdir,
        )

    def load(self, uri: str) -> PipelineModel:
        return tracking.load_spark_model(uri, self.settings.mlflow.dfs_tmpdir)

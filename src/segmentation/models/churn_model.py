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

import pandas as pd
from pyspark import StorageLevel
from pyspark.errors import AnalysisException
from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame

from segmentation.config import ChurnModelSettings
from segmentation.models import churn, guarding, tracking
from segmentation.models.base import CannotScoreError, Evaluation, Fitted, ModelFamily, ScoringInputs
from segmentation.models.guarding import GuardFinding
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


class ChurnFamily(ModelFamily[ChurnFrames, ChurnFitted, PipelineModel]):
    """Boosted trees judged on the holdout customers; ``baseline_*`` is logistic regression on recency alone."""

    name = "churn"
    GREATER_IS_BETTER = churn.GREATER_IS_BETTER
    SCORE_COLUMNS = (churn.SCORE,)
    KEY_METRICS = ("auc", "pr_auc", "brier", "lift_top_decile")

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
            return Evaluation(churn.holdout_metrics(model, frames.labelled_df, self.config.quantile_relative_error))
        except AnalysisException as exc:
            raise CannotScoreError(f"the model cannot read the features at {frames.cutoff}: {exc}") from exc

    def guard(self, fitted: ChurnFitted, evaluation: Evaluation) -> list[GuardFinding]:
        """The fit's findings, and ``loses_to_baseline`` when the model trails the recency-only baseline on the
        promotion metric by more than ``models.churn.guards.max_loss_to_baseline``."""
        metric = self.config.promotion_metric
        lost = guarding.loses_to_baseline(
            metric,
            float(evaluation.metrics.get(metric, float("nan"))),
            float(fitted.baseline_metrics.get(metric, float("nan"))),
            self.GREATER_IS_BETTER[metric],
            self.config.guards.max_loss_to_baseline,
            "the recency-only baseline",
        )
        return [*fitted.findings, *([lost] if lost else [])]

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

"""Settings of the trained models: BG/NBD + Gamma-Gamma customer lifetime value and the churn classifier."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Literal

from pydantic import Field, model_validator

from segmentation.config.common import _Frozen

ClvMetric = Literal["holdout_mae", "holdout_rmse", "holdout_total_abs_error", "spend_mae"]
ChurnMetric = Literal["auc", "pr_auc", "brier", "lift_top_decile"]


class ClvGuardSettings(_Frozen):
    """When a purchase fit is refused promotion (see docs/models.md, "Guards"); times in days, converted to periods."""

    min_dropout: float = Field(gt=0, lt=1, description="Implied drop-out probability below this: degenerate.")
    max_param_ratio: float = Field(gt=1, description="A parameter beyond this factor from 1 either way: at a bound.")
    active_days: int = Field(ge=0, description="Repeat buyers silent at most this long count as active.")
    silent_days: int = Field(gt=0, description="Repeat buyers silent at least this long count as long-silent.")
    min_p_alive_gap: float = Field(
        ge=0, le=1, description="Mean P(alive) of active minus long-silent repeat buyers must reach this."
    )
    max_loss_to_baseline: float = Field(
        default=0.0,
        ge=0,
        description="How far the model's holdout promotion metric may trail the naive baseline's (each customer's"
        " own past purchase rate).",
    )

    @model_validator(mode="after")
    def _silent_after_active(self) -> ClvGuardSettings:
        if self.silent_days <= self.active_days:
            raise ValueError(f"silent_days ({self.silent_days}) must be greater than active_days ({self.active_days})")
        return self


class ChurnGuardSettings(_Frozen):
    """When a churn model is refused promotion against its own recency-only baseline."""

    max_loss_to_baseline: float = Field(
        ge=0, description="How far the model's promotion metric may trail the baseline's on the holdout."
    )


class ClvModelSettings(_Frozen):
    """BG/NBD + Gamma-Gamma: the calibration/holdout split, the CLV horizon and when a new fit becomes champion."""

    registered_model: str
    time_unit: Literal["days", "weeks"]
    calibration_end: dt.date | None = Field(
        description="Last day of the calibration window; null: as-of minus holdout_days."
    )
    holdout_days: int = Field(gt=0)
    horizon_days: int = Field(gt=0, description="CLV and expected_purchases horizon.")
    cash_flow_step_days: int = Field(gt=0, description="CLV cash flows are discounted once per step.")
    annual_discount_rate: float = Field(gt=-1, lt=10)
    monetary_significant_digits: int = Field(
        ge=2, le=12, description="Average order values are rounded to this many digits for the fit."
    )
    frequency_table_max: int = Field(ge=1, description="Last row ('7+') of the actual-vs-expected table.")
    p_alive_recency_days: list[int] = Field(
        default=[28, 91, 182, 365],
        min_length=1,
        description="Where the bands of days since the last purchase start, after the first (0): the P(alive)-by-"
        "recency diagnostic.",
    )
    candidates: list[Literal["bgnbd", "mbgnbd", "pareto_nbd"]] = Field(
        default=["bgnbd", "mbgnbd", "pareto_nbd"],
        min_length=1,
        description="Purchase models fitted on the same patterns, each a nested run; the naive rate is always the"
        " fallback candidate.",
    )
    interval_quantiles: list[float] = Field(
        default=[0.1, 0.9],
        min_length=2,
        max_length=2,
        description="The ends of each customer's interval of expected purchases and CLV (customer_segments"
        " *_low, *_high), as quantiles of the uncertainty of the fitted parameters.",
    )
    interval_draws: int = Field(
        default=200,
        ge=0,
        description="Parameter sets drawn from each fit's uncertainty for those intervals (0: no intervals).",
    )
    interval_seed: int = Field(default=42, description="Seed of the draws: the same fit always draws the same sets.")
    selection_metric: ClvMetric | Literal["aic", "bic"] = Field(
        default="holdout_mae", description="Picks the candidate to register among those no guard refused."
    )
    promotion_metric: ClvMetric
    promotion_min_improvement: float = Field(ge=0)
    max_iterations: int = Field(default=5000, gt=0)
    guards: ClvGuardSettings

    @model_validator(mode="after")
    def _recency_bands_increase(self) -> ClvModelSettings:
        edges = self.p_alive_recency_days
        if edges[0] <= 0 or any(b <= a for a, b in itertools.pairwise(edges)):
            raise ValueError(f"p_alive_recency_days must be positive and increasing, got {edges}")
        low, high = self.interval_quantiles
        if not 0 < low < high < 1:
            raise ValueError(
                f"interval_quantiles must be two quantiles 0 < low < high < 1, got {self.interval_quantiles}"
            )
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError(f"candidates must not repeat a model, got {self.candidates}")
        return self


class ChurnModelSettings(_Frozen):
    """Gradient-boosted churn classifier: label horizon, holdout share, features, trees and promotion rule."""

    registered_model: str
    horizon_days: int = Field(gt=0, description="Churned = no completed purchase in this many days.")
    cutoff: dt.date | None = Field(description="Feature cut-off; null: as-of minus horizon_days.")
    holdout_share: float = Field(gt=0, lt=1)
    features: list[str] = Field(min_length=1)
    null_fill: float = Field(description="Value of a missing feature (e.g. no interval yet).")
    max_iter: int = Field(gt=0)
    max_depth: int = Field(gt=0)
    step_size: float = Field(gt=0, le=1)
    seed: int
    quantile_relative_error: float = Field(default=0.001, gt=0, lt=1)
    rows_per_partition: int = Field(
        default=200_000,
        gt=0,
        description="Training rows per partition (at most the default parallelism): each tree runs a Spark job per"
        " level, so on small data the tasks of many near-empty partitions cost more than the fit.",
    )
    promotion_metric: ChurnMetric
    promotion_min_improvement: float = Field(ge=0)
    guards: ChurnGuardSettings


class ModelSettings(_Frozen):
    clv: ClvModelSettings
    churn: ChurnModelSettings

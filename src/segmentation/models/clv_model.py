"""The CLV family: a purchase model (how often, P(alive)) and Gamma-Gamma (how much) over :mod:`.clv_training`.

The purchase model is chosen per run: every configured candidate (``models.clv.candidates``: BG/NBD, MBG/NBD) is
fitted on the same patterns, all of them and the naive rate are judged on the holdout in one pass, each is guarded,
and ``models.clv.selection_metric`` picks among the fitted ones no guard refused; when every one was refused the naive
rate (each customer's own past purchase rate) is the candidate registered, so the champion is always a sound model.
Each candidate is a nested MLflow run under the training run (:class:`.base.Candidate`).

Trained on per-customer summaries up to the calibration end and judged on the purchases of the holdout that follows;
scored on summaries up to the as-of date, in the champion's own time unit. MLflow stores the parameters with the
business horizon as a ``pyfunc`` whose ``predict`` is the numpy closed forms; ``score`` evaluates the same closed forms
as Spark columns. The fit carries its guard findings (:func:`.clv_training.guard_findings`, limits from
``models.clv.guards``) and the standard errors of its parameters.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.sql import DataFrame

from segmentation.config import ClvModelSettings
from segmentation.models import clv, clv_holdout, guarding, tracking
from segmentation.models import clv_diagnostics as diagnostics
from segmentation.models import clv_training as ct
from segmentation.models.base import Candidate, Evaluation, Fitted, ModelFamily, ScoringInputs, Selection
from segmentation.models.clv import intervals
from segmentation.models.clv.guards import implied_dropout
from segmentation.transforms.features import KEY

SIGNATURE = tracking.signature(
    [("long", "frequency"), ("long", "recency"), ("long", "T"), ("double", "monetary")],
    [
        ("double", c)
        for c in (
            "p_alive",
            "expected_purchases",
            "expected_spend",
            "clv",
            "expected_purchases_low",
            "expected_purchases_high",
            "clv_low",
            "clv_high",
        )
    ],
)
# Illustrative patterns (not customers): a one-time buyer, a regular, a lapsed heavy buyer.
INPUT_EXAMPLE = pd.DataFrame(
    {"frequency": [0, 3, 12], "recency": [0, 20, 30], "T": [10, 26, 80], "monetary": [0.0, 85.5, 240.0]}
)


# ----------------------------------------------------------------------------------------------------------------------
# Predictions: Spark columns for scoring, their numpy twin for the pyfunc
# ----------------------------------------------------------------------------------------------------------------------
INTERVAL_COLUMNS = ("expected_purchases_low", "expected_purchases_high", "clv_low", "clv_high")


def with_predictions(
    summary_df: DataFrame, model: ct.ClvModel, horizon: ct.Horizon, quantiles: Sequence[float] | None = None
) -> DataFrame:
    """``(customer_id, p_alive, expected_purchases, expected_spend, clv)`` as Spark column expressions, and with
    ``quantiles`` (low, high) the ``INTERVAL_COLUMNS``: each customer's interval from the parameter draws the model
    carries (:mod:`.clv.intervals`), null when it carries none."""
    args = ("frequency", "recency", "T")
    purchase = model.purchase_model
    horizon_args = (horizon.periods, horizon.discount_rate_per_period, horizon.step)
    # P(alive) once per customer: for Pareto/NBD it is a UDF the other two columns would otherwise evaluate again.
    predicted = summary_df.withColumn("p_alive", purchase.p_alive_col(*args)).select(
        KEY,
        *args,
        "monetary",
        "p_alive",
        purchase.expected_purchases_col(horizon.periods, *args, alive="p_alive").alias("expected_purchases"),
        clv.expected_spend_col(model.gamma_gamma, "frequency", "monetary").alias("expected_spend"),
        purchase.clv_col(model.gamma_gamma, *args, "monetary", *horizon_args, alive="p_alive").alias("clv"),
    )
    points = (KEY, "p_alive", "expected_purchases", "expected_spend", "clv")
    if quantiles is None:
        return predicted.select(*points)
    if model.spend_draws is None:
        return predicted.select(*points, *[F.lit(None).cast("double").alias(c) for c in INTERVAL_COLUMNS])
    with_bounds = intervals.with_intervals(
        predicted, model.purchase_models_at_draws(), model.spend_draws, quantiles, *horizon_args
    )
    return with_bounds.select(*points, *INTERVAL_COLUMNS)


def predict_frame(
    model: ct.ClvModel, horizon: ct.Horizon, frame: pd.DataFrame, quantiles: Sequence[float] | None = None
) -> pd.DataFrame:
    """The numpy twin of :func:`with_predictions` on a pandas frame of ``frequency, recency, T, monetary``; with
    ``quantiles`` also the ``INTERVAL_COLUMNS`` (NaN when the model carries no parameter draws)."""
    x = frame["frequency"].to_numpy(dtype=float)
    t_x = frame["recency"].to_numpy(dtype=float)
    age = frame["T"].to_numpy(dtype=float)
    m = frame["monetary"].to_numpy(dtype=float)
    m = np.where(x > 0, m, 0.0)
    purchase = model.purchase_model
    horizon_args = (horizon.periods, horizon.discount_rate_per_period, horizon.step)
    out = pd.DataFrame(
        {
            "p_alive": np.atleast_1d(purchase.p_alive(x, t_x, age)),
            "expected_purchases": np.atleast_1d(purchase.expected_purchases(horizon.periods, x, t_x, age)),
            "expected_spend": np.atleast_1d(clv.expected_spend(model.gamma_gamma, x, m)),
            "clv": np.atleast_1d(purchase.clv(model.gamma_gamma, x, t_x, age, m, *horizon_args)),
        }
    )
    if quantiles is None:
        return out
    if model.spend_draws is None:
        return out.assign(**{c: np.nan for c in INTERVAL_COLUMNS})
    bounds = intervals.customer_intervals(
        model.purchase_models_at_draws(), model.spend_draws, quantiles, *horizon_args, x, t_x, age, m
    )
    return out.assign(**bounds)


# ----------------------------------------------------------------------------------------------------------------------
# The family
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClvFrames:
    """Calibration summaries (cached) and holdout actuals of one calibration window in one time unit."""

    orders_df: DataFrame
    as_of: dt.date
    calibration_end: dt.date
    time_unit: str
    sale_status: str
    summary_df: DataFrame
    actuals_df: DataFrame
    holdout_periods: float

    @classmethod
    def split(cls, orders_df: DataFrame, as_of: dt.date, end: dt.date, time_unit: str, sale_status: str) -> ClvFrames:
        summary_df = ct.customer_summary(orders_df, end, time_unit, sale_status).persist(StorageLevel.MEMORY_AND_DISK)
        actuals_df = ct.holdout_actuals(orders_df, end, as_of, time_unit, sale_status)
        periods = (as_of - end).days / ct.DAYS_PER_PERIOD[time_unit]
        return cls(orders_df, as_of, end, time_unit, sale_status, summary_df, actuals_df, periods)

    @property
    def window(self) -> str:
        return f"calibration up to {self.calibration_end}"

    def in_unit(self, time_unit: str) -> ClvFrames:
        """The same window in another time unit (a champion fitted in weeks is judged on weekly summaries)."""
        return ClvFrames.split(self.orders_df, self.as_of, self.calibration_end, time_unit, self.sale_status)

    @functools.cached_property
    def repeat_curve(self) -> diagnostics.RepeatCurve:
        """Purchases per period of the calibration customers, counted once however many models are judged on it."""
        return diagnostics.repeat_curve(
            self.orders_df, self.calibration_end, self.as_of, self.time_unit, self.sale_status
        )

    def release(self) -> None:
        self.summary_df.unpersist()


@dataclass(frozen=True, kw_only=True)
class ClvFitted(Fitted[ct.ClvModel]):
    fit: ct.ClvFit


@dataclass(frozen=True)
class ClvPredictor:
    """What MLflow stores: the parameters and the business horizon; ``predict`` is the numpy closed forms.

    ``predict`` takes a pandas frame of ``frequency, recency, T, monetary`` (in the model's time unit) and returns
    ``p_alive, expected_purchases, expected_spend, clv`` and the ``INTERVAL_COLUMNS`` at ``quantiles`` (the ones
    ``score`` writes, from the same stored parameter draws): for serving a few customers or checking a number.
    Versions logged before the intervals have no ``quantiles`` and predict the points only.
    """

    model: ct.ClvModel
    horizon: ct.Horizon
    quantiles: tuple[float, ...] | None = None

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        return predict_frame(self.model, self.horizon, frame, self.quantiles)


class ClvFamily(ModelFamily[ClvFrames, ClvFitted, ct.ClvModel]):
    """A purchase model (chosen among the candidates) + Gamma-Gamma, judged on holdout purchases (lower error wins)."""

    name = "clv"
    GREATER_IS_BETTER = ct.GREATER_IS_BETTER
    SCORE_COLUMNS = ("clv", "p_alive", "expected_purchases", *INTERVAL_COLUMNS)
    KEY_METRICS = ("holdout_mae", "holdout_rmse", "holdout_actual_total", "holdout_predicted_total", "spend_mae")
    BASELINE = "the naive baseline (each customer's own past purchase rate)"

    @property
    def config(self) -> ClvModelSettings:
        return self.settings.models.clv

    def prepare(self, orders_df: DataFrame, as_of: dt.date) -> ClvFrames:
        cfg = self.config
        end = ct.calibration_end(as_of, cfg)
        return ClvFrames.split(orders_df, as_of, end, cfg.time_unit, self.settings.quality.sale_status)

    def fit(self, frames: ClvFrames) -> ClvFitted:
        """Every configured purchase model and Gamma-Gamma on the same patterns; ``select`` judges and picks one."""
        fit = ct.fit(frames.summary_df, self.config)
        first = next(iter(fit.purchase))
        return self._candidate(fit, first, frames.time_unit)

    def _candidate(self, fit: ct.ClvFit, name: str, time_unit: str) -> ClvFitted:
        """One candidate of a fit as a model with its fit-side metrics, guard findings and tables."""
        params = fit.purchase[name].params if name in fit.purchase else None
        uncertainty = ct.parameter_uncertainty(fit, name)
        errors = uncertainty.errors
        cfg = self.config
        draws = ct.parameter_draws(fit, name, uncertainty, cfg.interval_draws, cfg.interval_seed)
        model = ct.ClvModel(params, fit.gamma_gamma.params, time_unit, name, *draws)
        metrics = {
            "gg_log_likelihood": fit.gamma_gamma.diagnostics.log_likelihood,
            "bgnbd_patterns": float(fit.bgnbd_patterns),
            "gg_patterns": float(fit.gamma_gamma_patterns),
            "repeat_customers": float(fit.repeat_customers),
            **{f"{p}_se": se for p, se in errors.items()},  # infinite ones are left out of the metrics
        }
        tables: dict[str, list[dict[str, Any]]] = {}
        if params is not None:
            metrics.update(fit.information_criteria(name))
            metrics[f"{name}_implied_dropout"] = implied_dropout(name, params.to_dict())
            tables["p_alive_by_recency"] = diagnostics.p_alive_by_recency(
                model.purchase_model, fit.purchase_patterns, self.config.p_alive_recency_days, time_unit
            )
        # None: the likelihood is flat along that parameter, the fit cannot pin it down.
        tables["standard_errors"] = [
            {"parameter": p, "value": value, "standard_error": errors[p] if math.isfinite(errors[p]) else None}
            for p, value in model.params().items()
        ]
        return ClvFitted(
            model=model,
            metrics=metrics,
            details={"customers": fit.customers, "bgnbd_patterns": fit.bgnbd_patterns},
            findings=tuple(ct.guard_findings(fit, name, self.config.guards, time_unit)),
            tables=tables,
            fit=fit,
        )

    def select(self, fitted: ClvFitted, frames: ClvFrames) -> Selection[ct.ClvModel]:
        """Judge every candidate (and the naive rate) on the holdout in one pass, guard each, and pick by
        ``models.clv.selection_metric`` among the fitted ones no guard refused; the naive rate when all were."""
        fit, cfg = fitted.fit, self.config
        fits = {  # the candidate ``fit`` already built is reused: its standard errors are not taken twice
            name: fitted if name == fitted.model.purchase else self._candidate(fit, name, frames.time_unit)
            for name in [*fit.purchase, "naive"]
        }
        evaluations = clv_holdout.evaluate_candidates(
            frames.summary_df,
            frames.actuals_df,
            {name: f.model.purchase_model for name, f in fits.items()},
            fit.gamma_gamma.params,
            frames.holdout_periods,
            cfg.frequency_table_max,
        )
        metrics = {name: {**fits[name].metrics, **e.metrics} for name, e in evaluations.items()}
        guards = {
            name: guarding.by_reason(self.guard(fits[name], Evaluation(e.metrics, {}, e.baseline_metrics)))
            for name, e in evaluations.items()
        }
        metric = cfg.selection_metric
        sign = -1.0 if self.GREATER_IS_BETTER.get(metric, False) else 1.0  # aic and bic: lower wins

        def rank(name: str) -> tuple[bool, float]:
            value = sign * float(metrics[name].get(metric, math.nan))
            return math.isnan(value), value

        sound = [name for name in fit.purchase if not guards[name]]  # in configured order: a tie keeps the first
        chosen = min(sound, key=rank) if sound else "naive"
        candidates = tuple(
            Candidate(name, fits[name].model.params(), metrics[name], guards[name], name == chosen, metric)
            for name in fits
        )
        comparison = {
            f"{c.name}_{k}": c.metrics[k]
            for c in candidates
            for k in ("aic", "bic", "log_likelihood", metric, cfg.promotion_metric)
            if k in c.metrics
        }
        best = fits[chosen]
        selected = dataclasses.replace(best, metrics={**best.metrics, **comparison})
        evaluation = evaluations[chosen]
        tables = {
            "holdout_by_frequency": evaluation.frequency_table,
            "cumulative_purchases": diagnostics.cumulative_purchases(frames.repeat_curve, best.model.purchase_model),
        }
        return Selection(selected, Evaluation(evaluation.metrics, tables, evaluation.baseline_metrics), candidates)

    def evaluate(self, model: ct.ClvModel, frames: ClvFrames) -> Evaluation:
        if model.time_unit != frames.time_unit:
            in_unit = frames.in_unit(model.time_unit)
            try:
                return self.evaluate(model, in_unit)
            finally:
                in_unit.release()
        evaluation = clv_holdout.evaluate_holdout(
            frames.summary_df,
            frames.actuals_df,
            model.purchase_model,
            model.gamma_gamma,
            frames.holdout_periods,
            self.config.frequency_table_max,
        )
        tables = {
            "holdout_by_frequency": evaluation.frequency_table,
            "cumulative_purchases": diagnostics.cumulative_purchases(frames.repeat_curve, model.purchase_model),
        }
        return Evaluation(evaluation.metrics, tables, evaluation.baseline_metrics)

    def images(self, fitted: ClvFitted, evaluation: Evaluation) -> dict[str, Any]:
        figures = {
            "holdout_by_frequency": diagnostics.calibration_figure(evaluation.tables["holdout_by_frequency"]),
            "cumulative_purchases": diagnostics.cumulative_figure(evaluation.tables["cumulative_purchases"]),
        }
        if "p_alive_by_recency" in fitted.tables:
            figures["p_alive_by_recency"] = diagnostics.p_alive_figure(fitted.tables["p_alive_by_recency"])
        return figures

    def params(self, fitted: ClvFitted) -> dict[str, float]:
        return fitted.model.params()

    def run_params(self, fitted: ClvFitted, frames: ClvFrames) -> dict[str, Any]:
        cfg = self.config
        return {
            "time_unit": frames.time_unit,
            "as_of": str(frames.as_of),
            "calibration_end": str(frames.calibration_end),
            "holdout_days": (frames.as_of - frames.calibration_end).days,
            "horizon_days": cfg.horizon_days,
            "annual_discount_rate": cfg.annual_discount_rate,
            "cash_flow_step_days": cfg.cash_flow_step_days,
            "monetary_significant_digits": cfg.monetary_significant_digits,
            "purchase_model": fitted.model.purchase,
            **{f"{name}_converged": f.diagnostics.converged for name, f in fitted.fit.purchase.items()},
            "gg_converged": fitted.fit.gamma_gamma.diagnostics.converged,
        }

    def score_columns(self, model: ct.ClvModel, inputs: ScoringInputs) -> DataFrame:
        """Summaries up to the as-of date in the model's time unit -> the closed forms as Spark columns."""
        summary_df = ct.customer_summary(
            inputs.orders_df, inputs.as_of, model.time_unit, self.settings.quality.sale_status
        )
        cfg = self.config
        if cfg.interval_draws == 0:  # switched off: the champion's draws are not used, the columns stay null
            model = dataclasses.replace(model, purchase_draws=None, spend_draws=None)
        elif model.spend_draws is not None:  # the intervals read the summaries twice (patterns, then customers)
            summary_df = inputs.persist(summary_df)
        horizon = ct.Horizon.from_settings(self.config, model.time_unit)
        return with_predictions(summary_df, model, horizon, cfg.interval_quantiles).select(KEY, *self.SCORE_COLUMNS)

    def log(self, fitted: ClvFitted, registered_model: str) -> Any:
        horizon = ct.Horizon.from_settings(self.config, fitted.model.time_unit)
        return tracking.log_python_model(
            ClvPredictor(fitted.model, horizon, tuple(self.config.interval_quantiles)),
            signature=SIGNATURE,
            input_example=INPUT_EXAMPLE,
            registered_model=registered_model,
        )

    def load(self, uri: str) -> ct.ClvModel:
        stored = tracking.load_python_model(uri)
        # Versions logged before the families stored the ClvModel itself (see tracking.ClvPyfunc).
        return stored if isinstance(stored, ct.ClvModel) else stored.model

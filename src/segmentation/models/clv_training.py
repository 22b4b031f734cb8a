"""CLV training on Spark: per-customer summaries and holdout actuals, the weighted fit, the model as data.

Spark computes each customer's repeat-purchase summary ``(frequency, recency, T, monetary)`` in whole model periods
(days or weeks), then collapses customers to unique ``(frequency, recency, T)`` triples and ``(frequency, rounded
monetary)`` pairs with counts. Only those patterns reach the driver, so the maximum-likelihood fit of
:mod:`segmentation.models.clv` costs the same for ten thousand or a hundred million customers.

Periods are counted back from the end of the calibration window: period -1 ends on the calibration end day, period
0 starts the day after. A customer's frequency is the number of distinct periods with a completed purchase minus one
(several orders in one period are one purchase occasion, as in the literature), recency the number of periods from
the first to the last of them, T the number from the first to the end of the window. The holdout counts purchase
periods after the calibration end the same way, so predictions and actuals speak of the same thing.

The holdout test of the fitted models is :mod:`segmentation.models.clv_holdout`. Scoring (the closed forms as Spark
columns on every customer) and the MLflow ``pyfunc`` (the same parameters with the numpy closed forms) belong to the
CLV model family, :mod:`segmentation.models.clv_model`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from segmentation.config import ClvGuardSettings, ClvModelSettings
from segmentation.models import clv
from segmentation.models.clv import intervals
from segmentation.models.clv.guards import GuardFinding, GuardLimits, check_purchase_fit
from segmentation.models.clv.intervals import Draws
from segmentation.models.clv.purchase import PurchaseModel
from segmentation.models.clv.uncertainty import log_covariance, parameter_names, standard_errors
from segmentation.transforms.columns import day_number, utc_day
from segmentation.transforms.features import KEY

DAYS_PER_PERIOD: Mapping[str, int] = {"days": 1, "weeks": 7}
GREATER_IS_BETTER: Mapping[str, bool] = {
    "holdout_mae": False,
    "holdout_rmse": False,
    "holdout_total_abs_error": False,
    "spend_mae": False,
}
SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary")


def calibration_end(as_of: dt.date, settings: ClvModelSettings) -> dt.date:
    """The last calibration day: configured, or as-of minus the holdout, and always before the as-of date."""
    end = settings.calibration_end or as_of - dt.timedelta(days=settings.holdout_days)
    if end >= as_of:
        raise ValueError(f"models.clv.calibration_end {end} must be before the as-of date {as_of}")
    return end


def purchase_periods(orders_df: DataFrame, end: dt.date, time_unit: str, sale_status: str) -> DataFrame:
    """One row per customer and purchase period: ``(customer_id, period, spend)``; period -1 ends on ``end``."""
    anchor = day_number(end) + 1
    period = F.floor((utc_day(F.col("order_ts")) - F.lit(anchor)) / F.lit(DAYS_PER_PERIOD[time_unit])).cast("int")
    return (
        orders_df.where(F.col("status") == F.lit(sale_status))
        .select(KEY, period.alias("period"), F.col("amount").cast("double").alias("amount"))
        .groupBy(KEY, "period")
        .agg(F.sum("amount").alias("spend"))
    )


def customer_summary(orders_df: DataFrame, end: dt.date, time_unit: str, sale_status: str) -> DataFrame:
    """``(customer_id, frequency, recency, T, monetary)`` from the completed orders up to ``end`` (inclusive).

    ``monetary`` is the average spend of the repeat purchase periods (the first purchase is left out, as the
    Gamma-Gamma model assumes); null for customers without a repeat purchase.
    """
    periods_df = purchase_periods(orders_df, end, time_unit, sale_status).where(F.col("period") < 0)
    first = F.min("period")
    return (
        periods_df.groupBy(KEY)
        .agg(
            F.count(F.lit(1)).alias("_n"),
            first.alias("_first"),
            F.max("period").alias("_last"),
            F.sum("spend").alias("_spend"),
            F.min_by("spend", "period").alias("_first_spend"),
        )
        .select(
            KEY,
            (F.col("_n") - 1).alias("frequency"),
            (F.col("_last") - F.col("_first")).alias("recency"),
            (F.lit(-1) - F.col("_first")).alias("T"),
            F.when(F.col("_n") > 1, (F.col("_spend") - F.col("_first_spend")) / (F.col("_n") - 1)).alias("monetary"),
        )
    )


def holdout_actuals(orders_df: DataFrame, end: dt.date, as_of: dt.date, time_unit: str, sale_status: str) -> DataFrame:
    """``(customer_id, holdout_purchases, holdout_spend)``: purchase periods and their mean spend in (end, as_of]."""
    periods_df = purchase_periods(orders_df, end, time_unit, sale_status)
    last_day_period = ((as_of - end).days - 1) // DAYS_PER_PERIOD[time_unit]
    in_holdout = (F.col("period") >= 0) & (F.col("period") <= F.lit(last_day_period))
    return (
        periods_df.where(in_holdout)
        .groupBy(KEY)
        .agg(F.count(F.lit(1)).alias("holdout_purchases"), F.avg("spend").alias("holdout_spend"))
    )


def round_significant(value: Column, digits: int) -> Column:
    """Round positive values to ``digits`` significant digits, so average order values form a bounded set."""
    exponent = F.floor(F.log10(value)) - F.lit(digits - 1)
    scale = F.pow(F.lit(10.0), exponent)
    return F.when(value > 0, F.round(value / scale) * scale).otherwise(value)


PurchaseFit = clv.BgNbdFit | clv.MbgNbdFit | clv.ParetoNbdFit
_FITTERS = {"bgnbd": clv.fit_bgnbd, "mbgnbd": clv.fit_mbgnbd, "pareto_nbd": clv.fit_pareto_nbd}
PURCHASE_PARAMETERS = 4  # r, alpha, a, b (Pareto/NBD: r, alpha, s, beta) of every fitted family: the k of AIC, BIC


@dataclass(frozen=True)
class ClvFit:
    """The candidate purchase models and the spend model, with the patterns they ran on, whose counts say how much
    the driver saw.

    ``purchase`` maps each configured family (``bgnbd``, ``mbgnbd``, ``pareto_nbd``) to its fit, all on the same
    patterns.
    ``purchase_patterns`` is ``(x, t_x, T, weight)`` and ``spend_patterns`` ``(x, m, weight)``, the arrays the fits
    ran on: the guards and the standard errors are evaluated on them, never on customers.
    """

    purchase: Mapping[str, PurchaseFit]
    gamma_gamma: clv.GammaGammaFit
    purchase_patterns: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    spend_patterns: tuple[np.ndarray, np.ndarray, np.ndarray]

    @property
    def customers(self) -> int:
        return int(self.purchase_patterns[3].sum())

    @property
    def repeat_customers(self) -> int:
        return int(self.spend_patterns[2].sum())

    @property
    def bgnbd_patterns(self) -> int:
        return len(self.purchase_patterns[3])

    @property
    def gamma_gamma_patterns(self) -> int:
        return len(self.spend_patterns[2])

    def information_criteria(self, family: str) -> dict[str, float]:
        """Log-likelihood, AIC and BIC of one purchase fit (``n`` = customers); the spend model, the same for every
        candidate, is left out of the comparison."""
        log_likelihood = self.purchase[family].diagnostics.log_likelihood
        k = PURCHASE_PARAMETERS
        return {
            "log_likelihood": log_likelihood,
            "aic": 2 * k - 2 * log_likelihood,
            "bic": k * math.log(max(self.customers, 1)) - 2 * log_likelihood,
        }


def fit(summary_df: DataFrame, settings: ClvModelSettings) -> ClvFit:
    """Weighted maximum likelihood of every configured purchase model and of Gamma-Gamma on unique patterns
    collected from Spark (one collect each for purchases and spend, shared by every candidate).

    Raises:
        ValueError: if a repeat customer has a non-positive average order value (Gamma-Gamma needs spend > 0), or
            the data has no repeat purchase (the models are not identified).
    """
    bad = summary_df.where((F.col("frequency") > 0) & ~(F.col("monetary") > 0)).count()
    if bad:
        raise ValueError(
            f"Gamma-Gamma needs a positive average order value: {bad:,} repeat customers have monetary <= 0 or null; "
            "check zero-amount orders (quality.allow_zero_amount) and refunds netted into amounts"
        )
    # Sorted, so the optimiser sums in the same order every run: refitting the same data gives the same bits.
    triples = sorted(tuple(r) for r in summary_df.groupBy("frequency", "recency", "T").count().collect())
    x, t_x, age, w = (np.array([r[i] for r in triples], dtype=float) for i in range(4))
    purchase = {
        family: _FITTERS[family](x, t_x, age, w, max_iterations=settings.max_iterations)
        for family in settings.candidates
    }

    rounded = round_significant(F.col("monetary"), settings.monetary_significant_digits).alias("m")
    pairs = sorted(
        tuple(r) for r in summary_df.where(F.col("frequency") > 0).groupBy("frequency", rounded).count().collect()
    )
    if not pairs:
        raise ValueError("no repeat customer in the calibration window: Gamma-Gamma cannot be fitted")
    px, pm, pw = (np.array([r[i] for r in pairs], dtype=float) for i in range(3))
    gamma_gamma = clv.fit_gamma_gamma(px, pm, pw, max_iterations=settings.max_iterations)
    return ClvFit(purchase, gamma_gamma, (x, t_x, age, w), (px, pm, pw))


def guard_findings(fit: ClvFit, family: str, guards: ClvGuardSettings, time_unit: str) -> list[GuardFinding]:
    """Why one candidate must not become champion: the purchase-model guards (times converted to model periods) and
    a spend model that did not converge. The naive rate has no purchase fit to guard."""
    findings = []
    if family in fit.purchase:
        days = DAYS_PER_PERIOD[time_unit]
        limits = GuardLimits(
            min_dropout=guards.min_dropout,
            max_param_ratio=guards.max_param_ratio,
            active_periods=guards.active_days / days,
            silent_periods=guards.silent_days / days,
            min_p_alive_gap=guards.min_p_alive_gap,
        )
        purchase_fit = fit.purchase[family]
        model = PurchaseModel.of(family, purchase_fit.params)
        x, t_x, age, w = fit.purchase_patterns
        found = check_purchase_fit(
            family, purchase_fit.params.to_dict(), purchase_fit.diagnostics, model.p_alive, x, t_x, age, w, limits
        )
        findings += [GuardFinding(f.reason, f"purchase model ({model.name}): {f.detail}") for f in found]
    if not fit.gamma_gamma.diagnostics.converged:
        findings.append(
            GuardFinding("not_converged", f"spend model (Gamma-Gamma): {fit.gamma_gamma.diagnostics.message}")
        )
    return findings


Covariance = tuple[tuple[float, ...], ...]  # of log-parameters, in :func:`.clv.uncertainty.parameter_names` order


@dataclass(frozen=True)
class ParameterUncertainty:
    """How sure one candidate's fit is of its parameters.

    ``errors`` are the standard errors under their logged names (``bgnbd_a``, ``gg_v``, ...), ``inf`` when the fit
    cannot pin a parameter down (a flat likelihood: a degenerate fit). ``purchase`` and ``spend`` are the covariances
    of the log-parameters the errors come from (None: not invertible; ``purchase`` is None for the naive rate too),
    which the intervals of :mod:`.clv.intervals` carry to every customer.
    """

    errors: dict[str, float]
    purchase: Covariance | None
    spend: Covariance | None


def _frozen(covariance: np.ndarray | None) -> Covariance | None:
    return None if covariance is None else tuple(tuple(float(v) for v in row) for row in covariance)


def parameter_uncertainty(fit: ClvFit, family: str) -> ParameterUncertainty:
    """Standard errors and log-parameter covariances of one candidate: its purchase model and Gamma-Gamma."""
    px, pm, pw = fit.spend_patterns
    gg = fit.gamma_gamma.params.to_dict()
    spend_cov = log_covariance("gamma_gamma", gg, (px, pm), pw)
    spend = standard_errors("gamma_gamma", gg, (px, pm), pw, covariance=spend_cov)
    errors = {f"gg_{k}": v for k, v in spend.items()}
    purchase_cov = None
    if family in fit.purchase:
        x, t_x, age, w = fit.purchase_patterns
        params = fit.purchase[family].params.to_dict()
        purchase_cov = log_covariance(family, params, (x, t_x, age), w)
        purchase = standard_errors(family, params, (x, t_x, age), w, covariance=purchase_cov)
        errors = {**{f"{family}_{k}": v for k, v in purchase.items()}, **errors}
    return ParameterUncertainty(errors, _frozen(purchase_cov), _frozen(spend_cov))


def _valid_purchase(family: str) -> Callable[[tuple[float, ...]], bool]:
    if family in ("bgnbd", "mbgnbd"):  # a == 1 is the removable singularity of BG/NBD's closed form
        return lambda draw: abs(draw[2] - 1.0) > 1e-6
    return lambda draw: True


def parameter_draws(
    fit: ClvFit, family: str, uncertainty: ParameterUncertainty, draws: int, seed: int
) -> tuple[Draws | None, Draws | None]:
    """``draws`` purchase and spend parameter sets from the candidate's uncertainty, for its customer intervals;
    (None, None) when there is nothing to draw from (intervals off, or a covariance that is not invertible). The
    naive rate draws spend parameters only (its purchase draws are None)."""
    if draws == 0 or uncertainty.spend is None:
        return None, None
    gg = fit.gamma_gamma.params
    spend = intervals.draw_parameters((gg.p, gg.q, gg.v), uncertainty.spend, draws, seed, lambda d: d[1] > 1.0)
    if family not in fit.purchase:
        return None, spend
    if uncertainty.purchase is None or spend is None:
        return None, None
    params = fit.purchase[family].params
    values = [getattr(params, n) for n in parameter_names(family)]
    purchase = intervals.draw_parameters(values, uncertainty.purchase, draws, seed + 1, _valid_purchase(family))
    return (purchase, spend) if purchase is not None else (None, None)


# ----------------------------------------------------------------------------------------------------------------------
# The model as data: what scoring needs, what MLflow stores (class paths stay: registered versions pickle them)
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClvModel:
    """Fitted parameters with the time unit they are expressed in (alpha and every recency/T depend on it).

    ``purchase`` names the purchase model (:mod:`.clv.purchase`): ``bgnbd`` (the default, and what versions
    registered before the candidates hold), ``mbgnbd``, ``pareto_nbd`` or ``naive``; ``bgnbd`` holds its parameters
    as fitted (``MbgNbdParams`` for MBG/NBD, ``ParetoNbdParams`` for Pareto/NBD, None for the naive rate).
    ``purchase_draws`` and ``spend_draws`` are parameter sets drawn from the fit's uncertainty
    (:mod:`.clv.intervals`), in the order of the fitted parameters' fields, from which scoring derives each customer's
    interval; None (a degenerate fit, intervals switched off, a version registered before they were kept) means none.
    """

    bgnbd: clv.BgNbdParams | clv.MbgNbdParams | clv.ParetoNbdParams | None
    gamma_gamma: clv.GammaGammaParams
    time_unit: str
    purchase: str = "bgnbd"
    purchase_draws: Draws | None = None
    spend_draws: Draws | None = None

    def purchase_models_at_draws(self) -> list[PurchaseModel]:
        """The purchase model at each parameter draw; the naive rate, which has no parameters, is itself alone."""
        if self.bgnbd is None or self.purchase_draws is None:
            return [self.purchase_model]
        fields = [f.name for f in dataclasses.fields(self.bgnbd)]
        return [
            PurchaseModel.of(self.purchase, dataclasses.replace(self.bgnbd, **dict(zip(fields, draw, strict=True))))
            for draw in self.purchase_draws
        ]

    @property
    def purchase_model(self) -> PurchaseModel:
        return PurchaseModel.of(self.purchase, self.bgnbd)

    def params(self) -> dict[str, float]:
        """The parameters under the names logged to MLflow (``bgnbd_r``, ``mbgnbd_r``, ..., ``gg_p``, ...)."""
        purchase = {} if self.bgnbd is None else self.bgnbd.to_dict()
        return {
            **{f"{self.purchase}_{k}": v for k, v in purchase.items()},
            "gg_p": self.gamma_gamma.p,
            "gg_q": self.gamma_gamma.q,
            "gg_v": self.gamma_gamma.v,
        }


@dataclass(frozen=True)
class Horizon:
    """The business side of CLV, in model periods: how far ahead, how often cash flows, at what discount."""

    periods: float
    step: float
    discount_rate_per_period: float

    @classmethod
    def from_settings(cls, settings: ClvModelSettings, time_unit: str) -> Horizon:
        days = DAYS_PER_PERIOD[time_unit]
        return cls(
            periods=settings.horizon_days / days,
            step=settings.cash_flow_step_days / days,
            discount_rate_per_period=(1.0 + settings.annual_discount_rate) ** (days / 365.0) - 1.0,
        )

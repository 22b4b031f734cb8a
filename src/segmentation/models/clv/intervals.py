"""Per-customer intervals of expected purchases and CLV from the uncertainty of the fitted parameters.

A fit estimates its parameters from a finite customer base. The covariance of the log-parameters (the inverse observed
information, :mod:`.uncertainty`) says how far they could be off. A parametric bootstrap carries that to each customer:
at training, ``draws`` parameter sets are drawn from the normal approximation of the log-parameters (seeded, and stored
with the model, so rescoring gives the same intervals); at scoring, every draw predicts every customer, and the
interval is the configured quantiles of those predictions. This needs no linearisation: P(alive) bends sharply with
the drop-out parameters for lapsed heavy buyers, where a delta-method interval misses by several percent.

Cost is kept off the customer count. The purchase part (expected purchases, and the discounted purchases that CLV
multiplies the expected order value by) depends on a customer only through ``(frequency, recency, T)``, so it is
evaluated once per unique pattern, for every draw, with the numpy closed forms of :class:`.purchase.PurchaseModel`
(exact twins of the Spark columns), in Spark batch by batch on the executors (``mapInPandas``), and joined back: the
expected-purchase quantiles as two numbers, the discounted purchases as an array of one value per draw. Per customer,
Spark multiplies that array element by element with the draws of the expected order value (Gamma-Gamma's closed form
as built-in expressions, one per draw), sorts, and reads the quantiles. The purchase model and Gamma-Gamma are fitted
on separate likelihoods, so their draws are independent.

It is parameter uncertainty only: how much a customer's own future varies around the expectation is not in the
interval. The naive rate has no parameters: its expected-purchase interval is the point and its CLV interval comes
from the spend model alone. A fit whose information matrix is not invertible (a degenerate fit, infinite standard
errors) has no draws and no interval (null).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyspark.sql.functions as F
from pyspark.sql import Column, DataFrame

from segmentation.models.clv.closed_forms import _cash_flow_times
from segmentation.models.clv.columns import expected_spend_col
from segmentation.models.clv.params import GammaGammaParams
from segmentation.models.clv.purchase import PurchaseModel

PATTERN = ("frequency", "recency", "T")
Draws = tuple[tuple[float, ...], ...]  # one parameter set per row, in the family's parameter order
_ROUNDS = 20  # resampling rounds for draws outside the parameter space (a Gamma-Gamma q <= 1, say)


def draw_parameters(
    values: Sequence[float],
    covariance: Sequence[Sequence[float]],
    draws: int,
    seed: int,
    valid: Any = None,
) -> Draws | None:
    """``draws`` parameter sets from the normal approximation of the log-parameters around ``values``.

    ``valid`` (a predicate on one set) rejects draws outside the model's parameter space, which are drawn again;
    None when fewer than ``draws`` valid sets turn up (the fit is too uncertain to bootstrap).
    """
    rng = np.random.default_rng(seed)
    theta, matrix = np.log(np.asarray(values, dtype=float)), np.asarray(covariance, dtype=float)
    kept: list[tuple[float, ...]] = []
    for _ in range(_ROUNDS):
        for row in np.exp(rng.multivariate_normal(theta, matrix, size=draws, method="cholesky")):
            candidate = tuple(float(v) for v in row)
            if valid is None or valid(candidate):
                kept.append(candidate)
        if len(kept) >= draws:
            return tuple(kept[:draws])
    return None


def _quantile(sorted_values: Column, n: int, q: float) -> Column:
    """numpy's default (linear) quantile ``q`` of a sorted array column of ``n`` values."""
    position = q * (n - 1)
    below = math.floor(position)
    fraction = position - below
    low = F.element_at(sorted_values, below + 1)
    if fraction == 0 or below + 1 >= n:
        return low
    return low + F.lit(fraction) * (F.element_at(sorted_values, below + 2) - low)


def purchase_draws(
    patterns_df: DataFrame,
    models: Sequence[PurchaseModel],
    quantiles: Sequence[float],
    horizon_periods: float,
    discount_rate_per_period: float,
    step: float,
) -> DataFrame:
    """``(frequency, recency, T, expected_purchases_low, expected_purchases_high, discounted)`` per unique pattern:
    the quantiles of E[Y(horizon)] over the ``models`` (one per draw) and, per draw, the discounted purchases
    ``sum_k (E[Y(t_k)] - E[Y(t_(k-1))]) (1+d)^-t_k`` that CLV multiplies the expected order value by (the cash-flow
    steps of :func:`.closed_forms.customer_lifetime_value`; its last step ends at the horizon, so E[Y(horizon)] comes
    out of the same loop)."""
    times = _cash_flow_times(float(horizon_periods), float(step), float(discount_rate_per_period))
    discounts = (1.0 + discount_rate_per_period) ** -times

    def evaluate(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            x, t_x, age = (batch[c].to_numpy(dtype=float) for c in PATTERN)
            expected = np.empty((len(models), x.shape[0]))
            discounted = np.empty_like(expected)
            for i, model in enumerate(models):
                cumulative = model.cumulative_purchases(times, x, t_x, age)
                discounted[i] = (np.diff(cumulative, axis=0, prepend=0.0) * discounts[:, None]).sum(axis=0)
                expected[i] = cumulative[-1]
            low, high = np.quantile(expected, list(quantiles), axis=0)
            yield batch.assign(expected_purchases_low=low, expected_purchases_high=high, discounted=list(discounted.T))

    pattern_df = patterns_df.select(*PATTERN)
    schema = ", ".join(
        [f"`{c}` {t}" for c, t in pattern_df.dtypes]
        + ["expected_purchases_low double", "expected_purchases_high double", "discounted array<double>"]
    )
    return pattern_df.mapInPandas(evaluate, schema)


def with_intervals(
    predicted_df: DataFrame,
    models: Sequence[PurchaseModel],
    spend_draws: Draws,
    quantiles: Sequence[float],
    horizon_periods: float,
    discount_rate_per_period: float,
    step: float,
) -> DataFrame:
    """``predicted_df`` (one row per customer with ``frequency, recency, T, monetary``) with
    ``expected_purchases_low/_high`` and ``clv_low/_high``: ``models`` holds the purchase model at every parameter
    draw (the naive rate: itself alone), ``spend_draws`` Gamma-Gamma's ``(p, q, v)`` draws."""
    patterns = purchase_draws(
        predicted_df.select(*PATTERN).distinct(), models, quantiles, horizon_periods, discount_rate_per_period, step
    )
    spend = F.array(*[expected_spend_col(GammaGammaParams(*draw), "frequency", "monetary") for draw in spend_draws])
    if len(models) == 1:  # the purchase part is certain: every spend draw times the same discounted purchases
        values = F.transform(spend, lambda s: s * F.element_at("discounted", 1))
        n = len(spend_draws)
    else:
        values = F.zip_with("discounted", spend, lambda d, s: d * s)
        n = min(len(models), len(spend_draws))
    low, high = quantiles
    return (
        predicted_df.join(patterns, list(PATTERN))
        .withColumn("_clv_draws", F.array_sort(values))
        .withColumn("clv_low", _quantile(F.col("_clv_draws"), n, low))
        .withColumn("clv_high", _quantile(F.col("_clv_draws"), n, high))
        .drop("_clv_draws", "discounted")
    )

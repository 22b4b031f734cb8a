"""Closed forms of BG/NBD and Gamma-Gamma in numpy: P(alive), expected purchases and spend, discounted CLV.

For driver-side checks, reports, tests and serving a few customers; :mod:`segmentation.models.clv.columns` holds the
same formulas as Spark expressions for scoring every customer.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import expit, hyp2f1

from segmentation.models.clv.params import BgNbdParams, GammaGammaParams


def _scalar_or_array(values: np.ndarray) -> np.ndarray | float:
    return values[()] if values.ndim == 0 else values


def _check_a(params: BgNbdParams) -> None:
    if abs(params.a - 1.0) < 1e-8:
        raise ValueError("BG/NBD a == 1 is a removable singularity of the expected-purchases closed form")


def p_alive(
    params: BgNbdParams,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
    *,
    first_purchase_dropout: bool = False,
) -> np.ndarray | float:
    """Probability that a customer with history ``(x, t_x, T)`` has not dropped out (Fader, Hardie & Lee 2008).

    ``P = 1 / (1 + [x>0] * a/(b+x-1) * ((alpha+T)/(alpha+t_x))^(r+x))``, evaluated as a logistic of the log-odds
    so it neither overflows for heavy buyers with a long silence nor loses precision near 0 or 1. Customers
    without repeat purchases are alive with probability 1: under BG/NBD drop-out can only follow a purchase.

    ``first_purchase_dropout`` drops the ``[x>0]``: with ``b`` shifted by one this is MBG/NBD's P(alive)
    (:mod:`.purchase`), where a customer may also leave right after the first purchase.
    """
    x_, t_x_, age = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (x, t_x, T)))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeats = x_ if first_purchase_dropout else np.maximum(x_, 1.0)
    log_odds_dead = np.log(a) - np.log(b + repeats - 1.0) + (r + x_) * (np.log(alpha + age) - np.log(alpha + t_x_))
    return _scalar_or_array(np.where((x_ > 0) | first_purchase_dropout, expit(-log_odds_dead), 1.0))


def _series_ratio_bound(upper_a: float, upper_b: float, lower_c: np.ndarray, z: np.ndarray, k: int) -> np.ndarray:
    return z * np.maximum(1.0, np.abs((upper_a + k) * (upper_b + k) / ((lower_c + k) * (k + 1.0))))


def _hyp2f1_minus_one_series(
    upper_a: float, upper_b: float, lower_c: np.ndarray, z: np.ndarray, tol: float = 1e-15, max_terms: int = 200_000
) -> np.ndarray:
    """``2F1(A, B; C; z) - 1`` by its power series, summed until the ratio-test tail bound is below tol.

    Fallback for the few arguments where ``scipy.special.hyp2f1`` returns inf/NaN: an integer ``C - A - B``
    (``x + r - a + 1``, i.e. ``r - a`` a whole number) with large x and z above ~0.9. Same series as the Spark
    columns use.
    """
    total = np.zeros_like(z)
    term = upper_a * upper_b * z / lower_c
    for n in range(1, max_terms + 1):
        total = total + term
        term = term * z * (upper_a + n) * (upper_b + n) / ((lower_c + n) * (n + 1.0))
        q = _series_ratio_bound(upper_a, upper_b, lower_c, z, n + 1)
        if np.all((q < 1) & (np.abs(term) <= tol * (1.0 + np.abs(total)) * (1.0 - q))):
            return total
    raise ArithmeticError(f"2F1 power series did not converge within {max_terms} terms")


def _bracket(params: BgNbdParams, t: np.ndarray, scale: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``1 - (1-z)^(a-1) 2F1(a+b-1-r, a-1; c; z)`` with ``z = t/(scale+t)``, without cancelling against 1.

    Written as ``-expm1((a-1) ln(1-z)) - (1-z)^(a-1) (2F1 - 1)`` so small t keeps its relative precision.
    """
    r, a, b = params.r, params.a, params.b
    t, scale, c = np.broadcast_arrays(t, scale, c)
    z = t / (scale + t)
    log1m_z = np.log(scale) - np.log(scale + t)
    power = (a - 1.0) * log1m_z
    upper_a, upper_b = a + b - 1.0 - r, a - 1.0
    hyp_minus_one = np.asarray(hyp2f1(upper_a, upper_b, c, z) - 1.0)
    failed = ~np.isfinite(hyp_minus_one)
    if np.any(failed):
        hyp_minus_one = hyp_minus_one.copy()
        hyp_minus_one[failed] = _hyp2f1_minus_one_series(upper_a, upper_b, c[failed], z[failed])
    return -np.expm1(power) - np.exp(power) * hyp_minus_one


def expected_purchases(
    params: BgNbdParams,
    t: npt.ArrayLike,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
    *,
    first_purchase_dropout: bool = False,
) -> np.ndarray | float:
    """Conditional expected number of purchases in the next ``t`` periods, E[Y(t) | x, t_x, T] (FHL 2005 eq. 10).

    ``E = P(alive) * (a+b+x-1)/(a-1) * [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(alpha+T+t))]``,
    evaluated through Euler's transformation (see the package docstring), which is the same number without the
    overflow of the untransformed hypergeometric for large x.
    """
    _check_a(params)
    t_, x_, t_x_, age = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (t, x, t_x, T)))
    if np.any(t_ < 0):
        raise ValueError("prediction horizon t must be >= 0")
    c = params.a + params.b + x_ - 1.0
    bracket = _bracket(params, t_, params.alpha + age, c)
    alive = np.asarray(p_alive(params, x_, t_x_, age, first_purchase_dropout=first_purchase_dropout))
    return _scalar_or_array(alive * c / (params.a - 1.0) * bracket)


def unconditional_expected_purchases(
    params: BgNbdParams, t: npt.ArrayLike, *, first_purchase_dropout: bool = False
) -> np.ndarray | float:
    """Expected purchases of a new, randomly chosen customer in ``(0, t]``: E[X(t)] (FHL 2005 eq. 9).

    ``E[X(t)] = (a+b-1)/(a-1) * [1 - (alpha/(alpha+t))^r 2F1(r, b; a+b-1; t/(alpha+t))]``; used to check the fit
    against the aggregate repeat-sales curve. It is :func:`expected_purchases` at ``x = t_x = T = 0``, which is how
    ``first_purchase_dropout`` enters: times the chance of surviving the first purchase.
    """
    _check_a(params)
    t_ = np.asarray(t, dtype=float)
    if np.any(t_ < 0):
        raise ValueError("t must be >= 0")
    c = params.a + params.b - 1.0
    alive = float(p_alive(params, 0.0, 0.0, 0.0, first_purchase_dropout=first_purchase_dropout))
    return _scalar_or_array(alive * c / (params.a - 1.0) * _bracket(params, t_, np.full_like(t_, params.alpha), c))


def expected_spend(params: GammaGammaParams, x: npt.ArrayLike, m: npt.ArrayLike) -> np.ndarray | float:
    """Conditional expected average order value E[M | x, m] (Fader & Hardie Gamma-Gamma note, eq. 5).

    ``E[M | x, m] = p (v + m x) / (p x + q - 1)``: a credibility-weighted average of the population mean
    ``p v / (q - 1)`` (weight ``(q-1)/(px+q-1)``) and the customer's own mean ``m`` (weight ``px/(px+q-1)``), so
    customers with few orders are pulled toward the population. For x = 0 it is the population mean and ``m``
    is ignored (may be 0 or NaN).

    Raises:
        ValueError: If ``q <= 1`` (no finite population mean) or a repeat customer has ``m <= 0``.
    """
    mean = params.population_mean_spend
    x_, m_ = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(m, dtype=float))
    repeat = x_ > 0
    bad = int((repeat & ~(m_ > 0)).sum())
    if bad:
        raise ValueError(f"{bad} repeat customers (x > 0) have a non-positive or missing monetary value m")
    m_safe = np.where(repeat, m_, 0.0)
    p, q, v = params.p, params.q, params.v
    return _scalar_or_array(np.where(repeat, p * (v + m_safe * x_) / (p * x_ + q - 1.0), mean))


def _cash_flow_times(horizon_periods: float, step: float, discount_rate_per_period: float) -> np.ndarray:
    """Ends of the cash-flow intervals: step, 2 step, ..., with a last partial step ending exactly at the horizon."""
    if not (math.isfinite(horizon_periods) and horizon_periods > 0):
        raise ValueError(f"horizon_periods must be a positive number, got {horizon_periods!r}")
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"step must be a positive number, got {step!r}")
    if not (math.isfinite(discount_rate_per_period) and discount_rate_per_period > -1):
        raise ValueError(f"discount_rate_per_period must be > -1, got {discount_rate_per_period!r}")
    n_steps = math.ceil(horizon_periods / step - 1e-9)
    return np.minimum(np.arange(1, n_steps + 1) * step, horizon_periods)


def customer_lifetime_value(
    bgnbd: BgNbdParams,
    gg: GammaGammaParams,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
    m: npt.ArrayLike,
    horizon_periods: float,
    discount_rate_per_period: float,
    step: float = 1,
    *,
    first_purchase_dropout: bool = False,
) -> np.ndarray | float:
    """Discounted expected spend over the next ``horizon_periods`` periods, as ``lifetimes`` computes CLV.

    The horizon is cut into intervals ending at ``t_k = k * step`` (the last one at the horizon). Purchases
    expected in interval k are the difference of cumulative conditional expectations ``E[Y(t_k)] - E[Y(t_{k-1})]``;
    each interval's value is that count times the expected order value ``E[M | x, m]``, discounted by
    ``(1 + discount_rate_per_period) ** t_k``. With ``step = 1`` this is ``lifetimes``' ``customer_lifetime_value``
    with the model fitted in the horizon's unit; ``lifetimes``' monthly loop over a weekly model corresponds to
    ``step = 30`` (its day-to-month factor) and a per-period rate of ``(1 + monthly) ** (1/30) - 1``.

    Args:
        bgnbd: Fitted BG/NBD parameters (same time unit as t_x, T and the horizon).
        gg: Fitted Gamma-Gamma parameters.
        x: Repeat purchases.
        t_x: Recency (time of last repeat purchase since the first).
        T: Customer age.
        m: Average repeat order value (ignored where x = 0).
        horizon_periods: How far ahead, in model periods.
        discount_rate_per_period: Discount rate per model period (not per step).
        step: Interval length in periods.

    Returns:
        CLV per customer, in the currency of ``m``.
    """
    times = _cash_flow_times(float(horizon_periods), float(step), float(discount_rate_per_period))
    spend = np.asarray(expected_spend(gg, x, m))
    previous = 0.0
    total = np.zeros(np.broadcast_shapes(np.shape(x), np.shape(t_x), np.shape(T), np.shape(m)))
    for t_k in times:
        cumulative = np.asarray(
            expected_purchases(bgnbd, t_k, x, t_x, T, first_purchase_dropout=first_purchase_dropout)
        )
        total = total + (cumulative - previous) / (1.0 + discount_rate_per_period) ** t_k
        previous = cumulative
    return _scalar_or_array(spend * total)

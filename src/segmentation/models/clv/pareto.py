"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987): the purchase family BG/NBD approximates, fitted the same way.

A customer buys at a Poisson rate (gamma-distributed across customers: ``r``, ``alpha``) until an exponentially
distributed lifetime ends (its rate gamma-distributed: ``s``, ``beta``). Unlike BG/NBD, dropping out can happen at any
time, not only right after a purchase, so customers who never repeat can still be dead: on data where BG/NBD
collapses to "nobody ever drops out", Pareto/NBD is the candidate that can still separate the active from the silent.

The likelihood (Fader & Hardie, "A note on deriving the Pareto/NBD model and related expressions", 2005, eq. 22) is

    L = G(r+x) alpha^r beta^s / G(r) * [ 1 / ((alpha+T)^(r+x) (beta+T)^s) + s / (r+s+x) * A0 ]

with ``A0`` a difference of two Gaussian hypergeometric terms, written with the larger of ``alpha`` and ``beta`` so
the argument of ``2F1`` stays in [0, 1). Everything is computed in logs (``logaddexp``) so heavy buyers and long
ages do not overflow. Like :func:`fit_bgnbd`, the fit works on unique ``(x, t_x, T)`` patterns with weights, so its
cost depends on the number of patterns, not of customers. The gradient is taken by central differences in
log-parameter space (the analytic one needs derivatives of ``2F1`` in its parameters); the same maximiser decides
convergence on the gradient of the mean log-likelihood.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln, hyp2f1

from segmentation.models.clv.likelihood import _fit_numeric
from segmentation.models.clv.params import FitDiagnostics, _check_positive
from segmentation.models.clv.patterns import _as_1d, _check_frequency, _weights


@dataclass(frozen=True)
class ParetoNbdParams:
    """Pareto/NBD population parameters.

    Attributes:
        r: Shape of the gamma distribution of purchase rates across customers.
        alpha: Scale of that distribution, in model time units.
        s: Shape of the gamma distribution of drop-out rates across customers.
        beta: Scale of that distribution, in model time units.
    """

    r: float
    alpha: float
    s: float
    beta: float

    def __post_init__(self) -> None:
        _check_positive("ParetoNbdParams", asdict(self))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class ParetoNbdFit:
    """A fitted Pareto/NBD model: parameters plus diagnostics."""

    params: ParetoNbdParams
    diagnostics: FitDiagnostics


def _log_a0(r: float, alpha: float, s: float, beta: float, x: np.ndarray, t_x: np.ndarray, age: np.ndarray):
    """``log A0``: ``2F1(r+s+x, t; r+s+x+1; |alpha-beta| / (max+t_x)) / (max+t_x)^(r+s+x)`` minus the same at ``T``,
    with ``t = r+x`` when ``alpha < beta`` and ``s+1`` otherwise."""
    larger, smaller = max(alpha, beta), min(alpha, beta)
    upper = r + x if alpha < beta else np.full_like(x, s + 1.0)
    rsx = r + s + x
    q_1, q_2 = larger + t_x, larger + age
    p_1 = hyp2f1(rsx, upper, rsx + 1.0, (larger - smaller) / q_1)
    p_2 = hyp2f1(rsx, upper, rsx + 1.0, (larger - smaller) / q_2)
    # p_1 / q_1^rsx - p_2 / q_2^rsx = (p_1 q_2^rsx - p_2 q_1^rsx) / (q_1 q_2)^rsx, the difference taken in logs
    first, second = np.log(p_1) + rsx * np.log(q_2), np.log(p_2) + rsx * np.log(q_1)
    with np.errstate(divide="ignore"):
        difference = first + np.log1p(-np.exp(np.minimum(second - first, 0.0)))
    return difference - rsx * (np.log(q_1) + np.log(q_2))


def _pareto_nbd_loglik(log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray, age: np.ndarray, w: np.ndarray) -> float:
    r, alpha, s, beta = (float(v) for v in np.exp(log_params))
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive = -(r + x) * np.log(alpha + age) - s * np.log(beta + age)
    with np.errstate(invalid="ignore"):  # 2F1 overflows far out of the parameter space: the maximiser steps back
        died = np.log(s) - np.log(r + s + x) + _log_a0(r, alpha, s, beta, x, t_x, age)
        ll = common + np.logaddexp(alive, np.where(t_x < age, died, -np.inf))
    return float(w @ ll)


def _checked(x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike, model: str = "Pareto/NBD"):  # noqa: N803
    """``(x, t_x, T)`` as float arrays, checked as :func:`fit_bgnbd` checks them."""
    x_, t_x_, age = _as_1d("x", x), _as_1d("t_x", t_x), _as_1d("T", T)
    if not (x_.shape == t_x_.shape == age.shape):
        raise ValueError(f"x, t_x and T must have the same length, got {x_.shape[0]}, {t_x_.shape[0]}, {age.shape[0]}")
    if x_.shape[0] == 0:
        raise ValueError(f"cannot fit {model} on zero rows")
    _check_frequency(x_)
    if np.any(t_x_ < 0) or np.any(t_x_ > age):
        raise ValueError(f"recency t_x must lie in [0, T]; {int(((t_x_ < 0) | (t_x_ > age)).sum())} rows do not")
    if np.any((x_ == 0) & (t_x_ != 0)):
        raise ValueError(f"{int(((x_ == 0) & (t_x_ != 0)).sum())} rows have x = 0 but t_x != 0; t_x must be 0 then")
    return x_, t_x_, age


def pareto_nbd_log_likelihood(
    params: ParetoNbdParams,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
    weights: npt.ArrayLike | None = None,
) -> float:
    """Total weighted Pareto/NBD log-likelihood of ``params`` on the given patterns (CDNOW: -9595.0 at the MLE)."""
    x_, t_x_, age = _checked(x, t_x, T)
    theta = np.log([params.r, params.alpha, params.s, params.beta])
    return _pareto_nbd_loglik(theta, x_, t_x_, age, _weights(weights, x_.shape[0]))


def fit_pareto_nbd(
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
    weights: npt.ArrayLike | None = None,
    *,
    initial_params: ParetoNbdParams | None = None,
    max_iterations: int = 5000,
) -> ParetoNbdFit:
    """Weighted maximum-likelihood fit of the Pareto/NBD model on ``(x, t_x, T)`` patterns (see :func:`fit_bgnbd`).

    Raises:
        ValueError: on inconsistent inputs or when there is no repeat purchase at all (the model is not identified).
    """
    x_, t_x_, age = _checked(x, t_x, T)
    w = _weights(weights, x_.shape[0])
    total_weight = float(w.sum())
    purchases, exposure = float(w @ x_), float(w @ age)
    if purchases <= 0:
        raise ValueError("no repeat purchases in the data: the Pareto/NBD model is not identified")
    if initial_params is None:
        scale = exposure / total_weight  # start both rates at the time scale of the data, whatever the unit
        initial_params = ParetoNbdParams(r=1.0, alpha=exposure / purchases, s=1.0, beta=scale)
    start = np.log([initial_params.r, initial_params.alpha, initial_params.s, initial_params.beta])
    (r, alpha, s, beta), diagnostics = _fit_numeric(
        lambda th: _pareto_nbd_loglik(th, x_, t_x_, age, w), start, total_weight, int(x_.shape[0]), max_iterations
    )
    return ParetoNbdFit(ParetoNbdParams(r=r, alpha=alpha, s=s, beta=beta), diagnostics)


def pareto_nbd_p_alive(
    params: ParetoNbdParams,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
) -> np.ndarray:
    """P(alive at T | x, t_x, T) = 1 / (1 + s / (r+s+x) * (alpha+T)^(r+x) * (beta+T)^s * A0) (Fader & Hardie 2005,
    eq. 18), with ``A0`` in logs; below 1 also for customers without a repeat purchase."""
    x_, t_x_, age = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (x, t_x, T))
    r, alpha, s, beta = params.r, params.alpha, params.s, params.beta
    with np.errstate(invalid="ignore", divide="ignore"):
        log_a0 = _log_a0(r, alpha, s, beta, x_, t_x_, age)
    log_odds_dead = np.log(s) - np.log(r + s + x_) + (r + x_) * np.log(alpha + age) + s * np.log(beta + age) + log_a0
    return np.where(t_x_ < age, 1.0 / (1.0 + np.exp(log_odds_dead)), 1.0)


def _growth(s: float, scale: npt.ArrayLike, t: npt.ArrayLike) -> np.ndarray:
    """``int_0^t (scale / (scale+u))^s du = scale / (s-1) * [1 - (scale / (scale+t))^(s-1)]``: the expected time a
    customer alive at the start stays alive within ``t`` (``scale = beta + T``), written with ``expm1`` so it stays
    exact near ``s = 1``, where it is ``scale * ln(1 + t/scale)``."""
    scale_, t_ = np.broadcast_arrays(np.asarray(scale, dtype=float), np.asarray(t, dtype=float))
    log_growth = np.log1p(t_ / scale_)
    if s == 1.0:
        return scale_ * log_growth
    return scale_ * -np.expm1(-(s - 1.0) * log_growth) / (s - 1.0)


def pareto_nbd_expected_purchases(
    params: ParetoNbdParams,
    t: npt.ArrayLike,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
) -> np.ndarray:
    """E[Y(t) | x, t_x, T] = P(alive) * (r+x) / (alpha+T) * (beta+T) / (s-1) * [1 - ((beta+T)/(beta+T+t))^(s-1)]
    (Fader & Hardie 2005, eq. 19): the posterior purchase rate times the expected time still alive."""
    t_, x_, t_x_, age = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (t, x, t_x, T)))
    if np.any(t_ < 0):
        raise ValueError("prediction horizon t must be >= 0")
    rate = (params.r + x_) / (params.alpha + age)
    return pareto_nbd_p_alive(params, x_, t_x_, age) * rate * _growth(params.s, params.beta + age, t_)


def pareto_nbd_unconditional_expected_purchases(params: ParetoNbdParams, t: npt.ArrayLike) -> np.ndarray:
    """E[X(t)] of a new customer: ``r beta / (alpha (s-1)) * [1 - (beta/(beta+t))^(s-1)]`` (eq. 17), the conditional
    expectation at ``x = t_x = T = 0``."""
    t_ = np.atleast_1d(np.asarray(t, dtype=float))
    if np.any(t_ < 0):
        raise ValueError("t must be >= 0")
    return params.r / params.alpha * _growth(params.s, params.beta, t_)

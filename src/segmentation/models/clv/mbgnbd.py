"""MBG/NBD (Batislam, Denizel & Filiztekin 2007): BG/NBD where a customer may also drop out at the first purchase.

BG/NBD lets a customer drop out only after a repeat purchase, so every one-time buyer is alive in the model
(P(alive) = 1 at x = 0), which is what makes it rank one-time buyers above lapsed repeat buyers on some data. MBG/NBD
adds a drop-out chance at time zero, so a customer with no repeat purchase can be dead too. Its likelihood is

    L = G(r+x) alpha^r / G(r) * B(a, b+x+1) / B(a, b) * [ (alpha+T)^-(r+x) + a / (b+x) * (alpha+t_x)^-(r+x) ]

(the second term for every x, including 0). Fitted like :func:`fit_bgnbd` on weighted ``(x, t_x, T)`` patterns; the
gradient is taken by central differences in log-parameter space.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import betaln, gammaln

from segmentation.models.clv.likelihood import _fit_numeric
from segmentation.models.clv.params import FitDiagnostics, _check_positive
from segmentation.models.clv.pareto import _checked
from segmentation.models.clv.patterns import _weights


@dataclass(frozen=True)
class MbgNbdParams:
    """MBG/NBD population parameters, named as BG/NBD's (``r``, ``alpha``: purchase rates; ``a``, ``b``: drop-out)."""

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        _check_positive("MbgNbdParams", asdict(self))

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class MbgNbdFit:
    """A fitted MBG/NBD model: parameters plus diagnostics."""

    params: MbgNbdParams
    diagnostics: FitDiagnostics


def _mbgnbd_loglik(log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray, age: np.ndarray, w: np.ndarray) -> float:
    r, alpha, a, b = (float(v) for v in np.exp(log_params))
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x + 1) - betaln(a, b)
    alive = -(r + x) * np.log(alpha + age)
    died = np.log(a) - np.log(b + x) - (r + x) * np.log(alpha + t_x)
    return float(w @ (common + np.logaddexp(alive, died)))


def mbgnbd_log_likelihood(
    params: MbgNbdParams,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
    weights: npt.ArrayLike | None = None,
) -> float:
    """Total weighted MBG/NBD log-likelihood of ``params`` on the given patterns."""
    x_, t_x_, age = _checked(x, t_x, T, "MBG/NBD")
    theta = np.log([params.r, params.alpha, params.a, params.b])
    return _mbgnbd_loglik(theta, x_, t_x_, age, _weights(weights, x_.shape[0]))


def fit_mbgnbd(
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
    weights: npt.ArrayLike | None = None,
    *,
    initial_params: MbgNbdParams | None = None,
    max_iterations: int = 5000,
) -> MbgNbdFit:
    """Weighted maximum-likelihood fit of the MBG/NBD model on ``(x, t_x, T)`` patterns (see :func:`fit_bgnbd`).

    Raises:
        ValueError: on inconsistent inputs or when there is no repeat purchase at all (the model is not identified).
    """
    x_, t_x_, age = _checked(x, t_x, T, "MBG/NBD")
    w = _weights(weights, x_.shape[0])
    total_weight = float(w.sum())
    purchases, exposure = float(w @ x_), float(w @ age)
    if purchases <= 0:
        raise ValueError("no repeat purchases in the data: the MBG/NBD model is not identified")
    if initial_params is None:
        initial_params = MbgNbdParams(r=1.0, alpha=exposure / purchases, a=1.0, b=1.0)
    start = np.log([initial_params.r, initial_params.alpha, initial_params.a, initial_params.b])
    (r, alpha, a, b), diagnostics = _fit_numeric(
        lambda th: _mbgnbd_loglik(th, x_, t_x_, age, w), start, total_weight, int(x_.shape[0]), max_iterations
    )
    return MbgNbdFit(MbgNbdParams(r=r, alpha=alpha, a=a, b=b), diagnostics)


def mbgnbd_p_alive(
    params: MbgNbdParams,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
) -> np.ndarray:
    """P(alive at T | x, t_x, T) = 1 / (1 + a / (b+x) * ((alpha+T) / (alpha+t_x))^(r+x)), below 1 also at x = 0."""
    x_, t_x_, age = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    log_odds_dead = np.log(a) - np.log(b + x_) + (r + x_) * (np.log(alpha + age) - np.log(alpha + t_x_))
    return 1.0 / (1.0 + np.exp(log_odds_dead))

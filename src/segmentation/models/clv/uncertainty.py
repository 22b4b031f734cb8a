"""How sure a fit is of its parameters: standard errors from the observed information at the optimum.

The fits maximise over log-parameters. At the optimum the gradient is zero, so the inverse of the observed information
(minus the Hessian of the weighted log-likelihood) transforms exactly by the Jacobian: with ``C`` the covariance of
the log-parameters, ``se(p) = p * sqrt(C_pp)``. The Hessian is taken by central differences of the log-likelihood on
the weighted patterns, so the cost is a few dozen evaluations on patterns, not customers. A Hessian that is not
negative definite (a flat direction: a degenerate fit) gives infinite standard errors, which is itself a finding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import numpy.typing as npt

from segmentation.models.clv.likelihood import _bgnbd_loglik_and_grad, _gamma_gamma_loglik_and_grad
from segmentation.models.clv.mbgnbd import _mbgnbd_loglik
from segmentation.models.clv.pareto import _checked, _pareto_nbd_loglik
from segmentation.models.clv.patterns import _as_1d, _weights

_STEP = 1e-4  # central-difference step of the Hessian, in log-parameter space

# family -> (parameter names in order, log-likelihood of (log_params, *columns, weights))
_FAMILIES: dict[str, tuple[tuple[str, ...], Callable[..., float]]] = {
    "bgnbd": (("r", "alpha", "a", "b"), lambda th, *c: _bgnbd_loglik_and_grad(th, *c)[0]),
    "mbgnbd": (("r", "alpha", "a", "b"), _mbgnbd_loglik),
    "pareto_nbd": (("r", "alpha", "s", "beta"), _pareto_nbd_loglik),
    "gamma_gamma": (("p", "q", "v"), lambda th, *c: _gamma_gamma_loglik_and_grad(th, *c)[0]),
}


def _hessian(f: Callable[[np.ndarray], float], theta: np.ndarray) -> np.ndarray:
    k = theta.shape[0]
    h = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            e_i, e_j = np.eye(k)[i] * _STEP, np.eye(k)[j] * _STEP
            value = (f(theta + e_i + e_j) - f(theta + e_i - e_j) - f(theta - e_i + e_j) + f(theta - e_i - e_j)) / (
                4 * _STEP**2
            )
            h[i, j] = h[j, i] = value
    return h


def log_covariance(
    family: str,
    params: Mapping[str, float],
    columns: tuple[npt.ArrayLike, ...],
    weights: npt.ArrayLike | None = None,
) -> np.ndarray | None:
    """Covariance of the log-parameters (in the family's parameter order): the inverse observed information at the
    optimum; None when it is not invertible or not positive definite (a flat direction: a degenerate fit).

    Args:
        family: ``bgnbd``, ``mbgnbd``, ``pareto_nbd`` (``columns`` = ``(x, t_x, T)``) or ``gamma_gamma``
            (``columns`` = ``(x, m)`` of repeat customers).
        params: the fitted parameters.
        weights: customers per pattern, as in the fit.
    """
    if family not in _FAMILIES:
        raise ValueError(f"unknown model family {family!r} ({', '.join(_FAMILIES)})")
    names, loglik = _FAMILIES[family]
    if family == "gamma_gamma":
        data = tuple(_as_1d(n, c) for n, c in zip(("x", "m"), columns, strict=True))
    else:
        data = _checked(*columns)
    w = _weights(weights, data[0].shape[0])
    theta = np.log([params[n] for n in names])
    information = -_hessian(lambda th: loglik(th, *data, w), theta)
    try:
        covariance = np.linalg.inv(information)
    except np.linalg.LinAlgError:
        return None
    variances = np.diag(covariance)
    if not np.all(np.isfinite(covariance)) or np.any(variances <= 0):
        return None
    try:
        np.linalg.cholesky((covariance + covariance.T) / 2)
    except np.linalg.LinAlgError:
        return None
    return covariance


def parameter_names(family: str) -> tuple[str, ...]:
    """The family's parameters in the order of :func:`log_covariance`."""
    if family not in _FAMILIES:
        raise ValueError(f"unknown model family {family!r} ({', '.join(_FAMILIES)})")
    return _FAMILIES[family][0]


def standard_errors(
    family: str,
    params: Mapping[str, float],
    columns: tuple[npt.ArrayLike, ...],
    weights: npt.ArrayLike | None = None,
    *,
    covariance: np.ndarray | None = None,
) -> dict[str, float]:
    """Standard errors of a fit's parameters, by name; ``inf`` for all when the information is not invertible (see
    :func:`log_covariance` for the arguments; ``covariance``, when given, is its result, not computed again)."""
    names = _FAMILIES[family][0] if family in _FAMILIES else ()
    if covariance is None:
        covariance = log_covariance(family, params, columns, weights)
    if covariance is None:
        return dict.fromkeys(names, float("inf"))
    variances = np.diag(covariance)
    return {n: float(params[n] * np.sqrt(v)) for n, v in zip(names, variances, strict=True)}

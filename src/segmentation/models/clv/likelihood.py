"""Maximum-likelihood fitting of BG/NBD and Gamma-Gamma on weighted patterns (numpy/scipy, on the driver).

Both log-likelihoods come with analytic gradients and are maximised over log-parameters (positivity for free,
better conditioning) by one maximiser that is not specific to either model, so another family reuses it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import betaln, digamma, gammaln

from segmentation.models.clv.params import BgNbdFit, BgNbdParams, FitDiagnostics, GammaGammaFit, GammaGammaParams
from segmentation.models.clv.patterns import _as_1d, _check_frequency, _weights

# Log-parameters are boxed so a runaway line search cannot overflow gammaln/exp; an optimum on the box edge is
# reported as not converged rather than silently accepted.
_LOG_PARAM_BOUND = 30.0
# Convergence is judged on the gradient of the *mean* negative log-likelihood w.r.t. log-parameters, so the
# threshold does not depend on how many customers there are.
_GRADIENT_TOLERANCE = 1e-6


def _bgnbd_loglik_and_grad(
    log_params: np.ndarray, x: np.ndarray, t_x: np.ndarray, age: np.ndarray, w: np.ndarray
) -> tuple[float, np.ndarray]:
    """Weighted BG/NBD log-likelihood (FHL 2005 eq. 6) and its gradient w.r.t. log-parameters.

    ``L = B(a, b+x)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+T)^(r+x))
        + [x>0] B(a+1, b+x-1)/B(a, b) * G(r+x) alpha^r / (G(r) (alpha+t_x)^(r+x))``; the second beta ratio is
    ``a/(b+x-1)`` times the first, so both terms share a common factor and the sum of the remaining two
    exponentials is taken with ``logaddexp`` (no overflow for heavy buyers or long ages).
    """
    r, alpha, a, b = np.exp(log_params)
    has_repeat = x > 0
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    ln_alive = -(r + x) * np.log(alpha + age)
    b_x1 = b + np.maximum(x, 1.0) - 1.0  # x = 0 rows have no second term; keep the log finite there
    ln_dead = np.where(has_repeat, np.log(a) - np.log(b_x1) - (r + x) * np.log(alpha + t_x), -np.inf)
    ln_mix = np.logaddexp(ln_alive, ln_dead)
    ll = common + ln_mix

    # Posterior weights of "still alive at T" vs "dropped out right after t_x" for the gradient.
    w_alive = np.exp(ln_alive - ln_mix)
    w_dead = np.exp(ln_dead - ln_mix)
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + x)
    d_r = digamma(r + x) - digamma(r) + np.log(alpha) - w_alive * np.log(alpha + age) - w_dead * np.log(alpha + t_x)
    d_alpha = r / alpha - (r + x) * (w_alive / (alpha + age) + w_dead / (alpha + t_x))
    d_a = psi_ab - psi_abx + w_dead / a
    d_b = digamma(b + x) - digamma(b) + psi_ab - psi_abx - w_dead / b_x1
    grad = np.array([r * (w @ d_r), alpha * (w @ d_alpha), a * (w @ d_a), b * (w @ d_b)])
    return float(w @ ll), grad


def _gamma_gamma_loglik_and_grad(
    log_params: np.ndarray, x: np.ndarray, m: np.ndarray, w: np.ndarray
) -> tuple[float, np.ndarray]:
    """Weighted Gamma-Gamma log-likelihood of average spends (Fader & Hardie note eq. 1a) and its gradient.

    ``f(m | p, q, v, x) = G(px+q)/(G(px) G(q)) * v^q * m^(px-1) * x^(px) / (v + m x)^(px+q)``.
    """
    p, q, v = np.exp(log_params)
    px = p * x
    log_m, log_x, log_vmx = np.log(m), np.log(x), np.log(v + m * x)
    ll = gammaln(px + q) - gammaln(px) - gammaln(q) + q * np.log(v) + (px - 1) * log_m + px * log_x - (px + q) * log_vmx
    psi_pxq = digamma(px + q)
    d_p = x * (psi_pxq - digamma(px) + log_m + log_x - log_vmx)
    d_q = psi_pxq - digamma(q) + np.log(v) - log_vmx
    d_v = q / v - (px + q) / (v + m * x)
    grad = np.array([p * (w @ d_p), q * (w @ d_q), v * (w @ d_v)])
    return float(w @ ll), grad


def _numeric_gradient(loglik: Callable[[np.ndarray], float], log_params: np.ndarray) -> tuple[float, np.ndarray]:
    """A log-likelihood and its gradient by central differences in log-parameter space (step 1e-5), for families
    whose analytic gradient is not worth its code (a few evaluations per step on collapsed patterns)."""
    step = 1e-5
    grad = np.empty_like(log_params)
    for i in range(log_params.shape[0]):
        shift = np.zeros_like(log_params)
        shift[i] = step
        grad[i] = (loglik(log_params + shift) - loglik(log_params - shift)) / (2 * step)
    return loglik(log_params), grad


def _fit_numeric(
    loglik: Callable[[np.ndarray], float], start: np.ndarray, total_weight: float, n_patterns: int, max_iterations: int
) -> tuple[tuple[float, ...], FitDiagnostics]:
    """Maximise ``loglik`` of log-parameters by a central-difference gradient: the parameters and diagnostics."""
    theta, ll, converged, iterations, g_norm, message = _maximise(
        lambda th: _numeric_gradient(loglik, th), start, total_weight, max_iterations
    )
    diagnostics = FitDiagnostics(ll, total_weight, n_patterns, converged, iterations, g_norm, message)
    return tuple(float(v) for v in np.exp(theta)), diagnostics


def _maximise(
    loglik_and_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    start: np.ndarray,
    total_weight: float,
    max_iterations: int,
) -> tuple[np.ndarray, float, bool, int, float, str]:
    """Maximise a log-likelihood over log-parameters; returns (log_params, ll, converged, iters, grad, message).

    The objective is the *mean* negative log-likelihood so tolerances mean the same for 100 or 10^7 customers.
    L-BFGS-B with the analytic gradient does the work; a restart from its optimum (fresh curvature memory)
    polishes it, and if the gradient is still not small a Nelder-Mead pass is used to get out of a bad line-search
    region before a final L-BFGS-B.
    """

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        ll, grad = loglik_and_grad(theta)
        if not np.isfinite(ll):
            return 1e300, np.zeros_like(theta)
        return -ll / total_weight, -grad / total_weight

    bounds = [(-_LOG_PARAM_BOUND, _LOG_PARAM_BOUND)] * start.shape[0]
    options = {"maxiter": max_iterations, "ftol": 1e-15, "gtol": 1e-10, "maxcor": 30}
    theta = start
    iterations = 0
    message = ""

    def gradient_norm(t: np.ndarray) -> float:
        return float(np.max(np.abs(objective(t)[1])))

    for attempt in range(3):
        if attempt == 2 and gradient_norm(theta) > _GRADIENT_TOLERANCE:
            nm = minimize(
                lambda t: objective(t)[0],
                theta,
                method="Nelder-Mead",
                options={"maxiter": max_iterations, "xatol": 1e-10, "fatol": 1e-14},
            )
            iterations += int(nm.nit)
            theta = np.clip(nm.x, -_LOG_PARAM_BOUND, _LOG_PARAM_BOUND)
        result = minimize(objective, theta, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
        iterations += int(result.nit)
        theta, message = result.x, str(result.message)
        if attempt >= 1 and gradient_norm(theta) <= _GRADIENT_TOLERANCE:
            break

    ll, _ = loglik_and_grad(theta)
    g_norm = gradient_norm(theta)
    on_box = bool(np.any(np.abs(theta) >= _LOG_PARAM_BOUND - 1e-6))
    converged = bool(np.isfinite(ll) and g_norm <= _GRADIENT_TOLERANCE and not on_box)
    # L-BFGS-B often ends on a line-search "ABNORMAL" at an optimum it cannot improve in double precision; the
    # gradient test above is what decides, and the message says so to avoid a false alarm in logs.
    verdict = "converged" if converged else ("parameter on safety box" if on_box else "gradient not small")
    message = f"{verdict} (max |grad| = {g_norm:.2e}); last optimiser message: {message}"
    return theta, float(ll), converged, iterations, g_norm, message


def bgnbd_log_likelihood(
    params: BgNbdParams,
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
    weights: npt.ArrayLike | None = None,
) -> float:
    """Total weighted BG/NBD log-likelihood of ``params`` on the given patterns (FHL 2005 eq. 6).

    Useful to compare a fit with published estimates (CDNOW: LL = -9582.4 at the FHL 2005 MLE).
    """
    x_, t_x_, age = _as_1d("x", x), _as_1d("t_x", t_x), _as_1d("T", T)
    w = _weights(weights, x_.shape[0])
    theta = np.log([params.r, params.alpha, params.a, params.b])
    return _bgnbd_loglik_and_grad(theta, x_, t_x_, age, w)[0]


def gamma_gamma_log_likelihood(
    params: GammaGammaParams, x: npt.ArrayLike, m: npt.ArrayLike, weights: npt.ArrayLike | None = None
) -> float:
    """Total weighted Gamma-Gamma log-likelihood of ``params`` on repeat customers' ``(x, m)``."""
    x_, m_ = _validated_spend_inputs(x, m)
    w = _weights(weights, x_.shape[0])
    return _gamma_gamma_loglik_and_grad(np.log([params.p, params.q, params.v]), x_, m_, w)[0]


def fit_bgnbd(
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
    weights: npt.ArrayLike | None = None,
    *,
    initial_params: BgNbdParams | None = None,
    max_iterations: int = 5000,
) -> BgNbdFit:
    """Weighted maximum-likelihood fit of the BG/NBD model (Fader, Hardie & Lee 2005).

    Pass unique ``(x, t_x, T)`` patterns with ``weights`` = number of customers per pattern (see
    :func:`collapse_patterns`, or ``groupBy("x", "t_x", "T").count()`` in Spark); the result equals the fit on one
    row per customer, at a cost that depends on the number of patterns only.

    Args:
        x: Repeat purchases in the calibration window (whole numbers >= 0).
        t_x: Time of the last repeat purchase since the first purchase (0 when x = 0), ``0 <= t_x <= T``.
        T: Customer age: time from first purchase to the end of the calibration window.
        weights: Customers per row; ``None`` means one customer per row.
        initial_params: Starting point; by default r = 1, a = 1, b = 1 and alpha set so that r/alpha matches
            the average observed purchase rate, which puts the start in the right time scale whatever the unit.
        max_iterations: Per-optimiser-run iteration cap.

    Returns:
        A :class:`BgNbdFit`. Check ``diagnostics.converged`` before using the parameters.

    Raises:
        ValueError: On inconsistent inputs (negative or fractional x, t_x outside [0, T], t_x != 0 with x = 0,
            non-positive weights) or when there is no repeat purchase at all (the model is not identified).
    """
    x_, t_x_, age = _as_1d("x", x), _as_1d("t_x", t_x), _as_1d("T", T)
    if not (x_.shape == t_x_.shape == age.shape):
        raise ValueError(f"x, t_x and T must have the same length, got {x_.shape[0]}, {t_x_.shape[0]}, {age.shape[0]}")
    if x_.shape[0] == 0:
        raise ValueError("cannot fit BG/NBD on zero rows")
    _check_frequency(x_)
    if np.any(t_x_ < 0) or np.any(t_x_ > age):
        raise ValueError(f"recency t_x must lie in [0, T]; {int(((t_x_ < 0) | (t_x_ > age)).sum())} rows do not")
    if np.any((x_ == 0) & (t_x_ != 0)):
        raise ValueError(f"{int(((x_ == 0) & (t_x_ != 0)).sum())} rows have x = 0 but t_x != 0; t_x must be 0 then")
    w = _weights(weights, x_.shape[0])
    total_weight = float(w.sum())
    purchases, exposure = float(w @ x_), float(w @ age)
    if purchases <= 0:
        raise ValueError("no repeat purchases in the data: the BG/NBD model is not identified")

    if initial_params is None:
        rate = purchases / max(exposure, 1e-12)
        initial_params = BgNbdParams(r=1.0, alpha=1.0 / rate, a=1.0, b=1.0)
    start = np.log([initial_params.r, initial_params.alpha, initial_params.a, initial_params.b])

    theta, ll, converged, iterations, g_norm, message = _maximise(
        lambda th: _bgnbd_loglik_and_grad(th, x_, t_x_, age, w), start, total_weight, max_iterations
    )
    r, alpha, a, b = (float(v) for v in np.exp(theta))
    diagnostics = FitDiagnostics(ll, total_weight, int(x_.shape[0]), converged, iterations, g_norm, message)
    return BgNbdFit(BgNbdParams(r=r, alpha=alpha, a=a, b=b), diagnostics)


def _validated_spend_inputs(x: npt.ArrayLike, m: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x_, m_ = _as_1d("x", x), _as_1d("m", m)
    if x_.shape != m_.shape:
        raise ValueError(f"x and m must have the same length, got {x_.shape[0]} and {m_.shape[0]}")
    _check_frequency(x_)
    non_positive_m = int((m_ <= 0).sum())
    if non_positive_m:
        raise ValueError(
            f"Gamma-Gamma needs strictly positive average order values: {non_positive_m} of {m_.shape[0]} rows "
            "have monetary value <= 0 (drop refunds/zero-value orders or use net-positive spend)"
        )
    non_repeat = int((x_ <= 0).sum())
    if non_repeat:
        raise ValueError(
            f"Gamma-Gamma is fitted on repeat customers only: {non_repeat} of {x_.shape[0]} rows have frequency "
            "x <= 0; filter them out first"
        )
    return x_, m_


def fit_gamma_gamma(
    x: npt.ArrayLike,
    m: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    *,
    initial_params: GammaGammaParams | None = None,
    max_iterations: int = 5000,
) -> GammaGammaFit:
    """Weighted maximum-likelihood fit of the Gamma-Gamma spend model on repeat customers.

    Args:
        x: Repeat purchases (> 0) of each row.
        m: Average value of those repeat purchases (> 0); Fader & Hardie's z-bar.
        weights: Customers per ``(x, m)`` pattern; ``None`` means one customer per row.
        initial_params: Starting point; by default p = 1, q = 2 and v such that the population mean spend
            ``p v / (q - 1)`` equals the weighted mean of ``m`` (right scale in any currency).
        max_iterations: Per-optimiser-run iteration cap.

    Returns:
        A :class:`GammaGammaFit`. Expected spends need ``q > 1``.

    Raises:
        ValueError: If any monetary value is <= 0 (the message gives how many), any x <= 0, or weights are bad.
    """
    x_, m_ = _validated_spend_inputs(x, m)
    w = _weights(weights, x_.shape[0])
    total_weight = float(w.sum())
    if initial_params is None:
        initial_params = GammaGammaParams(p=1.0, q=2.0, v=float(w @ m_) / total_weight)
    start = np.log([initial_params.p, initial_params.q, initial_params.v])
    theta, ll, converged, iterations, g_norm, message = _maximise(
        lambda th: _gamma_gamma_loglik_and_grad(th, x_, m_, w), start, total_weight, max_iterations
    )
    p, q, v = (float(value) for value in np.exp(theta))
    diagnostics = FitDiagnostics(ll, total_weight, int(x_.shape[0]), converged, iterations, g_norm, message)
    return GammaGammaFit(GammaGammaParams(p=p, q=q, v=v), diagnostics)

"""CLV fit timing: the weighted BG/NBD fit on unique (x, t_x, T) patterns against one row per customer.

Numpy only, no Spark: ``run`` calls it after the Spark session has stopped, and it can be run on its own
(``segmentation.bench.clv_fit_timings([1_000_000, 5_000_000])``) so both fits of a row share the machine equally.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)


def simulate_bgnbd(
    n: int,
    seed: int,
    r: float = 0.24,
    alpha: float = 4.41,
    a: float = 0.79,
    b: float = 2.43,
    resolution_days: int = 1,
):
    """(x, t_x, T) in weeks of ``n`` customers drawn from the BG/NBD process, times on a grid of whole days.

    Customers are first seen on a random day of two years; each buys at a gamma-distributed Poisson rate and drops
    out after each repeat purchase with a beta-distributed probability. Times go on a grid of ``resolution_days``
    (1: whole days, as a ``datediff`` in Spark gives them; 7: whole weeks; t_x floored, T rounded up so
    t_x <= T), which is what makes customers share patterns.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    age_days = rng.integers(1, 731, n)
    age = age_days / 7.0
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    events = rng.poisson(lam * age)
    alive_repeats = rng.geometric(p)  # the repeat purchase after which the customer drops out
    x = np.minimum(events, alive_repeats)
    t_x = np.where(x > 0, age * rng.beta(np.maximum(x, 1), np.maximum(events - x + 1, 1)), 0.0)
    t_x_days = np.minimum(np.floor(t_x * 7.0), age_days)
    t_x_days = np.where(x > 0, t_x_days, 0)
    step = float(resolution_days)
    return x.astype(float), np.floor(t_x_days / step) * step / 7.0, np.ceil(age_days / step) * step / 7.0


def clv_fit_timings(
    customer_counts: Sequence[int], seed: int = 7, resolutions_days: Sequence[int] = (7,)
) -> list[dict[str, Any]]:
    """Time the weighted BG/NBD fit on unique patterns against the same fit on one row per customer.

    ``resolutions_days`` are the time grids to simulate; the default, 7, is what ``train`` fits with the shipped
    ``models.clv.time_unit: weeks`` (frequency, recency and age in whole periods); 1 is ``time_unit: days``.
    """
    from segmentation.models import clv

    rows = []
    for n, resolution in [(n, res) for res in resolutions_days for n in customer_counts]:
        x, t_x, age = simulate_bgnbd(n, seed, resolution_days=resolution)
        start = time.perf_counter()
        (ux, ut, ua), weights = clv.collapse_patterns(x, t_x, age)
        collapse_s = time.perf_counter() - start
        start = time.perf_counter()
        collapsed = clv.fit_bgnbd(ux, ut, ua, weights)
        collapsed_s = time.perf_counter() - start
        start = time.perf_counter()
        full = clv.fit_bgnbd(x, t_x, age)
        full_s = time.perf_counter() - start
        pc, pf = collapsed.params.to_dict(), full.params.to_dict()
        rows.append(
            {
                "customers": n,
                "resolution_days": resolution,
                "patterns": len(ux),
                "collapse_s": round(collapse_s, 2),
                "collapsed_fit_s": round(collapsed_s, 2),
                "per_customer_fit_s": round(full_s, 2),
                "speedup": round(full_s / collapsed_s, 1) if collapsed_s > 0 else None,
                "speedup_incl_collapse": round(full_s / (collapsed_s + collapse_s), 1),
                "params_collapsed": {k: round(v, 5) for k, v in pc.items()},
                "params_per_customer": {k: round(v, 5) for k, v in pf.items()},
                "max_rel_param_diff": max(abs(pc[k] - pf[k]) / abs(pf[k]) for k in pf),
                "converged": [collapsed.diagnostics.converged, full.diagnostics.converged],
            }
        )
        log.info("clv fit %s", rows[-1])
    return rows


def clv_candidate_timings(
    customer_counts: Sequence[int], seed: int = 7, resolution_days: int = 7, draws: int = 200
) -> list[dict[str, Any]]:
    """Time what ``train`` and ``score`` do on the driver and per pattern for each purchase candidate, at scale.

    For each customer count: BG/NBD histories simulated as in :func:`clv_fit_timings` (on the ``weeks`` grid by
    default), collapsed to patterns once; then per candidate family the weighted fit, the standard errors (observed
    information by central differences), ``draws`` parameter sets, and the interval work of ``score``: every draw's
    expected and discounted purchases on every pattern (:func:`.clv.intervals.purchase_draws`' numpy body, here in one
    process; ``score`` spreads it over the cores in batches). The Spark side of ``train`` (summaries, the collect of
    patterns) scales as the build does and is in the build benchmark.
    """

    from segmentation.models import clv
    from segmentation.models.clv import intervals
    from segmentation.models.clv.closed_forms import _cash_flow_times
    from segmentation.models.clv.purchase import PARAMETER_NAMES, PurchaseModel, discounted_increments
    from segmentation.models.clv.uncertainty import log_covariance

    fitters = {"bgnbd": clv.fit_bgnbd, "mbgnbd": clv.fit_mbgnbd, "pareto_nbd": clv.fit_pareto_nbd}
    rate = 1.1 ** (7 / 365) - 1  # the shipped horizon, steps and discount rate, in weeks
    times = _cash_flow_times(365 / 7, 30 / 7, rate)
    rows = []
    for n in customer_counts:
        x, t_x, age = simulate_bgnbd(n, seed, resolution_days=resolution_days)
        (ux, ut, ua), weights = clv.collapse_patterns(x, t_x, age)
        for family, fitter in fitters.items():
            start = time.perf_counter()
            fit = fitter(ux, ut, ua, weights)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            covariance = log_covariance(family, fit.params.to_dict(), (ux, ut, ua), weights)
            se_s = time.perf_counter() - start
            row: dict[str, Any] = {
                "customers": n,
                "patterns": len(ux),
                "family": family,
                "fit_s": round(fit_s, 2),
                "standard_errors_s": round(se_s, 2),
                "converged": fit.diagnostics.converged,
                "params": {k: round(v, 5) for k, v in fit.params.to_dict().items()},
            }
            if covariance is not None:
                values = [getattr(fit.params, name) for name in PARAMETER_NAMES[family]]
                sets = intervals.draw_parameters(values, covariance, draws, seed) or ()
                models = [
                    PurchaseModel.of(family, type(fit.params)(**dict(zip(PARAMETER_NAMES[family], d, strict=True))))
                    for d in sets
                ]
                start = time.perf_counter()
                for model in models:
                    cumulative = model.cumulative_purchases(times, ux, ut, ua)
                    discounted_increments(cumulative, times, rate)
                row.update(draws=len(models), interval_patterns_s=round(time.perf_counter() - start, 2))
            rows.append(row)
            log.info("clv candidate %s", row)
    return rows

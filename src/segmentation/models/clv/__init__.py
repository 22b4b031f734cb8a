"""Customer lifetime value from buy-till-you-die models: BG/NBD for how often, Gamma-Gamma for how much.

Three layers, so the expensive part never grows with the customer base and scoring never leaves the cluster; each is
one module of this package, next to :mod:`.params` (parameters, fit results, :func:`to_unit`):

1. **Fitting** (numpy/scipy, on the driver; :mod:`.patterns`, :mod:`.likelihood`). The BG/NBD likelihood depends
   on a customer only through ``(x, t_x, T)`` and the Gamma-Gamma likelihood only through ``(x, m)``, so callers
   collapse customers to unique patterns with a ``weight`` (a ``groupBy().count()`` in Spark, or
   :func:`collapse_patterns` here) and the optimiser works on patterns, not customers. Both likelihoods come with
   analytic gradients and are optimised over log-parameters (positivity for free, better conditioning) with
   L-BFGS-B, restarted once to polish.
2. **Closed forms** (numpy; :mod:`.closed_forms`): P(alive), conditional and unconditional expected purchases,
   conditional expected spend and discounted CLV, for driver-side checks, reports and tests.
3. **Spark columns** (:mod:`.columns`): the same closed forms as expressions built only from built-in Spark SQL
   functions (no Python UDF, nothing collected), for scoring every customer where the data lives.

The Gaussian hypergeometric function in the expected-purchases formula (FHL 2005 eq. 10) is always evaluated after
Euler's transformation ``2F1(a, b; c; z) = (1 - z)^(c-a-b) 2F1(c-a, c-b; c; z)``. For eq. 10 this gives

    ((alpha+T)/(alpha+T+t))^(r+x) * 2F1(r+x, b+x; a+b+x-1; z) = (1-z)^(a-1) * 2F1(a+b-1-r, a-1; a+b+x-1; z),
    z = t / (alpha+T+t),

whose upper parameters no longer grow with the frequency x. The untransformed 2F1 grows like (1-z)^-(r+x-a+1) and
overflows for heavy buyers (scipy returns inf and the printed formula NaN, e.g. x = 1000 over a long horizon); the
transformed one stays O(1), its power-series terms shrink faster the larger x is, and the prefactor collapses to
``(1-z)^(a-1)``. The unconditional
E[X(t)] (FHL 2005 eq. 9) is the same expression with x = 0, T = 0 and P(alive) = 1.

All times (t_x, T, t, horizons) are in one model time unit ("period"); :func:`to_unit` converts day counts. Nothing
here knows a business horizon or discount rate: they are arguments.

:mod:`.pareto` (Pareto/NBD: drop-out at any time) and :mod:`.mbgnbd` (MBG/NBD: drop-out also at the first purchase)
fit the other candidate purchase families on the same weighted patterns; :mod:`.purchase` puts BG/NBD, MBG/NBD (whose
closed forms are BG/NBD's with ``b + 1``) and the naive rate behind one scoring shape; :mod:`.guards` says why a fit
is not to be trusted, and :mod:`.uncertainty` gives the standard errors of its parameters.

References:
    Fader, Hardie & Lee (2005), "Counting your customers the easy way: an alternative to the Pareto/NBD model",
    Marketing Science 24(2). Fader, Hardie & Lee (2008), "Computing P(alive) using the BG/NBD model".
    Fader, Hardie & Lee (2005), "RFM and CLV: using iso-value curves for customer base analysis", JMR 42(4).
    Fader & Hardie (2013), "The Gamma-Gamma model of monetary value".
"""

from segmentation.models.clv.closed_forms import (
    customer_lifetime_value,
    expected_purchases,
    expected_spend,
    p_alive,
    unconditional_expected_purchases,
)
from segmentation.models.clv.columns import SERIES_MAX_TERMS as SERIES_MAX_TERMS
from segmentation.models.clv.columns import SERIES_TOL as SERIES_TOL
from segmentation.models.clv.columns import clv_col, expected_purchases_col, expected_spend_col, p_alive_col
from segmentation.models.clv.likelihood import _bgnbd_loglik_and_grad as _bgnbd_loglik_and_grad
from segmentation.models.clv.likelihood import _gamma_gamma_loglik_and_grad as _gamma_gamma_loglik_and_grad
from segmentation.models.clv.likelihood import (
    bgnbd_log_likelihood,
    fit_bgnbd,
    fit_gamma_gamma,
    gamma_gamma_log_likelihood,
)
from segmentation.models.clv.mbgnbd import MbgNbdFit, MbgNbdParams, fit_mbgnbd, mbgnbd_log_likelihood, mbgnbd_p_alive
from segmentation.models.clv.params import (
    BgNbdFit,
    BgNbdParams,
    FitDiagnostics,
    GammaGammaFit,
    GammaGammaParams,
    to_unit,
)
from segmentation.models.clv.pareto import (
    ParetoNbdFit,
    ParetoNbdParams,
    fit_pareto_nbd,
    pareto_nbd_log_likelihood,
    pareto_nbd_p_alive,
)
from segmentation.models.clv.patterns import collapse_patterns

__all__ = [
    "BgNbdFit",
    "BgNbdParams",
    "FitDiagnostics",
    "GammaGammaFit",
    "GammaGammaParams",
    "MbgNbdFit",
    "MbgNbdParams",
    "ParetoNbdFit",
    "ParetoNbdParams",
    "bgnbd_log_likelihood",
    "clv_col",
    "collapse_patterns",
    "customer_lifetime_value",
    "expected_purchases",
    "expected_purchases_col",
    "expected_spend",
    "expected_spend_col",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "fit_mbgnbd",
    "fit_pareto_nbd",
    "gamma_gamma_log_likelihood",
    "mbgnbd_log_likelihood",
    "mbgnbd_p_alive",
    "p_alive",
    "p_alive_col",
    "pareto_nbd_log_likelihood",
    "pareto_nbd_p_alive",
    "to_unit",
    "unconditional_expected_purchases",
]

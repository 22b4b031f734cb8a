"""Pareto/NBD on the CDNOW sample against the published maximum-likelihood estimates.

Fader & Hardie, "A note on implementing the Pareto/NBD model in MATLAB" (2005), fit the model to the same 2,357
CDNOW customers (weeks) and report r = 0.55, alpha = 10.58, s = 0.61, beta = 11.67 with LL = -9595.0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.models import clv
from segmentation.models.clv.pareto import ParetoNbdParams, fit_pareto_nbd, pareto_nbd_log_likelihood

DATA = Path(__file__).resolve().parent.parent / "data" / "cdnow_summary.csv"
PUBLISHED = {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}
PUBLISHED_LL = -9595.0


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(DATA)


@pytest.fixture(scope="module")
def fit(cdnow: pd.DataFrame):
    (x, t_x, age), weights = clv.collapse_patterns(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    return fit_pareto_nbd(x, t_x, age, weights)


def test_pareto_nbd_fit_on_cdnow_matches_the_published_estimates(fit) -> None:
    assert fit.diagnostics.converged, fit.diagnostics.message
    for name, value in PUBLISHED.items():
        assert round(getattr(fit.params, name), 2) == value, (name, fit.params)
    assert round(fit.diagnostics.log_likelihood, 1) == PUBLISHED_LL
    assert fit.diagnostics.n_customers == 2357 and fit.diagnostics.n_patterns < 2357


def test_pareto_nbd_weighted_fit_equals_per_customer_fit(fit, cdnow: pd.DataFrame) -> None:
    per_customer = fit_pareto_nbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    expected, got = fit.params.to_dict(), per_customer.params.to_dict()
    assert all(got[k] == pytest.approx(expected[k], rel=1e-5) for k in expected), (expected, got)
    assert per_customer.diagnostics.log_likelihood == pytest.approx(fit.diagnostics.log_likelihood, abs=1e-6)


def test_pareto_nbd_log_likelihood_at_the_published_estimates(cdnow: pd.DataFrame) -> None:
    published = ParetoNbdParams(**PUBLISHED)
    ll = pareto_nbd_log_likelihood(published, cdnow["frequency"], cdnow["recency"], cdnow["T"])
    # The published parameters are rounded to two decimals: their likelihood is just below the optimum.
    assert PUBLISHED_LL - 1.0 < ll <= PUBLISHED_LL + 0.05
    # A customer who repeats at the very end of the window (t_x = T) has no "died since" term and stays finite.
    edge = pareto_nbd_log_likelihood(published, [3.0], [10.0], [10.0])
    assert np.isfinite(edge)


def test_pareto_nbd_refuses_data_without_repeat_purchases() -> None:
    with pytest.raises(ValueError, match="no repeat purchases"):
        fit_pareto_nbd([0, 0, 0], [0, 0, 0], [5.0, 6.0, 7.0])
    with pytest.raises(ValueError, match="t_x must lie in"):
        fit_pareto_nbd([1, 2], [3.0, 9.0], [5.0, 6.0])


def test_pareto_nbd_p_alive_matches_the_reference_implementation() -> None:
    # lifetimes 0.11.3's ParetoNBDFitter on the same data: its parameters and conditional_probability_alive.
    params = ParetoNbdParams(r=0.553271, alpha=10.577742, s=0.606237, beta=11.668724)
    got = clv.pareto_nbd_p_alive(params, [0, 2, 10], [0.0, 30.43, 20.0], [38.86, 38.86, 38.86])
    np.testing.assert_allclose(got, [0.295099, 0.869116, 0.082761], atol=5e-6)
    assert clv.pareto_nbd_p_alive(params, [3], [10.0], [10.0])[0] == 1.0  # bought at the end of the window

"""Pareto/NBD on the CDNOW sample against the published maximum-likelihood estimates.

Fader & Hardie, "A note on implementing the Pareto/NBD model in MATLAB" (2005), fit the model to the same 2,357
CDNOW customers (weeks) and report r = 0.55, alpha = 10.58, s = 0.61, beta = 11.67 with LL = -9595.0.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy.special import gammaln

from segmentation.models import clv
from segmentation.models.clv.pareto import (
    ParetoNbdParams,
    fit_pareto_nbd,
    pareto_nbd_expected_purchases,
    pareto_nbd_log_likelihood,
    pareto_nbd_unconditional_expected_purchases,
)
from segmentation.models.clv.purchase import PurchaseModel

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


LIFETIMES_PARAMS = ParetoNbdParams(r=0.553271, alpha=10.577742, s=0.606237, beta=11.668724)


def _posterior(params: ParetoNbdParams, x: float, t_x: float, age: float, t: float) -> tuple[float, float]:
    """P(alive) and E[Y(t)] from first principles, by integrating over the gamma prior of (lambda, mu): a customer
    with rates (lambda, mu) alive at T has likelihood lambda^x e^-(lambda+mu)T, one who died in (t_x, T) adds
    lambda^x mu/(lambda+mu) (e^-(lambda+mu)t_x - e^-(lambda+mu)T), and an alive one buys lambda/mu (1 - e^-mu t) more.
    No closed form and no hypergeometric function: an independent check of both."""

    def log_prior(a: float, b: float) -> float:  # log-rates a = ln lambda, b = ln mu, Jacobian included
        p = params
        return (
            p.r * np.log(p.alpha) - gammaln(p.r) + p.r * a - p.alpha * np.exp(a)
            + p.s * np.log(p.beta) - gammaln(p.s) + p.s * b - p.beta * np.exp(b)
        )  # fmt: skip

    def alive(b: float, a: float) -> float:
        return float(np.exp(log_prior(a, b) + x * a - (np.exp(a) + np.exp(b)) * age))

    def died(b: float, a: float) -> float:
        total = np.exp(a) + np.exp(b)
        window = np.exp(-total * t_x) - np.exp(-total * age)
        return float(np.exp(log_prior(a, b) + x * a) * np.exp(b) / total * window)

    def future(b: float, a: float) -> float:
        return alive(b, a) * np.exp(a - b) * -np.expm1(-np.exp(b) * t)

    box = (-25.0, 6.0, -25.0, 6.0)  # ln-rates: the prior mass outside is far below the tolerance

    def integral(f) -> float:
        return integrate.dblquad(f, *box, epsabs=0, epsrel=1e-8)[0]

    on, off = integral(alive), integral(died)
    return on / (on + off), integral(future) / (on + off)


def test_pareto_nbd_expected_purchases_equal_the_posterior_integral() -> None:
    x, t_x, age, t = 2.0, 30.43, 38.86, 39.0
    p_alive, expected = _posterior(LIFETIMES_PARAMS, x, t_x, age, t)
    assert clv.pareto_nbd_p_alive(LIFETIMES_PARAMS, [x], [t_x], [age])[0] == pytest.approx(p_alive, rel=1e-5)
    got = pareto_nbd_expected_purchases(LIFETIMES_PARAMS, t, x, t_x, age)[0]
    assert got == pytest.approx(expected, rel=1e-5)


def test_pareto_nbd_closed_forms_hold_at_their_edges() -> None:
    ts = np.array([0.0, 0.5, 10.0, 52.0])
    model = PurchaseModel.of("pareto_nbd", LIFETIMES_PARAMS)
    # A customer with no history is a new customer; nothing is bought in no time.
    np.testing.assert_allclose(model.unconditional_expected_purchases(ts), model.expected_purchases(ts, 0, 0, 0))
    assert model.expected_purchases(0.0, 3, 10.0, 20.0) == 0.0
    # s = 1 is a removable singularity: the closed form is continuous through it.
    near, at = (dataclasses.replace(LIFETIMES_PARAMS, s=s) for s in (1.0 + 1e-9, 1.0))
    np.testing.assert_allclose(
        pareto_nbd_unconditional_expected_purchases(near, ts), pareto_nbd_unconditional_expected_purchases(at, ts)
    )
    # More time, more purchases; a long silence fewer than a recent purchase.
    assert np.all(np.diff(model.expected_purchases(ts, 3, 10.0, 20.0)) > 0)
    assert model.expected_purchases(52.0, 3, 2.0, 40.0) < model.expected_purchases(52.0, 3, 38.0, 40.0)

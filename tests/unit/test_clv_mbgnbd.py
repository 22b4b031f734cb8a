"""MBG/NBD on the CDNOW sample against a reference implementation, and its closed forms against the printed ones.

The reference values come from ``lifetimes`` 0.11.3's ``ModifiedBetaGeoFitter().fit(frequency, recency, T)`` on
``tests/data/cdnow_summary.csv`` (weeks): r = 0.524838, alpha = 6.182988, a = 0.891356, b = 1.614000, and its
``conditional_probability_alive`` at (x, t_x, T) = (0, 0, 38.86), (2, 30.43, 38.86), (10, 20, 38.86):
0.389716, 0.706126, 0.041385. The expected purchases are that version's
``conditional_expected_number_of_purchases_up_to_time`` and ``expected_number_of_purchases_up_to_time`` at the same
parameters (``LIFETIMES_EXPECTED`` below).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import hyp2f1

from segmentation.models import clv
from segmentation.models.clv.purchase import PurchaseModel

DATA = Path(__file__).resolve().parent.parent / "data" / "cdnow_summary.csv"
REFERENCE = {"r": 0.524838, "alpha": 6.182988, "a": 0.891356, "b": 1.614000}
REFERENCE_P_ALIVE = [0.389716, 0.706126, 0.041385]


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(DATA)


@pytest.fixture(scope="module")
def fit(cdnow: pd.DataFrame) -> clv.MbgNbdFit:
    (x, t_x, age), weights = clv.collapse_patterns(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    return clv.fit_mbgnbd(x, t_x, age, weights)


def _triples(df: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    return df["frequency"], df["recency"], df["T"]


def test_mbgnbd_fit_on_cdnow_matches_the_reference_implementation(fit: clv.MbgNbdFit, cdnow: pd.DataFrame) -> None:
    assert fit.diagnostics.converged, fit.diagnostics.message
    got = fit.params.to_dict()
    assert all(got[k] == pytest.approx(v, rel=2e-5) for k, v in REFERENCE.items()), got
    # The optimum's likelihood is the likelihood of the reference's parameters (to their six digits).
    reference_ll = clv.mbgnbd_log_likelihood(clv.MbgNbdParams(**REFERENCE), *_triples(cdnow))
    assert fit.diagnostics.log_likelihood == pytest.approx(reference_ll, abs=1e-3)
    assert fit.diagnostics.log_likelihood >= reference_ll - 1e-9


def test_mbgnbd_weighted_fit_equals_per_customer_fit(fit: clv.MbgNbdFit, cdnow: pd.DataFrame) -> None:
    per_customer = clv.fit_mbgnbd(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    expected, got = fit.params.to_dict(), per_customer.params.to_dict()
    assert all(got[k] == pytest.approx(expected[k], rel=1e-5) for k in expected), (expected, got)


def test_mbgnbd_p_alive_matches_the_reference_and_is_below_one_for_one_time_buyers() -> None:
    params = clv.MbgNbdParams(**REFERENCE)
    got = clv.mbgnbd_p_alive(params, [0, 2, 10], [0.0, 30.43, 20.0], [38.86, 38.86, 38.86])
    np.testing.assert_allclose(got, REFERENCE_P_ALIVE, atol=2e-6)
    # BG/NBD says a customer without a repeat purchase is alive for sure; MBG/NBD does not.
    assert clv.p_alive(clv.BgNbdParams(r=0.5, alpha=6.0, a=0.9, b=1.6), 0, 0.0, 38.86) == 1.0 and got[0] < 1


# The printed MBG/NBD formulas (Batislam, Denizel & Filiztekin 2007; lifetimes' ModifiedBetaGeoFitter), evaluated with
# scipy's untransformed hypergeometric function: an implementation independent of the shifted BG/NBD code.
def _printed_p_alive(p: clv.MbgNbdParams, x, t_x, age):
    return 1.0 / (1.0 + p.a / (p.b + x) * ((p.alpha + age) / (p.alpha + t_x)) ** (p.r + x))


def _printed_expected(p: clv.MbgNbdParams, t, x, t_x, age):
    z = t / (p.alpha + age + t)
    hyp = hyp2f1(p.r + x, p.b + x + 1, p.a + p.b + x, z)
    bracket = 1.0 - ((p.alpha + age) / (p.alpha + age + t)) ** (p.r + x) * hyp
    return (p.a + p.b + x) / (p.a - 1.0) * bracket * _printed_p_alive(p, x, t_x, age)


def _printed_unconditional(p: clv.MbgNbdParams, t):
    return (
        p.b
        / (p.a - 1.0)
        * (1.0 - (p.alpha / (p.alpha + t)) ** p.r * hyp2f1(p.r, p.b + 1, p.a + p.b, t / (p.alpha + t)))
    )


HISTORIES = np.array([(0, 0.0, 38.86), (1, 5.0, 20.0), (2, 30.43, 38.86), (10, 20.0, 38.86), (25, 70.0, 78.0)])
# lifetimes 0.11.3 ModifiedBetaGeoFitter at REFERENCE on HISTORIES, horizons 10 and 52 weeks; then E[X(10)], E[X(52)].
LIFETIMES_EXPECTED = {
    10.0: [0.04359424, 0.23759049, 0.37292327, 0.08940207, 2.02488123],
    52.0: [0.19762856, 0.95731496, 1.59682625, 0.36373243, 8.94041956],
}
LIFETIMES_UNCONDITIONAL = [0.43325318, 1.41889059]


def test_mbgnbd_expected_purchases_match_the_reference_implementation() -> None:
    model = PurchaseModel.of("mbgnbd", clv.MbgNbdParams(**REFERENCE))
    x, t_x, age = HISTORIES.T
    for t, expected in LIFETIMES_EXPECTED.items():
        np.testing.assert_allclose(model.expected_purchases(t, x, t_x, age), expected, atol=1e-8)
    np.testing.assert_allclose(model.unconditional_expected_purchases([10.0, 52.0]), LIFETIMES_UNCONDITIONAL, atol=1e-8)


@pytest.mark.parametrize("params", [REFERENCE, {"r": 0.8, "alpha": 4.0, "a": 2.5, "b": 6.0}], ids=["cdnow", "a>1"])
def test_mbgnbd_closed_forms_equal_the_printed_formulas(params: dict[str, float]) -> None:
    printed = clv.MbgNbdParams(**params)
    model = PurchaseModel.of("mbgnbd", printed)
    x, t_x, age = HISTORIES.T
    np.testing.assert_allclose(model.p_alive(x, t_x, age), _printed_p_alive(printed, x, t_x, age), rtol=1e-12)
    for t in (1.0, 10.0, 52.0):
        np.testing.assert_allclose(
            model.expected_purchases(t, x, t_x, age), _printed_expected(printed, t, x, t_x, age), rtol=1e-9
        )
    ts = np.array([0.5, 10.0, 52.0, 104.0])
    np.testing.assert_allclose(
        model.unconditional_expected_purchases(ts), _printed_unconditional(printed, ts), rtol=1e-9
    )
    # The unconditional expectation is the conditional one of a customer with no history.
    np.testing.assert_allclose(model.unconditional_expected_purchases(ts), model.expected_purchases(ts, 0, 0, 0))


@pytest.mark.spark
@pytest.mark.parametrize("family", ["bgnbd", "mbgnbd", "pareto_nbd", "naive"])
def test_every_purchase_model_scores_the_same_in_spark_as_in_numpy(spark, family: str) -> None:
    params = {
        "bgnbd": clv.BgNbdParams(r=0.24, alpha=4.4, a=0.79, b=2.4),
        "mbgnbd": clv.MbgNbdParams(**REFERENCE),
        "pareto_nbd": clv.ParetoNbdParams(r=0.553271, alpha=10.577742, s=0.606237, beta=11.668724),
    }
    model = PurchaseModel.of(family, params.get(family))
    gg = clv.GammaGammaParams(p=6.25, q=3.74, v=15.44)
    rows = [(int(x), float(t_x), float(age), 20.0 + 5 * i) for i, (x, t_x, age) in enumerate(HISTORIES)]
    rows.append((0, 0.0, 0.0, 0.0))  # first seen at the end: no rate of its own
    frame = spark.createDataFrame(rows, "x INT, t_x DOUBLE, T DOUBLE, m DOUBLE")
    horizon, rate, step = 52.0, 0.0018, 30 / 7
    out = (
        frame.select(
            "*",
            model.p_alive_col("x", "t_x", "T").alias("p_alive"),
            model.expected_purchases_col(horizon, "x", "t_x", "T").alias("expected"),
            model.clv_col(gg, "x", "t_x", "T", "m", horizon, rate, step).alias("clv"),
        )
        .select(  # the same columns reusing a P(alive) already computed, as scoring does
            "*",
            model.expected_purchases_col(horizon, "x", "t_x", "T", alive="p_alive").alias("expected_reused"),
            model.clv_col(gg, "x", "t_x", "T", "m", horizon, rate, step, alive="p_alive").alias("clv_reused"),
        )
        .toPandas()
    )
    np.testing.assert_array_equal(out["expected_reused"], out["expected"])
    np.testing.assert_array_equal(out["clv_reused"], out["clv"])
    x, t_x, age, m = (out[c].to_numpy() for c in ("x", "t_x", "T", "m"))
    np.testing.assert_allclose(out["p_alive"], model.p_alive(x, t_x, age), rtol=1e-12)
    np.testing.assert_allclose(out["expected"], model.expected_purchases(horizon, x, t_x, age), rtol=1e-8)
    np.testing.assert_allclose(out["clv"], model.clv(gg, x, t_x, age, m, horizon, rate, step), rtol=1e-8)
    if family == "naive":
        assert out["p_alive"].isna().all()
        # Its own past rate carried over the horizon, nothing for a customer without one.
        np.testing.assert_allclose(out["expected"][:-1], x[:-1] / age[:-1] * horizon)
        assert out["expected"].iloc[-1] == 0.0 and out["clv"].iloc[-1] == 0.0
    else:
        assert (out["p_alive"].between(0, 1)).all()

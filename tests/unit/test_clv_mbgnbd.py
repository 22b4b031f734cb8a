"""MBG/NBD on the CDNOW sample against a reference implementation.

The reference values come from ``lifetimes`` 0.11.3's ``ModifiedBetaGeoFitter().fit(frequency, recency, T)`` on
``tests/data/cdnow_summary.csv`` (weeks): r = 0.524838, alpha = 6.182988, a = 0.891356, b = 1.614000, and its
``conditional_probability_alive`` at (x, t_x, T) = (0, 0, 38.86), (2, 30.43, 38.86), (10, 20, 38.86):
0.389716, 0.706126, 0.041385.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.models import clv

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

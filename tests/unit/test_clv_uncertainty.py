"""Standard errors of the fitted parameters against a reference implementation on CDNOW.

Reference: ``lifetimes`` 0.11.3, ``BetaGeoFitter().fit(...).summary["se(coef)"]`` and the same for
``ModifiedBetaGeoFitter`` on ``tests/data/cdnow_summary.csv`` (weeks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.models import clv
from segmentation.models.clv.uncertainty import standard_errors

DATA = Path(__file__).resolve().parent.parent / "data" / "cdnow_summary.csv"
REFERENCE = {
    "bgnbd": (clv.fit_bgnbd, {"r": 0.012557, "alpha": 0.378221, "a": 0.185719, "b": 0.705345}),
    "mbgnbd": (clv.fit_mbgnbd, {"r": 0.083264, "alpha": 0.695597, "a": 0.154785, "b": 0.537472}),
}


@pytest.fixture(scope="module")
def patterns() -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    cdnow = pd.read_csv(DATA)
    columns, weights = clv.collapse_patterns(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    return tuple(columns), weights


@pytest.mark.parametrize("family", sorted(REFERENCE))
def test_standard_errors_match_the_reference_implementation(family: str, patterns) -> None:
    fit_fn, expected = REFERENCE[family]
    columns, weights = patterns
    fit = fit_fn(*columns, weights)
    got = standard_errors(family, fit.params.to_dict(), columns, weights)
    assert got == pytest.approx(expected, rel=1e-4)


def test_a_degenerate_fit_has_drop_out_parameters_it_cannot_pin_down(patterns) -> None:
    rng = np.random.default_rng(7)  # customers who buy at a constant rate for 30 to 104 weeks and never stop
    rate, age = rng.gamma(2.0, 0.1, 1_500), rng.uniform(30, 104, 1_500).round(1)
    x = rng.poisson(rate * age).astype(float)
    t_x = np.where(x > 0, age * rng.uniform(size=1_500) ** (1 / np.maximum(x, 1)), 0.0).round(1)
    columns, weights = clv.collapse_patterns(x, t_x, age)
    fit = clv.fit_bgnbd(*columns, weights)
    se = standard_errors("bgnbd", fit.params.to_dict(), tuple(columns), weights)
    relative = {k: se[k] / v for k, v in fit.params.to_dict().items()}
    assert relative["a"] > 1 and relative["b"] > 1, relative  # drop-out: unknown
    assert relative["r"] < 0.1 and relative["alpha"] < 0.1, relative  # purchase rates: well measured
    # On CDNOW every parameter is known to within half its value.
    cdnow_columns, cdnow_weights = patterns
    cdnow = clv.fit_bgnbd(*cdnow_columns, cdnow_weights).params.to_dict()
    cdnow_se = standard_errors("bgnbd", cdnow, cdnow_columns, cdnow_weights)
    assert all(cdnow_se[k] / v < 0.5 for k, v in cdnow.items()), cdnow_se


def test_an_information_matrix_that_is_not_invertible_gives_infinite_standard_errors(patterns) -> None:
    columns, weights = patterns
    far = {"r": 0.24, "alpha": 4.4, "a": 1e-9, "b": 1e9}  # a and b far out where the likelihood is flat in them
    assert standard_errors("bgnbd", far, columns, weights) == dict.fromkeys(far, float("inf"))
    with pytest.raises(ValueError, match="unknown model family"):
        standard_errors("nbd", far, columns, weights)

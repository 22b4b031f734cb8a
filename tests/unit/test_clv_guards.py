"""The guards refuse a purchase model that says nobody drops out, and pass sound fits on real data (CDNOW)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.models import clv
from segmentation.models.clv.guards import GuardLimits, check_purchase_fit, implied_dropout
from segmentation.models.clv.purchase import PurchaseModel

DATA = Path(__file__).resolve().parent.parent / "data" / "cdnow_summary.csv"
LIMITS = GuardLimits(min_dropout=1e-3, max_param_ratio=1e4, active_periods=4, silent_periods=26, min_p_alive_gap=0.1)
FAMILIES = {
    "bgnbd": (clv.fit_bgnbd, clv.p_alive),
    "mbgnbd": (clv.fit_mbgnbd, clv.mbgnbd_p_alive),
    "pareto_nbd": (clv.fit_pareto_nbd, clv.pareto_nbd_p_alive),
}


def _never_stop_buying(customers: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Customers who buy at a constant Poisson rate (gamma across customers) for 30 to 104 weeks and never stop."""
    rng = np.random.default_rng(seed)
    rate, age = rng.gamma(2.0, 0.1, customers), rng.uniform(30, 104, customers).round(1)
    x = rng.poisson(rate * age).astype(float)
    # the last of x uniform purchase times in (0, T] is T * U^(1/x)
    t_x = np.where(x > 0, age * rng.uniform(size=customers) ** (1 / np.maximum(x, 1)), 0.0).round(1)
    return clv.collapse_patterns(x, t_x, age)


def _findings(family: str, patterns: list[np.ndarray], weights: np.ndarray) -> list[str]:
    fit_fn, p_alive_fn = FAMILIES[family]
    fit = fit_fn(*patterns, weights)
    p_alive = lambda x, t_x, age: p_alive_fn(fit.params, x, t_x, age)  # noqa: E731
    found = check_purchase_fit(family, fit.params.to_dict(), fit.diagnostics, p_alive, *patterns, weights, LIMITS)
    return [f.reason for f in found]


def test_bgnbd_on_customers_who_never_stop_buying_is_refused_as_degenerate() -> None:
    patterns, weights = _never_stop_buying(1_500, seed=7)
    reasons = _findings("bgnbd", patterns, weights)
    # The optimiser converges, and the fit is still useless: the guards say why.
    assert "not_converged" not in reasons
    # (a or b may also run far enough to count as at a bound; that depends on the sample)
    assert {"degenerate_dropout", "p_alive_does_not_separate"} <= set(reasons), reasons


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_fitted_on_cdnow_passes_the_guards(family: str) -> None:
    cdnow = pd.read_csv(DATA)
    patterns, weights = clv.collapse_patterns(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    assert _findings(family, patterns, weights) == []


def test_implied_dropout_of_each_family() -> None:
    assert implied_dropout("bgnbd", {"a": 0.793, "b": 2.426}) == pytest.approx(0.793 / 3.219)
    assert implied_dropout("pareto_nbd", {"s": 1.0, "beta": 9.0}) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="unknown purchase model family"):
        implied_dropout("nbd", {})


def _p_alive_bands(patterns: list[np.ndarray], weights: np.ndarray) -> list[dict]:
    from segmentation.models import clv_diagnostics as diagnostics

    fit = clv.fit_bgnbd(*patterns, weights)
    return diagnostics.p_alive_by_recency(
        PurchaseModel.of("bgnbd", fit.params), (*patterns, weights), [28, 91, 182, 365], "weeks"
    )


def test_p_alive_by_recency_falls_with_silence_on_cdnow_and_is_flat_when_nobody_leaves() -> None:
    cdnow = pd.read_csv(DATA)
    patterns, weights = clv.collapse_patterns(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    sound = _p_alive_bands(patterns, weights)
    assert [r["silent_days"] for r in sound] == ["0-27", "28-90", "91-181", "182-364", "365+"]
    # every repeat buyer in one band: counted from the file, not from the patterns
    silence_days = (cdnow["T"] - cdnow["recency"])[cdnow["frequency"] > 0] * 7
    expected = np.histogram(silence_days, bins=[0, 28, 91, 182, 365, np.inf])[0].tolist()
    assert [r["customers"] for r in sound] == expected
    assert sound[-1]["mean"] is None  # CDNOW's 39-week calibration has nobody silent a year
    medians = [r["p50"] for r in sound if r["customers"]]
    assert medians == sorted(medians, reverse=True) and medians[0] - medians[-1] > 0.5
    for r in sound[:-1]:
        assert r["p10"] <= r["p50"] <= r["p90"]

    never, never_weights = _never_stop_buying(1_500, seed=7)
    flat = [r for r in _p_alive_bands(never, never_weights) if r["customers"]]
    assert len(flat) >= 3 and min(r["p10"] for r in flat) > 0.99


def test_weighted_percentiles_of_p_alive_equal_those_of_the_expanded_customers() -> None:
    from segmentation.models import clv_diagnostics as diagnostics

    rng = np.random.default_rng(3)
    values, weights = rng.uniform(size=40), rng.integers(1, 9, size=40).astype(float)
    got = diagnostics.weighted_summary(values, weights)
    customers = np.repeat(values, weights.astype(int))
    for key, q in (("p10", 10), ("p50", 50), ("p90", 90)):
        assert got[key] == pytest.approx(np.percentile(customers, q, method="inverted_cdf"))
    assert got["mean"] == pytest.approx(customers.mean())
    assert diagnostics.weighted_summary(values[:0], weights[:0]) == dict.fromkeys(("mean", "p10", "p50", "p90"))

"""Per-customer intervals of expected purchases and CLV (a parametric bootstrap) against numpy, customer by customer.

Scoring evaluates the purchase part once per unique pattern and multiplies it by the spend draws in Spark
(:mod:`segmentation.models.clv.intervals`). The check here takes the same parameter draws and evaluates the full
numpy CLV (:meth:`PurchaseModel.clv`, purchases and spend together) for every customer and draw, then numpy's
quantiles: no pattern, no decomposition, no Spark.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmentation.models import clv, clv_model
from segmentation.models import clv_training as ct
from segmentation.models.clv import intervals
from segmentation.models.clv.purchase import PARAMETER_NAMES
from segmentation.models.clv.uncertainty import log_covariance

DATA = Path(__file__).resolve().parent.parent / "data" / "cdnow_summary.csv"
FITTERS = {"bgnbd": clv.fit_bgnbd, "mbgnbd": clv.fit_mbgnbd, "pareto_nbd": clv.fit_pareto_nbd}
PARAMS = {"bgnbd": clv.BgNbdParams, "mbgnbd": clv.MbgNbdParams, "pareto_nbd": clv.ParetoNbdParams}
HORIZON = ct.Horizon(periods=52.0, step=30 / 7, discount_rate_per_period=0.0018)
# (frequency, recency, T, monetary): a one-time buyer, regulars, a lapsed heavy buyer, a newcomer
CUSTOMERS = [
    (0, 0.0, 38.9, None),
    (2, 30.4, 38.9, 22.35),
    (6, 36.0, 38.0, 41.0),
    (10, 20.0, 38.9, 30.0),
    (1, 1.0, 2.0, 15.0),
]
DRAWS = 200


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(DATA)


@pytest.fixture(scope="module")
def spend(cdnow: pd.DataFrame) -> tuple[clv.GammaGammaParams, np.ndarray]:
    repeat = cdnow[cdnow["frequency"] > 0]
    x, m = repeat["frequency"].to_numpy(float), repeat["monetary_value"].to_numpy(float)
    params = clv.fit_gamma_gamma(x, m).params
    covariance = log_covariance("gamma_gamma", params.to_dict(), (x, m))
    assert covariance is not None
    return params, covariance


def _fit(cdnow: pd.DataFrame, family: str) -> tuple[object, np.ndarray]:
    (x, t_x, age), w = clv.collapse_patterns(cdnow["frequency"], cdnow["recency"], cdnow["T"])
    params = FITTERS[family](x, t_x, age, w).params
    covariance = log_covariance(family, params.to_dict(), (x, t_x, age), w)
    assert covariance is not None
    return params, covariance


def _numpy_intervals(model: ct.ClvModel) -> tuple[np.ndarray, np.ndarray]:
    """Quantiles 0.1 and 0.9 of E[Y(horizon)] and CLV per customer over the model's draws, all in numpy."""
    x, t_x, age, m = (np.array([c[i] or 0.0 for c in CUSTOMERS], dtype=float) for i in range(4))
    purchases, values = [], []
    spend_draws = [clv.GammaGammaParams(*d) for d in model.spend_draws]
    models = model.purchase_models_at_draws() * (len(spend_draws) if model.purchase_draws is None else 1)
    for purchase, gg in zip(models, spend_draws, strict=True):
        purchases.append(purchase.expected_purchases(HORIZON.periods, x, t_x, age))
        values.append(purchase.clv(gg, x, t_x, age, m, HORIZON.periods, HORIZON.discount_rate_per_period, HORIZON.step))
    return np.quantile(purchases, [0.1, 0.9], axis=0), np.quantile(values, [0.1, 0.9], axis=0)


def _scored(spark, model: ct.ClvModel) -> pd.DataFrame:
    rows = [(f"c{i}", *c) for i, c in enumerate(CUSTOMERS)]
    frame = spark.createDataFrame(rows, "customer_id STRING, frequency INT, recency DOUBLE, T DOUBLE, monetary DOUBLE")
    return clv_model.with_predictions(frame, model, HORIZON, (0.1, 0.9)).orderBy("customer_id").toPandas()


@pytest.mark.spark
@pytest.mark.parametrize("family", sorted(FITTERS))
def test_intervals_equal_the_bootstrap_customer_by_customer(spark, cdnow, spend, family: str) -> None:
    params, covariance = _fit(cdnow, family)
    gg, gg_covariance = spend
    names = PARAMETER_NAMES[family]
    purchase_draws = intervals.draw_parameters([getattr(params, n) for n in names], covariance, DRAWS, 1)
    spend_draws = intervals.draw_parameters([gg.p, gg.q, gg.v], gg_covariance, DRAWS, 2, lambda d: d[1] > 1)
    model = ct.ClvModel(params, gg, "weeks", family, purchase_draws, spend_draws)
    out = _scored(spark, model)

    (e_low, e_high), (c_low, c_high) = _numpy_intervals(model)
    np.testing.assert_allclose(out["expected_purchases_low"], e_low, rtol=1e-9)
    np.testing.assert_allclose(out["expected_purchases_high"], e_high, rtol=1e-9)
    np.testing.assert_allclose(out["clv_low"], c_low, rtol=1e-9)
    np.testing.assert_allclose(out["clv_high"], c_high, rtol=1e-9)
    # An interval around the point prediction (the point is the fit itself, the ends its uncertainty), and a real one.
    for name in ("expected_purchases", "clv"):
        assert (out[f"{name}_low"] < out[name]).all() and (out[name] < out[f"{name}_high"]).all(), name
    assert ((out["clv_high"] - out["clv_low"]) / out["clv"] > 0.02).all()


@pytest.mark.parametrize("family", sorted(FITTERS))
def test_the_pyfunc_predicts_the_same_intervals_without_spark(cdnow, spend, family: str) -> None:
    params, covariance = _fit(cdnow, family)
    gg, gg_covariance = spend
    purchase_draws = intervals.draw_parameters([getattr(params, n) for n in PARAMETER_NAMES[family]], covariance, 50, 1)
    spend_draws = intervals.draw_parameters([gg.p, gg.q, gg.v], gg_covariance, 50, 2, lambda d: d[1] > 1)
    model = ct.ClvModel(params, gg, "weeks", family, purchase_draws, spend_draws)
    frame = pd.DataFrame(CUSTOMERS, columns=["frequency", "recency", "T", "monetary"])

    out = clv_model.ClvPredictor(model, HORIZON, (0.1, 0.9)).predict(frame)

    (e_low, e_high), (c_low, c_high) = _numpy_intervals(model)
    np.testing.assert_allclose(out["expected_purchases_low"], e_low, rtol=1e-9)
    np.testing.assert_allclose(out["expected_purchases_high"], e_high, rtol=1e-9)
    np.testing.assert_allclose(out["clv_low"], c_low, rtol=1e-9)
    np.testing.assert_allclose(out["clv_high"], c_high, rtol=1e-9)
    # A version logged before the intervals (no quantiles) and a model without draws keep the points only.
    points = clv_model.ClvPredictor(model, HORIZON).predict(frame)
    assert list(points.columns) == ["p_alive", "expected_purchases", "expected_spend", "clv"]
    pd.testing.assert_frame_equal(points, out[points.columns])
    without = clv_model.ClvPredictor(ct.ClvModel(params, gg, "weeks", family), HORIZON, (0.1, 0.9)).predict(frame)
    assert without[list(clv_model.INTERVAL_COLUMNS)].isna().all().all()


def test_draws_follow_the_covariance_of_the_log_parameters(spend) -> None:
    gg, gg_covariance = spend
    draws = intervals.draw_parameters([gg.p, gg.q, gg.v], gg_covariance, 4000, 3)
    logs = np.log(np.array(draws))
    np.testing.assert_allclose(
        logs.mean(axis=0), np.log([gg.p, gg.q, gg.v]), atol=4 * np.sqrt(np.diag(gg_covariance) / 4000).max()
    )
    np.testing.assert_allclose(np.cov(logs.T), gg_covariance, rtol=0.1, atol=0.1 * np.abs(gg_covariance).max())
    assert intervals.draw_parameters([gg.p, gg.q, gg.v], gg_covariance, 50, 3) == draws[:50]  # seeded: repeatable
    assert intervals.draw_parameters([1.0], [[1.0]], 10, 3, lambda d: False) is None  # nothing valid to draw


@pytest.mark.spark
def test_intervals_of_the_naive_rate_and_of_a_model_without_draws(spark, spend) -> None:
    gg, gg_covariance = spend
    spend_draws = intervals.draw_parameters([gg.p, gg.q, gg.v], gg_covariance, DRAWS, 2, lambda d: d[1] > 1)
    naive = ct.ClvModel(None, gg, "weeks", "naive", None, spend_draws)
    out = _scored(spark, naive)
    # No parameter in the purchase part: its interval is the point; CLV carries the spend model's uncertainty.
    np.testing.assert_allclose(out["expected_purchases_low"], out["expected_purchases"], rtol=1e-12)
    np.testing.assert_allclose(out["expected_purchases_high"], out["expected_purchases"], rtol=1e-12)
    (_, _), (c_low, c_high) = _numpy_intervals(naive)
    np.testing.assert_allclose(out["clv_low"], c_low, rtol=1e-9)
    np.testing.assert_allclose(out["clv_high"], c_high, rtol=1e-9)

    without = ct.ClvModel(clv.BgNbdParams(r=0.24, alpha=4.4, a=0.79, b=2.4), gg, "weeks", "bgnbd")
    out = _scored(spark, without)
    assert out[list(clv_model.INTERVAL_COLUMNS)].isna().all().all() and out["clv"].notna().all()

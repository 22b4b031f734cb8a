"""CLV training on Spark with hand-made orders: summaries in days and weeks, holdout actuals, metrics, predictions."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import pyspark.sql.functions as F
import pytest

from segmentation.models import clv, clv_holdout, clv_model
from segmentation.models import clv_diagnostics as diagnostics
from segmentation.models import clv_training as ct
from segmentation.models.clv.purchase import PurchaseModel
from tests.conftest import ORDER_COLUMNS, order_row

pytestmark = [pytest.mark.spark]

END = dt.date(2026, 3, 31)
AS_OF = dt.date(2026, 4, 30)
# CDNOW estimates (Fader, Hardie & Lee 2005; Fader & Hardie 2013): realistic parameters for the closed forms.
BGNBD = clv.BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
GG = clv.GammaGammaParams(p=6.25, q=3.74, v=15.44)

ROWS = [
    # a: two orders on one day are one purchase occasion; a refund is not a purchase.
    order_row("a1", "a", "2026-03-01T09:00:00", 10),
    order_row("a2", "a", "2026-03-01T18:00:00", 20),
    order_row("a3", "a", "2026-03-11T12:00:00", 50),
    order_row("a4", "a", "2026-03-31T12:00:00", 99, status="refunded"),
    order_row("a5", "a", "2026-04-05T12:00:00", 30),
    order_row("a6", "a", "2026-04-05T13:00:00", 10),
    order_row("a7", "a", "2026-04-20T12:00:00", 60),
    # b: first and only purchase on the last calibration day.
    order_row("b1", "b", "2026-03-31T23:59:59", 25),
    # c: first purchase in the holdout: not a calibration customer.
    order_row("c1", "c", "2026-04-02T08:00:00", 40),
    # d: three purchases a month apart, one after the as-of date (ignored).
    order_row("d1", "d", "2026-01-01T00:00:00", 10),
    order_row("d2", "d", "2026-02-01T00:00:00", 30),
    order_row("d3", "d", "2026-03-01T00:00:00", 60),
    order_row("d4", "d", "2026-05-01T00:00:00", 60),
]


@pytest.fixture(scope="module")
def orders_df(spark):
    return spark.createDataFrame(ROWS, ORDER_COLUMNS)


def _summary(orders_df, time_unit):
    df = ct.customer_summary(orders_df, END, time_unit, "completed")
    return {r["customer_id"]: (r["frequency"], r["recency"], r["T"], r["monetary"]) for r in df.collect()}


def test_summary_in_days(orders_df):
    assert _summary(orders_df, "days") == {
        "a": (1, 10, 30, 50.0),
        "b": (0, 0, 0, None),
        "d": (2, 59, 89, 45.0),
    }


def test_summary_in_weeks_counts_distinct_purchase_weeks_back_from_the_calibration_end(orders_df):
    # Weeks end on the calibration end day: 03-25..03-31 is week -1, 03-01 is in week -5, 01-01 in week -13.
    assert _summary(orders_df, "weeks") == {
        "a": (1, 2, 4, 50.0),
        "b": (0, 0, 0, None),
        "d": (2, 8, 12, 45.0),
    }


def test_holdout_actuals_count_purchase_periods_up_to_the_as_of_date(orders_df):
    df = ct.holdout_actuals(orders_df, END, AS_OF, "days", "completed")
    got = {r["customer_id"]: (r["holdout_purchases"], r["holdout_spend"]) for r in df.collect()}
    assert got == {"a": (2, 50.0), "c": (1, 40.0)}


def test_holdout_metrics_equal_the_numpy_closed_forms(orders_df):
    summary_df = ct.customer_summary(orders_df, END, "days", "completed")
    actuals_df = ct.holdout_actuals(orders_df, END, AS_OF, "days", "completed")
    evaluation = clv_holdout.evaluate_holdout(summary_df, actuals_df, BGNBD, GG, 30.0, table_max=2)

    x, t_x, age = np.array([1, 0, 2]), np.array([10, 0, 59]), np.array([30, 0, 89])  # a, b, d
    actual = np.array([2, 0, 0])
    predicted = np.asarray(clv.expected_purchases(BGNBD, 30.0, x, t_x, age))
    spend_a = clv.expected_spend(GG, 1, 50.0)
    expected = {
        "holdout_mae": float(np.mean(np.abs(predicted - actual))),
        "holdout_rmse": float(np.sqrt(np.mean((predicted - actual) ** 2))),
        "holdout_actual_total": 2.0,
        "holdout_predicted_total": float(predicted.sum()),
        "holdout_total_abs_error": abs(float(predicted.sum()) - 2.0),
        "spend_mae": abs(spend_a - 50.0),  # only a repeat customer who bought in the holdout has a spend error
        "spend_actual_mean": 50.0,
        "spend_predicted_mean": spend_a,
        "customers": 3.0,
    }
    assert evaluation.metrics == pytest.approx(expected, rel=1e-9)
    assert [row["frequency"] for row in evaluation.frequency_table] == ["0", "1", "2+"]
    assert [row["customers"] for row in evaluation.frequency_table] == [1, 1, 1]
    assert evaluation.frequency_table[1]["actual_mean"] == 2.0
    assert evaluation.frequency_table[2]["expected_mean"] == pytest.approx(predicted[2], rel=1e-9)
    # The naive baseline on the same customers: own repeat rate x / T over the 30-day holdout, own mean repeat spend.
    naive = np.array([1 / 30 * 30.0, 0.0, 2 / 89 * 30.0])
    assert evaluation.baseline_metrics == pytest.approx(
        {
            **expected,
            "holdout_mae": float(np.mean(np.abs(naive - actual))),
            "holdout_rmse": float(np.sqrt(np.mean((naive - actual) ** 2))),
            "holdout_predicted_total": float(naive.sum()),
            "holdout_total_abs_error": abs(float(naive.sum()) - 2.0),
            "spend_mae": 0.0,  # a's holdout purchases cost what its repeat purchase did
            "spend_predicted_mean": 50.0,
        },
        rel=1e-9,
    )
    assert evaluation.frequency_table[2]["naive_mean"] == pytest.approx(naive[2], rel=1e-9)


def test_spark_predictions_equal_the_pyfunc_numpy_predictions(orders_df, settings_for):
    summary_df = ct.customer_summary(orders_df, END, "weeks", "completed")
    model = ct.ClvModel(BGNBD, GG, "weeks")
    clv_settings = settings_for("models.clv.horizon_days=365", "models.clv.cash_flow_step_days=30").models.clv
    horizon = ct.Horizon.from_settings(clv_settings, "weeks")
    spark_rows = {
        r["customer_id"]: r.asDict() for r in clv_model.with_predictions(summary_df, model, horizon).collect()
    }
    frame = pd.DataFrame(
        [(k, *v) for k, v in sorted(_summary(orders_df, "weeks").items())],
        columns=["customer_id", "frequency", "recency", "T", "monetary"],
    ).fillna({"monetary": 0.0})
    numpy_df = clv_model.predict_frame(model, horizon, frame)
    for i, customer in enumerate(frame["customer_id"]):
        for column in ("p_alive", "expected_purchases", "expected_spend", "clv"):
            assert spark_rows[customer][column] == pytest.approx(numpy_df[column][i], rel=1e-9), (customer, column)
    assert spark_rows["b"]["p_alive"] == 1.0


def test_horizon_converts_days_and_the_annual_rate_to_model_periods(settings_for):
    overrides = (
        "models.clv.horizon_days=364",
        "models.clv.cash_flow_step_days=28",
        "models.clv.annual_discount_rate=0.1",
    )
    horizon = ct.Horizon.from_settings(settings_for(*overrides).models.clv, "weeks")
    assert (horizon.periods, horizon.step) == (52.0, 4.0)
    assert (1 + horizon.discount_rate_per_period) ** (365 / 7) == pytest.approx(1.1, rel=1e-12)


def test_round_significant(spark):
    import pyspark.sql.functions as F

    df = spark.createDataFrame([(123.456,), (0.012345,), (98765.0,), (0.0,)], "m double")
    got = [r[0] for r in df.select(ct.round_significant(F.col("m"), 3)).collect()]
    assert got == pytest.approx([123.0, 0.0123, 98800.0, 0.0], rel=1e-12)


def test_fit_refuses_non_positive_spend_with_a_clear_message(spark, settings_for):
    summary_df = spark.createDataFrame(
        [("a", 2, 5, 10, 0.0), ("b", 0, 0, 3, None)],
        "customer_id string, frequency int, recency int, T int, monetary double",
    )
    with pytest.raises(ValueError, match=r"1 repeat customers have monetary <= 0"):
        ct.fit(summary_df, settings_for().models.clv)


def test_calibration_end_defaults_to_as_of_minus_holdout(settings_for):
    assert ct.calibration_end(AS_OF, settings_for("models.clv.holdout_days=30").models.clv) == END
    with pytest.raises(ValueError, match="before the as-of date"):
        ct.calibration_end(AS_OF, settings_for(f"models.clv.calibration_end={AS_OF}").models.clv)
    assert math.isfinite(ct.Horizon.from_settings(settings_for().models.clv, "days").discount_rate_per_period)


def test_family_judges_a_champion_in_its_own_time_unit(orders_df, settings_for):
    # Frames in weeks, champion fitted in days: it is evaluated on daily summaries of the same window.
    settings = settings_for("models.clv.time_unit=weeks", "models.clv.holdout_days=30")
    family = clv_model.ClvFamily(settings)
    frames = family.prepare(orders_df, AS_OF)
    try:
        assert (frames.calibration_end, frames.time_unit, frames.window) == (END, "weeks", f"calibration up to {END}")
        got = family.evaluate(ct.ClvModel(BGNBD, GG, "days"), frames)
    finally:
        frames.release()
    summary_df = ct.customer_summary(orders_df, END, "days", "completed")
    actuals_df = ct.holdout_actuals(orders_df, END, AS_OF, "days", "completed")
    expected = clv_holdout.evaluate_holdout(
        summary_df, actuals_df, BGNBD, GG, 30.0, settings.models.clv.frequency_table_max
    )
    assert got.metrics == pytest.approx(expected.metrics, rel=1e-12)
    assert got.tables["holdout_by_frequency"] == expected.frequency_table
    daily = diagnostics.repeat_curve(orders_df, END, AS_OF, "days", "completed")
    assert got.tables["cumulative_purchases"] == diagnostics.cumulative_purchases(
        daily, PurchaseModel.of("bgnbd", BGNBD)
    )
    assert got.tables["cumulative_purchases"][0]["period"] == -90  # d's first order, 2026-01-01, in days


def test_family_score_columns_are_the_closed_forms_at_the_as_of_date(orders_df, settings_for):
    from segmentation.models.base import ScoringInputs

    settings = settings_for()
    family = clv_model.ClvFamily(settings)
    model = ct.ClvModel(BGNBD, GG, "days")
    got_df = family.score_columns(model, ScoringInputs(orders_df, orders_df.limit(0), AS_OF))
    assert got_df.columns == ["customer_id", "clv", "p_alive", "expected_purchases", *clv_model.INTERVAL_COLUMNS]
    # A model without parameter draws (as registered before intervals were kept) scores without intervals.
    assert got_df.where(F.coalesce(*clv_model.INTERVAL_COLUMNS).isNotNull()).count() == 0
    horizon = ct.Horizon.from_settings(settings.models.clv, "days")
    expected_df = clv_model.with_predictions(ct.customer_summary(orders_df, AS_OF, "days", "completed"), model, horizon)
    expected = {r["customer_id"]: (r["clv"], r["p_alive"], r["expected_purchases"]) for r in expected_df.collect()}
    got = {r["customer_id"]: (r["clv"], r["p_alive"], r["expected_purchases"]) for r in got_df.collect()}
    assert got == expected and set(got) == {"a", "b", "c", "d"}


def test_cumulative_repeat_purchases_count_calibration_customers_and_expect_births_times_the_curve(orders_df):
    # Weeks back from the calibration end: d is born in week -13 and repeats in -9 and -5; a is born in -5 and repeats
    # in -3, 0 and 2; b is born in -1; c is first seen in the holdout (left out); d's order after the as-of date too.
    curve = diagnostics.repeat_curve(orders_df, END, AS_OF, "weeks", "completed")
    rows = diagnostics.cumulative_purchases(curve, PurchaseModel.of("bgnbd", BGNBD))
    assert [r["period"] for r in rows] == list(range(-13, 5))
    repeats_by = {-9: 1, -5: 2, -3: 3, 0: 4, 2: 5}
    running, want = 0, []
    for period in range(-13, 5):
        running = repeats_by.get(period, running)
        want.append(running)
    assert [r["actual"] for r in rows] == want
    births = {-13: 1, -5: 1, -1: 1}
    for r in rows:
        expected = sum(
            n * clv.unconditional_expected_purchases(BGNBD, float(r["period"] - c))
            for c, n in births.items()
            if c <= r["period"]
        )
        assert r["expected"] == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert rows[12]["period"] == -1 and rows[12]["period_end"] == str(END)
    assert rows[-1]["period_end"] == str(AS_OF)  # the last week is cut at the as-of date

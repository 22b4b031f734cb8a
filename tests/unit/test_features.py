"""Per-customer features on hand-made orders: a single order, two orders on one day, refunds, cancellations."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation.transforms.features import customer_features
from tests.conftest import ORDER_COLUMNS, order_row

pytestmark = pytest.mark.spark

AS_OF = dt.date(2026, 6, 30)


@pytest.fixture()
def features_df(spark, settings_for):
    settings = settings_for()
    rows = [
        # c1: one order, 10 days before the as-of date
        order_row("a1", "c1", "2026-06-20T08:00:00", 100, category="beauty", discount="25.00", coupon="CPN1"),
        # c2: 2026-05-02, then two orders on 2026-06-01 (same day), one refund, on two channels
        order_row("b1", "c2", "2026-05-02T23:30:00", 30, channel="web", category="home"),
        order_row("b2", "c2", "2026-06-01T09:00:00", 50, channel="app", category="home"),
        order_row("b3", "c2", "2026-06-01T21:00:00", 70, channel="app", category="sports"),
        order_row("b4", "c2", "2026-06-10T12:00:00", 40, channel="app", status="refunded"),
        # c3: only a cancelled order: not a purchaser
        order_row("c1", "c3", "2026-06-15T12:00:00", 10, status="cancelled"),
        # c4: exactly 30 and 31 days before: window edges (a 30-day window holds the as-of day and 29 before)
        order_row("d1", "c4", "2026-05-31T00:00:00", 10, category="apparel"),
        order_row("d2", "c4", "2026-06-01T00:00:00", 10, category="beauty"),
    ]
    orders_df = spark.createDataFrame(rows, ORDER_COLUMNS)
    return customer_features(orders_df, AS_OF, settings.features, settings.quality)


def test_core_features(features_df, spark):
    actual = features_df.select(
        "customer_id",
        "first_order_date",
        "last_order_date",
        "recency_days",
        "tenure_days",
        "frequency",
        "monetary",
        "orders_30d",
        "amount_30d",
        "orders_60d",
        "distinct_order_days",
        "mean_interval_days",
        "std_interval_days",
    )
    d = dt.date
    expected = spark.createDataFrame(
        [
            (
                "c1",
                d(2026, 6, 20),
                d(2026, 6, 20),
                10,
                10,
                1,
                Decimal("100.00"),
                1,
                Decimal("100.00"),
                1,
                1,
                None,
                None,
            ),
            ("c2", d(2026, 5, 2), d(2026, 6, 1), 29, 59, 3, Decimal("150.00"), 2, Decimal("120.00"), 3, 2, 30.0, None),
            ("c4", d(2026, 5, 31), d(2026, 6, 1), 29, 30, 2, Decimal("20.00"), 1, Decimal("10.00"), 2, 2, 1.0, None),
        ],
        "customer_id string, first_order_date date, last_order_date date, recency_days int, tenure_days int,"
        " frequency long, monetary decimal(18,2), orders_30d long, amount_30d decimal(18,2), orders_60d long,"
        " distinct_order_days long, mean_interval_days double, std_interval_days double",
    )
    assertDataFrameEqual(actual, expected)


def test_behaviour_shares(features_df):
    rows = {r["customer_id"]: r for r in features_df.collect()}
    c1, c2 = rows["c1"], rows["c2"]
    assert c1["discount_share"] == pytest.approx(25 / 125)
    assert c1["coupon_share"] == 1.0
    assert c1["avg_order_value"] == pytest.approx(100.0)
    assert c2["refund_share"] == pytest.approx(1 / 4)
    assert c2["preferred_channel"] == "app"
    assert c2["channel_count"] == 2
    assert c2["top_category"] == "home"
    assert c2["channel_share_app"] == pytest.approx(2 / 3)
    assert c2["category_share_sports"] == pytest.approx(1 / 3)
    # c4 has a tie between apparel and beauty: the deterministic mode picks the smaller value
    assert rows["c4"]["top_category"] == "apparel"
    assert "c3" not in rows

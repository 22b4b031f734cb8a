"""Campaign uplift on hand-made audiences and responses, against hand-computed rates and intervals."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal

import pytest

from segmentation.transforms.uplift import campaign_uplift

pytestmark = pytest.mark.spark

AS_OF = dt.date(2026, 6, 30)
Z = 1.96


def _ts(days: int) -> dt.datetime:
    return dt.datetime(2026, 6, 30, 12) + dt.timedelta(days=days)


@pytest.fixture(scope="module")
def uplift_rows(spark):
    audiences = spark.createDataFrame(
        [
            *[("c1", "retain", c, "treatment") for c in ("t1", "t2", "t3", "t4", "t5")],
            *[("c1", "retain", c, "control") for c in ("k1", "k2", "k3", "k4")],
            ("c2", "recall", "t1", "treatment"),  # no control arm: no uplift
        ],
        "campaign_id string, objective string, customer_id string, arm string",
    )
    responses = spark.createDataFrame(
        [
            ("c1", "t1", _ts(1), True, Decimal("100.00")),
            ("c1", "t2", _ts(2), True, Decimal("50.00")),
            ("c1", "t2", _ts(3), False, Decimal("0.00")),  # a second row: converted once, revenue summed
            ("c1", "t4", _ts(5), True, Decimal("30.00")),
            ("c1", "t5", _ts(40), True, Decimal("20.00")),  # outside the 30-day window: another wave
            ("c1", "k1", None, True, Decimal("40.00")),  # no date recorded: kept
            ("c1", "k2", _ts(3), False, None),  # null revenue: zero
            ("c1", "k3", _ts(-2), True, Decimal("70.00")),  # before the audience was drawn
            ("c1", "z9", _ts(1), True, Decimal("90.00")),  # not in the audience
            # t3, k4: no response row -> not converted, zero revenue
        ],
        "campaign_id string, customer_id string, responded_at timestamp, converted boolean, revenue decimal(18,2)",
    )
    segments = spark.createDataFrame(
        [
            ("t1", "champions"),
            ("t2", "champions"),
            ("t3", "champions"),
            ("k1", "champions"),
            ("k2", "champions"),
            ("t4", "loyal"),
            ("k3", "loyal"),
            ("k4", "loyal"),
            # t5 has no segments row: its segment is null
        ],
        "customer_id string, rfm_segment string",
    )
    out = campaign_uplift(audiences, responses, segments, ["rfm_segment"], AS_OF, 30, Z, "run")
    return {(r["campaign_id"], r["dimension"], r["segment"]): r.asDict() for r in out.collect()}


def test_uplift_whole_campaign(uplift_rows):
    row = uplift_rows[("c1", "all", "all")]
    # treatment: t1, t2, t4 converted of 5; revenue 100, 50, 0, 30, 0 -> mean 36, sample variance 6920 / 4 = 1730
    # control: k1 converted of 4; revenue 40, 0, 0, 0 -> mean 10, sample variance 1200 / 3 = 400
    assert (row["treatment_customers"], row["control_customers"]) == (5, 4)
    assert (row["treatment_conversions"], row["control_conversions"]) == (3, 1)
    assert row["treatment_conversion_rate"] == pytest.approx(0.6)
    assert row["control_conversion_rate"] == pytest.approx(0.25)
    assert row["conversion_uplift"] == pytest.approx(0.35)
    se = math.sqrt(0.6 * 0.4 / 5 + 0.25 * 0.75 / 4)  # sqrt(0.094875) = 0.308018
    assert row["conversion_uplift_ci_low"] == pytest.approx(0.35 - 1.96 * se)
    assert row["conversion_uplift_ci_low"] == pytest.approx(-0.253715, abs=1e-6)
    assert row["conversion_uplift_ci_high"] == pytest.approx(0.953715, abs=1e-6)
    assert row["treatment_revenue_per_customer"] == pytest.approx(36.0)
    assert row["control_revenue_per_customer"] == pytest.approx(10.0)
    assert row["revenue_uplift"] == pytest.approx(26.0)
    se = math.sqrt(1730 / 5 + 400 / 4)  # sqrt(446) = 21.118712
    assert row["revenue_uplift_ci_low"] == pytest.approx(26.0 - 1.96 * se)
    assert row["revenue_uplift_ci_low"] == pytest.approx(-15.392676, abs=1e-5)
    assert row["revenue_uplift_ci_high"] == pytest.approx(67.392676, abs=1e-5)


def test_uplift_per_segment(uplift_rows):
    assert set(uplift_rows) == {
        ("c1", "all", "all"),
        ("c1", "rfm_segment", "champions"),
        ("c1", "rfm_segment", "loyal"),
        ("c1", "rfm_segment", None),
        ("c2", "all", "all"),
        ("c2", "rfm_segment", "champions"),
    }
    champions = uplift_rows[("c1", "rfm_segment", "champions")]
    # treatment t1, t2, t3: 2 of 3, revenue 100, 50, 0 (mean 50, var 2500); control k1, k2: 1 of 2, 40, 0 (20, 800)
    assert champions["conversion_uplift"] == pytest.approx(2 / 3 - 1 / 2)
    se = math.sqrt((2 / 3) * (1 / 3) / 3 + 0.5 * 0.5 / 2)
    assert champions["conversion_uplift_ci_high"] == pytest.approx(1 / 6 + 1.96 * se)
    assert champions["revenue_uplift"] == pytest.approx(30.0)
    assert champions["revenue_uplift_ci_low"] == pytest.approx(30.0 - 1.96 * math.sqrt(2500 / 3 + 800 / 2))
    # loyal: one treated customer (converted), two controls: no sample variance for the treated arm
    loyal = uplift_rows[("c1", "rfm_segment", "loyal")]
    assert (loyal["conversion_uplift"], loyal["conversion_uplift_ci_low"], loyal["conversion_uplift_ci_high"]) == (
        1.0,
        1.0,
        1.0,
    )
    assert loyal["revenue_uplift"] == pytest.approx(30.0)
    assert loyal["revenue_uplift_ci_low"] is None
    # the customer without a segment, and a campaign without control: rates where defined, no uplift
    unknown = uplift_rows[("c1", "rfm_segment", None)]
    assert (unknown["treatment_customers"], unknown["control_customers"], unknown["treatment_conversions"]) == (1, 0, 0)
    assert unknown["conversion_uplift"] is None and unknown["control_conversion_rate"] is None
    no_control = uplift_rows[("c2", "all", "all")]
    assert no_control["treatment_conversion_rate"] == pytest.approx(0.0)
    assert no_control["conversion_uplift"] is None and no_control["revenue_uplift_ci_low"] is None

"""Membership tiers as state: upgrades at once, downgrades only after the configured grace, over four snapshots."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation.config import TierSettings
from segmentation.transforms.tiers import with_membership_tier

pytestmark = pytest.mark.spark

D0, D1, D2, D3 = dt.date(2026, 1, 1), dt.date(2026, 2, 1), dt.date(2026, 4, 1), dt.date(2026, 5, 2)
assert (D3 - D1).days == 90 and (D2 - D1).days == 59

DDL = "customer_id string, membership_tier string, orders_365d long, amount_365d double, amount_365d_pct double"

# Each customer's qualification and features on each snapshot: (qualified, orders_365d, amount_365d, pct).
PREMIUM = ("premium", 6, 9000.0, 0.95)
HIGH = ("high_value", 4, 2000.0, 0.70)
HIGH_KEEPING_PREMIUM = ("high_value", 4, 2500.0, 0.85)
GROWTH = ("growth", 1, 100.0, 0.30)
NOTHING = ("registered", 0, 0.0, None)
HISTORY = {
    # premium, then failing its keep condition (pct > 0.8) from D1: still premium at D2 (59 days), down at D3 (90)
    "lapses": [PREMIUM, HIGH, HIGH, HIGH],
    # fails at D1, keeps at D2 (streak reset), fails again at D3: the grace restarts, so still premium
    "recovers": [PREMIUM, HIGH, HIGH_KEEPING_PREMIUM, HIGH],
    # stops buying at D1: one level per downgrade, the next tier's grace (365 days) starts on the day of the drop
    "stops": [PREMIUM, NOTHING, NOTHING, NOTHING],
    # growth keeps only with an order in 365 days and has no grace: down at the first failing snapshot
    "growth_lapse": [GROWTH, NOTHING, NOTHING, NOTHING],
    # an upgrade applies at once
    "upgrades": [GROWTH, PREMIUM, PREMIUM, PREMIUM],
    # first seen at D2
    "newcomer": [None, None, GROWTH, GROWTH],
    # a registered prospect, and a row with nothing known: the catch-all tier, never null
    "prospect": [NOTHING, NOTHING, NOTHING, NOTHING],
    "null_row": [("registered", None, None, None)] * 4,
    # a tie with "lapses": same history, same result
    "lapses_tie": [PREMIUM, HIGH, HIGH, HIGH],
}


@pytest.fixture()
def tier_settings(settings_for) -> TierSettings:
    settings = settings_for()
    assert settings.tiers is not None
    return settings.tiers


def _run(spark, tier_settings, index: int, as_of: dt.date, previous_df):
    rows = [(c, *h[index]) for c, h in HISTORY.items() if h[index] is not None]
    current = spark.createDataFrame(rows, DDL)
    out = with_membership_tier(current, previous_df, tier_settings, as_of).select(
        "customer_id", "membership_tier", "tier_qualified", "tier_since", "tier_below_since"
    )
    return spark.createDataFrame(out.collect(), out.schema)  # cut the lineage: the next run reads it as a snapshot


def test_downgrade_only_after_grace(spark, tier_settings):
    s0 = _run(spark, tier_settings, 0, D0, None)
    s1 = _run(spark, tier_settings, 1, D1, s0)
    s2 = _run(spark, tier_settings, 2, D2, s1)
    s3 = _run(spark, tier_settings, 3, D3, s2)

    def state(df):
        return {r["customer_id"]: (r["membership_tier"], r["tier_since"], r["tier_below_since"]) for r in df.collect()}

    assert state(s1)["lapses"] == ("premium", D0, D1)
    assert state(s2)["lapses"] == ("premium", D0, D1)
    assert state(s1)["growth_lapse"] == ("registered", D1, None)
    assert state(s1)["upgrades"] == ("premium", D1, None)
    assert state(s2)["recovers"] == ("premium", D0, None)
    expected = spark.createDataFrame(
        [
            ("lapses", "high_value", "high_value", D3, None),
            ("lapses_tie", "high_value", "high_value", D3, None),
            ("recovers", "premium", "high_value", D0, D3),
            ("stops", "high_value", "registered", D3, D3),
            ("growth_lapse", "registered", "registered", D1, None),
            ("upgrades", "premium", "premium", D1, None),
            ("newcomer", "growth", "growth", D2, None),
            ("prospect", "registered", "registered", D0, None),
            ("null_row", "registered", "registered", D0, None),
        ],
        "customer_id string, membership_tier string, tier_qualified string, tier_since date, tier_below_since date",
    )
    assertDataFrameEqual(s3, expected)


def test_to_qualified_and_unknown_previous_tier(spark, tier_settings):
    settings = tier_settings.model_copy(update={"downgrade": "to_qualified"})
    previous = spark.createDataFrame(
        [("stops", "premium", D0, D0), ("renamed", "gold", D0, None)],
        "customer_id string, membership_tier string, tier_since date, tier_below_since date",
    )
    current = spark.createDataFrame(
        [("stops", *NOTHING), ("renamed", *GROWTH)],
        DDL,
    )
    actual = with_membership_tier(current, previous, settings, D3).select(
        "customer_id", "membership_tier", "tier_since", "tier_below_since"
    )
    expected = spark.createDataFrame(
        [("stops", "registered", D3, None), ("renamed", "growth", D3, None)],
        "customer_id string, membership_tier string, tier_since date, tier_below_since date",
    )
    assertDataFrameEqual(actual, expected)

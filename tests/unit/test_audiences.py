"""Campaign audiences: who is selected, and a control share that holds on 100,000 customers and never moves."""

from __future__ import annotations

import datetime as dt
import hashlib

import pyspark.sql.functions as F
import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation.config import CampaignSpec
from segmentation.transforms.audiences import campaign_audiences

pytestmark = pytest.mark.spark

AS_OF = dt.date(2026, 6, 30)
CUSTOMERS = 100_000


def _everyone(campaigns):
    return [c.model_copy(update={"condition": "true"}) for c in campaigns]


@pytest.mark.slow
def test_control_share_and_stable_arms_on_100k(spark, settings_for):
    settings = settings_for()
    campaigns = [
        *_everyone(settings.audiences.campaigns),
        CampaignSpec(id="half", objective="retain", condition="true", control_share=0.5, channel="sms", trigger="once"),
    ]
    customers = spark.range(CUSTOMERS).select(F.format_string("C%07d", "id").alias("customer_id"))
    first = campaign_audiences(customers, campaigns, AS_OF, "run-1")
    shares = {
        r["campaign_id"]: (r["n"], r["control"])
        for r in first.groupBy("campaign_id")
        .agg(F.count(F.lit(1)).alias("n"), F.avg((F.col("arm") == "control").cast("double")).alias("control"))
        .collect()
    }
    assert set(shares) == {c.id for c in campaigns}
    for campaign in campaigns:
        n, control = shares[campaign.id]
        assert n == CUSTOMERS
        assert abs(control - campaign.control_share) <= 0.01, (campaign.id, control)

    # a second run, another day, customers in another order: every customer keeps its arm in every campaign
    second = campaign_audiences(customers.orderBy(F.desc("customer_id")), campaigns, AS_OF + dt.timedelta(7), "run-2")
    changed = (
        first.alias("a")
        .join(second.alias("b"), ["campaign_id", "customer_id"], "full")
        .where(~F.col("a.arm").eqNullSafe(F.col("b.arm")))
        .count()
    )
    assert changed == 0


def _unit(campaign_id: str, customer_id: str) -> float:
    """The documented assignment, recomputed outside Spark."""
    digest = hashlib.sha256(f"{campaign_id}:{customer_id}".encode()).hexdigest()
    return int(digest[:13], 16) / 16**13


def test_selection_and_arm_recomputable_outside_spark(spark):
    campaigns = [
        CampaignSpec(
            id="retain",
            objective="retain",
            condition="orders_90d >= 2",
            control_share=0.3,
            channel="wechat",
            trigger="weekly",
        ),
        CampaignSpec(
            id="recall",
            objective="recall",
            condition="recency_days > mean_interval_days",
            control_share=0.3,
            channel="sms",
            trigger="segment_entry",
        ),
    ]
    df = spark.createDataFrame(
        [
            ("two_same_day", 2, 1, None),  # two orders on one day: no interval, so never in recall
            ("tie_a", 3, 50, 20.0),
            ("tie_b", 3, 50, 20.0),
            ("single", 1, 10, None),  # a single order matches neither campaign
            ("lapsed", 1, 200, 30.0),
            ("null_row", None, None, None),
        ],
        "customer_id string, orders_90d long, recency_days int, mean_interval_days double",
    )
    actual = campaign_audiences(df, campaigns, AS_OF, "run").select("campaign_id", "customer_id", "arm", "channel")
    members = [
        ("retain", "two_same_day"),
        ("retain", "tie_a"),
        ("retain", "tie_b"),
        ("recall", "tie_a"),
        ("recall", "tie_b"),
        ("recall", "lapsed"),
    ]
    channel = {"retain": "wechat", "recall": "sms"}
    expected = spark.createDataFrame(
        [(c, cid, "control" if _unit(c, cid) < 0.3 else "treatment", channel[c]) for c, cid in members],
        "campaign_id string, customer_id string, arm string, channel string",
    )
    assertDataFrameEqual(actual, expected)


def test_rotation_is_off_by_default(settings_for):
    assert settings_for().audiences.control_rotation_days is None


@pytest.mark.parametrize(
    ("as_of", "period"),
    [
        pytest.param(dt.date(1970, 1, 1), 0, id="epoch"),
        pytest.param(dt.date(1970, 3, 31), 0, id="last-day-of-period-0"),
        pytest.param(dt.date(1970, 4, 1), 1, id="first-day-of-period-1"),
        pytest.param(dt.date(2026, 6, 30), 229, id="as-of"),
    ],
)
def test_rotation_period_counts_whole_periods_since_1970(as_of, period):
    from segmentation.transforms.audiences import rotation_period

    assert rotation_period(as_of, 90) == period
    assert rotation_period(as_of, None) is None


def test_rotation_redraws_the_control_group_each_period_only(spark):
    """With control_rotation_days the salt is the as-of date's period: the same arms within a period, an independent
    draw in the next one, and every arm recomputable outside Spark from ``<campaign>:<period>:<customer>``."""
    from segmentation.transforms.audiences import rotation_period

    campaign = CampaignSpec(
        id="global", objective="retain", condition="true", control_share=0.5, channel="sms", trigger="x"
    )
    customers = spark.range(2_000).select(F.format_string("C%05d", "id").alias("customer_id"))

    def arms(as_of):
        rows = campaign_audiences(customers, [campaign], as_of, "run", rotation_days=90).collect()
        return {r["customer_id"]: r["arm"] for r in rows}

    first, same_period, next_period = arms(AS_OF), arms(AS_OF - dt.timedelta(days=5)), arms(AS_OF + dt.timedelta(90))
    assert rotation_period(AS_OF, 90) == rotation_period(AS_OF - dt.timedelta(days=5), 90)
    assert first == same_period
    changed = sum(first[c] != next_period[c] for c in first) / len(first)
    assert changed == pytest.approx(0.5, abs=0.05)  # independent draws at share 0.5 disagree half the time
    assert sum(a == "control" for a in next_period.values()) / len(next_period) == pytest.approx(0.5, abs=0.05)
    period = rotation_period(AS_OF, 90)
    for customer_id, arm in first.items():
        assert arm == ("control" if _unit("global", f"{period}:{customer_id}") < 0.5 else "treatment")
    unsalted = campaign_audiences(customers, [campaign], AS_OF, "run").collect()
    assert {r["customer_id"]: r["arm"] for r in unsalted} != first

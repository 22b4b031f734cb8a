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

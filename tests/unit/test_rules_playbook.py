"""The seeds' playbook in conf/base.yaml: value templates, the RFM 9-grid, lifecycle and tags on hand-made data."""

from __future__ import annotations

import datetime as dt

import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation import pipelines
from segmentation.config import ConfigError
from segmentation.transforms import quality, scoring, segments
from segmentation.transforms.features import customer_features
from segmentation.transforms.population import registrations
from segmentation.transforms.tags import customer_tags
from tests.conftest import ORDER_COLUMNS, order_row

pytestmark = pytest.mark.spark

AS_OF = dt.date(2026, 6, 30)


@pytest.fixture()
def settings(settings_for):
    return settings_for()


def _segment(spark, settings, rule_set: str, rows, ddl: str):
    df = spark.createDataFrame(rows, ddl)
    out = segments.with_rule_sets(df, {rule_set: settings.segments.rule_sets[rule_set]})
    return out.select("customer_id", rule_set)


def test_base_playbook_passes_check_rules(spark, settings):
    pipelines.check_rules(spark, settings, AS_OF)


def test_bad_campaign_condition_names_campaign_and_column(spark, settings_for):
    settings = settings_for(
        "audiences.campaigns=[{id: c1, objective: retain, condition: 'orders_9d >= 2', control_share: 0.1,"
        " channel: sms, trigger: weekly}]"
    )
    with pytest.raises(ConfigError, match=r"audiences\.campaigns(.|\n)*rule 'c1'(.|\n)*orders_9d"):
        pipelines.check_rules(spark, settings, AS_OF)


def test_bad_tier_keep_condition_is_rejected(spark, settings_for):
    settings = settings_for("tiers.keep.premium.condition=amount_999d_pct >= 0.8")
    with pytest.raises(ConfigError, match=r"tiers\.keep(.|\n)*rule 'premium'(.|\n)*amount_999d_pct"):
        pipelines.check_rules(spark, settings, AS_OF)


VALUE_DDL = (
    "customer_id string, orders_total long, orders_30d long, orders_60d long, orders_90d long, orders_180d long,"
    " orders_365d long, monetary_pct double, amount_365d_pct double, avg_order_value_pct double"
)


def test_value_templates_of_seed_003(spark, settings):
    rows = [
        # ordered in the last 30 days, 3 orders in 90 days, amount in the top 20% -> core high value (and a tie)
        ("core", 5, 1, 2, 3, 3, 5, 0.85, 0.90, 0.50),
        ("core_tie", 5, 1, 2, 3, 3, 5, 0.85, 0.90, 0.50),
        # the same but amount just below the top 20%: middling amount, 2+ orders in 90 days -> growth
        ("growth", 5, 1, 2, 3, 3, 5, 0.79, 0.70, 0.50),
        # one-year amount top 20%, at most 2 orders, ordered within 180 days -> big-ticket, low frequency
        ("big_ticket", 2, 0, 0, 0, 1, 2, 0.90, 0.95, 0.95),
        # 4 orders in 90 days, one in the last 30, low order value -> high-frequency, small ticket
        ("small_ticket", 6, 2, 4, 4, 6, 6, 0.50, 0.50, 0.10),
        # nothing in 180 days -> low value, dormant; amount in the bottom 30% -> too
        ("dormant", 3, 0, 0, 0, 0, 1, 0.60, 0.20, 0.60),
        ("low_amount", 1, 1, 1, 1, 1, 1, 0.20, 0.20, 0.20),
        # a single recent order of middling amount matches no template: the catch-all
        ("single_order", 1, 1, 1, 1, 1, 1, 0.50, 0.50, 0.50),
        # a registered prospect: zero orders, no percentiles
        ("prospect", 0, 0, 0, 0, 0, 0, None, None, None),
        # nothing known: no rule matches, so the catch-all, never null
        ("null_row", None, None, None, None, None, None, None, None, None),
    ]
    actual = _segment(spark, settings, "value_segment", rows, VALUE_DDL)
    expected = spark.createDataFrame(
        [
            ("core", "core_high_value"),
            ("core_tie", "core_high_value"),
            ("growth", "growth"),
            ("big_ticket", "big_ticket_low_frequency"),
            ("small_ticket", "high_frequency_small_ticket"),
            ("dormant", "low_value_dormant"),
            ("low_amount", "low_value_dormant"),
            ("single_order", "other"),
            ("prospect", "prospect"),
            ("null_row", "other"),
        ],
        "customer_id string, value_segment string",
    )
    assertDataFrameEqual(actual, expected)
    names = {r.name: r.display_name_zh for r in settings.segments.rule_sets["value_segment"].rules}
    assert names["core_high_value"] == "核心高价值客户"
    assert names["low_value_dormant"] == "低价值沉睡客户"


SCORES_DDL = "customer_id string, orders_total long, r_score int, f_score int, m_score int"


def test_rfm_grid_and_seed_000_cells(spark, settings):
    rows = [
        ("r5f5m5", 9, 5, 5, 5),
        ("r5f5m5_tie", 9, 5, 5, 5),
        ("r4f3m4", 3, 4, 3, 4),
        ("r1f1m1", 1, 1, 1, 1),
        ("r3f1m2", 1, 3, 1, 2),
        ("r1f2m2", 2, 1, 2, 2),
        ("r4f1m5", 1, 4, 1, 5),
        ("r2f5m1", 7, 2, 5, 1),
        ("prospect", 0, None, None, None),
    ]
    scored = spark.createDataFrame(rows, SCORES_DDL)
    for name in ("rfm_segment", "r_level", "f_level", "m_level", "rfm_grid"):
        scored = segments.with_rule_sets(scored, {name: settings.segments.rule_sets[name]})
    actual = scored.select("customer_id", "rfm_segment", "r_level", "rfm_grid")
    expected = spark.createDataFrame(
        [
            ("r5f5m5", "champions", "high", "high_high_high"),
            ("r5f5m5_tie", "champions", "high", "high_high_high"),
            ("r4f3m4", "potential", "high", "high_mid_high"),
            ("r1f1m1", "hibernating", "low", "low_low_low"),
            ("r3f1m2", "one_time", "mid", "mid_low_low"),
            ("r1f2m2", "at_risk", "low", "low_low_low"),
            ("r4f1m5", "one_time", "high", "high_low_high"),
            ("r2f5m1", "at_risk", "low", "low_high_low"),
            ("prospect", "prospect", "unscored", "unscored"),
        ],
        "customer_id string, rfm_segment string, r_level string, rfm_grid string",
    )
    assertDataFrameEqual(actual, expected)
    grid = {r.name: r.display_name_zh for r in settings.segments.rule_sets["rfm_grid"].rules}
    assert grid["high_high_high"].startswith("核心高价值客户")
    assert grid["high_low_high"].startswith("大额低频客户")
    assert grid["low_high_low"].startswith("高频小额客户")
    assert grid["low_low_low"].startswith("低价值沉睡客户")


@pytest.fixture()
def population_df(spark, settings):
    """Hand-made orders through quality, features and scoring, with one registered prospect."""
    rows = [
        # two orders on the same day, coupons on both, beauty, app
        order_row("a1", "same_day", "2026-06-29T09:00:00", 50, channel="app", category="beauty", coupon="C1"),
        order_row("a2", "same_day", "2026-06-29T18:00:00", 60, channel="app", category="beauty", coupon="C2"),
        # a single order on the web, no discount
        order_row("b1", "single", "2026-06-20T10:00:00", 100, channel="web"),
        # three big electronics orders on two channels, full price, last one 100 days ago
        order_row("c1", "big", "2026-01-10T10:00:00", 3000, channel="store", category="electronics"),
        order_row("c2", "big", "2026-02-20T10:00:00", 2500, channel="store", category="electronics"),
        order_row("c3", "big", "2026-03-22T10:00:00", 2800, channel="web", category="electronics"),
        # one sale and one refund, discounted, long ago: refund-prone and dormant
        order_row("d1", "refunder", "2025-11-01T10:00:00", 200, category="home", discount="40.00"),
        order_row("d2", "refunder", "2025-11-05T10:00:00", 150, category="home", status="refunded"),
        # a single order on a channel without a share column: matches no tag rule
        order_row("e1", "no_tags", "2026-04-01T10:00:00", 20, channel="kiosk", category="grocery"),
        # a null customer: rejected by quality, never a customer
        order_row("x1", None, "2026-06-01T10:00:00", 10),
    ]
    orders_df = spark.createDataFrame(rows, ORDER_COLUMNS)
    valid = quality.valid_orders(quality.with_reject_reason(orders_df, AS_OF, settings.quality))
    features_df = customer_features(valid, AS_OF, settings.features, settings.quality)
    profiles = spark.createDataFrame(
        [
            ("single", dt.datetime(2026, 6, 1)),
            ("prospect", dt.datetime(2026, 6, 10)),
            ("future", dt.datetime(2026, 7, 5)),
            (None, dt.datetime(2026, 6, 1)),
        ],
        "customer_id string, registered_at timestamp",
    )
    return scoring.score_customers(features_df, settings, registrations(profiles, AS_OF), AS_OF)


def test_lifecycle_and_prospects_from_orders(spark, population_df):
    actual = population_df.select(
        "customer_id", "lifecycle_stage", "rfm_segment", "r_score", "registered_days", "orders_total"
    )
    rows = {r["customer_id"]: r for r in actual.collect()}
    assert set(rows) == {"same_day", "single", "big", "refunder", "no_tags", "prospect"}
    assert {k: r["lifecycle_stage"] for k, r in rows.items()} == {
        "same_day": "new",  # first order 1 day ago
        "single": "new",  # first order 10 days ago
        "big": "churn_warning",  # silent 100 days, own mean interval (41 + 30) / 2 = 35.5 days + 14
        "refunder": "dormant",  # last order 241 days ago
        "no_tags": "churn_warning",  # single order 90 days ago: default interval 60 + 14
        "prospect": "prospect",  # registered, never ordered
    }
    prospect = rows["prospect"]
    assert (prospect["rfm_segment"], prospect["r_score"], prospect["registered_days"]) == ("prospect", None, 20)
    assert prospect["orders_total"] == 0
    assert rows["single"]["registered_days"] == 29
    assert rows["same_day"]["registered_days"] is None
    assert all(rows[c]["r_score"] in range(1, 6) for c in rows if c != "prospect")


def test_tags_from_orders(spark, settings, population_df):
    actual = customer_tags(population_df, settings.tags.rule_sets, AS_OF, "run").drop("as_of_date", "run_id")
    expected = spark.createDataFrame(
        [
            ("same_day", "category_preference", "beauty"),
            ("same_day", "price_sensitivity", "coupon_sensitive"),
            ("same_day", "preferred_channel", "app"),
            ("single", "preferred_channel", "web"),
            ("big", "category_preference", "electronics"),
            ("big", "price_sensitivity", "full_price"),
            ("big", "preferred_channel", "store"),
            ("big", "channel_behaviour", "multi_channel"),
            ("big", "order_value", "big_ticket"),
            ("refunder", "price_sensitivity", "discount_sensitive"),
            ("refunder", "preferred_channel", "web"),
            ("refunder", "refund_behaviour", "refund_prone"),
        ],
        "customer_id string, tag_group string, tag string",
    )
    assertDataFrameEqual(actual, expected)

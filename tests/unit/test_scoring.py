"""R/F/M scores by quantile, equal width and thresholds; RFM segment rules; ABC classes; percentile ranks."""

from __future__ import annotations

import itertools

import pyspark.sql.functions as F
import pytest
from pyspark.testing import assertDataFrameEqual

from segmentation.config import ScoreSettings, ValueClassSettings
from segmentation.transforms import rules, scoring

pytestmark = pytest.mark.spark


def test_threshold_scores_equal_values_fall_in_lower_bucket(spark):
    df = spark.createDataFrame(
        [("a", 10, 1, 50.0), ("b", 30, 2, 100.0), ("c", 31, 3, 100.01), ("d", 365, 8, 2000.0), ("e", 400, 9, None)],
        "customer_id string, recency_days int, frequency long, monetary double",
    )
    settings = ScoreSettings(
        method="thresholds",
        bins=5,
        thresholds={"recency_days": [30, 90, 180, 365], "frequency": [1, 2, 4, 8], "monetary": [100, 300, 800, 2000]},
    )
    cuts = scoring.score_cuts(df, settings)
    actual = df.transform(scoring.with_rfm_scores, cuts).select(
        "customer_id", "r_score", "f_score", "m_score", "rfm_cell"
    )
    expected = spark.createDataFrame(
        [
            ("a", 5, 1, 1, "511"),
            ("b", 5, 2, 1, "521"),
            ("c", 4, 3, 2, "432"),
            ("d", 2, 4, 4, "244"),
            ("e", 1, 5, None, None),
        ],
        "customer_id string, r_score int, f_score int, m_score int, rfm_cell string",
    )
    assertDataFrameEqual(actual, expected)


def test_quantile_scores_hold_a_fifth_each_and_keep_ties_together(spark):
    # monetary 1..100 (no ties); frequency: 60 customers tied at 1, then 2..41
    rows = [(f"c{i}", i, 1 if i <= 60 else i - 58, float(i)) for i in range(1, 101)]
    df = spark.createDataFrame(rows, "customer_id string, recency_days int, frequency long, monetary double")
    cuts = scoring.score_cuts(df, ScoreSettings(method="quantile", bins=5, thresholds={}))
    scored = df.transform(scoring.with_rfm_scores, cuts)
    m_sizes = {r["m_score"]: r["count"] for r in scored.groupBy("m_score").count().collect()}
    assert m_sizes == {1: 20, 2: 20, 3: 20, 4: 20, 5: 20}
    r_sizes = {r["r_score"]: r["count"] for r in scored.groupBy("r_score").count().collect()}
    assert r_sizes == {5: 20, 4: 20, 3: 20, 2: 20, 1: 20}  # recency reversed: the most recent fifth scores 5
    tied = scored.where(F.col("frequency") == 1).select(F.countDistinct("f_score")).first()[0]
    assert tied == 1


def test_equal_width_cuts(spark):
    df = spark.createDataFrame([(0, 0, 0.0), (100, 10, 100.0)], "recency_days int, frequency long, monetary double")
    cuts = scoring.score_cuts(df, ScoreSettings(method="equal_width", bins=5, thresholds={}))
    assert cuts["monetary"] == pytest.approx([20.0, 40.0, 60.0, 80.0])
    assert cuts["frequency"] == pytest.approx([2.0, 4.0, 6.0, 8.0])


def test_seed_cells_map_to_seed_segments_and_every_cell_has_one(spark, settings_for):
    rule_set = settings_for().segments.rule_sets["rfm_segment"]
    cells = (
        spark.createDataFrame(list(itertools.product(range(1, 6), repeat=3)), "r_score int, f_score int, m_score int")
        .withColumn("orders_total", F.lit(1))  # purchasers: every cell comes from at least one order
        .transform(rules.with_exclusive, "rfm_segment", rule_set)
    )
    assert cells.where(F.col("rfm_segment").isNull()).count() == 0
    assert cells.count() == 125
    seg = {(r["r_score"], r["f_score"], r["m_score"]): r["rfm_segment"] for r in cells.collect()}
    names = {r.name: r.display_name_zh for r in rule_set.rules}
    assert names[seg[(5, 5, 5)]] == "高价值客户"
    assert names[seg[(4, 3, 4)]] == "潜力客户"
    assert names[seg[(1, 1, 1)]] == "沉睡客户"
    assert names[seg[(3, 1, 2)]] == "一次性客户"
    assert names[seg[(1, 2, 2)]] == "流失风险客户"


def test_value_class_pareto_with_ties(spark):
    df = spark.createDataFrame(
        [("big", 800.0), ("a", 50.0), ("b", 50.0), ("c", 50.0), ("d", 50.0), ("none", 0.0)],
        "customer_id string, monetary double",
    )
    settings = ValueClassSettings(classes=["A", "B", "C"], cumulative_revenue_shares=[0.8, 0.95])
    grid = scoring.quantile_grid(df, ["monetary"], scoring.grid_probabilities(100), 0.0001)
    boundaries = scoring.value_class_boundaries(df, grid, settings)
    classes = {
        r["customer_id"]: r["value_class"]
        for r in df.transform(scoring.with_value_class, boundaries, settings).collect()
    }
    # 800 of 1000 is the first 80% (A); the tied 50s reach 100% together (B); nothing of value is left for C
    assert classes == {"big": "A", "a": "B", "b": "B", "c": "B", "d": "B", "none": "C"}


def test_percentile_rank(spark):
    df = spark.createDataFrame([(float(v),) for v in range(1, 101)] + [(None,)], "monetary double")
    grid = scoring.quantile_grid(df, ["monetary"], scoring.grid_probabilities(100), 0.0001)
    ranks = dict(
        df.transform(scoring.with_percentiles, ["monetary"], grid).select("monetary", "monetary_pct").collect()
    )
    assert ranks[1.0] == pytest.approx(0.01)
    assert ranks[50.0] == pytest.approx(0.50)
    assert ranks[90.0] == pytest.approx(0.90)
    assert ranks[100.0] == pytest.approx(0.99)
    assert ranks[None] is None

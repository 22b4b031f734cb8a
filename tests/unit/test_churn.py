"""Churn model building blocks on hand-made data: labels at a cut-off, the stable split, metrics, the promotion rule."""

from __future__ import annotations

import datetime as dt

import pytest

from segmentation.models import churn, churn_model
from segmentation.models.base import CannotScoreError
from segmentation.models.tracking import beats
from tests.conftest import ORDER_COLUMNS, order_row

pytestmark = [pytest.mark.spark]

CUTOFF = dt.date(2026, 3, 1)


def test_label_is_no_completed_purchase_within_the_horizon_after_the_cutoff(spark, settings_for):
    settings = settings_for()
    rows = [
        order_row("o1", "c1", "2026-01-10T10:00:00", 50),
        order_row("o2", "c1", "2026-03-15T10:00:00", 20),  # bought again within 30 days: stays
        order_row("o3", "c2", "2026-02-01T10:00:00", 30),  # silent afterwards: churned
        order_row("o4", "c3", "2026-02-20T10:00:00", 40),
        order_row("o5", "c3", "2026-03-10T10:00:00", 40, status="refunded"),  # a refund is not a purchase
        order_row("o6", "c4", "2026-02-25T10:00:00", 10),
        order_row("o7", "c4", "2026-04-05T10:00:00", 10),  # after the 30-day horizon: churned
        order_row("o8", "c5", "2026-03-10T10:00:00", 60),  # first order after the cut-off: no features, no row
        order_row("o9", "c6", "2026-03-01T23:59:59", 15),  # on the cut-off day: in the features
        order_row("o10", "c6", "2026-03-31T00:00:00", 15),  # last day of the horizon: stays
    ]
    orders_df = spark.createDataFrame(rows, ORDER_COLUMNS)
    labelled = churn.labelled_features(orders_df, CUTOFF, 30, settings.features, settings.quality, 0.3)
    got = {r["customer_id"]: (r[churn.LABEL], r["recency_days"]) for r in labelled.collect()}
    assert got == {"c1": (0.0, 50), "c2": (1.0, 28), "c3": (1.0, 9), "c4": (1.0, 4), "c6": (0.0, 0)}


def test_holdout_split_is_stable_and_close_to_the_configured_share(spark):
    import pyspark.sql.functions as F

    ids_df = spark.range(20_000).select(F.concat(F.lit("C"), F.col("id").cast("string")).alias("customer_id"))
    split = ids_df.select("customer_id", churn.is_holdout(F.col("customer_id"), 0.3).alias("h"))
    first = {r["customer_id"] for r in split.where("h").collect()}
    second = {r["customer_id"] for r in ids_df.where(churn.is_holdout(F.col("customer_id"), 0.3)).collect()}
    assert first == second
    assert abs(len(first) / 20_000 - 0.3) < 0.015


def test_cutoff_must_leave_the_horizon_observed(settings_for):
    churn_settings = settings_for("models.churn.horizon_days=90").models.churn
    assert churn.default_cutoff(dt.date(2026, 6, 30), churn_settings) == dt.date(2026, 4, 1)
    late = settings_for("models.churn.horizon_days=90", "models.churn.cutoff=2026-05-01").models.churn
    with pytest.raises(ValueError, match="would not be observed"):
        churn.default_cutoff(dt.date(2026, 6, 30), late)


def test_metrics_on_a_hand_scored_holdout(spark):
    # 4 churners among 10; pairs ordered wrongly: (0.65 < 0.75), (0.35 < 0.75, 0.55, 0.45) -> AUC = 20/24.
    scored = [
        (1, 0.95),
        (1, 0.85),
        (0, 0.75),
        (1, 0.65),
        (0, 0.55),
        (0, 0.45),
        (1, 0.35),
        (0, 0.25),
        (0, 0.15),
        (0, 0.05),
    ]
    df = spark.createDataFrame(
        [(float(label), score) for label, score in scored], f"{churn.LABEL} double, {churn.SCORE} double"
    )
    metrics = churn.evaluate(df)
    # PR curve points (recall, precision) from (0, 1): trapezoids .25 + .25 + .25*(2/3+3/4)/2 + .25*(1/2+4/7)/2.
    pr_auc = 0.5 + 0.25 * (2 / 3 + 3 / 4) / 2 + 0.25 * (1 / 2 + 4 / 7) / 2
    brier = sum((s - label) ** 2 for label, s in scored) / 10
    assert metrics == pytest.approx(
        {
            "auc": 20 / 24,
            "pr_auc": pr_auc,
            "brier": brier,
            "lift_top_decile": 1.0 / 0.4,  # the single top score is a churner; the base rate is 40%
            "top_decile_share": 0.1,
            "churn_rate": 0.4,
            "customers": 10.0,
        },
        rel=1e-12,
    )


def test_lift_shares_a_tie_at_the_cut_pro_rata(spark):
    # Four customers tie at the top score, two of them churners: the decile (one customer) gets half a churner.
    scored = [(1, 0.9), (1, 0.9), (0, 0.9), (0, 0.9), (1, 0.5), (0, 0.4), (0, 0.3), (0, 0.2), (0, 0.1), (0, 0.1)]
    df = spark.createDataFrame(
        [(float(label), score) for label, score in scored], f"{churn.LABEL} double, {churn.SCORE} double"
    )
    metrics = churn.evaluate(df)
    assert metrics["top_decile_share"] == pytest.approx(0.1, rel=1e-12)
    assert metrics["lift_top_decile"] == pytest.approx(0.5 / 0.3, rel=1e-12)


def test_family_frames_are_the_labelled_features_at_the_cutoff(spark, settings_for):
    settings = settings_for("models.churn.horizon_days=30")
    orders_df = spark.createDataFrame(
        [order_row("o1", "c1", "2026-01-10T10:00:00", 50), order_row("o2", "c2", "2026-02-01T10:00:00", 30)],
        ORDER_COLUMNS,
    )
    frames = churn_model.ChurnFamily(settings).prepare(orders_df, dt.date(2026, 3, 31))
    try:
        assert (frames.cutoff, frames.window) == (CUTOFF, f"features at {CUTOFF}")
        got = {r["customer_id"]: r[churn.LABEL] for r in frames.labelled_df.collect()}
    finally:
        frames.release()
    assert got == {"c1": 1.0, "c2": 1.0}


def test_a_model_that_cannot_read_the_features_cannot_score(spark, settings_for):
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import SQLTransformer

    # A champion trained when a feature existed that today's features no longer have.
    old_df = spark.createDataFrame([("c1", 1.0)], "customer_id string, retired_feature double")
    model = Pipeline(stages=[SQLTransformer(statement="SELECT *, retired_feature AS x FROM __THIS__")]).fit(old_df)
    labelled_df = spark.createDataFrame(
        [("c1", 1.0, True)], f"customer_id string, {churn.LABEL} double, is_holdout boolean"
    )
    frames = churn_model.ChurnFrames(labelled_df, dt.date(2026, 6, 30), CUTOFF)
    with pytest.raises(CannotScoreError, match="cannot read the features"):
        churn_model.ChurnFamily(settings_for()).evaluate(model, frames)


@pytest.mark.parametrize(
    ("challenger", "champion", "greater_is_better", "min_improvement", "expected"),
    [
        pytest.param(0.80, None, True, 0.0, True, id="first-model-is-champion"),
        pytest.param(0.81, 0.80, True, 0.0, True, id="higher-auc-wins"),
        pytest.param(0.80, 0.80, True, 0.0, False, id="tie-keeps-champion"),
        pytest.param(0.80 + 1e-12, 0.80, True, 0.0, False, id="float-noise-is-a-tie"),
        pytest.param(0.79, 0.80, True, 0.0, False, id="lower-auc-loses"),
        pytest.param(0.805, 0.80, True, 0.01, False, id="gain-below-min-improvement"),
        pytest.param(0.40, 0.50, False, 0.0, True, id="lower-mae-wins"),
        pytest.param(0.60, 0.50, False, 0.0, False, id="higher-mae-loses"),
        pytest.param(float("nan"), 0.50, False, 0.0, False, id="nan-challenger-loses"),
        pytest.param(0.50, float("nan"), False, 0.0, True, id="nan-champion-loses"),
    ],
)
def test_promotion_rule(challenger, champion, greater_is_better, min_improvement, expected):
    assert beats(challenger, champion, greater_is_better, min_improvement) is expected


@pytest.mark.parametrize(
    ("rows", "per_partition", "parallelism", "expected"),
    [
        (15_000, 200_000, 4, 1),  # a small shop: one partition, not the shuffle's dozens of near-empty ones
        (200_001, 200_000, 4, 2),
        (5_000_000, 200_000, 4, 4),  # capped by what runs at once
        (5_000_000, 200_000, 400, 25),
        (0, 200_000, 4, 1),
    ],
)
def test_training_partitions_follow_the_rows_up_to_the_parallelism(rows, per_partition, parallelism, expected):
    assert churn.training_partitions(rows, per_partition, parallelism) == expected

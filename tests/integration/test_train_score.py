"""train and score end to end on a small synthetic history, with a real Delta lake and a real MLflow store.

Two training runs on the same orders: the first with a deliberately weak churn model (one stump), the second with a
real one. The CLV configuration is the same in both, so its challenger ties the champion and the alias must stay;
the churn challenger is far better on the same holdout and the alias must move. Then ``score`` fills the
predictions of the segment snapshot from the champions.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyspark.sql.functions as F
import pytest

from segmentation import io, pipelines
from segmentation.config import load_settings
from segmentation.models import clv_training as ct
from segmentation.models import tracking
from segmentation.transforms import features as feat
from segmentation.transforms import segments

pytestmark = [pytest.mark.spark, pytest.mark.delta, pytest.mark.mlflow, pytest.mark.e2e, pytest.mark.slow]

AS_OF = dt.date(2026, 6, 30)
WEAK_CHURN = ("models.churn.max_iter=1", "models.churn.max_depth=1")
GOOD_CHURN = ("models.churn.max_iter=5", "models.churn.max_depth=3")


def _settings(conf_dir, lake, *overrides):
    return load_settings(
        [conf_dir / "local.yaml"],
        [
            f"inputs.orders.path={lake / 'input' / 'orders'}",
            "inputs.identity_map=null",
            "inputs.profiles=null",
            f"outputs.path={lake / 'output'}",
            f"mlflow.tracking_uri=sqlite:///{lake / 'mlflow.db'}",
            f"mlflow.dfs_tmpdir={lake / 'dfs_tmp'}",
            "spark.master=local[2]",
            "generate.customers=3000",
            "generate.orders=30000",
            *overrides,
        ],
    )


def _write_build_snapshots(spark, settings):
    """The two tables score reads from build: features and a segments slice whose predictions are still empty."""
    tagged, valid, _ = pipeline._valid_orders(spark, settings, AS_OF)
    features_df = feat.customer_features(valid, AS_OF, settings.features, settings.quality)
    io.write_snapshot(features_df, settings.outputs.table_path("customer_features"), AS_OF)
    features_df = io.read_output(spark, settings.outputs.table_path("customer_features"), AS_OF)
    segments_df = features_df.select(
        "as_of_date",
        "customer_id",
        "recency_days",
        "frequency",
        "monetary",
        *[F.lit(None).cast(t).alias(c) for c, t in segments.PREDICTION_COLUMNS.items()],
        F.lit("build-run").alias("run_id"),
    )
    io.write_snapshot(segments_df, settings.outputs.table_path("customer_segments"), AS_OF)
    tagged.release()


@pytest.fixture(scope="module")
def runs(spark, tmp_path_factory, conf_dir):
    lake = tmp_path_factory.mktemp("train_score") / "lake"
    weak, good = _settings(conf_dir, lake, *WEAK_CHURN), _settings(conf_dir, lake, *GOOD_CHURN)
    pipelines.run_generate(spark, weak, AS_OF)
    _write_build_snapshots(spark, weak)
    first = pipelines.run_train(spark, weak, AS_OF)
    second = pipelines.run_train(spark, good, AS_OF)
    scored = pipelines.run_score(spark, good, AS_OF)
    scored_again = pipelines.run_score(spark, good, AS_OF)
    return {"settings": good, "first": first, "second": second, "scored": scored, "scored_again": scored_again}


def _promotion(result, name):
    return next(p for p in result.promotions if p.registered_model == name)


def test_two_runs_per_model_side_by_side_with_comparable_metrics(runs):
    import mlflow

    settings = runs["settings"]
    tracking.configure(settings.mlflow)
    runs_df = mlflow.search_runs(order_by=["attributes.start_time ASC"])
    assert list(runs_df["tags.mlflow.runName"]) == [f"clv {AS_OF}", f"churn {AS_OF}"] * 2
    clv_runs = runs_df[runs_df["tags.registered_model"] == "segmentation_clv"]
    churn_runs = runs_df[runs_df["tags.registered_model"] == "segmentation_churn"]
    for metric in ("holdout_mae", "holdout_rmse", "spend_mae", "bgnbd_log_likelihood"):
        assert clv_runs[f"metrics.{metric}"].notna().all(), metric
    for metric in ("auc", "pr_auc", "brier", "lift_top_decile", "baseline_auc"):
        assert churn_runs[f"metrics.{metric}"].notna().all(), metric
    for name in ("bgnbd_r", "bgnbd_alpha", "bgnbd_a", "bgnbd_b", "gg_p", "gg_q", "gg_v"):
        assert clv_runs[f"params.{name}"].astype(float).gt(0).all(), name
    assert set(runs_df["params.input_orders_version"]) == {"0"}
    assert set(runs_df["params.input_orders_path"]) == {io.qualify(settings.inputs.orders.path)}
    # Same data, same CLV configuration: the same fit, to the bit.
    assert clv_runs["params.bgnbd_r"].nunique() == 1
    assert clv_runs["metrics.holdout_mae"].nunique() == 1


def test_clv_alias_stays_on_a_tie(runs):
    first, second = _promotion(runs["first"], "segmentation_clv"), _promotion(runs["second"], "segmentation_clv")
    assert (first.version, first.promoted, first.champion_version) == ("1", True, None)
    assert (second.version, second.promoted, second.champion_version) == ("2", False, "1")
    assert second.champion_value == second.challenger_value
    assert tracking.champion_version("segmentation_clv") == "1"


def test_churn_alias_moves_on_improvement(runs):
    first, second = _promotion(runs["first"], "segmentation_churn"), _promotion(runs["second"], "segmentation_churn")
    assert (first.version, first.promoted) == ("1", True)
    assert (second.version, second.promoted, second.champion_version) == ("2", True, "1")
    # The champion was re-evaluated on the same holdout: its AUC there is the first run's AUC.
    assert second.champion_value == pytest.approx(first.challenger_value, rel=1e-12)
    assert second.challenger_value > second.champion_value
    assert tracking.champion_version("segmentation_churn") == "2"


def test_churn_model_beats_the_recency_baseline(runs):
    metrics, baseline = runs["second"].churn_metrics, runs["second"].churn_baseline_metrics
    print(f"churn {metrics}\nbaseline {baseline}")
    assert metrics["auc"] >= baseline["auc"]
    assert metrics["customers"] == baseline["customers"]


def test_score_fills_every_customer_in_range(runs, spark):
    settings = runs["settings"]
    df = io.read_output(spark, settings.outputs.table_path("customer_segments"), AS_OF)
    row = df.agg(
        F.count(F.lit(1)).alias("n"),
        *[F.count(c).alias(c) for c in segments.PREDICTION_COLUMNS],
        F.min("p_alive").alias("p_min"),
        F.max("p_alive").alias("p_max"),
        F.min("clv").alias("clv_min"),
        F.min("expected_purchases").alias("e_min"),
        F.min("churn_probability").alias("c_min"),
        F.max("churn_probability").alias("c_max"),
    ).first()
    assert row["n"] == runs["scored"].customers
    assert all(row[c] == row["n"] for c in segments.PREDICTION_COLUMNS)
    assert 0.0 <= row["p_min"] <= row["p_max"] <= 1.0
    assert row["clv_min"] >= 0.0 and row["e_min"] >= 0.0
    assert 0.0 <= row["c_min"] <= row["c_max"] <= 1.0
    assert (runs["scored"].clv_version, runs["scored"].churn_version) == ("1", "2")


def test_scores_equal_the_numpy_closed_forms_of_the_champion(runs, spark):
    settings = runs["settings"]
    model, _ = tracking.load_clv_champion("segmentation_clv")
    tagged, valid, _ = pipeline._valid_orders(spark, settings, AS_OF)
    summary_df = ct.customer_summary(valid, AS_OF, model.time_unit, "completed")
    # A handful of customers: the heaviest buyer, a one-time buyer and a couple in between (bounded, test-side).
    picked = (
        summary_df.orderBy(F.desc("frequency"), "customer_id")
        .limit(2)
        .unionByName(summary_df.where("frequency = 0").orderBy("customer_id").limit(1))
        .unionByName(summary_df.where("frequency = 2").orderBy("customer_id").limit(2))
    ).toPandas()
    tagged.release()
    expected = ct.predict_frame(
        model, ct.Horizon.from_settings(settings.models.clv, model.time_unit), picked.fillna(0.0)
    )
    scored = (
        io.read_output(spark, settings.outputs.table_path("customer_segments"), AS_OF)
        .where(F.col("customer_id").isin(list(picked["customer_id"])))
        .toPandas()
        .set_index("customer_id")
        .loc[picked["customer_id"]]
    )
    for column in ("p_alive", "expected_purchases", "clv"):
        np.testing.assert_allclose(scored[column].to_numpy(), expected[column].to_numpy(), rtol=1e-9, err_msg=column)


def test_rescoring_rewrites_the_same_slice(runs, spark):
    settings = runs["settings"]
    path = settings.outputs.table_path("customer_segments")
    assert runs["scored_again"].segments_version == runs["scored"].segments_version + 1
    current = io.read_output(spark, path, AS_OF)
    before = spark.read.format("delta").option("versionAsOf", runs["scored"].segments_version).load(path)
    columns = ["customer_id", *segments.PREDICTION_COLUMNS]
    assert current.count() == before.count() == runs["scored"].customers
    assert current.select(columns).exceptAll(before.select(columns)).count() == 0


def test_pyfunc_model_predicts_from_the_registry(runs):
    import mlflow

    tracking.configure(runs["settings"].mlflow)
    model = mlflow.pyfunc.load_model(tracking.champion_uri("segmentation_clv"))
    frame = pd.DataFrame({"frequency": [0, 3], "recency": [0, 20], "T": [10, 26], "monetary": [0.0, 85.5]})
    out = model.predict(frame)
    assert list(out.columns) == ["p_alive", "expected_purchases", "expected_spend", "clv"]
    assert out["p_alive"].iloc[0] == 1.0 and (out["clv"] > 0).all()
    assert model.metadata.signature is not None

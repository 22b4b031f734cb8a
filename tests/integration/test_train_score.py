"""The real job chain on one small synthetic history: generate -> build -> train (twice) -> score (twice) -> report.

A real Delta lake and a real MLflow store, no stand-ins. The two training runs use the same orders: the first with a
deliberately weak churn model (one stump, allowed to trail its recency baseline), the second with a real one. The CLV
configuration is the same in both, so its challenger ties the champion and the alias must stay; the churn challenger
is far better on the same holdout and the alias must move. No guard fires on this sound history. ``score`` then fills
the predictions of build's segment snapshot from the champions, and the run manifest (read with delta-rs, as
downstream readers do) shows every job of the date complete.
"""

from __future__ import annotations

import base64
import datetime as dt

import numpy as np
import pandas as pd
import pyspark.sql.functions as F
import pytest
from deltalake import DeltaTable

from segmentation import io, pipelines
from segmentation.config import load_settings
from segmentation.models import clv_model, registry, registry_status, tracking
from segmentation.models import clv_training as ct
from segmentation.models.clv.purchase import FITTED
from segmentation.models.clv.purchase import PARAMETER_NAMES as PURCHASE_PARAMETERS
from segmentation.pipelines import common
from segmentation.runs import JobRun
from segmentation.transforms import segments

pytestmark = [
    pytest.mark.spark,
    pytest.mark.delta,
    pytest.mark.mlflow,
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(1800),
]

AS_OF = dt.date(2026, 6, 30)
# One stump may rank customers worse than recency alone; the first run allows any shortfall against that baseline so
# the weak model becomes the champion the second run has to beat (tests/integration/test_train_guards.py covers the
# guard itself).
WEAK_CHURN = ("models.churn.max_iter=1", "models.churn.max_depth=1", "models.churn.guards.max_loss_to_baseline=1")
GOOD_CHURN = ("models.churn.max_iter=5", "models.churn.max_depth=3")


def _settings(conf_dir, lake, *overrides):
    return load_settings(
        [conf_dir / "local.yaml"],
        [
            f"inputs.orders.path={lake / 'input' / 'orders'}",
            "inputs.identity_map=null",
            "inputs.profiles=null",
            f"outputs.path={lake / 'output'}",
            f"outputs.report_dir={lake / 'reports'}",
            f"mlflow.tracking_uri=sqlite:///{lake / 'mlflow.db'}",
            f"mlflow.dfs_tmpdir={lake / 'dfs_tmp'}",
            "spark.master=local[2]",
            "generate.customers=3000",
            "generate.orders=30000",
            "generate.customers_per_partition=1000",
            *overrides,
        ],
    )


# One chain, one fixture per job so each stage's set-up is timed with the first test that needs it.
@pytest.fixture(scope="module")
def built(spark, tmp_path_factory, conf_dir):
    lake = tmp_path_factory.mktemp("train_score") / "lake"
    weak, good = _settings(conf_dir, lake, *WEAK_CHURN), _settings(conf_dir, lake, *GOOD_CHURN)
    pipelines.run_generate(spark, weak, AS_OF)
    return {"weak": weak, "settings": good, "built": pipelines.run_build(spark, weak, AS_OF)}


@pytest.fixture(scope="module")
def trained(spark, built):
    first = pipelines.run_train(spark, built["weak"], AS_OF)
    second = pipelines.run_train(spark, built["settings"], AS_OF)
    return {**built, "first": first, "second": second}


@pytest.fixture(scope="module")
def runs(spark, trained):
    scored = pipelines.run_score(spark, trained["settings"], AS_OF)
    scored_again = pipelines.run_score(spark, trained["settings"], AS_OF)
    return {**trained, "scored": scored, "scored_again": scored_again}


@pytest.fixture(scope="module")
def reported(spark, runs):
    return {**runs, "report": pipelines.run_report(spark, runs["settings"], AS_OF)}


def _promotion(result, name):
    return next(p for p in result.promotions if p.registered_model == name)


def _manifest_rows(settings) -> list[dict]:
    """``segment_runs`` of the date as delta-rs reads it, oldest first."""
    rows = DeltaTable(settings.outputs.table_path("segment_runs")).to_pyarrow_table().to_pylist()
    rows = [
        {**r, "table_versions": dict(r["table_versions"] or []), "input_versions": dict(r["input_versions"] or [])}
        for r in rows
        if r["as_of_date"] == AS_OF
    ]
    return sorted(rows, key=lambda r: r["finished_at"])


def test_build_leaves_the_predictions_for_score_to_fill(built, spark):
    settings = built["settings"]
    df = io.read_output(spark, settings.outputs.table_path("customer_segments"), AS_OF)
    row = df.agg(F.count(F.lit(1)).alias("n"), *[F.count(c).alias(c) for c in segments.PREDICTION_COLUMNS]).first()
    assert row["n"] == built["built"].customers > 0
    assert all(row[c] == 0 for c in segments.PREDICTION_COLUMNS)


def test_two_runs_per_model_side_by_side_with_comparable_metrics(trained):
    import mlflow
    from PIL import Image, ImageStat

    settings = trained["settings"]
    tracking.configure(settings.mlflow)
    every_run = mlflow.search_runs(order_by=["attributes.start_time ASC"])
    runs_df = every_run[every_run["tags.mlflow.parentRunId"].isna()]
    assert list(runs_df["tags.mlflow.runName"]) == [f"clv {AS_OF}", f"churn {AS_OF}"] * 2
    clv_runs = runs_df[runs_df["tags.registered_model"] == "segmentation_clv"]
    churn_runs = runs_df[runs_df["tags.registered_model"] == "segmentation_churn"]
    for metric in ("holdout_mae", "holdout_rmse", "spend_mae", "log_likelihood", "aic", "bic"):
        assert clv_runs[f"metrics.{metric}"].notna().all(), metric
    for metric in ("auc", "pr_auc", "brier", "lift_top_decile", "baseline_auc"):
        assert churn_runs[f"metrics.{metric}"].notna().all(), metric
    (purchase,) = set(clv_runs["params.purchase_model"])  # the same data selects the same candidate twice
    assert purchase in FITTED
    for name in (f"{purchase}_{p}" for p in PURCHASE_PARAMETERS[purchase]):
        assert clv_runs[f"params.{name}"].astype(float).gt(0).all(), name
    for name in ("gg_p", "gg_q", "gg_v"):
        assert clv_runs[f"params.{name}"].astype(float).gt(0).all(), name
    # Each CLV run has one nested run per candidate, comparable across the two runs; churn fits one model.
    children = every_run[every_run["tags.mlflow.parentRunId"].notna()]
    assert set(children["tags.mlflow.parentRunId"]) == set(clv_runs["run_id"])
    for run_id in clv_runs["run_id"]:
        mine = children[children["tags.mlflow.parentRunId"] == run_id].set_index("tags.candidate")
        assert sorted(mine.index) == ["bgnbd", "mbgnbd", "naive", "pareto_nbd"]
        assert list(mine.index[mine["tags.selected"] == "true"]) == [purchase]
        assert set(mine["tags.guarded"]) <= {"true", "false"} and mine.loc[purchase, "tags.guarded"] == "false"
        assert (
            mine.loc[purchase, "metrics.holdout_mae"] == clv_runs.set_index("run_id").loc[run_id, "metrics.holdout_mae"]
        )
        for fitted in FITTED:
            assert mine.loc[fitted, "metrics.aic"] == pytest.approx(8 - 2 * mine.loc[fitted, "metrics.log_likelihood"])
    pairs = children.groupby("tags.candidate")["metrics.holdout_mae"].nunique()
    assert (pairs == 1).all(), pairs  # same data, same candidates: the same numbers in both runs
    assert set(clv_runs["params.time_unit"]) == {"weeks"}
    assert set(churn_runs["params.cutoff"]) == {str(AS_OF - dt.timedelta(days=90))}
    assert set(runs_df["tags.guarded"]) == {"false"}  # sound fits on the synthetic history: no guard fires
    assert set(runs_df["params.input_orders_version"]) == {"0"}
    assert set(runs_df["params.input_orders_path"]) == {io.qualify(settings.inputs.orders.path)}
    # The diagnostic pictures of every run, real PNGs with lines and labels on them (not a blank canvas).
    pictures = {
        "segmentation_clv": ["holdout_by_frequency", "p_alive_by_recency", "cumulative_purchases"],
        "segmentation_churn": ["holdout_roc_lift", "feature_importances"],
    }
    for run_id, model in zip(runs_df["run_id"], runs_df["tags.registered_model"], strict=True):
        for name in pictures[model]:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"images/{name}.png")
            with Image.open(path) as image:
                assert image.format == "PNG" and image.size[0] >= 800 and image.size[1] >= 450, (name, image.size)
                assert ImageStat.Stat(image.convert("L")).stddev[0] > 20, name
    # The score bins the ROC is drawn from hold every holdout customer and every churned one.
    bins = mlflow.artifacts.load_dict(f"runs:/{churn_runs['run_id'].iloc[-1]}/tables/holdout_score_bins.json")["rows"]
    last = churn_runs.iloc[-1]
    assert sum(b["customers"] for b in bins) == last["metrics.customers"]
    assert sum(b["churned"] for b in bins) == pytest.approx(last["metrics.churn_rate"] * last["metrics.customers"])
    assert all(0 <= b["bin"] < 100 for b in bins)
    # The P(alive) bands hold every repeat buyer the fit saw once.
    clv_last = clv_runs.iloc[-1]
    bands = mlflow.artifacts.load_dict(f"runs:/{clv_last['run_id']}/tables/p_alive_by_recency.json")["rows"]
    assert sum(b["customers"] for b in bands) == clv_last["metrics.repeat_customers"]
    # The cumulative curve gains in the holdout exactly the holdout purchases the metrics counted another way.
    curve = mlflow.artifacts.load_dict(f"runs:/{clv_last['run_id']}/tables/cumulative_purchases.json")["rows"]
    at_end = next(r["actual"] for r in curve if r["period"] == -1)
    assert curve[-1]["actual"] - at_end == clv_last["metrics.holdout_actual_total"]
    assert curve[-1]["period_end"] == str(AS_OF)
    # Same data, same CLV configuration: the same fit, to the bit.
    assert clv_runs[f"params.{purchase}_r"].nunique() == 1
    assert clv_runs["metrics.holdout_mae"].nunique() == 1


def test_report_models_section_reads_the_newest_version_and_champion_from_the_registry(trained):
    from segmentation import report
    from segmentation.report.inputs import ReportInputs

    settings, second = trained["settings"], trained["second"]
    statuses = {
        f.name: registry_status.model_status(settings.mlflow, f.name, f.promotion.registered_model)
        for f in registry.families(settings)
    }
    clv, churn = statuses["clv"], statuses["churn"]
    # clv: the second fit ties the first, which stays champion; churn: the second beat the first and took over.
    assert (clv.latest_version, clv.champion_version, clv.promoted, clv.guards) == ("2", "1", False, {})
    assert clv.latest_value == second.outcome("clv").metrics["holdout_mae"]
    assert clv.baseline_value == second.outcome("clv").baseline_metrics["holdout_mae"] > clv.latest_value
    assert clv.champion_value == pytest.approx(clv.latest_value)
    assert (churn.latest_version, churn.champion_version, churn.promoted) == ("2", "2", True)
    assert churn.champion_value == churn.latest_value == second.outcome("churn").metrics["auc"]
    assert churn.run_name == f"churn {AS_OF}" and churn.metric == "auc"
    assert registry_status.model_status(settings.mlflow, "clv", "no_such_model") is None

    section = report.models_section(ReportInputs(as_of=AS_OF, segments_df=None, models=[clv, churn]))
    assert section.note is None and section.image is None
    (selected,) = [c["candidate"] for c in clv.candidates if c["selected"]]
    assert [c["candidate"] for c in clv.candidates] == [*FITTED, "naive"]
    assert f"<td>v2 (clv {AS_OF}, {selected})</td><td>holdout_mae</td><td>{clv.latest_value:.4f}</td>" in section.table
    # The newest versions' diagnostic pictures, as logged in MLflow, under the table.
    assert [caption for caption, _ in section.gallery] == [
        "clv v2: cumulative purchases",
        "clv v2: holdout by frequency",
        "clv v2: p alive by recency",
        "churn v2: feature importances",
        "churn v2: holdout roc lift",
    ]
    assert all(base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n" for _, png in section.gallery)
    assert "<td>did not beat champion v1</td>" in section.table and "<td>champion</td>" in section.table


def test_train_result_names_every_family_in_registry_order(trained):
    second = trained["second"]
    assert [o.name for o in second.outcomes] == list(registry.FAMILIES) == ["clv", "churn"]
    assert second.outcome("clv").window == f"calibration up to {AS_OF - dt.timedelta(days=90)}"
    clv_outcome = second.outcome("clv")
    (selected,) = [c.name for c in clv_outcome.candidates if c.selected]
    purchase = {f"{selected}_{p}" for p in PURCHASE_PARAMETERS.get(selected, ())}
    assert set(clv_outcome.params) == purchase | {"gg_p", "gg_q", "gg_v"}
    assert [c.name for c in clv_outcome.candidates] == [*FITTED, "naive"]
    for outcome in second.outcomes:
        assert set(outcome.key_metrics) <= set(outcome.metrics), outcome.name


def test_clv_alias_stays_on_a_tie(trained):
    first, second = _promotion(trained["first"], "segmentation_clv"), _promotion(trained["second"], "segmentation_clv")
    assert (first.version, first.promoted, first.champion_version) == ("1", True, None)
    assert (second.version, second.promoted, second.champion_version) == ("2", False, "1")
    assert second.champion_value == second.challenger_value
    assert tracking.champion_version("segmentation_clv") == "1"


def test_churn_alias_moves_on_improvement(trained):
    name = "segmentation_churn"
    first, second = _promotion(trained["first"], name), _promotion(trained["second"], name)
    assert (first.version, first.promoted) == ("1", True)
    assert (second.version, second.promoted, second.champion_version) == ("2", True, "1")
    # The champion was re-evaluated on the same holdout: its AUC there is the first run's AUC.
    assert second.champion_value == pytest.approx(first.challenger_value, rel=1e-12)
    assert second.challenger_value > second.champion_value
    assert tracking.champion_version("segmentation_churn") == "2"


def test_churn_model_beats_the_recency_baseline(trained):
    outcome = trained["second"].outcome("churn")
    metrics, baseline = outcome.metrics, outcome.baseline_metrics
    print(f"churn {metrics}\nbaseline {baseline}")
    assert metrics["auc"] >= baseline["auc"]
    assert metrics["customers"] == baseline["customers"]
    assert metrics["baseline_auc"] == baseline["auc"]


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
        *[
            F.count(F.when(~(F.col(f"{c}_low") <= F.col(c)) | ~(F.col(c) <= F.col(f"{c}_high")), 1)).alias(f"{c}_out")
            for c in ("clv", "expected_purchases")
        ],
        F.count(F.when(F.col("clv_high") > F.col("clv_low"), 1)).alias("clv_widths"),
    ).first()
    assert row["n"] == runs["scored"].customers == runs["built"].customers
    assert all(row[c] == row["n"] for c in segments.PREDICTION_COLUMNS)
    assert 0.0 <= row["p_min"] <= row["p_max"] <= 1.0
    assert row["clv_min"] >= 0.0 and row["e_min"] >= 0.0
    assert 0.0 <= row["c_min"] <= row["c_max"] <= 1.0
    # Every customer's interval holds the point prediction, and is an interval (the champion carries draws).
    assert (row["clv_out"], row["expected_purchases_out"], row["clv_widths"]) == (0, 0, row["n"])
    assert runs["scored"].versions == {"clv": "1", "churn": "2"}


def _valid_orders(spark, settings):
    """The valid orders as the jobs see them, through a run that is never entered (so it leaves no manifest row)."""
    run = JobRun(spark, settings, "test", AS_OF)
    return common.valid_orders(run)[0], run


def test_scores_equal_the_numpy_closed_forms_of_the_champion(runs, spark):
    settings = runs["settings"]
    model, _ = tracking.load_champion(registry.family("clv", settings), "segmentation_clv")
    valid, run = _valid_orders(spark, settings)
    summary_df = ct.customer_summary(valid, AS_OF, model.time_unit, "completed")
    # A handful of customers: the heaviest buyer, a one-time buyer and a couple in between (bounded, test-side).
    picked = (
        summary_df.orderBy(F.desc("frequency"), "customer_id")
        .limit(2)
        .unionByName(summary_df.where("frequency = 0").orderBy("customer_id").limit(1))
        .unionByName(summary_df.where("frequency = 2").orderBy("customer_id").limit(2))
    ).toPandas()
    run.release()
    horizon = ct.Horizon.from_settings(settings.models.clv, model.time_unit)
    expected = clv_model.predict_frame(model, horizon, picked.fillna(0.0))
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


def test_pyfunc_model_predicts_from_the_registry(trained):
    import mlflow

    tracking.configure(trained["settings"].mlflow)
    model = mlflow.pyfunc.load_model(tracking.champion_uri("segmentation_clv"))
    frame = pd.DataFrame({"frequency": [0, 3], "recency": [0, 20], "T": [10, 26], "monetary": [0.0, 85.5]})
    out = model.predict(frame)
    assert list(out.columns) == ["p_alive", "expected_purchases", "expected_spend", "clv", *clv_model.INTERVAL_COLUMNS]
    for name in ("expected_purchases", "clv"):  # the champion carries parameter draws: a real interval per row
        assert (out[f"{name}_low"] <= out[name]).all() and (out[name] <= out[f"{name}_high"]).all(), name
        assert (out[f"{name}_high"] > out[f"{name}_low"]).all(), name
    champion = model.unwrap_python_model().model.model
    if champion.purchase == "bgnbd":  # under BG/NBD a customer without a repeat purchase cannot have left yet
        assert out["p_alive"].iloc[0] == 1.0
    assert out["p_alive"].between(0, 1).all() and (out["clv"] > 0).all()
    assert model.metadata.signature == clv_model.SIGNATURE


def test_manifest_holds_a_complete_row_for_every_job_of_the_date(reported):
    rows = _manifest_rows(reported["settings"])
    complete = {r["job"] for r in rows if r["status"] == io.RUN_COMPLETE}
    assert complete >= {"generate", "build", "train", "score", "report"}
    trains = [r["table_versions"] for r in rows if r["job"] == "train" and r["status"] == io.RUN_COMPLETE]
    assert [(t["model.segmentation_clv"], t["model.segmentation_churn"]) for t in trains] == [(1, 1), (2, 2)]
    score = next(r for r in rows if r["job"] == "score" and r["status"] == io.RUN_COMPLETE)
    assert score["input_versions"]["model.segmentation_clv"] == 1
    assert score["input_versions"]["model.segmentation_churn"] == 2
    assert score["table_versions"]["customer_segments"] == reported["scored"].segments_version
    assert reported["report"].path.endswith(f"segmentation_{AS_OF}.html")


def test_a_failed_score_leaves_a_failed_row_and_the_scored_snapshot_readable(reported, spark, monkeypatch):
    settings = reported["settings"]
    segments_path = settings.outputs.table_path("customer_segments")
    write_snapshot = io.write_snapshot

    def failing(df, path, *args, **kwargs):
        if path == segments_path:
            raise OSError("disk full while writing customer_segments")
        return write_snapshot(df, path, *args, **kwargs)

    monkeypatch.setattr(io, "write_snapshot", failing)
    with pytest.raises(OSError, match="disk full"):
        pipelines.run_score(spark, settings, AS_OF)
    monkeypatch.undo()

    last = _manifest_rows(settings)[-1]
    assert (last["job"], last["status"], last["table_versions"]) == ("score", io.RUN_FAILED, {})
    assert "disk full" in last["message"]
    snapshot = io.read_complete_snapshot(
        spark, settings.outputs.table_path("segment_runs"), "customer_segments", segments_path, AS_OF
    )
    version = reported["scored_again"].segments_version
    scored = spark.read.format("delta").option("versionAsOf", version).load(segments_path)
    columns = ["customer_id", *segments.PREDICTION_COLUMNS]
    assert snapshot.count() == reported["scored_again"].customers
    assert snapshot.where(F.col("clv").isNull() | F.col("churn_probability").isNull()).count() == 0
    assert snapshot.select(columns).exceptAll(scored.where(F.col("as_of_date") == AS_OF).select(columns)).count() == 0

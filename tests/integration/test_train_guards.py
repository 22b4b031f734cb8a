"""Guards keep a bad model from ``@champion``: real Spark, a real MLflow store, small hand-made order histories.

Each test drives one family through :func:`segmentation.models.training.train_and_promote`, the routine the ``train``
job runs per family, and reads the result back through the MLflow client: the run's guard tags, the version's tags
and where the ``champion`` alias points.

- CLV: a history of customers who buy at a constant rate and never stop makes BG/NBD conclude that nobody ever drops
  out. That fit converges and is refused (it also forecasts the holdout worse than carrying each customer's own past
  rate forward); every candidate is a nested run with its guard tags, and the one registered and made champion is a
  candidate no guard refused. A sound history (every customer may stop after each purchase, with a chance that
  differs between customers) then has a fitted purchase model pass every guard, be selected and replace it.
- Churn: a label only recency predicts, and a model only allowed a feature that is the same for everyone. It loses
  to its own recency-only baseline and is refused even though there is no champion to beat.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from segmentation import report
from segmentation.models import churn_model, clv_model, guarding, registry_status, tracking
from segmentation.models.clv.purchase import FITTED
from segmentation.models.clv.purchase import PARAMETER_NAMES as PURCHASE_PARAMETERS
from segmentation.models.training import train_and_promote
from segmentation.report.inputs import ReportInputs
from segmentation.runs import JobRun
from tests.conftest import ORDER_COLUMNS, order_row

pytestmark = [pytest.mark.spark, pytest.mark.mlflow, pytest.mark.timeout(300)]

AS_OF = dt.date(2026, 6, 30)
CALIBRATION_END = AS_OF - dt.timedelta(days=90)  # models.clv.holdout_days in conf/base.yaml
NOON = dt.time(12, 0)


def _history(customers: int, seed: int, *, never_stop: bool, prefix: str) -> list[tuple]:
    """Order rows of customers who first buy 30 to 104 weeks before the calibration end, then at a constant Poisson
    rate (gamma across customers, about one purchase every ten weeks) up to the as-of date; unless ``never_stop``,
    after each purchase a customer stops for good with a chance drawn per customer from Beta(1, 3)."""
    rng = np.random.default_rng(seed)
    rows = []
    for c in range(customers):
        start = int(rng.uniform(30 * 7, 104 * 7))  # days before the calibration end
        rate, stop = rng.gamma(2.0, 0.1) / 7, rng.beta(1.0, 3.0)
        days, t = [0.0], 0.0
        while never_stop or rng.uniform() >= stop:
            t += rng.exponential(1 / rate)
            if t > start + 90:
                break
            days.append(t)
        first = dt.datetime.combine(CALIBRATION_END, NOON) - dt.timedelta(days=start)
        for i, d in enumerate(days):
            amount = round(float(rng.uniform(20, 200)), 2)
            rows.append(order_row(f"{prefix}{c}-{i}", f"{prefix}{c}", first + dt.timedelta(days=int(d)), amount))
    return rows


def _train(spark, settings, family, rows):
    orders_df = spark.createDataFrame(rows, ORDER_COLUMNS)
    run = JobRun(spark, settings, "train", AS_OF)  # never entered: only its stages, no manifest row
    frames = family.prepare(orders_df, AS_OF)
    return train_and_promote(
        run.stage, family, frames, family.promotion, as_of=AS_OF, inputs={"orders_version": 0}, config={}
    )


def _candidate_runs(client, run_id: str) -> dict[str, object]:
    experiment = client.get_run(run_id).info.experiment_id
    children = client.search_runs([experiment], filter_string=f"tags.mlflow.parentRunId = '{run_id}'")
    return {r.data.tags["candidate"]: r for r in children}


def test_purchase_models_that_say_nobody_drops_out_are_refused_and_a_sound_candidate_is_champion(
    spark, settings_for, caplog
):
    import mlflow
    from mlflow import MlflowClient

    settings = settings_for()
    tracking.configure(settings.mlflow)
    family = clv_model.ClvFamily(settings)
    name = family.promotion.registered_model
    client = MlflowClient()

    with caplog.at_level("WARNING", logger="segmentation.models.training"):
        degenerate = _train(spark, settings, family, _history(400, 1, never_stop=True, prefix="n"))

    # Every candidate is a nested run of the training run, with its parameters, fit and holdout metrics, guard tags.
    runs = _candidate_runs(client, degenerate.run_id)
    assert set(runs) == {*FITTED, "naive"}
    for candidate, run in runs.items():
        assert {"holdout_mae", "holdout_rmse", "gg_log_likelihood"} <= set(run.data.metrics), candidate
        if candidate != "naive":
            assert {"log_likelihood", "aic", "bic", f"{candidate}_implied_dropout"} <= set(run.data.metrics)
            assert {f"{candidate}_{p}" for p in PURCHASE_PARAMETERS[candidate]} <= set(run.data.params)
    bgnbd = runs["bgnbd"].data.tags
    assert (bgnbd["guarded"], bgnbd["selected"]) == ("true", "false")
    assert {"guard.degenerate_dropout", "guard.p_alive_does_not_separate", "guard.loses_to_baseline"} <= set(bgnbd)
    assert "guard.not_converged" not in bgnbd  # the optimiser converged: only the guards see the problem
    assert bgnbd["guard.degenerate_dropout"].startswith("purchase model (BG/NBD): implied drop-out probability")
    bgnbd_metrics = runs["bgnbd"].data.metrics
    assert bgnbd_metrics["aic"] == pytest.approx(8 - 2 * bgnbd_metrics["log_likelihood"])
    assert bgnbd_metrics["bic"] == pytest.approx(4 * np.log(400) - 2 * bgnbd_metrics["log_likelihood"])
    # The candidate registered is one no guard refused, and it becomes the first champion.
    selected = [c for c, run in runs.items() if run.data.tags["selected"] == "true"]
    parent = client.get_run(degenerate.run_id).data
    assert selected == [parent.tags["selected_candidate"]] == [parent.params["purchase_model"]]
    assert runs[selected[0]].data.tags["guarded"] == "false"
    assert (degenerate.version, degenerate.promotion.promoted, degenerate.promotion.guards) == (1, True, ())
    assert str(client.get_model_version_by_alias(name, tracking.CHAMPION).version) == "1"
    champion = family.load(f"models:/{name}@{tracking.CHAMPION}")
    assert champion.purchase == selected[0] != "bgnbd"
    # Customers who never stop are what the naive rate assumes: it forecasts their holdout better than BG/NBD.
    assert degenerate.baseline_metrics["holdout_mae"] < bgnbd_metrics["holdout_mae"]
    assert degenerate.metrics["holdout_mae"] <= degenerate.baseline_metrics["holdout_mae"] + 1e-12
    table = {
        r["candidate"]: r
        for r in mlflow.artifacts.load_dict(f"runs:/{degenerate.run_id}/tables/candidates.json")["rows"]
    }
    assert set(table) == set(runs) and table[selected[0]]["selected"]
    assert table["bgnbd"]["holdout_mae"] == pytest.approx(bgnbd_metrics["holdout_mae"])
    assert parent.metrics["bgnbd_aic"] == pytest.approx(bgnbd_metrics["aic"])

    # One warning line per refused candidate, naming it and saying what each guard means.
    warnings = [r.getMessage() for r in caplog.records if r.name == "segmentation.models.training"]
    assert (
        "clv candidate bgnbd is not selected: the model says almost no customer ever stops buying, so it cannot tell"
        f" lapsing customers from loyal ones [guard degenerate_dropout: {bgnbd['guard.degenerate_dropout']}]"
    ) in warnings, warnings
    assert (
        "clv candidate bgnbd is not selected: it forecasts holdout purchases worse than simply carrying each"
        f" customer's own past purchase rate forward [guard loses_to_baseline: {bgnbd['guard.loses_to_baseline']}]"
    ) in warnings, warnings
    refused = [c for c, run in runs.items() if run.data.tags["guarded"] == "true"]
    assert len(warnings) == sum(len([k for k in runs[c].data.tags if k.startswith("guard.")]) for c in refused)

    # The report's Models section names each refused candidate in words, and shows the run's pictures.
    status = registry_status.model_status(settings.mlflow, "clv", name)
    section = report.models_section(ReportInputs(as_of=AS_OF, segments_df=None, models=[status]))
    assert f"clv v1: candidate bgnbd was not selected: {guarding.MEANINGS['parameter_at_bound']}" in section.note
    assert (
        "[guard parameter_at_bound, degenerate_dropout, p_alive_does_not_separate, loses_to_baseline;" in section.note
    )
    assert f"<td>v1 (clv {AS_OF}, {selected[0]})</td>" in section.table and "<td>champion</td>" in section.table
    assert [c for c, _ in section.gallery] == ["clv v1: cumulative purchases", "clv v1: holdout by frequency"] + (
        [] if selected[0] == "naive" else ["clv v1: p alive by recency"]
    )

    # Standard errors: the degenerate BG/NBD fit cannot pin its drop-out parameters down.
    assert all(f"bgnbd_{p}_se" not in bgnbd_metrics for p in ("r", "alpha", "a", "b")), bgnbd_metrics
    assert all(bgnbd_metrics[f"gg_{p}_se"] > 0 for p in ("p", "q", "v"))  # spend is fitted fine

    # A sound history (customers do stop): a fitted purchase model passes every guard, is selected and beats the
    # champion (the naive rate judged on the same holdout) by far.
    sound = _train(spark, settings, family, _history(400, 1, never_stop=False, prefix="s"))
    sound_runs = _candidate_runs(client, sound.run_id)
    chosen = [c for c, run in sound_runs.items() if run.data.tags["selected"] == "true"]
    assert chosen and chosen[0] in FITTED, chosen
    assert (sound.version, sound.promotion.promoted, sound.promotion.guards) == (2, True, ())
    assert sound.promotion.champion_version == "1"
    assert str(client.get_model_version_by_alias(name, tracking.CHAMPION).version) == "2"
    assert sound.metrics["holdout_mae"] < 0.7 * sound.baseline_metrics["holdout_mae"]
    sound_metrics = client.get_run(sound.run_id).data.metrics
    assert sound_metrics["baseline_holdout_mae"] == pytest.approx(sound.baseline_metrics["holdout_mae"])
    assert all(sound_metrics[f"{chosen[0]}_{p}_se"] > 0 for p in PURCHASE_PARAMETERS[chosen[0]]), sound_metrics
    assert sound_metrics[f"{chosen[0]}_implied_dropout"] > settings.models.clv.guards.min_dropout
    # The selection metric picked the best sound candidate.
    sound_fitted = [c for c in sound_runs if sound_runs[c].data.tags["guarded"] == "false" and c != "naive"]
    best = min(sound_fitted, key=lambda c: sound_runs[c].data.metrics["holdout_mae"])
    assert chosen == [best]


def test_churn_model_that_loses_to_its_recency_baseline_is_not_promoted(spark, settings_for, caplog):
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    # channel_count is 1 for everyone: the trees can only guess the base rate; recency alone separates the label.
    settings = settings_for("models.churn.features=[channel_count]", "models.churn.max_iter=2")
    tracking.configure(settings.mlflow)
    family = churn_model.ChurnFamily(settings)
    name = family.promotion.registered_model
    cutoff = AS_OF - dt.timedelta(days=settings.models.churn.horizon_days)
    rows = []
    for c in range(120):
        # Odd customers keep buying every 20 days up to the as-of date; even ones stopped 60 to 178 days before the
        # cut-off. Both groups started a year before it.
        last = AS_OF if c % 2 else cutoff - dt.timedelta(days=60 + c)
        day = cutoff - dt.timedelta(days=365)
        i = 0
        while day <= last:
            rows.append(order_row(f"o{c}-{i}", f"c{c}", dt.datetime.combine(day, NOON), 50 + c % 7))
            day, i = day + dt.timedelta(days=20), i + 1

    with caplog.at_level("WARNING", logger="segmentation.models.training"):
        outcome = _train(spark, settings, family, rows)

    assert outcome.baseline_metrics["auc"] > outcome.metrics["auc"]
    assert outcome.promotion.champion_version is None  # nothing to beat: without the guard it would be champion
    assert outcome.promotion.guards == ("loses_to_baseline",) and not outcome.promotion.promoted
    client = MlflowClient()
    tags = client.get_run(outcome.run_id).data.tags
    assert (tags["guarded"], tags["promoted"], tags["beats_champion"]) == ("true", "false", "true")
    assert tags["guard.loses_to_baseline"].startswith(f"holdout auc {outcome.metrics['auc']:.4f} vs ")
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(name, tracking.CHAMPION)
    assert client.get_model_version(name, "1").tags["guard_reasons"] == "loses_to_baseline"
    warnings = [r.getMessage() for r in caplog.records if r.name == "segmentation.models.training"]
    assert warnings == [
        f"churn model {name} v1 is registered but NOT made champion: it predicts churn worse than simply ranking"
        f" customers by days since their last order [guard loses_to_baseline: {tags['guard.loses_to_baseline']}]"
    ]

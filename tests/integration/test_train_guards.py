"""Guards keep a bad model from ``@champion``: real Spark, a real MLflow store, small hand-made order histories.

Each test drives one family through :func:`segmentation.models.training.train_and_promote`, the routine the ``train``
job runs per family, and reads the result back through the MLflow client: the run's guard tags, the version's tags
and where the ``champion`` alias points.

- CLV: a history of customers who buy at a constant rate and never stop makes BG/NBD conclude that nobody ever drops
  out. That fit converges, is registered, and is refused although there is no champion to beat (it also forecasts
  the holdout worse than carrying each customer's own past rate forward); a sound history
  (every customer may stop after each purchase, with a chance that differs between customers) then passes every
  guard and becomes the first champion.
- Churn: a label only recency predicts, and a model only allowed a feature that is the same for everyone. It loses
  to its own recency-only baseline and is refused even though there is no champion to beat.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from segmentation.models import churn_model, clv_model, tracking
from segmentation.models.training import train_and_promote
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


def test_bgnbd_that_says_nobody_drops_out_is_registered_but_never_champion(spark, settings_for, caplog):
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    settings = settings_for()
    tracking.configure(settings.mlflow)
    family = clv_model.ClvFamily(settings)
    name = family.promotion.registered_model
    client = MlflowClient()

    with caplog.at_level("WARNING", logger="segmentation.models.training"):
        degenerate = _train(spark, settings, family, _history(400, 1, never_stop=True, prefix="n"))
    # No champion to beat, so without the guards this version would have become champion.
    assert degenerate.version == 1 and degenerate.promotion.champion_version is None
    assert not degenerate.promotion.promoted
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(name, tracking.CHAMPION)
    tags = client.get_run(degenerate.run_id).data.tags
    assert (tags["guarded"], tags["promoted"], tags["beats_champion"]) == ("true", "false", "true")
    assert {"guard.degenerate_dropout", "guard.p_alive_does_not_separate"} <= set(tags), sorted(tags)
    assert "guard.not_converged" not in tags  # the optimiser converged: only the guards see the problem
    assert tags["guard.degenerate_dropout"].startswith("purchase model (BG/NBD): implied drop-out probability")
    version_tags = client.get_model_version(name, "1").tags
    assert (version_tags["guarded"], version_tags["promoted"]) == ("true", "false")
    assert {"degenerate_dropout", "p_alive_does_not_separate"} <= set(version_tags["guard_reasons"].split(","))

    # A sound history: the fit passes every guard and becomes the first champion.
    sound = _train(spark, settings, family, _history(400, 1, never_stop=False, prefix="s"))
    assert (sound.version, sound.promotion.promoted, sound.promotion.guards) == (2, True, ())
    assert str(client.get_model_version_by_alias(name, tracking.CHAMPION).version) == "2"
    assert client.get_run(sound.run_id).data.tags["guarded"] == "false"
    # Against the naive forecast (each customer's own past rate carried forward, judged in the same pass): customers
    # who never stop are what it assumes, and it forecasts their holdout better than the degenerate fit; on the sound
    # history, where customers do stop, the model is far better than it.
    assert degenerate.baseline_metrics["holdout_mae"] < degenerate.metrics["holdout_mae"]
    assert tags["guard.loses_to_baseline"] == (
        f"holdout holdout_mae {degenerate.metrics['holdout_mae']:.4f} vs"
        f" {degenerate.baseline_metrics['holdout_mae']:.4f} for the naive baseline (each customer's own past purchase"
        " rate) (lower is better; allowed shortfall 0)"
    )
    assert sound.metrics["holdout_mae"] < 0.7 * sound.baseline_metrics["holdout_mae"]
    logged = client.get_run(sound.run_id).data.metrics
    assert logged["baseline_holdout_mae"] == pytest.approx(sound.baseline_metrics["holdout_mae"])

    # One warning per guard, naming the version and saying what it means.
    warnings = [r.getMessage() for r in caplog.records if r.name == "segmentation.models.training"]
    assert any(
        f"{name} v1 is registered but NOT made champion: the model says almost no customer ever stops buying" in w
        for w in warnings
    ), warnings
    assert any(
        f"{name} v1 is registered but NOT made champion: it forecasts holdout purchases worse than simply carrying"
        " each customer's own past purchase rate forward [guard loses_to_baseline: holdout holdout_mae" in w
        for w in warnings
    ), warnings
    assert len(warnings) == len(degenerate.promotion.guards)

    # Standard errors: finite for the sound fit; the degenerate fit cannot pin its drop-out parameters down.
    sound_metrics = client.get_run(sound.run_id).data.metrics
    assert all(sound_metrics[f"bgnbd_{p}_se"] > 0 for p in ("r", "alpha", "a", "b")), sound_metrics
    assert sound_metrics["bgnbd_implied_dropout"] > settings.models.clv.guards.min_dropout
    rows = {
        r["parameter"]: r
        for r in mlflow.artifacts.load_dict(f"runs:/{degenerate.run_id}/tables/standard_errors.json")["rows"]
    }
    assert set(rows) == {"bgnbd_r", "bgnbd_alpha", "bgnbd_a", "bgnbd_b", "gg_p", "gg_q", "gg_v"}
    assert rows["bgnbd_a"]["value"] < 1e-3
    assert all(rows[f"bgnbd_{p}"]["standard_error"] is None for p in ("r", "alpha", "a", "b")), rows
    assert all(rows[f"gg_{p}"]["standard_error"] > 0 for p in ("p", "q", "v")), rows  # spend is fitted fine
    assert "bgnbd_a_se" not in client.get_run(degenerate.run_id).data.metrics


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

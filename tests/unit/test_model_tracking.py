"""The registry side of training, on a real SQLite MLflow store: versions, the champion alias, what a run records."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from segmentation.config import MlflowSettings
from segmentation.models import clv, clv_model, tracking
from segmentation.models import clv_training as ct

pytestmark = [pytest.mark.mlflow]

NAME = "segmentation_clv_test"
MODEL = ct.ClvModel(
    clv.BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426), clv.GammaGammaParams(p=6.25, q=3.74, v=15.44), "weeks"
)


def test_artifacts_live_beside_a_sqlite_store(tmp_path):
    settings = MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}", experiment="t")
    assert tracking.artifact_location(settings) == str(tmp_path / "mlartifacts")
    assert tracking.artifact_location(MlflowSettings(tracking_uri="http://mlflow:5000", experiment="t")) is None
    on_s3 = MlflowSettings(tracking_uri="http://mlflow:5000", experiment="t", artifact_location="s3://b/p")
    assert tracking.artifact_location(on_s3) == "s3://b/p"


def test_signature_from_type_and_column_pairs():
    signature = tracking.signature([("long", "frequency"), ("double", "monetary")], [("double", "clv")])
    as_pairs = [(c["type"], c["name"]) for c in signature.inputs.to_dict()]
    assert as_pairs == [("long", "frequency"), ("double", "monetary")]
    assert [(c["type"], c["name"]) for c in signature.outputs.to_dict()] == [("double", "clv")]


def _log(
    family: clv_model.ClvFamily, mae: float, champion: tuple[str, float] | None, guards: dict[str, str] | None = None
) -> tracking.RunRecord:
    fitted = clv_model.ClvFitted(model=MODEL, fit=None)  # log reads the model only
    return tracking.log_training_run(
        run_name="clv test",
        registered_model=NAME,
        params=family.params(fitted),
        metrics={"holdout_mae": mae, "spend_mae": float("nan")},
        inputs={"orders_path": "/lake/orders", "orders_version": 7},
        config={"models": {"clv": {"time_unit": "weeks"}}},
        tables={"holdout_by_frequency": [{"frequency": "0", "customers": 10}]},
        log_model=lambda: family.log(fitted, NAME),
        metric="holdout_mae",
        greater_is_better=False,
        min_improvement=0.0,
        champion=champion,
        guards=guards,
    )


def test_champion_alias_moves_only_on_improvement(tmp_path, settings_for):
    import mlflow

    family = clv_model.ClvFamily(settings_for())
    tracking.configure(MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="t"))
    assert tracking.champion_version(NAME) is None
    assert tracking.load_champion(family, NAME) is None

    first = _log(family, 0.50, None)
    assert (first.promotion.version, first.promotion.promoted) == ("1", True)
    worse = _log(family, 0.60, ("1", 0.50))
    assert (worse.promotion.version, worse.promotion.promoted) == ("2", False)
    assert tracking.champion_version(NAME) == "1"
    better = _log(family, 0.40, ("1", 0.50))
    assert (better.promotion.version, better.promotion.promoted) == ("3", True)
    assert tracking.champion_version(NAME) == "3"

    run = mlflow.get_run(worse.run_id)
    assert run.data.tags["promoted"] == "false" and run.data.tags["previous_champion_version"] == "1"
    assert run.data.metrics == {"holdout_mae": 0.60, "champion_holdout_mae": 0.50}  # NaN metrics are left out
    assert run.data.params["bgnbd_r"] == "0.243" and run.data.params["input_orders_version"] == "7"
    assert yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{worse.run_id}/config/settings.yaml")) == {
        "models": {"clv": {"time_unit": "weeks"}}
    }

    loaded, version = tracking.load_champion(family, NAME)
    assert (loaded, version) == (MODEL, "3")
    pyfunc = mlflow.pyfunc.load_model(tracking.champion_uri(NAME))
    assert pyfunc.metadata.signature == clv_model.SIGNATURE
    out = pyfunc.predict(pd.DataFrame({"frequency": [2], "recency": [30], "T": [38], "monetary": [30.0]}))
    expected = clv.customer_lifetime_value(
        MODEL.bgnbd, MODEL.gamma_gamma, 2, 30, 38, 30.0, 365 / 7, 1.1 ** (7 / 365) - 1, 30 / 7
    )
    assert out["clv"].iloc[0] == pytest.approx(expected, rel=1e-12)


def test_a_guarded_version_is_registered_and_tagged_but_never_takes_the_alias(tmp_path, settings_for):
    import mlflow

    family = clv_model.ClvFamily(settings_for())
    tracking.configure(MlflowSettings(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", experiment="t"))
    first = _log(family, 0.50, None)
    guards = {"degenerate_dropout": "implied drop-out probability 4e-11 < 0.001", "not_converged": "gradient 0.3"}
    guarded = _log(family, 0.10, ("1", 0.50), guards)  # far better on the holdout, and still refused
    assert (guarded.promotion.version, guarded.promotion.promoted) == ("2", False)
    assert guarded.promotion.guards == ("degenerate_dropout", "not_converged") and guarded.promotion.guarded
    assert tracking.champion_version(NAME) == first.promotion.version == "1"

    tags = mlflow.get_run(guarded.run_id).data.tags
    assert {k: v for k, v in tags.items() if k.startswith("guard")} == {
        "guarded": "true",
        "guard.degenerate_dropout": "implied drop-out probability 4e-11 < 0.001",
        "guard.not_converged": "gradient 0.3",
    }
    assert (tags["promoted"], tags["beats_champion"]) == ("false", "true")
    version = mlflow.MlflowClient().get_model_version(NAME, "2")
    assert version.tags == {"promoted": "false", "guarded": "true", "guard_reasons": "degenerate_dropout,not_converged"}
    assert mlflow.get_run(first.run_id).data.tags["guarded"] == "false"

"""MLflow at the edge: one run per trained model, the registry, and the ``champion`` alias.

Training code returns models and metrics; this module is the only one that talks to MLflow. A run records what is
needed to reproduce and judge a model: its parameters, its holdout metrics, the input table with its Delta version,
the whole configuration as an artifact, and the model itself with a signature and an input example, registered under
its configured name. The alias ``champion`` is what the ``score`` job loads; it moves to a new version only when that
version beats the current champion on the configured metric, both measured on the same holdout.

Tracking is local by default (a SQLite file, artifacts in a folder beside it) and never needs a network:
telemetry is switched off before MLflow is imported.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from segmentation.config import MlflowSettings
from segmentation.models.clv_training import ClvModel, Horizon, predict_frame

CHAMPION = "champion"
MODEL_ARTIFACT = "model"
_TIE_TOLERANCE = 1e-9


# ----------------------------------------------------------------------------------------------------------------------
# Set-up
# ----------------------------------------------------------------------------------------------------------------------
def artifact_location(settings: MlflowSettings) -> str | None:
    """Where a new experiment keeps artifacts: configured, or ``mlartifacts`` beside a local SQLite store.

    MLflow's own default is ``./mlruns`` under whatever the working directory happens to be; tying artifacts to the
    tracking file keeps a run and its models together.
    """
    if settings.artifact_location:
        return settings.artifact_location
    prefix = "sqlite:///"
    if settings.tracking_uri.startswith(prefix):
        return str(Path(settings.tracking_uri[len(prefix) :]).resolve().parent / "mlartifacts")
    return None


def configure(settings: MlflowSettings) -> str:
    """Point MLflow at the configured store and experiment (created on first use); returns the experiment id."""
    mlflow.set_tracking_uri(settings.tracking_uri)
    if settings.registry_uri:
        mlflow.set_registry_uri(settings.registry_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(settings.experiment)
    experiment_id = (
        experiment.experiment_id
        if experiment is not None
        else client.create_experiment(settings.experiment, artifact_location=artifact_location(settings))
    )
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


# ----------------------------------------------------------------------------------------------------------------------
# Promotion
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Promotion:
    """The outcome of one challenger-vs-champion comparison, as logged on the challenger's run."""

    registered_model: str
    version: str
    promoted: bool
    metric: str
    challenger_value: float
    champion_version: str | None
    champion_value: float | None


def beats(challenger: float, champion: float | None, greater_is_better: bool, min_improvement: float = 0.0) -> bool:
    """Whether a challenger's metric beats the champion's by more than ``min_improvement``.

    No champion (or one without a usable value) is always beaten; a tie never is, so rerunning the same training on
    the same data does not churn the alias. Differences at the level of floating-point summation noise (relative
    1e-9) count as ties. A challenger without a usable value never wins.
    """
    if champion is None or math.isnan(champion):
        return not math.isnan(challenger)
    if math.isnan(challenger):
        return False
    gain = challenger - champion if greater_is_better else champion - challenger
    return gain > max(min_improvement, _TIE_TOLERANCE * max(1.0, abs(champion)))


def champion_version(name: str) -> str | None:
    """The version the ``champion`` alias points at, or None when the model or the alias does not exist yet."""
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException:
        return None


def champion_uri(name: str) -> str:
    return f"models:/{name}@{CHAMPION}"


# ----------------------------------------------------------------------------------------------------------------------
# CLV: a pyfunc holding the parameters
# ----------------------------------------------------------------------------------------------------------------------
class ClvPyfunc(mlflow.pyfunc.PythonModel):
    """BG/NBD + Gamma-Gamma parameters as an MLflow model.

    ``predict`` takes a pandas frame of ``frequency, recency, T, monetary`` (in the model's time unit) and returns
    ``p_alive, expected_purchases, expected_spend, clv`` with the numpy closed forms: for serving a few customers
    or checking a number. The ``score`` job does not call it: it reads :attr:`model` and evaluates the same closed
    forms as Spark columns on every customer.
    """

    def __init__(self, model: ClvModel, horizon: Horizon) -> None:
        self.model = model
        self.horizon = horizon

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return predict_frame(self.model, self.horizon, model_input)


CLV_SIGNATURE = ModelSignature(
    inputs=Schema(
        [ColSpec("long", "frequency"), ColSpec("long", "recency"), ColSpec("long", "T"), ColSpec("double", "monetary")]
    ),
    outputs=Schema([ColSpec("double", c) for c in ("p_alive", "expected_purchases", "expected_spend", "clv")]),
)
# Illustrative patterns (not customers): a one-time buyer, a regular, a lapsed heavy buyer.
CLV_INPUT_EXAMPLE = pd.DataFrame(
    {"frequency": [0, 3, 12], "recency": [0, 20, 30], "T": [10, 26, 80], "monetary": [0.0, 85.5, 240.0]}
)


def _requirements() -> list[str]:
    """Pinned requirements of the logged models (explicit: inferring them imports and probes every module)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "numpy", "scipy", "pandas", "pyspark")]


def load_clv_champion(name: str) -> tuple[ClvModel, str] | None:
    """The champion CLV parameters and version (a few floats: nothing customer-level), or None without one."""
    version = champion_version(name)
    if version is None:
        return None
    wrapper = mlflow.pyfunc.load_model(champion_uri(name)).unwrap_python_model()
    return wrapper.model, version


# ----------------------------------------------------------------------------------------------------------------------
# Churn: the Spark ML pipeline
# ----------------------------------------------------------------------------------------------------------------------
def churn_signature(feature_columns: list[str]) -> ModelSignature:
    return ModelSignature(
        inputs=Schema([ColSpec("double", c) for c in feature_columns]),
        outputs=Schema([ColSpec("double", "prediction")]),
    )


def load_churn_champion(name: str, dfs_tmpdir: str | None = None) -> tuple[Any, str] | None:
    """The champion Spark ML pipeline model and its version, or None without one."""
    version = champion_version(name)
    if version is None:
        return None
    import mlflow.spark

    return mlflow.spark.load_model(champion_uri(name), dfs_tmpdir=dfs_tmpdir), version


# ----------------------------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunRecord:
    """What a training run leaves behind: its id, the registered version and the promotion decision."""

    run_id: str
    promotion: Promotion


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def log_training_run(
    *,
    run_name: str,
    registered_model: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    inputs: Mapping[str, Any],
    config: Mapping[str, Any],
    tables: Mapping[str, list[dict[str, Any]]],
    log_model: Callable[[], Any],
    metric: str,
    greater_is_better: bool,
    min_improvement: float,
    champion: tuple[str, float] | None,
) -> RunRecord:
    """One MLflow run: params, metrics, inputs, config, tables, the registered model; then maybe move the alias.

    Args:
        run_name: shown in the UI (e.g. ``clv 2026-06-30``).
        registered_model: registry name the model version is created under.
        params: hyperparameters and fitted parameters (logged as params).
        metrics: holdout metrics of the new model (non-finite values are left out).
        inputs: input table paths and Delta versions (logged as params and tags).
        config: the whole configuration, stored as ``config/settings.yaml``.
        tables: small result tables (e.g. actual vs expected by frequency), stored as JSON artifacts.
        log_model: logs the model under ``model`` with ``registered_model_name`` and returns the ModelInfo.
        metric: the promotion metric (must be in ``metrics``).
        greater_is_better: the metric's direction.
        min_improvement: how much better than the champion the new model must be.
        champion: ``(version, value of the metric on this run's holdout)`` of the current champion, or None.
    """
    challenger_value = float(metrics.get(metric, float("nan")))
    champion_value = champion[1] if champion else None
    promoted = beats(challenger_value, champion_value, greater_is_better, min_improvement)
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({**params, **{f"input_{k}": v for k, v in inputs.items()}})
        mlflow.log_metrics(_finite(metrics))
        if champion_value is not None and math.isfinite(champion_value):
            mlflow.log_metric(f"champion_{metric}", champion_value)
        mlflow.set_tags(
            {
                "registered_model": registered_model,
                "promotion_metric": metric,
                "promoted": str(promoted).lower(),
                "previous_champion_version": champion[0] if champion else "",
                **{f"input.{k}": str(v) for k, v in inputs.items()},
            }
        )
        mlflow.log_dict(dict(config), "config/settings.yaml")
        for name, rows in tables.items():
            mlflow.log_dict({"rows": rows}, f"tables/{name}.json")
        info = log_model()
        version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(registered_model, version, "promoted", str(promoted).lower())
    if promoted:
        client.set_registered_model_alias(registered_model, CHAMPION, version)
    promotion = Promotion(
        registered_model=registered_model,
        version=version,
        promoted=promoted,
        metric=metric,
        challenger_value=challenger_value,
        champion_version=champion[0] if champion else None,
        champion_value=champion_value,
    )
    return RunRecord(run.info.run_id, promotion)


def clv_model_logger(model: ClvModel, horizon: Horizon, registered_model: str) -> Callable[[], Any]:
    """A ``log_model`` callback for :func:`log_training_run` that stores the CLV pyfunc."""

    def log() -> Any:
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=ClvPyfunc(model, horizon),
            signature=CLV_SIGNATURE,
            input_example=CLV_INPUT_EXAMPLE,
            registered_model_name=registered_model,
            pip_requirements=_requirements(),
        )

    return log


def churn_model_logger(
    model: Any, feature_columns: list[str], input_example: pd.DataFrame, registered_model: str, dfs_tmpdir: str | None
) -> Callable[[], Any]:
    """A ``log_model`` callback for :func:`log_training_run` that stores the Spark ML pipeline."""

    def log() -> Any:
        import mlflow.spark

        return mlflow.spark.log_model(
            model,
            MODEL_ARTIFACT,
            signature=churn_signature(feature_columns),
            input_example=input_example,
            registered_model_name=registered_model,
            pip_requirements=_requirements(),
            dfs_tmpdir=dfs_tmpdir,
        )

    return log

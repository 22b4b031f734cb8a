"""MLflow at the edge: one run per trained model, the registry, and the ``champion`` alias.

Training code returns models and metrics; this module is the only one that writes to MLflow. A run records what is
needed to reproduce and judge a model: its parameters, its holdout metrics, the input table with its Delta version,
the whole configuration as an artifact, and the model itself with a signature and an input example, registered under
its configured name. The alias ``champion`` is what the ``score`` job loads; it moves to a new version only when that
version beats the current champion on the configured metric, both measured on the same holdout, and no guard fired
(a guarded version is registered and tagged with its reasons, never promoted).

Nothing here knows a model family: one function logs a training run (:func:`log_training_run`), one loads a champion
(:func:`load_champion`), and helpers store and load a ``pyfunc`` or a Spark ML model. Each family's module
(:mod:`.clv_model`, :mod:`.churn_model`) decides which of them its model is, with which signature.

Tracking is local by default (a SQLite file, artifacts in a folder beside it) and never needs a network:
telemetry is switched off before MLflow is imported.
What the registry holds, read for the report, is :mod:`segmentation.models.registry_status`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from segmentation.config import MlflowSettings

if TYPE_CHECKING:
    from segmentation.models.base import Candidate, ModelFamily

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
    store = sqlite_file(settings.tracking_uri)
    return None if store is None else str(store.resolve().parent / "mlartifacts")


def sqlite_file(uri: str) -> Path | None:
    """The file of a local SQLite tracking URI (``sqlite:///mlflow.db``); None for any other store."""
    prefix = "sqlite:///"
    return Path(uri[len(prefix) :]) if uri.startswith(prefix) else None


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
    guards: tuple[str, ...] = ()  # reasons the version was refused whatever the comparison said (empty: none)

    @property
    def guarded(self) -> bool:
        return bool(self.guards)


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
# Models: what the families store and load (family-specific choices live in the family's module)
# ----------------------------------------------------------------------------------------------------------------------
class FramePredictor(Protocol):
    """A plain model object with a pandas-in, pandas-out ``predict``: what :func:`log_python_model` stores."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame: ...


class PythonModelAdapter(mlflow.pyfunc.PythonModel):
    """Any :class:`FramePredictor` as an MLflow ``pyfunc``, so the model object itself never imports MLflow."""

    def __init__(self, model: FramePredictor) -> None:
        self.model = model

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return self.model.predict(model_input)


# CLV versions logged before the model families (fb2c61c and earlier) pickled this class holding the ClvModel as
# ``model``: the alias lets them load, so an existing champion keeps being compared and scored after an upgrade.
ClvPyfunc = PythonModelAdapter


def signature(inputs: Sequence[tuple[str, str]], outputs: Sequence[tuple[str, str]]) -> ModelSignature:
    """A model signature from ``(type, column)`` pairs, e.g. ``[("long", "frequency"), ("double", "monetary")]``."""
    return ModelSignature(
        inputs=Schema([ColSpec(t, c) for t, c in inputs]), outputs=Schema([ColSpec(t, c) for t, c in outputs])
    )


def _requirements() -> list[str]:
    """Pinned requirements of the logged models (explicit: inferring them imports and probes every module)."""
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("mlflow", "numpy", "scipy", "pandas", "pyspark")]


def log_python_model(
    model: FramePredictor, *, signature: ModelSignature, input_example: pd.DataFrame, registered_model: str
) -> Any:
    """Log ``model`` as a ``pyfunc`` under the active run and register it; returns the ModelInfo."""
    return mlflow.pyfunc.log_model(
        name=MODEL_ARTIFACT,
        python_model=PythonModelAdapter(model),
        signature=signature,
        input_example=input_example,
        registered_model_name=registered_model,
        pip_requirements=_requirements(),
    )


def load_python_model(uri: str) -> Any:
    """The model object :func:`log_python_model` stored at ``uri``."""
    return mlflow.pyfunc.load_model(uri).unwrap_python_model().model


def log_spark_model(
    model: Any,
    *,
    signature: ModelSignature,
    input_example: pd.DataFrame,
    registered_model: str,
    dfs_tmpdir: str | None = None,
) -> Any:
    """Log a Spark ML ``PipelineModel`` under the active run and register it; returns the ModelInfo."""
    import mlflow.spark

    return mlflow.spark.log_model(
        model,
        MODEL_ARTIFACT,
        signature=signature,
        input_example=input_example,
        registered_model_name=registered_model,
        pip_requirements=_requirements(),
        dfs_tmpdir=dfs_tmpdir,
    )


def load_spark_model(uri: str, dfs_tmpdir: str | None = None) -> Any:
    """The Spark ML ``PipelineModel`` stored at ``uri``."""
    import mlflow.spark

    return mlflow.spark.load_model(uri, dfs_tmpdir=dfs_tmpdir)


def load_champion(family: ModelFamily, name: str) -> tuple[Any, str] | None:
    """The ``champion`` model of registered model ``name`` loaded by its family, and its version; None without one.

    The version the alias points at is resolved once and loaded by number, so a concurrent promotion cannot hand
    back one version's model under another's number.
    """
    version = champion_version(name)
    if version is None:
        return None
    return family.load(f"models:/{name}/{version}"), version


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
    guards: Mapping[str, str] | None = None,
    images: Mapping[str, Any] | None = None,
    candidates: Sequence[Candidate] = (),
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
        guards: ``{reason: detail}`` of every guard that fired. Each becomes a tag ``guard.<reason>``; any one of
            them keeps the version from ``champion`` even when it beats the champion (tag ``beats_champion``).
        images: matplotlib figures by name, stored as ``images/<name>.png``.
        candidates: the candidates the registered model was chosen from: each a nested run (``<run_name> <name>``,
            its params, metrics, guard tags and tag ``selected``), and together ``tables/candidates.json``.
    """
    guards = dict(guards or {})
    challenger_value = float(metrics.get(metric, float("nan")))
    champion_value = champion[1] if champion else None
    wins = beats(challenger_value, champion_value, greater_is_better, min_improvement)
    promoted = wins and not guards
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
                "beats_champion": str(wins).lower(),
                "guarded": str(bool(guards)).lower(),
                **{f"guard.{reason}": detail for reason, detail in guards.items()},
                "previous_champion_version": champion[0] if champion else "",
                **{f"input.{k}": str(v) for k, v in inputs.items()},
            }
        )
        mlflow.log_dict(dict(config), "config/settings.yaml")
        for name, rows in tables.items():
            mlflow.log_dict({"rows": rows}, f"tables/{name}.json")
        for name, figure in (images or {}).items():
            mlflow.log_figure(figure, f"images/{name}.png")
        if candidates:
            _log_candidates(run_name, candidates)
        info = log_model()
        version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(registered_model, version, "promoted", str(promoted).lower())
    client.set_model_version_tag(registered_model, version, "guarded", str(bool(guards)).lower())
    if guards:
        client.set_model_version_tag(registered_model, version, "guard_reasons", ",".join(guards))
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
        guards=tuple(guards),
    )
    return RunRecord(run.info.run_id, promotion)


def _log_candidates(run_name: str, candidates: Sequence[Candidate]) -> None:
    """One nested run per candidate under the active run, and the comparison table on the parent."""
    for c in candidates:
        with mlflow.start_run(run_name=f"{run_name} {c.name}", nested=True):
            mlflow.log_params(dict(c.params))
            mlflow.log_metrics(_finite(c.metrics))
            mlflow.set_tags(
                {
                    "candidate": c.name,
                    "selected": str(c.selected).lower(),
                    "guarded": str(bool(c.guards)).lower(),
                    **{f"guard.{reason}": detail for reason, detail in c.guards.items()},
                }
            )
    rows = [
        {
            "candidate": c.name,
            "selected": c.selected,
            "guards": ",".join(c.guards),
            **{k: v for k, v in c.metrics.items() if v is None or math.isfinite(float(v))},
        }
        for c in candidates
    ]
    mlflow.log_dict({"rows": rows}, "tables/candidates.json")
    mlflow.set_tag("selected_candidate", next((c.name for c in candidates if c.selected), ""))

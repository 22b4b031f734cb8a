"""The model interface, after pymc-marketing's ``CLVModel``: one class per model family, one shape for all of them.

A family knows everything between the valid orders and a registered model version for one kind of model:

- ``prepare``: the Spark frames it trains and evaluates on (per-customer summaries, features at a cut-off, ...);
- ``fit``: a model from those frames, with what the fit says about itself (diagnostics, a baseline's metrics, guard
  findings);
- ``select``: the holdout evaluation of the fit; a family that fits several candidates (CLV's purchase models) judges
  each here and returns the one to register, with a record per candidate (nested MLflow runs);
- ``guard``: why a fit must not become champion, from the fit and its holdout metrics (:mod:`.guarding`);
- ``evaluate``: the holdout metrics of *any* model of the family on those frames, the challenger's and the current
  champion's alike, so both are judged on the same customers;
- ``params`` / ``run_params``: the fitted parameters and the settings that produced them, as the run records them;
- ``score_columns``: the columns the family adds to ``customer_segments``, as Spark columns joined on the customer;
- ``log`` / ``load``: the model in MLflow with a signature, through :mod:`segmentation.models.tracking`.

Promotion is data: the family's configuration section names the registered model, the promotion metric and the
minimum improvement; the family knows which way each of its metrics points. :mod:`.training` drives a family from
frames to a registered version, :mod:`.registry` lists the families; adding one is a module and a registry entry.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from pyspark.sql import DataFrame

from segmentation.config import Settings
from segmentation.models import guarding
from segmentation.models.guarding import GuardFinding

ModelT = TypeVar("ModelT")


class Frames(Protocol):
    """What ``prepare`` returns: the frames a family trains and evaluates on, cached until ``release``."""

    @property
    def window(self) -> str:
        """The data the frames cover, for people (``calibration up to 2026-04-01``)."""
        ...

    def release(self) -> None: ...


FramesT = TypeVar("FramesT", bound=Frames)


class FamilySettings(Protocol):
    """The keys every family's configuration section has (``models.<family>`` in ``conf/base.yaml``)."""

    registered_model: str
    promotion_metric: str
    promotion_min_improvement: float
    guards: Any  # a family with a BASELINE has guards.max_loss_to_baseline


@dataclass(frozen=True)
class PromotionSettings:
    """When a new version takes the ``champion`` alias: it beats the champion on ``metric`` by ``min_improvement``."""

    registered_model: str
    metric: str
    min_improvement: float
    greater_is_better: bool


@dataclass(frozen=True, kw_only=True)
class Fitted(Generic[ModelT]):
    """A fitted model and what the fit says about itself; families subclass it to carry what their ``log`` needs.

    Attributes:
        model: what ``evaluate``, ``score_columns`` and ``log`` take.
        metrics: fit-side metrics logged beside the holdout metrics (log-likelihoods, ``baseline_*``, counts).
        baseline_metrics: holdout metrics of the baseline the family trains alongside ({} without one), shown next to
            the model's.
        details: counts the ``fit`` stage reports (customers, patterns, training rows).
        findings: what the fit's own guards refused (:mod:`.guarding`); the holdout ones come from ``guard``.
        tables: small fit-side tables stored beside the run (e.g. parameter standard errors).
    """

    model: ModelT
    metrics: Mapping[str, float] = field(default_factory=dict)
    baseline_metrics: Mapping[str, float] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    findings: tuple[GuardFinding, ...] = ()
    tables: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)


FittedT = TypeVar("FittedT", bound=Fitted)


@dataclass(frozen=True)
class Evaluation:
    """Holdout metrics of one model, small result tables stored beside the run (``tables/<name>.json``), and the same
    metrics of a baseline judged in the same pass (families whose baseline needs no fit: CLV's naive rate)."""

    metrics: dict[str, float]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    baseline_metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """One candidate a family judged before choosing, as its nested MLflow run records it.

    Attributes:
        name: the candidate (``bgnbd``, ``mbgnbd``, ``naive``).
        params: its fitted parameters.
        metrics: fit-side (log-likelihood, AIC, BIC) and holdout metrics.
        guards: ``{reason: detail}`` of every guard that refused it (empty: none).
        selected: whether it is the one registered.
        selection_metric: the metric the choice was made on (``models.<family>.selection_metric``).
    """

    name: str
    params: Mapping[str, float]
    metrics: Mapping[str, float]
    guards: Mapping[str, str]
    selected: bool
    selection_metric: str


@dataclass(frozen=True)
class Selection(Generic[ModelT]):
    """What ``select`` returns: the fit to register, its holdout evaluation and the candidates it was chosen from."""

    fitted: Fitted[ModelT]
    evaluation: Evaluation
    candidates: tuple[Candidate, ...] = ()


def baseline_metrics(fitted: Fitted, evaluation: Evaluation) -> dict[str, float]:
    """The baseline's holdout metrics: judged in the evaluation's pass (CLV) or trained beside the model (churn)."""
    return {**evaluation.baseline_metrics, **fitted.baseline_metrics}


@dataclass(frozen=True)
class ScoringInputs:
    """What the ``score`` job gives every family: the valid orders and the ``customer_features`` of the date, and
    ``persist``, which keeps a frame the family reads more than once until the job ends (the job's
    :meth:`.runs.JobRun.persist`; by default it keeps nothing)."""

    orders_df: DataFrame
    features_df: DataFrame
    as_of: dt.date
    persist: Callable[[DataFrame], DataFrame] = lambda df: df


class CannotScoreError(Exception):
    """A model of the family cannot read these frames (e.g. a champion trained on a feature that no longer exists).

    A champion that cannot score today's data has no value here: it loses the comparison.
    """


class ModelFamily(ABC, Generic[FramesT, FittedT, ModelT]):
    """One model family. Subclasses set the class attributes and implement the abstract methods.

    Attributes:
        name: registry key, MLflow run name prefix and stage name (``clv``).
        GREATER_IS_BETTER: direction of every metric the configuration may name as ``promotion_metric``.
        SCORE_COLUMNS: the ``customer_segments`` columns ``score_columns`` fills, the headline first (a customer
            counts as scored when it is filled; the others may be null by design, e.g. CLV's p_alive under the naive
            rate).
        KEY_METRICS: the holdout metrics ``segmentation train`` prints.
        BASELINE: the baseline the model must not lose to, in words (None: no baseline guard).
    """

    name: ClassVar[str]
    GREATER_IS_BETTER: ClassVar[Mapping[str, bool]]
    SCORE_COLUMNS: ClassVar[tuple[str, ...]]
    KEY_METRICS: ClassVar[tuple[str, ...]]
    BASELINE: ClassVar[str | None] = None

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    @abstractmethod
    def config(self) -> FamilySettings:
        """The family's configuration section."""

    @property
    def promotion(self) -> PromotionSettings:
        """The promotion rule from the configuration, with the direction of its metric."""
        cfg = self.config
        return PromotionSettings(
            registered_model=cfg.registered_model,
            metric=cfg.promotion_metric,
            min_improvement=cfg.promotion_min_improvement,
            greater_is_better=self.GREATER_IS_BETTER[cfg.promotion_metric],
        )

    @abstractmethod
    def prepare(self, orders_df: DataFrame, as_of: dt.date) -> FramesT:
        """The frames to train and evaluate on, from the valid orders up to ``as_of`` (cached: ``release`` them)."""

    @abstractmethod
    def fit(self, frames: FramesT) -> FittedT:
        """Fit a model on the training part of ``frames``."""

    @abstractmethod
    def evaluate(self, model: ModelT, frames: FramesT) -> Evaluation:
        """Holdout metrics of ``model`` on ``frames``; :class:`CannotScoreError` when the model cannot read them."""

    def select(self, fitted: FittedT, frames: FramesT) -> Selection[ModelT]:
        """The fit to register and its holdout evaluation; one candidate unless the family fits several."""
        return Selection(fitted, self.evaluate(fitted.model, frames))

    @abstractmethod
    def params(self, fitted: FittedT) -> dict[str, float]:
        """The fitted parameters worth reading ({} when the model has no handful of them, e.g. boosted trees)."""

    def images(self, fitted: FittedT, evaluation: Evaluation) -> dict[str, Any]:
        """Diagnostic pictures of the holdout (matplotlib figures by name), logged as ``images/<name>.png``."""
        return {}

    def guard(self, fitted: FittedT, evaluation: Evaluation) -> list[GuardFinding]:
        """Why this fit must not become champion (empty: nothing against it): the fit's findings, and for a family
        with a ``BASELINE``, ``loses_to_baseline`` when the model trails it on the promotion metric by more than
        ``models.<family>.guards.max_loss_to_baseline``."""
        findings = list(fitted.findings)
        if self.BASELINE is None:
            return findings
        metric = self.config.promotion_metric
        lost = guarding.loses_to_baseline(
            metric,
            float(evaluation.metrics.get(metric, float("nan"))),
            float(baseline_metrics(fitted, evaluation).get(metric, float("nan"))),
            self.GREATER_IS_BETTER[metric],
            self.config.guards.max_loss_to_baseline,
            self.BASELINE,
        )
        return [*findings, *([lost] if lost else [])]

    def run_params(self, fitted: FittedT, frames: FramesT) -> dict[str, Any]:
        """Settings that produced the fit (windows, hyperparameters, convergence), logged as run params."""
        return {}

    @abstractmethod
    def score_columns(self, model: ModelT, inputs: ScoringInputs) -> DataFrame:
        """``customer_id`` and the ``SCORE_COLUMNS`` for every customer the model scores, as Spark expressions."""

    @abstractmethod
    def log(self, fitted: FittedT, registered_model: str) -> Any:
        """Log the model (with signature and input example) under the active run as a version of ``registered_model``.

        Returns MLflow's ``ModelInfo`` (``registered_model_version`` is the new version).
        """

    @abstractmethod
    def load(self, uri: str) -> ModelT:
        """The model stored at an MLflow model URI (``models:/<name>/<version>``)."""

"""One routine from a family's frames to a registered version: fit, evaluate, judge the champion, log, promote.

Every family goes through the same steps, each a named stage of the caller's run: fit on the training part of the
frames, evaluate on the holdout, run the family's guards (:mod:`.guarding`), re-evaluate the current ``@champion`` on
the *same* holdout (a champion that cannot score today's data loses), log one MLflow run (params, metrics, inputs,
configuration, tables, guard tags, the model with its signature), register the version and move ``@champion`` only
when no guard fired and the new version beats the champion by the configured margin. Every guard that fired is a
WARNING line naming the version and the reason in words. MLflow stays behind :mod:`.tracking`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from segmentation.models import guarding, tracking
from segmentation.models.base import (
    Candidate,
    CannotScoreError,
    Frames,
    ModelFamily,
    PromotionSettings,
    baseline_metrics,
)

log = logging.getLogger(__name__)

Stage = Callable[[str], contextlib.AbstractContextManager[dict]]
"""``JobRun.stage``: a context manager per named step that times it and takes the counts it reports."""


@dataclass(frozen=True)
class TrainOutcome:
    """What one family's training left behind, for the job's result and the CLI.

    Attributes:
        name: the family.
        window: the data it was trained on (``calibration up to 2026-04-01``).
        run_id: the MLflow run.
        promotion: the registered version and the verdict against the champion.
        params: fitted parameters ({} for models without a handful of them).
        metrics: everything the run logged as metrics (holdout metrics and fit-side ones).
        key_metrics: the family's headline holdout metrics.
        baseline_metrics: the same holdout metrics of the family's baseline ({} without one).
        candidates: the candidates the version was chosen from (empty: the family fits one model).
    """

    name: str
    window: str
    run_id: str
    promotion: tracking.Promotion
    params: dict[str, float]
    metrics: dict[str, float]
    key_metrics: tuple[str, ...]
    baseline_metrics: dict[str, float]
    candidates: tuple[Candidate, ...] = ()

    @property
    def registered_model(self) -> str:
        return self.promotion.registered_model

    @property
    def version(self) -> int:
        return int(self.promotion.version)


def _verdict(candidate: Candidate) -> str:
    return "selected" if candidate.selected else "guarded" if candidate.guards else "not selected"


def champion_score(
    stage: Stage, family: ModelFamily, frames: Frames, promotion: PromotionSettings
) -> tuple[str, float] | None:
    """``(version, promotion metric on these frames)`` of the current champion; None without one.

    A champion that cannot score the frames gets NaN, which any usable challenger beats.
    """
    champion = tracking.load_champion(family, promotion.registered_model)
    if champion is None:
        return None
    model, version = champion
    with stage(f"evaluate {family.name} champion on the same holdout"):
        try:
            return version, family.evaluate(model, frames).metrics[promotion.metric]
        except CannotScoreError as exc:
            log.warning("%s champion v%s cannot score the current data: %s", family.name, version, exc)
            return version, math.nan


def train_and_promote(
    stage: Stage,
    family: ModelFamily,
    frames: Frames,
    promotion: PromotionSettings,
    *,
    as_of: dt.date,
    inputs: Mapping[str, Any],
    config: Mapping[str, Any],
) -> TrainOutcome:
    """Fit ``family`` on ``frames``, log and register the version, and move ``@champion`` if it wins.

    Args:
        stage: names and times each step (``run.stage``).
        family: the model family.
        frames: ``family.prepare(...)``; released here once the Spark work is done.
        promotion: registered model, promotion metric and margin (``family.promotion`` from the configuration).
        as_of: the run's as-of date (in the MLflow run name).
        inputs: input table paths and Delta versions, logged as params and tags.
        config: the whole configuration, stored with the run.
    """
    name = family.name
    try:
        with stage(f"fit {name}") as info:
            fitted = family.fit(frames)
            info.update(fitted.details)
        with stage(f"evaluate {name} holdout") as info:
            selection = family.select(fitted, frames)
            fitted, evaluation = selection.fitted, selection.evaluation
            info.update({c.name: _verdict(c) for c in selection.candidates})
        findings = family.guard(fitted, evaluation)
        images = family.images(fitted, evaluation)
        champion = champion_score(stage, family, frames, promotion)
        params = family.params(fitted)
        run_params = family.run_params(fitted, frames)
    finally:
        frames.release()
    baselines = baseline_metrics(fitted, evaluation)
    metrics = {**evaluation.metrics, **{f"baseline_{k}": v for k, v in evaluation.baseline_metrics.items()}}
    metrics.update(fitted.metrics)
    with stage(f"log {name} run") as info:
        record = tracking.log_training_run(
            run_name=f"{name} {as_of}",
            registered_model=promotion.registered_model,
            params={**params, **run_params},
            metrics=metrics,
            inputs=inputs,
            config=config,
            tables={**evaluation.tables, **fitted.tables},
            images=images,
            log_model=lambda: family.log(fitted, promotion.registered_model),
            metric=promotion.metric,
            greater_is_better=promotion.greater_is_better,
            min_improvement=promotion.min_improvement,
            champion=champion,
            guards=guarding.by_reason(findings),
            candidates=selection.candidates,
        )
        info.update({"version": record.promotion.version, "promoted": str(record.promotion.promoted).lower()})
    for candidate in selection.candidates:
        for reason, detail in {} if candidate.selected else candidate.guards.items():
            log.warning(guarding.candidate_message(name, candidate.name, reason, detail))
    for finding in findings:
        log.warning(guarding.refusal_message(name, promotion.registered_model, record.promotion.version, finding))
    return TrainOutcome(
        name=name,
        window=frames.window,
        run_id=record.run_id,
        promotion=record.promotion,
        params=params,
        metrics=metrics,
        key_metrics=family.KEY_METRICS,
        baseline_metrics=baselines,
        candidates=selection.candidates,
    )

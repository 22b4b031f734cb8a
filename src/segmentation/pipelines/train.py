"""``train``: valid orders -> one MLflow run and registered version per model family, in registry order.

Each family goes through :func:`segmentation.models.training.train_and_promote`: the alias ``champion`` moves to a new
version only when it beats the current champion re-evaluated on the same holdout. The manifest row lists the
registered model versions (``model.<registered model>``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from pyspark.sql import SparkSession

from segmentation import io
from segmentation.config import Settings
from segmentation.models.training import TrainOutcome
from segmentation.pipelines import common
from segmentation.runs import JobRun, StageListener


@dataclass(frozen=True)
class TrainResult:
    as_of: dt.date
    orders_version: int | None
    outcomes: list[TrainOutcome]  # one per model family, in registry order

    @property
    def promotions(self) -> list:
        """``tracking.Promotion`` of every family: version, verdict and the champion it was compared with."""
        return [o.promotion for o in self.outcomes]

    def outcome(self, name: str) -> TrainOutcome:
        return next(o for o in self.outcomes if o.name == name)


def run_train(
    spark: SparkSession, settings: Settings, as_of: dt.date, listeners: Iterable[StageListener] = ()
) -> TrainResult:
    """Orders -> every registered model family, each one MLflow run and a registered version."""
    from segmentation.models import registry, tracking
    from segmentation.models.training import train_and_promote

    tracking.configure(settings.mlflow)
    with JobRun(spark, settings, "train", as_of, listeners) as run:
        valid_df, orders_version = common.valid_orders(run)
        run.begin({"orders": orders_version})
        inputs = {"orders_path": io.qualify(settings.inputs.orders.path), "orders_version": orders_version}
        config = settings.model_dump(mode="json")
        outcomes = []
        for family in registry.families(settings):
            frames = family.prepare(valid_df, as_of)
            outcome = train_and_promote(
                run.stage, family, frames, family.promotion, as_of=as_of, inputs=inputs, config=config
            )
            run.wrote(f"model.{outcome.registered_model}", outcome.version)
            outcomes.append(outcome)
    return TrainResult(as_of, orders_version, outcomes)

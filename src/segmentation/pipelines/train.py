"""``train``: valid orders -> CLV and churn models, each an MLflow run and a registered version.

The alias ``champion`` moves to a new version only when it beats the current champion re-evaluated on the same
holdout. The manifest row lists the registered model versions (``model.<name>``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from segmentation import io
from segmentation.config import Settings
from segmentation.pipelines import common
from segmentation.runs import JobRun, StageListener

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    as_of: dt.date
    orders_version: int | None
    calibration_end: dt.date
    churn_cutoff: dt.date
    clv_metrics: dict[str, float]
    clv_params: dict[str, float]
    churn_metrics: dict[str, float]
    churn_baseline_metrics: dict[str, float]
    clv_run_id: str
    churn_run_id: str
    promotions: list  # tracking.Promotion, one per model


def run_train(
    spark: SparkSession, settings: Settings, as_of: dt.date, listeners: Iterable[StageListener] = ()
) -> TrainResult:
    """Orders -> CLV and churn models, each one MLflow run and a registered version; ``champion`` moves on gains."""
    from segmentation.models import tracking

    tracking.configure(settings.mlflow)
    with JobRun(spark, settings, "train", as_of, listeners) as run:
        valid, orders_version = common.valid_orders(run)
        run.begin({"orders": orders_version})
        inputs = {"orders_path": io.qualify(settings.inputs.orders.path), "orders_version": orders_version}
        config = settings.model_dump(mode="json")
        clv_out = _train_clv(run, valid, inputs, config)
        churn_out = _train_churn(run, valid, inputs, config)
        for promotion in (clv_out["record"].promotion, churn_out["record"].promotion):
            run.wrote(f"model.{promotion.registered_model}", int(promotion.version))
    return TrainResult(
        as_of=as_of,
        orders_version=orders_version,
        calibration_end=clv_out["calibration_end"],
        churn_cutoff=churn_out["cutoff"],
        clv_metrics=clv_out["metrics"],
        clv_params=clv_out["params"],
        churn_metrics=churn_out["metrics"],
        churn_baseline_metrics=churn_out["baseline_metrics"],
        clv_run_id=clv_out["record"].run_id,
        churn_run_id=churn_out["record"].run_id,
        promotions=[clv_out["record"].promotion, churn_out["record"].promotion],
    )


def _train_clv(run: JobRun, valid: DataFrame, inputs: dict, config: dict) -> dict:
    settings, as_of = run.settings, run.as_of
    from segmentation.models import clv_training as ct
    from segmentation.models import tracking

    cfg, sale = settings.models.clv, settings.quality.sale_status
    end = ct.calibration_end(as_of, cfg)

    def split(time_unit: str) -> tuple[DataFrame, DataFrame, float]:
        summary_df = ct.customer_summary(valid, end, time_unit, sale).persist(StorageLevel.MEMORY_AND_DISK)
        actuals_df = ct.holdout_actuals(valid, end, as_of, time_unit, sale)
        return summary_df, actuals_df, (as_of - end).days / ct.DAYS_PER_PERIOD[time_unit]

    summary_df, actuals_df, holdout_periods = split(cfg.time_unit)
    try:
        with run.stage("fit clv") as info:
            fitted = ct.fit(summary_df, cfg)
            info.update({"customers": fitted.customers, "bgnbd_patterns": fitted.bgnbd_patterns})
        model = ct.ClvModel(fitted.bgnbd.params, fitted.gamma_gamma.params, cfg.time_unit)
        if not (fitted.bgnbd.diagnostics.converged and fitted.gamma_gamma.diagnostics.converged):
            log.warning("clv fit did not converge: %s / %s", fitted.bgnbd.diagnostics, fitted.gamma_gamma.diagnostics)
        with run.stage("evaluate clv holdout"):
            evaluation = ct.evaluate_holdout(
                summary_df, actuals_df, model.bgnbd, model.gamma_gamma, holdout_periods, cfg.frequency_table_max
            )
        champion_score = None
        champion = tracking.load_clv_champion(cfg.registered_model)
        if champion is not None:
            with run.stage("evaluate clv champion on the same holdout"):
                champ_model, champ_version = champion
                if champ_model.time_unit == cfg.time_unit:
                    champ_eval = ct.evaluate_holdout(
                        summary_df, actuals_df, champ_model.bgnbd, champ_model.gamma_gamma, holdout_periods
                    )
                else:
                    c_summary_df, c_actuals_df, c_periods = split(champ_model.time_unit)
                    champ_eval = ct.evaluate_holdout(
                        c_summary_df, c_actuals_df, champ_model.bgnbd, champ_model.gamma_gamma, c_periods
                    )
                    c_summary_df.unpersist()
                champion_score = (champ_version, champ_eval.metrics[cfg.promotion_metric])
    finally:
        summary_df.unpersist()
    params = model.params()
    diagnostics = {"bgnbd": fitted.bgnbd.diagnostics, "gg": fitted.gamma_gamma.diagnostics}
    metrics = {
        **evaluation.metrics,
        **{f"{k}_log_likelihood": d.log_likelihood for k, d in diagnostics.items()},
        "bgnbd_patterns": float(fitted.bgnbd_patterns),
        "gg_patterns": float(fitted.gamma_gamma_patterns),
        "repeat_customers": float(fitted.repeat_customers),
    }
    horizon = ct.Horizon.from_settings(cfg, cfg.time_unit)
    with run.stage("log clv run") as info:
        record = tracking.log_training_run(
            run_name=f"clv {as_of}",
            registered_model=cfg.registered_model,
            params={
                **params,
                "time_unit": cfg.time_unit,
                "as_of": str(as_of),
                "calibration_end": str(end),
                "holdout_days": (as_of - end).days,
                "horizon_days": cfg.horizon_days,
                "annual_discount_rate": cfg.annual_discount_rate,
                "cash_flow_step_days": cfg.cash_flow_step_days,
                "monetary_significant_digits": cfg.monetary_significant_digits,
                **{f"{k}_converged": d.converged for k, d in diagnostics.items()},
            },
            metrics=metrics,
            inputs=inputs,
            config=config,
            tables={"holdout_by_frequency": evaluation.frequency_table},
            log_model=tracking.clv_model_logger(model, horizon, cfg.registered_model),
            metric=cfg.promotion_metric,
            greater_is_better=ct.GREATER_IS_BETTER[cfg.promotion_metric],
            min_improvement=cfg.promotion_min_improvement,
            champion=champion_score,
        )
        info.update({"version": record.promotion.version, "promoted": str(record.promotion.promoted).lower()})
    return {"calibration_end": end, "metrics": metrics, "params": params, "record": record}


def _train_churn(run: JobRun, valid: DataFrame, inputs: dict, config: dict) -> dict:
    settings, as_of = run.settings, run.as_of
    from pyspark.errors import AnalysisException

    from segmentation.models import churn, tracking

    cfg = settings.models.churn
    cutoff = churn.default_cutoff(as_of, cfg)
    labelled_df = churn.labelled_features(
        valid, cutoff, cfg.horizon_days, settings.features, settings.quality, cfg.holdout_share
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with run.stage("train churn") as info:
            training = churn.train_churn(labelled_df, cfg)
            info.update({"train": training.train_customers, "holdout": training.holdout_customers})
        champion_score = None
        champion = tracking.load_churn_champion(cfg.registered_model, settings.mlflow.dfs_tmpdir)
        if champion is not None:
            with run.stage("evaluate churn champion on the same holdout"):
                champ_model, champ_version = champion
                holdout_df = labelled_df.where(F.col("is_holdout"))
                try:
                    champ_metrics = churn.evaluate(
                        churn.with_churn_probability(champ_model, holdout_df), cfg.quantile_relative_error
                    )
                    champion_score = (champ_version, champ_metrics[cfg.promotion_metric])
                except AnalysisException as exc:
                    # A champion that cannot read today's features cannot score them either: it has no value here.
                    log.warning("churn champion v%s cannot score the current features: %s", champ_version, exc)
                    champion_score = (champ_version, float("nan"))
        example = churn.input_example(labelled_df, cfg)
    finally:
        labelled_df.unpersist()
    metrics = {
        **training.metrics,
        **{f"baseline_{k}": v for k, v in training.baseline_metrics.items()},
        "train_customers": float(training.train_customers),
        "holdout_customers": float(training.holdout_customers),
    }
    with run.stage("log churn run") as info:
        record = tracking.log_training_run(
            run_name=f"churn {as_of}",
            registered_model=cfg.registered_model,
            params={
                "as_of": str(as_of),
                "cutoff": str(cutoff),
                "horizon_days": cfg.horizon_days,
                "holdout_share": cfg.holdout_share,
                "features": ",".join(cfg.features),
                "null_fill": cfg.null_fill,
                "max_iter": cfg.max_iter,
                "max_depth": cfg.max_depth,
                "step_size": cfg.step_size,
                "seed": cfg.seed,
                "baseline": "logistic regression on " + ",".join(churn.BASELINE_FEATURES),
            },
            metrics=metrics,
            inputs=inputs,
            config=config,
            tables={},
            log_model=tracking.churn_model_logger(
                training.model, list(cfg.features), example, cfg.registered_model, settings.mlflow.dfs_tmpdir
            ),
            metric=cfg.promotion_metric,
            greater_is_better=churn.GREATER_IS_BETTER[cfg.promotion_metric],
            min_improvement=cfg.promotion_min_improvement,
            champion=champion_score,
        )
        info.update({"version": record.promotion.version, "promoted": str(record.promotion.promoted).lower()})
    return {
        "cutoff": cutoff,
        "metrics": training.metrics,
        "baseline_metrics": training.baseline_metrics,
        "record": record,
    }

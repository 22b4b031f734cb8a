"""``evaluate``: audiences of the date + campaign responses -> uplift per campaign and segment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from pyspark.sql import SparkSession

from segmentation import io, schema
from segmentation.config import ConfigError, Settings
from segmentation.pipelines import common
from segmentation.runs import JobRun, StageListener
from segmentation.transforms import uplift


@dataclass(frozen=True)
class EvaluateResult:
    as_of: dt.date
    run_id: str
    path: str
    version: int


def run_evaluate(
    spark: SparkSession, settings: Settings, as_of: dt.date, listeners: Iterable[StageListener] = ()
) -> EvaluateResult:
    """Audiences of ``as_of`` + campaign responses -> ``campaign_uplift``."""
    cfg, out = settings.evaluation, settings.outputs
    if settings.inputs.campaign_responses is None:
        raise ConfigError("inputs.campaign_responses: not configured; evaluate needs the campaign responses table")
    with JobRun(spark, settings, "evaluate", as_of, listeners) as run:
        with run.stage("read audiences and responses") as info:
            audiences_df = common.read_snapshot(spark, settings, "campaign_audiences", as_of)
            segments_df = common.read_snapshot(spark, settings, "customer_segments", as_of)
            unknown = [d for d in cfg.segment_dimensions if d not in segments_df.columns]
            if unknown:
                raise ConfigError(
                    f"evaluation.segment_dimensions: not columns of customer_segments: {', '.join(unknown)}"
                )
            responses = common.read_input(spark, settings.inputs.campaign_responses, schema.CAMPAIGN_RESPONSES)
            input_versions = {
                "campaign_audiences": io.table_version(spark, out.table_path("campaign_audiences")),
                "campaign_responses": responses.version,
            }
            info.update({k: v for k, v in input_versions.items() if v is not None})
        run.begin(input_versions)
        with run.stage("write campaign_uplift"):
            uplift_df = uplift.campaign_uplift(
                audiences_df,
                schema.conform(responses.df, schema.CAMPAIGN_RESPONSES),
                segments_df,
                cfg.segment_dimensions,
                as_of,
                cfg.response_window_days,
                cfg.confidence_z,
                run.run_id,
            )
            version = run.write("campaign_uplift", uplift_df)
    return EvaluateResult(as_of=as_of, run_id=run.run_id, path=out.table_path("campaign_uplift"), version=version)

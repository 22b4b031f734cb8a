"""``report``: output tables of the date -> one self-contained HTML report; sections without data say so."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyspark.sql.functions as F
from pyspark.sql import SparkSession

from segmentation import io
from segmentation.config import Settings
from segmentation.runs import JobRun, StageListener

log = logging.getLogger(__name__)

REPORT_TABLES = ("customer_segments", "segment_summary", "segment_migration", "campaign_audiences", "segment_changes")


@dataclass(frozen=True)
class ReportResult:
    path: str
    previous_as_of: dt.date | None
    unavailable: list[str]


def run_report(
    spark: SparkSession, settings: Settings, as_of: dt.date, listeners: Iterable[StageListener] = ()
) -> ReportResult:
    """Read the date's output tables, draw the sections, write the HTML; the manifest row names the file."""
    from segmentation import report

    out = settings.outputs
    segments_path = out.table_path("customer_segments")
    with JobRun(spark, settings, "report", as_of, listeners) as run:
        with run.stage("read report inputs") as info:
            versions = {name: io.table_version(spark, out.table_path(name)) for name in REPORT_TABLES}
            segments_df = io.read_output(spark, segments_path, as_of)
            previous = io.previous_as_of(spark, segments_path, as_of)
            info.update({f"{k}_version": v for k, v in versions.items()})
            info["previous_as_of"] = previous
        run.begin(versions)
        inputs = report.ReportInputs(
            as_of=as_of,
            segments_df=run.persist(segments_df) if segments_df is not None else None,
            previous_as_of=previous,
            previous_segments_df=io.read_output(spark, segments_path, previous) if previous else None,
            migration_df=io.read_output(spark, out.table_path("segment_migration"), as_of),
            audiences_df=io.read_output(spark, out.table_path("campaign_audiences"), as_of),
            changes_df=_week_of_changes(spark, out.table_path("segment_changes"), as_of),
            table_versions=versions,
            **_model_statuses(run),
        )
        with run.stage("report") as info:
            sections = report.build_sections(inputs, settings)
            unavailable = [s.anchor for s in sections if s.image is None and s.table is None]
            info.update({"sections": len(sections), "not_available": ",".join(unavailable) or "none"})
        html = report.render_html(sections, inputs, settings)
        path = io.write_text(str(Path(out.report_dir) / f"segmentation_{as_of}.html"), html)
        run.message = f"report: {path}"
    return ReportResult(path, previous, unavailable)


def _model_statuses(run: JobRun) -> dict:
    """``models`` (newest version of each family's registered model) and ``models_note`` for :class:`ReportInputs`.

    The registry is read, never written: a SQLite store that does not exist is not created, and a store that cannot
    be read leaves the section with a note instead of failing the report.
    """
    from mlflow.exceptions import MlflowException

    from segmentation.models import registry, registry_status

    settings = run.settings
    with run.stage("read model registry") as info:
        if not registry_status.store_exists(settings.mlflow):
            info["models"] = 0
            return {"models_note": f"no model trained yet: no tracking store at {settings.mlflow.tracking_uri}"}
        try:
            found = [
                registry_status.model_status(settings.mlflow, f.name, f.promotion.registered_model)
                for f in registry.families(settings)
            ]
        except MlflowException as exc:
            log.warning("report: model registry at %s not readable: %s", settings.mlflow.tracking_uri, exc)
            return {"models_note": f"the model registry at {settings.mlflow.tracking_uri} could not be read: {exc}"}
        statuses = [s for s in found if s is not None]
        info["models"] = len(statuses)
    if not statuses:
        return {"models_note": "no model trained yet: run `segmentation train`"}
    return {"models": statuses}


def _week_of_changes(spark: SparkSession, path: str, as_of: dt.date):
    """The ``segment_changes`` of the report's week (partition-pruned), or None before the first build."""
    from segmentation.report.inputs import week_start

    changes_df = io.read_output(spark, path)
    if changes_df is None:
        return None
    return changes_df.where(F.col("as_of_date").between(F.lit(week_start(as_of)), F.lit(as_of)))

"""One small generated run shared by the report and notebook tests: two build snapshots a month apart.

The report draws CLV/churn and campaign sections only when ``score`` and the campaign rules have written their
columns and tables. Where they have not (yet) for this run, the fixture writes stand-in values into the slice so every
section is drawn; the report's own degradation is tested separately on an empty lake.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

AS_OF_PREVIOUS = dt.date(2026, 6, 30)
AS_OF = dt.date(2026, 7, 31)


@dataclass(frozen=True)
class Run:
    """Where the shared run lives and the overrides that point a configuration at it."""

    lake: Path
    overrides: tuple[str, ...]
    settings: object


def run_overrides(lake: Path) -> tuple[str, ...]:
    return (
        f"inputs.orders.path={lake / 'input' / 'orders'}",
        f"inputs.identity_map.path={lake / 'input' / 'identity_map'}",
        f"inputs.profiles.path={lake / 'input' / 'profiles'}",
        f"outputs.path={lake / 'output'}",
        f"outputs.report_dir={lake / 'reports'}",
        f"mlflow.tracking_uri=sqlite:///{lake / 'mlflow.db'}",
        "spark.master=local[2]",
        "spark.jars_dir=null",
        "generate.customers=1200",
        "generate.orders=10000",
        "generate.customers_per_partition=600",
    )


def _stand_in_predictions(spark, settings, as_of: dt.date) -> None:
    """Fill ``clv`` and ``churn_probability`` from the scores when ``score`` has not filled them for this slice."""
    import pyspark.sql.functions as F
    from delta.tables import DeltaTable

    path = settings.outputs.table_path("customer_segments")
    slice_df = spark.read.format("delta").load(path).where(F.col("as_of_date") == F.lit(as_of))
    if slice_df.where(F.col("clv").isNotNull()).limit(1).count():
        return
    DeltaTable.forPath(spark, path).update(
        condition=(F.col("as_of_date") == F.lit(as_of)) & F.col("r_score").isNotNull(),
        set={
            "clv": (F.col("monetary").cast("double") * (F.lit(0.5) + F.col("f_score") / F.lit(5.0))).cast("double"),
            "churn_probability": ((F.lit(6.0) - F.col("r_score")) / F.lit(6.0)).cast("double"),
        },
    )


def _stand_in_audiences(spark, settings, as_of: dt.date) -> None:
    """Write two campaigns with a 10% and 20% control group when no campaign rules wrote this slice."""
    import pyspark.sql.functions as F

    from segmentation import io

    path = settings.outputs.table_path("campaign_audiences")
    existing = io.read_output(spark, path, as_of)
    if existing is not None and existing.limit(1).count():
        return
    segments_df = spark.read.format("delta").load(settings.outputs.table_path("customer_segments"))
    members = segments_df.where(F.col("as_of_date") == F.lit(as_of)).select("as_of_date", "customer_id")
    unit = (F.abs(F.hash("campaign_id", "customer_id")) % 1000) / 1000.0
    audiences_df = (
        members.crossJoin(
            spark.createDataFrame(
                [("retain_all", "retain", 0.1), ("recall_all", "recall", 0.2)],
                "campaign_id string, objective string, control_share double",
            )
        )
        .withColumn("arm", F.when(unit < F.col("control_share"), "control").otherwise("treatment"))
        .drop("control_share")
    )
    io.write_snapshot(audiences_df, path, as_of)


@pytest.fixture(scope="session")
def generated_run(spark, conf_dir, tmp_path_factory) -> Run:
    """Generate ~1,200 customers, build two snapshots (migration needs a previous one), fill what later jobs fill."""
    from segmentation import pipelines
    from segmentation.config import load_settings

    lake = tmp_path_factory.mktemp("ecosystem")
    overrides = run_overrides(lake)
    settings = load_settings([conf_dir / "local.yaml"], list(overrides))
    pipelines.run_generate(spark, settings, AS_OF_PREVIOUS)
    pipelines.run_build(spark, settings, AS_OF_PREVIOUS)
    pipelines.run_build(spark, settings, AS_OF)
    _stand_in_predictions(spark, settings, AS_OF)
    _stand_in_audiences(spark, settings, AS_OF)
    return Run(lake, overrides, settings)

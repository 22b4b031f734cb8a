"""One function per job: read, transform, write. The only module that wires I/O to transforms."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import pyspark.sql.functions as F
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from segmentation import io, schema, synthetic
from segmentation.config import RuleSet, Settings
from segmentation.transforms import features as feat
from segmentation.transforms import quality, rules, scoring, segments
from segmentation.transforms.identity import stitch_identities

log = logging.getLogger(__name__)


class InputError(ValueError):
    """The input data cannot be processed as it is (schema, rejected share): nothing was written."""


StageListener = Callable[[str, float, dict], None]
# Called with (stage name, seconds, details) when a stage ends; the benchmark registers one to time each stage.
stage_listeners: list[StageListener] = []


@contextlib.contextmanager
def stage(name: str) -> Iterator[dict]:
    """Log a stage with its elapsed time and whatever counts the stage records in the yielded dict."""
    info: dict = {}
    start = time.perf_counter()
    log.info("%s ...", name)
    yield info
    elapsed = time.perf_counter() - start
    details = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in info.items())
    log.info("%s done in %.1fs%s", name, elapsed, f" ({details})" if details else "")
    for listener in stage_listeners:
        listener(name, elapsed, dict(info))


def run_id_for(job: str, as_of: dt.date, settings: Settings, input_versions: Mapping[str, int | None]) -> str:
    """A run id derived from what determines the output (job, date, configuration, input versions).

    The same inputs and configuration give the same id, so a rerun or a retry rewrites identical rows.
    """
    payload = f"{job}|{as_of}|{settings.model_dump_json()}|{sorted(input_versions.items())}"
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------------------------------
# generate
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GenerateResult:
    orders_path: str
    orders_version: int
    identity_map_path: str | None
    profiles_path: str | None


def run_generate(spark: SparkSession, settings: Settings, as_of: dt.date) -> GenerateResult:
    """Write the synthetic orders (partitioned by channel and month), identity map and profiles."""
    tables = synthetic.generate(spark, settings.generate, as_of)
    with stage("generate orders") as info:
        orders = tables.orders.repartition("channel", "order_month")
        version = io.overwrite_table(orders, settings.inputs.orders.path, partition_by=("channel", "order_month"))
        info["rows"] = spark.read.format("delta").load(settings.inputs.orders.path).count()
    identity_path = settings.inputs.identity_map.path if settings.inputs.identity_map else None
    if identity_path:
        with stage("generate identity map"):
            io.overwrite_table(tables.identity_map.coalesce(4), identity_path)
    profiles_path = settings.inputs.profiles.path if settings.inputs.profiles else None
    if profiles_path and tables.profiles is not None:
        with stage("generate profiles"):
            io.overwrite_table(tables.profiles.coalesce(4), profiles_path)
    return GenerateResult(settings.inputs.orders.path, version, identity_path, profiles_path)


# ----------------------------------------------------------------------------------------------------------------------
# build
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class BuildResult:
    as_of: dt.date
    run_id: str
    input_rows: int
    valid_rows: int
    rejected_rows: int
    customers: int
    reasons: dict[str, int]
    versions: dict[str, int] = field(default_factory=dict)
    input_versions: dict[str, int | None] = field(default_factory=dict)


def feature_schema(spark: SparkSession, settings: Settings, as_of: dt.date):
    """The schema the rules see, derived by analysing the transforms on an empty input (no data is read)."""
    empty = spark.createDataFrame([], schema.ORDERS.struct)
    features_df = feat.customer_features(empty, as_of, settings.features, settings.quality)
    dummy_grid = scoring.QuantileGrid((0.5,), {c: (0.0,) for c in settings.features.percentiles})
    scored = features_df.transform(scoring.with_percentiles, settings.features.percentiles, dummy_grid).transform(
        scoring.with_rfm_scores, {m: [0.0] * (settings.rfm.bins - 1) for m in scoring.RFM_METRICS.values()}
    )
    return scored


def check_rules(spark: SparkSession, settings: Settings, as_of: dt.date) -> None:
    """Fail fast on a rule that does not parse or names an unknown column: before any data is read."""
    missing = [c for c in settings.features.percentiles if c not in feature_schema_columns(spark, settings, as_of)]
    if missing:
        from segmentation.config import ConfigError

        raise ConfigError(f"features.percentiles: unknown feature column(s): {', '.join(missing)}")
    df = feature_schema(spark, settings, as_of)
    for name, rule_set in settings.segments.rule_sets.items():
        rules.check_rule_set(spark, df.schema, rule_set, f"segments.rule_sets.{name}")
        df = rules.with_exclusive(df, name, rule_set)
    for name, rule_set in settings.tags.rule_sets.items():
        rules.check_rule_set(spark, df.schema, rule_set, f"tags.rule_sets.{name}")


def feature_schema_columns(spark: SparkSession, settings: Settings, as_of: dt.date) -> list[str]:
    empty = spark.createDataFrame([], schema.ORDERS.struct)
    return feat.customer_features(empty, as_of, settings.features, settings.quality).columns


def read_orders(spark: SparkSession, settings: Settings) -> io.ReadResult:
    """Read the orders and hold them to their contract (stops before any write, naming each bad column)."""
    result = io.read_table(spark, settings.inputs.orders)
    schema.check_columns(result.df, schema.ORDERS, settings.inputs.orders.path)
    return io.ReadResult(schema.conform(result.df, schema.ORDERS), result.version)


def read_identity_map(spark: SparkSession, settings: Settings) -> tuple[DataFrame | None, int | None]:
    ref = settings.inputs.identity_map
    if ref is None:
        return None, None
    result = io.read_table(spark, ref)
    schema.check_columns(result.df, schema.IDENTITY_MAP, ref.path)
    return result.df, result.version


def validate(tagged_df: DataFrame, settings: Settings) -> dict[str | None, int]:
    """Count valid and rejected rows per reason and stop if the rejected share is above the configured limit."""
    counts = {r[quality.REASON]: int(r["count"]) for r in quality.reason_counts(tagged_df).collect()}
    total = sum(counts.values())
    rejected = total - counts.get(None, 0)
    share = rejected / total if total else 0.0
    if total == 0:
        raise InputError(f"the orders table {settings.inputs.orders.path} is empty")
    if share > settings.quality.max_rejected_share:
        detail = ", ".join(f"{k}={v:,}" for k, v in sorted((k, v) for k, v in counts.items() if k is not None))
        raise InputError(
            f"{rejected:,} of {total:,} order rows ({share:.2%}) are invalid, above quality.max_rejected_share="
            f"{settings.quality.max_rejected_share:.2%}; no output was written. Reasons: {detail}"
        )
    return counts


def score_customers(features_df: DataFrame, settings: Settings) -> DataFrame:
    """Percentiles, R/F/M scores, value class and every exclusive rule set, with one quantile pass."""
    score_metrics = list(scoring.RFM_METRICS.values()) if settings.rfm.method == "quantile" else []
    pct_columns = list(settings.features.percentiles)
    probabilities = scoring.grid_probabilities(settings.features.percentile_resolution)
    grid_columns = sorted(set(score_metrics) | set(pct_columns) | {"monetary"})
    grid = scoring.quantile_grid(
        features_df,
        grid_columns,
        probabilities + scoring.score_probabilities(settings.rfm.bins),
        settings.rfm.relative_error,
    )
    cuts = scoring.score_cuts(features_df, settings.rfm, grid)
    log.info("rfm cut points (%s): %s", settings.rfm.method, {k: [round(v, 2) for v in c] for k, c in cuts.items()})
    boundaries = scoring.value_class_boundaries(features_df, grid, settings.value_class)
    return (
        features_df.transform(scoring.with_percentiles, pct_columns, grid)
        .transform(scoring.with_rfm_scores, cuts)
        .transform(scoring.with_value_class, boundaries, settings.value_class)
        .transform(segments.with_rule_sets, settings.segments.rule_sets)
    )


def run_build(spark: SparkSession, settings: Settings, as_of: dt.date) -> BuildResult:
    """Orders -> quality -> identity -> features -> scores and segments -> Delta snapshots for ``as_of``."""
    check_rules(spark, settings, as_of)
    with stage("read orders") as info:
        orders = read_orders(spark, settings)
        identity_df, identity_version = read_identity_map(spark, settings)
        info["orders_version"] = orders.version
    input_versions = {"orders": orders.version, "identity_map": identity_version}
    run_id = run_id_for("build", as_of, settings, input_versions)

    tagged = quality.with_reject_reason(orders.df, as_of, settings.quality).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with stage("validate orders") as info:
            counts = validate(tagged, settings)
            info.update({"input": sum(counts.values()), "rejected": sum(v for k, v in counts.items() if k)})
        valid = stitch_identities(quality.valid_orders(tagged), identity_df)
        with stage("features"):
            features_df = feat.customer_features(valid, as_of, settings.features, settings.quality).persist(
                StorageLevel.MEMORY_AND_DISK
            )
        with stage("scores and segments") as info:
            scored = score_customers(features_df, settings)
            segments_df = segments.segments_snapshot(scored, list(settings.segments.rule_sets), run_id)
        versions = write_build_outputs(spark, settings, as_of, run_id, tagged, features_df, segments_df)
        with stage("count customers") as info:
            customers = features_df.count()
            info["customers"] = customers
    finally:
        tagged.unpersist()
    valid_rows = counts.get(None, 0)
    return BuildResult(
        as_of=as_of,
        run_id=run_id,
        input_rows=sum(counts.values()),
        valid_rows=valid_rows,
        rejected_rows=sum(counts.values()) - valid_rows,
        customers=customers,
        reasons={k: v for k, v in counts.items() if k is not None},
        versions=versions,
        input_versions=input_versions,
    )


def _summary_dimensions(settings: Settings) -> dict[str, RuleSet | None]:
    return {**settings.segments.rule_sets, "value_class": None}


def write_build_outputs(
    spark: SparkSession,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    tagged: DataFrame,
    features_df: DataFrame,
    segments_df: DataFrame,
) -> dict[str, int]:
    out = settings.outputs
    rows_per_file = out.target_file_rows
    versions: dict[str, int] = {}
    with stage("write orders_rejected"):
        versions["orders_rejected"] = io.write_snapshot(
            quality.rejected_orders(tagged, as_of, run_id), out.table_path("orders_rejected"), as_of
        )
    with stage("write customer_features"):
        versions["customer_features"] = io.write_snapshot(
            features_df, out.table_path("customer_features"), as_of, max_records_per_file=rows_per_file
        )
    with stage("write customer_segments"):
        versions["customer_segments"] = io.write_snapshot(
            segments_df,
            out.table_path("customer_segments"),
            as_of,
            max_records_per_file=rows_per_file,
            properties={"delta.enableChangeDataFeed": "true"},
        )
    with stage("write segment_summary"):
        written = spark.read.format("delta").load(out.table_path("customer_segments")).where(
            F.col("as_of_date") == F.lit(as_of)
        )
        summary = segments.segment_summary(written, _summary_dimensions(settings), as_of, run_id)
        versions["segment_summary"] = io.write_snapshot(summary.coalesce(1), out.table_path("segment_summary"), as_of)
    return versions

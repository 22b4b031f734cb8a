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
from segmentation.config import ConfigError, Rule, RuleSet, Settings
from segmentation.transforms import (
    audiences,
    currency,
    monitoring,
    population,
    quality,
    rules,
    scoring,
    segments,
    tags,
    tiers,
)
from segmentation.transforms import features as feat
from segmentation.transforms import uplift as uplift_tf
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
    return scored.transform(population.with_registration, None).withColumn("value_class", F.lit(None).cast("string"))


def check_rules(spark: SparkSession, settings: Settings, as_of: dt.date) -> None:
    """Fail fast on a rule that does not parse or names an unknown column: before any data is read."""
    missing = [c for c in settings.features.percentiles if c not in feature_schema_columns(spark, settings, as_of)]
    if missing:
        from segmentation.config import ConfigError

        raise ConfigError(f"features.percentiles: unknown feature column(s): {', '.join(missing)}")
    df = feature_schema(spark, settings, as_of)
    for name, rule_set in settings.segments.rule_sets.items():
        key = f"segments.rule_sets.{name}"
        rules.check_rule_set(spark, df.schema, rule_set, key, settings.source_of(key))
        df = spark.createDataFrame([], rules.with_exclusive(df, name, rule_set).schema)  # keep the plan shallow
    if settings.tiers is not None:
        keep = [Rule(name=t, condition=k.condition) for t, k in settings.tiers.keep.items() if k.condition]
        if keep:
            rules.check_rule_set(
                spark, df.schema, RuleSet(kind="tags", rules=keep), "tiers.keep", settings.source_of("tiers.keep")
            )
        df = tiers.with_membership_tier(df, None, settings.tiers, as_of)
    for name, rule_set in settings.tags.rule_sets.items():
        key = f"tags.rule_sets.{name}"
        rules.check_rule_set(spark, df.schema, rule_set, key, settings.source_of(key))
    if settings.audiences.campaigns:
        conditions = [Rule(name=c.id, condition=c.condition) for c in settings.audiences.campaigns]
        rules.check_rule_set(
            spark,
            df.schema,
            RuleSet(kind="tags", rules=conditions),
            "audiences.campaigns",
            settings.source_of("audiences.campaigns"),
        )


def feature_schema_columns(spark: SparkSession, settings: Settings, as_of: dt.date) -> list[str]:
    empty = spark.createDataFrame([], schema.ORDERS.struct)
    return feat.customer_features(empty, as_of, settings.features, settings.quality).columns


def read_orders(spark: SparkSession, settings: Settings) -> io.ReadResult:
    """Read the orders and hold them to their contract (stops before any write, naming each bad column)."""
    result = io.read_table(spark, settings.inputs.orders)
    q = settings.quality
    text_columns = schema.TEXT_PARSED_ORDER_COLUMNS if q.parse_text_columns else ()
    schema.check_columns(result.df, schema.ORDERS, settings.inputs.orders.path, text_columns)
    df = quality.with_parsed_text(result.df, q.timestamp_formats) if q.parse_text_columns else result.df
    keep = (quality.PARSE_REASON,) if q.parse_text_columns else ()
    return io.ReadResult(schema.conform(df, schema.ORDERS, keep), result.version)


def read_reference_tables(
    spark: SparkSession, settings: Settings
) -> tuple[DataFrame | None, DataFrame | None, dict[str, int | None]]:
    """The optional FX-rate and exclusion tables, checked against their contracts: (fx, exclusions, versions)."""
    found: dict[str, DataFrame | None] = {}
    versions: dict[str, int | None] = {}
    for name, ref, contract in (
        ("fx_rates", settings.inputs.fx_rates, schema.FX_RATES),
        ("exclusions", settings.inputs.exclusions, schema.EXCLUSIONS),
    ):
        if ref is None:
            found[name] = None
            continue
        result = io.read_table(spark, ref)
        schema.check_columns(result.df, contract, ref.path)
        found[name], versions[name] = result.df, result.version
    return found["fx_rates"], found["exclusions"], versions


def tag_orders(
    spark: SparkSession,
    settings: Settings,
    as_of: dt.date,
    orders_df: DataFrame,
    identity_df: DataFrame | None,
) -> TaggedOrders:
    """Every order with its ``reject_reason`` (exclusions, row rules, FX rates) and valid amounts converted to the
    reporting currency, with the versions of the reference tables read, which are inputs of the run id.

    Duplicates are found by a hash aggregate of the order keys first: while the repeated keys are few enough to
    broadcast (``quality.broadcast_duplicate_keys_max``), only their rows are ranked, so no order row is shuffled
    to validate it. The caller calls ``release()`` when done."""
    fx_df, exclusions_df, versions = read_reference_tables(spark, settings)
    keys_df = quality.exclusion_keys(exclusions_df, identity_df) if exclusions_df is not None else None
    held: list[DataFrame] = []
    duplicates_df = quality.duplicate_keys(orders_df).persist(StorageLevel.MEMORY_AND_DISK)
    held.append(duplicates_df)
    repeated_keys = duplicates_df.count()
    broadcast = repeated_keys <= settings.quality.broadcast_duplicate_keys_max
    log.info(
        "%d repeated order keys: %s",
        repeated_keys,
        "ranking their rows only"
        if broadcast
        else "ranking every order row (above quality.broadcast_duplicate_keys_max)",
    )
    tagged = quality.with_reject_reason(
        orders_df, as_of, settings.quality, keys_df, duplicates_df if broadcast else None
    )
    if settings.quality.reporting_currency is not None:
        tagged = currency.with_reporting_currency(tagged, fx_df, settings.quality.reporting_currency)
    if not broadcast:
        # Every row then passes a window (a full shuffle and sort): do it once for all the readers of ``tagged``.
        tagged = tagged.persist(StorageLevel.MEMORY_AND_DISK)
        held.append(tagged)
    return TaggedOrders(tagged, versions, held)


@dataclass
class TaggedOrders:
    """Every order with its ``reject_reason``, the reference-table versions read, and what was cached for it.

    ``df`` is cheap to recompute (a scan plus broadcast joins) unless there are many repeated order keys, in which
    case it is cached; ``release`` frees whatever was.
    """

    df: DataFrame
    reference_versions: dict[str, int | None]
    held: list[DataFrame] = field(default_factory=list)

    def rejected(self) -> DataFrame:
        """The rejected rows, cached: the reason counts and ``orders_rejected`` both read them."""
        rejected_df = self.df.where(F.col(quality.REASON).isNotNull()).persist(StorageLevel.MEMORY_AND_DISK)
        self.held.append(rejected_df)
        return rejected_df

    def release(self) -> None:
        for df in self.held:
            df.unpersist()
        self.held.clear()


def read_identity_map(spark: SparkSession, settings: Settings) -> tuple[DataFrame | None, int | None]:
    ref = settings.inputs.identity_map
    if ref is None:
        return None, None
    result = io.read_table(spark, ref)
    schema.check_columns(result.df, schema.IDENTITY_MAP, ref.path)
    return result.df, result.version


def validate(rejected_df: DataFrame, input_rows: int, settings: Settings) -> dict[str | None, int]:
    """Count valid and rejected rows per reason and stop if the rejected share is above the configured limit."""
    counts = quality.count_reasons(rejected_df, input_rows)
    total = sum(counts.values())
    intentional = sum(v for k, v in counts.items() if k in quality.INTENTIONAL_REASONS)
    rejected = total - counts.get(None, 0) - intentional
    share = rejected / (total - intentional) if total > intentional else 0.0
    if total == 0:
        raise InputError(f"the orders table {settings.inputs.orders.path} is empty")
    if share > settings.quality.max_rejected_share:
        detail = ", ".join(f"{k}={v:,}" for k, v in sorted((k, v) for k, v in counts.items() if k is not None))
        raise InputError(
            f"{rejected:,} of {total - intentional:,} order rows ({share:.2%}) are invalid"
            + (f" ({intentional:,} excluded rows not counted)" if intentional else "")
            + f", above quality.max_rejected_share="
            f"{settings.quality.max_rejected_share:.2%}; no output was written. Reasons: {detail}"
        )
    return counts


def score_customers(
    features_df: DataFrame,
    settings: Settings,
    registrations_df: DataFrame | None = None,
    as_of: dt.date | None = None,
) -> DataFrame:
    """Percentiles, R/F/M scores, value class and every exclusive rule set, with one quantile pass.

    With ``registrations_df`` (from the profiles table) every customer gets its registration date, and registered
    customers without a completed order join as prospects after the scores, so percentiles and score cut points
    describe purchasers only and prospects carry null scores.
    """
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
    scored = (
        features_df.transform(population.with_registration, registrations_df)
        .transform(scoring.with_percentiles, pct_columns, grid)
        .transform(scoring.with_rfm_scores, cuts)
    )
    if registrations_df is not None:
        if as_of is None:
            raise ValueError("score_customers needs as_of to add prospects")
        scored = scored.unionByName(population.prospect_rows(registrations_df, scored, as_of))
    return scored.transform(scoring.with_value_class, boundaries, settings.value_class).transform(
        segments.with_rule_sets, settings.segments.rule_sets
    )


def read_registrations(spark: SparkSession, settings: Settings, as_of: dt.date) -> DataFrame | None:
    """Registrations from the optional profiles table (``customer_id``, ``registered_at``), checked against the
    contract; None when no profiles table is configured."""
    ref = settings.inputs.profiles
    if ref is None:
        return None
    result = io.read_table(spark, ref)
    schema.check_columns(result.df, schema.PROFILES, ref.path)
    return population.registrations(result.df, as_of)


def read_previous_segments(
    spark: SparkSession, settings: Settings, as_of: dt.date
) -> tuple[dt.date | None, DataFrame | None]:
    """The latest ``customer_segments`` snapshot before ``as_of`` (tier state, migration), or (None, None)."""
    path = settings.outputs.table_path("customer_segments")
    previous = io.previous_as_of(spark, path, as_of)
    if previous is None:
        return None, None
    return previous, io.read_output(spark, path, previous)


def with_tier_state(
    scored_df: DataFrame, previous_segments_df: DataFrame | None, settings: Settings, as_of: dt.date
) -> DataFrame:
    """Apply the membership tier state machine when ``tiers`` is configured (else the rule set's tier stands)."""
    if settings.tiers is None:
        return scored_df
    return tiers.with_membership_tier(scored_df, previous_segments_df, settings.tiers, as_of)


def segment_output_columns(settings: Settings) -> list[str]:
    """Rule-set columns of ``customer_segments`` plus the tier state columns when tiers are configured."""
    return [*settings.segments.rule_sets, *(tiers.STATE_COLUMNS if settings.tiers is not None else ())]


def run_build(spark: SparkSession, settings: Settings, as_of: dt.date) -> BuildResult:
    """Orders -> quality -> identity -> features -> scores and segments -> Delta snapshots for ``as_of``."""
    started_at = _utc_now()
    check_rules(spark, settings, as_of)
    with stage("read orders") as info:
        orders = read_orders(spark, settings)
        identity_df, identity_version = read_identity_map(spark, settings)
        info["orders_version"] = orders.version
    with stage("find repeated order keys"):
        tagged = tag_orders(spark, settings, as_of, orders.df, identity_df)
    input_versions = {"orders": orders.version, "identity_map": identity_version, **tagged.reference_versions}
    run_id = run_id_for("build", as_of, settings, input_versions)

    try:
        with stage("validate orders") as info:
            rejected = tagged.rejected()
            counts = validate(rejected, orders.df.count(), settings)
            info.update({"input": sum(counts.values()), "rejected": sum(v for k, v in counts.items() if k)})
        valid = stitch_identities(quality.valid_orders(tagged.df), identity_df)
        with stage("features"):
            features_df = feat.customer_features(valid, as_of, settings.features, settings.quality).persist(
                StorageLevel.MEMORY_AND_DISK
            )
        with stage("scores and segments") as info:
            registrations_df = read_registrations(spark, settings, as_of)
            scored = score_customers(features_df, settings, registrations_df, as_of)
            previous_as_of, previous_segments_df = read_previous_segments(spark, settings, as_of)
            population_df = with_tier_state(scored, previous_segments_df, settings, as_of).persist(
                StorageLevel.MEMORY_AND_DISK
            )
            segments_df = segments.segments_snapshot(population_df, segment_output_columns(settings), run_id)
            info["previous_as_of"] = previous_as_of
        try:
            versions = write_build_outputs(
                spark, settings, as_of, run_id, rejected, features_df, segments_df, population_df=population_df
            )
        except Exception as exc:
            record_failed_run(spark, settings, "build", as_of, run_id, started_at, input_versions, exc)
            raise
        finally:
            population_df.unpersist()
        with stage("count customers") as info:
            customers = features_df.count()
            info["customers"] = customers
    finally:
        tagged.release()
    with stage("write segment_runs"):
        manifest_version = record_run(spark, settings, "build", as_of, run_id, started_at, versions, input_versions)
    versions = {**versions, "segment_runs": manifest_version}
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


def write_output(settings: Settings, table: str, df: DataFrame, as_of: dt.date, **options) -> int:
    """Replace the ``as_of`` slice of output ``table`` (a field of ``OutputTables``) under its contract.

    A table created by this write gets the NOT NULL and CHECK constraints of ``schema.OUTPUT_CONSTRAINTS``.
    """
    contract = schema.output_constraints(table, settings.rfm.bins).for_columns(df.columns)
    return io.write_snapshot(
        df,
        settings.outputs.table_path(table),
        as_of,
        not_null=contract.not_null,
        checks={c.name: c.expression for c in contract.checks},
        retries=settings.outputs.commit_retries,
        **options,
    )


def _utc_now() -> dt.datetime:
    """Wall-clock time for the run manifest only: no output depends on it."""
    return dt.datetime.now(dt.timezone.utc)


def record_run(
    spark: SparkSession,
    settings: Settings,
    job: str,
    as_of: dt.date,
    run_id: str,
    started_at: dt.datetime,
    table_versions: Mapping[str, int],
    input_versions: Mapping[str, int | None],
    status: str = io.RUN_COMPLETE,
    message: str | None = None,
) -> int:
    """Append a run to the ``segment_runs`` manifest; returns the manifest version.

    Any job that writes outputs calls it LAST with ``status=complete``, after every output is committed: readers take
    only as-of dates with a complete row, at the table versions it lists.
    """
    contract = schema.output_constraints("segment_runs", settings.rfm.bins)
    record = io.RunRecord(
        as_of=as_of,
        job=job,
        run_id=run_id,
        status=status,
        started_at=started_at,
        finished_at=_utc_now(),
        table_versions=dict(table_versions),
        input_versions=dict(input_versions),
        message=message,
    )
    return io.append_run(
        spark,
        settings.outputs.table_path("segment_runs"),
        record,
        not_null=contract.not_null,
        checks={c.name: c.expression for c in contract.checks},
        retries=settings.outputs.commit_retries,
    )


def record_failed_run(
    spark: SparkSession,
    settings: Settings,
    job: str,
    as_of: dt.date,
    run_id: str,
    started_at: dt.datetime,
    input_versions: Mapping[str, int | None],
    exc: BaseException,
) -> None:
    """Best effort: note a run that failed after it began writing outputs. Never hides the original error.

    A process killed outright leaves no row at all; either way the date has no new complete row.
    """
    try:
        record_run(
            spark,
            settings,
            job,
            as_of,
            run_id,
            started_at,
            {},
            input_versions,
            io.RUN_FAILED,
            f"{type(exc).__name__}: {exc}"[:2000],
        )
    except Exception:  # the manifest may be what failed; the original error is re-raised by the caller
        log.exception("could not record the failed %s run %s in the manifest", job, run_id)


def _summary_dimensions(settings: Settings) -> dict[str, RuleSet | None]:
    return {**settings.segments.rule_sets, "value_class": None}


def write_build_outputs(
    spark: SparkSession,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    rejected_df: DataFrame,
    features_df: DataFrame,
    segments_df: DataFrame,
    population_df: DataFrame | None = None,
) -> dict[str, int]:
    """Write every build output for ``as_of``. ``population_df`` (features, segments and tier state of every
    customer) is what tags and audiences are evaluated on; without it they are not written."""
    out = settings.outputs
    rows_per_file = out.target_file_rows
    versions: dict[str, int] = {}
    with stage("write orders_rejected"):
        versions["orders_rejected"] = write_output(
            settings, "orders_rejected", quality.rejected_orders(rejected_df, as_of, run_id), as_of
        )
    with stage("write customer_features"):
        versions["customer_features"] = write_output(
            settings, "customer_features", features_df, as_of, max_records_per_file=rows_per_file
        )
    with stage("write customer_segments"):
        versions["customer_segments"] = write_output(
            settings,
            "customer_segments",
            segments_df,
            as_of,
            max_records_per_file=rows_per_file,
            properties={"delta.enableChangeDataFeed": "true"},
        )
    with stage("write segment_summary"):
        written = (
            spark.read.format("delta")
            .load(out.table_path("customer_segments"))
            .where(F.col("as_of_date") == F.lit(as_of))
        )
        summary = segments.segment_summary(written, _summary_dimensions(settings), as_of, run_id)
        summary_path = out.table_path("segment_summary")
        previous_summary_as_of = io.previous_as_of(spark, summary_path, as_of)
        previous_summary = (
            io.read_output(spark, summary_path, previous_summary_as_of) if previous_summary_as_of else None
        )
        summary = monitoring.with_share_warnings(summary, previous_summary, settings.monitoring).coalesce(1)
        versions["segment_summary"] = write_output(settings, "segment_summary", summary, as_of)
        _log_share_warnings(spark, summary_path, as_of)
    with stage("write segment_migration") as info:
        previous_as_of, previous_segments_df = read_previous_segments(spark, settings, as_of)
        info["previous_as_of"] = previous_as_of
        if previous_segments_df is None:
            migration = spark.createDataFrame([], monitoring.MIGRATION_COLUMNS)
        else:
            migration = monitoring.segment_migration(
                written, previous_segments_df, list(_summary_dimensions(settings)), as_of, previous_as_of, run_id
            )
        versions["segment_migration"] = write_output(settings, "segment_migration", migration.coalesce(1), as_of)
    if population_df is not None:
        with stage("write customer_tags"):
            tags_df = tags.customer_tags(population_df, settings.tags.rule_sets, as_of, run_id)
            versions["customer_tags"] = write_output(
                settings, "customer_tags", tags_df, as_of, max_records_per_file=rows_per_file
            )
        with stage("write campaign_audiences"):
            audiences_df = audiences.campaign_audiences(population_df, settings.audiences.campaigns, as_of, run_id)
            versions["campaign_audiences"] = write_output(
                settings, "campaign_audiences", audiences_df, as_of, max_records_per_file=rows_per_file
            )
    return versions


def _log_share_warnings(spark: SparkSession, summary_path: str, as_of: dt.date) -> None:
    """Log the flagged segments of the written summary (a handful of rows), one line per dimension, so an operator
    sees them in the job log without a 27-cell grid flooding it."""
    flagged = (
        io.read_output(spark, summary_path, as_of)
        .where(F.col("warning").isNotNull())
        .select("dimension", "segment", "share", "previous_share", "warning")
        .orderBy("dimension", "segment")
        .collect()
    )
    by_dimension: dict[str, list[str]] = {}
    for row in flagged:
        previous = "" if row["previous_share"] is None else f" from {row['previous_share']:.1%}"
        by_dimension.setdefault(row["dimension"], []).append(
            f"{row['segment']} {row['share']:.1%}{previous} ({row['warning']})"
        )
    for dimension, entries in by_dimension.items():
        log.warning("segment share warnings in %s: %s", dimension, "; ".join(entries))


# ----------------------------------------------------------------------------------------------------------------------
# evaluate
# ----------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EvaluateResult:
    as_of: dt.date
    run_id: str
    path: str
    version: int


def read_campaign_responses(spark: SparkSession, settings: Settings) -> io.ReadResult:
    """The campaign responses, held to their contract (stops before any write, naming each bad column)."""
    ref = settings.inputs.campaign_responses
    if ref is None:
        raise ConfigError("inputs.campaign_responses: not configured; evaluate needs the campaign responses table")
    result = io.read_table(spark, ref)
    schema.check_columns(result.df, schema.CAMPAIGN_RESPONSES, ref.path)
    return io.ReadResult(schema.conform(result.df, schema.CAMPAIGN_RESPONSES), result.version)


def run_evaluate(spark: SparkSession, settings: Settings, as_of: dt.date) -> EvaluateResult:
    """Audiences of ``as_of`` + campaign responses -> uplift per campaign and segment -> ``campaign_uplift``."""
    out = settings.outputs
    with stage("read audiences and responses") as info:
        audiences_path = out.table_path("campaign_audiences")
        audiences_df = io.read_output(spark, audiences_path, as_of)
        segments_df = io.read_output(spark, out.table_path("customer_segments"), as_of)
        if audiences_df is None or segments_df is None:
            raise InputError(f"no campaign audiences under {out.path}: run `segmentation build --as-of {as_of}` first")
        unknown = [d for d in settings.evaluation.segment_dimensions if d not in segments_df.columns]
        if unknown:
            raise ConfigError(f"evaluation.segment_dimensions: not columns of customer_segments: {', '.join(unknown)}")
        responses = read_campaign_responses(spark, settings)
        input_versions = {
            "campaign_audiences": io.table_version(spark, audiences_path),
            "campaign_responses": responses.version,
        }
        info.update({k: v for k, v in input_versions.items() if v is not None})
    run_id = run_id_for("evaluate", as_of, settings, input_versions)
    with stage("write campaign_uplift"):
        uplift_df = uplift_tf.campaign_uplift(
            audiences_df,
            responses.df,
            segments_df,
            settings.evaluation.segment_dimensions,
            as_of,
            settings.evaluation.response_window_days,
            settings.evaluation.confidence_z,
            run_id,
        )
        path = out.table_path("campaign_uplift")
        version = io.write_snapshot(uplift_df.coalesce(1), path, as_of)
    return EvaluateResult(as_of=as_of, run_id=run_id, path=path, version=version)


# ----------------------------------------------------------------------------------------------------------------------
# train and score
# ----------------------------------------------------------------------------------------------------------------------
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


def _valid_orders(
    spark: SparkSession, settings: Settings, as_of: dt.date
) -> tuple[TaggedOrders, DataFrame, int | None]:
    """The orders as the build job sees them (contract, quality, identities): (tagged, valid, orders version).

    The caller releases ``tagged``; ``valid`` is derived from it.
    """
    with stage("read orders") as info:
        orders = read_orders(spark, settings)
        identity_df, _ = read_identity_map(spark, settings)
        info["orders_version"] = orders.version
    with stage("validate orders") as info:
        tagged = tag_orders(spark, settings, as_of, orders.df, identity_df)
        counts = validate(tagged.rejected(), orders.df.count(), settings)
        info.update({"input": sum(counts.values()), "rejected": sum(v for k, v in counts.items() if k)})
    return tagged, stitch_identities(quality.valid_orders(tagged.df), identity_df), orders.version


def run_train(spark: SparkSession, settings: Settings, as_of: dt.date) -> TrainResult:
    """Orders -> CLV and churn models, each one MLflow run and a registered version; ``champion`` moves on gains."""
    from segmentation.models import tracking

    tracking.configure(settings.mlflow)
    tagged, valid, orders_version = _valid_orders(spark, settings, as_of)
    inputs = {"orders_path": io.qualify(settings.inputs.orders.path), "orders_version": orders_version}
    config = settings.model_dump(mode="json")
    try:
        valid = valid.persist(StorageLevel.MEMORY_AND_DISK)
        clv_out = _train_clv(valid, settings, as_of, inputs, config)
        churn_out = _train_churn(valid, settings, as_of, inputs, config)
    finally:
        valid.unpersist()
        tagged.release()
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


def _train_clv(valid: DataFrame, settings: Settings, as_of: dt.date, inputs: dict, config: dict) -> dict:
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
        with stage("fit clv") as info:
            fitted = ct.fit(summary_df, cfg)
            info.update({"customers": fitted.customers, "bgnbd_patterns": fitted.bgnbd_patterns})
        model = ct.ClvModel(fitted.bgnbd.params, fitted.gamma_gamma.params, cfg.time_unit)
        if not (fitted.bgnbd.diagnostics.converged and fitted.gamma_gamma.diagnostics.converged):
            log.warning("clv fit did not converge: %s / %s", fitted.bgnbd.diagnostics, fitted.gamma_gamma.diagnostics)
        with stage("evaluate clv holdout"):
            evaluation = ct.evaluate_holdout(
                summary_df, actuals_df, model.bgnbd, model.gamma_gamma, holdout_periods, cfg.frequency_table_max
            )
        champion_score = None
        champion = tracking.load_clv_champion(cfg.registered_model)
        if champion is not None:
            with stage("evaluate clv champion on the same holdout"):
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
    with stage("log clv run") as info:
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


def _train_churn(valid: DataFrame, settings: Settings, as_of: dt.date, inputs: dict, config: dict) -> dict:
    from pyspark.errors import AnalysisException

    from segmentation.models import churn, tracking

    cfg = settings.models.churn
    cutoff = churn.default_cutoff(as_of, cfg)
    labelled_df = churn.labelled_features(
        valid, cutoff, cfg.horizon_days, settings.features, settings.quality, cfg.holdout_share
    ).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        with stage("train churn") as info:
            training = churn.train_churn(labelled_df, cfg)
            info.update({"train": training.train_customers, "holdout": training.holdout_customers})
        champion_score = None
        champion = tracking.load_churn_champion(cfg.registered_model, settings.mlflow.dfs_tmpdir)
        if champion is not None:
            with stage("evaluate churn champion on the same holdout"):
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
    with stage("log churn run") as info:
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


@dataclass(frozen=True)
class ScoreResult:
    as_of: dt.date
    customers: int
    clv_version: str
    churn_version: str
    segments_version: int


def run_score(spark: SparkSession, settings: Settings, as_of: dt.date) -> ScoreResult:
    """``@champion`` models -> clv, p_alive, expected_purchases, churn_probability in the segments of ``as_of``.

    The closed forms run as Spark column expressions and the churn pipeline as a Spark ML transform, so no customer
    reaches the driver; the slice is rewritten with ``replaceWhere``, so a rerun gives the same table.
    """
    from segmentation.config import TableRef
    from segmentation.models import churn, tracking
    from segmentation.models import clv_training as ct

    tracking.configure(settings.mlflow)
    cfg = settings.models
    clv_champion = tracking.load_clv_champion(cfg.clv.registered_model)
    churn_champion = tracking.load_churn_champion(cfg.churn.registered_model, settings.mlflow.dfs_tmpdir)
    champions = {cfg.clv.registered_model: clv_champion, cfg.churn.registered_model: churn_champion}
    missing = [name for name, champion in champions.items() if champion is None]
    if missing:
        raise InputError(f"no @champion version of {', '.join(missing)} in {settings.mlflow.tracking_uri}: run train")
    clv_model, clv_version = clv_champion
    churn_model, churn_version = churn_champion

    out = settings.outputs
    segments_path, features_path = out.table_path("customer_segments"), out.table_path("customer_features")
    snapshots = {}
    for name, path in (("customer_segments", segments_path), ("customer_features", features_path)):
        if io.table_version(spark, path) is None:
            raise InputError(f"no {name} table at {path}: run build --as-of {as_of} first")
        snapshots[name] = io.read_table(spark, TableRef(path=path)).df.where(F.col("as_of_date") == F.lit(as_of))
    segments_df, features_df = snapshots["customer_segments"], snapshots["customer_features"]

    tagged, valid, _ = _valid_orders(spark, settings, as_of)
    try:
        summary_df = ct.customer_summary(valid, as_of, clv_model.time_unit, settings.quality.sale_status)
        horizon = ct.Horizon.from_settings(cfg.clv, clv_model.time_unit)
        clv_df = ct.with_predictions(summary_df, clv_model, horizon).drop("expected_spend")
        churn_df = churn.with_churn_probability(churn_model, features_df).select("customer_id", churn.SCORE)
        columns = segments_df.columns
        scored_df = (
            segments_df.drop(*segments.PREDICTION_COLUMNS)
            .join(clv_df, "customer_id", "left")
            .join(churn_df, "customer_id", "left")
            .select(
                *[
                    F.col(c).cast(segments.PREDICTION_COLUMNS[c]).alias(c) if c in segments.PREDICTION_COLUMNS else c
                    for c in columns
                ]
            )
        )
        with stage("write scored customer_segments") as info:
            version = io.write_snapshot(
                scored_df,
                segments_path,
                as_of,
                max_records_per_file=out.target_file_rows,
                properties={"delta.enableChangeDataFeed": "true"},
            )
            info["version"] = version
    finally:
        tagged.release()
    with stage("count scored customers") as info:
        customers = io.read_output(spark, segments_path, as_of).where(F.col("clv").isNotNull()).count()
        info["customers"] = customers
    return ScoreResult(as_of, customers, clv_version, churn_version, version)


# ----------------------------------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------------------------------
REPORT_TABLES = ("customer_segments", "segment_summary", "segment_migration", "campaign_audiences")


@dataclass(frozen=True)
class ReportResult:
    path: str
    previous_as_of: dt.date | None
    unavailable: list[str]


def run_report(spark: SparkSession, settings: Settings, as_of: dt.date) -> ReportResult:
    """Output tables of ``as_of`` -> one self-contained HTML report; sections whose table is missing say so."""
    from pathlib import Path

    from segmentation import report

    out = settings.outputs
    segments_path = out.table_path("customer_segments")
    with stage("read report inputs") as info:
        versions = {name: io.table_version(spark, out.table_path(name)) for name in REPORT_TABLES}
        segments_df = io.read_output(spark, segments_path, as_of)
        previous = io.previous_as_of(spark, segments_path, as_of)
        info.update({f"{k}_version": v for k, v in versions.items()})
        info["previous_as_of"] = previous
    if segments_df is not None:
        segments_df = segments_df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        inputs = report.ReportInputs(
            as_of=as_of,
            segments_df=segments_df,
            previous_as_of=previous,
            previous_segments_df=io.read_output(spark, segments_path, previous) if previous else None,
            migration_df=io.read_output(spark, out.table_path("segment_migration"), as_of),
            audiences_df=io.read_output(spark, out.table_path("campaign_audiences"), as_of),
            table_versions=versions,
        )
        with stage("report") as info:
            sections = report.build_sections(inputs, settings)
            unavailable = [s.anchor for s in sections if s.image is None]
            info.update({"sections": len(sections), "not_available": ",".join(unavailable) or "none"})
    finally:
        if segments_df is not None:
            segments_df.unpersist()
    html = report.render_html(sections, inputs, settings)
    path = io.write_text(str(Path(out.report_dir) / f"segmentation_{as_of}.html"), html)
    return ReportResult(path, previous, unavailable)

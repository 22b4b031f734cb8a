"""``build``: orders -> quality -> identities -> features -> scores and segments -> every snapshot of the date.

``build_frames`` is the whole job as one pure function from inputs to the frames to write; the job reads, calls it and
writes. The pre-flight check of the rules runs the same function on empty inputs, and the plan tests call it directly.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import pyspark.sql.functions as F
from pyspark.sql import DataFrame, SparkSession

from segmentation import outputs, schema
from segmentation.config import Rule, RuleSet, Settings
from segmentation.pipelines import common, customer_state, ingest
from segmentation.runs import JobRun, StageListener
from segmentation.transforms import (
    audiences,
    identity,
    membership,
    monitoring,
    population,
    profiling,
    quality,
    rules,
    scoring,
    segments,
    state,
    tags,
    tiers,
)

log = logging.getLogger(__name__)

BUILD_TABLES = (
    "orders_rejected",
    "customer_features",
    "customer_segments",
    "segment_summary",
    "segment_migration",
    "customer_tags",
    "campaign_audiences",
    "segment_changes",
    "segment_membership",
)


@dataclass(frozen=True)
class BuildInputs:
    """What ``build_frames`` reads: valid and rejected orders, registrations and the previous snapshots."""

    valid_df: DataFrame
    rejected_df: DataFrame
    registrations_df: DataFrame | None = None
    state_df: DataFrame | None = None  # the customer state of the as-of date; None: aggregate ``valid_df``
    previous_as_of: dt.date | None = None
    previous_segments_df: DataFrame | None = None
    previous_summary_df: DataFrame | None = None
    membership_df: DataFrame | None = None  # the membership state to compare with (common.read_membership)


@contextlib.contextmanager
def _untimed(name: str) -> Iterator[dict]:
    yield {}


def _keep_as_is(df: DataFrame) -> DataFrame:
    return df


def summary_dimensions(settings: Settings) -> dict[str, RuleSet | None]:
    """Every exclusive rule set plus ``value_class``: the dimensions of the summary and the migration."""
    return {**settings.segments.rule_sets, "value_class": None}


def segment_output_columns(settings: Settings) -> list[str]:
    """Rule-set columns of ``customer_segments`` plus the tier state columns when tiers are configured."""
    return [*settings.segments.rule_sets, *(tiers.STATE_COLUMNS if settings.tiers is not None else ())]


def _tier_keep_rules(settings: Settings) -> RuleSet | None:
    keep = [Rule(name=t, condition=k.condition) for t, k in settings.tiers.keep.items() if k.condition]
    return RuleSet(kind="tags", rules=keep) if keep else None


def build_frames(
    inputs: BuildInputs,
    settings: Settings,
    as_of: dt.date,
    run_id: str,
    *,
    persist: Callable[[DataFrame], DataFrame] = _keep_as_is,
    stage: Callable[[str], contextlib.AbstractContextManager[dict]] = _untimed,
    check: segments.RuleCheck | None = None,
) -> dict[str, DataFrame]:
    """The frames of every ``BUILD_TABLES`` output for ``as_of``.

    ``persist`` caches the frames several outputs read (features, the scored population); ``stage`` times the named
    steps; ``check`` sees every rule set with the frame it will be evaluated on (the pre-flight check).
    """
    with stage("features"):
        state_df = inputs.state_df
        if state_df is None:
            facts_df = state.order_facts(inputs.valid_df, settings.quality)
            state_df = state.from_orders(facts_df, as_of, settings.features)
        features_df = persist(state.features(state_df, as_of, settings.features, settings.quality))
    with stage("scores and segments") as info:
        scored_df = scoring.score_customers(features_df, settings, inputs.registrations_df, as_of, check)
        if settings.tiers is not None:
            keep = _tier_keep_rules(settings)
            if check is not None and keep is not None:
                check(scored_df, "tiers.keep", keep)
            scored_df = tiers.with_membership_tier(scored_df, inputs.previous_segments_df, settings.tiers, as_of)
        population_df = persist(scored_df)
        segments_df = segments.segments_snapshot(population_df, segment_output_columns(settings), run_id)
        info["previous_as_of"] = inputs.previous_as_of
    if check is not None:  # before the membership step, which evaluates the campaign conditions
        for name, rule_set in settings.tags.rule_sets.items():
            check(population_df, f"tags.rule_sets.{name}", rule_set)
        campaigns = [Rule(name=c.id, condition=c.condition) for c in settings.audiences.campaigns]
        if campaigns:
            check(population_df, "audiences.campaigns", RuleSet(kind="tags", rules=campaigns))
    with stage("membership"):
        dims = membership.dimensions_of(settings)
        rotation = settings.audiences.control_rotation_days
        current_df = membership.current_values(
            population_df, list(settings.segments.rule_sets), settings.audiences.campaigns, as_of, rotation
        )
        next_membership_df = persist(
            membership.next_state(current_df, inputs.membership_df, dims.build, as_of, carried=dims.score)
        )
    dimensions = summary_dimensions(settings)
    summary_df = monitoring.with_share_warnings(
        segments.segment_summary(segments_df, dimensions, as_of, run_id),
        inputs.previous_summary_df,
        settings.monitoring,
    )
    if inputs.previous_segments_df is None:
        migration_df = population_df.sparkSession.createDataFrame([], monitoring.MIGRATION_COLUMNS)
    else:
        migration_df = monitoring.segment_migration(
            segments_df, inputs.previous_segments_df, list(dimensions), as_of, inputs.previous_as_of, run_id
        )
    return {
        "orders_rejected": quality.rejected_orders(inputs.rejected_df, as_of, run_id),
        "customer_features": features_df,
        "customer_segments": membership.with_segment_history(segments_df, next_membership_df),
        "segment_summary": summary_df,
        "segment_migration": migration_df,
        "customer_tags": tags.customer_tags(population_df, settings.tags.rule_sets, as_of, run_id),
        "campaign_audiences": audiences.campaign_audiences(
            population_df, settings.audiences.campaigns, as_of, run_id, settings.audiences.control_rotation_days
        ),
        "segment_changes": membership.change_rows(next_membership_df, as_of, run_id),
        "segment_membership": membership.merge_source(next_membership_df),
    }


def empty_inputs(spark: SparkSession, settings: Settings, as_of: dt.date) -> BuildInputs:
    """Inputs with the contracts' columns and no rows: what the pre-flight check runs ``build_frames`` on."""
    orders_df = spark.createDataFrame([], schema.ORDERS.struct)
    registrations_df = None
    if settings.inputs.profiles is not None:
        registrations_df = population.registrations(spark.createDataFrame([], schema.PROFILES.struct), as_of)
    return BuildInputs(orders_df, orders_df.withColumn(quality.REASON, F.lit(None).cast("string")), registrations_df)


def check_rules(spark: SparkSession, settings: Settings, as_of: dt.date) -> None:
    """Fail fast on a rule that does not parse, names an unknown column or is named like a column: before any data is
    read.

    Runs ``build_frames`` on empty inputs, so every rule set is checked against exactly the columns the build gives it,
    and analyses every frame the build would write.
    """

    # Columns a segment rule set must not be named like: what it sees plus what the snapshot adds after it.
    added_later = (*segments.PREDICTION_COLUMNS, "run_id", *tiers.STATE_COLUMNS)

    def check(df: DataFrame, key: str, rule_set: RuleSet) -> None:
        if key.startswith("segments.rule_sets."):
            name = key.removeprefix("segments.rule_sets.")
            rules.check_column_name(name, [*df.columns, *added_later], key, settings.source_of(key))
        rules.check_rule_set(spark, df.schema, rule_set, key, settings.source_of(key))

    frames = build_frames(empty_inputs(spark, settings, as_of), settings, as_of, "check", check=check)
    for df in frames.values():
        df.schema  # noqa: B018 - analysis only: an unresolvable column fails here, before any data is read


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
    mode: str = "full"
    mode_reason: str = ""
    rows_read: int = 0
    state: str = ""


def run_build(
    spark: SparkSession,
    settings: Settings,
    as_of: dt.date,
    listeners: Iterable[StageListener] = (),
    full_refresh: bool = False,
) -> BuildResult:
    """Orders -> clean layer -> customer state -> features, scores and segments -> Delta snapshots for ``as_of``."""
    check_rules(spark, settings, as_of)
    with JobRun(spark, settings, "build", as_of, listeners) as run:
        ingested = ingest.ingest(run, full_refresh)
        run.begin(ingested.versions)
        q = settings.quality
        quality.check_rejected_share(
            ingested.counts, q.max_rejected_share, settings.inputs.orders.path, quality.not_counted_reasons(q)
        )
        resolution = ingested.references.resolution if ingested.references else None
        if resolution is not None:
            with run.stage("write identity_conflicts"):
                run.write("identity_conflicts", identity.conflict_rows(resolution, as_of, run.run_id))
        fp = ingest.fingerprint(run, ingested.versions)
        clean_df = ingest.write_clean(run, ingested, fp)
        current = customer_state.customer_state(run, ingested, clean_df, fp)
        previous_as_of, previous_segments_df = common.read_previous(spark, settings, "customer_segments", as_of)
        inputs = BuildInputs(
            valid_df=clean_df,
            rejected_df=ingested.rejected_df,
            registrations_df=common.read_registrations(spark, settings, as_of),
            state_df=run.persist(current.df),
            previous_as_of=previous_as_of,
            previous_segments_df=previous_segments_df,
            previous_summary_df=common.read_previous(spark, settings, "segment_summary", as_of)[1],
            membership_df=common.read_membership(spark, settings, as_of),
        )
        frames = build_frames(inputs, settings, as_of, run.run_id, persist=run.persist, stage=run.stage)
        profiling.require_purchasers(
            frames["customer_features"], settings.inputs.orders.path, settings.quality.sale_status
        )
        for table in BUILD_TABLES:
            with run.stage(f"write {table}"):
                if outputs.spec(table).kind == "merge":
                    run.merge(table, frames[table])
                else:
                    run.write(table, frames[table])
        customer_state.write_state(run, current, ingested)
        monitoring.log_share_warnings(frames["segment_summary"])
        profiling.log_warnings(
            profiling.unused_value_warnings(frames["customer_features"], settings.features)
            + profiling.empty_tag_groups(frames["customer_tags"], settings.tags.rule_sets)
        )
        with run.stage("count customers") as info:
            customers = info["customers"] = frames["customer_features"].count()
        run.message = f"ingest {ingested.mode} ({ingested.reason}); state {current.how}"
        log.info(
            "build %s: ingest %s, %d order rows read (%s); state %s",
            as_of,
            ingested.mode,
            ingested.rows_read,
            ingested.reason,
            current.how,
        )
    counts = ingested.counts
    valid_rows = counts.get(None, 0)
    return BuildResult(
        as_of=as_of,
        run_id=run.run_id,
        input_rows=sum(counts.values()),
        valid_rows=valid_rows,
        rejected_rows=sum(counts.values()) - valid_rows,
        customers=customers,
        reasons={k: v for k, v in counts.items() if k is not None},
        versions=dict(run.versions),
        input_versions=dict(run.input_versions),
        mode=ingested.mode,
        mode_reason=ingested.reason,
        rows_read=ingested.rows_read,
        state=current.how,
    )

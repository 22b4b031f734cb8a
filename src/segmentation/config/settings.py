"""Typed, layered configuration.

A job's configuration is one or more YAML files merged in order (later files win), then ``dotted.key=value``
overrides from the command line. The merged mapping is validated into frozen pydantic models where unknown keys are
errors, so a typo in a rule set fails at load time instead of silently using a default. Every error message names the
file (or the command line) that set the offending key.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

CATCH_ALL = "true"


class ConfigError(ValueError):
    """A configuration problem the user must fix: names the file, the key and, where relevant, the rule."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------------------------------
# Infrastructure
# --------------------------------------------------------------------------------------------------------------------
class SparkSettings(_Frozen):
    """How the SparkSession is built. On a cluster ``master`` is null: spark-submit or the platform decides."""

    master: str | None = "local[*]"
    app_name: str = "segmentation"
    driver_memory: str | None = None
    jars_dir: str | None = Field(
        default=None,
        description="Folder with Delta's jars; defaults to $SEGMENTATION_JARS_DIR. Null on platforms shipping Delta.",
    )
    conf: dict[str, str] = Field(default_factory=dict)

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class TableRef(_Frozen):
    """An input table: a Delta path (or a catalog name) the user points at their own data."""

    path: str
    format: Literal["delta", "parquet"] = "delta"


class Inputs(_Frozen):
    orders: TableRef
    identity_map: TableRef | None = None
    profiles: TableRef | None = None
    campaign_responses: TableRef | None = None
    fx_rates: TableRef | None = None
    exclusions: TableRef | None = None


class OutputTables(_Frozen):
    """Table names under ``outputs.path``. Downstream systems read these."""

    customer_features: str = "customer_features"
    customer_segments: str = "customer_segments"
    customer_tags: str = "customer_tags"
    campaign_audiences: str = "campaign_audiences"
    segment_summary: str = "segment_summary"
    segment_migration: str = "segment_migration"
    orders_rejected: str = "orders_rejected"
    campaign_uplift: str = "campaign_uplift"
    segment_runs: str = "segment_runs"


class Outputs(_Frozen):
    path: str
    tables: OutputTables = Field(default_factory=OutputTables)
    target_file_rows: int = Field(
        default=2_000_000, gt=0, description="Rows per output file; keeps large snapshots from making tiny files."
    )
    report_dir: str = Field(
        default="reports", description="Local folder of the HTML reports (segmentation_<as-of>.html)."
    )
    commit_retries: int = Field(
        default=5, ge=0, le=20, description="Retries of a Delta commit that lost a race with a concurrent run."
    )

    def table_path(self, name: str) -> str:
        """Absolute location of an output table given its logical name (a field of ``OutputTables``)."""
        return str(Path(self.path) / getattr(self.tables, name))


class MlflowSettings(_Frozen):
    tracking_uri: str = "sqlite:///mlflow.db"
    experiment: str = "segmentation"
    registry_uri: str | None = None
    artifact_location: str | None = Field(
        default=None,
        description="Where a new experiment stores artifacts; null: 'mlartifacts' beside a sqlite tracking file.",
    )
    dfs_tmpdir: str | None = Field(
        default=None, description="Scratch folder (DFS on a cluster) Spark ML models pass through when logged."
    )


# --------------------------------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------------------------------
class ChannelSpec(_Frozen):
    name: str
    share: float = Field(gt=0)
    id_prefix: str


class GenerateSettings(_Frozen):
    """Parameters of the synthetic buy-till-you-die order history (see ``segmentation.synthetic``)."""

    customers: int = Field(default=100_000, gt=0)
    orders: int = Field(default=1_000_000, gt=0)
    seed: int = 42
    history_days: int = Field(default=730, gt=30)
    channels: list[ChannelSpec]
    categories: list[str] = Field(min_length=1)
    currency: str = "CNY"
    extra_currencies: dict[str, float] = Field(
        default_factory=dict, description="Other currencies and the share of orders placed in them."
    )
    purchase_rate_shape: float = Field(default=0.75, gt=0, description="BG/NBD r: heterogeneity of purchase rates.")
    dropout_a: float = Field(default=0.8, gt=0, description="BG/NBD a: Beta prior on the dropout probability.")
    dropout_b: float = Field(default=2.5, gt=0, description="BG/NBD b.")
    spend_p: float = Field(default=6.0, gt=0, description="Gamma-Gamma p: shape of each order's spend.")
    spend_q: float = Field(default=3.5, gt=0, description="Gamma-Gamma q: shape of the customer mean spend prior.")
    spend_v: float = Field(default=60.0, gt=0, description="Gamma-Gamma v: scale of the customer mean spend prior.")
    category_affinity: float = Field(default=0.6, ge=0, le=1, description="Share of orders in the favourite category.")
    multichannel_share: float = Field(default=0.3, ge=0, le=1)
    identified_share: float = Field(default=0.9, ge=0, le=1, description="Customers whose channel ids are stitched.")
    prospect_share: float = Field(default=0.05, ge=0, le=1, description="Registered profiles that never ordered.")
    discount_share: float = Field(default=0.25, ge=0, le=1)
    coupon_share: float = Field(default=0.15, ge=0, le=1)
    refund_share: float = Field(default=0.04, ge=0, le=1)
    cancel_share: float = Field(default=0.02, ge=0, le=1)
    dirty_share: float = Field(default=0.002, ge=0, le=0.5)
    customers_per_partition: int = Field(default=50_000, gt=0)
    write_profiles: bool = True


# --------------------------------------------------------------------------------------------------------------------
# Data quality
# --------------------------------------------------------------------------------------------------------------------
DEFAULT_TIMESTAMP_FORMATS = (
    "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS]XXX",
    "yyyy-MM-dd'T'HH:mm:ss[.SSSSSS]",
    "yyyy-MM-dd HH:mm:ss[.SSSSSS]XXX",
    "yyyy-MM-dd HH:mm:ss[.SSSSSS]",
    "yyyy-MM-dd",
    "yyyy/MM/dd HH:mm:ss",
)


class QualitySettings(_Frozen):
    currencies: list[str] = Field(min_length=1, description="Accepted currency codes; others are rejected rows.")
    statuses: list[str] = Field(default_factory=lambda: ["completed", "refunded", "cancelled"])
    sale_status: str = "completed"
    refund_status: str = "refunded"
    allow_zero_amount: bool = False
    max_rejected_share: float = Field(
        default=0.05, ge=0, le=1, description="Above this share of invalid rows the run fails before any write."
    )
    reporting_currency: str | None = Field(
        default=None,
        description="Amounts are converted to it through inputs.fx_rates before any aggregate; null: no conversion.",
    )
    parse_text_columns: bool = Field(
        default=False,
        description="Accept order_ts/amount/discount_amount stored as text: parse them, reject rows that do not parse.",
    )
    broadcast_duplicate_keys_max: int = Field(
        default=2_000_000,
        ge=0,
        description="Up to this many repeated order keys, only their rows are ranked (the keys are broadcast); above"
        " it every order row goes through the duplicate window. Same result either way; a speed setting only.",
    )
    timestamp_formats: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TIMESTAMP_FORMATS),
        min_length=1,
        description="Spark datetime patterns tried in order on text timestamps; without a zone they are read as UTC.",
    )

    @model_validator(mode="after")
    def _one_reporting_currency(self) -> QualitySettings:
        if self.reporting_currency is None and len(self.currencies) > 1:
            raise ValueError(
                "several currencies are accepted, so quality.reporting_currency must say which one amounts are "
                "converted to (through inputs.fx_rates)"
            )
        if self.reporting_currency is not None and self.reporting_currency.upper() not in {
            c.upper() for c in self.currencies
        }:
            raise ValueError(f"reporting_currency '{self.reporting_currency}' is not one of quality.currencies")
        return self


# --------------------------------------------------------------------------------------------------------------------
# Features, scores and rules
# --------------------------------------------------------------------------------------------------------------------
class FeatureSettings(_Frozen):
    windows_days: list[int] = Field(min_length=1)
    rfm_window_days: int | None = Field(
        default=None, gt=0, description="Frequency/monetary window; null means the whole history up to the as-of."
    )
    categories: list[str] = Field(default_factory=list, description="Categories that get a share_<category> column.")
    channels: list[str] = Field(default_factory=list, description="Channels that get a share_<channel> column.")
    percentiles: list[str] = Field(
        default_factory=lambda: ["monetary", "amount_365d"],
        description="Feature columns that get a <column>_pct column: the customer's percentile rank in [0, 1].",
    )
    percentile_resolution: int = Field(default=1000, ge=10, description="Points of the approximate quantile grid.")

    @field_validator("windows_days")
    @classmethod
    def _sorted_unique(cls, value: list[int]) -> list[int]:
        if any(v <= 0 for v in value):
            raise ValueError("windows must be positive numbers of days")
        return sorted(set(value))


ScoreMethod = Literal["quantile", "equal_width", "thresholds"]


class ScoreSettings(_Frozen):
    """How raw recency/frequency/monetary become 1..bins scores (higher is better, recency reversed)."""

    method: ScoreMethod = "quantile"
    bins: int = Field(default=5, ge=2, le=10)
    thresholds: dict[Literal["recency_days", "frequency", "monetary"], list[float]] = Field(default_factory=dict)
    relative_error: float = Field(default=0.0005, gt=0, lt=1)

    @model_validator(mode="after")
    def _thresholds_fit_bins(self) -> ScoreSettings:
        if self.method == "thresholds":
            for metric in ("recency_days", "frequency", "monetary"):
                cuts = self.thresholds.get(metric)
                if cuts is None:
                    raise ValueError(f"method 'thresholds' needs thresholds.{metric}")
                if len(cuts) != self.bins - 1:
                    raise ValueError(f"thresholds.{metric} needs {self.bins - 1} cut points for {self.bins} bins")
                if list(cuts) != sorted(cuts):
                    raise ValueError(f"thresholds.{metric} must be ascending")
        return self


class Rule(_Frozen):
    """A named rule. ``condition`` is a Spark SQL boolean expression over the features/segments columns."""

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    condition: str
    display_name: str | None = None
    display_name_zh: str | None = None
    description: str | None = None


class RuleSet(_Frozen):
    """Rules in priority order.

    ``exclusive``: first match wins, the last rule must be an explicit catch-all (condition ``true``), the result is one
    column. ``tags``: every matching rule adds a ``(tag_group, tag)`` row.
    """

    kind: Literal["exclusive", "tags"]
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _shape(self) -> RuleSet:
        names = [r.name for r in self.rules]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"duplicate rule names: {', '.join(duplicated)}")
        if self.kind == "exclusive" and self.rules[-1].condition.strip().lower() != CATCH_ALL:
            raise ValueError(
                f"an exclusive rule set must end with a catch-all rule (condition: {CATCH_ALL}); "
                f"the last rule is '{self.rules[-1].name}'"
            )
        return self


class ValueClassSettings(_Frozen):
    """ABC (Pareto) classes by cumulative share of revenue, customers ordered by monetary value descending."""

    classes: list[str] = Field(default_factory=lambda: ["A", "B", "C"], min_length=2)
    cumulative_revenue_shares: list[float] = Field(default_factory=lambda: [0.8, 0.95])
    resolution: int = Field(default=1000, ge=10, description="Quantile grid used to locate the share boundaries.")

    @model_validator(mode="after")
    def _lengths(self) -> ValueClassSettings:
        shares = self.cumulative_revenue_shares
        if len(shares) != len(self.classes) - 1:
            raise ValueError("cumulative_revenue_shares needs one boundary fewer than classes")
        if shares != sorted(shares) or not all(0 < s < 1 for s in shares):
            raise ValueError("cumulative_revenue_shares must be ascending and within (0, 1)")
        return self


class SegmentSettings(_Frozen):
    """Exclusive rule sets written as columns of ``customer_segments`` (``rfm_segment`` is required)."""

    rule_sets: dict[str, RuleSet]

    @model_validator(mode="after")
    def _exclusive(self) -> SegmentSettings:
        for name, rs in self.rule_sets.items():
            if rs.kind != "exclusive":
                raise ValueError(f"segments.rule_sets.{name} must be kind: exclusive (tags go under tags.rule_sets)")
        if "rfm_segment" not in self.rule_sets:
            raise ValueError("segments.rule_sets needs an 'rfm_segment' rule set")
        return self


class TagSettings(_Frozen):
    rule_sets: dict[str, RuleSet] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _tags(self) -> TagSettings:
        for name, rs in self.rule_sets.items():
            if rs.kind != "tags":
                raise ValueError(f"tags.rule_sets.{name} must be kind: tags")
        return self


class MonitoringSettings(_Frozen):
    max_segment_share: float = Field(default=0.5, gt=0, le=1)
    min_segment_share: float = Field(default=0.01, ge=0, lt=1)
    max_share_change: float = Field(default=0.1, gt=0, le=1)


class TierKeep(_Frozen):
    """What keeps a member in a tier once reached, and for how long failing it is tolerated."""

    condition: str | None = Field(
        default=None, description="Spark SQL boolean; null: only meeting the tier's upgrade condition keeps it."
    )
    grace_days: int = Field(default=0, ge=0, description="Days the keep condition may fail before the downgrade.")


class TierSettings(_Frozen):
    """Stateful membership tiers: upgrades apply at once, downgrades only after a grace period.

    Today's qualification comes from the exclusive rule set ``rule_set`` (upgrade conditions); the tier held comes from
    the previous ``customer_segments`` snapshot, so the tier is state rather than a pure function of today's features.
    """

    rule_set: str = "membership_tier"
    levels: list[str] = Field(min_length=2, description="Tier names from lowest to highest.")
    keep: dict[str, TierKeep] = Field(default_factory=dict)
    downgrade: Literal["one_level", "to_qualified"] = "one_level"

    @model_validator(mode="after")
    def _levels(self) -> TierSettings:
        if len(set(self.levels)) != len(self.levels):
            raise ValueError("levels must be distinct")
        unknown = sorted(set(self.keep) - set(self.levels))
        if unknown:
            raise ValueError(f"keep names unknown tier(s): {', '.join(unknown)}")
        return self


Objective = Literal["acquire", "activate", "retain", "recall"]


class CampaignSpec(_Frozen):
    """One campaign's target group: who (condition), what share is held out, where and when it is sent."""

    id: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    objective: Objective
    condition: str
    control_share: float = Field(ge=0, lt=1)
    channel: str
    trigger: str
    display_name: str | None = None
    display_name_zh: str | None = None
    description: str | None = None


class AudienceSettings(_Frozen):
    campaigns: list[CampaignSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> AudienceSettings:
        ids = [c.id for c in self.campaigns]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"duplicate campaign ids: {', '.join(duplicated)}")
        return self


class EvaluationSettings(_Frozen):
    """How ``evaluate`` attributes campaign responses to the audience drawn on the as-of date."""

    segment_dimensions: list[str] = Field(
        default_factory=lambda: ["rfm_segment"], description="customer_segments columns uplift is broken down by."
    )
    response_window_days: int = Field(
        default=30, gt=0, description="Responses from the as-of date up to this many days later count."
    )
    confidence_z: float = Field(default=1.96, gt=0, description="Normal quantile of the interval (1.96: 95%).")


# --------------------------------------------------------------------------------------------------------------------
# Models (train and score)
# --------------------------------------------------------------------------------------------------------------------
ClvMetric = Literal["holdout_mae", "holdout_rmse", "holdout_total_abs_error", "spend_mae"]
ChurnMetric = Literal["auc", "pr_auc", "brier", "lift_top_decile"]


class ClvModelSettings(_Frozen):
    """BG/NBD + Gamma-Gamma: the calibration/holdout split, the CLV horizon and when a new fit becomes champion."""

    registered_model: str = "segmentation_clv"
    time_unit: Literal["days", "weeks"] = "weeks"
    calibration_end: dt.date | None = Field(
        default=None, description="Last day of the calibration window; null: as-of minus holdout_days."
    )
    holdout_days: int = Field(default=90, gt=0)
    horizon_days: int = Field(default=365, gt=0, description="CLV and expected_purchases horizon.")
    cash_flow_step_days: int = Field(default=30, gt=0, description="CLV cash flows are discounted once per step.")
    annual_discount_rate: float = Field(default=0.1, gt=-1, lt=10)
    monetary_significant_digits: int = Field(
        default=4, ge=2, le=12, description="Average order values are rounded to this many digits for the fit."
    )
    frequency_table_max: int = Field(default=7, ge=1, description="Last row ('7+') of the actual-vs-expected table.")
    promotion_metric: ClvMetric = "holdout_mae"
    promotion_min_improvement: float = Field(default=0.0, ge=0)
    max_iterations: int = Field(default=5000, gt=0)


DEFAULT_CHURN_FEATURES = (
    "recency_days",
    "tenure_days",
    "frequency",
    "monetary",
    "orders_30d",
    "orders_90d",
    "orders_365d",
    "amount_90d",
    "amount_365d",
    "avg_order_value",
    "mean_interval_days",
    "std_interval_days",
    "channel_count",
    "discount_share",
    "coupon_share",
    "refund_share",
)


class ChurnModelSettings(_Frozen):
    """Gradient-boosted churn classifier: label horizon, holdout share, features, trees and promotion rule."""

    registered_model: str = "segmentation_churn"
    horizon_days: int = Field(default=90, gt=0, description="Churned = no completed purchase in this many days.")
    cutoff: dt.date | None = Field(default=None, description="Feature cut-off; null: as-of minus horizon_days.")
    holdout_share: float = Field(default=0.3, gt=0, lt=1)
    features: list[str] = Field(default_factory=lambda: list(DEFAULT_CHURN_FEATURES), min_length=1)
    null_fill: float = Field(default=-1.0, description="Value of a missing feature (e.g. no interval yet).")
    max_iter: int = Field(default=40, gt=0)
    max_depth: int = Field(default=4, gt=0)
    step_size: float = Field(default=0.1, gt=0, le=1)
    seed: int = 42
    quantile_relative_error: float = Field(default=0.001, gt=0, lt=1)
    promotion_metric: ChurnMetric = "auc"
    promotion_min_improvement: float = Field(default=0.0, ge=0)


class ModelSettings(_Frozen):
    clv: ClvModelSettings = Field(default_factory=ClvModelSettings)
    churn: ChurnModelSettings = Field(default_factory=ChurnModelSettings)


class Settings(_Frozen):
    """The whole configuration of every job."""

    spark: SparkSettings = Field(default_factory=SparkSettings)
    inputs: Inputs
    outputs: Outputs
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    generate: GenerateSettings
    quality: QualitySettings
    features: FeatureSettings
    rfm: ScoreSettings = Field(default_factory=ScoreSettings)
    value_class: ValueClassSettings = Field(default_factory=ValueClassSettings)
    segments: SegmentSettings
    tags: TagSettings = Field(default_factory=TagSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    tiers: TierSettings | None = None
    audiences: AudienceSettings = Field(default_factory=AudienceSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    extensions: dict[str, Any] = Field(
        default_factory=dict, description="Free-form settings of optional modules; validated by those modules."
    )
    # Which file (or the command line) set each dotted key: lets checks made after loading (rule expressions against
    # the feature schema) name the file to fix. Private, so it is not part of the run id.
    _origin: dict[str, str] = PrivateAttr(default_factory=dict)
    _sources: tuple[str, ...] = PrivateAttr(default=())

    def source_of(self, dotted_key: str) -> str | None:
        """The file (or ``<command line>``) that last set ``dotted_key`` or a key under it; None if unknown."""
        if not self._sources:
            return None
        return _source_of(dotted_key.split("."), self._origin, self._sources)

    @model_validator(mode="after")
    def _tiers_match_rule_set(self) -> Settings:
        if self.tiers is None:
            return self
        rule_set = self.segments.rule_sets.get(self.tiers.rule_set)
        if rule_set is None:
            raise ValueError(f"tiers.rule_set: '{self.tiers.rule_set}' is not a rule set under segments.rule_sets")
        names = {r.name for r in rule_set.rules}
        if names != set(self.tiers.levels):
            raise ValueError(
                f"tiers.levels {self.tiers.levels} must name exactly the rules of segments.rule_sets."
                f"{self.tiers.rule_set} ({', '.join(sorted(names))})"
            )
        return self


# --------------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------------
COMMAND_LINE = "<command line>"


def _merge(
    base: dict[str, Any], layer: Mapping[str, Any], source: str, origin: dict[str, str], prefix: str = ""
) -> None:
    """Deep-merge ``layer`` into ``base`` recording which source set each dotted key."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value, source, origin, dotted + ".")
        else:
            base[key] = _plain(value)
            origin[dotted] = source


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{path}{where}: malformed YAML: {getattr(exc, 'problem', exc)}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``dotted.key=value`` override; the value is read as YAML so numbers and lists keep their type."""
    if "=" not in text:
        raise ConfigError(f"{COMMAND_LINE}: override '{text}' is not of the form dotted.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"{COMMAND_LINE}: override '{text}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"{COMMAND_LINE}: override '{text}': value is not valid YAML") from exc
    return key, value


def _nest(key: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _source_of(loc: Sequence[Any], origin: Mapping[str, str], sources: Sequence[str]) -> str:
    """The last layer that set the key at ``loc``, one of its parents, or one of its children."""
    dotted = ".".join(str(p) for p in loc if not isinstance(p, int))
    related = [
        src
        for key, src in origin.items()
        if key == dotted or key.startswith(dotted + ".") or dotted.startswith(key + ".")
    ]
    if not related:
        return sources[-1] if sources else COMMAND_LINE
    return max(related, key=lambda src: sources.index(src) if src in sources else -1)


def _format_loc(loc: Sequence[Any], data: Mapping[str, Any]) -> str:
    """Dotted key with rule names instead of list positions where the list holds rules."""
    out: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            item = node[part]
            label = item.get("name") if isinstance(item, dict) else None
            out.append(f"[{part}]" if label is None else f"[{part}:{label}]")
            node = item
        else:
            out.append(("." if out else "") + str(part))
            node = node.get(part) if isinstance(node, dict) else None
    return "".join(out)


def resolve_base(conf_files: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The files to merge: ``base.yaml`` beside the first file comes first unless it is already listed."""
    paths = [Path(p) for p in conf_files]
    if not paths:
        raise ConfigError("no configuration file given (use --conf conf/local.yaml)")
    base = paths[0].parent / "base.yaml"
    if base.exists() and all(p.resolve() != base.resolve() for p in paths):
        paths.insert(0, base)
    return paths


def load_settings(conf_files: Sequence[str | os.PathLike[str]], overrides: Iterable[str] = ()) -> Settings:
    """Merge the YAML layers and overrides and validate them.

    Raises:
        ConfigError: naming the file (or the command line), the dotted key, the rule and the reason.
    """
    paths = resolve_base(conf_files)
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for path in paths:
        _merge(merged, _read_yaml(path), str(path), origin)
    for text in overrides:
        key, value = parse_override(text)
        _merge(merged, _nest(key, value), COMMAND_LINE, origin)
    try:
        settings = Settings.model_validate(merged)
        settings._origin = dict(origin)
        settings._sources = (*[str(p) for p in paths], COMMAND_LINE)
        return settings
    except ValidationError as exc:
        files = [str(p) for p in paths] + [COMMAND_LINE]
        lines = []
        for err in exc.errors():
            loc = err["loc"]
            source = _source_of(loc, origin, files)
            key = _format_loc(loc, merged)
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            lines.append(f"{source}: {key}: {message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None


def parse_as_of(text: str) -> dt.date:
    """The as-of date of a run (YYYY-MM-DD). No job reads the clock."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{COMMAND_LINE}: --as-of '{text}' is not a date of the form YYYY-MM-DD") from exc

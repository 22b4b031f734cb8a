"""The whole configuration of every job, and the sections that are not rules or models.

A job's configuration is one or more YAML files merged in order (later files win), then ``dotted.key=value``
overrides from the command line (see ``loader``). The merged mapping is validated into these frozen pydantic models
where unknown keys are errors, so a typo in a rule set fails at load time instead of silently using a default.
Rules (segments, tags, tiers, audiences) live in ``rules``, the trained models' settings in ``settings_models``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from segmentation.config.common import _Frozen, _source_of
from segmentation.config.orders import GenerateSettings, QualitySettings
from segmentation.config.rules import (
    AudienceSettings,
    EvaluationSettings,
    MonitoringSettings,
    SegmentSettings,
    TagSettings,
    TierSettings,
)
from segmentation.config.settings_models import ModelSettings


# --------------------------------------------------------------------------------------------------------------------
# Infrastructure
# --------------------------------------------------------------------------------------------------------------------
class SparkSettings(_Frozen):
    """How the SparkSession is built. On a cluster ``master`` is null: spark-submit or the platform decides."""

    master: str | None = "local[*]"
    app_name: str
    driver_memory: str | None = None
    jars_dir: str | None = Field(
        default=None,
        description="Folder with Delta's jars; defaults to $SEGMENTATION_JARS_DIR. Null on platforms shipping Delta.",
    )
    conf: dict[str, str]
    remote: str | None = Field(
        default=None,
        description="Spark Connect endpoint (sc://host:port): the jobs run on that server and master, driver_memory,"
        " jars_dir and static conf are the server's business. Null: $SPARK_REMOTE if set, else a classic session.",
    )

    @field_validator("conf", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
        return value


class TableRef(_Frozen):
    """An input table the user points at their own data: a storage ``path`` or a catalog table ``name``, not both."""

    path: str | None = Field(description="A folder or URI (s3://, abfss://, dbfs:/...); required unless name is set.")
    name: str | None = Field(
        default=None, description="A catalog table: catalog.schema.table, schema.table or table (backquotes allowed)."
    )
    format: Literal["delta", "parquet"] = "delta"

    @model_validator(mode="before")
    @classmethod
    def _name_instead_of_path(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("name") is not None and "path" not in data:
            return {**data, "path": None}
        return data

    @model_validator(mode="after")
    def _path_or_name(self) -> TableRef:
        if (self.path is None) == (self.name is None):
            raise ValueError(
                "set exactly one of path (a folder or URI) and name (a catalog table such as main.sales.orders); a "
                "layer that switches from one to the other sets the other to null"
            )
        if self.name is not None and not self.name.strip():
            raise ValueError("name is blank")
        return self


class Inputs(_Frozen):
    orders: TableRef
    identity_map: TableRef | None = None
    profiles: TableRef | None = None
    campaign_responses: TableRef | None = None
    fx_rates: TableRef | None = None
    exclusions: TableRef | None = None


def _known_output_tables(tables: dict[str, str]) -> dict[str, str]:
    """``outputs.tables`` renames tables of the output registry; a key naming no registered table is an error."""
    from segmentation.outputs import OUTPUTS

    unknown = sorted(set(tables) - set(OUTPUTS))
    if unknown:
        raise ValueError(f"unknown output table(s) {', '.join(unknown)}; known: {', '.join(OUTPUTS)}")
    return tables


class Outputs(_Frozen):
    """Where the output tables live: folders under ``path``, or with ``schema`` set catalog tables by name."""

    # ``schema`` by its alias in files, and by field name too, so a ``model_dump()`` validates back
    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, validate_by_alias=True)

    path: str | None = Field(default=None, description="Folder (or URI) of path-addressed output tables.")
    catalog: str | None = Field(
        default=None, description="Catalog of the output tables (Unity Catalog, spark_catalog); null: the current one."
    )
    schema_: str | None = Field(
        default=None,
        alias="schema",
        description="Schema (database) of the output tables: set, every output is a managed catalog table"
        " [catalog.]schema.<outputs.tables name>, created with CREATE TABLE ... USING DELTA; null: tables under path.",
    )
    tables: dict[str, str] = Field(
        default_factory=dict,
        description="Names of output tables where they differ from the registry's (segmentation.outputs.OUTPUTS).",
    )

    @field_validator("tables")
    @classmethod
    def _registered_tables(cls, tables: dict[str, str]) -> dict[str, str]:
        return _known_output_tables(tables)

    target_file_rows: int = Field(
        default=2_000_000, gt=0, description="Rows per output file; keeps large snapshots from making tiny files."
    )
    report_dir: str = Field(
        default="reports", description="Local folder of the HTML reports (segmentation_<as-of>.html)."
    )
    commit_retries: int = Field(
        default=5, ge=0, le=20, description="Retries of a Delta commit that lost a race with a concurrent run."
    )
    log_dir: str = Field(
        default="logs",
        description="Folder of each command's log file (segmentation_<verb>_<as-of>.log): the full log, Java stack "
        "traces included, that the console only points to.",
    )

    @model_validator(mode="after")
    def _path_or_schema(self) -> Outputs:
        if self.path is None and self.schema_ is None:
            raise ValueError("set path (a folder for the output tables) or schema (to name them in a catalog)")
        if self.catalog is not None and self.schema_ is None:
            raise ValueError("catalog needs schema: the output tables are named catalog.schema.<table>")
        return self

    @property
    def by_name(self) -> bool:
        """Whether output tables are catalog tables named ``[catalog.]schema.table`` rather than folders."""
        return self.schema_ is not None

    def table_path(self, name: str) -> str:
        """Where an output table lives given its registry name (``segmentation.outputs.OUTPUTS``).

        A folder under ``path``, or with ``schema`` set the backquoted catalog name (```main`.`marketing`.`t```), which
        the io layer reads as a table name: a string starting with a backquote is never taken for a folder.
        """
        table = self.tables.get(name, name)
        if self.schema_ is None:
            return str(Path(self.path) / table)
        parts = [p for p in (self.catalog, self.schema_, table) if p is not None]
        return ".".join("`" + p.replace("`", "``") + "`" for p in parts)


class MlflowSettings(_Frozen):
    tracking_uri: str
    experiment: str
    registry_uri: str | None = None
    artifact_location: str | None = Field(
        default=None,
        description="Where a new experiment stores artifacts; null: 'mlartifacts' beside a sqlite tracking file.",
    )
    dfs_tmpdir: str | None = Field(
        default=None, description="Scratch folder (DFS on a cluster) Spark ML models pass through when logged."
    )


# --------------------------------------------------------------------------------------------------------------------
# Features and scores
# --------------------------------------------------------------------------------------------------------------------
class FeatureSettings(_Frozen):
    windows_days: list[int] = Field(min_length=1)
    rfm_window_days: int | None = Field(
        gt=0, description="Frequency/monetary window; null means the whole history up to the as-of."
    )
    categories: list[str] = Field(description="Categories that get a share_<category> column.")
    channels: list[str] = Field(description="Channels that get a share_<channel> column.")
    percentiles: list[str] = Field(
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

    method: ScoreMethod
    bins: int = Field(ge=2, le=10)
    thresholds: dict[Literal["recency_days", "frequency", "monetary"], list[float]]
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


class ValueClassSettings(_Frozen):
    """ABC (Pareto) classes by cumulative share of revenue, customers ordered by monetary value descending."""

    classes: list[str] = Field(min_length=2)
    cumulative_revenue_shares: list[float]
    resolution: int = Field(default=1000, ge=10, description="Quantile grid used to locate the share boundaries.")

    @model_validator(mode="after")
    def _lengths(self) -> ValueClassSettings:
        shares = self.cumulative_revenue_shares
        if len(shares) != len(self.classes) - 1:
            raise ValueError("cumulative_revenue_shares needs one boundary fewer than classes")
        if shares != sorted(shares) or not all(0 < s < 1 for s in shares):
            raise ValueError("cumulative_revenue_shares must be ascending and within (0, 1)")
        return self


# --------------------------------------------------------------------------------------------------------------------
# Activation: audiences with an optional control rotation, the segment membership state
# --------------------------------------------------------------------------------------------------------------------
class Audiences(AudienceSettings):
    """``audiences``: the campaigns (``rules.AudienceSettings``) and how long a control group is kept."""

    control_rotation_days: int | None = Field(
        gt=0,
        description="Null: a customer keeps its arm for good. N: the arm hash is salted with the N-day period of the"
        " as-of date (days since 1970-01-01 // N), so a long-lived control group is re-drawn every period.",
    )


class PredictedValueTierSettings(_Frozen):
    """Tiers of a predicted value (``clv`` once ``score`` ran), by share of scored customers from the top."""

    column: str
    tiers: list[str] = Field(min_length=2, description="Tier names, highest value first.")
    top_shares: list[float] = Field(
        description="Cumulative shares of scored customers from the top: [0.2, 0.5] puts the top 20% in the first"
        " tier, the next 30% in the second, the rest in the last."
    )

    @model_validator(mode="after")
    def _shares(self) -> PredictedValueTierSettings:
        if len(self.top_shares) != len(self.tiers) - 1:
            raise ValueError("top_shares needs one share fewer than tiers")
        if self.top_shares != sorted(self.top_shares) or not all(0 < s < 1 for s in self.top_shares):
            raise ValueError("top_shares must be ascending and within (0, 1)")
        if len(set(self.tiers)) != len(self.tiers):
            raise ValueError("tiers must be distinct")
        return self


class ActivationSettings(_Frozen):
    """``segment_membership`` and ``segment_changes`` (docs/activation.md)."""

    predicted_value_tier: PredictedValueTierSettings | None = Field(
        description="A membership dimension ``score`` maintains from a prediction; null: none."
    )


class Settings(_Frozen):
    """The whole configuration of every job."""

    spark: SparkSettings
    inputs: Inputs
    outputs: Outputs
    mlflow: MlflowSettings
    generate: GenerateSettings
    quality: QualitySettings
    features: FeatureSettings
    rfm: ScoreSettings
    value_class: ValueClassSettings
    segments: SegmentSettings
    tags: TagSettings
    monitoring: MonitoringSettings
    tiers: TierSettings | None = Field(description="Null: no stateful membership tiers.")
    audiences: Audiences
    activation: ActivationSettings
    evaluation: EvaluationSettings
    models: ModelSettings
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

"""The registry of output tables: one entry per table holds its contract and how it is written.

A job never passes write options itself: ``runs.JobRun.write(name, df)`` looks the table up here, so the NOT NULL and
CHECK constraints Delta enforces, Change Data Feed, rows per file and file count are declared once per table. Adding an
output table is one entry here plus the transform that computes it; the job that produces it lists its name.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Check:
    """A named CHECK constraint on one column; ``{bins}`` in the expression is the configured number of score bins."""

    name: str
    column: str
    expression: str


@dataclass(frozen=True)
class OutputConstraints:
    """NOT NULL columns and CHECK constraints of an output table, set in the commit that creates the table.

    A CHECK on a nullable column states ``IS NULL OR`` explicitly (prospects carry no scores). Constraints on a column
    the table does not have are left out, so a contract can describe optional columns.
    """

    not_null: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()

    def resolved(self, bins: int) -> OutputConstraints:
        return OutputConstraints(
            self.not_null, tuple(Check(c.name, c.column, c.expression.format(bins=bins)) for c in self.checks)
        )

    def for_columns(self, columns: Collection[str]) -> OutputConstraints:
        present = set(columns)
        return OutputConstraints(
            tuple(c for c in self.not_null if c in present), tuple(c for c in self.checks if c.column in present)
        )


@dataclass(frozen=True)
class OutputSpec:
    """How one output table is written.

    Attributes:
        constraints: enforced by Delta on every write (a violating write fails and commits nothing).
        kind: ``snapshot`` replaces the run's ``as_of_date`` slice in one commit; ``append`` adds rows (the manifest);
            ``merge`` is a current-state table upserted by ``key`` where only rows that differ are written
            (``runs.JobRun.merge``).
        rows_per_file: cap files at ``outputs.target_file_rows`` rows (customer-level tables).
        files: write exactly this many files (small per-segment tables).
        change_data_feed: create the table with Change Data Feed on, so downstream syncs read only what changed.
        key: the column a ``merge`` table is keyed by.
        deletion_vectors: a MERGE marks replaced rows in deletion vectors instead of rewriting their files, so it
            writes only the changed rows. Readers need deletion-vector support (Spark, DuckDB's delta extension,
            delta-rs through its DataFusion ``QueryBuilder``; not delta-rs ``to_pyarrow_table``).
    """

    constraints: OutputConstraints = field(default_factory=OutputConstraints)
    kind: Literal["snapshot", "append", "merge", "layer"] = "snapshot"
    rows_per_file: bool = False
    files: int | None = None
    change_data_feed: bool = False
    key: str | None = None
    deletion_vectors: bool = False

    def properties(self) -> dict[str, str]:
        properties = {"delta.enableChangeDataFeed": "true"} if self.change_data_feed else {}
        if self.deletion_vectors:
            properties["delta.enableDeletionVectors"] = "true"
        return properties


def _score_check(column: str) -> Check:
    return Check(f"{column}_range", column, f"{column} IS NULL OR ({column} >= 1 AND {column} <= {{bins}})")


OUTPUTS: Mapping[str, OutputSpec] = {
    "orders_rejected": OutputSpec(OutputConstraints(not_null=("as_of_date", "reject_reason", "run_id"))),
    "customer_features": OutputSpec(
        OutputConstraints(
            not_null=("as_of_date", "customer_id", "recency_days", "frequency", "monetary", "orders_total"),
            checks=(
                Check("recency_not_negative", "recency_days", "recency_days >= 0"),
                Check("orders_positive", "orders_total", "orders_total > 0"),
            ),
        ),
        rows_per_file=True,
    ),
    "customer_segments": OutputSpec(
        OutputConstraints(
            not_null=("as_of_date", "customer_id", "rfm_segment", "run_id"),
            checks=(
                _score_check("r_score"),
                _score_check("f_score"),
                _score_check("m_score"),
                Check(
                    "churn_probability_range",
                    "churn_probability",
                    "churn_probability IS NULL OR (churn_probability >= 0 AND churn_probability <= 1)",
                ),
            ),
        ),
        rows_per_file=True,
        change_data_feed=True,
    ),
    "segment_summary": OutputSpec(
        OutputConstraints(
            not_null=("as_of_date", "dimension", "customers"),
            checks=(Check("customers_positive", "customers", "customers > 0"),),
        ),
        files=1,
    ),
    "segment_migration": OutputSpec(files=1),
    "customer_tags": OutputSpec(
        OutputConstraints(not_null=("as_of_date", "customer_id", "tag_group", "tag")), rows_per_file=True
    ),
    "campaign_audiences": OutputSpec(
        OutputConstraints(
            not_null=("as_of_date", "campaign_id", "customer_id", "arm"),
            checks=(Check("arm_values", "arm", "arm IN ('treatment', 'control')"),),
        ),
        rows_per_file=True,
    ),
    "segment_changes": OutputSpec(
        OutputConstraints(
            not_null=("as_of_date", "customer_id", "dimension", "event", "run_id"),
            checks=(Check("event_values", "event", "event IN ('entered', 'exited', 'moved')"),),
        ),
        rows_per_file=True,
    ),
    "segment_membership": OutputSpec(
        OutputConstraints(not_null=("customer_id", "is_current")),
        kind="merge",
        key="customer_id",
        change_data_feed=True,
        deletion_vectors=True,
    ),
    "identity_conflicts": OutputSpec(
        OutputConstraints(not_null=("as_of_date", "channel_customer_id", "claims", "policy", "run_id")), files=1
    ),
    "campaign_uplift": OutputSpec(files=1),
    "orders_clean": OutputSpec(kind="layer"),
    "customer_state": OutputSpec(kind="layer"),
    "segment_runs": OutputSpec(
        OutputConstraints(
            not_null=("as_of_date", "job", "run_id", "status"),
            checks=(Check("status_values", "status", "status IN ('complete', 'failed')"),),
        ),
        kind="append",
    ),
}


def spec(table: str) -> OutputSpec:
    """The registry entry of ``table``; an unknown name is a programming error, named with the known ones."""
    try:
        return OUTPUTS[table]
    except KeyError:
        raise KeyError(f"no output table {table!r} in the registry: {', '.join(OUTPUTS)}") from None


def output_constraints(table: str, bins: int) -> OutputConstraints:
    """The constraints of an output table with ``{bins}`` resolved."""
    return spec(table).constraints.resolved(bins)

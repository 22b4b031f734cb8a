"""Segments, tags, tiers and audiences: rules as data, compiled to Spark SQL expressions and checked at load time.

Exclusive rule sets give one column each (first match wins, an explicit catch-all last); tag rule sets add one row per
matching rule. Tiers turn an exclusive rule set into state; audiences select campaign targets and hold out a control.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from segmentation.config.common import CATCH_ALL, _Frozen


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
    rule_sets: dict[str, RuleSet]

    @model_validator(mode="after")
    def _tags(self) -> TagSettings:
        for name, rs in self.rule_sets.items():
            if rs.kind != "tags":
                raise ValueError(f"tags.rule_sets.{name} must be kind: tags")
        return self


class MonitoringSettings(_Frozen):
    max_segment_share: float = Field(gt=0, le=1)
    min_segment_share: float = Field(ge=0, lt=1)
    max_share_change: float = Field(gt=0, le=1)


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

    rule_set: str
    levels: list[str] = Field(min_length=2, description="Tier names from lowest to highest.")
    keep: dict[str, TierKeep]
    downgrade: Literal["one_level", "to_qualified"]

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
    campaigns: list[CampaignSpec]

    @model_validator(mode="after")
    def _unique(self) -> AudienceSettings:
        ids = [c.id for c in self.campaigns]
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        if duplicated:
            raise ValueError(f"duplicate campaign ids: {', '.join(duplicated)}")
        return self


class EvaluationSettings(_Frozen):
    """How ``evaluate`` attributes campaign responses to the audience drawn on the as-of date."""

    segment_dimensions: list[str] = Field(description="customer_segments columns uplift is broken down by.")
    response_window_days: int = Field(
        gt=0, description="Responses from the as-of date up to this many days later count."
    )
    confidence_z: float = Field(gt=0, description="Normal quantile of the interval (1.96: 95%).")

"""Typed, layered configuration.

``settings`` holds the root ``Settings`` and the infrastructure, data and score sections; ``rules`` the segments, tags,
tiers and audiences; ``settings_models`` the trained models; ``loader`` reads, merges and validates the YAML layers.
Import from here: ``from segmentation.config import Settings, load_settings``.

Business defaults live in ``conf/base.yaml`` only, which every load merges first: a field base.yaml sets has no default
in these models, so a value is never declared twice and a key missing from the files is an error naming it. Fields
that keep a default are technical knobs base.yaml leaves alone, or optional attributes of list and map entries.
"""

from segmentation.config.common import CATCH_ALL, COMMAND_LINE, ConfigError
from segmentation.config.loader import load_settings, parse_as_of, parse_override, resolve_base
from segmentation.config.orders import ChannelSpec, GenerateSettings, IdentitySettings, QualitySettings
from segmentation.config.rules import (
    AudienceSettings,
    CampaignSpec,
    EvaluationSettings,
    MonitoringSettings,
    Objective,
    Rule,
    RuleSet,
    SegmentSettings,
    TagSettings,
    TierKeep,
    TierSettings,
)
from segmentation.config.settings import (
    FeatureSettings,
    Inputs,
    MlflowSettings,
    Outputs,
    ScoreMethod,
    ScoreSettings,
    Settings,
    SparkSettings,
    TableRef,
    ValueClassSettings,
)
from segmentation.config.settings_models import (
    ChurnGuardSettings,
    ChurnMetric,
    ChurnModelSettings,
    ClvGuardSettings,
    ClvMetric,
    ClvModelSettings,
    ModelSettings,
)

__all__ = [
    "CATCH_ALL",
    "COMMAND_LINE",
    "AudienceSettings",
    "CampaignSpec",
    "ChannelSpec",
    "ChurnGuardSettings",
    "ChurnMetric",
    "ChurnModelSettings",
    "ClvGuardSettings",
    "ClvMetric",
    "ClvModelSettings",
    "ConfigError",
    "EvaluationSettings",
    "FeatureSettings",
    "GenerateSettings",
    "IdentitySettings",
    "Inputs",
    "MlflowSettings",
    "ModelSettings",
    "MonitoringSettings",
    "Objective",
    "Outputs",
    "QualitySettings",
    "Rule",
    "RuleSet",
    "ScoreMethod",
    "ScoreSettings",
    "SegmentSettings",
    "Settings",
    "SparkSettings",
    "TableRef",
    "TagSettings",
    "TierKeep",
    "TierSettings",
    "ValueClassSettings",
    "load_settings",
    "parse_as_of",
    "parse_override",
    "resolve_base",
]

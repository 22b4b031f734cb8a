"""Typed, layered configuration.

``settings`` holds the root ``Settings`` and the infrastructure, data and score sections; ``rules`` the segments, tags,
tiers and audiences; ``settings_models`` the trained models; ``loader`` reads, merges and validates the YAML layers.
Import from here: ``from segmentation.config import Settings, load_settings``.
"""

from segmentation.config.common import CATCH_ALL, COMMAND_LINE, ConfigError
from segmentation.config.loader import load_settings, parse_as_of, parse_override, resolve_base
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
    DEFAULT_TIMESTAMP_FORMATS,
    ChannelSpec,
    FeatureSettings,
    GenerateSettings,
    Inputs,
    MlflowSettings,
    Outputs,
    OutputTables,
    QualitySettings,
    ScoreMethod,
    ScoreSettings,
    Settings,
    SparkSettings,
    TableRef,
    ValueClassSettings,
)
from segmentation.config.settings_models import (
    DEFAULT_CHURN_FEATURES,
    ChurnMetric,
    ChurnModelSettings,
    ClvMetric,
    ClvModelSettings,
    ModelSettings,
)

__all__ = [
    "CATCH_ALL",
    "COMMAND_LINE",
    "DEFAULT_CHURN_FEATURES",
    "DEFAULT_TIMESTAMP_FORMATS",
    "AudienceSettings",
    "CampaignSpec",
    "ChannelSpec",
    "ChurnMetric",
    "ChurnModelSettings",
    "ClvMetric",
    "ClvModelSettings",
    "ConfigError",
    "EvaluationSettings",
    "FeatureSettings",
    "GenerateSettings",
    "Inputs",
    "MlflowSettings",
    "ModelSettings",
    "MonitoringSettings",
    "Objective",
    "OutputTables",
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

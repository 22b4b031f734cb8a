"""Every registered model family implements the model interface and fits the configuration and the output table."""

from __future__ import annotations

import inspect
import typing

import pytest

from segmentation.config import ModelSettings
from segmentation.models import registry
from segmentation.models.base import ModelFamily, PromotionSettings
from segmentation.transforms import segments

FAMILIES = list(registry.FAMILIES.items())


def test_registry_order_is_training_and_scoring_order():
    assert list(registry.FAMILIES) == ["clv", "churn"]


@pytest.mark.parametrize(("name", "family"), FAMILIES, ids=[name for name, _ in FAMILIES])
def test_family_implements_the_interface(name, family):
    assert issubclass(family, ModelFamily) and not inspect.isabstract(family)
    assert family.name == name
    for method in ("prepare", "fit", "evaluate", "params", "run_params", "score_columns", "log", "load"):
        assert callable(getattr(family, method)), method
    assert family.SCORE_COLUMNS and family.KEY_METRICS


@pytest.mark.parametrize(("name", "family"), FAMILIES, ids=[name for name, _ in FAMILIES])
def test_family_knows_the_direction_of_every_configurable_promotion_metric(name, family):
    section = ModelSettings.model_fields[name].annotation
    metrics = typing.get_args(section.model_fields["promotion_metric"].annotation)
    assert metrics and set(metrics) <= set(family.GREATER_IS_BETTER)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("clv", PromotionSettings("segmentation_clv", "holdout_mae", 0.0, False), id="clv"),
        pytest.param("churn", PromotionSettings("segmentation_churn", "auc", 0.0, True), id="churn"),
    ],
)
def test_promotion_settings_come_from_the_configuration(name, expected, settings_for):
    assert registry.family(name, settings_for()).promotion == expected
    better = registry.family(name, settings_for(f"models.{name}.promotion_min_improvement=0.01")).promotion
    assert better.min_improvement == 0.01


def test_families_fill_each_prediction_column_of_customer_segments_once():
    columns = [c for _, family in FAMILIES for c in family.SCORE_COLUMNS]
    assert sorted(columns) == sorted(segments.PREDICTION_COLUMNS)


def test_families_are_bound_to_the_settings_in_registry_order(settings_for):
    settings = settings_for()
    families = registry.families(settings)
    assert [f.name for f in families] == ["clv", "churn"]
    assert all(f.settings is settings for f in families)
    with pytest.raises(KeyError, match="registered: clv, churn"):
        registry.family("pareto_nbd", settings)

"""The baseline guard and how findings read in the log, on known numbers."""

from __future__ import annotations

import math

import pytest

from segmentation.models import guarding
from segmentation.models.guarding import GuardFinding


@pytest.mark.parametrize(
    ("value", "baseline", "greater_is_better", "max_loss", "loses"),
    [
        (0.78, 0.81, True, 0.0, True),  # AUC below the recency baseline
        (0.81, 0.81, True, 0.0, False),  # a tie is not a loss
        (0.80, 0.81, True, 0.02, False),  # within the allowed shortfall
        (0.20, 0.18, False, 0.0, True),  # Brier: lower is better
        (0.17, 0.18, False, 0.0, False),
        (math.nan, 0.81, True, 0.0, True),  # a model without a usable value loses
        (0.78, math.nan, True, 0.0, False),  # a baseline without one cannot be lost to
    ],
    ids=["auc-below", "tie", "within-tolerance", "brier-above", "brier-below", "model-nan", "baseline-nan"],
)
def test_loses_to_baseline(value, baseline, greater_is_better, max_loss, loses):
    found = guarding.loses_to_baseline("m", value, baseline, greater_is_better, max_loss, "the recency-only baseline")
    assert (found is not None) == loses
    if loses:
        assert (
            found.reason == "loses_to_baseline" and f"vs {baseline:.4f} for the recency-only baseline" in found.detail
        )


def test_findings_that_share_a_reason_are_one_tag():
    findings = [
        GuardFinding("not_converged", "purchase: x"),
        GuardFinding("a", "y"),
        GuardFinding("not_converged", "spend: z"),
    ]
    assert guarding.by_reason(findings) == {"not_converged": "purchase: x; spend: z", "a": "y"}


def test_every_reason_reads_as_words_in_the_log():
    line = guarding.refusal_message("clv", "segmentation_clv", "3", GuardFinding("degenerate_dropout", "4e-11 < 0.001"))
    assert line == (
        "clv model segmentation_clv v3 is registered but NOT made champion: the model says almost no customer ever"
        " stops buying, so it cannot tell lapsing customers from loyal ones [guard degenerate_dropout: 4e-11 < 0.001]"
    )
    reasons = {"not_converged", "parameter_at_bound", "degenerate_dropout", "p_alive_does_not_separate"}
    assert reasons | {"loses_to_baseline"} == set(guarding.MEANINGS)

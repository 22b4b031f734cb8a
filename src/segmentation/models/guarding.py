"""Why a trained model is refused ``@champion``: guard findings, what each means to a reader, the baseline check.

A family's fit and holdout produce :class:`GuardFinding` s (a stable ``reason`` and a ``detail`` with the numbers).
:mod:`.training` logs each one as a warning a marketing-ops reader can act on, :mod:`.tracking` tags the run with it
(``guard.<reason>`` = detail, ``guarded`` = true/false) and registers the version without promoting it. The purchase
model checks live with the maths (:mod:`.clv.guards`); the check against a family's own baseline is here, since any
family that trains a baseline alongside can use it. Limits come from the configuration (``models.<family>.guards``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from segmentation.models.clv.guards import GuardFinding

__all__ = [
    "BASELINE_MEANINGS",
    "MEANINGS",
    "GuardFinding",
    "by_reason",
    "candidate_message",
    "loses_to_baseline",
    "meaning",
    "refusal_message",
]

MEANINGS: Mapping[str, str] = {
    "not_converged": "the fit did not settle on an answer, so its numbers cannot be relied on",
    "parameter_at_bound": "a fitted parameter ran to an extreme value: the model describes an edge case, not the"
    " customers",
    "degenerate_dropout": "the model says almost no customer ever stops buying, so it cannot tell lapsing customers"
    " from loyal ones",
    "p_alive_does_not_separate": "customers silent for months get about the same chance of still being active as"
    " recent buyers, so 'at risk' lists built on it would be wrong",
    "loses_to_baseline": "it predicts the holdout worse than its own simple baseline",
}
"""Each guard's reason in words for the log; docs/models.md ("Guards") says what to do when one fires."""

BASELINE_MEANINGS: Mapping[str, str] = {
    "churn": "it predicts churn worse than simply ranking customers by days since their last order",
    "clv": "it forecasts holdout purchases worse than simply carrying each customer's own past purchase rate forward",
}
"""``loses_to_baseline`` in words for the families whose baseline a reader knows by name."""


def loses_to_baseline(
    metric: str,
    value: float,
    baseline: float,
    greater_is_better: bool,
    max_loss: float,
    baseline_name: str = "the baseline",
) -> GuardFinding | None:
    """A ``loses_to_baseline`` finding when the model trails its baseline on ``metric`` by more than ``max_loss``.

    A model without a usable value loses; a baseline without one cannot be lost to. ``baseline_name`` says which
    baseline in the finding's detail ("the recency-only baseline").
    """
    if math.isnan(baseline):
        return None
    loss = baseline - value if greater_is_better else value - baseline
    if math.isnan(value) or loss > max_loss:
        return GuardFinding(
            "loses_to_baseline",
            f"holdout {metric} {value:.4f} vs {baseline:.4f} for {baseline_name}"
            f" ({'higher' if greater_is_better else 'lower'} is better; allowed shortfall {max_loss:g})",
        )
    return None


def by_reason(findings: Iterable[GuardFinding]) -> dict[str, str]:
    """``{reason: detail}``; details of findings that share a reason are joined with ``; ``."""
    out: dict[str, str] = {}
    for f in findings:
        out[f.reason] = f"{out[f.reason]}; {f.detail}" if f.reason in out else f.detail
    return out


def refusal_message(family: str, registered_model: str, version: str, finding: GuardFinding) -> str:
    """One log line: which model version was kept from ``@champion``, why in words, and the numbers seen."""
    return (
        f"{family} model {registered_model} v{version} is registered but NOT made champion:"
        f" {meaning(family, finding.reason)}"
        f" [guard {finding.reason}: {finding.detail}]"
    )


def candidate_message(family: str, candidate: str, reason: str, detail: str) -> str:
    """One log line per guard that kept a candidate from being selected: the reason in words, with the numbers."""
    return f"{family} candidate {candidate} is not selected: {meaning(family, reason)} [guard {reason}: {detail}]"


def meaning(family: str, reason: str) -> str:
    """A guard reason in words for the log and the report (the family names its baseline)."""
    return (BASELINE_MEANINGS if reason == "loses_to_baseline" else {}).get(family) or MEANINGS.get(
        reason, reason.replace("_", " ")
    )

"""Checks a fitted purchase model must pass before it may score anyone: the reasons a fit is not to be trusted.

A maximum-likelihood fit can converge and still be useless. On data where few customers visibly stop buying, BG/NBD
can run to "nobody ever drops out" (``a`` towards 0 or ``b`` towards infinity): P(alive) is then about 1 for every
customer, including those silent for a year, and expected purchases rank one-time buyers above lapsed regulars.
Each check returns a :class:`GuardFinding` with a stable ``reason`` (for run tags and the log) and a sentence that
says what was seen; an empty list means the fit passed. Every limit is an argument (:class:`GuardLimits`), set from
the configuration by the caller; nothing here knows a business threshold.

Checks:

- ``not_converged``: the optimiser's own verdict (gradient not small, or a parameter on the safety box);
- ``parameter_at_bound``: a parameter more than ``max_param_ratio`` away from 1 in either direction;
- ``degenerate_dropout``: the implied chance of dropping out (BG/NBD and MBG/NBD: after a purchase, ``a / (a+b)``;
  Pareto/NBD: within one period, ``1 - (beta / (beta+1))^s``) below ``min_dropout``;
- ``p_alive_does_not_separate``: the customer-weighted mean P(alive) of recently active repeat buyers (silent at most
  ``active_periods``) minus that of long-silent ones (silent at least ``silent_periods``) is below
  ``min_p_alive_gap``. Skipped (no finding) when either group is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from segmentation.models.clv.params import FitDiagnostics


@dataclass(frozen=True)
class GuardLimits:
    """The limits of the checks, in model time units (periods) where they are times."""

    min_dropout: float
    max_param_ratio: float
    active_periods: float
    silent_periods: float
    min_p_alive_gap: float


@dataclass(frozen=True)
class GuardFinding:
    """One failed check: ``reason`` is a stable tag, ``detail`` says what was seen."""

    reason: str
    detail: str


def implied_dropout(family: str, params: dict[str, float]) -> float:
    """The implied chance of dropping out: after a purchase (``bgnbd``, ``mbgnbd``) or within one period
    (``pareto_nbd``)."""
    if family in ("bgnbd", "mbgnbd"):
        return params["a"] / (params["a"] + params["b"])
    if family == "pareto_nbd":
        return float(1.0 - (params["beta"] / (params["beta"] + 1.0)) ** params["s"])
    raise ValueError(f"unknown purchase model family {family!r}")


def check_purchase_fit(
    family: str,
    params: dict[str, float],
    diagnostics: FitDiagnostics,
    p_alive: Callable[[np.ndarray, np.ndarray, np.ndarray], npt.ArrayLike],
    x: npt.ArrayLike,
    t_x: npt.ArrayLike,
    T: npt.ArrayLike,  # noqa: N803 - T is the literature's name for the customer's age
    weights: npt.ArrayLike | None,
    limits: GuardLimits,
) -> list[GuardFinding]:
    """Every check of the module docstring on one fit; ``p_alive(x, t_x, T)`` is the family's P(alive) at the fitted
    parameters, evaluated on the training patterns ``(x, t_x, T)`` with their ``weights``."""
    findings = []
    if not diagnostics.converged:
        findings.append(GuardFinding("not_converged", diagnostics.message))
    extreme = {k: v for k, v in params.items() if not (1 / limits.max_param_ratio <= v <= limits.max_param_ratio)}
    if extreme:
        shown = ", ".join(f"{k} = {v:.3g}" for k, v in extreme.items())
        findings.append(
            GuardFinding(
                "parameter_at_bound", f"{shown}: beyond {limits.max_param_ratio:g}x from 1, the fit ran to an edge"
            )
        )
    dropout = implied_dropout(family, params)
    if dropout < limits.min_dropout:
        findings.append(
            GuardFinding(
                "degenerate_dropout",
                f"implied drop-out probability {dropout:.2g} < {limits.min_dropout:g}: the model says almost nobody"
                " ever stops buying",
            )
        )
    x_, t_x_, age = (np.asarray(v, dtype=float) for v in (x, t_x, T))
    w = np.ones_like(x_) if weights is None else np.asarray(weights, dtype=float)
    silence = age - t_x_
    repeat = x_ > 0
    active, silent = repeat & (silence <= limits.active_periods), repeat & (silence >= limits.silent_periods)
    if w[active].sum() > 0 and w[silent].sum() > 0:
        alive = np.asarray(p_alive(x_, t_x_, age), dtype=float)
        gap = float(np.average(alive[active], weights=w[active]) - np.average(alive[silent], weights=w[silent]))
        if gap < limits.min_p_alive_gap:
            findings.append(
                GuardFinding(
                    "p_alive_does_not_separate",
                    f"mean P(alive) of repeat buyers silent <= {limits.active_periods:g} periods exceeds that of"
                    f" those silent >= {limits.silent_periods:g} by {gap:.3f} < {limits.min_p_alive_gap:g}",
                )
            )
    return findings

"""Model parameters, fit results and the time unit that fitted parameters and scored inputs must share.

Plain frozen dataclasses that fitting, the numpy closed forms and the Spark columns all depend on, kept apart from
the maths so each of those layers imports only this; another model family (MBG/NBD, Pareto/NBD) adds its own
parameter and fit classes here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TypeVar

import numpy as np
import pyspark.sql.functions as F
from pyspark.sql import Column

_T = TypeVar("_T", float, np.ndarray, Column)

_DAYS_PER_UNIT = {"days": 1.0, "weeks": 7.0}


def to_unit(days: _T, time_unit: str) -> _T:
    """Convert a day count (number, numpy array or Spark Column) to the model's time unit.

    The BG/NBD parameter alpha carries the time unit, so fitted parameters and every scored recency, age and
    horizon must use the same one; doing the conversion in one place keeps them from drifting apart.

    Args:
        days: Duration(s) in days.
        time_unit: ``"days"`` or ``"weeks"``.

    Returns:
        The duration(s) in ``time_unit``, of the same kind as ``days``.

    Raises:
        ValueError: If ``time_unit`` is not supported.
    """
    try:
        per_unit = _DAYS_PER_UNIT[time_unit]
    except KeyError:
        raise ValueError(f"time_unit must be one of {sorted(_DAYS_PER_UNIT)}, got {time_unit!r}") from None
    if isinstance(days, Column):
        return days / F.lit(per_unit)
    if isinstance(days, (list, tuple)):
        return np.asarray(days, dtype=float) / per_unit
    return days / per_unit


def _check_positive(owner: str, values: dict[str, float]) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{owner}.{name} must be a finite positive number, got {value!r}")


@dataclass(frozen=True)
class BgNbdParams:
    """BG/NBD population parameters.

    Attributes:
        r: Shape of the gamma distribution of purchase rates across customers.
        alpha: Scale of that gamma distribution, in model time units (it changes with the unit).
        a: First shape of the beta distribution of drop-out probabilities.
        b: Second shape of the beta distribution of drop-out probabilities.
    """

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        _check_positive("BgNbdParams", asdict(self))

    def to_dict(self) -> dict[str, float]:
        """Plain dict, e.g. for logging as model parameters."""
        return asdict(self)


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma spend parameters (Fader & Hardie's p, q, gamma; ``v`` as in the ``lifetimes`` package).

    Attributes:
        p: Shape of the gamma distribution of a customer's transaction values around their mean.
        q: Shape of the gamma distribution of the per-customer scale across customers.
        v: Scale of that distribution. The population mean spend ``p * v / (q - 1)`` exists only for ``q > 1``.
    """

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        _check_positive("GammaGammaParams", asdict(self))

    def to_dict(self) -> dict[str, float]:
        """Plain dict, e.g. for logging as model parameters."""
        return asdict(self)

    @property
    def population_mean_spend(self) -> float:
        """Expected average order value of a customer we know nothing about (and of one with x = 0)."""
        if self.q <= 1:
            raise ValueError(f"Gamma-Gamma q={self.q} <= 1: the population mean spend is infinite")
        return self.p * self.v / (self.q - 1)


@dataclass(frozen=True)
class FitDiagnostics:
    """How a maximum-likelihood fit went.

    Attributes:
        log_likelihood: Total (weighted-sum) log-likelihood at the optimum, comparable with published values.
        n_customers: Sum of the weights, i.e. the number of customers the patterns stand for.
        n_patterns: Number of rows the optimiser saw (unique patterns when collapsed).
        converged: True if the gradient of the mean log-likelihood w.r.t. log-parameters is below 1e-6 and no
            parameter sits on the safety box; a False fit should not be used for scoring.
        iterations: Optimiser iterations over all restarts.
        gradient_norm: Max-abs gradient of the mean negative log-likelihood w.r.t. log-parameters at the optimum.
        message: The verdict, the gradient norm and the optimiser's last message (L-BFGS-B often ends on an
            "ABNORMAL" line search at an optimum it cannot improve in double precision; the verdict is what counts).
    """

    log_likelihood: float
    n_customers: float
    n_patterns: int
    converged: bool
    iterations: int
    gradient_norm: float
    message: str


@dataclass(frozen=True)
class BgNbdFit:
    """A fitted BG/NBD model: parameters plus diagnostics."""

    params: BgNbdParams
    diagnostics: FitDiagnostics


@dataclass(frozen=True)
class GammaGammaFit:
    """A fitted Gamma-Gamma model: parameters plus diagnostics."""

    params: GammaGammaParams
    diagnostics: FitDiagnostics

"""The purchase models a CLV run chooses between, behind one shape: P(alive), expected purchases and CLV.

- ``bgnbd``: BG/NBD (Fader, Hardie & Lee 2005); a customer can drop out only right after a repeat purchase.
- ``mbgnbd``: MBG/NBD (Batislam, Denizel & Filiztekin 2007); a customer can also drop out right after the first
  purchase. Every closed form of MBG/NBD is BG/NBD's with ``b`` replaced by ``b + 1`` and the ``[x > 0]`` of P(alive)
  dropped, since its P(alive) ``1 / (1 + a/(b+x) ((alpha+T)/(alpha+t_x))^(r+x))`` and its conditional expectation
  ``(a+b+x)/(a-1) [1 - ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x+1; a+b+x; z)] * P(alive)`` are exactly those: the
  same numpy and Spark code serves both (``first_purchase_dropout``).
- ``pareto_nbd``: Pareto/NBD (Schmittlein, Morrison & Colombo 1987); a customer can drop out at any time, so a
  long silence lowers P(alive) also without a repeat purchase. Its closed forms are :mod:`.pareto` (numpy) and
  :mod:`.pareto_columns` (Spark).
- ``naive``: the baseline, each customer's own past repeat-purchase rate ``x / T`` carried forward, as if nobody ever
  stopped buying; it has no P(alive) (null). Registered as a candidate so a run whose fitted models are all refused
  still leaves a sound champion.

Spend is Gamma-Gamma in every case (:func:`.closed_forms.expected_spend`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyspark.sql.functions as F
from pyspark.sql import Column

from segmentation.models.clv import pareto_columns
from segmentation.models.clv.closed_forms import (
    _cash_flow_times,
    customer_lifetime_value,
    expected_purchases,
    expected_spend,
    p_alive,
    unconditional_expected_purchases,
)
from segmentation.models.clv.columns import ColumnLike, _column, clv_col, expected_purchases_col, expected_spend_col
from segmentation.models.clv.columns import p_alive_col as _p_alive_col
from segmentation.models.clv.mbgnbd import MbgNbdParams
from segmentation.models.clv.params import BgNbdParams, GammaGammaParams
from segmentation.models.clv.pareto import (
    ParetoNbdParams,
    _growth,
    pareto_nbd_expected_purchases,
    pareto_nbd_p_alive,
    pareto_nbd_unconditional_expected_purchases,
)

NAMES = {"bgnbd": "BG/NBD", "mbgnbd": "MBG/NBD", "pareto_nbd": "Pareto/NBD", "naive": "naive rate"}
FITTED = ("bgnbd", "mbgnbd", "pareto_nbd")  # the families fitted by maximum likelihood; ``naive`` needs no fit
PARAMETER_NAMES = {
    "bgnbd": ("r", "alpha", "a", "b"),
    "mbgnbd": ("r", "alpha", "a", "b"),
    "pareto_nbd": ("r", "alpha", "s", "beta"),
}


def discounted_increments(cumulative: np.ndarray, times: np.ndarray, discount_rate_per_period: float) -> np.ndarray:
    """``sum_k (E_k - E_(k-1)) (1+d)^-t_k`` down the rows of ``cumulative`` (row k: E[Y(t_k)]), the cash-flow sum of
    CLV without the spend factor."""
    increments = np.diff(cumulative, axis=0, prepend=0.0)
    return (increments * (1.0 + discount_rate_per_period) ** -np.asarray(times)[:, None]).sum(axis=0)


def discount_weight(horizon_periods: float, step: float, discount_rate_per_period: float) -> float:
    """``sum_k (t_k - t_(k-1)) (1+d)^-t_k``: the discounted length of horizon a constant purchase rate earns over."""
    times = _cash_flow_times(float(horizon_periods), float(step), float(discount_rate_per_period))
    lengths = np.diff(np.concatenate([[0.0], times]))
    return float(np.sum(lengths * (1.0 + discount_rate_per_period) ** -times))


@dataclass(frozen=True)
class PurchaseModel:
    """One fitted purchase model. ``params`` is in BG/NBD form for ``bgnbd`` and ``mbgnbd`` (MBG/NBD with ``b + 1``),
    :class:`.pareto.ParetoNbdParams` for ``pareto_nbd``, None for ``naive``."""

    family: str
    params: BgNbdParams | ParetoNbdParams | None

    @classmethod
    def of(cls, family: str, params: BgNbdParams | MbgNbdParams | ParetoNbdParams | None) -> PurchaseModel:
        if family == "bgnbd" and isinstance(params, BgNbdParams):
            return cls(family, params)
        if family == "pareto_nbd" and isinstance(params, ParetoNbdParams):
            return cls(family, params)
        if family == "mbgnbd" and isinstance(params, MbgNbdParams):
            return cls(family, BgNbdParams(r=params.r, alpha=params.alpha, a=params.a, b=params.b + 1.0))
        if family == "naive" and params is None:
            return cls(family, None)
        raise ValueError(f"no purchase model {family!r} with parameters {params!r} ({', '.join(NAMES)})")

    @property
    def name(self) -> str:
        return NAMES[self.family]

    @property
    def _bg(self) -> BgNbdParams:
        assert isinstance(self.params, BgNbdParams)
        return self.params

    @property
    def _pareto(self) -> ParetoNbdParams:
        assert isinstance(self.params, ParetoNbdParams)
        return self.params

    @property
    def _first(self) -> bool:
        return self.family == "mbgnbd"

    # -- numpy -----------------------------------------------------------------------------------------------------
    def p_alive(self, x: npt.ArrayLike, t_x: npt.ArrayLike, T: npt.ArrayLike) -> np.ndarray:  # noqa: N803
        if self.family == "naive":
            return np.full(np.broadcast_shapes(np.shape(x), np.shape(t_x), np.shape(T)), np.nan)
        if self.family == "pareto_nbd":
            shape = np.broadcast_shapes(np.shape(x), np.shape(t_x), np.shape(T))
            return pareto_nbd_p_alive(self._pareto, *np.broadcast_arrays(x, t_x, T)).reshape(shape)
        return np.asarray(p_alive(self._bg, x, t_x, T, first_purchase_dropout=self._first), dtype=float)

    def expected_purchases(
        self,
        t: npt.ArrayLike,
        x: npt.ArrayLike,
        t_x: npt.ArrayLike,
        T: npt.ArrayLike,  # noqa: N803
    ) -> np.ndarray:
        if self.family == "naive":
            x_, age = np.asarray(x, dtype=float), np.asarray(T, dtype=float)
            rate = np.divide(x_, age, out=np.zeros(np.broadcast_shapes(x_.shape, age.shape)), where=age > 0)
            return rate * np.asarray(t, dtype=float)
        if self.family == "pareto_nbd":
            shape = np.broadcast_shapes(np.shape(t), np.shape(x), np.shape(t_x), np.shape(T))
            return pareto_nbd_expected_purchases(self._pareto, t, x, t_x, T).reshape(shape)
        return np.asarray(expected_purchases(self._bg, t, x, t_x, T, first_purchase_dropout=self._first), dtype=float)

    def cumulative_purchases(
        self,
        times: npt.ArrayLike,
        x: npt.ArrayLike,
        t_x: npt.ArrayLike,
        T: npt.ArrayLike,  # noqa: N803
    ) -> np.ndarray:
        """E[Y(t) | x, t_x, T] at each of ``times`` (one row per time) for 1-d ``x, t_x, T``: the cash-flow steps of
        CLV. Pareto/NBD's P(alive), the costly factor and the same at every time, is evaluated once."""
        times_ = np.asarray(times, dtype=float)
        if self.family != "pareto_nbd":
            return np.array([self.expected_purchases(t, x, t_x, T) for t in times_])
        params = self._pareto
        x_, t_x_, age = (np.asarray(v, dtype=float) for v in (x, t_x, T))
        alive_rate = self.p_alive(x_, t_x_, age) * (params.r + x_) / (params.alpha + age)
        return np.array([alive_rate * _growth(params.s, params.beta + age, t) for t in times_])

    def unconditional_expected_purchases(self, t: npt.ArrayLike) -> np.ndarray | None:
        """E[X(t)] of a new customer; None for ``naive`` (a customer without a past has no rate of their own)."""
        if self.family == "naive":
            return None
        if self.family == "pareto_nbd":
            return pareto_nbd_unconditional_expected_purchases(self._pareto, t).reshape(np.shape(t))
        return np.asarray(
            unconditional_expected_purchases(self._bg, t, first_purchase_dropout=self._first), dtype=float
        )

    def clv(
        self,
        gg: GammaGammaParams,
        x: npt.ArrayLike,
        t_x: npt.ArrayLike,
        T: npt.ArrayLike,  # noqa: N803
        m: npt.ArrayLike,
        horizon_periods: float,
        discount_rate_per_period: float,
        step: float,
    ) -> np.ndarray:
        if self.family == "naive":
            weight = discount_weight(horizon_periods, step, discount_rate_per_period)
            return self.expected_purchases(weight, x, t_x, T) * np.asarray(expected_spend(gg, x, m), dtype=float)
        if self.family == "pareto_nbd":
            return self._stepped_clv(gg, x, t_x, T, m, horizon_periods, discount_rate_per_period, step)
        value = customer_lifetime_value(
            self._bg,
            gg,
            x,
            t_x,
            T,
            m,
            horizon_periods,
            discount_rate_per_period,
            step,
            first_purchase_dropout=self._first,
        )
        return np.asarray(value, dtype=float)

    def _stepped_clv(
        self,
        gg: GammaGammaParams,
        x: npt.ArrayLike,
        t_x: npt.ArrayLike,
        T: npt.ArrayLike,  # noqa: N803
        m: npt.ArrayLike,
        horizon_periods: float,
        discount_rate_per_period: float,
        step: float,
    ) -> np.ndarray:
        """CLV as :func:`.closed_forms.customer_lifetime_value` defines it: the purchases expected in each cash-flow
        interval, times the expected spend, discounted at the interval's end."""
        times = _cash_flow_times(float(horizon_periods), float(step), float(discount_rate_per_period))
        shape = np.broadcast_shapes(np.shape(x), np.shape(t_x), np.shape(T), np.shape(m))
        x_, t_x_, age = (np.broadcast_to(np.asarray(v, dtype=float), shape).ravel() for v in (x, t_x, T))
        cumulative = self.cumulative_purchases(times, x_, t_x_, age)
        total = discounted_increments(cumulative, times, discount_rate_per_period).reshape(shape)
        return np.asarray(expected_spend(gg, x, m), dtype=float) * total

    # -- Spark columns ---------------------------------------------------------------------------------------------
    def p_alive_col(self, x: ColumnLike, t_x: ColumnLike, T: ColumnLike) -> Column:  # noqa: N803
        if self.family == "naive":
            return F.lit(None).cast("double")
        if self.family == "pareto_nbd":
            return pareto_columns.p_alive_col(self._pareto, x, t_x, T)
        return _p_alive_col(self._bg, x, t_x, T, first_purchase_dropout=self._first)

    def expected_purchases_col(
        self,
        t: float,
        x: ColumnLike,
        t_x: ColumnLike,
        T: ColumnLike,  # noqa: N803
        *,
        alive: ColumnLike | None = None,
    ) -> Column:
        """E[Y(t) | x, t_x, T]; ``alive``, a column already holding :meth:`p_alive_col`, spares Pareto/NBD a second
        evaluation of its P(alive) UDF (the built-in families compute theirs inline either way)."""
        if self.family == "naive":
            x_, age = _column(x), _column(T)
            return F.when(age > 0, x_ / age).when(x_ >= 0, F.lit(0.0)) * F.lit(float(t))
        if self.family == "pareto_nbd":
            return pareto_columns.expected_purchases_col(self._pareto, float(t), x, t_x, T, alive=alive)
        return expected_purchases_col(self._bg, float(t), x, t_x, T, first_purchase_dropout=self._first)

    def clv_col(
        self,
        gg: GammaGammaParams,
        x: ColumnLike,
        t_x: ColumnLike,
        T: ColumnLike,  # noqa: N803
        m: ColumnLike,
        horizon_periods: float,
        discount_rate_per_period: float,
        step: float,
        *,
        alive: ColumnLike | None = None,
    ) -> Column:
        """Discounted CLV over the horizon; ``alive`` as for :meth:`expected_purchases_col`."""
        if self.family == "naive":
            weight = discount_weight(horizon_periods, step, discount_rate_per_period)
            return self.expected_purchases_col(weight, x, t_x, T) * expected_spend_col(gg, x, m)
        if self.family == "pareto_nbd":
            params, age = self._pareto, _column(T)
            rate = (F.lit(params.r) + _column(x)) / (F.lit(params.alpha) + age)
            growth = pareto_columns.discounted_growth_col(params, age, horizon_periods, discount_rate_per_period, step)
            p_alive = self.p_alive_col(x, t_x, T) if alive is None else _column(alive)
            return expected_spend_col(gg, x, m) * p_alive * rate * growth
        return clv_col(
            self._bg,
            gg,
            x,
            t_x,
            T,
            m,
            horizon_periods,
            discount_rate_per_period,
            step,
            first_purchase_dropout=self._first,
        )

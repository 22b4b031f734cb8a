"""Pareto/NBD's closed forms as Spark columns, for scoring every customer where the data lives.

Expected purchases and CLV are built-in Spark expressions: given P(alive), Pareto/NBD's conditional expectation is the
posterior purchase rate ``(r+x)/(alpha+T)`` times the expected time still alive, an elementary function of ``t``.
P(alive) itself is the one quantity no built-in function reaches: it needs the Gaussian hypergeometric function at
``z = |alpha-beta| / (max(alpha, beta) + t_x)``, which runs to 1 exactly when a fit says few customers leave (beta far
above alpha), where a power series needs tens of thousands of terms per row. It is therefore a vectorised (Arrow)
pandas UDF over :func:`.pareto.pareto_nbd_p_alive`, scipy's ``hyp2f1`` with its transformations near ``z = 1``:
the numbers are those of the numpy closed form by construction, evaluated on the executors in batches, nothing
collected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyspark.sql.functions as F
from pyspark.sql import Column

from segmentation.models.clv.columns import ColumnLike, NumberOrColumn, _column, discounted_sum_col
from segmentation.models.clv.pareto import ParetoNbdParams, pareto_nbd_p_alive


def p_alive_col(params: ParetoNbdParams, x: ColumnLike, t_x: ColumnLike, T: ColumnLike) -> Column:  # noqa: N803
    """Spark column: P(alive | x, t_x, T) of :func:`.pareto.pareto_nbd_p_alive`; null for a null or negative ``x``."""

    @F.pandas_udf("double")  # type: ignore[call-overload]
    def _p_alive(x_: pd.Series, t_x_: pd.Series, age: pd.Series) -> pd.Series:
        with np.errstate(all="ignore"):  # rows with a null input are NaN here and null below
            values = pareto_nbd_p_alive(params, x_.to_numpy(float), t_x_.to_numpy(float), age.to_numpy(float))
        return pd.Series(values, index=x_.index)

    x_, t_x_, age = _column(x), _column(t_x), _column(T)
    return F.when(x_ >= 0, _p_alive(x_, t_x_, age))


def _growth_col(s: float, scale: Column, t: Column) -> Column:
    """Spark twin of :func:`.pareto._growth`: the expected time still alive within ``t``."""
    log_growth = F.log1p(t / scale)
    if s == 1.0:
        return scale * log_growth
    return scale * -F.expm1(F.lit(-(s - 1.0)) * log_growth) / F.lit(s - 1.0)


def expected_purchases_col(
    params: ParetoNbdParams,
    t: NumberOrColumn,
    x: ColumnLike,
    t_x: ColumnLike,
    T: ColumnLike,  # noqa: N803
    *,
    alive: ColumnLike | None = None,
) -> Column:
    """Spark column: E[Y(t) | x, t_x, T], the closed form of :func:`.pareto.pareto_nbd_expected_purchases`;
    ``alive`` is a column already holding :func:`p_alive_col` (evaluated here otherwise)."""
    x_, age = _column(x), _column(T)
    rate = (F.lit(params.r) + x_) / (F.lit(params.alpha) + age)
    growth = _growth_col(params.s, F.lit(params.beta) + age, _column(t))
    p_alive = p_alive_col(params, x, t_x, T) if alive is None else _column(alive)
    return p_alive * rate * growth


def discounted_growth_col(
    params: ParetoNbdParams, age: Column, horizon_periods: float, discount_rate_per_period: float, step: float
) -> Column:
    """``sum_k (G(t_k) - G(t_(k-1))) (1+d)^-t_k`` over the cash-flow steps, with ``G`` the expected time still alive
    (:func:`.columns.discounted_sum_col`, as BG/NBD's CLV column sums its brackets)."""
    scale = F.lit(params.beta) + age
    return discounted_sum_col(
        lambda t_k: _growth_col(params.s, scale, t_k), horizon_periods, discount_rate_per_period, step
    )

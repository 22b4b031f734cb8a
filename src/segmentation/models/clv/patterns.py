"""Input handling for the fits: validation of per-customer arrays and collapsing customers to weighted patterns.

Shared by every likelihood: a model whose likelihood depends on a customer only through a few summary values is
fitted on the unique combinations of those values with their counts as weights.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd


def _as_1d(name: str, values: npt.ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=float).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has {int((~np.isfinite(array)).sum())} non-finite values")
    return array


def _weights(weights: npt.ArrayLike | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _as_1d("weights", weights)
    if w.shape[0] != n:
        raise ValueError(f"weights has {w.shape[0]} rows, expected {n}")
    if np.any(w <= 0):
        raise ValueError(f"weights must be positive counts; {int((w <= 0).sum())} rows are <= 0")
    return w


def _check_frequency(x: np.ndarray) -> None:
    if np.any(x < 0) or np.any(x != np.round(x)):
        raise ValueError("frequency x must be a non-negative whole number of repeat purchases")


def collapse_patterns(*columns: npt.ArrayLike) -> tuple[list[np.ndarray], np.ndarray]:
    """Collapse per-customer rows to their unique value combinations with counts.

    The likelihoods depend on a customer only through these values, so fitting on the unique patterns with the
    counts as weights gives the same estimate as fitting on the customers, at a cost bounded by the number of
    distinct patterns. This is the numpy twin of ``df.groupBy(cols).count()``.

    Args:
        *columns: Equal-length arrays, e.g. ``(x, t_x, T)`` or ``(x, m)``.

    Returns:
        ``(unique_columns, weights)``: one array per input column, and the count of customers per pattern.
    """
    if not columns:
        raise ValueError("collapse_patterns needs at least one column")
    arrays = [_as_1d(f"column {i}", c) for i, c in enumerate(columns)]
    if len({a.shape[0] for a in arrays}) != 1:
        raise ValueError("all columns must have the same length")
    # A hash group-by (pandas) rather than ``np.unique(axis=0)``, which sorts rows as byte strings: 5M rows of three
    # columns collapse in about a second instead of minutes.
    counts = pd.DataFrame({i: a for i, a in enumerate(arrays)}).value_counts(sort=False)
    index = counts.index
    return [index.get_level_values(i).to_numpy(dtype=float) for i in range(len(arrays))], counts.to_numpy(dtype=float)

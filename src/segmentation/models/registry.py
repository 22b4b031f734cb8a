"""The model families the product trains and scores, by name, in the order ``train`` and ``score`` run them.

A new family (an MBG/NBD or Pareto/NBD candidate for CLV, say) is one module implementing
:class:`segmentation.models.base.ModelFamily` and one entry here.
"""

from __future__ import annotations

from collections.abc import Mapping

from segmentation.config import Settings
from segmentation.models.base import ModelFamily
from segmentation.models.churn_model import ChurnFamily
from segmentation.models.clv_model import ClvFamily

FAMILIES: Mapping[str, type[ModelFamily]] = {
    ClvFamily.name: ClvFamily,
    ChurnFamily.name: ChurnFamily,
}


def families(settings: Settings) -> list[ModelFamily]:
    """Every registered family bound to ``settings``, in registry order."""
    return [family(settings) for family in FAMILIES.values()]


def family(name: str, settings: Settings) -> ModelFamily:
    """The family registered as ``name``, bound to ``settings``."""
    try:
        return FAMILIES[name](settings)
    except KeyError:
        raise KeyError(f"no model family {name!r}; registered: {', '.join(FAMILIES)}") from None

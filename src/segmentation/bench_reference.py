"""Former home of the naive PySpark reference, now :mod:`segmentation.bench.references.naive`.

Kept only so ``tests/unit/test_plans.py`` keeps importing it until that test imports the new path; remove then.
"""

from segmentation.bench.references.naive import naive_features, naive_scores, python_rule, valid_orders

__all__ = ["naive_features", "naive_scores", "python_rule", "valid_orders"]

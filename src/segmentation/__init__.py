"""Customer value segmentation for marketing activation, on Spark and Delta Lake."""

__version__ = "0.1.0"

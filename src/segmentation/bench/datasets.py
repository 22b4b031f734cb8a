"""The benchmark's inputs: synthetic orders per size under ``.cache/bench``, generated once and reused.

Generating 100M orders takes longer than benchmarking them, so each data set records the parameters that made it
(``params.json``) and is regenerated only when they change. The skewed data set is the base data set plus one
customer with ``SKEW_ORDERS`` orders, written next to it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segmentation.bench.measure import generate_orders

log = logging.getLogger(__name__)

DEFAULT_ROOT = ".cache/bench"
ORDERS_PER_CUSTOMER = 20  # the 100M orders for 5M customers; kept for every size so sizes compare
SKEW_ORDERS = 1_000_000
SKEW_CUSTOMER = "WSKEW0000000001"


@dataclass(frozen=True)
class Dataset:
    """One benchmark input: where it lives and what generated it."""

    label: str
    orders: int
    customers: int
    root: Path
    skewed: bool = False

    @property
    def orders_path(self) -> Path:
        return self.root / "orders"

    @property
    def out(self) -> Path:
        return self.root / "out"

    def overrides(self) -> list[str]:
        """Configuration overrides pointing the product's jobs at this data set (no identity map, no profiles)."""
        return [
            f"inputs.orders.path={self.orders_path}",
            "inputs.identity_map=null",
            "inputs.profiles=null",
            "generate.write_profiles=false",
            f"generate.orders={self.orders}",
            f"generate.customers={self.customers}",
            f"outputs.path={self.out / 'build'}",
            # train and score register into a store of the data set's own, emptied with the build's outputs
            f"mlflow.tracking_uri=sqlite:///{self.out / 'build' / 'mlflow.db'}",
            f"mlflow.artifact_location={self.out / 'build' / 'mlartifacts'}",
        ]


def dataset_for(root: Path, size: int, skewed: bool = False, orders_per_customer: int = ORDERS_PER_CUSTOMER) -> Dataset:
    """The data set of ``size`` orders over ``size / orders_per_customer`` customers (at least 1,000)."""
    label = f"{size}-skew" if skewed else str(size)
    if orders_per_customer != ORDERS_PER_CUSTOMER:
        label += f"-{orders_per_customer}-per-customer"
    return Dataset(label, size, max(size // orders_per_customer, 1_000), root / label, skewed)


def _params(settings, dataset: Dataset, as_of: dt.date) -> dict[str, Any]:
    return {"as_of": str(as_of), "skewed": dataset.skewed, "generate": settings.generate.model_dump(mode="json")}


def ensure_orders(spark, settings, dataset: Dataset, as_of: dt.date) -> bool:
    """Generate the data set unless it exists with the same parameters; True when it was (re)generated."""
    marker = dataset.root / "params.json"
    wanted = _params(settings, dataset, as_of)
    if marker.exists() and json.loads(marker.read_text()) == wanted and dataset.orders_path.exists():
        log.info("reusing %s", dataset.orders_path)
        return False
    shutil.rmtree(dataset.root, ignore_errors=True)
    dataset.root.mkdir(parents=True)
    generate_orders(spark, settings, as_of)
    marker.write_text(json.dumps(wanted, indent=2))
    return True


def ensure_skewed_orders(spark, settings, base: Dataset, dataset: Dataset, as_of: dt.date) -> bool:
    """The base orders plus ``SKEW_ORDERS`` completed orders of one customer spread over the history."""
    import pyspark.sql.functions as F

    from segmentation import io
    from segmentation.transforms.columns import day_number

    marker = dataset.root / "params.json"
    wanted = {**_params(settings, base, as_of), "skew_orders": SKEW_ORDERS, "skew_customer": SKEW_CUSTOMER}
    if marker.exists() and json.loads(marker.read_text()) == wanted and dataset.orders_path.exists():
        return False
    shutil.rmtree(dataset.root, ignore_errors=True)
    dataset.root.mkdir(parents=True)
    end = day_number(as_of) * 86_400
    span = settings.generate.history_days * 86_400
    extra = spark.range(0, SKEW_ORDERS, 1, 4).select(
        F.concat(F.lit("WSKEW-"), F.col("id").cast("string")).alias("order_id"),
        F.lit("web").alias("channel"),
        F.lit(SKEW_CUSTOMER).alias("customer_id"),
        F.timestamp_seconds(F.lit(end - span) + F.col("id") * F.lit(span // SKEW_ORDERS)).alias("order_ts"),
        (F.lit(10) + F.col("id") % 200).cast("decimal(18,2)").alias("amount"),
        F.lit(settings.generate.currency).alias("currency"),
        F.lit("completed").alias("status"),
        F.lit(settings.generate.categories[0]).alias("category"),
        F.lit(0).cast("decimal(18,2)").alias("discount_amount"),
        F.lit(None).cast("string").alias("coupon_code"),
    )
    base_df = spark.read.format("delta").load(str(base.orders_path))
    combined = base_df.unionByName(extra.withColumn("order_month", F.date_format("order_ts", "yyyy-MM")))
    io.overwrite_table(
        combined.repartition("channel", "order_month"), str(dataset.orders_path), ("channel", "order_month")
    )
    marker.write_text(json.dumps(wanted, indent=2))
    return True


def delta_files(path: Path | str) -> list[str]:
    """Local paths of the Parquet files of a Delta table's current snapshot."""
    from deltalake import DeltaTable

    return [uri.removeprefix("file://") for uri in DeltaTable(str(path)).file_uris()]

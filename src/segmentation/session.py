"""The SparkSession for local mode or a cluster, with Delta Lake configured.

Delta's JVM classes are not in the ``delta-spark`` pip package. Locally the Makefile fetches them once into a cache
(``$SEGMENTATION_JARS_DIR``) and they are passed with ``spark.jars``; on a platform that ships Delta
(Databricks, an EMR/Dataproc image, ``--packages`` on spark-submit) ``spark.jars_dir`` is null and nothing is added.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Mapping

from pyspark.sql import SparkSession

from segmentation.config import SparkSettings

log = logging.getLogger(__name__)

JARS_ENV = "SEGMENTATION_JARS_DIR"

DELTA_CONF: Mapping[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def delta_jars(jars_dir: str | None) -> list[str]:
    """Delta jars in the configured folder (or ``$SEGMENTATION_JARS_DIR``); empty when none is configured."""
    folder = jars_dir or os.environ.get(JARS_ENV)
    if not folder:
        return []
    jars = sorted(glob.glob(os.path.join(folder, "*.jar")))
    if not jars:
        raise RuntimeError(f"no Delta jars in {folder}; run `make install` to fetch them")
    return jars


def build_session(settings: SparkSettings, extra_conf: Mapping[str, str] | None = None) -> SparkSession:
    """Create (or reuse) the session. Driver memory only applies when this call starts the JVM."""
    builder = SparkSession.builder.appName(settings.app_name)
    if settings.master:
        builder = builder.master(settings.master)
    if settings.driver_memory:
        builder = builder.config("spark.driver.memory", settings.driver_memory)
    jars = delta_jars(settings.jars_dir)
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    for key, value in {**DELTA_CONF, **settings.conf, **(extra_conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark %s, master %s, delta jars: %d", spark.version, spark.sparkContext.master, len(jars))
    return spark

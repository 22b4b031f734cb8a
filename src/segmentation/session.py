"""The SparkSession for local mode, a cluster or a Spark Connect server, with Delta Lake configured.

Delta's JVM classes are not in the ``delta-spark`` pip package. Locally the Makefile fetches them once into a cache
(``$SEGMENTATION_JARS_DIR``) and they are passed with ``spark.jars``; on a platform that ships Delta
(Databricks, an EMR/Dataproc image, ``--packages`` on spark-submit) ``spark.jars_dir`` is null and nothing is added.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from pyspark.sql import SparkSession

from segmentation.config import ConfigError, SparkSettings

log = logging.getLogger(__name__)

JARS_ENV = "SEGMENTATION_JARS_DIR"

DELTA_CONF: Mapping[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def delta_jars(jars_dir: str | None) -> list[str]:
    """Delta jars in the configured folder, else in ``$SEGMENTATION_JARS_DIR``; empty when neither is set.

    A relative ``jars_dir`` (``conf/local.yaml``: ``.cache/jars``) only exists where ``make install`` ran; run from
    elsewhere, the folder the environment names is used instead.

    Raises:
        ConfigError: a folder is configured but neither it nor the environment's holds a jar.
    """
    folders = [f for f in (jars_dir, os.environ.get(JARS_ENV)) if f]
    if not folders:
        return []
    for folder in folders:
        jars = sorted(glob.glob(os.path.join(folder, "*.jar")))
        if jars:
            return jars
    tried = " or ".join(str(Path(f).resolve()) for f in dict.fromkeys(folders))
    raise ConfigError(
        f"spark.jars_dir: no Delta jars in {tried}; run `make install` in the project to fetch them, set"
        f" ${JARS_ENV} to the folder holding them, or set spark.jars_dir to null on a platform that ships Delta"
    )


REMOTE_ENV = "SPARK_REMOTE"


def remote_url(settings: SparkSettings) -> str | None:
    """The Spark Connect endpoint: ``spark.remote`` in the configuration, else ``$SPARK_REMOTE``; None: classic."""
    return settings.remote or os.environ.get(REMOTE_ENV) or None


def is_connect(spark: SparkSession) -> bool:
    """Whether ``spark`` is a Spark Connect session (no JVM, no SparkContext, no RDDs on this side)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def default_parallelism(spark: SparkSession) -> int:
    """Tasks the cluster runs at once: the context's default parallelism, or on Spark Connect (no context on the
    client) the configured one, else the shuffle partitions."""
    if not is_connect(spark):
        return spark.sparkContext.defaultParallelism
    fallback = spark.conf.get("spark.sql.shuffle.partitions", "200") or "200"
    return int(spark.conf.get("spark.default.parallelism", fallback) or fallback)


def build_session(settings: SparkSettings, extra_conf: Mapping[str, str] | None = None) -> SparkSession:
    """Create (or reuse) the session: Spark Connect when a remote is configured, else classic with Delta's jars.

    Driver memory only applies when this call starts the JVM.
    """
    remote = remote_url(settings)
    if remote:
        return _connect_session(remote, settings, extra_conf)
    builder = SparkSession.builder.appName(settings.app_name)
    if (settings.master or "local").startswith("local") and "spark.pyspark.python" not in settings.conf:
        # Local Python workers run this interpreter, which has the package (Spark's default is ``python3`` on PATH,
        # often another environment: every UDF would fail with "No module named 'segmentation'").
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
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
    if is_connect(spark):  # a platform whose default session is Connect (Databricks serverless)
        log.info("spark %s over Spark Connect (the platform's session)", spark.version)
        return spark
    spark.sparkContext.setLogLevel("WARN")
    log.info("spark %s, master %s, delta jars: %d", spark.version, spark.sparkContext.master, len(jars))
    return spark


def _connect_session(remote: str, settings: SparkSettings, extra_conf: Mapping[str, str] | None) -> SparkSession:
    """A Spark Connect session on ``remote``; the configured session settings the server lets a client change.

    The server owns its master, memory, jars (Delta among them) and static settings (extensions, catalog, warehouse):
    those keys are skipped with a debug line, so one configuration file serves both kinds of session.
    """
    spark = SparkSession.builder.remote(remote).appName(settings.app_name).getOrCreate()
    skipped = []
    for key, value in {**settings.conf, **(extra_conf or {})}.items():
        try:
            spark.conf.set(key, value)
        except Exception as exc:  # a platform may refuse a setting (serverless allows few): the job runs without it
            if "CANNOT_MODIFY" in str(exc):
                skipped.append(key)
            else:
                log.warning("Spark Connect server refused %s=%s: %s", key, value, str(exc).splitlines()[0])
    if skipped:
        log.debug("static settings left to the Spark Connect server: %s", ", ".join(skipped))
    log.info("spark %s over Spark Connect at %s", spark.version, remote)
    return spark


def route_jvm_logs(spark: SparkSession, log_file: str | Path) -> bool:
    """Send Spark's own log (log4j: task failures with their Java stack traces) to ``log_file`` instead of the console.

    The CLI calls this once its session exists, so a user sees one readable message and the path of the log file, never
    a Java stack trace on the terminal. Classic sessions only (Spark Connect keeps its log on the server); returns
    whether the log was routed. Idempotent: routing again to another file replaces the previous file appender.
    """
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:
        return False
    try:
        core = jvm.org.apache.logging.log4j.core
        context = jvm.org.apache.logging.log4j.LogManager.getContext(False)
        config = context.getConfiguration()
        root = config.getRootLogger()
        for name in list(root.getAppenders().keySet()):
            if name == "console" or str(name).startswith("segmentation-"):
                root.removeAppender(name)
        layout = core.layout.PatternLayout.newBuilder().withPattern("%d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex").build()
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        appender = (
            core.appender.FileAppender.newBuilder()
            .withFileName(str(log_file))
            .setName(f"segmentation-{Path(log_file).name}")
            .setLayout(layout)
            .setConfiguration(config)
            .build()
        )
        appender.start()
        config.addAppender(appender)
        root.addAppender(appender, None, None)
        context.updateLoggers()
    except Exception:  # a platform with another logging backend: leave its logging alone
        log.warning("could not route Spark's log to %s", log_file, exc_info=True)
        return False
    log.info("Spark's log goes to %s", log_file)
    return True


# PySpark's own Python loggers that print a failed query's error, Java stack trace included, as JSON on stderr.
QUERY_CONTEXT_LOGGERS = ("SQLQueryContextLogger", "DataFrameQueryContextLogger")


@contextlib.contextmanager
def python_spark_logs_to(handler: logging.Handler) -> Iterator[None]:
    """Within the block, PySpark's query-context loggers write to ``handler`` (the run's log file), not to stderr."""
    from pyspark.logger import PySparkLogger

    loggers = [PySparkLogger.getLogger(name) for name in QUERY_CONTEXT_LOGGERS]
    saved = [list(lg.handlers) for lg in loggers]
    for lg in loggers:
        lg.handlers = [handler]  # assigned, not added: PySparkLogger.addHandler would reformat the handler as JSON
    try:
        yield
    finally:
        for lg, handlers in zip(loggers, saved, strict=True):
            lg.handlers = handlers

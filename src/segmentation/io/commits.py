"""Commits that race: Delta's optimistic-concurrency conflicts, retried, and the version a commit made.

Two runs writing one table (an orchestrator retry beside the run it retries, two dates built at once) both read the
same table version and try to commit the next; the loser's transaction changed nothing and may simply try again.
"""

from __future__ import annotations

import logging
import random
import time

from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


# Delta errors raised when another writer committed first; the losing transaction changed nothing and may retry.
CONCURRENT_COMMIT_ERRORS = (
    "ConcurrentAppendException",
    "ConcurrentDeleteReadException",
    "ConcurrentDeleteDeleteException",
    "ConcurrentTransactionException",
    "ConcurrentWriteException",
    "MetadataChangedException",
    "ProtocolChangedException",
    "DELTA_CONCURRENT_",
    "DELTA_METADATA_CHANGED",
    "DELTA_PROTOCOL_CHANGED",
)
DEFAULT_COMMIT_RETRIES = 5


def is_concurrent_commit_error(exc: BaseException) -> bool:
    """Whether ``exc`` is Delta's optimistic-concurrency conflict (safe to retry: nothing was committed)."""
    text = f"{type(exc).__name__} {exc}"
    return any(marker in text for marker in CONCURRENT_COMMIT_ERRORS)


def is_concurrent_creation_error(exc: BaseException) -> bool:
    """Whether creating a table met a folder another run is creating right now (its first commit not yet visible)."""
    text = f"{type(exc).__name__} {exc}"
    # Both runs wrote version 0 of the log at once: the loser's put-if-absent fails; on retry the table exists.
    markers = ("DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION", "FileAlreadyExistsException")
    return is_concurrent_commit_error(exc) or any(marker in text for marker in markers)


#: Delta records the version of each commit a session makes here (the session's own commits only).
LAST_COMMIT_VERSION = "spark.databricks.delta.lastCommitVersionInSession"


def save_committed(spark: SparkSession, save, what: str, retries: int, read_back) -> int | None:
    """Run a writing ``save`` (with commit retries) and return the version its commit made, as the session recorded it.

    No table history is read back: the session's record of its own last commit is exact even when other runs commit
    to the same table right after. Only when the session recorded no commit is ``read_back()`` (the table's history)
    asked instead.
    """

    def attempt() -> int | None:
        spark.conf.unset(LAST_COMMIT_VERSION)
        save()
        value = spark.conf.get(LAST_COMMIT_VERSION, None)
        return int(value) if value not in (None, "") else None

    version = with_commit_retries(attempt, what, retries)
    return version if version is not None else read_back()


def with_commit_retries(action, what: str, retries: int, retryable=is_concurrent_commit_error):
    """Run ``action`` again (with a growing, jittered pause) while it loses commit races, at most ``retries`` times."""
    attempt = 0
    while True:
        try:
            return action()
        except Exception as exc:
            if attempt >= retries or not retryable(exc):
                raise
            attempt += 1
            pause = min(30.0, 0.5 * 2**attempt) * (0.5 + random.random())
            log.warning("%s lost a race with a concurrent commit; retry %d/%d in %.1fs", what, attempt, retries, pause)
            time.sleep(pause)

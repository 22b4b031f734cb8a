"""The run protocol every job uses: run id, timed stages, contract-checked writes and the manifest row.

A job opens a ``JobRun`` as a context manager, names its stages, calls ``begin`` once it knows the versions of its
inputs (they determine the run id), writes each output through ``write`` and leaves the block. On a clean exit the run
appends one ``complete`` row to ``segment_runs`` listing every table version it wrote; on an error after it began, a
``failed`` row (unless the error is a refusal of bad input or configuration before anything was written, which leaves
every table, manifest included, untouched). Readers that follow the manifest therefore see every job's outputs
(build, score, evaluate, ...) and never a half-written run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession

from segmentation import io, outputs
from segmentation.config import ConfigError, Settings
from segmentation.errors import InputError
from segmentation.schema import SchemaError

log = logging.getLogger(__name__)

StageListener = Callable[[str, float, dict], None]
"""Called with (stage name, seconds, details) when a stage ends; the benchmark passes one to time each stage."""

REFUSALS = (InputError, ConfigError, SchemaError)


def run_id_for(job: str, as_of: dt.date, settings: Settings, input_versions: Mapping[str, int | None]) -> str:
    """A run id derived from what determines the output (job, date, configuration, input versions).

    The same inputs and configuration give the same id, so a rerun or a retry rewrites identical rows.
    """
    payload = f"{job}|{as_of}|{settings.model_dump_json()}|{sorted(input_versions.items())}"
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _utc_now() -> dt.datetime:
    """Wall-clock time for the run manifest only: no output depends on it."""
    return dt.datetime.now(dt.timezone.utc)


class JobRun:
    """One run of one job for one as-of date. See the module docstring for the protocol."""

    def __init__(
        self,
        spark: SparkSession,
        settings: Settings,
        job: str,
        as_of: dt.date,
        listeners: Iterable[StageListener] = (),
    ) -> None:
        self.spark, self.settings, self.job, self.as_of = spark, settings, job, as_of
        self.listeners = tuple(listeners)
        self.started_at = _utc_now()
        self.run_id: str | None = None
        self.input_versions: dict[str, int | None] = {}
        self.versions: dict[str, int] = {}
        self.message: str | None = None
        self._held: list[DataFrame] = []

    # -- stages ---------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[dict]:
        """Log a stage with its elapsed time and the counts it records in the yielded dict; tell the listeners."""
        info: dict = {}
        start = time.perf_counter()
        log.info("%s ...", name)
        yield info
        elapsed = time.perf_counter() - start
        details = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in info.items())
        log.info("%s done in %.1fs%s", name, elapsed, f" ({details})" if details else "")
        for listener in self.listeners:
            listener(name, elapsed, dict(info))

    def begin(self, input_versions: Mapping[str, int | None]) -> str:
        """Fix the run id from the versions of everything the run read; returns it."""
        self.input_versions = dict(input_versions)
        self.run_id = run_id_for(self.job, self.as_of, self.settings, self.input_versions)
        log.info("%s run %s for as_of_date=%s", self.job, self.run_id, self.as_of)
        return self.run_id

    def persist(self, df: DataFrame) -> DataFrame:
        """Cache ``df`` for the rest of the run (several outputs read it); released when the run ends."""
        held = df.persist(StorageLevel.MEMORY_AND_DISK)
        self._held.append(held)
        return held

    # -- writes ---------------------------------------------------------------------------------------------------
    def write(self, table: str, df: DataFrame) -> int:
        """Replace the run's ``as_of_date`` slice of output ``table`` under its registry entry; returns its version."""
        if self.run_id is None:
            raise RuntimeError(f"{self.job}: write of {table} before begin()")
        spec = outputs.spec(table)
        if spec.kind == "merge":
            raise ValueError(f"{table} is a merge table: write it with JobRun.merge")
        contract = spec.constraints.resolved(self.settings.rfm.bins).for_columns(df.columns)
        out = self.settings.outputs
        if spec.files is not None:
            df = df.coalesce(spec.files)
        version = io.write_snapshot(
            df,
            out.table_path(table),
            self.as_of,
            properties=spec.properties(),
            max_records_per_file=out.target_file_rows if spec.rows_per_file else None,
            not_null=contract.not_null,
            checks={c.name: c.expression for c in contract.checks},
            retries=out.commit_retries,
        )
        self.versions[table] = version
        return version

    def merge(self, table: str, df: DataFrame) -> io.MergeResult:
        """Upsert the changed rows ``df`` into the current-state table ``table`` (registry kind ``merge``) for the run's
        as-of date and record the version it leaves; a backfill (the state is ahead of the date) is skipped, logged
        and not recorded."""
        if self.run_id is None:
            raise RuntimeError(f"{self.job}: merge into {table} before begin()")
        spec = outputs.spec(table)
        if spec.kind != "merge" or spec.key is None:
            raise ValueError(f"{table} is a {spec.kind} table: write it with JobRun.write")
        contract = spec.constraints.resolved(self.settings.rfm.bins).for_columns(df.columns)
        result = io.merge_state(
            df,
            self.settings.outputs.table_path(table),
            spec.key,
            self.as_of,
            properties=spec.properties(),
            not_null=contract.not_null,
            checks={c.name: c.expression for c in contract.checks},
            retries=self.settings.outputs.commit_retries,
        )
        if not result.skipped:
            self.versions[table] = result.version
        return result

    def check_schemas(self, frames: Mapping[str, DataFrame]) -> None:
        """Before the first write: stop (``ConfigError``) if a frame no longer fits its existing output table.

        Call it with every frame the run will write, before any write. New columns are fine: a feature window, a
        category, a tag group or a segment dimension added to the configuration adds columns to the table (earlier
        snapshots read them as null), logged here. CHECK constraints that depend on the configuration (the score
        ranges of ``rfm.bins``) are replaced at the write, also logged here. A column the table has and the frame
        lacks, or with another type, would break the table's readers: the run stops naming each table and column.
        """
        problems: list[str] = []
        for table, df in frames.items():
            path = self.settings.outputs.table_path(table)
            existing = io.tables.table_schema(self.spark, path)
            if existing is None:
                continue
            change = io.tables.schema_change(existing, df.schema)
            problems += [f"{table}: {problem}" for problem in change.problems]
            if change.added:
                log.info("%s: adds columns %s (earlier snapshots read null)", table, ", ".join(change.added))
            current = io.tables.table_checks(self.spark, path)
            contract = outputs.spec(table).constraints.resolved(self.settings.rfm.bins).for_columns(df.columns)
            for check in contract.checks:
                if not io.tables.same_check(current.get(check.name, check.expression), check.expression):
                    log.info("%s: CHECK %s changes to (%s)", table, check.name, check.expression)
        if problems:
            raise ConfigError(
                f"the configuration no longer fits the existing output tables under {self.settings.outputs.path};"
                " nothing was written:\n  "
                + "\n  ".join(problems)
                + "\nDownstream readers may depend on these columns: restore the configuration that produced them,"
                " or write to new tables (another outputs.path, or outputs.tables.<table>)."
            )

    def wrote(self, name: str, version: int) -> None:
        """Record a version this run produced outside ``write`` (an input table it generated, a model version)."""
        self.versions[name] = int(version)

    # -- the manifest ---------------------------------------------------------------------------------------------
    def _record(self, status: str, message: str | None) -> int:
        contract = outputs.output_constraints("segment_runs", self.settings.rfm.bins)
        record = io.RunRecord(
            as_of=self.as_of,
            job=self.job,
            run_id=self.run_id or run_id_for(self.job, self.as_of, self.settings, self.input_versions),
            status=status,
            started_at=self.started_at,
            finished_at=_utc_now(),
            table_versions=dict(self.versions) if status == io.RUN_COMPLETE else {},
            input_versions=self.input_versions,
            message=message,
        )
        return io.append_run(
            self.spark,
            self.settings.outputs.table_path("segment_runs"),
            record,
            not_null=contract.not_null,
            checks={c.name: c.expression for c in contract.checks},
            retries=self.settings.outputs.commit_retries,
        )

    def release(self) -> None:
        """Free what the run cached (also done when the run ends)."""
        for df in self._held:
            df.unpersist()
        self._held.clear()

    def __enter__(self) -> JobRun:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.release()
        except Exception:  # a dead driver cannot unpersist: the error that ended the run is the one to report
            if exc is None:
                raise
            log.warning("could not release what the %s run cached", self.job, exc_info=True)
        if exc is None:
            with self.stage("write segment_runs"):
                self.versions["segment_runs"] = self._record(io.RUN_COMPLETE, self.message)
            return
        if self.run_id is None or (isinstance(exc, REFUSALS) and not self.versions):
            return  # refused before anything was written: every table, the manifest included, stays as it was
        try:
            self._record(io.RUN_FAILED, f"{type(exc).__name__}: {exc}"[:2000])
        except Exception:  # the manifest may be what failed; the original error propagates either way
            log.exception("could not record the failed %s run %s in the manifest", self.job, self.run_id)

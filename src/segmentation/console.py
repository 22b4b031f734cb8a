"""How a run talks to a person: one screen on stderr for a problem the user can fix, the full log in a file.

The console gets each record's message without tracebacks; the run's log file
(``<outputs.log_dir>/segmentation_<verb>_<as-of>.log``) gets everything, Java stack traces included, and Spark's own
log output is routed there too. Spark errors caused by the data read (a division by zero, a missing data file) are
input problems, named with what to do; anything else is an internal error with the log to report.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("segmentation")

LOG_FILE: list[Path] = []  # the current run's log file, for routing the JVM's log to it
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONFIG_HINT = "Fix the key named above (or the key=value override) and run again. Nothing was read or written."
INPUT_HINT = "No output table was changed. `segmentation profile` shows what the table holds against the conf."
# Spark error conditions caused by the data read, not by the program: the run is refused as an input problem.
_MISSING_FILE = "a data file of an input table is missing or unreadable (a corrupt or half-deleted Delta table?)"
DATA_CONDITIONS = {
    "FAILED_READ_FILE": _MISSING_FILE,
    "DELTA_FILE_NOT_FOUND": _MISSING_FILE,
    "DIVIDE_BY_ZERO": "a division by zero on the data",
    "ARITHMETIC_OVERFLOW": "a number too large for its type in the data",
    "NUMERIC_VALUE_OUT_OF_RANGE": "a value out of range for its decimal type in the data",
    "CAST_INVALID_INPUT": "a value in the data that cannot be converted to the type it needs",
    "CAST_OVERFLOW": "a value in the data too large for the type it is converted to",
}


def log_path(args: argparse.Namespace, folder: str = "logs") -> Path:
    as_of = "".join(c if c.isalnum() or c == "-" else "_" for c in str(args.as_of))[:20]
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder).resolve() / f"segmentation_{args.verb}_{as_of}.log"


class _Console(logging.Formatter):
    """The console sees a record's message, never its traceback, and not the records meant for the log file only."""

    def format(self, record: logging.LogRecord) -> str:
        saved, record.exc_info, record.exc_text = (record.exc_info, record.exc_text), None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text = saved


@contextlib.contextmanager
def logging_to_file(args: argparse.Namespace) -> Iterator[logging.FileHandler]:
    """Console at ``--log-level`` without tracebacks; everything, tracebacks included, to the run's log file."""
    from segmentation.session import python_spark_logs_to

    root, level = logging.getLogger(), getattr(logging, args.log_level)
    console, to_file = logging.StreamHandler(sys.stderr), logging.FileHandler(log_path(args), delay=True)
    console.setLevel(level)
    console.setFormatter(_Console(LOG_FORMAT))
    console.addFilter(lambda record: not getattr(record, "file_only", False))
    to_file.setLevel(min(level, logging.INFO))
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    previous = root.level
    root.setLevel(min(level, logging.INFO))
    root.addHandler(console)
    root.addHandler(to_file)
    logging.getLogger("py4j").setLevel(logging.WARNING)
    try:
        with python_spark_logs_to(to_file):
            yield to_file
    finally:
        for handler in (console, to_file):
            root.removeHandler(handler)
            handler.close()
        root.setLevel(previous)
        LOG_FILE.clear()


def text(exc: BaseException) -> str:
    """``str(exc)``, or the exception's type when that fails (a Java exception whose JVM has stopped cannot be read)."""
    try:
        return str(exc)
    except Exception:  # py4j asks the dead gateway for the message
        return type(exc).__name__


def _driver_process() -> subprocess.Popen | None:
    """The driver JVM this process launched (pyspark's ``launch_gateway`` keeps it as ``proc``), None otherwise."""
    try:
        from pyspark import SparkContext
    except ImportError:
        return None
    return getattr(SparkContext._gateway, "proc", None)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    for _ in range(10):
        if exc is None:
            return
        yield exc
        exc = exc.__cause__ or exc.__context__


def driver_lost(exc: BaseException) -> bool:
    """Whether the run failed because Spark's driver JVM stopped: the JVM this process started has exited, or (a JVM
    started elsewhere) its gateway no longer answers. Py4J words the same loss differently by the call that meets it
    (no answer, connection refused, "... does not exist in the JVM")."""
    proc = _driver_process()
    if proc is not None and proc.poll() is not None:
        return True
    lost = ("Py4JNetworkError", "ConnectionRefusedError", "ConnectionResetError", "BrokenPipeError")
    return any(type(e).__name__ in lost for e in _chain(exc))


def log_size(log_file: Path) -> int:
    """Where this run's part of a log file starts (the file is appended to by every run of the verb and date)."""
    try:
        return log_file.stat().st_size
    except OSError:
        return 0


def wait_for_driver(seconds: float = 15) -> None:
    """Let a stopping driver JVM finish (its last words go to the terminal), so the message that follows is last."""
    proc = _driver_process()
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):  # still running (it did not stop after all): say it now
            proc.wait(timeout=seconds)


def out_of_memory(log_file: Path, start: int = 0) -> bool:
    """Whether this run's part of the log (from ``start``) has a ``java.lang.OutOfMemoryError`` (the JVM logs there;
    an executor thread's OOM makes Spark stop the JVM, and the Python side then fails on whatever call was next)."""
    try:
        with log_file.open(errors="replace") as f:
            f.seek(start)
            return any("java.lang.OutOfMemoryError" in line for line in f)
    except OSError:
        return False


def driver_lost_message(oom: bool, driver_memory: str | None) -> tuple[str, str]:
    """What to tell the user when the driver stopped (``oom``: its log says it ran out of memory)."""
    memory = f" (now {driver_memory})" if driver_memory else ""
    if oom:
        return (
            "Spark's driver ran out of memory (java.lang.OutOfMemoryError) and stopped",
            f"Give it more: spark.driver_memory{memory} in the conf, or spark.driver_memory=<size> on the command line;"
            " or run on a cluster (docs/deploy.md). The date gets no complete run in segment_runs; rerun it.",
        )
    return (
        "Spark's driver stopped during the run (killed, or the JVM crashed)",
        f"See the log below for why; if the machine is short of memory, lower spark.driver_memory{memory}. The date"
        " gets no complete run in segment_runs; rerun it.",
    )


def condition(exc: BaseException | None) -> str | None:
    """The data error condition (e.g. ``DIVIDE_BY_ZERO``) in an exception or its causes; None when there is none."""
    for e in _chain(exc):
        message = text(e)
        found = [c for c in DATA_CONDITIONS if f"[{c}" in message]
        if found or "java.io.FileNotFoundException" in message:
            return found[0] if found else "FAILED_READ_FILE"
    return None


def fail(kind: str, exc: BaseException, message: str, hint: str, log_file: logging.FileHandler) -> None:
    """The traceback to the log file only; one screen on stderr: what is wrong and where, what to do, the log."""
    log.error("%s: %s", kind, message, exc_info=exc, extra={"file_only": True})
    log_path = Path(log_file.baseFilename)
    tail = f"\nFull log: {log_path}" if log_path.exists() else ""
    print(f"{kind}: {message}\n\n{hint}{tail}", file=sys.stderr)

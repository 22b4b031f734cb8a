"""The only code that reads or writes tables: ``tables`` (reads, snapshot writes, creation with constraints, commit
retries) and ``manifest`` (the ``segment_runs`` run manifest readers follow). No business rule lives here."""

from segmentation.io.changes import (
    FileChanges,
    append_rows,
    commit_metadata,
    file_changes,
    latest_complete_run,
    read_files,
    read_version,
    replace_rows,
)
from segmentation.io.commits import (
    CONCURRENT_COMMIT_ERRORS,
    DEFAULT_COMMIT_RETRIES,
    is_concurrent_commit_error,
    is_concurrent_creation_error,
)
from segmentation.io.location import Location
from segmentation.io.manifest import (
    RUN_COMPLETE,
    RUN_FAILED,
    RUNS_SCHEMA,
    RunRecord,
    append_run,
    complete_as_of_dates,
    complete_runs,
    read_complete_snapshot,
)
from segmentation.io.merge import STATE_PROPERTY, MergeResult, merge_state, state_as_of
from segmentation.io.tables import (
    ReadResult,
    ensure_table,
    is_delta_table,
    overwrite_table,
    previous_as_of,
    qualify,
    read_output,
    read_table,
    table_version,
    write_snapshot,
    write_text,
)

__all__ = [
    "CONCURRENT_COMMIT_ERRORS",
    "DEFAULT_COMMIT_RETRIES",
    "RUNS_SCHEMA",
    "RUN_COMPLETE",
    "RUN_FAILED",
    "STATE_PROPERTY",
    "FileChanges",
    "Location",
    "MergeResult",
    "ReadResult",
    "RunRecord",
    "append_rows",
    "append_run",
    "commit_metadata",
    "complete_as_of_dates",
    "complete_runs",
    "ensure_table",
    "file_changes",
    "is_concurrent_commit_error",
    "is_concurrent_creation_error",
    "is_delta_table",
    "latest_complete_run",
    "merge_state",
    "overwrite_table",
    "previous_as_of",
    "qualify",
    "read_complete_snapshot",
    "read_files",
    "read_output",
    "read_table",
    "read_version",
    "replace_rows",
    "state_as_of",
    "table_version",
    "write_snapshot",
    "write_text",
]

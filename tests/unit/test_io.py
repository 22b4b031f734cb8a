"""Which Delta errors a write or a table creation retries: only lost races, never a real failure."""

from __future__ import annotations

import pytest

from segmentation import io


@pytest.mark.parametrize(
    "message",
    [
        "[DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION] Cannot create table ... is not empty and also not a Delta table.",
        "java.nio.file.FileAlreadyExistsException: /lake/out/orders_rejected/_delta_log/00000000000000000000.json",
        "[DELTA_PROTOCOL_CHANGED] ProtocolChangedException: The protocol version of the Delta table has been changed",
        "[DELTA_METADATA_CHANGED] MetadataChangedException: The metadata of the Delta table has been changed",
    ],
)
def test_a_lost_creation_race_is_retried(message):
    assert io.is_concurrent_creation_error(Exception(message))


@pytest.mark.parametrize(
    "message",
    [
        "[DELTA_VIOLATE_CONSTRAINT_WITH_VALUES] CHECK constraint r_score_range (r_score BETWEEN 1 AND 5) violated",
        "[DELTA_FAILED_TO_MERGE_FIELDS] Failed to merge fields 'monetary' and 'monetary'",
        "java.io.IOException: No space left on device",
    ],
)
def test_real_failures_are_not_retried(message):
    assert not io.is_concurrent_creation_error(Exception(message))
    assert not io.is_concurrent_commit_error(Exception(message))


def test_a_data_write_retries_conflicts_but_not_a_half_created_table():
    assert io.is_concurrent_commit_error(
        Exception("[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: Files were added")
    )
    assert not io.is_concurrent_commit_error(Exception("[DELTA_CREATE_TABLE_WITH_NON_EMPTY_LOCATION] Cannot create"))

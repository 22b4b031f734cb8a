"""The two errors a user can fix, and the exit codes the CLI gives them. Every layer may raise them."""

from __future__ import annotations


class InputError(ValueError):
    """The input data cannot be processed as it is (schema, rejected share, a missing table): nothing was written."""

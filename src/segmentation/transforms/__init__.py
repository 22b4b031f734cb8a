"""Pure DataFrame -> DataFrame transforms and column functions. Nothing here reads or writes a table."""

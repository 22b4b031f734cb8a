"""Where a table lives, a storage path or a catalog name, behind one small interface (``Location``).

Inputs arrive as ``TableRef`` (``path`` or ``name``), outputs as the string ``Outputs.table_path`` returns: a folder, or
with ``outputs.schema`` set a quoted catalog name such as ```spark_catalog`.`marketing`.`customer_segments```. A
string that starts with a backquote is a table name, any other string a path, so no folder is ever mistaken for a name.

Everything here is SQL or the DataFrame reader and writer: versions from ``DESCRIBE HISTORY``, creation with
``CREATE TABLE IF NOT EXISTS ... USING DELTA`` (constraints, NOT NULL and properties in the creating commit), time
travel, ``replaceWhere`` and the commit's ``userMetadata`` as reader/writer options. That runs unchanged on a classic
session and over Spark Connect, with or without Delta's Connect plugin on the server (``delta.tables.DeltaTable`` needs
the plugin over Connect; ``Location.delta_table`` is there for callers that want its API anyway).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, DataFrameWriter, SparkSession
from pyspark.sql import types as T

if TYPE_CHECKING:
    from delta.tables import DeltaTable

    from segmentation.config import TableRef

QUOTE = "`"


def quote_identifier(part: str) -> str:
    """One identifier part in backquotes (a backquote inside is doubled): safe for any name in SQL."""
    return QUOTE + part.replace(QUOTE, QUOTE * 2) + QUOTE


def parse_name(name: str) -> tuple[str, ...]:
    """The parts of a multi-part table name (``catalog.schema.table``, parts optionally backquoted).

    Raises:
        ValueError: an empty part or an unbalanced backquote.
    """
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    was_quoted = False
    i = 0
    while i < len(name):
        char = name[i]
        if quoted:
            if char == QUOTE and name[i + 1 : i + 2] == QUOTE:
                current.append(QUOTE)
                i += 1
            elif char == QUOTE:
                quoted = False
            else:
                current.append(char)
        elif char == QUOTE:
            quoted = was_quoted = True
        elif char == ".":
            parts.append("".join(current) if was_quoted else "".join(current).strip())
            current, was_quoted = [], False
        else:
            current.append(char)
        i += 1
    if quoted:
        raise ValueError(f"table name {name!r}: unbalanced backquote")
    parts.append("".join(current) if was_quoted else "".join(current).strip())
    if any(not p for p in parts):
        raise ValueError(f"table name {name!r}: empty part")
    return tuple(parts)


def qualify(path: str | None) -> str | None:
    """An absolute location: local relative paths resolve against the working directory, URIs stay as they are.

    None stays None: an input given by catalog name has no path (``Location.of(ref).uri`` names either kind).
    """
    if path is None:
        return None
    if "://" in path or path.startswith("dbfs:"):
        return path
    return os.path.abspath(path)


def _sql_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _not_a_table(exc: BaseException) -> bool:
    from pyspark.errors import AnalysisException

    return isinstance(exc, AnalysisException)


@dataclass(frozen=True)
class Location:
    """A table by storage ``path`` or by catalog ``name`` (exactly one), in ``format`` (Delta unless told)."""

    path: str | None = None
    name: str | None = None
    format: str = "delta"

    def __post_init__(self) -> None:
        if (self.path is None) == (self.name is None):
            raise ValueError("a table location has exactly one of path and name")
        if self.name is not None:
            parse_name(self.name)

    # -- construction ---------------------------------------------------------------------------------------------
    @classmethod
    def of(cls, target: Location | TableRef | str) -> Location:
        """The location of an input reference, an output's ``table_path`` string, or a location as it is."""
        if isinstance(target, Location):
            return target
        if isinstance(target, str):
            return cls(name=target) if target.startswith(QUOTE) else cls(path=target)
        if target.name is not None:
            return cls(name=target.name, format=target.format)
        return cls.of(target.path)._with_format(target.format)

    @classmethod
    def table(cls, *parts: str) -> Location:
        """A table by name, from its parts (``Location.table("main", "marketing", "orders")``) or one dotted name."""
        if len(parts) == 1:
            return cls(name=parts[0])
        return cls(name=".".join(quote_identifier(p) for p in parts))

    def _with_format(self, fmt: str) -> Location:
        return Location(self.path, self.name, fmt)

    # -- naming ---------------------------------------------------------------------------------------------------
    @property
    def is_name(self) -> bool:
        return self.name is not None

    @property
    def parts(self) -> tuple[str, ...]:
        """The name's parts (``catalog``, ``schema``, ``table``); empty for a path."""
        return parse_name(self.name) if self.name is not None else ()

    @property
    def uri(self) -> str:
        """What to show people and lineage: the absolute path or the table name."""
        return self.name if self.name is not None else qualify(self.path)

    @property
    def sql(self) -> str:
        """The table in SQL: the quoted name, or ``delta.`<path>``` for a path."""
        if self.name is not None:
            return ".".join(quote_identifier(p) for p in self.parts)
        return f"{self.format}.{quote_identifier(qualify(self.path))}"

    def __str__(self) -> str:
        return self.uri

    # -- metadata -------------------------------------------------------------------------------------------------
    def history(self, spark: SparkSession, limit: int | None = None) -> DataFrame:
        """``DESCRIBE HISTORY`` (newest first), optionally the last ``limit`` commits."""
        return spark.sql(f"DESCRIBE HISTORY {self.sql}" + (f" LIMIT {int(limit)}" if limit else ""))

    def version(self, spark: SparkSession) -> int | None:
        """The current Delta version, or None when there is no Delta table here."""
        if self.name is not None and not spark.catalog.tableExists(self.name):
            return None
        try:
            row = self.history(spark, 1).select("version").first()
        except Exception as exc:
            if _not_a_table(exc):
                return None
            raise
        return int(row["version"]) if row else None

    def exists(self, spark: SparkSession) -> bool:
        """Whether the table exists (for a path: whether a Delta table is there)."""
        if self.name is not None:
            return spark.catalog.tableExists(self.name)
        return self.version(spark) is not None

    def delta_table(self, spark: SparkSession) -> DeltaTable:
        """Delta's table API (``forName``/``forPath``): classic sessions, or Connect with Delta's server plugin."""
        from delta.tables import DeltaTable

        return DeltaTable.forName(spark, self.sql) if self.is_name else DeltaTable.forPath(spark, qualify(self.path))

    # -- reads and writes -----------------------------------------------------------------------------------------
    def read(self, spark: SparkSession, version: int | None = None) -> DataFrame:
        """The table, at ``version`` when given (Delta time travel)."""
        reader = spark.read if self.name is not None else spark.read.format(self.format)
        if version is not None:
            reader = reader.option("versionAsOf", int(version))
        return reader.table(self.sql) if self.name is not None else reader.load(qualify(self.path))

    def save(self, writer: DataFrameWriter) -> None:
        """Run a configured writer (mode, options) against this table: ``save`` to a path, ``saveAsTable`` by name."""
        if self.name is not None:
            writer.saveAsTable(self.sql)
        else:
            writer.save(qualify(self.path))

    def create(
        self,
        spark: SparkSession,
        schema: T.StructType,
        partition_by: tuple[str, ...] = (),
        properties: Mapping[str, str] | None = None,
        *,
        not_null: Collection[str] = (),
        checks: Mapping[str, str] | None = None,
    ) -> None:
        """``CREATE TABLE IF NOT EXISTS ... USING DELTA`` with NOT NULL columns, CHECK constraints and properties.

        Constraints (``delta.constraints.<name>``) and properties such as Change Data Feed are part of the creating
        commit. A named table's schema is created first when it does not exist.
        """
        if self.name is not None and len(self.parts) > 1:
            namespace = ".".join(quote_identifier(p) for p in self.parts[:-1])
            if not spark.catalog.databaseExists(namespace):
                spark.sql(f"CREATE SCHEMA IF NOT EXISTS {namespace}")
        columns = ", ".join(
            f"{quote_identifier(f.name)} {f.dataType.simpleString()}"
            + (" NOT NULL" if (not f.nullable or f.name in not_null) else "")
            for f in schema.fields
        )
        props = {**(properties or {}), **{f"delta.constraints.{k}": v for k, v in (checks or {}).items()}}
        statement = f"CREATE TABLE IF NOT EXISTS {self.sql} ({columns}) USING DELTA"
        if partition_by:
            statement += f" PARTITIONED BY ({', '.join(quote_identifier(c) for c in partition_by)})"
        if props:
            pairs = ", ".join(f"{_sql_string(k)} = {_sql_string(v)}" for k, v in props.items())
            statement += f" TBLPROPERTIES ({pairs})"
        spark.sql(statement)

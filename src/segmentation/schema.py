"""Input contracts: the columns and types every input table must have.

Inputs are checked before anything is written, so a missing or mistyped column stops a job with one message that names
every offending column and what it expected. Output contracts live with the output registry (``outputs``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from pyspark.sql import DataFrame
from pyspark.sql import types as T


class SchemaError(ValueError):
    """An input table does not have the columns or types the job needs."""


@dataclass(frozen=True)
class Contract:
    """What a table holds: ordered columns with types, which must not be null, its key and CHECK constraints."""

    name: str
    columns: Mapping[str, T.DataType]
    required: tuple[str, ...] = ()
    not_null: tuple[str, ...] = ()
    key: tuple[str, ...] = ()
    checks: Mapping[str, str] = field(default_factory=dict)
    partition_by: tuple[str, ...] = ()

    @property
    def struct(self) -> T.StructType:
        return T.StructType([T.StructField(c, t, c not in self.not_null) for c, t in self.columns.items()])

    @property
    def ddl(self) -> str:
        return ", ".join(f"`{c}` {t.simpleString()}" for c, t in self.columns.items())


AMOUNT = T.DecimalType(18, 2)

ORDERS = Contract(
    name="orders",
    columns={
        "order_id": T.StringType(),
        "channel": T.StringType(),
        "customer_id": T.StringType(),
        "order_ts": T.TimestampType(),
        "amount": AMOUNT,
        "currency": T.StringType(),
        "status": T.StringType(),
        "category": T.StringType(),
        "discount_amount": AMOUNT,
        "coupon_code": T.StringType(),
    },
    required=(
        "order_id",
        "channel",
        "customer_id",
        "order_ts",
        "amount",
        "currency",
        "status",
        "category",
        "discount_amount",
        "coupon_code",
    ),
    key=("channel", "order_id"),
)

IDENTITY_MAP = Contract(
    name="identity_map",
    columns={"channel": T.StringType(), "channel_customer_id": T.StringType(), "customer_id": T.StringType()},
    required=("channel", "channel_customer_id", "customer_id"),
    key=("channel", "channel_customer_id"),
)

PROFILES = Contract(
    name="profiles",
    columns={"customer_id": T.StringType(), "registered_at": T.TimestampType()},
    required=("customer_id", "registered_at"),
    key=("customer_id",),
)

CAMPAIGN_RESPONSES = Contract(
    name="campaign_responses",
    columns={
        "campaign_id": T.StringType(),
        "customer_id": T.StringType(),
        "responded_at": T.TimestampType(),
        "converted": T.BooleanType(),
        "revenue": AMOUNT,
    },
    required=("campaign_id", "customer_id", "converted", "revenue"),
    key=("campaign_id", "customer_id"),
)

FX_RATES = Contract(
    name="fx_rates",
    columns={"currency": T.StringType(), "rate_date": T.DateType(), "rate_to_reporting": T.DecimalType(18, 8)},
    required=("currency", "rate_date", "rate_to_reporting"),
    key=("currency", "rate_date"),
)

EXCLUSIONS = Contract(
    name="exclusions",
    columns={"customer_id": T.StringType(), "channel": T.StringType(), "reason": T.StringType()},
    required=("customer_id",),
    key=("customer_id", "channel"),
)

# Order columns that may arrive as text when ``quality.parse_text_columns`` is on: parsed row by row, rows that do
# not parse are rejected with a reason instead of stopping the job.
TEXT_PARSED_ORDER_COLUMNS = ("order_ts", "amount", "discount_amount")

# Numeric types an input may use for an amount: cast losslessly enough to decimal(18,2) after the check.
_NUMERIC = (T.DecimalType, T.DoubleType, T.FloatType, T.IntegerType, T.LongType, T.ShortType)


def _compatible(actual: T.DataType, expected: T.DataType) -> bool:
    if isinstance(expected, T.DecimalType):
        return isinstance(actual, _NUMERIC)
    if isinstance(expected, T.TimestampType):
        return isinstance(actual, (T.TimestampType, T.TimestampNTZType))
    return type(actual) is type(expected)


def check_columns(df: DataFrame, contract: Contract, source: str, text_columns: Collection[str] = ()) -> None:
    """Stop before any write if required columns are missing or of the wrong type, naming each one.

    Args:
        df: the table as read.
        contract: what the job needs.
        source: where the table was read from, for the message.
        text_columns: columns also accepted as strings because the caller parses them row by row.

    Raises:
        SchemaError: listing every missing column and every column whose type does not fit the contract.
    """
    actual = {f.name: f.dataType for f in df.schema.fields}
    problems = []
    for column in contract.required:
        expected = contract.columns[column]
        if column not in actual:
            problems.append(f"missing column '{column}' (expected {expected.simpleString()})")
        elif isinstance(actual[column], T.StringType) and column in text_columns:
            continue
        elif not _compatible(actual[column], expected):
            hint = ""
            if isinstance(actual[column], T.StringType) and column in TEXT_PARSED_ORDER_COLUMNS:
                hint = " (text is parsed row by row only with quality.parse_text_columns: true)"
            problems.append(
                f"column '{column}' is {actual[column].simpleString()}, expected {expected.simpleString()}{hint}"
            )
    if problems:
        raise SchemaError(f"{contract.name} table at {source} does not fit its contract:\n  " + "\n  ".join(problems))


def conform(df: DataFrame, contract: Contract, keep: Sequence[str] = ()) -> DataFrame:
    """Select the contract's columns in order, cast to the contract's types (after ``check_columns``).

    A timestamp without time zone is a UTC wall clock: it becomes that instant whatever the session time zone (a
    plain cast would read it in the session's zone). ``keep`` names extra columns carried along unchanged.
    """
    import pyspark.sql.functions as F

    from segmentation.transforms.columns import wall_clock_as_utc

    types = {f.name: f.dataType for f in df.schema.fields}

    def column(name: str, dtype: T.DataType):
        if name not in types:
            return F.lit(None).cast(dtype).alias(name)
        if isinstance(dtype, T.TimestampType) and isinstance(types[name], T.TimestampNTZType):
            return wall_clock_as_utc(F.col(name)).alias(name)
        return F.col(name).cast(dtype).alias(name)

    return df.select(*[column(c, t) for c, t in contract.columns.items()], *keep)

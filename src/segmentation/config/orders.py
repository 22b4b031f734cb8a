"""How orders are generated (the synthetic history) and validated (quality rules, identity resolution)."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import Field, model_validator

from segmentation.config.common import _Frozen


# --------------------------------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------------------------------
class ChannelSpec(_Frozen):
    name: str
    share: float = Field(gt=0)
    id_prefix: str


class GenerateSettings(_Frozen):
    """Parameters of the synthetic buy-till-you-die order history (see ``segmentation.synthetic``)."""

    customers: int = Field(gt=0)
    orders: int = Field(gt=0)
    seed: int
    history_days: int = Field(gt=30)
    channels: list[ChannelSpec]
    categories: list[str] = Field(min_length=1)
    currency: str
    extra_currencies: dict[str, float] = Field(
        default_factory=dict, description="Other currencies and the share of orders placed in them."
    )
    purchase_rate_shape: float = Field(default=0.75, gt=0, description="BG/NBD r: heterogeneity of purchase rates.")
    dropout_a: float = Field(default=0.8, gt=0, description="BG/NBD a: Beta prior on the dropout probability.")
    dropout_b: float = Field(default=2.5, gt=0, description="BG/NBD b.")
    spend_p: float = Field(default=6.0, gt=0, description="Gamma-Gamma p: shape of each order's spend.")
    spend_q: float = Field(default=3.5, gt=0, description="Gamma-Gamma q: shape of the customer mean spend prior.")
    spend_v: float = Field(default=60.0, gt=0, description="Gamma-Gamma v: scale of the customer mean spend prior.")
    category_affinity: float = Field(default=0.6, ge=0, le=1, description="Share of orders in the favourite category.")
    multichannel_share: float = Field(default=0.3, ge=0, le=1)
    identified_share: float = Field(default=0.9, ge=0, le=1, description="Customers whose channel ids are stitched.")
    prospect_share: float = Field(default=0.05, ge=0, le=1, description="Registered profiles that never ordered.")
    discount_share: float = Field(default=0.25, ge=0, le=1)
    coupon_share: float = Field(default=0.15, ge=0, le=1)
    refund_share: float = Field(default=0.04, ge=0, le=1)
    cancel_share: float = Field(default=0.02, ge=0, le=1)
    dirty_share: float = Field(default=0.002, ge=0, le=0.5)
    customers_per_partition: int = Field(default=50_000, gt=0)
    write_profiles: bool = True


# --------------------------------------------------------------------------------------------------------------------
# Data quality
# --------------------------------------------------------------------------------------------------------------------
class IdentitySettings(_Frozen):
    """How the identity map resolves (``transforms.identity``): chains to a fixed point, conflicts by a policy."""

    conflict_policy: Literal["smallest_id", "latest", "reject"] = Field(
        description="A channel id claimed by several customers goes to the smallest customer id, to the most recent"
        " mapping (needs timestamp_column), or its orders are rejected (identity_conflict).",
    )
    timestamp_column: str | None = Field(description="The identity-map column dating each mapping (policy latest).")
    max_chain_length: int = Field(
        ge=1, le=100, description="Hops followed along chains (one join each); a longer chain stops there, warned."
    )

    @model_validator(mode="after")
    def _latest_needs_a_timestamp(self) -> IdentitySettings:
        if self.conflict_policy == "latest" and self.timestamp_column is None:
            raise ValueError("conflict_policy 'latest' needs timestamp_column: the identity-map column dating mappings")
        return self


class QualitySettings(_Frozen):
    currencies: list[str] = Field(min_length=1, description="Accepted currency codes; others are rejected rows.")
    statuses: list[str]
    sale_status: str
    refund_status: str
    allow_zero_amount: bool
    max_rejected_share: float = Field(
        ge=0, le=1, description="Above this share of invalid rows the run fails before any write."
    )
    reporting_currency: str | None = Field(
        description="Amounts are converted to it through inputs.fx_rates before any aggregate; null: no conversion.",
    )
    parse_text_columns: bool = Field(
        description="Accept order_ts/amount/discount_amount stored as text: parse them, reject rows that do not parse.",
    )
    broadcast_duplicate_keys_max: int = Field(
        ge=0,
        description="Up to this many repeated order keys, only their rows are ranked (the keys are broadcast); above"
        " it every order row goes through the duplicate window. Same result either way; a speed setting only.",
    )
    timestamp_formats: list[str] = Field(
        min_length=1,
        description="Spark datetime patterns tried in order on text timestamps; without a zone they are read as UTC.",
    )
    case_insensitive: list[Literal["channel", "currency", "status"]] = Field(
        description="Code columns compared ignoring case everywhere (checks, duplicate key, identity and exclusion"
        " joins, FX): channel and status fold to lower case, currency to upper case. Keys and codes are always trimmed"
        " of Unicode whitespace.",
    )
    latest_version_column: str | None = Field(
        description="An orders column (e.g. updated_at) by which the latest valid copy of a re-sent order wins; null:"
        " the earliest order_ts, then every column in order, decides between valid copies.",
    )
    guest_orders_count_as_rejected: bool = Field(
        description="Orders without a customer id are rejected as guest_order; false: they are reported but do not"
        " count toward quality.max_rejected_share.",
    )
    max_order_amount: Decimal = Field(
        gt=0,
        lt=Decimal("1e16"),
        description="Larger amounts (after FX conversion) are rejected rows (amount_out_of_range): the documented bound"
        " that keeps per-customer sums within decimal(18,2).",
    )
    identity: IdentitySettings
    future_tolerance_hours: float = Field(
        ge=0,
        description="An order timestamp later than the time its data file was written plus this is impossible: the"
        " row is rejected (future_order_ts). Orders after the as-of date are not rejected: they wait for a later date.",
    )

    @model_validator(mode="after")
    def _one_reporting_currency(self) -> QualitySettings:
        if self.reporting_currency is None and len(self.currencies) > 1:
            raise ValueError(
                "several currencies are accepted, so quality.reporting_currency must say which one amounts are "
                "converted to (through inputs.fx_rates)"
            )
        if self.reporting_currency is not None and self.reporting_currency.upper() not in {
            c.upper() for c in self.currencies
        }:
            raise ValueError(f"reporting_currency '{self.reporting_currency}' is not one of quality.currencies")
        return self

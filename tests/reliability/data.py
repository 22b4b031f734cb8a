"""Hand-made inputs shared by the reliability tests: a small order history with every kind of bad row."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

AS_OF = dt.date(2026, 6, 30)

FX_COLUMNS = "currency string, rate_date date, rate_to_reporting decimal(18,8)"
EXCLUSION_COLUMNS = "customer_id string, channel string, reason string"


def good_rows(order_row) -> list[tuple]:
    """Valid orders of five customers, with a tie (c2 and c3 spend the same on the same day) and a refund."""
    return [
        order_row("o1", "c1", "2026-06-29T10:00:00", "100.00"),
        order_row("o2", "c1", "2026-05-01T09:00:00", "50.00", category="beauty"),
        order_row("o3", "c2", "2026-06-01T12:00:00", "80.00"),
        order_row("o4", "c3", "2026-06-01T12:00:00", "80.00", channel="app"),
        order_row("o5", "c4", "2026-01-15T08:00:00", "20.00", channel="store"),
        order_row("o6", "c4", "2026-03-15T08:00:00", "30.00", channel="store", status="refunded"),
        order_row("o7", "c5", "2026-06-30T23:59:59", "15.50", coupon="SUMMER"),
        order_row("o8", "c5", "2026-06-10T00:00:00", "40.00", discount="5.00"),
    ]


def fx_rows() -> list[tuple]:
    return [
        ("USD", dt.date(2026, 1, 1), Decimal("7.00000000")),
        ("USD", dt.date(2026, 6, 1), Decimal("7.20000000")),
        ("EUR", dt.date(2026, 6, 15), Decimal("7.80000000")),
    ]

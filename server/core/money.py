"""Money: integer minor units in the API, NUMERIC(10,2) in the database, never floats."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

CURRENCY = "INR"
MINOR_PER_UNIT = 100
_CENT = Decimal("0.01")


def to_minor(amount: Decimal) -> int:
    """Rs 199.50 -> 19950. The database holds two decimals, so this is exact."""
    return int((amount * MINOR_PER_UNIT).to_integral_value(rounding=ROUND_HALF_EVEN))


def from_minor(units_minor: int) -> Decimal:
    """19950 -> Decimal('199.50')."""
    return (Decimal(units_minor) / MINOR_PER_UNIT).quantize(_CENT)

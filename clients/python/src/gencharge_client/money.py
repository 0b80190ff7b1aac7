"""Money as ``Decimal`` rupees, to and from ``gencharge.v1.Money`` (integer paise).

``to_money("199.50")`` is ``Money(units_minor=19950, currency_code="INR")`` and
``from_money`` turns it back into ``Decimal("199.50")``. No floats anywhere: a float
is refused (``TypeError``), as are more than two decimal places and any currency but
INR (``ValueError``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from gencharge_client.v1.common_pb2 import Money

CURRENCY = "INR"
_MINOR_PER_UNIT = 100
_PAISE = Decimal("0.01")


def to_money(amount: Decimal | str | int, currency: str = CURRENCY) -> Money:
    """``Money`` of ``amount`` rupees (a Decimal, a decimal string or whole rupees)."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal | str | int):
        raise TypeError(f"amount must be a Decimal, str or int, not {type(amount).__name__}")
    if currency != CURRENCY:
        raise ValueError(f"only {CURRENCY} is supported, not {currency!r}")
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {amount!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite amount: {amount!r}")
    if value != value.quantize(_PAISE):
        raise ValueError(f"{amount!r} has more than two decimal places")
    return Money(units_minor=int(value * _MINOR_PER_UNIT), currency_code=CURRENCY)


def from_money(money: Money) -> Decimal:
    """The rupees of a ``Money`` as a ``Decimal`` with two places (empty currency: INR)."""
    if money.currency_code not in ("", CURRENCY):
        raise ValueError(f"only {CURRENCY} is supported, not {money.currency_code!r}")
    return (Decimal(money.units_minor) / _MINOR_PER_UNIT).quantize(_PAISE)


def format_money(money: Money) -> str:
    """``"Rs 199.50"``: for display."""
    return f"Rs {from_money(money)}"

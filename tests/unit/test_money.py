"""Money in paise (integers) at the API, NUMERIC(10,2) in the database: pure unit tests
of server/core/money.py and the shared Money message (no servers).

The round-trip test is randomized: it prints its seed; replay a failure with
``GENCHARGE_TEST_SEED=<seed> pytest tests/unit/test_money.py``.
"""

from __future__ import annotations

import os
import random
from decimal import Decimal

import pytest

from server.core.money import CURRENCY, from_minor, to_minor
from server.core.protoconv import money, optional_money

#: NUMERIC(10,2) holds up to 99,999,999.99 rupees.
MAX_MINOR = 10**10 - 1


@pytest.mark.parametrize(
    ("rupees", "paise"),
    [("0.00", 0), ("0.01", 1), ("199.50", 19950), ("666.66", 66666), ("99999999.99", MAX_MINOR)],
)
def test_rupees_and_paise_convert_exactly(rupees: str, paise: int) -> None:
    assert to_minor(Decimal(rupees)) == paise
    assert from_minor(paise) == Decimal(rupees)
    assert isinstance(to_minor(Decimal(rupees)), int)


def test_from_minor_always_has_two_decimals() -> None:
    assert str(from_minor(100)) == "1.00"
    assert str(from_minor(5)) == "0.05"
    assert from_minor(100).as_tuple().exponent == -2


def test_negative_amounts_keep_their_sign() -> None:
    assert to_minor(Decimal("-10.25")) == -1025
    assert from_minor(-1025) == Decimal("-10.25")


def test_round_trip_of_random_amounts() -> None:
    seed = int(os.environ.get("GENCHARGE_TEST_SEED", random.randrange(2**32)))
    print(f"seed {seed} (replay with GENCHARGE_TEST_SEED={seed})")
    rng = random.Random(seed)
    for _ in range(10_000):
        paise = rng.randrange(-MAX_MINOR, MAX_MINOR + 1)
        amount = from_minor(paise)
        assert to_minor(amount) == paise, (seed, paise)
        assert amount == Decimal(paise) / 100, (seed, paise)


def test_money_message_carries_paise_and_currency() -> None:
    message = money(Decimal("199.50"))
    assert (message.units_minor, message.currency_code) == (19950, CURRENCY)
    assert optional_money(None) is None
    assert optional_money(Decimal("1.00")) == money(Decimal("1.00"))

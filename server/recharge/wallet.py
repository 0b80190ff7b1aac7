"""Wallet recharges as one server-side function call each (no grpc, no transactions:
server/recharge/flows.py runs the call; migration 0019 holds the function).

The order is checked and priced in Python first, against the plan catalogue (cached),
for an *assumed* buyer: the two facts of the payer a price can depend on (their user
type and whether this is their first recharge, server/plans/offers.py) are only
assumed, and only when the plan or the offer has a rule about them. The function reads
the payer after taking the number's lock, and answers with an :data:`OUTCOMES` word:

- ``ok``: recorded; :func:`outcome` builds the response from the order and what the
  function returned (ids, times, balances), with no further read;
- ``reprice``: the assumption was wrong; the item now holds the payer's facts, and
  the caller prices again and calls again (nothing was written);
- ``replay``: the request_id was used before; the caller answers from the key
  (server/recharge/domain.py ``replay``) as before;
- ``no_user``, ``blocked``, ``no_phone``, ``insufficient``: the error the unary
  Recharge has always answered with, raised here;
- ``checked``: the price refused the order (plan inactive, offer not eligible, price
  changed, ...), and the checks that come before the price passed: the price's error
  is raised.

The errors come in the order they always did (replay, the payer, the number, the price,
the wallet) because the function checks in that order and writes nothing unless every
check passed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

from server.audit.scope import current_rpc, event_json, mark_written
from server.auth.principal import Principal
from server.core.errors import DomainError, InvalidArgument
from server.core.idempotency import IDEMPOTENCY_TTL
from server.ledger import domain as ledger
from server.plans.catalogue import Catalogue
from server.recharge import domain
from server.recharge.domain import (
    WALLET,
    Order,
    Payer,
    Pricing,
    Purchase,
    RechargeResult,
)

#: What the wallet functions answer (see the module docstring).
OUTCOMES: Final = (
    "ok",
    "reprice",
    "replay",
    "no_user",
    "blocked",
    "no_phone",
    "insufficient",
    "checked",
)
#: The buyer assumed until the database says otherwise: the facts a price may depend
#: on are only ever assumed, then checked under the locks.
GUESSED_USER_TYPE: Final = "prepaid"
GUESSED_FIRST_RECHARGE: Final = True
#: How many times one order is priced again for facts that changed under it.
MAX_REPRICES: Final = 3

_CENT = Decimal("0.01")


class Replay:
    """The request_id was used before: answer from the key."""


class Reprice:
    """The price rested on a wrong assumption about the payer: price again."""


REPLAY: Final = Replay()
REPRICE: Final = Reprice()


@dataclass
class WalletItem:
    """One wallet order on its way through the function: checked, then priced for the
    buyer facts it holds."""

    order: Order
    fingerprint: str
    caller: str
    rpc: str
    user_id: int
    #: The number the order names (None: the payer's own, resolved by the function).
    phone: str | None
    source: str
    user_type: str = GUESSED_USER_TYPE
    first_recharge: bool = GUESSED_FIRST_RECHARGE
    pricing: Pricing | None = None
    #: Why the price refuses the order (raised once the earlier checks passed).
    refusal: DomainError | None = None
    reprices: int = 0


def prepare(
    who: Principal, order: Order, fingerprint: str, *, source: str, scope: str | None
) -> WalletItem:
    """The checks that need no data (InvalidArgument, PermissionDenied), as before."""
    domain.check_order(order)
    user_id = domain.payer_id(who, order.user_id)
    phone = domain.valid_phone(order.phone_number) if order.phone_number else None
    return WalletItem(
        order, fingerprint, scope or who.subject, current_rpc(), user_id, phone, source
    )


async def price(catalogue: Catalogue, item: WalletItem) -> None:
    """Price the item for the buyer facts it holds (its pricing or its refusal)."""
    payer = Payer(item.user_id, item.user_type, None, item.first_recharge)
    item.pricing = None
    item.refusal = None
    try:
        item.pricing = await domain.price(catalogue, payer, item.order.plan_id, item.order.offer_id)
        domain.check_price(item.order, item.pricing)
    except DomainError as exc:
        item.refusal = exc


def _depends_on(item: WalletItem) -> tuple[bool, bool]:
    """Whether the price depends on the payer's user type, and on their history."""
    if item.pricing is None:
        return False, False
    rules = [item.pricing.plan.criteria]
    if item.pricing.offer is not None:
        rules.append(item.pricing.offer.criteria)
    return (
        any("user_types" in r for r in rules),
        any(bool(r.get("first_recharge_only")) for r in rules),
    )


def _event(item: WalletItem, amount: Decimal | None) -> str | None:
    if item.pricing is None or item.refusal is not None:
        return None
    event = event_json(
        "Transactions",
        "INSERT",
        {
            "user_id": item.user_id,
            "plan_id": item.pricing.plan.plan_id,
            "offer_id": item.pricing.offer.offer_id if item.pricing.offer else None,
            "amount": str(amount),
            # The function sets the number it locked (the payer's own when none given).
            "phone_number": item.phone,
            "payment_method": WALLET,
        },
    )
    return json.dumps(event) if event is not None else None


def call_args(item: WalletItem, reward_amount: Decimal) -> dict[str, Any]:
    """All of ``gencharge_wallet_recharge``'s parameters, by name
    (server/recharge/queries.py ``WALLET_PARAMS``)."""
    by_type, by_history = _depends_on(item)
    p = item.pricing
    write = p is not None and item.refusal is None
    amount = p.to_pay.quantize(_CENT) if p is not None else None
    return {
        "caller": item.caller,
        "request_id": item.order.request_id,
        "rpc": item.rpc,
        "request_hash": item.fingerprint,
        "key_ttl": IDEMPOTENCY_TTL,
        "user_id": item.user_id,
        "phone": item.phone,
        "assume_user_type": item.user_type if by_type else None,
        "assume_first": item.first_recharge if by_history else None,
        "write": write,
        "plan_id": p.plan.plan_id if p is not None else None,
        "offer_id": p.offer.offer_id if p is not None and p.offer is not None else None,
        "validity": p.plan.validity_days if p is not None else None,
        "service_type": p.plan.plan_type if p is not None else None,
        "amount": amount,
        "discount": p.discount if p is not None else None,
        "cashback": p.cashback if p is not None else None,
        "bonus": json.dumps(p.bonus) if p is not None and p.bonus is not None else None,
        "source": item.source,
        "reward_amount": reward_amount,
        "audit_event": _event(item, amount) if write else None,
    }


def outcome(item: WalletItem, row: Mapping[str, Any]) -> RechargeResult | Replay | Reprice:
    """What the function's answer means for this item: the result, REPLAY, REPRICE,
    or the order's error (raised)."""
    said = row["outcome"]
    if said == "ok":
        mark_written()
        assert item.pricing is not None
        purchase = Purchase.of(
            Payer(item.user_id, item.user_type, row["payer_phone"], item.first_recharge),
            row["phone"],
            item.pricing,
        )
        return domain.recorded_result(
            purchase, row, category="wallet", source=item.source, method=WALLET
        )
    if said == "replay":
        return REPLAY
    if said == "reprice":
        item.reprices += 1
        if item.reprices > MAX_REPRICES:
            raise RuntimeError(f"the payer of {item.order.request_id} kept changing")
        item.user_type = row["user_type"]
        if row["first_recharge"] is not None:
            item.first_recharge = row["first_recharge"]
        return REPRICE
    if said == "no_user":
        raise domain.unknown_user(item.user_id)
    if said == "blocked":
        raise domain.blocked_payer()
    if said == "no_phone":
        raise InvalidArgument.field("phone_number", "is required (no number on file)")
    if said == "checked":
        assert item.refusal is not None
        raise item.refusal
    if said == "insufficient":
        assert item.pricing is not None
        raise ledger.insufficient_funds_error(item.pricing.to_pay)
    raise RuntimeError(f"unknown recharge outcome {said!r}")

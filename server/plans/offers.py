"""The offer rule set: who may use an offer on which plan, and what it is worth.

Pure functions, no I/O; docs/offers.md documents the rules with examples.

Criteria are JSON objects (``offers.criteria`` / ``plans.criteria``). Offer keys:

==========================  =============================================  ===========
key                         meaning                                        reason code
==========================  =============================================  ===========
``plan_ids``                list of plan ids the offer applies to          PLAN_NOT_ELIGIBLE
``plan_group_ids``          list of plan group ids                         PLAN_GROUP_NOT_ELIGIBLE
``user_types``              list of "prepaid" / "postpaid"                 USER_TYPE_NOT_ELIGIBLE
``first_recharge_only``     true: only the buyer's first recharge          NOT_FIRST_RECHARGE
``min_amount_minor``        plan price must be at least this (paise)       BELOW_MIN_AMOUNT
==========================  =============================================  ===========

Plans accept ``user_types`` and ``first_recharge_only``. Any other key makes the offer
(or plan) ineligible (UNKNOWN_CRITERION: a rule we cannot check is never treated as
passed), and the admin RPCs reject it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Final

from server.core.errors import FieldViolation
from server.core.money import from_minor
from server.plans.domain import OfferInfo, PlanInfo

ACTIVE: Final = "active"
USER_TYPES: Final = ("prepaid", "postpaid")
_CENT: Final = Decimal("0.01")
_HUNDRED: Final = Decimal(100)
_ZERO: Final = Decimal("0.00")
#: Largest list a criterion may hold, and largest min_amount_minor (NUMERIC(10,2)).
MAX_LIST: Final = 1000
MAX_AMOUNT_MINOR: Final = 9_999_999_999

# Reason codes (stable, UPPER_SNAKE_CASE).
OFFER_INACTIVE: Final = "OFFER_INACTIVE"
OFFER_NOT_STARTED: Final = "OFFER_NOT_STARTED"
OFFER_EXPIRED: Final = "OFFER_EXPIRED"
PLAN_INACTIVE: Final = "PLAN_INACTIVE"
PLAN_NOT_ELIGIBLE: Final = "PLAN_NOT_ELIGIBLE"
PLAN_GROUP_NOT_ELIGIBLE: Final = "PLAN_GROUP_NOT_ELIGIBLE"
USER_TYPE_NOT_ELIGIBLE: Final = "USER_TYPE_NOT_ELIGIBLE"
NOT_FIRST_RECHARGE: Final = "NOT_FIRST_RECHARGE"
BELOW_MIN_AMOUNT: Final = "BELOW_MIN_AMOUNT"
UNKNOWN_CRITERION: Final = "UNKNOWN_CRITERION"
INVALID_CRITERION: Final = "INVALID_CRITERION"

OFFER_CRITERIA: Final = frozenset(
    {"plan_ids", "plan_group_ids", "user_types", "first_recharge_only", "min_amount_minor"}
)
PLAN_CRITERIA: Final = frozenset({"user_types", "first_recharge_only"})

Reason = tuple[str, str]


@dataclass(frozen=True)
class Buyer:
    """Who the recharge is for: the user whose number gets the plan."""

    user_id: int
    user_type: str  # "prepaid" | "postpaid"
    first_recharge: bool  # no recharge yet, successful or awaiting its payment


@dataclass(frozen=True)
class OfferOutcome:
    eligible: bool
    #: Every rule that failed, as (CODE, message); empty when eligible.
    reasons: tuple[Reason, ...]
    #: Taken off the price now (paise precision, never more than the price).
    discount: Decimal
    #: Credited to the wallet after the recharge (never more than what is paid).
    cashback: Decimal
    #: Extra allowances (PlanBenefits-shaped JSON) recorded with the recharge.
    bonus: Mapping[str, Any] | None


# ---------------------------------------------------------------- criterion values


def _is_int(value: Any) -> bool:
    """An integer; JSON numbers that arrive as integral floats (Struct) count."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and value.is_integer()


def _check_value(key: str, value: Any) -> str | None:
    """Why the value of a known criterion is malformed, or None if it is fine."""
    if key in ("plan_ids", "plan_group_ids"):
        if not isinstance(value, list) or not value:
            return "must be a non-empty list of ids"
        if len(value) > MAX_LIST:
            return f"must hold at most {MAX_LIST} ids"
        if not all(_is_int(v) and v > 0 for v in value):
            return "must hold positive integer ids"
    elif key == "user_types":
        if not isinstance(value, list) or not value:
            return 'must be a non-empty list of "prepaid" / "postpaid"'
        if not all(isinstance(v, str) and v in USER_TYPES for v in value):
            return 'may only hold "prepaid" and "postpaid"'
    elif key == "first_recharge_only":
        if not isinstance(value, bool):
            return "must be true or false"
    elif key == "min_amount_minor" and (not _is_int(value) or not 0 <= value <= MAX_AMOUNT_MINOR):
        return f"must be an integer amount in paise, 0 to {MAX_AMOUNT_MINOR}"
    return None


def validate_criteria(
    criteria: Mapping[str, Any], field: str, *, allowed: frozenset[str] = OFFER_CRITERIA
) -> list[FieldViolation]:
    """Violations of a criteria object (admin create/update); empty when valid.

    ``field`` is the request path of the criteria (``offer.criteria``); each violation
    names the key (``offer.criteria.plan_ids``). ``allowed`` is the key set: offers by
    default, :data:`PLAN_CRITERIA` for plans (see :func:`validate_plan_criteria`).
    """
    violations: list[FieldViolation] = []
    for key, value in criteria.items():
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            violations.append(
                FieldViolation(f"{field}.{key}", f"unknown criterion; supported: {known}")
            )
            continue
        problem = _check_value(key, value)
        if problem is not None:
            violations.append(FieldViolation(f"{field}.{key}", problem))
    return violations


def validate_plan_criteria(criteria: Mapping[str, Any], field: str) -> list[FieldViolation]:
    return validate_criteria(criteria, field, allowed=PLAN_CRITERIA)


# ---------------------------------------------------------------- rules


def _audience_reasons(
    criteria: Mapping[str, Any],
    allowed: frozenset[str],
    plan: PlanInfo,
    buyer: Buyer,
    what: str,
) -> list[Reason]:
    reasons: list[Reason] = []
    for key, value in criteria.items():
        if key not in allowed:
            reasons.append((UNKNOWN_CRITERION, f"{what} has a rule we cannot check: {key}"))
            continue
        if _check_value(key, value) is not None:
            reasons.append((INVALID_CRITERION, f"{what} has a malformed rule: {key}"))
            continue
        if key == "plan_ids" and plan.plan_id not in {int(v) for v in value}:
            reasons.append((PLAN_NOT_ELIGIBLE, f"{what} does not apply to this plan"))
        elif key == "plan_group_ids" and (
            plan.group_id is None or plan.group_id not in {int(v) for v in value}
        ):
            reasons.append((PLAN_GROUP_NOT_ELIGIBLE, f"{what} does not apply to this plan group"))
        elif key == "user_types" and buyer.user_type not in value:
            reasons.append(
                (USER_TYPE_NOT_ELIGIBLE, f"{what} is for {' / '.join(value)} users only")
            )
        elif key == "first_recharge_only" and value and not buyer.first_recharge:
            reasons.append((NOT_FIRST_RECHARGE, f"{what} is for the first recharge only"))
        elif key == "min_amount_minor" and plan.price < from_minor(int(value)):
            reasons.append(
                (BELOW_MIN_AMOUNT, f"{what} needs a plan of at least {from_minor(int(value))}")
            )
    return reasons


def plan_reasons(plan: PlanInfo, buyer: Buyer) -> tuple[Reason, ...]:
    """Why ``buyer`` may not buy ``plan`` (its status and its criteria); empty if they may."""
    reasons: list[Reason] = []
    if plan.status != ACTIVE:
        reasons.append((PLAN_INACTIVE, "the plan is no longer sold"))
    reasons += _audience_reasons(plan.criteria, PLAN_CRITERIA, plan, buyer, "the plan")
    return tuple(reasons)


def _window_reasons(offer: OfferInfo, now: datetime) -> list[Reason]:
    reasons: list[Reason] = []
    if offer.status != ACTIVE:
        reasons.append((OFFER_INACTIVE, "the offer has been withdrawn"))
    if offer.valid_from is not None and now < offer.valid_from:
        reasons.append((OFFER_NOT_STARTED, "the offer has not started yet"))
    if offer.valid_to is not None and now >= offer.valid_to:
        reasons.append((OFFER_EXPIRED, "the offer has ended"))
    if offer.offer_validity_days is not None:
        ends = offer.created_at + timedelta(days=offer.offer_validity_days)
        if now >= ends:
            reasons.append(
                (OFFER_EXPIRED, f"the offer was valid for {offer.offer_validity_days} days")
            )
    return reasons


def evaluate(offer: OfferInfo, plan: PlanInfo, buyer: Buyer, now: datetime) -> OfferOutcome:
    """Whether ``offer`` applies to ``buyer`` buying ``plan`` at ``now``, and its value.

    Only the offer's own rules are checked here; whether the plan itself may be bought
    is :func:`plan_reasons`.
    """
    reasons = _window_reasons(offer, now)
    reasons += _audience_reasons(offer.criteria, OFFER_CRITERIA, plan, buyer, "the offer")
    if offer.min_plan_price is not None and plan.price < offer.min_plan_price:
        reasons.append(
            (BELOW_MIN_AMOUNT, f"the offer needs a plan of at least {offer.min_plan_price}")
        )
    if reasons:
        return OfferOutcome(False, tuple(reasons), _ZERO, _ZERO, None)
    price = plan.price
    discount = _benefit(offer.discount_percent, offer.discount_amount, offer, price)
    cashback = _benefit(offer.cashback_percent, offer.cashback_amount, offer, price - discount)
    bonus = offer.bonus if offer.bonus else None
    return OfferOutcome(True, (), discount, cashback, bonus)


def _benefit(
    percent: Decimal | None, amount: Decimal | None, offer: OfferInfo, base: Decimal
) -> Decimal:
    """A percentage of ``base`` (preferred when both are set) or a fixed amount, capped
    by ``max_benefit_amount`` and by ``base`` itself; rounded to paise, half-even.

    ``base`` is the plan price for a discount and the amount paid (price minus
    discount) for a cashback.
    """
    if percent is not None:
        value = (base * percent / _HUNDRED).quantize(_CENT, rounding=ROUND_HALF_EVEN)
    elif amount is not None:
        value = amount
    else:
        return _ZERO
    if offer.max_benefit_amount is not None:
        value = min(value, offer.max_benefit_amount)
    value = min(value, base)
    return max(value, _ZERO).quantize(_CENT, rounding=ROUND_HALF_EVEN)

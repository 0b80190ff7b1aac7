"""The offer rule set (server/plans/offers.py): pure unit tests, no I/O."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from server.plans.catalogue import OfferInfo, PlanInfo
from server.plans.domain import PlanBenefits
from server.plans.offers import (
    BELOW_MIN_AMOUNT,
    INVALID_CRITERION,
    NOT_FIRST_RECHARGE,
    OFFER_EXPIRED,
    OFFER_INACTIVE,
    OFFER_NOT_STARTED,
    PLAN_GROUP_NOT_ELIGIBLE,
    PLAN_INACTIVE,
    PLAN_NOT_ELIGIBLE,
    UNKNOWN_CRITERION,
    USER_TYPE_NOT_ELIGIBLE,
    Buyer,
    evaluate,
    plan_reasons,
    validate_criteria,
    validate_plan_criteria,
)

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
PREPAID_FIRST = Buyer(user_id=1, user_type="prepaid", first_recharge=True)
PREPAID_REPEAT = Buyer(user_id=2, user_type="prepaid", first_recharge=False)
POSTPAID = Buyer(user_id=3, user_type="postpaid", first_recharge=False)


def make_plan(**overrides: Any) -> PlanInfo:
    fields: dict[str, Any] = {
        "plan_id": 7,
        "plan_name": "Unlimited 299",
        "validity_days": 28,
        "plan_type": "prepaid",
        "group_id": 2,
        "group_name": "unlimited",
        "price": Decimal("299.00"),
        "currency": "INR",
        "status": "active",
        "most_popular": False,
        "criteria": {},
        "description": None,
        "benefits": PlanBenefits(),
        "created_at": NOW - timedelta(days=30),
        "created_by": None,
        "stored_criteria": None,
    }
    fields.update(overrides)
    return PlanInfo(**fields)


def make_offer(**overrides: Any) -> OfferInfo:
    fields: dict[str, Any] = {
        "offer_id": 1,
        "offer_name": "Test offer",
        "offer_type_name": "discount",
        "status": "active",
        "criteria": {},
        "discount_percent": None,
        "discount_amount": None,
        "cashback_percent": None,
        "cashback_amount": None,
        "max_benefit_amount": None,
        "min_plan_price": None,
        "bonus": None,
        "valid_from": None,
        "valid_to": None,
        "offer_validity_days": None,
        "created_at": NOW - timedelta(days=1),
        "offer_type_id": None,
        "is_special": False,
        "description": None,
        "created_by": None,
        "stored_criteria": None,
        "stored_bonus": None,
    }
    fields.update(overrides)
    return OfferInfo(**fields)


def codes(outcome_reasons: tuple[tuple[str, str], ...]) -> list[str]:
    return [code for code, _ in outcome_reasons]


# ------------------------------------------------------------------ validity window


def test_plain_offer_is_eligible() -> None:
    outcome = evaluate(make_offer(discount_amount=Decimal("20")), make_plan(), PREPAID_REPEAT, NOW)
    assert outcome.eligible and outcome.reasons == ()
    assert outcome.discount == Decimal("20.00") and outcome.cashback == Decimal("0.00")
    assert outcome.bonus is None


def test_inactive_offer() -> None:
    outcome = evaluate(
        make_offer(status="inactive", discount_amount=Decimal("20")),
        make_plan(),
        PREPAID_REPEAT,
        NOW,
    )
    assert not outcome.eligible
    assert codes(outcome.reasons) == [OFFER_INACTIVE]
    assert outcome.discount == 0 and outcome.cashback == 0 and outcome.bonus is None


def test_valid_from_and_valid_to() -> None:
    plan = make_plan()
    not_yet = make_offer(valid_from=NOW + timedelta(seconds=1))
    assert codes(evaluate(not_yet, plan, PREPAID_REPEAT, NOW).reasons) == [OFFER_NOT_STARTED]
    started = make_offer(valid_from=NOW)
    assert evaluate(started, plan, PREPAID_REPEAT, NOW).eligible
    ended = make_offer(valid_to=NOW)  # valid_to is exclusive
    assert codes(evaluate(ended, plan, PREPAID_REPEAT, NOW).reasons) == [OFFER_EXPIRED]
    running = make_offer(valid_from=NOW - timedelta(days=1), valid_to=NOW + timedelta(seconds=1))
    assert evaluate(running, plan, PREPAID_REPEAT, NOW).eligible


def test_offer_validity_days_count_from_creation() -> None:
    plan = make_plan()
    created = NOW - timedelta(days=30)
    fresh = make_offer(created_at=created, offer_validity_days=31)
    assert evaluate(fresh, plan, PREPAID_REPEAT, NOW).eligible
    stale = make_offer(created_at=created, offer_validity_days=30)
    outcome = evaluate(stale, plan, PREPAID_REPEAT, NOW)
    assert codes(outcome.reasons) == [OFFER_EXPIRED]
    assert "30 days" in outcome.reasons[0][1]


# ------------------------------------------------------------------ criteria


def test_plan_ids() -> None:
    offer = make_offer(criteria={"plan_ids": [7, 8]})
    assert evaluate(offer, make_plan(plan_id=7), PREPAID_REPEAT, NOW).eligible
    outcome = evaluate(offer, make_plan(plan_id=9), PREPAID_REPEAT, NOW)
    assert codes(outcome.reasons) == [PLAN_NOT_ELIGIBLE]


def test_plan_group_ids() -> None:
    offer = make_offer(criteria={"plan_group_ids": [2]})
    assert evaluate(offer, make_plan(group_id=2), PREPAID_REPEAT, NOW).eligible
    for group in (1, None):
        outcome = evaluate(offer, make_plan(group_id=group), PREPAID_REPEAT, NOW)
        assert codes(outcome.reasons) == [PLAN_GROUP_NOT_ELIGIBLE]


def test_user_types() -> None:
    offer = make_offer(criteria={"user_types": ["postpaid"]})
    assert evaluate(offer, make_plan(), POSTPAID, NOW).eligible
    outcome = evaluate(offer, make_plan(), PREPAID_REPEAT, NOW)
    assert codes(outcome.reasons) == [USER_TYPE_NOT_ELIGIBLE]


def test_first_recharge_only() -> None:
    offer = make_offer(criteria={"first_recharge_only": True})
    assert evaluate(offer, make_plan(), PREPAID_FIRST, NOW).eligible
    assert codes(evaluate(offer, make_plan(), PREPAID_REPEAT, NOW).reasons) == [NOT_FIRST_RECHARGE]
    anyone = make_offer(criteria={"first_recharge_only": False})
    assert evaluate(anyone, make_plan(), PREPAID_REPEAT, NOW).eligible


def test_min_amount_minor_and_min_plan_price() -> None:
    offer = make_offer(criteria={"min_amount_minor": 29900})
    assert evaluate(offer, make_plan(price=Decimal("299.00")), PREPAID_REPEAT, NOW).eligible
    outcome = evaluate(offer, make_plan(price=Decimal("298.99")), PREPAID_REPEAT, NOW)
    assert codes(outcome.reasons) == [BELOW_MIN_AMOUNT]
    column = make_offer(min_plan_price=Decimal("479.00"))
    assert evaluate(column, make_plan(price=Decimal("479.00")), PREPAID_REPEAT, NOW).eligible
    outcome = evaluate(column, make_plan(price=Decimal("299.00")), PREPAID_REPEAT, NOW)
    assert codes(outcome.reasons) == [BELOW_MIN_AMOUNT]


def test_unknown_criterion_fails_closed() -> None:
    offer = make_offer(criteria={"payment_methods": ["UPI"]}, discount_amount=Decimal("20"))
    outcome = evaluate(offer, make_plan(), PREPAID_REPEAT, NOW)
    assert not outcome.eligible and codes(outcome.reasons) == [UNKNOWN_CRITERION]
    assert outcome.discount == 0


def test_malformed_criterion_fails_closed() -> None:
    offer = make_offer(criteria={"plan_ids": "7"})
    outcome = evaluate(offer, make_plan(), PREPAID_REPEAT, NOW)
    assert codes(outcome.reasons) == [INVALID_CRITERION]


def test_integral_floats_count_as_ids() -> None:
    offer = make_offer(criteria={"plan_ids": [7.0], "min_amount_minor": 100.0})
    assert evaluate(offer, make_plan(plan_id=7), PREPAID_REPEAT, NOW).eligible


def test_every_failed_rule_is_reported() -> None:
    offer = make_offer(
        status="inactive",
        valid_to=NOW - timedelta(days=1),
        criteria={
            "plan_ids": [1],
            "plan_group_ids": [1],
            "user_types": ["postpaid"],
            "first_recharge_only": True,
            "min_amount_minor": 100000,
            "mystery": 1,
        },
        min_plan_price=Decimal("1000"),
        cashback_percent=Decimal("10"),
    )
    outcome = evaluate(offer, make_plan(), PREPAID_REPEAT, NOW)
    assert not outcome.eligible
    assert sorted(codes(outcome.reasons)) == sorted(
        [
            OFFER_INACTIVE,
            OFFER_EXPIRED,
            PLAN_NOT_ELIGIBLE,
            PLAN_GROUP_NOT_ELIGIBLE,
            USER_TYPE_NOT_ELIGIBLE,
            NOT_FIRST_RECHARGE,
            BELOW_MIN_AMOUNT,
            BELOW_MIN_AMOUNT,
            UNKNOWN_CRITERION,
        ]
    )
    assert all(message for _, message in outcome.reasons)
    assert outcome.cashback == 0 and outcome.discount == 0


def test_all_criteria_met() -> None:
    offer = make_offer(
        criteria={
            "plan_ids": [7],
            "plan_group_ids": [2],
            "user_types": ["prepaid", "postpaid"],
            "first_recharge_only": True,
            "min_amount_minor": 29900,
        },
        cashback_amount=Decimal("25"),
    )
    outcome = evaluate(offer, make_plan(), PREPAID_FIRST, NOW)
    assert outcome.eligible and outcome.cashback == Decimal("25.00")


# ------------------------------------------------------------------ benefits


@pytest.mark.parametrize(
    ("fields", "price", "discount", "cashback"),
    [
        # percent of the price
        ({"discount_percent": Decimal("15")}, "299.00", "44.85", "0.00"),
        # capped by max_benefit_amount
        (
            {"discount_percent": Decimal("15"), "max_benefit_amount": Decimal("40")},
            "299.00",
            "40.00",
            "0.00",
        ),
        # fixed amount, capped by the price (never a negative price)
        ({"discount_amount": Decimal("50")}, "19.00", "19.00", "0.00"),
        ({"discount_amount": Decimal("50")}, "299.00", "50.00", "0.00"),
        # 100% discount
        ({"discount_percent": Decimal("100")}, "99.50", "99.50", "0.00"),
        # cashback percent, cap
        (
            {"cashback_percent": Decimal("10"), "max_benefit_amount": Decimal("50")},
            "719.00",
            "0.00",
            "50.00",
        ),
        ({"cashback_percent": Decimal("10")}, "199.00", "0.00", "19.90"),
        # fixed cashback never exceeds what is paid
        ({"cashback_amount": Decimal("25")}, "19.00", "0.00", "19.00"),
        # rounding half-even to paise: 12.5% of 0.99 = 0.12375 -> 0.12
        ({"discount_percent": Decimal("12.5")}, "0.99", "0.12", "0.00"),
        # 2.5% of 1.01 = 0.02525 -> 0.03 (above half); 50% of 0.25 = 0.125 -> 0.12 (tie, even)
        ({"cashback_percent": Decimal("2.5")}, "1.01", "0.00", "0.03"),
        ({"discount_percent": Decimal("50")}, "0.25", "0.12", "0.00"),
        ({"discount_percent": Decimal("50")}, "0.35", "0.18", "0.00"),
        # both: cashback is a share of what is paid after the discount
        (
            {"discount_amount": Decimal("99"), "cashback_percent": Decimal("10")},
            "299.00",
            "99.00",
            "20.00",
        ),
        # percent wins over a fixed amount of the same kind
        (
            {"discount_percent": Decimal("10"), "discount_amount": Decimal("5")},
            "100.00",
            "10.00",
            "0.00",
        ),
    ],
)
def test_benefit_maths(fields: dict[str, Any], price: str, discount: str, cashback: str) -> None:
    outcome = evaluate(make_offer(**fields), make_plan(price=Decimal(price)), PREPAID_REPEAT, NOW)
    assert outcome.eligible
    assert outcome.discount == Decimal(discount)
    assert outcome.cashback == Decimal(cashback)
    assert outcome.discount.as_tuple().exponent == -2
    assert outcome.cashback.as_tuple().exponent == -2


def test_bonus_is_recorded_not_priced() -> None:
    offer = make_offer(bonus={"data_mb": 2048})
    outcome = evaluate(offer, make_plan(), PREPAID_REPEAT, NOW)
    assert outcome.eligible
    assert dict(outcome.bonus or {}) == {"data_mb": 2048}
    assert outcome.discount == 0 and outcome.cashback == 0
    assert evaluate(make_offer(bonus={}), make_plan(), PREPAID_REPEAT, NOW).bonus is None


# ------------------------------------------------------------------ plans


def test_plan_reasons() -> None:
    assert plan_reasons(make_plan(), PREPAID_REPEAT) == ()
    assert codes(plan_reasons(make_plan(status="inactive"), PREPAID_REPEAT)) == [PLAN_INACTIVE]
    postpaid_only = make_plan(criteria={"user_types": ["postpaid"]})
    assert codes(plan_reasons(postpaid_only, PREPAID_REPEAT)) == [USER_TYPE_NOT_ELIGIBLE]
    assert plan_reasons(postpaid_only, POSTPAID) == ()
    first = make_plan(criteria={"first_recharge_only": True})
    assert codes(plan_reasons(first, PREPAID_REPEAT)) == [NOT_FIRST_RECHARGE]
    assert plan_reasons(first, PREPAID_FIRST) == ()
    # offer-only keys and unknown keys make a plan unsellable, never silently pass
    for criteria in ({"requires_active_base_plan": True}, {"plan_ids": [7]}):
        assert codes(plan_reasons(make_plan(criteria=criteria), PREPAID_FIRST)) == [
            UNKNOWN_CRITERION
        ]
    both = make_plan(status="inactive", criteria={"user_types": ["postpaid"]})
    assert codes(plan_reasons(both, PREPAID_REPEAT)) == [PLAN_INACTIVE, USER_TYPE_NOT_ELIGIBLE]


# ------------------------------------------------------------------ validate_criteria


def test_validate_criteria_accepts_every_key() -> None:
    criteria = {
        "plan_ids": [1, 2],
        "plan_group_ids": [3],
        "user_types": ["prepaid", "postpaid"],
        "first_recharge_only": True,
        "min_amount_minor": 19900,
    }
    assert validate_criteria(criteria, "offer.criteria") == []
    assert validate_criteria({}, "offer.criteria") == []
    assert validate_plan_criteria({"user_types": ["prepaid"]}, "plan.criteria") == []


@pytest.mark.parametrize(
    ("criteria", "field"),
    [
        ({"plan_ids": []}, "offer.criteria.plan_ids"),
        ({"plan_ids": [0]}, "offer.criteria.plan_ids"),
        ({"plan_ids": [1.5]}, "offer.criteria.plan_ids"),
        ({"plan_ids": [True]}, "offer.criteria.plan_ids"),
        ({"plan_ids": 3}, "offer.criteria.plan_ids"),
        ({"plan_group_ids": ["2"]}, "offer.criteria.plan_group_ids"),
        ({"user_types": ["corporate"]}, "offer.criteria.user_types"),
        ({"user_types": "prepaid"}, "offer.criteria.user_types"),
        ({"first_recharge_only": "yes"}, "offer.criteria.first_recharge_only"),
        ({"min_amount_minor": -1}, "offer.criteria.min_amount_minor"),
        ({"min_amount_minor": "199.00"}, "offer.criteria.min_amount_minor"),
        ({"min_amount": "199.00"}, "offer.criteria.min_amount"),
        ({"payment_methods": ["UPI"]}, "offer.criteria.payment_methods"),
    ],
)
def test_validate_criteria_rejects(criteria: dict[str, Any], field: str) -> None:
    violations = validate_criteria(criteria, "offer.criteria")
    assert [v.field for v in violations] == [field]
    assert violations[0].description


def test_validate_plan_criteria_rejects_offer_keys() -> None:
    violations = validate_plan_criteria({"plan_ids": [1], "user_types": ["x"]}, "plan.criteria")
    assert [v.field for v in violations] == ["plan.criteria.plan_ids", "plan.criteria.user_types"]


# ------------------------------------------------------------------ catalogue (real database)


def test_infos_are_immutable() -> None:
    plan = make_plan()
    with pytest.raises(AttributeError):
        plan.price = Decimal(1)  # type: ignore[misc]
    assert replace(plan, price=Decimal(1)).price == Decimal(1)

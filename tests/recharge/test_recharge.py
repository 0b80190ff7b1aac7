"""RechargeService through the real server: money is never created, lost or spent twice."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import uuid
from datetime import UTC
from decimal import Decimal
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import common_pb2, recharge_service_pb2_grpc
from gencharge.v1 import recharge_service_pb2 as pb
from gencharge.v1 import transaction_pb2 as tpb
from server.auth.scopes import PAYMENTS_CONFIRM, RECHARGES_WRITE
from server.ledger.domain import PENDING_PAYMENT_TTL
from tests.helpers.auth import Actor, auth_stub, create_service, register_user
from tests.helpers.money import (
    assert_ledger_balances,
    balance,
    checkout_request,
    confirm,
    failed_request,
    fund,
    make_offer,
    make_plan,
    sandbox_of,
)
from tests.helpers.rpc import details_of


def stub(channel: grpc.aio.Channel) -> recharge_service_pb2_grpc.RechargeServiceStub:
    return recharge_service_pb2_grpc.RechargeServiceStub(channel)


def rid() -> str:
    return uuid.uuid4().hex


async def recharge(channel: Any, actor: Actor, plan_id: int, **fields: Any) -> pb.Recharge:
    fields.setdefault("request_id", rid())
    return await stub(channel).Recharge(
        pb.RechargeRequest(plan_id=plan_id, **fields), metadata=actor.metadata
    )


async def failure(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


async def count(resources: Any, sql: str, **params: Any) -> int:
    async with resources.db.read_only() as conn:
        return int((await conn.execute(text(sql), params)).scalar_one())


# --- the basics ---------------------------------------------------------------------------


async def test_wallet_recharge_debits_and_activates(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "500")
    plan_id = await make_plan(resources, price="199.00", validity=28)
    result = await recharge(channel, user, plan_id)
    txn = result.transaction
    assert txn.amount.units_minor == 19900 and txn.balance_after.units_minor == 30100
    assert txn.category == tpb.TRANSACTION_CATEGORY_WALLET
    assert txn.txn_type == tpb.TRANSACTION_TYPE_DEBIT
    assert txn.source == tpb.TRANSACTION_SOURCE_RECHARGE
    assert txn.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert txn.to_phone_number == user.phone_number == txn.from_phone_number
    assert result.active_plan.status == pb.ACTIVE_PLAN_STATUS_ACTIVE
    days = (result.active_plan.valid_to.seconds - result.active_plan.valid_from.seconds) / 86400
    assert round(days) == 28
    assert await balance(resources, user.user_id) == Decimal("301.00")
    await assert_ledger_balances(resources)


async def test_second_plan_is_queued_behind_the_first(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="10.00", validity=28)
    first = await recharge(channel, user, plan_id)
    quote = await stub(channel).QuoteRecharge(
        pb.QuoteRechargeRequest(phone_number=user.phone_number, plan_id=plan_id),
        metadata=user.metadata,
    )
    assert quote.queued and quote.starts_at == first.active_plan.valid_to
    second = await recharge(channel, user, plan_id)
    assert second.active_plan.status == pb.ACTIVE_PLAN_STATUS_QUEUED
    assert second.active_plan.valid_from == first.active_plan.valid_to
    listed = await stub(channel).ListActivePlans(
        pb.ListActivePlansRequest(), metadata=user.metadata
    )
    assert {p.status for p in listed.active_plans} == {
        pb.ACTIVE_PLAN_STATUS_ACTIVE,
        pb.ACTIVE_PLAN_STATUS_QUEUED,
    }


async def test_recharge_a_friends_number(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "50")
    plan_id = await make_plan(resources, price="20.00")
    result = await recharge(channel, user, plan_id, phone_number="+91 99999 00001")
    assert result.transaction.to_phone_number == "9999900001"
    assert result.transaction.from_phone_number == user.phone_number


async def test_insufficient_funds_leaves_nothing_and_key_is_reusable(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "5")
    plan_id = await make_plan(resources, price="10.00")
    key = rid()
    details = await failure(recharge(channel, user, plan_id, request_id=key))
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.reason == "INSUFFICIENT_FUNDS"
    assert (
        await count(
            resources, "SELECT count(*) FROM currentactiveplans WHERE user_id = :u", u=user.user_id
        )
        == 0
    )
    assert (
        await count(
            resources,
            "SELECT count(*) FROM transactions WHERE user_id = :u AND txn_type = 'debit'",
            u=user.user_id,
        )
        == 0
    )
    await fund(resources, user.user_id, "10")
    ok = await recharge(channel, user, plan_id, request_id=key)
    assert ok.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS


async def test_bad_input(channel, resources) -> None:
    user = await register_user(channel)
    plan_id = await make_plan(resources)
    inactive = await make_plan(resources, status="inactive")
    details = await failure(recharge(channel, user, plan_id, request_id="short"))
    assert (
        details.code == grpc.StatusCode.INVALID_ARGUMENT
        and "request_id" in details.field_violations
    )
    details = await failure(recharge(channel, user, plan_id, phone_number="12345"))
    assert "phone_number" in details.field_violations
    details = await failure(recharge(channel, user, 0))
    assert "plan_id" in details.field_violations
    details = await failure(recharge(channel, user, 10**8))
    assert details.code == grpc.StatusCode.NOT_FOUND
    details = await failure(recharge(channel, user, inactive))
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION and details.reason == "PLAN_INACTIVE"
    details = await failure(
        recharge(channel, user, plan_id, payment_method=common_pb2.PAYMENT_METHOD_UPI)
    )
    assert "payment_details.upi" in details.field_violations
    details = await failure(recharge(channel, user, plan_id, payment_method=42))
    assert "payment_method" in details.field_violations
    details = await failure(
        recharge(channel, user, plan_id, expected_amount=common_pb2.Money(units_minor=1))
    )
    assert details.reason in ("PRICE_CHANGED", "INSUFFICIENT_FUNDS")


async def test_own_number_is_required_when_none_is_on_file(channel, resources) -> None:
    user = await register_user(channel, phone_number="")
    await fund(resources, user.user_id, "20")
    plan_id = await make_plan(resources, price="10.00")
    key = rid()
    details = await failure(recharge(channel, user, plan_id, request_id=key))
    assert details.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "phone_number" in details.field_violations
    # Nothing was written: no debit, no plan, and the key is free for the corrected call.
    assert await balance(resources, user.user_id) == Decimal("20.00")
    done = await recharge(channel, user, plan_id, request_id=key, phone_number="9123456789")
    assert done.active_plan.phone_number == "9123456789"
    assert await balance(resources, user.user_id) == Decimal("10.00")
    await assert_ledger_balances(resources)


# --- idempotency --------------------------------------------------------------------------


async def test_replay_returns_the_original(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    key = rid()
    first = await recharge(channel, user, plan_id, request_id=key)
    again = await recharge(channel, user, plan_id, request_id=key)
    assert again.transaction.txn_id == first.transaction.txn_id
    assert again.active_plan.id == first.active_plan.id
    assert await balance(resources, user.user_id) == Decimal("90.00")
    details = await failure(
        recharge(channel, user, plan_id, request_id=key, phone_number="9999900002")
    )
    assert details.code == grpc.StatusCode.ALREADY_EXISTS
    assert details.reason == "IDEMPOTENCY_KEY_REUSED"
    # Keys are per caller: another user may use the same request_id.
    other = await register_user(channel)
    await fund(resources, other.user_id, "10")
    theirs = await recharge(channel, other, plan_id, request_id=key)
    assert theirs.transaction.txn_id != first.transaction.txn_id


async def test_concurrent_duplicates_execute_once(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    key = rid()
    results = await asyncio.gather(
        *(recharge(channel, user, plan_id, request_id=key) for _ in range(10))
    )
    assert len({r.transaction.txn_id for r in results}) == 1
    assert await balance(resources, user.user_id) == Decimal("90.00")


# --- concurrency --------------------------------------------------------------------------


async def test_100_concurrent_debits_of_10_against_500(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "500")
    plan_id = await make_plan(resources, price="10.00", validity=1)
    phones = [f"98{i:08d}" for i in range(100)]
    outcomes = await asyncio.gather(
        *(recharge(channel, user, plan_id, phone_number=p) for p in phones),
        return_exceptions=True,
    )
    ok = [o for o in outcomes if isinstance(o, pb.Recharge)]
    failed = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
    assert len(ok) == 50 and len(failed) == 50
    for error in failed:
        details = details_of(error)
        assert details.code == grpc.StatusCode.FAILED_PRECONDITION
        assert details.reason == "INSUFFICIENT_FUNDS"
    assert await balance(resources, user.user_id) == Decimal("0.00")
    assert sorted(o.transaction.balance_after.units_minor for o in ok) == list(
        range(0, 50000, 1000)
    )
    await assert_ledger_balances(resources)


async def test_randomized_workload_keeps_the_ledger_balanced(channel, resources) -> None:
    seed = int(os.environ.get("GENCHARGE_TEST_SEED", random.randrange(2**32)))
    print(f"randomized workload seed: {seed} (replay with GENCHARGE_TEST_SEED={seed})")
    rng = random.Random(seed)
    users = [await register_user(channel) for _ in range(6)]
    plans = [await make_plan(resources, price=p) for p in ("7.00", "10.50", "25.00")]
    for user in users:
        opening = rng.randint(0, 120)  # some users start with an empty wallet
        if opening:
            await fund(resources, user.user_id, str(opening))

    async def client(actor: Actor) -> None:
        for _ in range(rng.randint(5, 15)):
            if rng.random() < 0.2:
                await fund(resources, actor.user_id, str(rng.randint(1, 40)))
                continue
            key = rid()
            plan_id = rng.choice(plans)
            for _attempt in range(rng.choice([1, 1, 2])):  # some retries with the same key
                try:
                    await recharge(
                        channel,
                        actor,
                        plan_id,
                        request_id=key,
                        phone_number=f"97{rng.randint(0, 99999999):08d}",
                    ) if _attempt == 0 else await recharge(channel, actor, plan_id, request_id=key)
                except grpc.aio.AioRpcError as error:
                    assert error.code() in (
                        grpc.StatusCode.FAILED_PRECONDITION,
                        grpc.StatusCode.ALREADY_EXISTS,
                    ), (seed, error)

    await asyncio.gather(*(client(u) for u in users))
    await assert_ledger_balances(resources)
    # Every successful recharge debit has exactly one plan behind it.
    debits = await count(
        resources,
        "SELECT count(*) FROM transactions WHERE source = 'recharge' AND status = 'success'",
    )
    caps = await count(resources, "SELECT count(*) FROM currentactiveplans")
    assert debits == caps, seed


# --- offers -------------------------------------------------------------------------------


async def test_discount_offer_lowers_the_debit(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="100.00")
    offer_id = await make_offer(
        resources,
        type_name="discount",
        discount_percent=Decimal("15"),
        max_benefit_amount=Decimal("10"),
    )
    quote = await stub(channel).QuoteRecharge(
        pb.QuoteRechargeRequest(plan_id=plan_id, offer_id=offer_id), metadata=user.metadata
    )
    assert quote.eligible and quote.discount.units_minor == 1000
    assert quote.amount_to_pay.units_minor == 9000
    result = await recharge(
        channel, user, plan_id, offer_id=offer_id, expected_amount=quote.amount_to_pay
    )
    assert result.transaction.amount.units_minor == 9000
    assert result.discount.units_minor == 1000
    assert await balance(resources, user.user_id) == Decimal("10.00")


async def test_cashback_offer_credits_the_wallet_after(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="100.00")
    offer_id = await make_offer(resources, cashback_amount=Decimal("12.50"))
    result = await recharge(channel, user, plan_id, offer_id=offer_id)
    assert result.cashback.units_minor == 1250
    assert result.cashback_transaction.source == tpb.TRANSACTION_SOURCE_CASHBACK
    assert result.cashback_transaction.txn_type == tpb.TRANSACTION_TYPE_CREDIT
    assert await balance(resources, user.user_id) == Decimal("12.50")
    key = rid()
    await fund(resources, user.user_id, "100")
    first = await recharge(channel, user, plan_id, offer_id=offer_id, request_id=key)
    replay = await recharge(channel, user, plan_id, offer_id=offer_id, request_id=key)
    assert replay.cashback_transaction.txn_id == first.cashback_transaction.txn_id
    assert await balance(resources, user.user_id) == Decimal("25.00")
    await assert_ledger_balances(resources)


async def half_price_first_recharge(resources: Any) -> int:
    """A 50% discount (at most ₹50) for a customer's first recharge only."""
    return await make_offer(
        resources,
        type_name="discount",
        discount_percent=Decimal("50"),
        max_benefit_amount=Decimal("50"),
        criteria={"first_recharge_only": True},
    )


async def test_a_first_recharge_offer_is_granted_once_under_concurrency(channel, resources) -> None:
    """Concurrent recharges by one new customer to different numbers (different number
    locks): only one of them is the first recharge."""
    user = await register_user(channel)
    await fund(resources, user.user_id, "1000")
    plan_id = await make_plan(resources, price="100.00")
    offer_id = await half_price_first_recharge(resources)

    async def attempt(number: int) -> Any:
        try:
            return await recharge(
                channel, user, plan_id, offer_id=offer_id, phone_number=f"98765{number:05d}"
            )
        except grpc.aio.AioRpcError as error:
            return details_of(error)

    outcomes = await asyncio.gather(*(attempt(n) for n in range(8)))
    done = [o for o in outcomes if isinstance(o, pb.Recharge)]
    refused = [o for o in outcomes if not isinstance(o, pb.Recharge)]
    assert len(done) == 1, outcomes
    assert all(r.reason == "NOT_FIRST_RECHARGE" for r in refused), refused
    assert await balance(resources, user.user_id) == Decimal("950.00")
    await assert_ledger_balances(resources)


async def test_a_pending_payment_holds_the_first_recharge_price(
    channel, resources, grpc_server
) -> None:
    """A first-recharge discount given to a card payment still pending is not given to
    a second one; once the first payment fails, it is available again."""
    user = await register_user(channel)
    service = await create_service(channel, resources, [PAYMENTS_CONFIRM])
    plan_id = await make_plan(resources, price="100.00")
    offer_id = await half_price_first_recharge(resources)
    card = {
        "payment_method": common_pb2.PAYMENT_METHOD_CARD,
        "payment_details": common_pb2.PaymentDetails(
            card=common_pb2.CardPayment(card_token="tok_pending")
        ),
    }
    first = await recharge(channel, user, plan_id, offer_id=offer_id, **card)
    assert first.transaction.status == tpb.TRANSACTION_STATUS_PENDING
    assert first.transaction.amount.units_minor == 5000
    details = await failure(recharge(channel, user, plan_id, offer_id=offer_id, **card))
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.reason == "NOT_FIRST_RECHARGE"
    await confirm(
        channel,
        service,
        failed_request(sandbox_of(grpc_server), first.transaction.payment_transaction_id),
    )
    again = await recharge(channel, user, plan_id, offer_id=offer_id, **card)
    assert again.transaction.amount.units_minor == 5000


async def test_ineligible_offer_is_refused_with_its_reason(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    offer_id = await make_offer(
        resources, cashback_amount=Decimal("1"), criteria={"min_amount_minor": 5000}
    )
    quote = await stub(channel).QuoteRecharge(
        pb.QuoteRechargeRequest(plan_id=plan_id, offer_id=offer_id), metadata=user.metadata
    )
    assert not quote.eligible and quote.reasons[0].reason == "BELOW_MIN_AMOUNT"
    details = await failure(recharge(channel, user, plan_id, offer_id=offer_id))
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.reason == "BELOW_MIN_AMOUNT"
    assert await balance(resources, user.user_id) == Decimal("100.00")


# --- external payments --------------------------------------------------------------------


async def test_upi_recharge_outcomes(channel, resources) -> None:
    user = await register_user(channel)
    plan_id = await make_plan(resources, price="49.00")

    def upi(vpa: str) -> dict[str, Any]:
        return {
            "payment_method": common_pb2.PAYMENT_METHOD_UPI,
            "payment_details": common_pb2.PaymentDetails(upi=common_pb2.UpiPayment(vpa=vpa)),
        }

    paid = await recharge(channel, user, plan_id, **upi("asha@okbank"))
    assert paid.transaction.category == tpb.TRANSACTION_CATEGORY_SERVICE
    assert paid.transaction.status == tpb.TRANSACTION_STATUS_SUCCESS
    assert paid.transaction.payment_method == common_pb2.PAYMENT_METHOD_UPI
    assert paid.active_plan.id
    assert await balance(resources, user.user_id) == Decimal("0.00")  # wallet untouched

    key = rid()
    details = await failure(
        recharge(channel, user, plan_id, request_id=key, **upi("decline@sandbox"))
    )
    assert details.reason == "PAYMENT_DECLINED"
    assert (
        await count(
            resources, "SELECT count(*) FROM transactions WHERE user_id = :u", u=user.user_id
        )
        == 1
    )  # nothing left behind

    pending = await recharge(channel, user, plan_id, **upi("pending@sandbox"))
    assert pending.transaction.status == tpb.TRANSACTION_STATUS_PENDING
    assert pending.pending_payment.redirect_url
    assert not pending.HasField("active_plan")
    # The promise of PendingPayment.expires_at: the moment the scheduler fails an unpaid
    # payment (the same deadline as a top-up's: created_at + PENDING_PAYMENT_TTL).
    expires = pending.pending_payment.expires_at.ToDatetime(tzinfo=UTC)
    created = pending.transaction.created_at.ToDatetime(tzinfo=UTC)
    assert expires - created == PENDING_PAYMENT_TTL


# --- referral rewards ---------------------------------------------------------------------


async def test_first_recharge_of_a_referred_user_rewards_the_referrer(channel, resources) -> None:
    referrer = await register_user(channel)
    me = await auth_stub(channel).GetMe(auth_pb.GetMeRequest(), metadata=referrer.metadata)
    referred = await register_user(channel, referral_code=me.user.referral_code)
    await fund(resources, referred.user_id, "100")
    plan_id = await make_plan(resources, price="10.00")
    await recharge(channel, referred, plan_id)
    await recharge(channel, referred, plan_id)  # only the first one counts
    assert await balance(resources, referrer.user_id) == Decimal("50.00")
    assert (
        await count(
            resources,
            "SELECT count(*) FROM referralrewards WHERE referred_id = :u AND status = 'paid'",
            u=referred.user_id,
        )
        == 1
    )
    await assert_ledger_balances(resources)


async def test_referral_reward_is_the_configured_amount_on_both_payment_paths(resources) -> None:
    """A server configured with another reward pays that amount, whether the referred
    user's first recharge is paid from the wallet or confirmed later by the gateway."""
    from server.rpc.app import start_server

    settings = resources.settings.model_copy(update={"referral_reward_minor": 1234})
    running = await start_server(dataclasses.replace(resources, settings=settings), "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            plan_id = await make_plan(resources, price="10.00")
            service = await create_service(channel, resources, [PAYMENTS_CONFIRM])
            for paid_by_card in (False, True):
                referrer = await register_user(channel)
                me = await auth_stub(channel).GetMe(
                    auth_pb.GetMeRequest(), metadata=referrer.metadata
                )
                referred = await register_user(channel, referral_code=me.user.referral_code)
                if not paid_by_card:
                    await fund(resources, referred.user_id, "10")
                    await recharge(channel, referred, plan_id)
                else:
                    pending = await recharge(
                        channel,
                        referred,
                        plan_id,
                        payment_method=common_pb2.PAYMENT_METHOD_CARD,
                        payment_details=common_pb2.PaymentDetails(
                            card=common_pb2.CardPayment(card_token="tok_pending")
                        ),
                    )
                    assert await balance(resources, referrer.user_id) == Decimal("0.00")
                    await confirm(
                        channel,
                        service,
                        checkout_request(
                            sandbox_of(running), pending.transaction.payment_transaction_id
                        ),
                    )
                assert await balance(resources, referrer.user_id) == Decimal("12.34"), paid_by_card
    finally:
        await running.stop(0)
    await assert_ledger_balances(resources)


# --- ownership and services ---------------------------------------------------------------


async def test_ownership(channel, resources) -> None:
    alice = await register_user(channel)
    bob = await register_user(channel)
    await fund(resources, alice.user_id, "100")
    plan_id = await make_plan(resources)
    result = await recharge(channel, alice, plan_id)
    details = await failure(
        stub(channel).GetRecharge(
            pb.GetRechargeRequest(txn_id=result.transaction.txn_id), metadata=bob.metadata
        )
    )
    assert details.code == grpc.StatusCode.NOT_FOUND
    mine = await stub(channel).GetRecharge(
        pb.GetRechargeRequest(txn_id=result.transaction.txn_id), metadata=alice.metadata
    )
    assert mine.active_plan.id == result.active_plan.id
    listed = await stub(channel).ListRecharges(pb.ListRechargesRequest(), metadata=bob.metadata)
    assert not listed.recharges
    details = await failure(recharge(channel, bob, plan_id, user_id=alice.user_id))
    assert details.code == grpc.StatusCode.PERMISSION_DENIED
    assert await balance(resources, alice.user_id) == Decimal("90.00")


async def test_service_recharges_on_behalf_of_a_customer(channel, resources) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    user = await register_user(channel)
    await fund(resources, user.user_id, "30")
    plan_id = await make_plan(resources, price="10.00")
    result = await recharge(channel, service, plan_id, user_id=user.user_id)
    assert result.transaction.user_id == user.user_id
    details = await failure(recharge(channel, service, plan_id))
    assert "user_id" in details.field_violations
    assert await balance(resources, user.user_id) == Decimal("20.00")


async def test_list_recharges_paginates_newest_first(channel, resources) -> None:
    user = await register_user(channel)
    await fund(resources, user.user_id, "100")
    plan_id = await make_plan(resources, price="1.00", validity=1)
    made = [(await recharge(channel, user, plan_id)).transaction.txn_id for _ in range(5)]
    seen: list[int] = []
    token = ""
    while True:
        page = await stub(channel).ListRecharges(
            pb.ListRechargesRequest(page_size=2, page_token=token), metadata=user.metadata
        )
        seen += [r.transaction.txn_id for r in page.recharges]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(made))


async def test_pending_recharge_activates_when_the_payment_is_confirmed(
    channel, resources, grpc_server
) -> None:
    user = await register_user(channel)
    service = await create_service(channel, resources, [PAYMENTS_CONFIRM])
    plan_id = await make_plan(resources, price="30.00", validity=7)
    offer_id = await make_offer(resources, cashback_amount=Decimal("3.00"))
    pending = await recharge(
        channel,
        user,
        plan_id,
        offer_id=offer_id,
        payment_method=common_pb2.PAYMENT_METHOD_CARD,
        payment_details=common_pb2.PaymentDetails(
            card=common_pb2.CardPayment(card_token="tok_pending")
        ),
    )
    assert pending.transaction.status == tpb.TRANSACTION_STATUS_PENDING
    request = checkout_request(sandbox_of(grpc_server), pending.transaction.payment_transaction_id)
    confirmed = await confirm(channel, service, request)
    assert confirmed.status == tpb.TRANSACTION_STATUS_SUCCESS
    again = await confirm(channel, service, request)
    assert again.txn_id == confirmed.txn_id
    got = await stub(channel).GetRecharge(
        pb.GetRechargeRequest(txn_id=pending.transaction.txn_id), metadata=user.metadata
    )
    assert got.active_plan.status == pb.ACTIVE_PLAN_STATUS_ACTIVE
    assert (
        await count(
            resources, "SELECT count(*) FROM currentactiveplans WHERE user_id = :u", u=user.user_id
        )
        == 1
    )
    # The card paid the plan; the cashback landed in the wallet, once.
    assert await balance(resources, user.user_id) == Decimal("3.00")
    await assert_ledger_balances(resources)

"""Safe retries through the real server and the answer-losing proxy: a recharge whose
answer is lost is retried with the same request_id and debits once; writes without a
request_id are never retried; reads are."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from gencharge_client import AsyncClient, RetryPolicy, Unavailable
from gencharge_client.v1 import auth_service_pb2 as auth_pb
from gencharge_client.v1 import recharge_service_pb2 as recharge_pb
from google.protobuf import field_mask_pb2

from tests.clients.h2proxy import H2Proxy
from tests.clients.python.support import debits, funded_user
from tests.helpers.auth import PASSWORD
from tests.helpers.money import assert_ledger_balances, balance, make_plan


async def funded_customer(
    proxied: AsyncClient, channel: Any, resources: Any, rupees: str
) -> tuple[Any, AsyncClient]:
    user = await funded_user(channel, resources, rupees)
    session = await proxied.login(email=user.email, password=PASSWORD)
    return user, proxied.with_credentials(session)


async def test_a_recharge_whose_answer_is_lost_is_retried_and_debits_once(
    proxied: AsyncClient, proxy: H2Proxy, channel: Any, resources: Any
) -> None:
    user, me = await funded_customer(proxied, channel, resources, "100")
    plan_id = await make_plan(resources, price="10.00")
    request = recharge_pb.RechargeRequest(plan_id=plan_id)
    proxy.arm(1)  # the server debits, then the connection drops before the answer

    recharge = await me.recharge.recharge(request)

    assert proxy.dropped == 1
    assert request.request_id == ""  # the caller's message is left as it was
    assert await debits(resources, user.user_id) == [recharge.transaction.txn_id]
    assert await balance(resources, user.user_id) == Decimal("90.00")
    await assert_ledger_balances(resources)


async def test_retries_end_after_max_attempts_still_with_one_debit(
    proxied: AsyncClient, proxy: H2Proxy, channel: Any, resources: Any
) -> None:
    user, me = await funded_customer(proxied, channel, resources, "100")
    plan_id = await make_plan(resources, price="10.00")
    key = str(uuid.uuid4())
    proxy.arm(3)
    with pytest.raises(Unavailable) as lost:
        await me.recharge.recharge(
            recharge_pb.RechargeRequest(request_id=key, plan_id=plan_id),
            retry=RetryPolicy(max_attempts=3, initial_backoff=0.01),
        )
    assert proxy.dropped == 3
    assert lost.value.request_id == key
    assert len(await debits(resources, user.user_id)) == 1
    # Later, the same key gets the one recharge made.
    replay = await me.recharge.recharge(
        recharge_pb.RechargeRequest(request_id=key, plan_id=plan_id)
    )
    assert await debits(resources, user.user_id) == [replay.transaction.txn_id]
    assert await balance(resources, user.user_id) == Decimal("90.00")


async def test_a_write_without_request_id_is_never_retried(
    proxied: AsyncClient, proxy: H2Proxy, channel: Any, resources: Any
) -> None:
    _, me = await funded_customer(proxied, channel, resources, "1.00")
    proxy.arm(2)
    with pytest.raises(Unavailable):
        await me.auth.update_me(
            auth_pb.UpdateMeRequest(
                profile=auth_pb.Profile(name="Renamed Once"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            )
        )
    assert proxy.dropped == 1  # one attempt: a second would have been cut too
    assert (await me.auth.get_me()).user.name == "Renamed Once"  # it did run, once


async def test_reads_are_retried(
    proxied: AsyncClient, proxy: H2Proxy, channel: Any, resources: Any
) -> None:
    user, me = await funded_customer(proxied, channel, resources, "12.50")
    proxy.arm(2)
    wallet = await me.wallet.get_wallet()
    assert wallet.user_id == user.user_id
    assert proxy.dropped == 2

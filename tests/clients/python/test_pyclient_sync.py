"""The blocking Client through the real server: the same engine as AsyncClient on its
own loop thread. The test server runs on the test's event loop, so each scenario runs
in a worker thread (``asyncio.to_thread``) as a blocking program would."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
from gencharge_client import (
    Client,
    InsufficientFunds,
    NotFound,
    ServiceAccountCredentials,
    SessionCredentials,
    from_money,
)
from gencharge_client.v1 import auth_service_pb2 as auth_pb
from gencharge_client.v1 import recharge_service_pb2 as recharge_pb
from gencharge_client.v1 import wallet_service_pb2 as wallet_pb

from server.auth.scopes import RECHARGES_WRITE
from tests.clients.h2proxy import H2Proxy
from tests.clients.python.support import FAST_RETRY, WallClock, debits, funded_user
from tests.helpers.auth import PASSWORD, create_service
from tests.helpers.money import assert_ledger_balances, balance, fund, make_plan


async def test_login_calls_errors_and_pages(address: str, channel: Any, resources: Any) -> None:
    user = await funded_user(channel, resources, "15.00")
    for n in range(11):
        await fund(resources, user.user_id, f"{n + 1}.00")
    plan_id = await make_plan(resources, price="10.00")

    def scenario() -> None:
        with Client(address, retry=FAST_RETRY) as client:
            me = client.with_credentials(client.login(email=user.email, password=PASSWORD))
            assert me.auth.get_me().user.user_id == user.user_id
            assert from_money(me.wallet.get_wallet().balance) == Decimal("81.00")
            first = me.recharge.recharge(recharge_pb.RechargeRequest(plan_id=plan_id))
            assert first.transaction.txn_id
            listed = list(
                me.wallet.list_transactions.items(wallet_pb.ListTransactionsRequest(page_size=5))
            )
            assert len(listed) == 13 == len({t.txn_id for t in listed})
            with pytest.raises(NotFound):
                me.recharge.get_recharge(recharge_pb.GetRechargeRequest(txn_id=987654))
            for _ in range(7):
                me.recharge.recharge(recharge_pb.RechargeRequest(plan_id=plan_id))
            with pytest.raises(InsufficientFunds) as short:
                me.recharge.recharge(recharge_pb.RechargeRequest(plan_id=plan_id))
            assert short.value.request_id  # filled by the SDK, as in the async client

    await asyncio.to_thread(scenario)
    assert await balance(resources, user.user_id) == Decimal("1.00")


async def test_fifty_threads_near_expiry_share_one_refresh(
    address: str, channel: Any, resources: Any
) -> None:
    user = await funded_user(channel, resources, "1.00")

    def scenario() -> None:
        with Client(address, retry=FAST_RETRY) as client:
            tokens = client.auth.login(
                auth_pb.LoginRequest(email=user.email, password=PASSWORD)
            ).tokens
            clock = WallClock(time.time())
            session = SessionCredentials(tokens, clock=clock)
            me = client.with_credentials(session)
            me.auth.get_me()
            clock.now = session.access_token_expires_at - 30
            start = threading.Barrier(50)

            def call() -> int:
                start.wait()
                return me.wallet.get_wallet().user_id

            with ThreadPoolExecutor(50) as pool:
                owners = list(pool.map(lambda _: call(), range(50)))
            assert set(owners) == {user.user_id}
            assert session.renewals == 1
            sessions = list(me.auth.list_sessions.items())
            assert [s.session_id for s in sessions if s.current] == [tokens.session_id]

    await asyncio.to_thread(scenario)


async def test_a_lost_answer_is_retried_once_debited(
    proxy: H2Proxy, channel: Any, resources: Any
) -> None:
    user = await funded_user(channel, resources, "50.00")
    plan_id = await make_plan(resources, price="20.00")

    def scenario() -> recharge_pb.Recharge:
        with Client(proxy.address, retry=FAST_RETRY) as client:
            me = client.with_credentials(client.login(email=user.email, password=PASSWORD))
            proxy.arm(1)
            return me.recharge.recharge(recharge_pb.RechargeRequest(plan_id=plan_id))

    recharge = await asyncio.to_thread(scenario)
    assert proxy.dropped == 1
    assert await debits(resources, user.user_id) == [recharge.transaction.txn_id]
    assert await balance(resources, user.user_id) == Decimal("30.00")


async def test_batch_recharge(address: str, channel: Any, resources: Any) -> None:
    service = await create_service(channel, resources, [RECHARGES_WRITE])
    user = await funded_user(channel, resources, "25.00")
    plan_id = await make_plan(resources, price="10.00")
    items = [recharge_pb.BatchRechargeRequest(user_id=user.user_id, plan_id=plan_id)] * 3

    def scenario() -> list[bool]:
        credentials = ServiceAccountCredentials(service.email, service.password)
        with Client(address, credentials=credentials, retry=FAST_RETRY) as client:
            return [outcome.ok for outcome in client.batch_recharge(items, max_in_flight=2)]

    assert await asyncio.to_thread(scenario) == [True, True, False]  # the third cannot pay
    assert await balance(resources, user.user_id) == Decimal("5.00")
    await assert_ledger_balances(resources)


async def test_close_stops_the_loop_thread(address: str) -> None:
    def scenario() -> None:
        before = {t.name for t in threading.enumerate()}
        client = Client(address)
        view = client.with_credentials(None)
        assert client.plan.list_plan_groups().plan_groups is not None
        view.close()  # a view owns nothing
        assert client.plan.get_plan  # still usable
        client.close()
        client.close()  # twice is fine
        assert {t.name for t in threading.enumerate()} == before
        with pytest.raises(RuntimeError):
            client.auth.get_jwks()

    await asyncio.to_thread(scenario)

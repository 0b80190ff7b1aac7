"""Pagination to the end through the real server: more items than one page, every item
seen once, in the list's order."""

from __future__ import annotations

from typing import Any

from gencharge_client import AsyncClient
from gencharge_client.v1 import plan_service_pb2 as plan_pb
from gencharge_client.v1 import wallet_service_pb2 as wallet_pb

from tests.helpers.auth import PASSWORD, register_user
from tests.helpers.money import fund, make_plan

PAGE = 10
ROWS = 25  # three pages: 10, 10, 5


async def test_every_transaction_once_across_pages(
    client: AsyncClient, channel: Any, resources: Any
) -> None:
    user = await register_user(channel)
    for n in range(ROWS):
        await fund(resources, user.user_id, f"{n + 1}.00")
    me = client.with_credentials(await client.login(email=user.email, password=PASSWORD))
    request = wallet_pb.ListTransactionsRequest(page_size=PAGE)

    pages = [page async for page in me.wallet.list_transactions.pages(request)]
    assert [len(p.transactions) for p in pages] == [10, 10, 5]
    assert [bool(p.next_page_token) for p in pages] == [True, True, False]

    items = [t async for t in me.wallet.list_transactions.items(request)]
    ids = [t.txn_id for t in items]
    assert len(ids) == ROWS == len(set(ids))
    assert ids == [t.txn_id for p in pages for t in p.transactions]
    assert ids == sorted(ids, reverse=True)  # newest first, as documented
    assert request.page_token == ""  # the caller's request is not moved along


async def test_public_lists_page_without_credentials(client: AsyncClient, resources: Any) -> None:
    made = {await make_plan(resources, price=f"{n}.00", name=f"SDK plan {n}") for n in range(1, 8)}
    first = await client.plan.list_plans(plan_pb.ListPlansRequest(page_size=3))
    assert len(first.plans) == 3 and first.next_page_token
    seen = [
        p.plan_id async for p in client.plan.list_plans.items(plan_pb.ListPlansRequest(page_size=3))
    ]
    assert len(seen) == len(set(seen))
    assert made <= set(seen)

"""Service-account scopes through the real server: chosen at creation, carried in the
token, enforced per RPC, and taken away within ``auth_cache_seconds``.

The RBAC matrix (test_rbac_matrix.py) calls every RPC with and without each scope; this
file covers what a matrix of empty requests cannot: real work done under a scope, the
error a caller sees, a scope changed while a token lives, and a forged scope claim.
"""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import jwt
import pytest
from sqlalchemy import func, select

from gencharge.v1 import (
    access_pb2,
    auth_service_pb2,
    recharge_service_pb2_grpc,
    wallet_service_pb2_grpc,
)
from gencharge.v1 import recharge_service_pb2 as rpb
from gencharge.v1 import wallet_service_pb2 as wpb
from server.admin.staff import flows
from server.admin.staff.domain import NewServiceAccount
from server.auth.access import service_rule_problem
from server.auth.scopes import PAYMENTS_CONFIRM, RECHARGES_READ, RECHARGES_WRITE, SCOPES
from server.core.errors import InvalidArgument, NotFound
from server.core.schema import service_accounts
from tests.helpers.auth import Actor, auth_stub, create_service, register_user
from tests.helpers.clock import FakeClock
from tests.helpers.money import fund, make_plan
from tests.helpers.rpc import ErrorDetails, details_of


def recharges(channel: grpc.aio.Channel) -> recharge_service_pb2_grpc.RechargeServiceStub:
    return recharge_service_pb2_grpc.RechargeServiceStub(channel)


async def get_recharge(channel: grpc.aio.Channel, who: Actor, txn_id: int) -> ErrorDetails | None:
    """None when the access layer let the call in and it succeeded."""
    try:
        await recharges(channel).GetRecharge(
            rpb.GetRechargeRequest(txn_id=txn_id), metadata=who.metadata
        )
    except grpc.aio.AioRpcError as error:
        return details_of(error)
    return None


async def confirm(channel: grpc.aio.Channel, who: Actor) -> ErrorDetails:
    stub = wallet_service_pb2_grpc.WalletServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ConfirmPayment(
            wpb.ConfirmPaymentRequest(
                request_id=str(uuid.uuid4()),
                txn_id=987654321,
                payment_transaction_id="pay_none",
                outcome=wpb.PAYMENT_OUTCOME_SUCCESS,
            ),
            metadata=who.metadata,
        )
    return details_of(caught.value)


def missing(details: ErrorDetails | None, scope: str) -> bool:
    return (
        details is not None
        and details.code == grpc.StatusCode.PERMISSION_DENIED
        and details.reason == "MISSING_SCOPE"
        and details.metadata == {"scope": scope}
    )


async def a_recharge(channel: grpc.aio.Channel, resources: Any) -> tuple[Actor, int]:
    """A customer and one of their wallet recharges (its txn_id)."""
    user = await register_user(channel)
    await fund(resources, user.user_id, "50")
    plan_id = await make_plan(resources, price="10.00")
    done = await recharges(channel).Recharge(
        rpb.RechargeRequest(request_id=str(uuid.uuid4()), plan_id=plan_id),
        metadata=user.metadata,
    )
    return user, done.transaction.txn_id


# --- creation, the token, GetMe -------------------------------------------------------------


async def test_scopes_are_chosen_at_creation_and_carried_in_the_token(
    channel: grpc.aio.Channel, resources: Any
) -> None:
    service = await create_service(channel, resources, [RECHARGES_READ, PAYMENTS_CONFIRM])
    claims = jwt.decode(service.access_token, options={"verify_signature": False})
    assert claims["scope"] == "payments.confirm recharges.read"
    me = await auth_stub(channel).GetMe(auth_service_pb2.GetMeRequest(), metadata=service.metadata)
    assert list(me.service_account.scopes) == [PAYMENTS_CONFIRM, RECHARGES_READ]

    bare = await create_service(channel, resources)
    assert "scope" not in jwt.decode(bare.access_token, options={"verify_signature": False})
    # An account without scopes still knows who it is (GetMe is service_self).
    me = await auth_stub(channel).GetMe(auth_service_pb2.GetMeRequest(), metadata=bare.metadata)
    assert me.service_account.client_id == bare.email and not me.service_account.scopes


async def test_unknown_scope_is_refused_and_nothing_is_created(resources: Any) -> None:
    with pytest.raises(InvalidArgument) as caught:
        await flows.create_service_account(
            resources.db,
            NewServiceAccount(
                name="typo", client_id="svc_typo", scopes=["recharge.write"], prefix=""
            ),
        )
    (violation,) = caught.value.violations
    assert violation.field == "scopes"
    assert "'recharge.write'" in violation.description
    assert all(scope in violation.description for scope in SCOPES)
    async with resources.engine.connect() as conn:
        count = select(func.count()).where(service_accounts.c.client_id == "svc_typo")
        assert (await conn.execute(count)).scalar_one() == 0
    with pytest.raises(NotFound):
        await flows.set_service_account_scopes(resources.db, "svc_nobody", [RECHARGES_READ])


# --- enforcement ----------------------------------------------------------------------------


async def test_each_scope_opens_only_its_rpcs(channel: grpc.aio.Channel, resources: Any) -> None:
    user, txn_id = await a_recharge(channel, resources)
    reader = await create_service(channel, resources, [RECHARGES_READ])
    writer = await create_service(channel, resources, [RECHARGES_WRITE])
    confirmer = await create_service(channel, resources, [PAYMENTS_CONFIRM])

    # recharges.read: any customer's recharge by id, and nothing that moves money.
    assert await get_recharge(channel, reader, txn_id) is None
    assert missing(await confirm(channel, reader), PAYMENTS_CONFIRM)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await recharges(channel).Recharge(
            rpb.RechargeRequest(request_id=str(uuid.uuid4()), plan_id=1, user_id=user.user_id),
            metadata=reader.metadata,
        )
    assert missing(details_of(caught.value), RECHARGES_WRITE)

    # recharges.write: quotes and recharges on behalf of a customer, but no reads.
    plan_id = await make_plan(resources, price="5.00")
    quote = await recharges(channel).QuoteRecharge(
        rpb.QuoteRechargeRequest(plan_id=plan_id, user_id=user.user_id), metadata=writer.metadata
    )
    assert quote.eligible
    done = await recharges(channel).Recharge(
        rpb.RechargeRequest(request_id=str(uuid.uuid4()), plan_id=plan_id, user_id=user.user_id),
        metadata=writer.metadata,
    )
    assert done.transaction.user_id == user.user_id
    assert missing(await get_recharge(channel, writer, txn_id), RECHARGES_READ)

    # payments.confirm: past the access layer (to the callback check: this request carries
    # no signed callback), nothing else.
    past = await confirm(channel, confirmer)
    assert (past.code, past.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "CALLBACK_UNSIGNED")
    assert missing(await get_recharge(channel, confirmer, txn_id), RECHARGES_READ)


async def test_missing_scope_error_names_the_scope(
    channel: grpc.aio.Channel, resources: Any
) -> None:
    service = await create_service(channel, resources)
    details = await confirm(channel, service)
    assert details.code == grpc.StatusCode.PERMISSION_DENIED
    assert details.reason == "MISSING_SCOPE"
    assert details.metadata == {"scope": PAYMENTS_CONFIRM}
    assert "payments.confirm" in details.message


async def test_a_scope_taken_away_stops_within_the_cache_time(
    channel: grpc.aio.Channel, resources: Any, server_clock: FakeClock
) -> None:
    """The token keeps its claim, but the account's cached state decides within
    ``auth_cache_seconds`` + 1 s (stepped on the server's clock); a scope added later
    needs a new token, since the old one never claimed it."""
    limit = resources.settings.auth_cache_seconds + 1.0
    _, txn_id = await a_recharge(channel, resources)
    service = await create_service(channel, resources, [RECHARGES_READ])
    assert await get_recharge(channel, service, txn_id) is None

    await flows.set_service_account_scopes(resources.db, service.email, [])
    assert await get_recharge(channel, service, txn_id) is None  # cached: clock decides
    server_clock.advance(limit)
    assert missing(await get_recharge(channel, service, txn_id), RECHARGES_READ)

    account = await flows.set_service_account_scopes(
        resources.db, service.email, [RECHARGES_READ, PAYMENTS_CONFIRM]
    )
    assert account.scopes == (PAYMENTS_CONFIRM, RECHARGES_READ)
    server_clock.advance(limit)
    assert await get_recharge(channel, service, txn_id) is None  # claimed, held again
    assert missing(await confirm(channel, service), PAYMENTS_CONFIRM)  # held, not claimed
    fresh = await auth_stub(channel).IssueServiceToken(
        auth_service_pb2.IssueServiceTokenRequest(
            client_id=service.email, client_secret=service.password
        )
    )
    renewed = Actor(kind="service", access_token=fresh.access_token, email=service.email)
    assert (await confirm(channel, renewed)).reason == "CALLBACK_UNSIGNED"  # past the scope check


async def test_a_forged_scope_claim_grants_nothing(
    channel: grpc.aio.Channel, resources: Any, grpc_server: Any
) -> None:
    """Even re-signed with the server's own key, a claim only counts for scopes the
    account holds: the token cannot widen what the account was given."""
    service = await create_service(channel, resources, [RECHARGES_READ])
    claims = jwt.decode(service.access_token, options={"verify_signature": False})
    claims["scope"] = " ".join(sorted(SCOPES))
    keyring = grpc_server.security.keyring
    forged = jwt.encode(
        claims,
        keyring.sign_key,
        algorithm="EdDSA",
        headers={"kid": keyring.signing_kid, "typ": "at+jwt"},
    )
    actor = Actor(kind="service", access_token=forged, email=service.email)
    assert missing(await confirm(channel, actor), PAYMENTS_CONFIRM)
    _, txn_id = await a_recharge(channel, resources)
    assert await get_recharge(channel, actor, txn_id) is None  # what it does hold


# --- the rules in the contract --------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"audience": access_pb2.AUDIENCE_SERVICE}, "must name its service_scope"),
        (
            {"audience": access_pb2.AUDIENCE_AUTHENTICATED, "service_scope": "wallets.drain"},
            "unknown service_scope",
        ),
        (
            {"audience": access_pb2.AUDIENCE_PUBLIC, "service_scope": RECHARGES_READ},
            "only for AUDIENCE_SERVICE and AUDIENCE_AUTHENTICATED",
        ),
        (
            {
                "audience": access_pb2.AUDIENCE_PERMISSION,
                "resource": "Plans",
                "action": access_pb2.ACTION_READ,
                "service_scope": RECHARGES_READ,
            },
            "only for AUDIENCE_SERVICE and AUDIENCE_AUTHENTICATED",
        ),
        (
            {"audience": access_pb2.AUDIENCE_SERVICE, "service_self": True},
            "must name its service_scope",
        ),
        (
            {
                "audience": access_pb2.AUDIENCE_AUTHENTICATED,
                "service_scope": RECHARGES_READ,
                "service_self": True,
            },
            "service_self is only for",
        ),
        ({"audience": access_pb2.AUDIENCE_AUTHENTICATED}, None),
        ({"audience": access_pb2.AUDIENCE_AUTHENTICATED, "service_self": True}, None),
        ({"audience": access_pb2.AUDIENCE_SERVICE, "service_scope": PAYMENTS_CONFIRM}, None),
    ],
)
def test_inconsistent_service_rules_stop_the_start(
    rule: dict[str, Any], problem: str | None
) -> None:
    found = service_rule_problem(access_pb2.AccessRule(**rule))
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found

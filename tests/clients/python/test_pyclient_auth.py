"""Credentials through the real server: logins (password, OTP, admin TOTP), refresh
before expiry and after the server's "expired", one refresh at a time under 50
concurrent calls (a second refresh of one token would end the session), service-account
tokens issued again, and secrets kept out of every repr."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from gencharge_client import (
    AsyncClient,
    RefreshTokenReused,
    ServiceAccountCredentials,
    SessionCredentials,
    SessionEnded,
    StaticTokenCredentials,
    TokenExpired,
    Unavailable,
)
from gencharge_client.v1 import auth_service_pb2 as auth_pb

from server.admin import flows as admin_flows
from server.auth import totp
from tests.clients.h2proxy import H2Proxy
from tests.clients.python.support import WallClock, expired_copy
from tests.helpers.auth import (
    PASSWORD,
    create_service,
    latest_code,
    register_user,
    verify_contacts,
)

CONCURRENT_CALLS = 50


async def login_tokens(client: AsyncClient, email: str) -> auth_pb.AuthTokens:
    reply = await client.auth.login(auth_pb.LoginRequest(email=email, password=PASSWORD))
    return reply.tokens


async def active_sessions(client: AsyncClient) -> list[auth_pb.Session]:
    return [s async for s in client.auth.list_sessions.items()]


async def test_fifty_concurrent_calls_near_expiry_refresh_once_and_the_session_survives(
    client: AsyncClient, channel: Any
) -> None:
    user = await register_user(channel)
    tokens = await login_tokens(client, user.email)
    clock = WallClock(time.time())
    persisted: list[auth_pb.AuthTokens] = []
    session = SessionCredentials(tokens, clock=clock, on_refresh=persisted.append)
    me = client.with_credentials(session)
    assert (await me.auth.get_me()).user.user_id == user.user_id
    assert session.renewals == 0

    # The access token is 30 s from expiry: inside the refresh skew.
    clock.now = session.access_token_expires_at - 30
    calls = [me.auth.get_me() for _ in range(CONCURRENT_CALLS // 2)]
    calls += [me.wallet.get_wallet() for _ in range(CONCURRENT_CALLS // 2)]
    answers = await asyncio.gather(*calls)
    assert len(answers) == CONCURRENT_CALLS
    assert session.renewals == 1
    assert len(persisted) == 1
    newest = persisted[0]
    assert session.refresh_token == newest.refresh_token != tokens.refresh_token
    assert newest.session_id == tokens.session_id

    # The session is alive and listed as active: no refresh token was used twice.
    listed = await active_sessions(me)
    assert [s.session_id for s in listed if s.current] == [tokens.session_id]
    assert all(s.is_active for s in listed)
    # And the newest refresh token still works: the next refresh goes through.
    clock.now = session.access_token_expires_at - 30
    await asyncio.gather(*(me.auth.get_me() for _ in range(CONCURRENT_CALLS)))
    assert session.renewals == 2
    assert session.refresh_token == persisted[1].refresh_token
    assert [s.session_id for s in await active_sessions(me) if s.current] == [tokens.session_id]


async def test_a_token_the_server_calls_expired_is_refreshed_once_for_fifty_calls(
    client: AsyncClient, channel: Any, grpc_server: Any
) -> None:
    user = await register_user(channel)
    tokens = await login_tokens(client, user.email)
    # The client believes its token good for minutes; the server finds it expired.
    stale = auth_pb.AuthTokens()
    stale.CopyFrom(tokens)
    stale.access_token = expired_copy(grpc_server, tokens.access_token)
    with pytest.raises(TokenExpired) as refused:
        await client.with_credentials(StaticTokenCredentials(stale.access_token)).auth.get_me()
    assert refused.value.reason == "INVALID_TOKEN"
    assert refused.value.metadata["cause"] == "expired"

    session = SessionCredentials(stale)
    me = client.with_credentials(session)
    answers = await asyncio.gather(*(me.wallet.get_wallet() for _ in range(CONCURRENT_CALLS)))
    assert {a.user_id for a in answers} == {user.user_id}
    assert session.renewals == 1
    assert [s.session_id for s in await active_sessions(me) if s.current] == [tokens.session_id]


async def test_a_reused_refresh_token_ends_the_session_and_says_so(
    client: AsyncClient, channel: Any
) -> None:
    user = await register_user(channel)
    tokens = await login_tokens(client, user.email)
    clock = WallClock(time.time())
    session = SessionCredentials(tokens, clock=clock)
    # Someone else spends the refresh token first (what two unsynchronised refreshers do).
    await client.auth.refresh_token(auth_pb.RefreshTokenRequest(refresh_token=tokens.refresh_token))
    clock.now = session.access_token_expires_at
    with pytest.raises(RefreshTokenReused):
        await client.with_credentials(session).auth.get_me()
    with pytest.raises(SessionEnded):
        await client.with_credentials(StaticTokenCredentials(tokens.access_token)).auth.get_me()


async def test_a_lost_refresh_is_not_retried_and_the_next_one_ends_the_session(
    proxied: AsyncClient, proxy: H2Proxy, client: AsyncClient, channel: Any
) -> None:
    user = await register_user(channel)
    tokens = await login_tokens(proxied, user.email)  # the connection is up
    clock = WallClock(time.time())
    session = SessionCredentials(tokens, clock=clock)
    me = proxied.with_credentials(session)
    clock.now = session.access_token_expires_at - 10  # the next call refreshes first
    proxy.arm(1)  # ... and the RefreshToken answer is lost: the server rotated the token
    with pytest.raises(Unavailable):
        await me.auth.get_me()
    assert proxy.dropped == 1
    assert session.renewals == 0 and session.refresh_token == tokens.refresh_token
    # Not retried (a retry would have presented the rotated token already): the next
    # refresh does, and the server ends the session.
    with pytest.raises(RefreshTokenReused):
        await me.auth.get_me()
    assert isinstance(session.ended, RefreshTokenReused)
    proxy.arm(1)  # a call to the server now would be cut: there is none
    with pytest.raises(RefreshTokenReused):  # ended for good: log in again
        await me.auth.get_me()
    assert proxy.dropped == 1
    with pytest.raises(SessionEnded):
        await client.with_credentials(StaticTokenCredentials(tokens.access_token)).auth.get_me()


async def test_otp_login(client: AsyncClient, channel: Any, resources: Any) -> None:
    user = await register_user(channel)
    await verify_contacts(channel, resources, user, email=False)
    sent = await client.request_otp(user.phone_number)
    assert sent.expires_at.seconds > 0
    code = await latest_code(resources, user.phone_number, "login_otp")
    session = await client.login_otp(phone_number=user.phone_number, code=code)
    principal = await client.with_credentials(session).auth.get_me()
    assert principal.user.user_id == user.user_id


async def test_admin_login_answers_the_totp_step(client: AsyncClient, resources: Any) -> None:
    email = f"admin-{uuid.uuid4().hex[:8]}@example.com"
    await admin_flows.ensure_admin(
        resources.db, email=email, name="SDK Admin", password=PASSWORD, role_name="Admin"
    )
    challenges: list[auth_pb.MfaChallenge] = []

    def authenticator(challenge: auth_pb.MfaChallenge) -> str:
        # First login: the challenge carries the enrolment secret the app is set up with.
        challenges.append(challenge)
        return totp.current_code(challenge.enrolment.secret, datetime.now(UTC))

    session = await client.login_admin(email=email, password=PASSWORD, totp=authenticator)
    principal = await client.with_credentials(session).auth.get_me()
    assert principal.admin.email == email
    assert len(challenges) == 1 and challenges[0].enrolment.secret


async def test_service_account_tokens_are_issued_again_before_expiry_once(
    client: AsyncClient, channel: Any, resources: Any
) -> None:
    service = await create_service(channel, resources, [])
    clock = WallClock(time.time())
    credentials = ServiceAccountCredentials(service.email, service.password, clock=clock)
    me = client.with_credentials(credentials)
    principal = await me.auth.get_me()
    assert principal.service_account.client_id == service.email
    assert credentials.renewals == 1  # the first token
    clock.now = credentials.access_token_expires_at - 10
    await asyncio.gather(*(me.auth.get_me() for _ in range(CONCURRENT_CALLS)))
    assert credentials.renewals == 2


async def test_secrets_never_show_in_reprs_or_errors(client: AsyncClient, channel: Any) -> None:
    user = await register_user(channel)
    tokens = await login_tokens(client, user.email)
    session = SessionCredentials(tokens)
    service = ServiceAccountCredentials("svc_123", "s3cret-value-of-the-service")
    static = StaticTokenCredentials(tokens.access_token)
    shown = " ".join(
        [
            repr(session),
            str(session),
            repr(service),
            repr(static),
            repr(client.with_credentials(session)),
        ]
    )
    for secret in (tokens.access_token, tokens.refresh_token, "s3cret-value-of-the-service"):
        assert secret not in shown
    assert tokens.session_id in shown and "svc_123" in shown
    with pytest.raises(Exception) as failed:
        await client.login(email=user.email, password="the wrong passphrase 123")
    assert "the wrong passphrase" not in f"{failed.value!s} {failed.value!r}"

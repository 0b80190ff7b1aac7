"""AuthService flows through the real server over real PostgreSQL and MongoDB."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import text

from gencharge.v1 import auth_service_pb2 as pb
from gencharge.v1 import common_pb2, plan_service_pb2, plan_service_pb2_grpc
from server.core.messaging import DevOutboxSender
from tests.helpers.auth import (
    PASSWORD,
    Actor,
    admin_login,
    auth_stub,
    create_admin,
    create_service,
    next_phone,
    register_user,
    totp_code,
    verify_contacts,
)
from tests.helpers.rpc import details_of


async def _fails(call: Any, code: grpc.StatusCode) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    details = details_of(info.value)
    assert details.code == code, (details.code, details.message)
    return details


async def _me(channel: grpc.aio.Channel, actor: Actor) -> Any:
    return await auth_stub(channel).GetMe(pb.GetMeRequest(), metadata=actor.metadata)


async def _sql(resources: Any, statement: str, **params: Any) -> Any:
    async with resources.db.transaction() as conn:
        result = await conn.execute(text(statement), params)
        return result.all() if result.returns_rows else []


# --- registration -------------------------------------------------------------------------


async def test_register_then_get_me(channel) -> None:
    actor = await register_user(channel, name="Asha Rao", phone_number="+91 98450-12345")
    me = await _me(channel, actor)
    assert me.user.name == "Asha Rao"
    assert me.user.phone_number == "9845012345"  # normalised national number
    assert me.user.user_type == common_pb2.USER_TYPE_PREPAID
    assert me.user.wallet_balance.units_minor == 0
    assert me.user.role_name == "User"
    assert re.fullmatch(r"[A-Z0-9]{8}", me.user.referral_code)


async def test_register_with_referral_code(channel) -> None:
    referrer = await register_user(channel)
    code = (await _me(channel, referrer)).user.referral_code
    referred = await register_user(channel, referral_code=code.lower())
    assert (await _me(channel, referred)).user.referred_by == code


async def test_register_rejects_bad_input_with_field_violations(channel, resources) -> None:
    stub = auth_stub(channel)
    details = await _fails(
        stub.Register(
            pb.RegisterRequest(name="", email="not-an-email", phone_number="12345", password="pw")
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert {"name", "email", "phone_number", "password", "user_type"} <= set(
        details.field_violations
    )
    details = await _fails(
        stub.Register(
            pb.RegisterRequest(
                name="X",
                email="x@example.com",
                password=PASSWORD,
                user_type=common_pb2.USER_TYPE_PREPAID,
                referral_code="NOPE0000",
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(details.field_violations) == {"referral_code"}
    for weak in ["iloveyou", "12345678", "qwertyuiop"]:
        details = await _fails(
            stub.Register(
                pb.RegisterRequest(
                    name="Y",
                    email="y@example.com",
                    password=weak,
                    user_type=common_pb2.USER_TYPE_PREPAID,
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert weak not in details.message
        assert weak not in details.field_violations["password"]
    rows = await _sql(
        resources, "SELECT count(*) FROM users WHERE email IN ('x@example.com', 'y@example.com')"
    )
    assert rows[0][0] == 0  # nothing half-written


async def test_long_passphrase_accepted(channel) -> None:
    passphrase = "correct horse battery staple " * 8
    actor = await register_user(channel, password=passphrase)
    reply = await auth_stub(channel).Login(pb.LoginRequest(email=actor.email, password=passphrase))
    assert reply.tokens.access_token


async def test_duplicate_email_and_phone(channel) -> None:
    first = await register_user(channel)
    details = await _fails(
        register_user(channel, email=first.email.upper()), grpc.StatusCode.ALREADY_EXISTS
    )
    assert details.reason == "EMAIL_TAKEN"
    details = await _fails(
        register_user(channel, phone_number=first.phone_number), grpc.StatusCode.ALREADY_EXISTS
    )
    assert details.reason == "PHONE_TAKEN"


async def test_password_stored_as_argon2id_only(channel, resources) -> None:
    actor = await register_user(channel)
    rows = await _sql(resources, "SELECT password_hash FROM users WHERE email = :e", e=actor.email)
    assert rows[0][0].startswith("$argon2id$") and PASSWORD not in rows[0][0]


# --- password login -----------------------------------------------------------------------


async def test_login_by_email_and_phone(channel) -> None:
    actor = await register_user(channel)
    stub = auth_stub(channel)
    by_email = await stub.Login(pb.LoginRequest(email=actor.email, password=PASSWORD))
    by_phone = await stub.Login(
        pb.LoginRequest(phone_number=f"+91{actor.phone_number}", password=PASSWORD)
    )
    assert by_email.tokens.session_id != by_phone.tokens.session_id
    assert by_email.tokens.token_type == "Bearer"
    claims = jwt.decode(by_email.tokens.access_token, options={"verify_signature": False})
    lifetime = claims["exp"] - claims["iat"]
    assert 0 < lifetime <= 900
    assert claims["sub"] == f"user:{actor.user_id}" and claims["sid"] == by_email.tokens.session_id


async def test_login_failures_are_generic(channel) -> None:
    actor = await register_user(channel)
    stub = auth_stub(channel)
    wrong = await _fails(
        stub.Login(pb.LoginRequest(email=actor.email, password="wrong password 123")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    unknown = await _fails(
        stub.Login(pb.LoginRequest(email="nobody@example.com", password="wrong password 123")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert wrong.message == unknown.message and wrong.reason == unknown.reason
    await _fails(stub.Login(pb.LoginRequest(password="x")), grpc.StatusCode.INVALID_ARGUMENT)


async def test_blocked_user_cannot_log_in_and_loses_sessions(channel, resources) -> None:
    actor = await register_user(channel)
    await _sql(resources, "UPDATE users SET status = 'blocked' WHERE user_id = :u", u=actor.user_id)
    details = await _fails(
        auth_stub(channel).Login(pb.LoginRequest(email=actor.email, password=PASSWORD)),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert details.reason == "ACCOUNT_BLOCKED"
    rows = await _sql(
        resources, "SELECT is_active FROM sessions WHERE user_id = :u", u=actor.user_id
    )
    assert rows and not any(r[0] for r in rows)


# --- admin MFA ----------------------------------------------------------------------------


async def test_admin_enrols_totp_then_logs_in_with_it(channel, resources) -> None:
    admin = await create_admin(channel, resources)
    assert admin.totp_secret  # enrolment happened on first login
    me = await _me(channel, admin)
    assert me.admin.mfa_enabled and me.admin.role_name == "Admin"
    stub = auth_stub(channel)
    second = await stub.Login(
        pb.LoginRequest(
            email=admin.email, password=PASSWORD, principal_type=common_pb2.PRINCIPAL_TYPE_ADMIN
        )
    )
    assert second.WhichOneof("result") == "mfa_challenge"
    assert not second.mfa_challenge.HasField("enrolment")  # the secret is never shown again
    rows = await _sql(resources, "SELECT totp_secret FROM admins WHERE email = :e", e=admin.email)
    assert admin.totp_secret not in rows[0][0]  # stored encrypted
    await stub.VerifyMfa(
        pb.VerifyMfaRequest(
            challenge_token=second.mfa_challenge.challenge_token, totp_code=totp_code(admin)
        )
    )


async def test_mfa_wrong_code_replay_and_single_use(channel, resources) -> None:
    admin = await create_admin(channel, resources)
    stub = auth_stub(channel)

    async def challenge() -> str:
        reply = await stub.Login(
            pb.LoginRequest(
                email=admin.email,
                password=PASSWORD,
                principal_type=common_pb2.PRINCIPAL_TYPE_ADMIN,
            )
        )
        return reply.mfa_challenge.challenge_token

    token = await challenge()
    await _fails(
        stub.VerifyMfa(pb.VerifyMfaRequest(challenge_token=token, totp_code="000000")),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    code = totp_code(admin)
    await stub.VerifyMfa(pb.VerifyMfaRequest(challenge_token=token, totp_code=code))
    # The challenge is single use, and the code cannot be replayed on a new challenge.
    await _fails(
        stub.VerifyMfa(pb.VerifyMfaRequest(challenge_token=token, totp_code=totp_code(admin))),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await _fails(
        stub.VerifyMfa(pb.VerifyMfaRequest(challenge_token=await challenge(), totp_code=code)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_mfa_challenge_dies_after_five_wrong_codes(channel, resources) -> None:
    admin = await create_admin(channel, resources)
    stub = auth_stub(channel)
    reply = await stub.Login(
        pb.LoginRequest(
            email=admin.email, password=PASSWORD, principal_type=common_pb2.PRINCIPAL_TYPE_ADMIN
        )
    )
    token = reply.mfa_challenge.challenge_token
    for _ in range(5):
        await _fails(
            stub.VerifyMfa(pb.VerifyMfaRequest(challenge_token=token, totp_code="111111")),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.VerifyMfa(pb.VerifyMfaRequest(challenge_token=token, totp_code=totp_code(admin)))
    assert info.value.code() in (
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )


# --- phone OTP ----------------------------------------------------------------------------


async def _latest_code(resources: Any, phone: str) -> str:
    message = await DevOutboxSender(resources.mongo_db).latest(phone, "login_otp")
    assert message is not None
    match = re.search(r"\b(\d{6})\b", message.body)
    assert match
    return match.group(1)


async def test_otp_login(channel, resources) -> None:
    actor = await register_user(channel)
    await verify_contacts(channel, resources, actor, email=False)
    stub = auth_stub(channel)
    reply = await stub.RequestOtp(pb.RequestOtpRequest(phone_number=actor.phone_number))
    assert reply.resend_after.seconds == 30
    code = await _latest_code(resources, actor.phone_number)
    rows = await _sql(
        resources, "SELECT code_hash FROM otp_codes WHERE phone_number = :p", p=actor.phone_number
    )
    assert all(code not in r[0] for r in rows)  # stored hashed
    tokens = await stub.VerifyOtp(pb.VerifyOtpRequest(phone_number=actor.phone_number, code=code))
    assert (await _me(channel, Actor("user", tokens.access_token))).user.user_id == actor.user_id
    # Single use.
    await _fails(
        stub.VerifyOtp(pb.VerifyOtpRequest(phone_number=actor.phone_number, code=code)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_otp_resend_limit_expiry_and_attempts(channel, resources) -> None:
    actor = await register_user(channel)
    await verify_contacts(channel, resources, actor, email=False)
    stub = auth_stub(channel)
    phone = actor.phone_number
    await stub.RequestOtp(pb.RequestOtpRequest(phone_number=phone))
    details = await _fails(
        stub.RequestOtp(pb.RequestOtpRequest(phone_number=phone)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert int(details.metadata["retry_after_seconds"]) <= 30
    code = await _latest_code(resources, phone)
    # Expired codes do not work.
    await _sql(
        resources,
        "UPDATE otp_codes SET expires_at = now() - interval '1 second' WHERE phone_number = :p",
        p=phone,
    )
    await _fails(
        stub.VerifyOtp(pb.VerifyOtpRequest(phone_number=phone, code=code)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    # A fresh code dies after 5 wrong attempts, even if the right one comes next.
    # (Clear the brute-force counters first: the expired attempt above counted.)
    await _sql(resources, "DELETE FROM auth_throttle")
    await _sql(
        resources,
        "UPDATE otp_codes SET created_at = now() - interval '1 minute' WHERE phone_number = :p",
        p=phone,
    )
    await stub.RequestOtp(pb.RequestOtpRequest(phone_number=phone))
    code = await _latest_code(resources, phone)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        await _fails(
            stub.VerifyOtp(pb.VerifyOtpRequest(phone_number=phone, code=wrong)),
            grpc.StatusCode.UNAUTHENTICATED,
        )
    await _sql(resources, "DELETE FROM auth_throttle")
    await _fails(
        stub.VerifyOtp(pb.VerifyOtpRequest(phone_number=phone, code=code)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    rows = await _sql(
        resources,
        "SELECT attempts, consumed_at IS NOT NULL FROM otp_codes WHERE phone_number = :p "
        "ORDER BY otp_id DESC LIMIT 1",
        p=phone,
    )
    assert rows[0][0] == 5 and rows[0][1]


async def test_otp_for_unknown_number_answers_the_same_and_sends_nothing(
    channel, resources
) -> None:
    phone = next_phone()
    reply = await auth_stub(channel).RequestOtp(pb.RequestOtpRequest(phone_number=phone))
    assert reply.expires_at.seconds > 0
    assert await DevOutboxSender(resources.mongo_db).latest(phone, "login_otp") is None


# --- refresh tokens -----------------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_session(channel) -> None:
    actor = await register_user(channel)
    stub = auth_stub(channel)
    rotated = await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=actor.refresh_token))
    assert rotated.refresh_token != actor.refresh_token
    assert rotated.session_id == actor.session_id
    newer = await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=rotated.refresh_token))
    details = await _fails(
        stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=actor.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert details.reason == "REFRESH_TOKEN_REUSED"
    # The whole family is gone: the newest refresh token and its access token too.
    await _fails(
        stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=newer.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await _fails(_me(channel, Actor("user", newer.access_token)), grpc.StatusCode.UNAUTHENTICATED)


async def test_parallel_refresh_with_one_token_succeeds_at_most_once(channel) -> None:
    actor = await register_user(channel)
    stub = auth_stub(channel)
    results = await asyncio.gather(
        *(
            stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=actor.refresh_token))
            for _ in range(2)
        ),
        return_exceptions=True,
    )
    successes = [r for r in results if not isinstance(r, BaseException)]
    assert len(successes) <= 1
    for failure in (r for r in results if isinstance(r, BaseException)):
        assert isinstance(failure, grpc.aio.AioRpcError)
        assert failure.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_refresh_rejects_garbage(channel) -> None:
    stub = auth_stub(channel)
    await _fails(stub.RefreshToken(pb.RefreshTokenRequest()), grpc.StatusCode.INVALID_ARGUMENT)
    await _fails(
        stub.RefreshToken(pb.RefreshTokenRequest(refresh_token="rt_nonsense")),
        grpc.StatusCode.UNAUTHENTICATED,
    )


# --- sessions -----------------------------------------------------------------------------


async def test_list_revoke_and_logout(channel) -> None:
    first = await register_user(channel)
    stub = auth_stub(channel)
    second = (await stub.Login(pb.LoginRequest(email=first.email, password=PASSWORD))).tokens
    listed = await stub.ListSessions(pb.ListSessionsRequest(), metadata=first.metadata)
    assert {s.session_id for s in listed.sessions} == {first.session_id, second.session_id}
    assert [s.current for s in listed.sessions if s.session_id == first.session_id] == [True]
    paged = await stub.ListSessions(pb.ListSessionsRequest(page_size=1), metadata=first.metadata)
    assert len(paged.sessions) == 1 and paged.next_page_token
    # Revoke the second session from the first.
    await stub.RevokeSession(
        pb.RevokeSessionRequest(session_id=second.session_id), metadata=first.metadata
    )
    await _fails(_me(channel, Actor("user", second.access_token)), grpc.StatusCode.UNAUTHENTICATED)
    # Another user's session is NOT_FOUND, whether it exists or not.
    other = await register_user(channel)
    await _fails(
        stub.RevokeSession(
            pb.RevokeSessionRequest(session_id=other.session_id), metadata=first.metadata
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    await _me(channel, other)
    await _fails(
        stub.RevokeSession(pb.RevokeSessionRequest(session_id="nope"), metadata=first.metadata),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    # Logout ends the current session.
    await stub.Logout(pb.LogoutRequest(), metadata=first.metadata)
    await _fails(_me(channel, first), grpc.StatusCode.UNAUTHENTICATED)
    await _fails(
        stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=first.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_logout_all_sessions(channel) -> None:
    actor = await register_user(channel)
    stub = auth_stub(channel)
    other = (await stub.Login(pb.LoginRequest(email=actor.email, password=PASSWORD))).tokens
    await stub.Logout(pb.LogoutRequest(all_sessions=True), metadata=actor.metadata)
    await _fails(_me(channel, Actor("user", other.access_token)), grpc.StatusCode.UNAUTHENTICATED)


# --- passwords ----------------------------------------------------------------------------


async def test_change_password_revokes_other_sessions(channel) -> None:
    actor = await register_user(channel)
    stub = auth_stub(channel)
    other = (await stub.Login(pb.LoginRequest(email=actor.email, password=PASSWORD))).tokens
    details = await _fails(
        stub.ChangePassword(
            pb.ChangePasswordRequest(current_password="wrong one 1234", new_password="x" * 20),
            metadata=actor.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(details.field_violations) == {"current_password"}
    new_password = "a brand new passphrase 99"
    await stub.ChangePassword(
        pb.ChangePasswordRequest(current_password=PASSWORD, new_password=new_password),
        metadata=actor.metadata,
    )
    await _me(channel, actor)  # this session survives
    await _fails(_me(channel, Actor("user", other.access_token)), grpc.StatusCode.UNAUTHENTICATED)
    await _fails(
        stub.Login(pb.LoginRequest(email=actor.email, password=PASSWORD)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await stub.Login(pb.LoginRequest(email=actor.email, password=new_password))


async def test_password_reset(channel, resources) -> None:
    actor = await register_user(channel)
    await verify_contacts(channel, resources, actor, phone=False)
    stub = auth_stub(channel)
    outbox = DevOutboxSender(resources.mongo_db)
    # Unknown accounts get the same empty answer, and nothing is sent.
    await stub.RequestPasswordReset(pb.RequestPasswordResetRequest(email="ghost@example.com"))
    assert await outbox.latest("ghost@example.com", "password_reset") is None
    await stub.RequestPasswordReset(pb.RequestPasswordResetRequest(email=actor.email))
    message = await outbox.latest(actor.email, "password_reset")
    assert message is not None
    token = re.search(r"\b(pr_[A-Za-z0-9_-]+)", message.body).group(1)  # type: ignore[union-attr]
    await _fails(
        stub.ResetPassword(pb.ResetPasswordRequest(reset_token=token, new_password="short")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    new_password = "reset to something long 42"
    await stub.ResetPassword(pb.ResetPasswordRequest(reset_token=token, new_password=new_password))
    await _fails(_me(channel, actor), grpc.StatusCode.UNAUTHENTICATED)  # all sessions ended
    await _fails(
        stub.ResetPassword(pb.ResetPasswordRequest(reset_token=token, new_password=new_password)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await stub.Login(pb.LoginRequest(email=actor.email, password=new_password))


async def test_reset_token_expires(channel, resources) -> None:
    actor = await register_user(channel)
    await verify_contacts(channel, resources, actor, phone=False)
    stub = auth_stub(channel)
    await stub.RequestPasswordReset(pb.RequestPasswordResetRequest(email=actor.email))
    message = await DevOutboxSender(resources.mongo_db).latest(actor.email, "password_reset")
    token = re.search(r"\b(pr_[A-Za-z0-9_-]+)", message.body).group(1)  # type: ignore[union-attr]
    await _sql(resources, "UPDATE password_reset_tokens SET expires_at = now() - interval '1 s'")
    await _fails(
        stub.ResetPassword(pb.ResetPasswordRequest(reset_token=token, new_password="x" * 30)),
        grpc.StatusCode.UNAUTHENTICATED,
    )


# --- profile, JWKS, service tokens --------------------------------------------------------


async def test_update_me_with_field_mask(channel) -> None:
    actor = await register_user(channel)
    stub = auth_stub(channel)
    updated = await stub.UpdateMe(
        pb.UpdateMeRequest(
            profile=pb.Profile(name="New Name", email="ignored@example.com"),
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
        metadata=actor.metadata,
    )
    assert updated.user.name == "New Name" and updated.user.email == actor.email
    details = await _fails(
        stub.UpdateMe(
            pb.UpdateMeRequest(update_mask=field_mask_pb2.FieldMask(paths=["wallet_balance"])),
            metadata=actor.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "update_mask" in details.field_violations
    # Contacts never change through UpdateMe (see tests/auth/test_contacts.py).
    for path in ("email", "phone_number"):
        details = await _fails(
            stub.UpdateMe(
                pb.UpdateMeRequest(
                    profile=pb.Profile(email="new@example.com", phone_number=next_phone()),
                    update_mask=field_mask_pb2.FieldMask(paths=["name", path]),
                ),
                metadata=actor.metadata,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert details.reason == "CONTACT_CHANGE_NEEDS_VERIFICATION"
        assert "update_mask" in details.field_violations
    me = await _me(channel, actor)
    assert (me.user.name, me.user.email) == ("New Name", actor.email)


async def test_jwks_verifies_issued_tokens(channel) -> None:
    actor = await register_user(channel)
    jwks = await auth_stub(channel).GetJwks(pb.GetJwksRequest())
    assert jwks.keys
    header = jwt.get_unverified_header(actor.access_token)
    assert header["alg"] == "EdDSA"
    (key,) = [k for k in jwks.keys if k.kid == header["kid"]]
    public = jwt.PyJWK({"kty": key.kty, "crv": key.crv, "x": key.x, "kid": key.kid})
    claims = jwt.decode(
        actor.access_token, public.key, algorithms=["EdDSA"], audience="gencharge-api"
    )
    assert claims["iss"] == "gencharge"
    for k in jwks.keys:
        assert not hasattr(k, "d")


async def test_service_token(channel, resources) -> None:
    service = await create_service(channel, resources)
    me = await _me(channel, service)
    assert me.service_account.client_id == service.email
    assert me.service_account.role_name == "Service"
    claims = jwt.decode(service.access_token, options={"verify_signature": False})
    assert claims["ptype"] == "service" and "sid" not in claims
    stub = auth_stub(channel)
    await _fails(
        stub.IssueServiceToken(
            pb.IssueServiceTokenRequest(client_id=service.email, client_secret="gcs_wrong")
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await _fails(
        stub.Logout(pb.LogoutRequest(), metadata=service.metadata),
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def test_bad_token_rejected_even_on_public_rpc(channel) -> None:
    stub = plan_service_pb2_grpc.PlanServiceStub(channel)
    await stub.ListPlanGroups(plan_service_pb2.ListPlanGroupsRequest())  # anonymous is fine
    await _fails(
        stub.ListPlanGroups(
            plan_service_pb2.ListPlanGroupsRequest(),
            metadata=(("authorization", "Bearer not.a.jwt"),),
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )


async def test_admin_session_is_not_a_user_session(channel, resources) -> None:
    admin = await create_admin(channel, resources, role_name="Support")
    me = await _me(channel, admin)
    assert me.admin.role_name == "Support"
    again = await admin_login(channel, admin)
    assert again.session_id


async def test_expired_sessions_and_codes_are_cleaned_up(channel, resources) -> None:
    from server.auth import flows as auth_flows

    actor = await register_user(channel)
    await auth_stub(channel).RequestOtp(pb.RequestOtpRequest(phone_number=actor.phone_number))
    await auth_stub(channel).SendContactCode(
        pb.SendContactCodeRequest(channel=pb.CONTACT_CHANNEL_EMAIL), metadata=actor.metadata
    )
    await _sql(
        resources,
        "UPDATE sessions SET refresh_token_expires_at = now() - interval '2 days' "
        "WHERE user_id = :u",
        u=actor.user_id,
    )
    await _sql(resources, "UPDATE otp_codes SET expires_at = now() - interval '2 days'")
    await _sql(resources, "UPDATE contact_codes SET expires_at = now() - interval '2 days'")
    removed = await auth_flows.cleanup(resources.db)
    assert removed >= 3
    assert await _sql(resources, "SELECT 1 FROM sessions WHERE user_id = :u", u=actor.user_id) == []
    assert await _sql(resources, "SELECT 1 FROM otp_codes") == []
    assert await _sql(resources, "SELECT 1 FROM contact_codes") == []


async def test_data_key_rotation_keeps_admin_mfa_working(channel, resources) -> None:
    """A new data-encryption key with the old one listed as previous: enrolled TOTP
    secrets still open and are re-sealed under the new key on the next login; a key
    that never sealed them gives a clear FAILED_PRECONDITION, not INTERNAL."""
    import dataclasses

    from pydantic import SecretStr

    from server.core.crypto import generate_data_key
    from server.rpc.app import start_server

    admin = await create_admin(channel, resources)  # enrolled under the fixture's key
    old_key = resources.settings.data_encryption_key.get_secret_value()
    new_key = generate_data_key()

    async def sealed() -> str:
        async with resources.db.read_only() as conn:
            query = text("SELECT totp_secret FROM admins WHERE email = :e")
            return str((await conn.execute(query, {"e": admin.email})).scalar_one())

    async def login_with(data_key: str, previous: str = "") -> None:
        settings = resources.settings.model_copy(
            update={
                "data_encryption_key": SecretStr(data_key),
                "data_encryption_previous_keys": SecretStr(previous),
            }
        )
        async with resources.db.transaction() as conn:  # a fresh TOTP step
            await conn.execute(text("UPDATE admins SET totp_last_step = NULL"))
        admin.totp_uses = 0
        running = await start_server(
            dataclasses.replace(resources, settings=settings), "127.0.0.1:0"
        )
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as other:
                await admin_login(other, admin)
        finally:
            await running.stop(0)

    before = await sealed()
    await login_with(new_key, previous=f"{generate_data_key()}, {old_key}")
    after = await sealed()
    assert after != before  # re-sealed under the new key
    await login_with(new_key)  # the old key is no longer needed
    assert await sealed() == after
    lost_key = generate_data_key()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await login_with(lost_key)
    details = details_of(info.value)
    assert details.code == grpc.StatusCode.FAILED_PRECONDITION
    assert details.reason == "MFA_SECRET_UNREADABLE"

    # The operator's way out: `gencharge reset-admin-mfa` forgets the authenticator and
    # ends the admin's sessions; the next login enrols a new one.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENCHARGE_")}
    env.update(
        GENCHARGE_DATABASE_URL=resources.settings.database_url,
        GENCHARGE_MONGO_URL=resources.settings.mongo_url,
        GENCHARGE_LOG_LEVEL="WARNING",
    )
    gencharge = str(Path(sys.executable).parent / "gencharge")
    done = await asyncio.to_thread(
        subprocess.run, [gencharge, "reset-admin-mfa", admin.email], env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert b"second factor reset" in done.stdout
    async with resources.db.read_only() as conn:
        active = await conn.execute(
            text(
                "SELECT count(*) FROM sessions s JOIN admins a ON a.admin_id = s.admin_id"
                " WHERE a.email = :e AND s.is_active"
            ),
            {"e": admin.email},
        )
        assert active.scalar_one() == 0
    from tests.audit.test_audit_e2e import _documents

    (event,) = await _documents(resources.mongo_db, {"rpc": "cli/reset-admin-mfa"}, want=1)
    assert event["user_id"] == "system:cli" and event["details"]["mfa_reset"] is True
    admin.totp_secret = ""
    await login_with(lost_key)  # enrolment under the key now in use
    assert admin.totp_secret
    missing = await asyncio.to_thread(
        subprocess.run,
        [gencharge, "reset-admin-mfa", "nobody@example.com"],
        env=env,
        capture_output=True,
    )
    assert missing.returncode == 1 and b"no administrator" in missing.stderr

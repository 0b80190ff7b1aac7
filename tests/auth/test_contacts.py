"""Verified contacts and contact changes through the real server (issue #8, section 4).

A stolen access token must not be enough to take an account over: contacts change only
with recent proof of the account and a code sent to the new contact; a contact nobody
proved cannot be used to log in by OTP or to reset the password; Register is throttled
like Login; phone numbers are ASCII digits only.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import text

from gencharge.v1 import auth_service_pb2 as pb
from gencharge.v1 import common_pb2
from server.core.messaging import DevOutboxSender
from server.rpc.app import start_server
from tests.helpers.auth import (
    PASSWORD,
    Actor,
    auth_stub,
    create_admin,
    create_service,
    latest_code,
    next_phone,
    register_user,
    verify_contacts,
)
from tests.helpers.clock import FakeClock, eventually
from tests.helpers.rpc import ErrorDetails, details_of

EMAIL = pb.CONTACT_CHANNEL_EMAIL
PHONE = pb.CONTACT_CHANNEL_PHONE


async def _fails(call: Any, code: grpc.StatusCode, reason: str | None = None) -> ErrorDetails:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    details = details_of(info.value)
    assert details.code == code, (details.code, details.message)
    if reason is not None:
        assert details.reason == reason, (details.reason, details.message)
    return details


async def _sql(resources: Any, statement: str, **params: Any) -> Any:
    async with resources.db.transaction() as conn:
        result = await conn.execute(text(statement), params)
        return result.all() if result.returns_rows else []


async def _me(channel: grpc.aio.Channel, actor: Actor) -> Any:
    return await auth_stub(channel).GetMe(pb.GetMeRequest(), metadata=actor.metadata)


async def _sent(resources: Any, to: str, purpose: str) -> Any:
    return await DevOutboxSender(resources.mongo_db).latest(to, purpose)


async def _second_session(channel: grpc.aio.Channel, actor: Actor) -> Actor:
    """The same account logged in on another device."""
    reply = await auth_stub(channel).Login(
        pb.LoginRequest(email=actor.email, password=actor.password)
    )
    return dataclasses.replace(
        actor,
        access_token=reply.tokens.access_token,
        refresh_token=reply.tokens.refresh_token,
        session_id=reply.tokens.session_id,
    )


async def _audit_events(resources: Any, rpc: str) -> list[dict[str, Any]]:
    """The AuditLog documents of ``rpc`` once the relay has shipped one."""
    query = {"rpc": f"/gencharge.v1.AuthService/{rpc}", "action_type": {"$ne": "SECURITY"}}
    log = resources.mongo_db["AuditLog"]

    async def shipped() -> bool:
        return await log.find_one(query) is not None

    await eventually(shipped)
    return list(await log.find(query).to_list(None))


async def _allow_resend(resources: Any) -> None:
    """Age every code past the 30-second resend limit (instead of waiting)."""
    await _sql(resources, "UPDATE contact_codes SET created_at = now() - interval '1 minute'")
    await _sql(resources, "UPDATE otp_codes SET created_at = now() - interval '1 minute'")


def _email() -> str:
    return f"new-{next_phone()}@example.com"


# --- verification -------------------------------------------------------------------------


async def test_unverified_contacts_cannot_log_in_by_otp_or_reset(channel, resources) -> None:
    """Registration leaves both contacts unverified: RequestOtp and RequestPasswordReset
    answer exactly as for an unknown contact and send nothing, until the owner proves
    the contact with SendContactCode + VerifyContact."""
    actor = await register_user(channel)
    stub = auth_stub(channel)
    me = await _me(channel, actor)
    assert (me.user.email_verified, me.user.phone_verified) == (False, False)

    unknown_phone = next_phone()
    known = await stub.RequestOtp(pb.RequestOtpRequest(phone_number=actor.phone_number))
    unknown = await stub.RequestOtp(pb.RequestOtpRequest(phone_number=unknown_phone))
    assert known.resend_after == unknown.resend_after
    assert known.expires_at.seconds - unknown.expires_at.seconds in (-1, 0, 1)
    assert await _sent(resources, actor.phone_number, "login_otp") is None
    await stub.RequestPasswordReset(pb.RequestPasswordResetRequest(email=actor.email))
    await stub.RequestPasswordReset(pb.RequestPasswordResetRequest(phone_number=actor.phone_number))
    await stub.RequestPasswordReset(pb.RequestPasswordResetRequest(email="ghost@example.com"))
    assert await _sent(resources, actor.email, "password_reset") is None
    assert await _sent(resources, actor.phone_number, "password_reset") is None
    assert await _sql(resources, "SELECT 1 FROM password_reset_tokens") == []

    # Verifying the phone makes OTP login and phone resets work, not e-mail resets.
    await verify_contacts(channel, resources, actor, email=False)
    me = await _me(channel, actor)
    assert (me.user.email_verified, me.user.phone_verified) == (False, True)
    await _sql(resources, "UPDATE otp_codes SET created_at = now() - interval '1 minute'")
    await stub.RequestOtp(pb.RequestOtpRequest(phone_number=actor.phone_number))
    code = await latest_code(resources, actor.phone_number, "login_otp")
    tokens = await stub.VerifyOtp(pb.VerifyOtpRequest(phone_number=actor.phone_number, code=code))
    assert (await _me(channel, Actor("user", tokens.access_token))).user.user_id == actor.user_id
    await stub.RequestPasswordReset(pb.RequestPasswordResetRequest(email=actor.email))
    assert await _sent(resources, actor.email, "password_reset") is None
    await stub.RequestPasswordReset(pb.RequestPasswordResetRequest(phone_number=actor.phone_number))
    assert await _sent(resources, actor.phone_number, "password_reset") is not None


async def test_a_code_for_a_contact_that_lost_its_verification_logs_nobody_in(
    channel, resources
) -> None:
    """VerifyOtp checks verification too, not only RequestOtp: a contact changed behind
    the service's back (the trigger clears its verification) cannot finish an OTP login."""
    actor = await register_user(channel)
    await verify_contacts(channel, resources, actor, email=False)
    stub = auth_stub(channel)
    await stub.RequestOtp(pb.RequestOtpRequest(phone_number=actor.phone_number))
    code = await latest_code(resources, actor.phone_number, "login_otp")
    # Any UPDATE of the contact that does not verify it clears the verification.
    await _sql(
        resources,
        "UPDATE users SET phone_number = :p WHERE user_id = :u",
        p=actor.phone_number,
        u=actor.user_id,
    )
    assert (await _me(channel, actor)).user.phone_verified  # same value: unchanged
    await _sql(
        resources,
        "UPDATE users SET phone_verified_at = NULL WHERE user_id = :u",
        u=actor.user_id,
    )
    await _fails(
        stub.VerifyOtp(pb.VerifyOtpRequest(phone_number=actor.phone_number, code=code)),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_OTP",
    )


async def test_database_clears_verification_when_a_contact_changes(channel, resources) -> None:
    actor = await register_user(channel)
    await verify_contacts(channel, resources, actor)
    await _sql(
        resources,
        "UPDATE users SET email = :e WHERE user_id = :u",
        e=_email(),
        u=actor.user_id,
    )
    me = await _me(channel, actor)
    assert (me.user.email_verified, me.user.phone_verified) == (False, True)


async def test_contact_codes_single_use_hashed_limited(channel, resources) -> None:
    actor = await register_user(channel)
    stub = auth_stub(channel)
    reply = await stub.SendContactCode(
        pb.SendContactCodeRequest(channel=EMAIL), metadata=actor.metadata
    )
    assert reply.resend_after.seconds == 30 and reply.expires_at.seconds > 0
    email_code = await latest_code(resources, actor.email, "contact_code")
    rows = await _sql(resources, "SELECT code_hash, destination FROM contact_codes")
    assert rows and all(email_code not in r[0] for r in rows)  # stored hashed
    (event,) = await _audit_events(resources, "SendContactCode")
    assert event["details"] == {"purpose": "contact_proof", "channel": "email"}
    assert email_code not in str(event)  # never audited
    details = await _fails(
        stub.SendContactCode(pb.SendContactCodeRequest(channel=EMAIL), metadata=actor.metadata),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "OTP_RESEND_TOO_SOON",
    )
    assert 0 < int(details.metadata["retry_after_seconds"]) <= 30
    # A code to the other contact replaces the first one.
    await stub.SendContactCode(pb.SendContactCodeRequest(channel=PHONE), metadata=actor.metadata)
    phone_code = await latest_code(resources, actor.phone_number, "contact_code")
    if email_code != phone_code:
        await _fails(
            stub.VerifyContact(pb.VerifyContactRequest(code=email_code), metadata=actor.metadata),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CODE",
        )
    principal = await stub.VerifyContact(
        pb.VerifyContactRequest(code=phone_code), metadata=actor.metadata
    )
    assert (principal.user.email_verified, principal.user.phone_verified) == (False, True)
    details = await _fails(
        stub.VerifyContact(pb.VerifyContactRequest(code=phone_code), metadata=actor.metadata),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CODE",
    )
    assert "code" in details.field_violations

    # Five wrong tries burn a code, even if the right one comes next.
    await _sql(resources, "DELETE FROM auth_throttle")
    await _sql(resources, "UPDATE contact_codes SET created_at = now() - interval '1 minute'")
    await stub.SendContactCode(pb.SendContactCodeRequest(channel=EMAIL), metadata=actor.metadata)
    code = await latest_code(resources, actor.email, "contact_code")
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        await _fails(
            stub.VerifyContact(pb.VerifyContactRequest(code=wrong), metadata=actor.metadata),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CODE",
        )
    # ...and the caller is throttled as well.
    await _fails(
        stub.VerifyContact(pb.VerifyContactRequest(code=code), metadata=actor.metadata),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_ATTEMPTS",
    )
    await _sql(resources, "DELETE FROM auth_throttle")
    await _fails(
        stub.VerifyContact(pb.VerifyContactRequest(code=code), metadata=actor.metadata),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CODE",
    )
    # Expired codes do not work.
    await _sql(resources, "UPDATE contact_codes SET created_at = now() - interval '1 minute'")
    await stub.SendContactCode(pb.SendContactCodeRequest(channel=EMAIL), metadata=actor.metadata)
    code = await latest_code(resources, actor.email, "contact_code")
    await _sql(resources, "UPDATE contact_codes SET expires_at = now() - interval '1 second'")
    await _fails(
        stub.VerifyContact(pb.VerifyContactRequest(code=code), metadata=actor.metadata),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CODE",
    )
    assert not (await _me(channel, actor)).user.email_verified


async def test_contact_code_input_errors(channel, resources) -> None:
    stub = auth_stub(channel)
    phone_only = await register_user(channel, email="")
    details = await _fails(
        stub.SendContactCode(pb.SendContactCodeRequest(), metadata=phone_only.metadata),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "channel" in details.field_violations
    await _fails(
        stub.SendContactCode(
            pb.SendContactCodeRequest(channel=EMAIL), metadata=phone_only.metadata
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "NO_SUCH_CONTACT",
    )
    details = await _fails(
        stub.VerifyContact(pb.VerifyContactRequest(code="12ab"), metadata=phone_only.metadata),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "code" in details.field_violations
    service = await create_service(channel, resources)
    for call in (
        stub.SendContactCode(pb.SendContactCodeRequest(channel=EMAIL), metadata=service.metadata),
        stub.VerifyContact(pb.VerifyContactRequest(code="123456"), metadata=service.metadata),
        stub.StartContactChange(
            pb.StartContactChangeRequest(email=_email(), current_password="x" * 12),
            metadata=service.metadata,
        ),
        stub.ConfirmContactChange(
            pb.ConfirmContactChangeRequest(code="123456"), metadata=service.metadata
        ),
    ):
        await _fails(call, grpc.StatusCode.PERMISSION_DENIED, "SERVICE_NOT_ALLOWED")


# --- the takeover scenario ----------------------------------------------------------------


async def test_stolen_access_token_cannot_change_a_contact(channel, resources) -> None:
    """A thief with the victim's access token (but not the password, nor the victim's
    phone or mailbox) cannot move the account to a contact of theirs."""
    victim = await register_user(channel)
    await verify_contacts(channel, resources, victim)
    stolen = Actor("user", victim.access_token)
    stub = auth_stub(channel)
    thief_phone, thief_email = next_phone(), _email()

    for path, profile in (
        ("phone_number", pb.Profile(phone_number=thief_phone)),
        ("email", pb.Profile(email=thief_email)),
    ):
        await _fails(
            stub.UpdateMe(
                pb.UpdateMeRequest(
                    profile=profile, update_mask=field_mask_pb2.FieldMask(paths=[path])
                ),
                metadata=stolen.metadata,
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "CONTACT_CHANGE_NEEDS_VERIFICATION",
        )
    details = await _fails(
        stub.StartContactChange(
            pb.StartContactChangeRequest(phone_number=thief_phone), metadata=stolen.metadata
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "current_password" in details.field_violations
    details = await _fails(
        stub.StartContactChange(
            pb.StartContactChangeRequest(
                phone_number=thief_phone, current_password="a guess at the password 1"
            ),
            metadata=stolen.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CREDENTIALS",
    )
    assert "current_password" in details.field_violations
    # A code to the victim's own phone does not help the thief, who cannot read it.
    await _allow_resend(resources)
    await stub.SendContactCode(pb.SendContactCodeRequest(channel=PHONE), metadata=stolen.metadata)
    real = await latest_code(resources, victim.phone_number, "contact_code")
    guess = "123456" if real != "123456" else "654321"
    details = await _fails(
        stub.StartContactChange(
            pb.StartContactChangeRequest(phone_number=thief_phone, current_contact_code=guess),
            metadata=stolen.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CODE",
    )
    assert "current_contact_code" in details.field_violations
    # Nothing pending, nothing sent to the thief, nothing changed.
    assert await _sent(resources, thief_phone, "contact_change_code") is None
    assert (
        await _sql(resources, "SELECT 1 FROM contact_codes WHERE purpose = 'contact_change'") == []
    )
    await _fails(
        stub.ConfirmContactChange(
            pb.ConfirmContactChangeRequest(code=guess), metadata=stolen.metadata
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CODE",
    )
    me = await _me(channel, victim)
    assert (me.user.phone_number, me.user.email) == (victim.phone_number, victim.email)
    # So the thief's phone cannot log in or reset the victim's password.
    await stub.RequestOtp(pb.RequestOtpRequest(phone_number=thief_phone))
    await stub.RequestPasswordReset(pb.RequestPasswordResetRequest(phone_number=thief_phone))
    assert await _sent(resources, thief_phone, "login_otp") is None
    assert await _sent(resources, thief_phone, "password_reset") is None


async def test_contact_change_waits_for_the_new_contacts_code(channel, resources) -> None:
    """With the password, the change still waits for the code sent to the new phone;
    then the old contacts are told, other sessions end, and what was sent to the old
    phone (login codes, reset tokens) stops working."""
    user = await register_user(channel)
    await verify_contacts(channel, resources, user)
    other_device = await _second_session(channel, user)
    stub = auth_stub(channel)
    old_phone, new_phone = user.phone_number, next_phone()
    # Outstanding before the change: a reset token and a login code for the old phone.
    await stub.RequestPasswordReset(pb.RequestPasswordResetRequest(email=user.email))
    reset = await _sent(resources, user.email, "password_reset")
    reset_token = re.search(r"\b(pr_[A-Za-z0-9_-]+)", reset.body).group(1)  # type: ignore[union-attr]
    await stub.RequestOtp(pb.RequestOtpRequest(phone_number=old_phone))
    old_login_code = await latest_code(resources, old_phone, "login_otp")

    reply = await stub.StartContactChange(
        pb.StartContactChangeRequest(phone_number=f"+91 {new_phone}", current_password=PASSWORD),
        metadata=user.metadata,
    )
    assert reply.resend_after.seconds == 30 and reply.expires_at.seconds > 0
    # Nothing has changed yet; the new phone is not the account's.
    me = await _me(channel, user)
    assert (me.user.phone_number, me.user.phone_verified) == (old_phone, True)
    await stub.RequestOtp(pb.RequestOtpRequest(phone_number=new_phone))
    assert await _sent(resources, new_phone, "login_otp") is None
    code = await latest_code(resources, new_phone, "contact_change_code")
    wrong = "000000" if code != "000000" else "111111"
    await _fails(
        stub.ConfirmContactChange(
            pb.ConfirmContactChangeRequest(code=wrong), metadata=user.metadata
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CODE",
    )
    assert (await _me(channel, user)).user.phone_number == old_phone

    principal = await stub.ConfirmContactChange(
        pb.ConfirmContactChangeRequest(code=code), metadata=user.metadata
    )
    assert principal.user.phone_number == new_phone
    assert (principal.user.phone_verified, principal.user.email_verified) == (True, True)

    # The old phone and the e-mail address are told, without the code or the full number.
    for to in (old_phone, user.email):
        notice = await _sent(resources, to, "contact_changed")
        assert notice is not None, to
        assert new_phone not in notice.body and new_phone[-4:] in notice.body
        assert code not in notice.body
    # Other sessions end: refresh token and access token of the other device.
    await _fails(
        stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=other_device.refresh_token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await _fails(_me(channel, other_device), grpc.StatusCode.UNAUTHENTICATED, "SESSION_ENDED")
    # The session that made the change stays.
    assert (await _me(channel, user)).user.user_id == user.user_id
    refreshed = await stub.RefreshToken(pb.RefreshTokenRequest(refresh_token=user.refresh_token))
    assert refreshed.session_id == user.session_id
    # What went to the old contacts is dead; the old phone logs nobody in.
    await _fails(
        stub.VerifyOtp(pb.VerifyOtpRequest(phone_number=old_phone, code=old_login_code)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    await _fails(
        stub.ResetPassword(
            pb.ResetPasswordRequest(reset_token=reset_token, new_password="x brand new one 9")
        ),
        grpc.StatusCode.UNAUTHENTICATED,
        "INVALID_RESET_TOKEN",
    )
    await _fails(
        stub.Login(pb.LoginRequest(phone_number=old_phone, password=PASSWORD)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    login = await stub.Login(pb.LoginRequest(phone_number=new_phone, password=PASSWORD))
    assert login.tokens.access_token
    await _allow_resend(resources)
    await stub.RequestOtp(pb.RequestOtpRequest(phone_number=new_phone))
    new_login_code = await latest_code(resources, new_phone, "login_otp")
    await stub.VerifyOtp(pb.VerifyOtpRequest(phone_number=new_phone, code=new_login_code))
    # The change is audited as the account's change, with no code and no address.
    (event,) = await _audit_events(resources, "ConfirmContactChange")
    assert (event["table_name"], event["action_type"]) == ("Users", "UPDATE")
    assert event["details"] == {"contact_changed": "phone", "sessions_revoked": 1}
    assert event["user_id"] == f"user:{user.user_id}"
    assert code not in str(event) and new_phone not in str(event)
    (started,) = await _audit_events(resources, "StartContactChange")
    assert (started["table_name"], started["action_type"]) == ("ContactCodes", "INSERT")
    assert started["details"] == {
        "purpose": "contact_change",
        "channel": "phone",
        "proof": "password",
    }


async def test_contact_change_proved_by_a_code_to_the_current_contact(channel, resources) -> None:
    """No password needed when a code sent to one of the account's contacts comes back;
    the e-mail address changes the same way as the phone."""
    user = await register_user(channel)
    await verify_contacts(channel, resources, user)
    stub = auth_stub(channel)
    other = await register_user(channel)
    new_email = _email()
    await _allow_resend(resources)
    await stub.SendContactCode(pb.SendContactCodeRequest(channel=PHONE), metadata=user.metadata)
    proof = await latest_code(resources, user.phone_number, "contact_code")
    # Unchanged or taken contacts are refused (after the proof, which stays unused).
    details = await _fails(
        stub.StartContactChange(
            pb.StartContactChangeRequest(email=user.email.upper(), current_contact_code=proof),
            metadata=user.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "email" in details.field_violations
    await _fails(
        stub.StartContactChange(
            pb.StartContactChangeRequest(email=other.email, current_contact_code=proof),
            metadata=user.metadata,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "CONTACT_TAKEN",
    )
    await stub.StartContactChange(
        pb.StartContactChangeRequest(email=new_email, current_contact_code=proof),
        metadata=user.metadata,
    )
    # The proof is used up.
    await _fails(
        stub.StartContactChange(
            pb.StartContactChangeRequest(email=_email(), current_contact_code=proof),
            metadata=user.metadata,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CODE",
    )
    code = await latest_code(resources, new_email, "contact_change_code")
    principal = await stub.ConfirmContactChange(
        pb.ConfirmContactChangeRequest(code=code), metadata=user.metadata
    )
    assert (principal.user.email, principal.user.email_verified) == (new_email, True)
    assert await _sent(resources, user.email, "contact_changed") is not None
    # The code works once.
    await _fails(
        stub.ConfirmContactChange(
            pb.ConfirmContactChangeRequest(code=code), metadata=user.metadata
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CODE",
    )
    await stub.Login(pb.LoginRequest(email=new_email, password=PASSWORD))


async def test_contact_taken_while_the_change_waited(channel, resources) -> None:
    user = await register_user(channel)
    stub = auth_stub(channel)
    new_phone = next_phone()
    await stub.StartContactChange(
        pb.StartContactChangeRequest(phone_number=new_phone, current_password=PASSWORD),
        metadata=user.metadata,
    )
    code = await latest_code(resources, new_phone, "contact_change_code")
    await register_user(channel, phone_number=new_phone)
    await _fails(
        stub.ConfirmContactChange(
            pb.ConfirmContactChangeRequest(code=code), metadata=user.metadata
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "CONTACT_TAKEN",
    )
    assert (await _me(channel, user)).user.phone_number == user.phone_number


async def test_admin_changes_their_email(channel, resources) -> None:
    admin = await create_admin(channel, resources)
    stub = auth_stub(channel)
    new_email = _email()
    await stub.StartContactChange(
        pb.StartContactChangeRequest(email=new_email, current_password=PASSWORD),
        metadata=admin.metadata,
    )
    code = await latest_code(resources, new_email, "contact_change_code")
    principal = await stub.ConfirmContactChange(
        pb.ConfirmContactChangeRequest(code=code), metadata=admin.metadata
    )
    assert (principal.admin.email, principal.admin.email_verified) == (new_email, True)
    assert await _sent(resources, admin.email, "contact_changed") is not None
    reply = await stub.Login(
        pb.LoginRequest(
            email=new_email, password=PASSWORD, principal_type=common_pb2.PRINCIPAL_TYPE_ADMIN
        )
    )
    assert reply.mfa_challenge.challenge_token


async def test_other_replicas_drop_ended_sessions_within_the_cache_time(channel, resources) -> None:
    """Another server process caches session states for ``auth_cache_seconds``: the
    other device's access token stops there once that time has passed (its clock)."""
    user = await register_user(channel)
    other_device = await _second_session(channel, user)
    clock = FakeClock()
    replica = await start_server(resources, "127.0.0.1:0", clock=clock)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{replica.port}") as second:
            assert (await _me(second, other_device)).user.user_id == user.user_id  # cached
            stub = auth_stub(channel)
            new_phone = next_phone()
            await stub.StartContactChange(
                pb.StartContactChangeRequest(phone_number=new_phone, current_password=PASSWORD),
                metadata=user.metadata,
            )
            code = await latest_code(resources, new_phone, "contact_change_code")
            await stub.ConfirmContactChange(
                pb.ConfirmContactChangeRequest(code=code), metadata=user.metadata
            )
            assert (await _me(second, other_device)).user.user_id == user.user_id  # still cached
            clock.advance(resources.settings.auth_cache_seconds + 1.0)
            await _fails(
                _me(second, other_device), grpc.StatusCode.UNAUTHENTICATED, "SESSION_ENDED"
            )
            assert (await _me(second, user)).user.phone_number == new_phone
    finally:
        await replica.stop(0)


# --- Register throttle --------------------------------------------------------------------


def _register(email: str = "", phone: str = "") -> pb.RegisterRequest:
    return pb.RegisterRequest(
        name="Someone",
        email=email,
        phone_number=phone,
        password=PASSWORD,
        user_type=common_pb2.USER_TYPE_PREPAID,
    )


def _from(address: str) -> tuple[tuple[str, str], ...]:
    return (("x-forwarded-for", address),)


async def test_register_is_throttled_per_identifier_like_login(channel, resources) -> None:
    existing = await register_user(channel)
    stub = auth_stub(channel)
    for _ in range(5):
        await _fails(
            stub.Register(_register(email=existing.email)),
            grpc.StatusCode.ALREADY_EXISTS,
            "EMAIL_TAKEN",
        )
    details = await _fails(
        stub.Register(_register(email=existing.email)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_ATTEMPTS",
    )
    assert 0 < int(details.metadata["retry_after_seconds"]) <= 900
    # The same for the phone number; other identifiers from this address still work.
    for _ in range(5):
        await _fails(
            stub.Register(_register(phone=existing.phone_number)),
            grpc.StatusCode.ALREADY_EXISTS,
            "PHONE_TAKEN",
        )
    await _fails(
        stub.Register(_register(phone=existing.phone_number)),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_ATTEMPTS",
    )
    await stub.Register(_register(email=_email(), phone=next_phone()))
    rows = await _sql(resources, "SELECT throttle_key FROM auth_throttle")
    assert rows and all(existing.email not in r[0] for r in rows)  # hashed


async def test_register_is_throttled_per_address_like_login(channel, resources) -> None:
    """50 refusals from one client address (any identifiers) block that address, and
    only that one (behind a trusted proxy, here loopback)."""
    await _sql(
        resources,
        "INSERT INTO users (name, email, user_type, referral_code) "
        "SELECT 'Taken', 'taken-' || n || '@example.com', 'prepaid', 'TAKEN' || n "
        "FROM generate_series(1, 50) AS n",
    )
    settings = resources.settings.model_copy(update={"trusted_proxies": "127.0.0.0/8, ::1"})
    proxied = await start_server(dataclasses.replace(resources, settings=settings), "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proxied.port}") as through_proxy:
            stub = auth_stub(through_proxy)
            for n in range(1, 51):
                await _fails(
                    stub.Register(
                        _register(email=f"taken-{n}@example.com"), metadata=_from("203.0.113.5")
                    ),
                    grpc.StatusCode.ALREADY_EXISTS,
                )
            await _fails(
                stub.Register(_register(email=_email()), metadata=_from("203.0.113.5")),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "TOO_MANY_ATTEMPTS",
            )
            reply = await stub.Register(_register(email=_email()), metadata=_from("203.0.113.6"))
            assert reply.user.user_id
    finally:
        await proxied.stop(0)


# --- phone numbers ------------------------------------------------------------------------

#: 9210456789 with Devanagari digits after the first (issue #8's example).
DEVANAGARI = "9\u0968\u0967\u0966\u096a\u096b\u096c\u096d\u096e\u096f"
#: 9210456789 in full-width digits.
FULL_WIDTH = "".join(chr(0xFF10 + int(d)) for d in "9210456789")
ALL_DEVANAGARI = "+91 \u096f" + DEVANAGARI[1:]


async def test_phone_numbers_take_ascii_digits_only(channel, resources) -> None:
    stub = auth_stub(channel)
    for spelling in (DEVANAGARI, FULL_WIDTH, ALL_DEVANAGARI):
        details = await _fails(
            stub.Register(_register(email=_email(), phone=spelling)),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "phone_number" in details.field_violations
    owner = await register_user(channel, phone_number="9210456789")
    # The non-ASCII spelling of the same number is refused everywhere, so it can
    # neither make a second account nor reach the first one.
    details = await _fails(
        stub.Register(_register(email=_email(), phone=DEVANAGARI)),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "phone_number" in details.field_violations
    calls = [
        stub.Login(pb.LoginRequest(phone_number=DEVANAGARI, password=PASSWORD)),
        stub.RequestOtp(pb.RequestOtpRequest(phone_number=DEVANAGARI)),
        stub.VerifyOtp(pb.VerifyOtpRequest(phone_number=DEVANAGARI, code="123456")),
        stub.RequestPasswordReset(pb.RequestPasswordResetRequest(phone_number=DEVANAGARI)),
        stub.StartContactChange(
            pb.StartContactChangeRequest(phone_number=DEVANAGARI, current_password=PASSWORD),
            metadata=owner.metadata,
        ),
    ]
    for call in calls:
        details = await _fails(call, grpc.StatusCode.INVALID_ARGUMENT)
        assert "phone_number" in details.field_violations
    rows = await _sql(resources, "SELECT count(*) FROM users WHERE phone_number LIKE '9%'")
    assert rows[0][0] == 1

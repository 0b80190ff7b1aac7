"""Creating principals through the real server: users, admins (with TOTP), services."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc

from gencharge.v1 import auth_service_pb2 as auth_pb
from gencharge.v1 import auth_service_pb2_grpc, common_pb2
from server.admin import flows as admin_flows
from server.admin.staff import flows as staff_flows
from server.admin.staff.domain import NewServiceAccount
from server.auth import totp
from server.core.messaging import DevOutboxSender

PASSWORD = "a sturdy passphrase for tests 7"
_phones = itertools.count(9000000001)


@dataclass
class Actor:
    kind: str
    access_token: str
    refresh_token: str = ""
    session_id: str = ""
    email: str = ""
    phone_number: str = ""
    password: str = PASSWORD
    totp_secret: str = ""
    totp_uses: int = 0
    user_id: int = 0

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.access_token}"),)


def next_phone() -> str:
    return str(next(_phones))


def auth_stub(channel: grpc.aio.Channel) -> auth_service_pb2_grpc.AuthServiceStub:
    return auth_service_pb2_grpc.AuthServiceStub(channel)


async def register_user(channel: grpc.aio.Channel, **overrides: Any) -> Actor:
    email = overrides.pop("email", f"user-{uuid.uuid4().hex[:10]}@example.com")
    phone = overrides.pop("phone_number", next_phone())
    request = auth_pb.RegisterRequest(
        name=overrides.pop("name", "Test User"),
        email=email,
        phone_number=phone,
        password=overrides.pop("password", PASSWORD),
        user_type=overrides.pop("user_type", common_pb2.USER_TYPE_PREPAID),
        **overrides,
    )
    reply = await auth_stub(channel).Register(request)
    return Actor(
        kind="user",
        access_token=reply.tokens.access_token,
        refresh_token=reply.tokens.refresh_token,
        session_id=reply.tokens.session_id,
        email=email,
        phone_number=phone,
        password=request.password,
        user_id=reply.user.user_id,
    )


async def latest_code(resources: Any, to: str, purpose: str) -> str:
    """The 6-digit code of the newest message for ``to`` and ``purpose`` (DevOutbox)."""
    message = await DevOutboxSender(resources.mongo_db).latest(to, purpose)
    assert message is not None, f"no {purpose} message was sent"
    match = re.search(r"\b(\d{6})\b", message.body)
    assert match, "the message carries no 6-digit code"
    return match.group(1)


async def verify_contacts(
    channel: grpc.aio.Channel,
    resources: Any,
    actor: Actor,
    *,
    email: bool = True,
    phone: bool = True,
) -> None:
    """Verify the actor's e-mail and/or phone the way a client does: SendContactCode,
    read the code the contact received, VerifyContact."""
    stub = auth_stub(channel)
    wanted = [
        (auth_pb.CONTACT_CHANNEL_EMAIL, actor.email, email),
        (auth_pb.CONTACT_CHANNEL_PHONE, actor.phone_number, phone),
    ]
    for contact_channel, to, wanted_one in wanted:
        if not wanted_one:
            continue
        await stub.SendContactCode(
            auth_pb.SendContactCodeRequest(channel=contact_channel), metadata=actor.metadata
        )
        code = await latest_code(resources, to, "contact_code")
        await stub.VerifyContact(auth_pb.VerifyContactRequest(code=code), metadata=actor.metadata)


def totp_code(actor: Actor) -> str:
    """A fresh code: each use moves one step ahead (codes are single-use)."""
    now = datetime.now(UTC) + timedelta(seconds=30 * actor.totp_uses)
    actor.totp_uses += 1
    return totp.current_code(actor.totp_secret, now)


async def admin_login(channel: grpc.aio.Channel, actor: Actor) -> Actor:
    stub = auth_stub(channel)
    reply = await stub.Login(
        auth_pb.LoginRequest(
            email=actor.email,
            password=actor.password,
            principal_type=common_pb2.PRINCIPAL_TYPE_ADMIN,
        )
    )
    challenge = reply.mfa_challenge
    if challenge.HasField("enrolment"):
        actor.totp_secret = challenge.enrolment.secret
    tokens = await stub.VerifyMfa(
        auth_pb.VerifyMfaRequest(
            challenge_token=challenge.challenge_token, totp_code=totp_code(actor)
        )
    )
    actor.access_token = tokens.access_token
    actor.refresh_token = tokens.refresh_token
    actor.session_id = tokens.session_id
    return actor


async def create_admin(
    channel: grpc.aio.Channel, resources: Any, role_name: str = "Admin"
) -> Actor:
    email = f"{role_name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    await admin_flows.ensure_admin(
        resources.db,
        email=email,
        name=f"Test {role_name}",
        password=PASSWORD,
        role_name=role_name,
    )
    return await admin_login(channel, Actor(kind="admin", access_token="", email=email))


async def create_service(
    channel: grpc.aio.Channel, resources: Any, scopes: Iterable[str] = ()
) -> Actor:
    """A service account holding ``scopes`` (server/auth/scopes.py; none by default,
    like the command's) and a fresh token for it."""
    created = await staff_flows.create_service_account(
        resources.db,
        NewServiceAccount(name=f"test service {uuid.uuid4().hex[:8]}", scopes=tuple(scopes)),
    )
    client_id, secret = created.account.client_id, created.client_secret
    reply = await auth_stub(channel).IssueServiceToken(
        auth_pb.IssueServiceTokenRequest(client_id=client_id, client_secret=secret)
    )
    return Actor(kind="service", access_token=reply.access_token, email=client_id, password=secret)

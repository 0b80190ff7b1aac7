"""A customer's data export and erasure through the real server (AdminService
ExportUserData, EraseUserData) and the ``gencharge export-user`` command."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import text

from gencharge.v1 import admin_service_pb2 as pb
from gencharge.v1 import (
    auth_service_pb2,
    content_service_pb2,
    content_service_pb2_grpc,
    recharge_service_pb2,
    recharge_service_pb2_grpc,
)
from tests.admin.test_users import admin_stub, audit_documents, failure, get_me, rows
from tests.helpers.auth import auth_stub, create_admin, register_user
from tests.helpers.clock import HANG_SECONDS, eventually
from tests.helpers.money import fund, make_plan

GENCHARGE = str(Path(sys.executable).parent / "gencharge")


async def _customer_with_history(channel: Any, resources: Any) -> Any:
    """A customer who recharged once (wallet paid) and was notified."""
    user = await register_user(channel, name=f"Priya {uuid.uuid4().hex[:6]}")
    await fund(resources, user.user_id, "30.00")
    plan_id = await make_plan(resources, price="30.00")
    await recharge_service_pb2_grpc.RechargeServiceStub(channel).Recharge(
        recharge_service_pb2.RechargeRequest(plan_id=plan_id, request_id=uuid.uuid4().hex),
        metadata=user.metadata,
    )
    return user


def _keys(value: Any) -> set[str]:
    """Every key anywhere in a JSON value."""
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _keys(v)}
    return set()


async def _export(channel: Any, admin: Any, user_id: int) -> dict[str, Any]:
    reply = await admin_stub(channel).ExportUserData(
        pb.ExportUserDataRequest(user_id=user_id, reason="DSAR ticket 42"), metadata=admin.metadata
    )
    assert reply.content_type == "application/json"
    assert reply.HasField("generated_at")
    document: dict[str, Any] = json.loads(reply.document)
    return document


async def _contact_form(channel: Any, email: str, description: str) -> str:
    """A contact-form submission (no login) from ``email``; its id."""
    reply = await content_service_pb2_grpc.ContentServiceStub(channel).SubmitContactForm(
        content_service_pb2.SubmitContactFormRequest(
            name="Priya", email=email, description=description
        )
    )
    return reply.contact_form_id


async def test_export_holds_everything_and_no_secret(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    user = await _customer_with_history(channel, resources)
    # Sent without login, from the customer's address (in other letter case) and another.
    theirs = await _contact_form(channel, f" {user.email.upper()} ", "My recharge failed")
    await _contact_form(channel, "someone.else@example.com", "Not about this customer")
    # An audit event by the customer reaches MongoDB first (the recharge's).
    await eventually(
        lambda: resources.mongo_db["AuditLog"].count_documents({"user_id": f"user:{user.user_id}"}),
        within=HANG_SECONDS,
    )
    document = await _export(channel, admin, user.user_id)
    assert document["schema"] == "gencharge.user-export/v1"
    assert document["user_id"] == user.user_id and document["state"] == "active"
    assert document["profile"]["email"] == user.email
    assert document["contacts"]["phone_number"] == user.phone_number
    assert document["wallet"] == {"balance": "0.00", "currency": "INR"}
    amounts = sorted((t["txn_type"], t["amount"]) for t in document["transactions"])
    assert amounts == [("credit", "30.00"), ("debit", "30.00")]
    assert len(document["recharges"]) == 1 and len(document["plans"]) == 1
    assert document["plans"][0]["phone_number"] == user.phone_number
    assert len(document["sessions"]) == 1
    assert document["sessions"][0]["session_id"] == user.session_id
    assert document["audit_events"], "the customer's own audit events"
    assert [(f["contact_form_id"], f["description"]) for f in document["contact_forms"]] == [
        (theirs, "My recharge failed")
    ]
    for section in ("autopays", "bill_reminders", "payments", "notifications", "referral_rewards"):
        assert isinstance(document[section], list)
    # Never a secret: no hash column, no stored token hash, no tokens.
    raw = json.dumps(document)
    forbidden = {"password_hash", "refresh_token", "code_hash", "request_hash", "totp_secret"}
    assert not forbidden & _keys(document)
    stored = await rows(
        resources,
        "SELECT refresh_token, u.password_hash FROM sessions s JOIN users u USING (user_id)"
        " WHERE user_id = :u",
        u=user.user_id,
    )
    for token_hash, password_hash in stored:
        assert token_hash not in raw and password_hash not in raw
    assert user.access_token not in raw and user.refresh_token not in raw
    # Audited: a SECURITY event (outcome ok) naming the user and the reason only.
    docs = await audit_documents(resources, "ExportUserData")
    assert docs[0]["action_type"] == "SECURITY" and docs[0]["table_name"] == "Users"
    assert docs[0]["details"]["user_id"] == user.user_id
    assert docs[0]["details"]["reason"] == "DSAR ticket 42"
    assert user.email not in str(docs[0])

    stub = admin_stub(channel)
    missing = await failure(
        stub.ExportUserData(
            pb.ExportUserDataRequest(user_id=2_000_000, reason="x"), metadata=admin.metadata
        )
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
    no_reason = await failure(
        stub.ExportUserData(pb.ExportUserDataRequest(user_id=user.user_id), metadata=admin.metadata)
    )
    assert no_reason.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in no_reason.field_violations


async def test_erase_removes_personal_data_and_keeps_the_ledger(
    channel: Any, resources: Any
) -> None:
    admin = await create_admin(channel, resources)
    stub = admin_stub(channel)
    user = await _customer_with_history(channel, resources)
    async with resources.db.transaction() as conn:
        await conn.execute(
            text(
                "INSERT INTO notifications (recipient_id, description, sender_type)"
                " VALUES (:u, :d, 'system')"
            ),
            {"u": user.user_id, "d": f"Hello {user.email}"},
        )
    await _contact_form(channel, user.email, "Please call me back")
    other = await _contact_form(channel, "someone.else@example.com", "Keep me")
    forms = resources.mongo_db["ContactForm"]
    # Refused like ArchiveUser while money is left; nothing written.
    await fund(resources, user.user_id, "1.00")
    left = await failure(
        stub.EraseUserData(
            pb.EraseUserDataRequest(user_id=user.user_id, reason="DPDP erasure 7"),
            metadata=admin.metadata,
        )
    )
    assert (left.code, left.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "WALLET_NOT_EMPTY")
    assert await get_me(channel, user)
    assert await forms.count_documents({"email": user.email.lower()}) == 1
    async with resources.db.transaction() as conn:
        await conn.execute(
            text(
                "INSERT INTO transactions (user_id, category, txn_type, amount, source, status,"
                " payment_method) VALUES (:u, 'wallet', 'debit', 1, 'recharge', 'success',"
                " 'Wallet')"
            ),
            {"u": user.user_id},
        )
    ledger_before = await rows(
        resources,
        "SELECT txn_id, amount, txn_type, status FROM transactions WHERE user_id = :u"
        " ORDER BY txn_id",
        u=user.user_id,
    )

    reply = await stub.EraseUserData(
        pb.EraseUserDataRequest(user_id=user.user_id, reason="DPDP erasure 7"),
        metadata=admin.metadata,
    )
    assert reply.sessions_ended == 1
    erased = reply.user
    assert erased.user_id == user.user_id
    assert (erased.name, erased.email, erased.phone_number) == ("", "", "")
    assert erased.details.erased and erased.details.HasField("archived_at")
    # The token stops; no row keeps the name, e-mail or phone in the identity tables.
    assert (await failure(get_me(channel, user))).reason == "SESSION_ENDED"
    for table in ("users", "usersarchive"):
        found = await rows(
            resources,
            f"SELECT name, email, phone_number, password_hash FROM {table} WHERE user_id = :u",
            u=user.user_id,
        )
        assert found == [(None, None, None, None)], table
    for table in ("sessions", "contact_codes", "password_reset_tokens"):
        assert not await rows(
            resources,
            f"SELECT 1 FROM {table} WHERE user_id = :u",
            u=user.user_id,
        ), table
    assert not await rows(
        resources, "SELECT 1 FROM notifications WHERE recipient_id = :u", u=user.user_id
    )
    # Their contact-form submissions are gone; someone else's stays.
    assert await forms.count_documents({"email": user.email.lower()}) == 0
    assert await forms.count_documents({"id": other}) == 1
    # The ledger keeps its rows and amounts, still pointing at the user id.
    ledger_after = await rows(
        resources,
        "SELECT txn_id, amount, txn_type, status FROM transactions WHERE user_id = :u"
        " ORDER BY txn_id",
        u=user.user_id,
    )
    assert ledger_after == ledger_before and len(ledger_after) == 4
    # Audited without the erased data.
    docs = await audit_documents(resources, "EraseUserData")
    event = docs[0]
    assert event["table_name"] == "UsersArchive" and event["action_type"] == "UPDATE"
    assert event["details"]["deleted"]["contact_forms"] == 1
    assert event["details"]["user_id"] == user.user_id and event["details"]["erased"] is True
    assert event["details"]["archived_now"] is True
    flat = json.dumps(event, default=str)
    for personal in (user.email, user.phone_number, erased.name or "Priya"):
        assert personal not in flat
    # Idempotent: a second erasure answers the same and ends nothing.
    again = await stub.EraseUserData(
        pb.EraseUserDataRequest(user_id=user.user_id, reason="DPDP erasure 7"),
        metadata=admin.metadata,
    )
    assert again.sessions_ended == 0 and again.user.details.erased
    # The export still works and shows the erased state, with the ledger.
    document = await _export(channel, admin, user.user_id)
    assert document["state"] == "erased"
    assert document["profile"]["email"] is None and document["profile"]["name"] is None
    assert len(document["transactions"]) == 4
    # The contacts are free for a new account.
    fresh = await register_user(channel, email=user.email, phone_number=user.phone_number)
    assert fresh.user_id != user.user_id
    login = await failure(
        auth_stub(channel).Login(
            auth_service_pb2.LoginRequest(email=user.email, password="wrong password 1")
        )
    )
    assert login.code == grpc.StatusCode.UNAUTHENTICATED

    missing = await failure(
        stub.EraseUserData(
            pb.EraseUserDataRequest(user_id=2_000_000, reason="x"), metadata=admin.metadata
        )
    )
    assert (missing.code, missing.reason) == (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND")
    no_reason = await failure(
        stub.EraseUserData(pb.EraseUserDataRequest(user_id=fresh.user_id), metadata=admin.metadata)
    )
    assert no_reason.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_erase_of_an_archived_user(channel: Any, resources: Any) -> None:
    admin = await create_admin(channel, resources)
    stub = admin_stub(channel)
    user = await register_user(channel)
    await stub.ArchiveUser(
        pb.ArchiveUserRequest(user_id=user.user_id, reason="closed"), metadata=admin.metadata
    )
    reply = await stub.EraseUserData(
        pb.EraseUserDataRequest(user_id=user.user_id, reason="erasure"), metadata=admin.metadata
    )
    assert reply.user.details.erased and reply.sessions_ended == 0
    docs = await audit_documents(resources, "EraseUserData")
    assert docs[0]["details"]["archived_now"] is False
    assert docs[0]["details"]["deleted"]["contact_forms"] == 0


async def test_export_user_command(
    channel: Any, resources: Any, pg_url: str, mongo_url: str, tmp_path: Path
) -> None:
    """``gencharge export-user`` writes the same document as ExportUserData, audited as
    the command."""
    user = await _customer_with_history(channel, resources)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENCHARGE_")}
    env.update(
        GENCHARGE_DATABASE_URL=pg_url,
        GENCHARGE_MONGO_URL=mongo_url,
        GENCHARGE_DATA_DIR=str(tmp_path / "data"),
        GENCHARGE_LOG_LEVEL="WARNING",
    )
    out = tmp_path / "export.json"

    async def run(*args: str) -> tuple[int, bytes, bytes]:
        proc = await asyncio.create_subprocess_exec(
            GENCHARGE,
            "export-user",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await asyncio.wait_for(proc.communicate(), HANG_SECONDS)
        return proc.returncode or 0, stdout, stderr

    code, _, stderr = await run(str(user.user_id), "--reason", "ticket 9", "--output", str(out))
    assert code == 0, stderr.decode()
    document = json.loads(out.read_bytes())
    assert document["user_id"] == user.user_id and document["profile"]["email"] == user.email
    assert len(document["transactions"]) == 2
    code, stdout, _ = await run(str(user.user_id), "--reason", "ticket 9")
    assert code == 0 and json.loads(stdout)["user_id"] == user.user_id
    code, _, stderr = await run("2000000", "--reason", "ticket 9")
    assert code == 1 and b"not found" in stderr
    code, _, _ = await run(str(user.user_id), "--reason", " ")
    assert code == 2
    found = await rows(
        resources,
        "SELECT event FROM audit_outbox WHERE event->>'rpc' = 'cli/export-user'",
    )
    shipped = await resources.mongo_db["AuditLog"].count_documents({"rpc": "cli/export-user"})
    assert len(found) + shipped >= 2

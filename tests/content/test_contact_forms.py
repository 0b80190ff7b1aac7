"""The contact form through the real server: anonymous submissions (validated, stored,
throttled per client address), ListContactForms and UpdateContactForm for
Support and Admin (RBAC per role), one audit event per change, and no submitter
e-mail in the logs or the audit log."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from datetime import UTC
from typing import Any

import grpc
import pytest
from bson import ObjectId
from google.protobuf import field_mask_pb2

from gencharge.v1 import content_service_pb2 as pb
from gencharge.v1 import content_service_pb2_grpc
from server.content import flows
from server.content.domain import ContactFormIn
from server.core.errors import ResourceExhausted
from server.core.logs import JsonFormatter
from server.rpc.app import start_server
from tests.helpers.auth import Actor, create_admin, create_service, register_user
from tests.helpers.clock import FakeUtcClock, eventually
from tests.helpers.rpc import details_of

Stub = content_service_pb2_grpc.ContentServiceStub
SERVICE = "/gencharge.v1.ContentService"
NEW = pb.CONTACT_FORM_STATUS_NEW
IN_PROGRESS = pb.CONTACT_FORM_STATUS_IN_PROGRESS
RESOLVED = pb.CONTACT_FORM_STATUS_RESOLVED


def form(**overrides: Any) -> pb.SubmitContactFormRequest:
    fields: dict[str, Any] = {
        "name": "Asha K",
        "email": f"asha-{uuid.uuid4().hex[:8]}@example.co.in",
        "description": "My recharge failed but the money left my account.",
    }
    fields.update(overrides)
    return pb.SubmitContactFormRequest(**fields)


def status_change(
    contact_form_id: str, status: int, paths: tuple[str, ...] = ("status",)
) -> pb.UpdateContactFormRequest:
    return pb.UpdateContactFormRequest(
        contact_form=pb.ContactForm(
            contact_form_id=contact_form_id,
            status=status,  # type: ignore[arg-type]
            email="ignored@example.com",  # not in the mask: never changed
        ),
        update_mask=field_mask_pb2.FieldMask(paths=list(paths)),
    )


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


@pytest.fixture
async def admin(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources)


@pytest.fixture
async def support(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources, role_name="Support")


async def _error(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


async def _stored(resources: Any) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = await resources.mongo_db["ContactForm"].find({}).to_list(None)
    return docs


# ----------------------------------------------------------------- submissions


async def test_anonymous_submission_is_stored_as_new(stub: Stub, resources: Any) -> None:
    request = form(
        name="  Asha K ",
        email=" Asha.K+Help@Example.co.in ",
        description="Line one\n\tLine two\r\n",
    )
    reply = await stub.SubmitContactForm(request)
    assert ObjectId.is_valid(reply.contact_form_id)
    assert (reply.name, reply.email) == ("Asha K", "asha.k+help@example.co.in")
    assert reply.description == "Line one\n\tLine two"
    assert reply.status == NEW
    assert reply.created_at == reply.updated_at and reply.created_at.seconds > 0
    (doc,) = await _stored(resources)
    assert doc["_id"] == ObjectId(reply.contact_form_id) and doc["id"] == reply.contact_form_id
    assert (doc["email"], doc["status"]) == ("asha.k+help@example.co.in", "new")
    assert doc["created_at"].astimezone(UTC) == reply.created_at.ToDatetime(UTC)


async def test_a_5000_character_message_is_accepted(stub: Stub) -> None:
    reply = await stub.SubmitContactForm(form(description="x" * 5000))
    assert len(reply.description) == 5000


async def test_bad_submissions_are_invalid_and_store_nothing(stub: Stub, resources: Any) -> None:
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"name": "", "email": "", "description": ""}, {"name", "email", "description"}),
        ({"name": "   "}, {"name"}),
        ({"name": "n" * 101}, {"name"}),
        ({"name": "Asha\nK"}, {"name"}),
        ({"name": "Asha\u0085K"}, {"name"}),
        ({"email": "not-an-email"}, {"email"}),
        ({"email": "a@localhost"}, {"email"}),
        ({"email": "a..b@example.com"}, {"email"}),
        ({"description": " \n "}, {"description"}),
        ({"description": "x" * 5001}, {"description"}),
        ({"description": "bell \x07"}, {"description"}),
        ({"description": "nul \x00"}, {"description"}),
        ({"description": "c1 \u009b"}, {"description"}),
    ]
    for overrides, fields in cases:
        error = await _error(stub.SubmitContactForm(form(**overrides)))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, overrides
        assert set(error.field_violations) == fields, (overrides, error.field_violations)
        assert "@" not in error.message and "@" not in str(error.field_violations)
    assert await _stored(resources) == []


async def test_submissions_are_throttled_per_client_address(
    channel: grpc.aio.Channel, resources: Any
) -> None:
    """Behind a trusted proxy (here: loopback) each forwarded client address has its own
    allowance; invalid submissions do not use it; the refusal says when to retry."""
    settings = resources.settings.model_copy(
        update={"trusted_proxies": "127.0.0.0/8, ::1", "contact_forms_per_peer": 3}
    )
    proxied = await start_server(dataclasses.replace(resources, settings=settings), "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{proxied.port}") as through_proxy:
            stub = Stub(through_proxy)

            def client(address: str) -> tuple[tuple[str, str], ...]:
                return (("x-forwarded-for", f"198.51.100.250, {address}"),)

            spammer = client("203.0.113.5")
            for _ in range(2):  # refused as invalid: not counted
                bad = stub.SubmitContactForm(form(email="nope"), metadata=spammer)
                assert (await _error(bad)).code == grpc.StatusCode.INVALID_ARGUMENT
            for _ in range(3):
                await stub.SubmitContactForm(form(), metadata=spammer)
            error = await _error(stub.SubmitContactForm(form(), metadata=spammer))
            assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error.reason == "TOO_MANY_ATTEMPTS"
            retry = int(error.metadata["retry_after_seconds"])
            assert 0 < retry <= settings.contact_form_window_seconds
            # Blocked: even a good submission is refused, and nothing more was stored.
            assert (await _error(stub.SubmitContactForm(form(), metadata=spammer))).code == (
                grpc.StatusCode.RESOURCE_EXHAUSTED
            )
            assert len(await _stored(resources)) == 3
            # Another client behind the same proxy is not affected.
            await stub.SubmitContactForm(form(), metadata=client("203.0.113.77"))
            assert len(await _stored(resources)) == 4
    finally:
        await proxied.stop(0)


async def test_the_limit_holds_under_a_burst_and_ends_with_its_window(resources: Any) -> None:
    """Counted before stored: a burst of concurrent submissions from one address stores
    no more than the limit. The block ends after one window (on a fake UTC clock)."""

    clock = FakeUtcClock()
    settings = resources.settings
    throttle = flows.contact_form_throttle(resources.db, settings, clock=clock)
    limit = settings.contact_forms_per_peer

    async def submit(peer: str) -> bool:
        try:
            await flows.submit_contact_form(
                resources.db,
                resources.mongo_db,
                ContactFormIn(name="Burst", email="burst@example.com", description="hi"),
                peer=peer,
                throttle=throttle,
                now=clock,
            )
        except ResourceExhausted:
            return False
        return True

    results = await asyncio.gather(*(submit("ipv4:203.0.113.9:4000") for _ in range(limit * 3)))
    # Never more than the limit; a burst past it blocks the address at once, so some of
    # the first `limit` may be refused too (they were checked after the block began).
    assert 1 <= sum(results) <= limit
    assert len(await _stored(resources)) == sum(results)
    assert await submit("ipv6:[2001:db8:1:2::5]:4000")  # another address
    assert not await submit("ipv4:203.0.113.9:4001")  # same address, other port
    clock.advance(settings.contact_form_window_seconds - 1)
    assert not await submit("ipv4:203.0.113.9:4000")
    clock.advance(2)
    assert await submit("ipv4:203.0.113.9:4000")


async def test_no_submitter_email_in_logs_or_audit(
    stub: Stub, resources: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Our loggers at their most verbose; the drivers' at WARNING, as the server
    configures them (server/core/logs.py: at DEBUG PyMongo would echo every command)."""
    email = f"private-{uuid.uuid4().hex[:8]}@example.com"
    with caplog.at_level(logging.DEBUG, logger="gencharge"):
        reply = await stub.SubmitContactForm(form(email=email, name="Private Person"))
        bad = await _error(stub.SubmitContactForm(form(email=email, name="")))
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    collection = resources.mongo_db["AuditLog"]
    query = {"rpc": f"{SERVICE}/SubmitContactForm", "outcome": "ok"}

    async def shipped() -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = await collection.find(query).to_list(None)
        return docs

    (event,) = await eventually(shipped, every=0.1)
    assert (event["table_name"], event["action_type"], event["user_id"]) == (
        "ContactForm",
        "INSERT",
        "anonymous",
    )
    assert event["details"] == {"contact_form_id": reply.contact_form_id}
    everything = [str(doc) for doc in await collection.find({}).to_list(None)]
    assert not any(email in text or "Private Person" in text for text in everything)
    formatter = JsonFormatter()
    logged = [formatter.format(record) for record in caplog.records] + [
        str(record.__dict__) for record in caplog.records
    ]
    assert sum("rpc finished" in line for line in logged) >= 2, "both calls were logged"
    assert not any(email in text for text in logged)


# ---------------------------------------------------------------- operators


async def test_list_newest_first_filtered_and_paged(
    stub: Stub, support: Actor, admin: Actor
) -> None:
    ids = [(await stub.SubmitContactForm(form(name=f"N{i}"))).contact_form_id for i in range(5)]
    listed = await stub.ListContactForms(pb.ListContactFormsRequest(), metadata=support.metadata)
    assert [f.contact_form_id for f in listed.contact_forms] == ids[::-1]
    assert listed.contact_forms[0].email.endswith("@example.co.in")  # operators see it all

    moved = await stub.UpdateContactForm(
        status_change(ids[1], IN_PROGRESS), metadata=support.metadata
    )
    assert moved.status == IN_PROGRESS and moved.updated_at.ToDatetime() >= (
        moved.created_at.ToDatetime()
    )
    await stub.UpdateContactForm(status_change(ids[3], RESOLVED), metadata=admin.metadata)

    async def all_pages(status: int, size: int) -> list[str]:
        seen: list[str] = []
        token = ""
        while True:
            page = await stub.ListContactForms(
                pb.ListContactFormsRequest(page_size=size, page_token=token, status=status),
                metadata=admin.metadata,
            )
            assert len(page.contact_forms) <= size
            assert all(status in (0, f.status) for f in page.contact_forms)
            seen += [f.contact_form_id for f in page.contact_forms]
            token = page.next_page_token
            if not token:
                return seen

    assert await all_pages(0, 2) == ids[::-1]
    assert await all_pages(NEW, 2) == [ids[4], ids[2], ids[0]]
    assert await all_pages(IN_PROGRESS, 1) == [ids[1]]
    assert await all_pages(RESOLVED, 5) == [ids[3]]

    first = await stub.ListContactForms(
        pb.ListContactFormsRequest(page_size=1), metadata=admin.metadata
    )
    for request, field in (
        (pb.ListContactFormsRequest(status=NEW, page_token=first.next_page_token), "page_token"),
        (pb.ListContactFormsRequest(page_token="forged.token"), "page_token"),
        (pb.ListContactFormsRequest(status=42), "status"),  # type: ignore[arg-type]
        (pb.ListContactFormsRequest(page_size=-1), "page_size"),
    ):
        error = await _error(stub.ListContactForms(request, metadata=admin.metadata))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert set(error.field_violations) == {field}


async def test_status_changes(stub: Stub, support: Actor, resources: Any) -> None:
    submitted = await stub.SubmitContactForm(form())
    md = support.metadata

    def move(contact_form_id: str, status: int, paths: tuple[str, ...] = ("status",)) -> Any:
        return stub.UpdateContactForm(status_change(contact_form_id, status, paths), metadata=md)

    resolved = await move(submitted.contact_form_id.upper(), RESOLVED)  # hex in any case
    assert resolved.status == RESOLVED
    again = await move(submitted.contact_form_id, RESOLVED)  # no change
    assert again.updated_at == resolved.updated_at
    reopened = await move(submitted.contact_form_id, NEW)
    assert reopened.status == NEW
    (doc,) = await _stored(resources)
    assert doc["status"] == "new"

    for contact_form_id, status, paths, field in (
        (submitted.contact_form_id, 0, ("status",), "contact_form.status"),
        (submitted.contact_form_id, 9, ("status",), "contact_form.status"),
        ("not-an-id", RESOLVED, ("status",), "contact_form.contact_form_id"),
        ("", RESOLVED, ("status",), "contact_form.contact_form_id"),
        (submitted.contact_form_id, RESOLVED, (), "update_mask"),
        (submitted.contact_form_id, RESOLVED, ("email",), "update_mask"),
        (submitted.contact_form_id, RESOLVED, ("status", "nonsense"), "update_mask"),
    ):
        error = await _error(move(contact_form_id, status, paths))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert set(error.field_violations) == {field}, (paths, error.field_violations)
    error = await _error(move(str(ObjectId()), RESOLVED))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "CONTACT_FORM_NOT_FOUND")

    # Audited: who moved which submission from where to where (no personal data).
    collection = resources.mongo_db["AuditLog"]
    query = {"rpc": f"{SERVICE}/UpdateContactForm", "outcome": "ok"}

    async def three() -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = await collection.find(query).to_list(None)
        return docs if len(docs) >= 3 else []

    events = await eventually(three, every=0.1)
    assert len(events) == 3
    first = next(e for e in events if e["details"].get("previous_status") == "new")
    assert first["table_name"] == "ContactForm" and first["action_type"] == "UPDATE"
    assert first["details"] == {
        "contact_form_id": submitted.contact_form_id,
        "status": "resolved",
        "previous_status": "new",
    }
    assert first["user_id"].startswith("admin:")


async def test_access_per_role(
    channel: grpc.aio.Channel, stub: Stub, admin: Actor, support: Actor, resources: Any
) -> None:
    submitted = await stub.SubmitContactForm(form())
    customer = await register_user(channel)
    service = await create_service(channel, resources, scopes=["recharges.write"])
    update = status_change(submitted.contact_form_id, RESOLVED)
    for actor in (admin, support):
        listed = await stub.ListContactForms(pb.ListContactFormsRequest(), metadata=actor.metadata)
        assert [f.contact_form_id for f in listed.contact_forms] == [submitted.contact_form_id]
        await stub.UpdateContactForm(update, metadata=actor.metadata)
    for actor, code in (
        (customer, grpc.StatusCode.PERMISSION_DENIED),
        (service, grpc.StatusCode.PERMISSION_DENIED),
        (None, grpc.StatusCode.UNAUTHENTICATED),
    ):
        md = actor.metadata if actor else None
        for call in (
            stub.ListContactForms(pb.ListContactFormsRequest(), metadata=md),
            stub.UpdateContactForm(update, metadata=md),
        ):
            assert (await _error(call)).code == code, actor
        # Anyone may write to us, signed in or not.
        await stub.SubmitContactForm(form(), metadata=md)

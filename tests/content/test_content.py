"""ContentService content items through the real server over real PostgreSQL and MongoDB:
public reads without a token, admin changes (field mask, NOT_FOUND for an unknown
content type, updated_at and created_by), list order and pages, content ids under
concurrency, the per-process read cache on an injected clock, RBAC per role and one
audit event per change."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.struct_pb2 import Struct
from sqlalchemy import select

from gencharge.v1 import content_service_pb2 as pb
from gencharge.v1 import content_service_pb2_grpc
from server.core.schema import admins
from tests.helpers.auth import Actor, create_admin, create_service, register_user
from tests.helpers.clock import FakeClock, eventually
from tests.helpers.rpc import details_of

Stub = content_service_pb2_grpc.ContentServiceStub
SERVICE = "/gencharge.v1.ContentService"
FAQ, POLICY, TERMS = 1, 2, 3  # reference ContentTypes (server/ops/seed/reference.py)


def struct(value: dict[str, Any]) -> Struct:
    result = Struct()
    result.update(value)
    return result


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


def content(type_id: int = FAQ, title: str = "How to recharge", **body: Any) -> pb.Content:
    return pb.Content(
        content_type_id=type_id, title=title, body=struct(body or {"content": "Step 1..."})
    )


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> Stub:
    return Stub(channel)


@pytest.fixture
async def admin(channel: grpc.aio.Channel, resources: Any) -> Actor:
    return await create_admin(channel, resources)


async def _admin_id(resources: Any, actor: Actor) -> int:
    async with resources.db.read_only() as conn:
        admin_id: int = (
            await conn.execute(select(admins.c.admin_id).where(admins.c.email == actor.email))
        ).scalar_one()
    return admin_id


async def _error(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return details_of(info.value)


async def _create(stub: Stub, admin: Actor, item: pb.Content | None = None) -> pb.Content:
    reply: pb.Content = await stub.CreateContent(
        pb.CreateContentRequest(content=item or content()), metadata=admin.metadata
    )
    return reply


async def _count(resources: Any) -> int:
    count: int = await resources.mongo_db["Content"].count_documents({})
    return count


async def _audit_docs(resources: Any, rpc: str, want: int) -> list[dict[str, Any]]:
    query = {"rpc": f"{SERVICE}/{rpc}", "outcome": "ok"}
    collection = resources.mongo_db["AuditLog"]

    async def enough() -> bool:  # the deadline only catches a hang
        return len(await collection.find(query).to_list(None)) >= want

    await eventually(enough, every=0.1)
    result: list[dict[str, Any]] = await collection.find(query).to_list(None)
    return result


# ------------------------------------------------------------------ round trip


async def test_create_get_update_delete(stub: Stub, admin: Actor, resources: Any) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    created = await _create(stub, admin, content(FAQ, "  How to recharge  ", content="Step 1"))
    assert created.content_id > 0
    assert created.content_type_id == FAQ and created.content_type_name == "faq"
    assert created.title == "How to recharge"  # trimmed
    assert dict(created.body) == {"content": "Step 1"}
    assert created.created_by == await _admin_id(resources, admin)
    assert created.updated_at.ToDatetime(UTC) >= before

    # Public: no token.
    got = await stub.GetContent(pb.GetContentRequest(content_id=created.content_id))
    assert got == created
    stored = await resources.mongo_db["Content"].find_one({"content_id": created.content_id})
    assert stored["created_by"] == created.created_by and stored["title"] == "How to recharge"

    updated = await stub.UpdateContent(
        pb.UpdateContentRequest(
            content=pb.Content(
                content_id=created.content_id, content_type_id=TERMS, title="ignored", body=None
            ),
            update_mask=mask("content_type_id"),
        ),
        metadata=admin.metadata,
    )
    assert (updated.content_type_id, updated.content_type_name) == (TERMS, "terms_of_service")
    assert updated.title == "How to recharge" and dict(updated.body) == {"content": "Step 1"}
    assert updated.created_by == created.created_by
    assert updated.updated_at.ToDatetime(UTC) >= created.updated_at.ToDatetime(UTC)

    updated = await stub.UpdateContent(
        pb.UpdateContentRequest(
            content=pb.Content(
                content_id=created.content_id,
                title="Terms of Service",
                body=struct({"content": "Terms...", "version": 2, "sections": ["a", "b"]}),
            ),
            update_mask=mask("title", "body"),
        ),
        metadata=admin.metadata,
    )
    assert updated.title == "Terms of Service"
    assert updated.body["sections"] == ["a", "b"] and updated.body["version"] == 2
    assert updated.content_type_id == TERMS
    # The admin's change is visible at once on this process, cache or not.
    assert await stub.GetContent(pb.GetContentRequest(content_id=created.content_id)) == updated

    await stub.DeleteContent(
        pb.DeleteContentRequest(content_id=created.content_id), metadata=admin.metadata
    )
    error = await _error(stub.GetContent(pb.GetContentRequest(content_id=created.content_id)))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "CONTENT_NOT_FOUND")
    error = await _error(
        stub.DeleteContent(
            pb.DeleteContentRequest(content_id=created.content_id), metadata=admin.metadata
        )
    )
    assert error.code == grpc.StatusCode.NOT_FOUND


async def test_long_bodies_are_accepted(stub: Stub, admin: Actor) -> None:
    """A policy page is longer than the 4096 characters of an ordinary request string."""
    text = "Terms and conditions. " * 2000  # 44,000 characters
    created = await _create(stub, admin, content(TERMS, "Terms of Service", content=text))
    got = await stub.GetContent(pb.GetContentRequest(content_id=created.content_id))
    assert got.body["content"] == text


async def test_unknown_content_type_is_not_found_and_writes_nothing(
    stub: Stub, admin: Actor, resources: Any
) -> None:
    error = await _error(stub.CreateContent(pb.CreateContentRequest(content=content(999))))
    assert error.code == grpc.StatusCode.UNAUTHENTICATED  # no token: refused before anything
    error = await _error(
        stub.CreateContent(pb.CreateContentRequest(content=content(999)), metadata=admin.metadata)
    )
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "CONTENT_TYPE_NOT_FOUND")
    assert error.metadata == {"content_type_id": "999"}
    assert await _count(resources) == 0

    created = await _create(stub, admin)
    error = await _error(
        stub.UpdateContent(
            pb.UpdateContentRequest(
                content=pb.Content(content_id=created.content_id, content_type_id=999),
                update_mask=mask("content_type_id"),
            ),
            metadata=admin.metadata,
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "CONTENT_TYPE_NOT_FOUND")
    got = await stub.GetContent(pb.GetContentRequest(content_id=created.content_id))
    assert got.content_type_id == FAQ


async def test_bad_content_is_invalid_argument_and_writes_nothing(
    stub: Stub, admin: Actor, resources: Any
) -> None:
    cases: list[tuple[pb.Content, set[str]]] = [
        (pb.Content(), {"content.content_type_id", "content.title"}),
        (content(FAQ, "   "), {"content.title"}),
        (content(FAQ, "x" * 201), {"content.title"}),
        (content(FAQ, "two\nlines"), {"content.title"}),
        (content(-1, "ok"), {"content.content_type_id"}),
        (pb.Content(content_type_id=FAQ, title="t", body=struct({"$set": 1})), {"content.body"}),
        (pb.Content(content_type_id=FAQ, title="t", body=struct({"a.b": 1})), {"content.body"}),
        (
            pb.Content(content_type_id=FAQ, title="t", body=struct({"a": [{"$where": "x"}]})),
            {"content.body"},
        ),
    ]
    for item, fields in cases:
        error = await _error(
            stub.CreateContent(pb.CreateContentRequest(content=item), metadata=admin.metadata)
        )
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, item
        assert set(error.field_violations) == fields, (item, error.field_violations)
    assert await _count(resources) == 0


async def test_update_mask_rules(stub: Stub, admin: Actor) -> None:
    created = await _create(stub, admin)
    cases = [
        (mask(), "name at least one field"),
        (mask("created_by"), "output only"),
        (mask("updated_at"), "output only"),
        (mask("nonsense"), "unknown field path"),
    ]
    for update_mask, text in cases:
        error = await _error(
            stub.UpdateContent(
                pb.UpdateContentRequest(
                    content=pb.Content(content_id=created.content_id, title="New"),
                    update_mask=update_mask,
                ),
                metadata=admin.metadata,
            )
        )
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert text in error.field_violations["update_mask"]
    error = await _error(
        stub.UpdateContent(
            pb.UpdateContentRequest(
                content=pb.Content(content_id=created.content_id + 1000, title="New"),
                update_mask=mask("title"),
            ),
            metadata=admin.metadata,
        )
    )
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "CONTENT_NOT_FOUND")
    error = await _error(
        stub.UpdateContent(
            pb.UpdateContentRequest(content=pb.Content(title="New"), update_mask=mask("title")),
            metadata=admin.metadata,
        )
    )
    assert set(error.field_violations) == {"content.content_id"}
    got = await stub.GetContent(pb.GetContentRequest(content_id=created.content_id))
    assert got == created


async def test_ids_out_of_range_are_invalid(stub: Stub) -> None:
    for content_id, code in ((0, "content_id"), (-5, "content_id"), (2**40, "content_id")):
        error = await _error(stub.GetContent(pb.GetContentRequest(content_id=content_id)))
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT
        assert set(error.field_violations) == {code}
    error = await _error(stub.GetContent(pb.GetContentRequest(content_id=2**31 - 1)))
    assert error.code == grpc.StatusCode.NOT_FOUND


# ---------------------------------------------------------------------- lists


async def test_list_content_newest_update_first_by_type_and_paged(stub: Stub, admin: Actor) -> None:
    faqs = [await _create(stub, admin, content(FAQ, f"FAQ {i}")) for i in range(5)]
    terms = await _create(stub, admin, content(TERMS, "Terms"))
    # Touch the oldest FAQ: it becomes the most recently updated.
    await stub.UpdateContent(
        pb.UpdateContentRequest(
            content=pb.Content(content_id=faqs[0].content_id, title="FAQ 0 (new)"),
            update_mask=mask("title"),
        ),
        metadata=admin.metadata,
    )
    everything = await stub.ListContent(pb.ListContentRequest())
    titles = [c.title for c in everything.contents]
    assert titles == ["FAQ 0 (new)", "Terms", "FAQ 4", "FAQ 3", "FAQ 2", "FAQ 1"]
    assert everything.next_page_token == ""

    seen: list[str] = []
    token = ""
    while True:
        page = await stub.ListContent(
            pb.ListContentRequest(content_type_id=FAQ, page_size=2, page_token=token)
        )
        assert len(page.contents) <= 2
        seen += [c.title for c in page.contents]
        token = page.next_page_token
        if not token:
            break
    assert seen == ["FAQ 0 (new)", "FAQ 4", "FAQ 3", "FAQ 2", "FAQ 1"]
    assert all(c.content_type_name == "faq" for c in everything.contents if c.content_type_id == 1)
    assert terms.content_id in {c.content_id for c in everything.contents}

    first = await stub.ListContent(pb.ListContentRequest(content_type_id=FAQ, page_size=2))
    error = await _error(
        stub.ListContent(
            pb.ListContentRequest(content_type_id=TERMS, page_token=first.next_page_token)
        )
    )
    assert set(error.field_violations) == {"page_token"}
    error = await _error(stub.ListContent(pb.ListContentRequest(page_token="forged.token")))
    assert set(error.field_violations) == {"page_token"}
    error = await _error(stub.ListContent(pb.ListContentRequest(content_type_id=-1)))
    assert set(error.field_violations) == {"content_type_id"}
    empty = await stub.ListContent(pb.ListContentRequest(content_type_id=999))
    assert list(empty.contents) == []


async def test_pages_of_large_bodies_stop_early_and_continue(stub: Stub, admin: Actor) -> None:
    """Bodies near the 512 KiB limit: a page ends before its bodies pass 2 MiB (so the
    response fits 4 MiB) and its token carries on; nothing is lost or repeated."""
    text = "p" * 500_000
    ids = [
        (await _create(stub, admin, content(TERMS, f"Big {i}", content=text))).content_id
        for i in range(6)
    ]
    first = await stub.ListContent(pb.ListContentRequest(content_type_id=TERMS, page_size=10))
    assert len(first.contents) == 4 and first.next_page_token
    rest = await stub.ListContent(
        pb.ListContentRequest(content_type_id=TERMS, page_size=10, page_token=first.next_page_token)
    )
    assert rest.next_page_token == ""
    listed = [c.content_id for c in [*first.contents, *rest.contents]]
    assert listed == ids[::-1]
    error = await _error(
        stub.CreateContent(
            pb.CreateContentRequest(content=content(TERMS, "Too big", content="q" * 530_000)),
            metadata=admin.metadata,
        )
    )
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT


# --------------------------------------------------------------------- ids


async def test_concurrent_creates_get_distinct_ids(stub: Stub, admin: Actor) -> None:
    created = await asyncio.gather(
        *(_create(stub, admin, content(FAQ, f"Item {i}")) for i in range(20))
    )
    ids = [c.content_id for c in created]
    assert len(set(ids)) == 20


async def test_ids_continue_past_documents_written_without_the_counter(
    stub: Stub, admin: Actor, resources: Any
) -> None:
    """Demo data, a restore or an import may write content ids the counter never gave:
    the next create moves past them instead of failing."""
    first = await _create(stub, admin)
    await resources.mongo_db["Content"].insert_one(
        {
            "content_id": first.content_id + 5,
            "content_type_id": FAQ,
            "title": "imported",
            "body": {},
            "updated_at": datetime.now(UTC),
        }
    )
    await resources.mongo_db["Counters"].update_one(
        {"_id": "Content.content_id"}, {"$set": {"seq": first.content_id + 4}}
    )
    nxt = await _create(stub, admin)
    assert nxt.content_id == first.content_id + 6


# ---------------------------------------------------------------------- cache


async def test_reads_are_cached_and_admin_changes_invalidate(
    stub: Stub, admin: Actor, resources: Any, server_clock: FakeClock
) -> None:
    created = await _create(stub, admin, content(FAQ, "Original"))
    request = pb.GetContentRequest(content_id=created.content_id)
    assert (await stub.GetContent(request)).title == "Original"
    listed = await stub.ListContent(pb.ListContentRequest(content_type_id=FAQ))
    assert [c.title for c in listed.contents] == ["Original"]

    # Another replica's change (written straight to MongoDB here): this process keeps
    # its copy for the cache window, then reads again.
    await resources.mongo_db["Content"].update_one(
        {"content_id": created.content_id}, {"$set": {"title": "Elsewhere"}}
    )
    assert (await stub.GetContent(request)).title == "Original"
    listed = await stub.ListContent(pb.ListContentRequest(content_type_id=FAQ))
    assert [c.title for c in listed.contents] == ["Original"]
    window = resources.settings.content_cache_seconds
    server_clock.advance(window - 0.5)
    assert (await stub.GetContent(request)).title == "Original"
    server_clock.advance(1)
    assert (await stub.GetContent(request)).title == "Elsewhere"
    listed = await stub.ListContent(pb.ListContentRequest(content_type_id=FAQ))
    assert [c.title for c in listed.contents] == ["Elsewhere"]

    # A miss is cached too, and a create on this process ends it at once.
    missing = pb.GetContentRequest(content_id=created.content_id + 1)
    assert (await _error(stub.GetContent(missing))).code == grpc.StatusCode.NOT_FOUND
    second = await _create(stub, admin, content(FAQ, "Second"))
    assert second.content_id == created.content_id + 1
    assert (await stub.GetContent(missing)).title == "Second"
    listed = await stub.ListContent(pb.ListContentRequest(content_type_id=FAQ))
    assert [c.title for c in listed.contents] == ["Second", "Elsewhere"]

    await stub.DeleteContent(
        pb.DeleteContentRequest(content_id=second.content_id), metadata=admin.metadata
    )
    assert (await _error(stub.GetContent(missing))).code == grpc.StatusCode.NOT_FOUND


# ------------------------------------------------------------------------ RBAC


async def test_access_per_role(
    channel: grpc.aio.Channel, stub: Stub, admin: Actor, resources: Any
) -> None:
    created = await _create(stub, admin)
    support = await create_admin(channel, resources, role_name="Support")
    customer = await register_user(channel)
    service = await create_service(channel, resources, scopes=["recharges.write"])

    def changes(md: Any) -> list[Any]:
        return [
            stub.CreateContent(pb.CreateContentRequest(content=content()), metadata=md),
            stub.UpdateContent(
                pb.UpdateContentRequest(
                    content=pb.Content(content_id=created.content_id, title="x"),
                    update_mask=mask("title"),
                ),
                metadata=md,
            ),
            stub.DeleteContent(pb.DeleteContentRequest(content_id=created.content_id), metadata=md),
        ]

    for actor, code in (
        (support, grpc.StatusCode.PERMISSION_DENIED),
        (customer, grpc.StatusCode.PERMISSION_DENIED),
        (service, grpc.StatusCode.PERMISSION_DENIED),
        (None, grpc.StatusCode.UNAUTHENTICATED),
    ):
        md = actor.metadata if actor else None
        for call in changes(md):
            assert (await _error(call)).code == code, actor
        # Everyone reads content.
        request = pb.GetContentRequest(content_id=created.content_id)
        got = await stub.GetContent(request, metadata=md)
        assert got.content_id == created.content_id
        listed = await stub.ListContent(pb.ListContentRequest(), metadata=md)
        assert [c.content_id for c in listed.contents] == [created.content_id]
    assert await _count(resources) == 1


# ----------------------------------------------------------------------- audit


async def test_every_change_is_audited_once(stub: Stub, admin: Actor, resources: Any) -> None:
    created = await _create(stub, admin)
    await stub.UpdateContent(
        pb.UpdateContentRequest(
            content=pb.Content(content_id=created.content_id, title="New title"),
            update_mask=mask("title"),
        ),
        metadata=admin.metadata,
    )
    await stub.DeleteContent(
        pb.DeleteContentRequest(content_id=created.content_id), metadata=admin.metadata
    )
    actor = f"admin:{await _admin_id(resources, admin)}"
    expected = [
        ("CreateContent", "INSERT", {"content_id": created.content_id, "content_type_id": FAQ}),
        ("UpdateContent", "UPDATE", {"content_id": created.content_id, "fields": ["title"]}),
        ("DeleteContent", "DELETE", {"content_id": created.content_id}),
    ]
    # The relay ships in order: once the last event arrived, the others have too.
    await _audit_docs(resources, "DeleteContent", 1)
    for rpc, action, details in expected:
        docs = await _audit_docs(resources, rpc, 1)
        assert len(docs) == 1, (rpc, docs)
        doc = docs[0]
        assert (doc["table_name"], doc["action_type"], doc["user_id"]) == (
            "Content",
            action,
            actor,
        )
        for key, value in details.items():
            assert doc["details"][key] == value, (rpc, key, doc["details"])

"""ContentService: RPC methods only (proto <-> values in convert.py, rules in domain.py,
the throttled contact form in flows.py).

Public reads (ListContent, GetContent) come from the per-process cache
(server/content/cache.py); every content change invalidates it once stored. Each change
runs inside a PostgreSQL transaction that carries its audit event (server/content/
domain.py says why and what that guarantees).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf import empty_pb2

from gencharge.v1 import content_service_pb2 as pb
from gencharge.v1 import content_service_pb2_grpc
from server.auth.principal import principal
from server.content import convert, domain, flows
from server.content.cache import ContentCache
from server.core import pagination
from server.core.peers import client_peer
from server.core.resources import Resources

Context = grpc.aio.ServicerContext[Any, Any]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _weight(value: Any) -> int:
    """A cached read's weight: its bodies' bytes (an item, a page's items, a miss)."""
    if isinstance(value, domain.ContentItem):
        return value.body_bytes + 256
    if isinstance(value, tuple):
        items: list[domain.ContentItem] = value[0]
        return sum(item.body_bytes + 256 for item in items) + 256
    return 256


class ContentServicer(content_service_pb2_grpc.ContentServiceServicer):
    def __init__(
        self,
        resources: Resources,
        *,
        clock: Callable[[], float] = time.monotonic,
        utc_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        """``clock`` (monotonic seconds) ages the read cache; ``utc_clock`` stamps
        ``updated_at``/``created_at`` and runs the contact-form throttle's windows."""
        settings = resources.settings
        self._db = resources.db
        self._mongo = resources.mongo_db
        self._now = utc_clock
        self.cache = ContentCache(settings.content_cache_seconds, clock=clock, weigh=_weight)
        self._throttle = flows.contact_form_throttle(resources.db, settings, clock=utc_clock)

    # ------------------------------------------------------------------ public

    async def ListContent(
        self, request: pb.ListContentRequest, context: Context
    ) -> pb.ListContentResponse:
        type_id = domain.content_filter(request.content_type_id)
        page = pagination.parse(request.page_size, request.page_token, {"content_type_id": type_id})
        key = ("list", type_id, page.size, repr(page.after))
        items, token = await self.cache.get(
            key, lambda: domain.list_content(type_id, page, mongo=self._mongo)
        )
        return convert.contents_response(items, token)

    async def GetContent(self, request: pb.GetContentRequest, context: Context) -> pb.Content:
        content_id = request.content_id
        domain.check_content_id(content_id)
        item = await self.cache.get(
            ("get", content_id), lambda: domain.find_content(content_id, mongo=self._mongo)
        )
        return convert.content_message(domain.require_content(content_id, item))

    async def SubmitContactForm(
        self, request: pb.SubmitContactFormRequest, context: Context
    ) -> pb.ContactForm:
        entry = await flows.submit_contact_form(
            self._db,
            self._mongo,
            convert.contact_form_of(request),
            peer=client_peer(context),
            throttle=self._throttle,
            now=self._now,
        )
        return convert.contact_form_message(entry)

    # ----------------------------------------------------------- administration

    async def CreateContent(self, request: pb.CreateContentRequest, context: Context) -> pb.Content:
        draft = convert.draft_of(request.content)
        try:
            async with self._db.transaction():
                item = await domain.create_content(
                    draft, principal(), self._now(), mongo=self._mongo
                )
        finally:
            self.cache.invalidate()
        return convert.content_message(item)

    async def UpdateContent(self, request: pb.UpdateContentRequest, context: Context) -> pb.Content:
        draft = convert.draft_of(request.content)
        try:
            async with self._db.transaction():
                item = await domain.update_content(
                    request.content.content_id,
                    draft,
                    request.update_mask.paths,
                    self._now(),
                    mongo=self._mongo,
                )
        finally:
            self.cache.invalidate()
        return convert.content_message(item)

    async def DeleteContent(
        self, request: pb.DeleteContentRequest, context: Context
    ) -> empty_pb2.Empty:
        try:
            async with self._db.transaction():
                await domain.delete_content(request.content_id, mongo=self._mongo)
        finally:
            self.cache.invalidate()
        return empty_pb2.Empty()

    async def ListContactForms(
        self, request: pb.ListContactFormsRequest, context: Context
    ) -> pb.ListContactFormsResponse:
        status = convert.status_filter(request.status)
        page = pagination.parse(request.page_size, request.page_token, {"status": status})
        entries, token = await domain.list_contact_forms(status, page, mongo=self._mongo)
        return convert.contact_forms_response(entries, token)

    async def UpdateContactForm(
        self, request: pb.UpdateContactFormRequest, context: Context
    ) -> pb.ContactForm:
        form = request.contact_form
        async with self._db.transaction():
            entry = await domain.update_contact_form(
                form.contact_form_id,
                convert.new_status(form.status),
                request.update_mask.paths,
                self._now(),
                mongo=self._mongo,
            )
        return convert.contact_form_message(entry)

"""Outbound messages (login OTPs by SMS, password-reset links by e-mail or SMS).

Domain code depends only on ``MessageSender``; ``create_sender`` picks the transport
from settings (``GENCHARGE_MESSAGE_SENDER``):

- ``dev_outbox``: records each message in the MongoDB collection ``DevOutbox``, where
  development tooling and tests read the codes. Refused in production.
- ``webhook``: POSTs the message as JSON to ``GENCHARGE_MESSAGE_WEBHOOK_URL`` (an SMS /
  e-mail gateway, or a small adapter in front of one). HTTPS is required in production.

Message bodies carry secrets (codes, reset tokens): they are never logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from pymongo import DESCENDING
from pymongo.asynchronous.database import AsyncDatabase

from server.core.config import Settings
from server.core.errors import Unavailable

log = logging.getLogger(__name__)

DEV_OUTBOX_COLLECTION = "DevOutbox"


@dataclass(frozen=True)
class OutboundMessage:
    channel: str  # "sms" | "email"
    to: str
    purpose: str  # "login_otp" | "password_reset" | ...
    body: str

    def __repr__(self) -> str:  # keep secrets out of tracebacks and logs
        return (
            f"OutboundMessage(channel={self.channel!r}, to=<redacted>, "
            f"purpose={self.purpose!r}, body=<redacted>)"
        )


@dataclass
class MessageDeliveryError(Unavailable):
    """The gateway did not accept a message; callers see UNAVAILABLE and may retry."""

    reason: str = "MESSAGE_DELIVERY_FAILED"


class MessageSender(Protocol):
    async def send(self, message: OutboundMessage) -> None: ...


class DevOutboxSender:
    """Records messages in MongoDB ``DevOutbox``. Development and tests only."""

    def __init__(self, mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
        self._collection = mongo_db[DEV_OUTBOX_COLLECTION]

    async def send(self, message: OutboundMessage) -> None:
        await self._collection.insert_one({**asdict(message), "created_at": datetime.now(UTC)})

    async def latest(self, to: str, purpose: str) -> OutboundMessage | None:
        """The newest message recorded for ``to`` and ``purpose``, if any."""
        doc = await self._collection.find_one(
            {"to": to, "purpose": purpose},
            sort=[("created_at", DESCENDING), ("_id", DESCENDING)],
        )
        if doc is None:
            return None
        return OutboundMessage(
            channel=str(doc["channel"]),
            to=str(doc["to"]),
            purpose=str(doc["purpose"]),
            body=str(doc["body"]),
        )


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is a delivery failure: never re-send a message body elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class WebhookSender:
    """POSTs ``{"channel", "to", "purpose", "body"}`` as JSON; any non-2xx is a failure."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("the message webhook URL must be an http(s):// URL")
        self.url = url
        self.timeout = timeout
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._opener = urllib.request.build_opener(_NoRedirect)

    async def send(self, message: OutboundMessage) -> None:
        payload = json.dumps(
            {
                "channel": message.channel,
                "to": message.to,
                "purpose": message.purpose,
                "body": message.body,
            }
        ).encode()
        status: int | None
        try:
            status = await asyncio.to_thread(self._post, payload)
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            status = None
            if isinstance(exc, urllib.error.HTTPError):
                status = exc.code
                exc.close()
        if status is None or not 200 <= status < 300:
            # Never the body or the recipient: they carry codes and personal data.
            log.warning(
                "message delivery failed",
                extra={"purpose": message.purpose, "channel": message.channel, "status": status},
            )
            raise MessageDeliveryError("message delivery failed; try again later")

    def _post(self, payload: bytes) -> int:
        request = urllib.request.Request(  # noqa: S310 - scheme checked in __init__
            self.url, data=payload, headers=self._headers, method="POST"
        )
        with self._opener.open(request, timeout=self.timeout) as response:
            response.read()
            status: int = response.status
            return status


def create_sender(
    settings: Settings, mongo_db: AsyncDatabase[dict[str, Any]] | None
) -> MessageSender:
    """The sender ``settings.message_sender`` names; ValueError for unusable settings."""
    kind = settings.message_sender.strip().lower()
    if kind == "dev_outbox":
        if settings.production:
            raise ValueError(
                "GENCHARGE_MESSAGE_SENDER=dev_outbox is for development; configure webhook"
            )
        if mongo_db is None:
            raise ValueError("the dev_outbox message sender needs the MongoDB database")
        return DevOutboxSender(mongo_db)
    if kind == "webhook":
        url = settings.message_webhook_url.strip()
        if not url:
            raise ValueError("GENCHARGE_MESSAGE_SENDER=webhook needs GENCHARGE_MESSAGE_WEBHOOK_URL")
        if settings.production and urlsplit(url).scheme != "https":
            raise ValueError("GENCHARGE_MESSAGE_WEBHOOK_URL must be https:// in production")
        return WebhookSender(url)
    raise ValueError(
        f"unknown GENCHARGE_MESSAGE_SENDER {settings.message_sender!r}; use dev_outbox or webhook"
    )

"""Outbound message senders (server.core.messaging) over real transports.

DevOutboxSender writes to a real SecantusDB; WebhookSender posts to a real HTTP server
on 127.0.0.1 in a thread.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from server.core import mongo
from server.core.config import Settings
from server.core.errors import code_name
from server.core.messaging import (
    DEV_OUTBOX_COLLECTION,
    DevOutboxSender,
    MessageDeliveryError,
    OutboundMessage,
    WebhookSender,
    create_sender,
)
from tests.helpers.clock import HANG_SECONDS

OTP = OutboundMessage(
    channel="sms", to="+919800000001", purpose="login_otp", body="Your code is 123456"
)


@pytest.fixture
async def mongo_db(mongo_url: str) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
    client = mongo.create_client(mongo_url)
    try:
        yield mongo.get_database(client, mongo_url, "gencharge")
    finally:
        await client.close()


async def test_dev_outbox_records_and_latest_returns_the_newest(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    sender = DevOutboxSender(mongo_db)
    assert await sender.latest(OTP.to, "login_otp") is None
    await sender.send(OTP)
    newer = OutboundMessage("sms", OTP.to, "login_otp", "Your code is 654321")
    await sender.send(newer)
    reset = OutboundMessage("email", "a@example.test", "password_reset", "token abc")
    await sender.send(reset)

    assert await sender.latest(OTP.to, "login_otp") == newer
    assert await sender.latest("a@example.test", "password_reset") == reset
    assert await sender.latest(OTP.to, "password_reset") is None

    doc = await mongo_db[DEV_OUTBOX_COLLECTION].find_one({"body": OTP.body})
    assert doc is not None
    assert {k: doc[k] for k in ("channel", "to", "purpose", "body")} == {
        "channel": "sms",
        "to": OTP.to,
        "purpose": "login_otp",
        "body": OTP.body,
    }
    assert doc["created_at"].tzinfo is not None


def test_message_repr_hides_secrets() -> None:
    assert "123456" not in repr(OTP) and OTP.to not in repr(OTP)


@dataclass
class Gateway:
    url: str
    status: int = 200
    received: list[dict[str, Any]] = field(default_factory=list)
    content_types: list[str] = field(default_factory=list)


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    state = Gateway(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            state.received.append(json.loads(self.rfile.read(length)))
            state.content_types.append(self.headers["Content-Type"])
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/send"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_webhook_posts_json(gateway: Gateway) -> None:
    await WebhookSender(gateway.url, timeout=HANG_SECONDS).send(OTP)
    assert gateway.received == [
        {"channel": "sms", "to": OTP.to, "purpose": "login_otp", "body": OTP.body}
    ]
    assert gateway.content_types == ["application/json"]


@pytest.mark.parametrize("status", [500, 404, 302])
async def test_webhook_raises_on_non_2xx(gateway: Gateway, status: int) -> None:
    gateway.status = status
    with pytest.raises(MessageDeliveryError) as caught:
        await WebhookSender(gateway.url, timeout=HANG_SECONDS).send(OTP)
    assert "123456" not in str(caught.value)
    assert code_name(caught.value.code) == "UNAVAILABLE"


async def test_webhook_raises_when_unreachable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(MessageDeliveryError):
        await WebhookSender(f"http://127.0.0.1:{port}/", timeout=1).send(OTP)


def settings(**values: Any) -> Settings:
    return Settings(data_dir=Path("/nonexistent"), **values)


async def test_create_sender(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    assert isinstance(
        create_sender(settings(message_sender="dev_outbox"), mongo_db), DevOutboxSender
    )
    with pytest.raises(ValueError, match="dev_outbox is for development; configure webhook"):
        create_sender(settings(message_sender="dev_outbox", environment="production"), mongo_db)
    with pytest.raises(ValueError, match="MESSAGE_WEBHOOK_URL"):
        create_sender(settings(message_sender="webhook"), None)
    webhook = create_sender(
        settings(message_sender="webhook", message_webhook_url="http://127.0.0.1:9/x"), None
    )
    assert isinstance(webhook, WebhookSender)
    with pytest.raises(ValueError, match="https"):
        create_sender(
            settings(
                message_sender="webhook",
                message_webhook_url="http://gateway.example/x",
                environment="production",
            ),
            None,
        )
    production = create_sender(
        settings(
            message_sender="webhook",
            message_webhook_url="https://gateway.example/x",
            environment="production",
        ),
        None,
    )
    assert isinstance(production, WebhookSender)
    with pytest.raises(ValueError, match="unknown"):
        create_sender(settings(message_sender="carrier-pigeon"), mongo_db)
    with pytest.raises(ValueError):
        WebhookSender("ftp://gateway.example/x")

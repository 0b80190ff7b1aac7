"""What the per-call savings of issue #12 (make profile) keep: each method's wrapped
handler is built once, yet every call gets its own request id; UTC timestamps convert
exactly as protobuf's FromDatetime does. Pure unit tests, no servers."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gencharge.v1 import wallet_service_pb2 as pb
from server.core.logs import request_id_var
from server.core.protoconv import timestamp
from server.rpc.interceptors.request import RequestInterceptor, _new_request_id
from server.rpc.interceptors.validation import ValidationInterceptor

METHOD = "/gencharge.v1.WalletService/GetWallet"


class _Details(grpc.HandlerCallDetails):
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.method = METHOD
        self.invocation_metadata = metadata


class _Context:
    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata
        self.trailing: Any = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5555"

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailing = metadata

    def code(self) -> None:
        return None


async def _handler(request: Any, context: Any) -> str:
    return request_id_var.get()


def _inner() -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_unary_rpc_method_handler(
        _handler, request_deserializer=pb.GetWalletRequest.FromString
    )


@pytest.mark.parametrize("make", [lambda: RequestInterceptor(()), ValidationInterceptor])
async def test_a_method_is_wrapped_once_per_inner_handler(make: Any) -> None:
    interceptor = make()
    inner = _inner()

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return inner

    first = await interceptor.intercept_service(continuation, _Details(()))
    again = await interceptor.intercept_service(continuation, _Details(()))
    assert first is again and first is not inner
    inner = _inner()  # a new handler below: wrapped anew
    other = await interceptor.intercept_service(continuation, _Details(()))
    assert other is not first


async def test_each_call_of_a_reused_wrapping_has_its_own_request_id() -> None:
    interceptor = RequestInterceptor(())
    inner = _inner()

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return inner

    seen = []
    for metadata in ((("x-request-id", "caller-1"),), (("x-request-id", "bad id!"),), ()):
        handler = await interceptor.intercept_service(continuation, _Details(metadata))
        context = _Context(metadata)
        seen.append(await handler.unary_unary(pb.GetWalletRequest(), context))
        assert context.trailing == (("x-request-id", seen[-1]),)
    assert seen[0] == "caller-1"
    for made in seen[1:]:  # ill-formed or none: a new one, as uuid4().hex
        assert uuid.UUID(hex=made).version == 4 and uuid.UUID(hex=made).hex == made
    assert seen[1] != seen[2]


def test_new_request_ids_are_uuid4_hex() -> None:
    for _ in range(1000):
        made = _new_request_id()
        parsed = uuid.UUID(hex=made)
        assert parsed.hex == made and parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def _reference(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def test_utc_timestamps_convert_as_from_datetime_does() -> None:
    rng = random.Random(12)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    instants = [
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        epoch,
    ]
    instants += [
        epoch + timedelta(seconds=rng.randint(-62_000_000_000, 253_000_000_000), microseconds=us)
        for us in (rng.randint(0, 999_999) for _ in range(20_000))
    ]
    for value in instants:
        assert timestamp(value) == _reference(value), value
    # Other time zones and naive datetimes (taken as UTC) go through FromDatetime.
    for value in (
        datetime(2026, 3, 1, 5, 30, 0, 250, tzinfo=timezone(timedelta(hours=5, minutes=30))),
        datetime(2026, 3, 1, 5, 30, 0, 250),
    ):
        assert timestamp(value) == _reference(value)

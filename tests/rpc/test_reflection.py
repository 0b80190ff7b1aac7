"""Server reflection through the real server, over both protocols: grpc.reflection.v1
(what current grpcurl and ``buf curl`` try first) and v1alpha (server/rpc/reflection.py).

A v1 client is the v1alpha message classes over the v1 method path: the two protocols
are the same on the wire. ``buf curl`` (from npm, like buf lint) lists and calls the
API through each protocol too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from gencharge.v1 import plan_service_pb2
from server.rpc.reflection import (
    V1_FILE_NAME,
    V1_PACKAGE,
    V1_SERVICE_NAME,
    V1ALPHA_SERVICE_NAME,
)
from server.rpc.services import SERVICES
from tests.helpers.clock import HANG_SECONDS

REPO_ROOT = Path(__file__).resolve().parents[2]
BUF = REPO_ROOT / "node_modules" / ".bin" / "buf"

#: protocol name (buf curl's --reflect-protocol) -> its reflection service
PROTOCOLS = {"grpc-v1": V1_SERVICE_NAME, "grpc-v1alpha": V1ALPHA_SERVICE_NAME}

Request = reflection_pb2.ServerReflectionRequest
Response = reflection_pb2.ServerReflectionResponse

EXPECTED_SERVICES = {
    *(spec.full_name for spec in SERVICES),
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    V1_SERVICE_NAME,
    V1ALPHA_SERVICE_NAME,
}


@pytest.fixture(scope="module")
async def reflection_channel(module_grpc_server: Any) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{module_grpc_server.port}") as channel:
        yield channel


@pytest.fixture(params=sorted(PROTOCOLS))
def protocol(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


async def ask(channel: grpc.aio.Channel, protocol: str, *requests: Request) -> list[Response]:
    """The replies to ``requests``, sent on one stream of ``protocol``'s reflection."""
    call = channel.stream_stream(
        f"/{PROTOCOLS[protocol]}/ServerReflectionInfo",
        request_serializer=Request.SerializeToString,
        response_deserializer=Response.FromString,
    )
    replies = [reply async for reply in call(iter(requests), timeout=HANG_SECONDS)]
    assert len(replies) == len(requests)
    for request, reply in zip(requests, replies, strict=True):
        assert reply.original_request == request
    return replies


def files_of(reply: Response) -> list[descriptor_pb2.FileDescriptorProto]:
    assert reply.WhichOneof("message_response") == "file_descriptor_response", reply
    return [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]


def pool_of(files: list[descriptor_pb2.FileDescriptorProto]) -> descriptor_pool.DescriptorPool:
    """A fresh pool built from ``files`` alone: fails unless they hold every dependency."""
    by_name = {f.name: f for f in files}
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added:
            return
        assert name in by_name, f"dependency {name} not in the reply"
        for dependency in by_name[name].dependency:
            add(dependency)
        pool.Add(by_name[name])
        added.add(name)

    for name in by_name:
        add(name)
    return pool


async def test_lists_every_service(reflection_channel: grpc.aio.Channel, protocol: str) -> None:
    (reply,) = await ask(reflection_channel, protocol, Request(list_services=""))
    names = [service.name for service in reply.list_services_response.service]
    assert set(names) == EXPECTED_SERVICES
    assert len(names) == len(set(names))


async def test_file_of_a_service_and_its_dependencies(
    reflection_channel: grpc.aio.Channel, protocol: str
) -> None:
    (reply,) = await ask(
        reflection_channel, protocol, Request(file_containing_symbol="gencharge.v1.PlanService")
    )
    files = files_of(reply)
    assert files[0].name == plan_service_pb2.DESCRIPTOR.name  # the file asked for first
    assert "google/protobuf/timestamp.proto" in {f.name for f in files}
    service = pool_of(files).FindServiceByName("gencharge.v1.PlanService")
    expected = plan_service_pb2.DESCRIPTOR.services_by_name["PlanService"]
    assert [m.name for m in service.methods] == [m.name for m in expected.methods]
    # Each dependency also answers by file name, as grpcurl asks for them.
    names = sorted({dependency for f in files for dependency in f.dependency})
    replies = await ask(
        reflection_channel, protocol, *(Request(file_by_filename=name) for name in names)
    )
    assert [files_of(r)[0].name for r in replies] == names


async def test_reflection_v1_describes_itself(
    reflection_channel: grpc.aio.Channel, protocol: str
) -> None:
    v1, v1alpha = await ask(
        reflection_channel,
        protocol,
        Request(file_containing_symbol=V1_SERVICE_NAME),
        Request(file_containing_symbol=V1ALPHA_SERVICE_NAME),
    )
    (v1_file,) = files_of(v1)
    assert (v1_file.name, v1_file.package) == (V1_FILE_NAME, V1_PACKAGE)
    assert not v1_file.options.deprecated
    (v1alpha_file,) = files_of(v1alpha)
    v1_pool, v1alpha_pool = pool_of([v1_file]), pool_of([v1alpha_file])
    method = v1_pool.FindMethodByName(f"{V1_SERVICE_NAME}.ServerReflectionInfo")
    assert method.client_streaming and method.server_streaming
    assert method.input_type.full_name == f"{V1_PACKAGE}.ServerReflectionRequest"
    assert method.output_type.full_name == f"{V1_PACKAGE}.ServerReflectionResponse"
    # Wire-identical: every message has the same fields (number, type, label, oneof).
    assert v1_file.message_type and len(v1_file.message_type) == len(v1alpha_file.message_type)
    for message in v1alpha_file.message_type:
        old = v1alpha_pool.FindMessageTypeByName(f"{v1alpha_file.package}.{message.name}")
        new = v1_pool.FindMessageTypeByName(f"{V1_PACKAGE}.{message.name}")

        def shape(m: Any) -> list[tuple[Any, ...]]:
            return [
                (
                    f.name,
                    f.number,
                    f.type,
                    f.is_repeated,
                    f.containing_oneof and f.containing_oneof.name,
                    f.message_type and f.message_type.name,
                )
                for f in m.fields
            ]

        assert shape(new) == shape(old), message.name


async def test_unknown_symbol_is_not_found(
    reflection_channel: grpc.aio.Channel, protocol: str
) -> None:
    unknown, known, unknown_file = await ask(
        reflection_channel,
        protocol,
        Request(file_containing_symbol="gencharge.v1.NoSuchService"),
        Request(file_containing_symbol="gencharge.v1.PlanService.ListPlans"),
        Request(file_by_filename="gencharge/v1/no_such_file.proto"),
    )
    for reply in (unknown, unknown_file):
        assert reply.WhichOneof("message_response") == "error_response"
        assert reply.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert files_of(known)[0].name == plan_service_pb2.DESCRIPTOR.name  # the stream goes on


async def buf_curl(*args: str) -> str:
    """``buf curl`` over plain-text HTTP/2 (no TLS), its stdout; fails on a non-zero exit."""
    # Fails (never skips) when buf is missing: `make test` installs it with `npm ci`.
    assert BUF.exists(), f"{BUF} missing: run `npm ci`"
    process = await asyncio.create_subprocess_exec(
        str(BUF),
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), HANG_SECONDS)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


@pytest.mark.parametrize("reflect_protocol", [*sorted(PROTOCOLS), None])
async def test_buf_curl_lists_and_calls_through_reflection(
    module_grpc_server: Any, reflect_protocol: str | None
) -> None:
    """With each protocol, and with none (buf tries v1 first, then v1alpha)."""
    base = f"http://127.0.0.1:{module_grpc_server.port}"
    reflect = ["--reflect"]
    if reflect_protocol is not None:
        reflect += ["--reflect-protocol", reflect_protocol]
    listed = (await buf_curl(*reflect, "--list-methods", base)).split()
    for spec in SERVICES:
        assert {f"{spec.full_name}/{method}" for method in spec.method_names()} <= set(listed)
    assert f"{V1_SERVICE_NAME}/ServerReflectionInfo" in listed
    reply = await buf_curl(*reflect, "--data", "{}", f"{base}/gencharge.v1.AuthService/GetJwks")
    keys = json.loads(reply)["keys"]
    assert keys and all(key["kid"] for key in keys)

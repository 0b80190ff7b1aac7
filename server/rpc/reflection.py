"""Server reflection over both protocols: ``grpc.reflection.v1`` and ``v1alpha``.

grpcio-reflection ships only v1alpha. Current clients (grpcurl, ``buf curl``, Postman)
try ``grpc.reflection.v1`` first, whose messages are the same as v1alpha's on the wire:
only the package differs. So one v1alpha servicer answers both: v1 is a generic method
handler over the same servicer, (de)serialising with the v1alpha message classes.

For v1 to describe itself (``file_containing_symbol("grpc.reflection.v1.ServerReflection")``),
its file descriptor is built from the v1alpha one when reflection is enabled, with the
package, file name, type references and language options changed, and added to the
default pool (no .proto file is vendored).
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA_SERVICE_NAME: str = reflection.SERVICE_NAME
V1_PACKAGE = "grpc.reflection.v1"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
#: The file name the upstream v1 proto has (grpc/grpc-proto).
V1_FILE_NAME = "grpc/reflection/v1/reflection.proto"
METHOD = "ServerReflectionInfo"
V1_METHOD_PATH = f"/{V1_SERVICE_NAME}/{METHOD}"


def _v1_file_proto() -> descriptor_pb2.FileDescriptorProto:
    """reflection.proto of v1alpha, renamed to v1 (upstream's v1 file, less comments)."""
    v1alpha = reflection_pb2.DESCRIPTOR
    proto = descriptor_pb2.FileDescriptorProto()
    v1alpha.CopyToProto(proto)
    old_prefix = f".{v1alpha.package}."
    new_prefix = f".{V1_PACKAGE}."
    proto.name = V1_FILE_NAME
    proto.package = V1_PACKAGE
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old_prefix):
                field.type_name = new_prefix + field.type_name.removeprefix(old_prefix)
    for service in proto.service:
        for method in service.method:
            method.input_type = new_prefix + method.input_type.removeprefix(old_prefix)
            method.output_type = new_prefix + method.output_type.removeprefix(old_prefix)
    options = proto.options
    options.java_package = "io.grpc.reflection.v1"
    options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    options.ClearField("deprecated")  # v1alpha is deprecated; v1 is its successor
    return proto


def v1_file_descriptor(
    pool: descriptor_pool.DescriptorPool | None = None,
) -> descriptor.FileDescriptor:
    """The file that defines ``grpc.reflection.v1.ServerReflection`` in ``pool`` (the
    default pool by default), added there first if it is not yet (idempotent; a file some
    other library added under another name is used as it is)."""
    pool = pool or descriptor_pool.Default()
    try:
        found: descriptor.FileDescriptor = pool.FindFileContainingSymbol(V1_SERVICE_NAME)
        return found
    except KeyError:
        pass
    added: descriptor.FileDescriptor = pool.AddSerializedFile(_v1_file_proto().SerializeToString())
    return added


class _ReflectionServicer(reflection.aio.ReflectionServicer):  # type: ignore[misc]
    """grpcio-reflection's servicer, and a method's name finds its file too.

    The reflection protocol takes ``<package>.<service>.<method>`` as a symbol (grpcurl
    ``describe gencharge.v1.PlanService.ListPlans`` asks so), but the upb descriptor pool
    does not index methods: such a lookup falls back to the method's service. (This
    overrides a private method of grpcio-reflection; tests/rpc/test_reflection.py would
    notice a change.)"""

    def _file_containing_symbol(
        self, request: reflection_pb2.ServerReflectionRequest, fully_qualified_name: str
    ) -> reflection_pb2.ServerReflectionResponse:
        reply: reflection_pb2.ServerReflectionResponse = super()._file_containing_symbol(
            request, fully_qualified_name
        )
        if reply.HasField("error_response"):
            try:
                method = self._pool.FindMethodByName(fully_qualified_name)
            except KeyError:
                return reply
            reply = super()._file_containing_symbol(request, method.containing_service.full_name)
        return reply


def enable_reflection(server: grpc.aio.Server, service_names: Iterable[str]) -> list[str]:
    """Serve reflection, v1 and v1alpha, describing ``service_names`` and both reflection
    services themselves from the default descriptor pool. Returns the names it lists."""
    v1_file_descriptor()
    names = sorted({*service_names, V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME})
    servicer = _ReflectionServicer(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    for service_name in (V1ALPHA_SERVICE_NAME, V1_SERVICE_NAME):
        handlers = {METHOD: handler}
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service_name, handlers),)
        )
        server.add_registered_method_handlers(service_name, handlers)
    return names

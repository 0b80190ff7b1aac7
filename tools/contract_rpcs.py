"""What every client needs to know about each RPC, read from the contract's descriptors.

One place decides, for both SDK generators (tools/gen_pyclient.py, tools/gen_typescript.py),
how an RPC may be called; their retry, request-id and pagination code is driven by it:

- **read-only**: the RPC declares ``idempotency_level`` (``NO_SIDE_EFFECTS`` or
  ``IDEMPOTENT``), or its access rule needs ``ACTION_READ``, or its rule names no action
  and it is an AIP standard read method (``Get*``, ``List*``: AIP-131, AIP-132) that
  does not stream requests. A read-only RPC is safe to retry as it is;
- **request_id**: the request has a singular ``string request_id`` (AIP-155): the server
  runs the call once per id, so it is safe to retry with the same id;
- **pagination** (AIP-158, unary RPCs only): the request has ``page_size`` and
  ``page_token``, the response ``next_page_token`` and exactly one repeated message
  field (not a map): the items;
- **access rule**: the ``(gencharge.v1.access)`` option every RPC carries (audience,
  action, service scope).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from google.protobuf import descriptor, descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "gencharge.v1"
ACCESS_OPTION = f"{PACKAGE}.access"
_STANDARD_READ = re.compile(r"^(Get|List)[A-Z]")
_SAFE_LEVELS = (
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT,
)


class ContractError(ValueError):
    """The contract breaks a rule the clients rely on."""


@dataclass(frozen=True)
class Page:
    """A paginated RPC's items: the response field and its message's full name."""

    items_field: str
    item_type: str


@dataclass(frozen=True)
class RpcFacts:
    """One RPC as the clients call it."""

    service: str  # full name, e.g. gencharge.v1.RechargeService
    name: str
    input_type: str  # message full names
    output_type: str
    client_streaming: bool
    server_streaming: bool
    audience: str  # enum value names: AUDIENCE_PERMISSION, ACTION_READ
    action: str
    service_scope: str
    read_only: bool
    request_id: bool
    page: Page | None

    @property
    def path(self) -> str:
        """The gRPC path, ``/gencharge.v1.RechargeService/Recharge``."""
        return f"/{self.service}/{self.name}"


class ContractRpcs:
    """The RPC facts of every service of the contract, from a descriptor pool holding it
    (and everything it imports)."""

    def __init__(self, pool: descriptor_pool.DescriptorPool) -> None:
        self.pool = pool
        self._options_class: Any = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("google.protobuf.MethodOptions")
        )
        self._access: Any = pool.FindExtensionByName(ACCESS_OPTION)

    def of(self, service: str, method: descriptor_pb2.MethodDescriptorProto) -> RpcFacts:
        """The facts of ``method`` of the service named ``service`` (full name)."""
        options = self._options_class.FromString(method.options.SerializeToString())
        if not options.HasExtension(self._access):
            raise ContractError(f"{service}.{method.name} has no {ACCESS_OPTION} rule")
        rule = options.Extensions[self._access]
        audience = _enum_name(rule, "audience")
        action = _enum_name(rule, "action")
        request = self.pool.FindMessageTypeByName(method.input_type.lstrip("."))
        response = self.pool.FindMessageTypeByName(method.output_type.lstrip("."))
        read_only = (
            method.options.idempotency_level in _SAFE_LEVELS
            or action == "ACTION_READ"
            or (
                action == "ACTION_UNSPECIFIED"
                and not method.client_streaming
                and _STANDARD_READ.match(method.name) is not None
            )
        )
        request_id = request.fields_by_name.get("request_id")
        unary = not (method.client_streaming or method.server_streaming)
        return RpcFacts(
            service=service,
            name=method.name,
            input_type=request.full_name,
            output_type=response.full_name,
            client_streaming=method.client_streaming,
            server_streaming=method.server_streaming,
            audience=audience,
            action=action,
            service_scope=rule.service_scope,
            read_only=read_only,
            request_id=(
                request_id is not None
                and request_id.type == descriptor.FieldDescriptor.TYPE_STRING
                and not request_id.is_repeated
            ),
            page=_page(request, response) if unary else None,
        )


def _enum_name(rule: Any, field: str) -> str:
    enum_type = rule.DESCRIPTOR.fields_by_name[field].enum_type
    return str(enum_type.values_by_number[getattr(rule, field)].name)


def _page(request: descriptor.Descriptor, response: descriptor.Descriptor) -> Page | None:
    """AIP-158: the response's one repeated message field, if the RPC is paginated."""
    if not all(name in request.fields_by_name for name in ("page_size", "page_token")):
        return None
    if "next_page_token" not in response.fields_by_name:
        raise ContractError(f"{response.full_name}: paginated without next_page_token")
    repeated = [
        f
        for f in response.fields
        if f.is_repeated
        and f.message_type is not None
        and not f.message_type.GetOptions().map_entry
    ]
    if len(repeated) != 1:
        raise ContractError(
            f"{response.full_name}: a page needs exactly one repeated message field, "
            f"has {len(repeated)}"
        )
    items = repeated[0]
    assert items.message_type is not None
    return Page(items.name, items.message_type.full_name)

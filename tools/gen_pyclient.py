"""The Python client SDK's generated code: ``clients/python/src/gencharge_client/v1/``.

A target of tools/generate.py (it owns that folder and nothing else of clients/python):

- protoc's Python messages, grpc stubs and their mypy-protobuf ``.pyi`` types, with the
  imports rewritten from ``gencharge.v1`` to ``gencharge_client.v1``: the SDK carries
  the contract it needs and never imports the server's ``generated/`` package;
- ``methods.py``: one row per RPC, keyed by its full gRPC path
  (``/gencharge.v1.RechargeService/Recharge``), derived from the descriptors: service,
  method, streaming kind, request and response types, access audience, read-only,
  whether the request carries a ``request_id`` (AIP-155), and for paginated lists
  (AIP-158) the response's repeated items field. The SDK's retry and request-id rules
  read this table, never a hand-written list of names;
- ``services.py``: one typed class per service for the async client and one for the
  sync client (``client.recharge.recharge(request)`` returns ``Recharge``), plus the
  ``AsyncServices``/``SyncServices`` bundles the clients inherit.

Read-only, request_id and pagination are decided for both SDKs by tools/contract_rpcs.py.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contract_rpcs import ContractRpcs
from google.protobuf import descriptor_pb2, descriptor_pool

OWNED = Path("clients") / "python" / "src" / "gencharge_client" / "v1"
PACKAGE = "gencharge.v1"
CLIENT_PACKAGE = "gencharge_client.v1"
HEADER = "Generated from protos/gencharge/v1 by tools/gen_pyclient.py. Do not edit."

FieldProto = descriptor_pb2.FieldDescriptorProto
_IMPORT = re.compile(r"^from gencharge\.v1 import ", re.MULTILINE)
_MODULE_NAME = re.compile(r"'gencharge\.v1\.(\w+_pb2)'")

Protoc = Callable[..., None]
Plugin = Callable[[str], Path]
WriteDescriptorSet = Callable[[Path], None]


def builder(
    protoc: Protoc, plugin: Plugin, write_descriptor_set: WriteDescriptorSet
) -> Callable[[Path], None]:
    """The target's build function over generate.py's protoc runner (``protoc(*options)``
    over every contract proto), its plugin finder and its descriptor-set writer."""

    def build(out_root: Path) -> None:
        target = out_root / OWNED
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="gencharge-pyclient-") as tmp:
            scratch = Path(tmp)
            stubs = scratch / "stubs"
            stubs.mkdir()
            protoc(
                f"--plugin=protoc-gen-mypy={plugin('protoc-gen-mypy')}",
                f"--plugin=protoc-gen-mypy_grpc={plugin('protoc-gen-mypy_grpc')}",
                f"--python_out={stubs}",
                f"--grpc_python_out={stubs}",
                f"--mypy_out={stubs}",
                f"--mypy_grpc_out={stubs}",
            )
            for path in sorted((stubs / "gencharge" / "v1").iterdir()):
                (target / path.name).write_text(
                    rewrite_imports(path.read_text(encoding="utf-8")), encoding="utf-8"
                )
            descriptors = scratch / "contract.binpb"
            write_descriptor_set(descriptors)
            contract = Contract(
                descriptor_pb2.FileDescriptorSet.FromString(descriptors.read_bytes())
            )
        for name, text in contract.render().items():
            (target / name).write_text(text, encoding="utf-8")

    return build


def rewrite_imports(text: str) -> str:
    """protoc's imports of ``gencharge.v1`` (and the module names it gives the message
    classes) moved to ``gencharge_client.v1``; the descriptors themselves keep the proto
    package ``gencharge.v1``, which is what travels on the wire."""
    text = _IMPORT.sub(f"from {CLIENT_PACKAGE} import ", text)
    return _MODULE_NAME.sub(rf"'{CLIENT_PACKAGE}.\1'", text)


def snake(name: str) -> str:
    """``ListBackupRestoreLogs`` -> ``list_backup_restore_logs``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


@dataclass(frozen=True)
class Rpc:
    """One RPC as the generated code describes it."""

    service: str  # full name
    name: str
    kind: str  # methods.Kind member name
    request: str  # message full names
    response: str
    audience: str
    read_only: bool
    request_id: bool
    items_field: str | None
    item: str | None  # the items' message full name
    comment: str

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"


@dataclass(frozen=True)
class Service:
    full_name: str
    file: str
    comment: str
    rpcs: tuple[Rpc, ...]

    @property
    def name(self) -> str:
        return self.full_name.rsplit(".", 1)[1]

    @property
    def attribute(self) -> str:
        """The clients' attribute: ``RechargeService`` -> ``recharge``."""
        return snake(self.name.removesuffix("Service"))


class Contract:
    """The descriptors of the contract, read for the SDK's tables and wrappers."""

    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self.pool = descriptor_pool.DescriptorPool()
        for file in descriptor_set.file:
            self.pool.Add(file)
        self.files = sorted(
            (f for f in descriptor_set.file if f.package == PACKAGE), key=lambda f: f.name
        )
        self.rpcs = ContractRpcs(self.pool)
        self.services = [
            self._service(file, index, proto)
            for file in self.files
            for index, proto in enumerate(file.service)
        ]

    # --- reading the descriptors ----------------------------------------------------

    def _comment(self, file: descriptor_pb2.FileDescriptorProto, path: tuple[int, ...]) -> str:
        for location in file.source_code_info.location:
            if tuple(location.path) == path:
                lines = str(location.leading_comments).splitlines()
                return "\n".join(line.removeprefix(" ") for line in lines).strip()
        return ""

    def _service(
        self,
        file: descriptor_pb2.FileDescriptorProto,
        index: int,
        proto: descriptor_pb2.ServiceDescriptorProto,
    ) -> Service:
        full_name = f"{file.package}.{proto.name}"
        rpcs = tuple(
            self._rpc(full_name, method, self._comment(file, (6, index, 2, number)))
            for number, method in enumerate(proto.method)
        )
        return Service(full_name, file.name, self._comment(file, (6, index)), rpcs)

    def _rpc(self, service: str, method: descriptor_pb2.MethodDescriptorProto, comment: str) -> Rpc:
        facts = self.rpcs.of(service, method)
        kind = {
            (False, False): "UNARY_UNARY",
            (False, True): "UNARY_STREAM",
            (True, False): "STREAM_UNARY",
            (True, True): "STREAM_STREAM",
        }[(facts.client_streaming, facts.server_streaming)]
        if kind == "STREAM_UNARY":
            raise ValueError(f"{service}.{method.name}: client streaming has no SDK runtime")
        return Rpc(
            service=service,
            name=method.name,
            kind=kind,
            request=facts.input_type,
            response=facts.output_type,
            audience=facts.audience,
            read_only=facts.read_only,
            request_id=facts.request_id,
            items_field=facts.page.items_field if facts.page is not None else None,
            item=facts.page.item_type if facts.page is not None else None,
            comment=comment,
        )

    def python_type(self, full_name: str) -> tuple[str, str]:
        """(module alias, attribute path) of a message: ``gencharge.v1.Plan`` ->
        (``plan_service_pb2``, ``Plan``); nested messages keep their outer names."""
        file = self.pool.FindFileContainingSymbol(full_name)
        module = Path(file.name).stem + "_pb2"
        package = file.package
        local = full_name.removeprefix(package + ".")
        if package != PACKAGE:
            module = f"{package.replace('.', '_')}_{module}"
        return module, local

    def imports(self) -> list[str]:
        """Import lines of every module the RPCs' types live in, sorted."""
        lines: set[str] = set()
        for service in self.services:
            for rpc in service.rpcs:
                for name in (rpc.request, rpc.response, rpc.item):
                    if name is None:
                        continue
                    file = self.pool.FindFileContainingSymbol(name)
                    alias, _ = self.python_type(name)
                    stem = Path(file.name).stem + "_pb2"
                    if file.package == PACKAGE:
                        lines.add(f"from {CLIENT_PACKAGE} import {stem} as {alias}")
                    else:
                        lines.add(f"from {file.package} import {stem} as {alias}")
        return sorted(lines)

    def type_ref(self, full_name: str) -> str:
        module, local = self.python_type(full_name)
        return f"{module}.{local}"

    # --- rendering ------------------------------------------------------------------

    def render(self) -> dict[str, str]:
        return {
            "__init__.py": (
                f'"""Package gencharge_client.v1: the GenCharge contract. {HEADER}"""\n'
            ),
            "methods.py": self.render_methods(),
            "services.py": self.render_services(),
        }

    def render_methods(self) -> str:
        rows: list[str] = []
        for service in self.services:
            for rpc in service.rpcs:
                items = repr(rpc.items_field)
                rows.append(
                    "    Method(\n"
                    f"        path={rpc.path!r},\n"
                    f"        service={rpc.service!r},\n"
                    f"        name={rpc.name!r},\n"
                    f"        kind=Kind.{rpc.kind},\n"
                    f"        request_type={self.type_ref(rpc.request)},\n"
                    f"        response_type={self.type_ref(rpc.response)},\n"
                    f"        audience={rpc.audience!r},\n"
                    f"        read_only={rpc.read_only},\n"
                    f"        request_id={rpc.request_id},\n"
                    f"        items_field={items},\n"
                    "    ),"
                )
        return "\n".join(
            [
                f'"""Every RPC of the contract, keyed by its full gRPC path. {HEADER}',
                "",
                "The SDK decides from this table, never from names: which calls get a",
                "``request_id`` (a string field ``request_id`` on the request, AIP-155), which",
                "may be retried (``idempotent``: read-only, or carrying a request_id), which",
                "are paginated (AIP-158: ``page_size``/``page_token`` in, ``next_page_token``",
                "and one repeated message field out, ``items_field``).",
                '"""',
                "",
                "from __future__ import annotations",
                "",
                "import enum",
                "from dataclasses import dataclass",
                "",
                "from google.protobuf.message import Message",
                "",
                *self.imports(),
                "",
                "",
                "class Kind(enum.Enum):",
                '    """The streaming kind of an RPC."""',
                "",
                '    UNARY_UNARY = "unary_unary"',
                '    UNARY_STREAM = "unary_stream"',
                '    STREAM_UNARY = "stream_unary"',
                '    STREAM_STREAM = "stream_stream"',
                "",
                "",
                "@dataclass(frozen=True)",
                "class Method:",
                '    """One RPC: where it lives, its types and how the SDK may treat it."""',
                "",
                "    path: str",
                "    service: str",
                "    name: str",
                "    kind: Kind",
                "    request_type: type[Message]",
                "    response_type: type[Message]",
                "    #: The access rule's audience (AUDIENCE_PUBLIC, AUDIENCE_AUTHENTICATED, ...).",
                "    audience: str",
                "    #: No side effects: safe to call again.",
                "    read_only: bool",
                "    #: The request carries ``string request_id`` (AIP-155 idempotency key).",
                "    request_id: bool",
                "    #: Paginated (AIP-158): the response's repeated items field; else None.",
                "    items_field: str | None",
                "",
                "    @property",
                "    def idempotent(self) -> bool:",
                '        """A retry cannot apply it twice: read-only, or keyed by a request_id."""',
                "        return self.read_only or self.request_id",
                "",
                "    @property",
                "    def paginated(self) -> bool:",
                "        return self.items_field is not None",
                "",
                "",
                "METHODS: dict[str, Method] = {",
                "    method.path: method",
                "    for method in (",
                *("    " + line for row in rows for line in row.splitlines()),
                "    )",
                "}",
                "",
            ]
        )

    def render_services(self) -> str:
        out: list[str] = [
            f'"""Typed wrappers of every service, async and sync. {HEADER}',
            "",
            "``AsyncServices``/``SyncServices`` are the bundles AsyncClient and Client inherit:",
            "``client.recharge`` is ``RechargeService`` (async) or ``RechargeServiceSync``.",
            "Each RPC is an attribute named in snake_case; paginated ones also iterate",
            "(``.items(request)``, ``.pages(request)``).",
            '"""',
            "",
            "from __future__ import annotations",
            "",
            "from gencharge_client import _calls",
            "from gencharge_client._runner import Runner",
            "from gencharge_client._transport import Transport",
            *self.imports(),
            "from gencharge_client.v1.methods import METHODS",
        ]
        for service in self.services:
            out += self._async_service(service)
            out += self._sync_service(service)
        out += [
            "",
            "class AsyncServices:",
            '    """Every service of the contract, as attributes (async)."""',
            "",
            "    def __init__(self, transport: Transport) -> None:",
            *(
                f"        self.{s.attribute} = {s.name}(transport)\n"
                f"        {_docstring(_first_paragraph(s.comment))}"
                for s in self.services
            ),
            "",
            "",
            "class SyncServices:",
            '    """Every service of the contract, as attributes (sync)."""',
            "",
            "    def __init__(self, inner: AsyncServices, runner: Runner) -> None:",
            *(
                f"        self.{s.attribute} = {s.name}Sync(inner.{s.attribute}, runner)\n"
                f"        {_docstring(_first_paragraph(s.comment))}"
                for s in self.services
            ),
            "",
        ]
        return "\n".join(out)

    def _async_call(self, rpc: Rpc) -> str:
        request, response = self.type_ref(rpc.request), self.type_ref(rpc.response)
        if rpc.kind == "UNARY_STREAM":
            return f"_calls.ServerStreamMethod[{request}, {response}]"
        if rpc.kind == "STREAM_STREAM":
            return f"_calls.BidiStreamMethod[{request}, {response}]"
        if rpc.item is not None:
            return f"_calls.PagedMethod[{request}, {response}, {self.type_ref(rpc.item)}]"
        return f"_calls.UnaryMethod[{request}, {response}]"

    def _async_service(self, service: Service) -> list[str]:
        lines = [
            "",
            "",
            f"class {service.name}:",
            f"    {_docstring(service.comment or service.name, '    ')}",
            "",
            "    def __init__(self, transport: Transport) -> None:",
        ]
        for rpc in service.rpcs:
            lines.append(
                f"        self.{snake(rpc.name)} = {self._async_call(rpc)}"
                f"(transport, METHODS[{rpc.path!r}])"
            )
            lines.append(f"        {_docstring(rpc.comment or rpc.name)}")
        return lines

    def _sync_service(self, service: Service) -> list[str]:
        sync_doc = f"{service.name} (sync). {_first_paragraph(service.comment)}"
        lines = [
            "",
            "",
            f"class {service.name}Sync:",
            f"    {_docstring(sync_doc, '    ')}",
            "",
            f"    def __init__(self, inner: {service.name}, runner: Runner) -> None:",
        ]
        for rpc in service.rpcs:
            name = snake(rpc.name)
            lines.append(f"        self.{name} = _calls.sync(inner.{name}, runner)")
            lines.append(f"        {_docstring(rpc.comment or rpc.name)}")
        return lines


def _first_paragraph(comment: str) -> str:
    return comment.split("\n\n", 1)[0].replace("\n", " ").strip()


def _docstring(text: str, indent: str = "        ") -> str:
    """A triple-quoted docstring of ``text`` (escaped); continuation lines get ``indent``."""
    body = text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"').strip()
    lines = body.splitlines() or [""]
    if len(lines) == 1:
        return f'"""{lines[0]}"""'
    rest = "\n".join(f"{indent}{line}".rstrip() for line in lines[1:])
    return f'"""{lines[0]}\n{rest}\n{indent}"""'

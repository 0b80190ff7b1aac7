"""The API reference: Markdown pages generated from the contract's descriptors.

A target of tools/generate.py (which owns nothing else of ``docs/``): ``docs/reference/``
holds ``README.md`` (services, access rules, files, every type) and one page per
``protos/gencharge/v1/*.proto`` file (``plan_service.proto`` -> ``plan_service.md``) with
its services, RPCs (request, response, streaming, access rule), messages (fields with
number, type, label, oneof), enums, extensions, and the comments of each element, taken
from the source info of a descriptor set that protoc builds (``--include_source_info``).

Every element has an anchor named by its full name (``#gencharge.v1.Plan``,
``#gencharge.v1.PlanService.ListPlans``); types link to their definition. The output is
deterministic: elements in the proto's order, indexes sorted, no timestamps.
"""

from __future__ import annotations

import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

OWNED = Path("docs") / "reference"
PACKAGE = "gencharge.v1"
INDEX = "README.md"
ACCESS_OPTION = f"{PACKAGE}.access"

FieldProto = descriptor_pb2.FieldDescriptorProto
SCALARS: dict[int, str] = {
    FieldProto.TYPE_DOUBLE: "double",
    FieldProto.TYPE_FLOAT: "float",
    FieldProto.TYPE_INT64: "int64",
    FieldProto.TYPE_UINT64: "uint64",
    FieldProto.TYPE_INT32: "int32",
    FieldProto.TYPE_FIXED64: "fixed64",
    FieldProto.TYPE_FIXED32: "fixed32",
    FieldProto.TYPE_BOOL: "bool",
    FieldProto.TYPE_STRING: "string",
    FieldProto.TYPE_BYTES: "bytes",
    FieldProto.TYPE_UINT32: "uint32",
    FieldProto.TYPE_SFIXED32: "sfixed32",
    FieldProto.TYPE_SFIXED64: "sfixed64",
    FieldProto.TYPE_SINT32: "sint32",
    FieldProto.TYPE_SINT64: "sint64",
}

# Source-info paths (descriptor.proto field numbers).
FILE_PACKAGE, FILE_MESSAGE, FILE_ENUM, FILE_SERVICE, FILE_EXTENSION = 2, 4, 5, 6, 7
FILE_SYNTAX = 12
MESSAGE_FIELD, MESSAGE_NESTED, MESSAGE_ENUM, MESSAGE_ONEOF = 2, 3, 4, 8
ENUM_VALUE = 2
SERVICE_METHOD = 2

Path_ = tuple[int, ...]

# How each audience reads in the reference (see access.proto and docs/api.md).
AUDIENCES: dict[str, str] = {
    "AUDIENCE_PUBLIC": "public",
    "AUDIENCE_AUTHENTICATED": "signed in",
    "AUDIENCE_PERMISSION": "role permission",
    "AUDIENCE_SERVICE": "service accounts",
}


def builder(write_descriptor_set: Callable[[Path], None]) -> Callable[[Path], None]:
    """The target's build function: ``write_descriptor_set(path)`` writes the contract's
    FileDescriptorSet (with imports and source info) to ``path``; the pages are written
    under ``out_root / OWNED``."""

    def build(out_root: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="gencharge-reference-") as tmp:
            path = Path(tmp) / "contract.binpb"
            write_descriptor_set(path)
            descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())
        target = out_root / OWNED
        target.mkdir(parents=True, exist_ok=True)
        for name, text in render(descriptor_set).items():
            (target / name).write_text(text, encoding="utf-8")

    return build


def page_of(file_name: str) -> str:
    """``gencharge/v1/plan_service.proto`` -> ``plan_service.md``."""
    return Path(file_name).stem + ".md"


def render(descriptor_set: descriptor_pb2.FileDescriptorSet) -> dict[str, str]:
    """Every page of the reference (file name -> Markdown) for the package's files."""
    return Reference(descriptor_set).pages()


# --- comments ------------------------------------------------------------------------

_CODE_SPAN = re.compile(r"(`[^`]*`)")
_LIST_ITEM = re.compile(r"^(\* |- |\d+\. )")


def _escape(text: str) -> str:
    """Prose from a comment, safe in Markdown: code spans kept as they are; outside them
    ``<`` (not HTML) and ``*`` (not emphasis) escaped."""
    parts = _CODE_SPAN.split(text)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace("*", r"\*")
    return "".join(parts)


@dataclass
class Block:
    """A paragraph of a comment: prose lines, or preformatted (indented) lines."""

    lines: list[str]
    code: bool


def comment_blocks(comment: str) -> list[Block]:
    """A comment split into blocks at blank lines; runs of indented lines that do not
    continue a list item are preformatted."""
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    blocks: list[Block] = []
    in_list = False
    previous_blank = True
    for raw in lines:
        line = raw.rstrip()
        if not line:
            in_list = False
            previous_blank = True
            continue
        indented = line.startswith("  ")
        code = indented and not in_list
        if not indented:
            in_list = bool(_LIST_ITEM.match(line))
        if previous_blank or not blocks or blocks[-1].code != code:
            blocks.append(Block([], code))
        blocks[-1].lines.append(line)
        previous_blank = False
    for block in blocks:
        if block.code:
            width = min(len(x) - len(x.lstrip(" ")) for x in block.lines)
            block.lines = [x[width:] for x in block.lines]
    return blocks


def _prose_line(line: str) -> str:
    """One line of prose: list markers kept, a leading ``#`` not a heading."""
    marker = _LIST_ITEM.match(line)
    head = marker.group(0) if marker else ""
    rest = _escape(line[len(head) :])
    return head + ("\\" + rest if rest.startswith("#") else rest)


def comment_markdown(comment: str) -> str:
    """A comment as Markdown paragraphs (preformatted runs fenced)."""
    out: list[str] = []
    for block in comment_blocks(comment):
        if block.code:
            out.append("\n".join(["```", *block.lines, "```"]))
        else:
            out.append("\n".join(_prose_line(line) for line in block.lines))
    return "\n\n".join(out)


def comment_cell(comment: str) -> str:
    """A comment inside one table cell: lines joined, paragraphs split by ``<br>``."""
    out: list[str] = []
    for block in comment_blocks(comment):
        if block.code:
            out.append("<br>".join(f"`{line.strip()}`" for line in block.lines))
        else:
            out.append(" ".join(_escape(line) for line in block.lines))
    return "<br><br>".join(out).replace("|", r"\|")


# --- the model -----------------------------------------------------------------------


@dataclass
class Element:
    """Something the reference defines: a message, enum, service or RPC."""

    full_name: str
    kind: str  # "message", "enum", "service", "rpc", "extension"
    file: str

    @property
    def short_name(self) -> str:
        return self.full_name.removeprefix(PACKAGE + ".")


@dataclass
class FileInfo:
    proto: descriptor_pb2.FileDescriptorProto
    comments: dict[Path_, descriptor_pb2.SourceCodeInfo.Location] = field(default_factory=dict)

    @property
    def page(self) -> str:
        return page_of(self.proto.name)


class Reference:
    def __init__(self, descriptor_set: descriptor_pb2.FileDescriptorSet) -> None:
        self.pool = descriptor_pool.DescriptorPool()
        for file in descriptor_set.file:
            self.pool.Add(file)
        self.files = sorted(
            (FileInfo(f) for f in descriptor_set.file if f.package == PACKAGE),
            key=lambda info: info.proto.name,
        )
        self.elements: dict[str, Element] = {}
        self.map_entries: dict[str, descriptor_pb2.DescriptorProto] = {}
        #: message full name -> (rpc full name, "request" | "response")
        self.used_by: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for info in self.files:
            self._index(info)
        self._options_class = message_factory.GetMessageClass(
            self.pool.FindMessageTypeByName("google.protobuf.MethodOptions")
        )
        self._access: Any = self.pool.FindExtensionByName(ACCESS_OPTION)

    def _index(self, info: FileInfo) -> None:
        proto = info.proto
        for location in proto.source_code_info.location:
            info.comments[tuple(location.path)] = location
        prefix = f"{proto.package}."
        for message in proto.message_type:
            self._index_message(message, prefix, proto.name)
        for enum in proto.enum_type:
            self._add(prefix + enum.name, "enum", proto.name)
        for service in proto.service:
            self._add(prefix + service.name, "service", proto.name)
            for method in service.method:
                rpc = f"{prefix}{service.name}.{method.name}"
                self._add(rpc, "rpc", proto.name)
                self.used_by[method.input_type.lstrip(".")].append((rpc, "request"))
                self.used_by[method.output_type.lstrip(".")].append((rpc, "response"))
        for extension in proto.extension:
            self._add(prefix + extension.name, "extension", proto.name)

    def _index_message(
        self, message: descriptor_pb2.DescriptorProto, prefix: str, file: str
    ) -> None:
        full_name = prefix + message.name
        if message.options.map_entry:
            self.map_entries[full_name] = message
            return
        self._add(full_name, "message", file)
        for nested in message.nested_type:
            self._index_message(nested, full_name + ".", file)
        for enum in message.enum_type:
            self._add(f"{full_name}.{enum.name}", "enum", file)

    def _add(self, full_name: str, kind: str, file: str) -> None:
        self.elements[full_name] = Element(full_name, kind, file)

    # --- links and types ------------------------------------------------------------

    def link(self, full_name: str, page: str, text: str | None = None) -> str:
        """A link from ``page`` to a type or element by full name."""
        element = self.elements.get(full_name)
        if element is not None:
            target = page_of(element.file)
            where = "" if target == page else target
            return f"[{text or element.short_name}]({where}#{full_name})"
        if full_name.startswith("google.protobuf."):
            name = full_name.removeprefix("google.protobuf.")
            anchor = re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()
            return (
                f"[{text or full_name}]"
                f"(https://protobuf.dev/reference/protobuf/google.protobuf/#{anchor})"
            )
        if full_name.startswith("google."):
            file = self.pool.FindFileContainingSymbol(full_name).name
            return (
                f"[{text or full_name}]"
                f"(https://github.com/googleapis/googleapis/blob/master/{file})"
            )
        return f"`{text or full_name}`"

    def field_type(self, field_proto: FieldProto, page: str) -> str:
        if field_proto.type in SCALARS:
            return SCALARS[field_proto.type]
        type_name = field_proto.type_name.lstrip(".")
        entry = self.map_entries.get(type_name)
        if entry is not None:
            key, value = entry.field
            return f"map&lt;{self.field_type(key, page)}, {self.field_type(value, page)}&gt;"
        return self.link(type_name, page)

    def access_rule(self, method: descriptor_pb2.MethodDescriptorProto) -> str:
        """The RPC's ``gencharge.v1.access`` option, readably."""
        options = self._options_class.FromString(method.options.SerializeToString())
        if not options.HasExtension(self._access):
            return "**no rule: denied**"
        rule = options.Extensions[self._access]
        audience_enum = rule.DESCRIPTOR.fields_by_name["audience"].enum_type
        action_enum = rule.DESCRIPTOR.fields_by_name["action"].enum_type
        audience = audience_enum.values_by_number[rule.audience].name
        action = action_enum.values_by_number[rule.action].name.removeprefix("ACTION_").lower()
        scope = f"scope `{rule.service_scope}`" if rule.service_scope else ""
        if audience == "AUDIENCE_PERMISSION":
            return f"role permission: {action} on `{rule.resource}`"
        if audience == "AUDIENCE_SERVICE":
            return f"service accounts with {scope}"
        text = AUDIENCES.get(audience, f"`{audience}`")
        if audience == "AUDIENCE_AUTHENTICATED":
            if rule.service_self:
                text += "; any service account (about itself)"
            elif scope:
                text += f"; service accounts with {scope}"
        return text

    # --- pages ------------------------------------------------------------------------

    def pages(self) -> dict[str, str]:
        pages = {info.page: self.file_page(info) for info in self.files}
        pages[INDEX] = self.index_page()
        return {name: pages[name] for name in sorted(pages)}

    def comment(self, info: FileInfo, path: Path_) -> str:
        location = info.comments.get(path)
        if location is None:
            return ""
        parts = [location.leading_comments.strip("\n"), location.trailing_comments.strip("\n")]
        return "\n\n".join(part for part in parts if part.strip())

    def file_overview(self, info: FileInfo) -> str:
        """The file's own comments: those on ``syntax`` and ``package``, and those standing
        apart before its first definition."""
        texts: list[str] = []
        for path in ((FILE_SYNTAX,), (FILE_PACKAGE,)):
            location = info.comments.get(path)
            if location is not None:
                texts += [*location.leading_detached_comments, location.leading_comments]
        firsts = [
            location
            for path, location in info.comments.items()
            if len(path) == 2 and path[0] in (FILE_MESSAGE, FILE_ENUM, FILE_SERVICE, FILE_EXTENSION)
        ]
        if firsts:
            first = min(firsts, key=lambda location: tuple(location.span))
            texts += list(first.leading_detached_comments)
        return "\n\n".join(comment_markdown(t) for t in texts if t.strip())

    def file_page(self, info: FileInfo) -> str:
        proto = info.proto
        out = [
            f"# {Path(proto.name).name}",
            "",
            f"[API reference](README.md) · `protos/{proto.name}` · package `{proto.package}`",
            "",
        ]
        overview = self.file_overview(info)
        if overview:
            out += [overview, ""]
        ours = {f.proto.name for f in self.files}
        imports = [
            f"[{Path(d).name}]({page_of(d)})" if d in ours else f"`{d}`" for d in proto.dependency
        ]
        if imports:
            out += ["Imports: " + ", ".join(imports), ""]
        sections: list[tuple[str, list[str]]] = [
            ("Services", [self.service_section(info, i) for i in range(len(proto.service))]),
            (
                "Messages",
                [
                    text
                    for i, message in enumerate(proto.message_type)
                    for text in self.message_sections(
                        info, message, f"{proto.package}.", (FILE_MESSAGE, i)
                    )
                ],
            ),
            (
                "Enums",
                [
                    self.enum_section(info, enum, f"{proto.package}.{enum.name}", (FILE_ENUM, i))
                    for i, enum in enumerate(proto.enum_type)
                ],
            ),
            ("Extensions", [self.extensions_section(info)] if proto.extension else []),
        ]
        for title, texts in sections:
            if texts:
                out += [f"## {title}", ""]
                for text in texts:
                    out += [text, ""]
        return "\n".join(out).rstrip("\n") + "\n"

    @staticmethod
    def heading(level: int, full_name: str, text: str) -> str:
        return f'{"#" * level} <a name="{full_name}"></a>{text}'

    def service_section(self, info: FileInfo, index: int) -> str:
        service = info.proto.service[index]
        page = info.page
        full_name = f"{info.proto.package}.{service.name}"
        out = [self.heading(3, full_name, service.name), ""]
        comment = self.comment(info, (FILE_SERVICE, index))
        if comment:
            out += [comment_markdown(comment), ""]
        out += ["| RPC | Request | Response | Access |", "|---|---|---|---|"]
        for method in service.method:
            rpc = f"{full_name}.{method.name}"
            out.append(
                f"| {self.link(rpc, page, method.name)} "
                f"| {self.message_ref(method.input_type, method.client_streaming, page)} "
                f"| {self.message_ref(method.output_type, method.server_streaming, page)} "
                f"| {self.access_rule(method)} |"
            )
        for i, method in enumerate(service.method):
            rpc = f"{full_name}.{method.name}"
            request = self.message_ref(method.input_type, method.client_streaming, page)
            response = self.message_ref(method.output_type, method.server_streaming, page)
            out += [
                "",
                self.heading(4, rpc, f"{service.name}.{method.name}"),
                "",
                f"`rpc {method.name}` ({request}) returns ({response})",
                "",
                f"Access: {self.access_rule(method)}",
            ]
            comment = self.comment(info, (FILE_SERVICE, index, SERVICE_METHOD, i))
            if comment:
                out += ["", comment_markdown(comment)]
        return "\n".join(out)

    def message_ref(self, type_name: str, streaming: bool, page: str) -> str:
        link = self.link(type_name.lstrip("."), page)
        return f"stream {link}" if streaming else link

    def message_sections(
        self,
        info: FileInfo,
        message: descriptor_pb2.DescriptorProto,
        prefix: str,
        path: Path_,
    ) -> Iterator[str]:
        """The message's section, then its nested messages' and enums' (proto order)."""
        if message.options.map_entry:
            return
        page = info.page
        full_name = prefix + message.name
        out = [self.heading(3, full_name, full_name.removeprefix(PACKAGE + "."))]
        comment = self.comment(info, path)
        if comment:
            out += ["", comment_markdown(comment)]
        uses = self.used_by.get(full_name, [])
        if uses:
            used = ", ".join(
                f"{self.link(rpc, page, rpc.removeprefix(PACKAGE + '.'))} ({role})"
                for rpc, role in uses
            )
            out += ["", f"Used by: {used}"]
        out += [""]
        if message.field:
            out += self.field_table(info, message, path)
        else:
            out.append("No fields.")
        yield "\n".join(out)
        for i, nested in enumerate(message.nested_type):
            yield from self.message_sections(
                info, nested, full_name + ".", (*path, MESSAGE_NESTED, i)
            )
        for i, enum in enumerate(message.enum_type):
            yield self.enum_section(
                info, enum, f"{full_name}.{enum.name}", (*path, MESSAGE_ENUM, i)
            )

    def field_table(
        self, info: FileInfo, message: descriptor_pb2.DescriptorProto, path: Path_
    ) -> list[str]:
        page = info.page
        out = ["| Field | Number | Type | Description |", "|---|---|---|---|"]
        real_oneofs = {
            f.oneof_index
            for f in message.field
            if f.HasField("oneof_index") and not f.proto3_optional
        }
        for i, field_proto in enumerate(message.field):
            kind = self.field_type(field_proto, page)
            if field_proto.label == FieldProto.LABEL_REPEATED and not kind.startswith("map&lt;"):
                kind = f"repeated {kind}"
            elif field_proto.proto3_optional:
                kind = f"optional {kind}"
            notes = []
            if field_proto.HasField("oneof_index") and field_proto.oneof_index in real_oneofs:
                notes.append(f"oneof `{message.oneof_decl[field_proto.oneof_index].name}`")
            if field_proto.options.deprecated:
                notes.append("**deprecated**")
            name = f"`{field_proto.name}`" + "".join(f"<br>{note}" for note in notes)
            comment = comment_cell(self.comment(info, (*path, MESSAGE_FIELD, i)))
            out.append(f"| {name} | {field_proto.number} | {kind} | {comment} |")
        for index in sorted(real_oneofs):
            comment = self.comment(info, (*path, MESSAGE_ONEOF, index))
            members = ", ".join(
                f"`{f.name}`"
                for f in message.field
                if f.HasField("oneof_index") and f.oneof_index == index
            )
            text = f"One of `{message.oneof_decl[index].name}` ({members})"
            text += f": {comment_cell(comment)}" if comment else "."
            out += ["", text]
        return out

    def enum_section(
        self,
        info: FileInfo,
        enum: descriptor_pb2.EnumDescriptorProto,
        full_name: str,
        path: Path_,
    ) -> str:
        out = [self.heading(3, full_name, full_name.removeprefix(PACKAGE + "."))]
        comment = self.comment(info, path)
        if comment:
            out += ["", comment_markdown(comment)]
        out += ["", "| Name | Number | Description |", "|---|---|---|"]
        for i, value in enumerate(enum.value):
            name = f"`{value.name}`" + ("<br>**deprecated**" if value.options.deprecated else "")
            text = comment_cell(self.comment(info, (*path, ENUM_VALUE, i)))
            out.append(f"| {name} | {value.number} | {text} |")
        return "\n".join(out)

    def extensions_section(self, info: FileInfo) -> str:
        page = info.page
        out = [
            "| Extension | Extends | Number | Type | Description |",
            "|---|---|---|---|---|",
        ]
        for i, extension in enumerate(info.proto.extension):
            full_name = f"{info.proto.package}.{extension.name}"
            comment = comment_cell(self.comment(info, (FILE_EXTENSION, i)))
            out.append(
                f'| <a name="{full_name}"></a>`{full_name}` '
                f"| {self.link(extension.extendee.lstrip('.'), page)} | {extension.number} "
                f"| {self.field_type(extension, page)} | {comment} |"
            )
        return "\n".join(out)

    # --- the index ----------------------------------------------------------------------

    def summary(self, info: FileInfo, path: Path_) -> str:
        """The first sentence of an element's comment, for tables."""
        comment = self.comment(info, path)
        blocks = [b for b in comment_blocks(comment) if not b.code]
        if not blocks:
            return ""
        text = " ".join(blocks[0].lines)
        match = re.match(r"(.+?[.!?])(\s|$)", text)
        return comment_cell(match.group(1) if match else text)

    def index_page(self) -> str:
        page = INDEX
        out = [
            "# GenCharge API reference",
            "",
            f"Package `{PACKAGE}`, generated from `protos/{PACKAGE.replace('.', '/')}/*.proto` by",
            "`tools/generate.py` (do not edit; `make test` fails when it is stale). The",
            "conventions every RPC follows (authentication, idempotency, pagination, errors,",
            "streaming) are in [the API guide](../api.md). In JSON (e.g. `buf curl`, Connect)",
            "field names are lowerCamelCase (`page_size` is `pageSize`).",
            "",
            "## Services",
            "",
            "| Service | File | RPCs | Summary |",
            "|---|---|---|---|",
        ]
        for info in self.files:
            for i, service in enumerate(info.proto.service):
                full_name = f"{info.proto.package}.{service.name}"
                out.append(
                    f"| {self.link(full_name, page)} | [{Path(info.proto.name).name}]({info.page}) "
                    f"| {len(service.method)} | {self.summary(info, (FILE_SERVICE, i))} |"
                )
        out += [
            "",
            "## Access rules",
            "",
            "Every RPC declares who may call it (the "
            f"{self.link(ACCESS_OPTION, page, f'({ACCESS_OPTION})')} method option, an "
            f"{self.link(f'{PACKAGE}.AccessRule', page)}); the reference shows it as:",
            "",
            "| Access | Rule | Who may call |",
            "|---|---|---|",
            "| public | `AUDIENCE_PUBLIC` | anyone, no access token needed |",
            "| signed in | `AUDIENCE_AUTHENTICATED` | any user or admin with a valid access "
            "token (users see only their own rows); service accounts only where the rule "
            'adds a scope (or "about itself") |',
            "| role permission: *action* on `Resource` | `AUDIENCE_PERMISSION` | a principal "
            "whose role grants *action* (read, write, edit, delete) on *Resource* |",
            "| service accounts with scope `s` | `AUDIENCE_SERVICE` | service accounts holding "
            "scope `s` only |",
            "",
            "Details: [Authentication and access rules]"
            "(../api.md#authentication-and-access-rules).",
            "",
            "## Files",
            "",
            "| File | Services | Messages | Enums |",
            "|---|---|---|---|",
        ]
        counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for element in self.elements.values():
            counts[element.file][element.kind] += 1
        for info in self.files:
            count = counts[info.proto.name]
            out.append(
                f"| [{Path(info.proto.name).name}]({info.page}) | {count['service']} "
                f"| {count['message']} | {count['enum']} |"
            )
        out += ["", "## Types", "", "| Type | Kind | File |", "|---|---|---|"]
        types = sorted(
            (e for e in self.elements.values() if e.kind in ("message", "enum")),
            key=lambda e: e.short_name,
        )
        for element in types:
            out.append(
                f"| {self.link(element.full_name, page)} | {element.kind} "
                f"| [{Path(element.file).name}]({page_of(element.file)}) |"
            )
        return "\n".join(out) + "\n"


def anchors(text: str) -> set[str]:
    """The anchors a generated page defines."""
    return set(re.findall(r'<a name="([^"]+)"></a>', text))


def links(text: str) -> Iterable[tuple[str, str]]:
    """The (page, anchor) of every link within the reference on a page (page empty for
    the same page)."""
    for target in re.findall(r"\]\(([^)\s]*)\)", text):
        if "://" in target:
            continue
        page, _, anchor = target.partition("#")
        yield page, anchor

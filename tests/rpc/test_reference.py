"""The API reference in docs/reference (tools/gen_reference.py, a tools/generate.py target).

Plain synchronous tests, no servers. The committed pages are fresh (test_contract.py's
test_generated_code_is_fresh runs every target); here they are checked against the
contract: every service, RPC, message, field, enum value and extension is there with its
anchor, every RPC with its access rule and each element with its comment, and every
link inside the reference leads to an anchor that exists.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor, descriptor_pb2

from gencharge.v1 import access_pb2

REPO_ROOT = Path(__file__).resolve().parents[2]
REFERENCE = REPO_ROOT / "docs" / "reference"


def _tool(name: str) -> ModuleType:
    """tools/<name>.py, imported under a name of its own."""
    spec = importlib.util.spec_from_file_location(
        f"reference_test_{name}", REPO_ROOT / "tools" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


generate_tool = _tool("generate")
gen_reference = _tool("gen_reference")


@pytest.fixture(scope="module")
def descriptor_set(tmp_path_factory: pytest.TempPathFactory) -> descriptor_pb2.FileDescriptorSet:
    path = tmp_path_factory.mktemp("reference") / "contract.binpb"
    generate_tool.write_descriptor_set(path)
    return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(REFERENCE.glob("*.md"))}


def contract_files() -> list[descriptor.FileDescriptor]:
    """The contract's files as the generated stubs compiled them."""
    protos = sorted((REPO_ROOT / "protos" / "gencharge" / "v1").glob("*.proto"))
    assert protos
    modules = [importlib.import_module(f"gencharge.v1.{p.stem}_pb2") for p in protos]
    return [module.DESCRIPTOR for module in modules]


def messages_of(file: descriptor.FileDescriptor) -> Iterator[descriptor.Descriptor]:
    def walk(message: descriptor.Descriptor) -> Iterator[descriptor.Descriptor]:
        if message.GetOptions().map_entry:
            return
        yield message
        for nested in message.nested_types:
            yield from walk(nested)

    for message in file.message_types_by_name.values():
        yield from walk(message)


def enums_of(file: descriptor.FileDescriptor) -> Iterator[descriptor.EnumDescriptor]:
    yield from file.enum_types_by_name.values()
    for message in messages_of(file):
        yield from message.enum_types


def section(page: str, full_name: str) -> str:
    """The part of ``page`` from the heading of ``full_name`` to the next heading."""
    start = page.index(f'<a name="{full_name}"></a>')
    following = re.compile(r"^#{1,4} ", re.MULTILINE).search(page, start)
    return page[start : following.start() if following else len(page)]


def test_reference_is_a_generate_target() -> None:
    owned = {str(target.owned) for target in generate_tool.targets()}
    assert str(gen_reference.OWNED) == "docs/reference" and "docs/reference" in owned


def test_one_page_per_proto_file_and_an_index(pages: dict[str, str]) -> None:
    expected = {gen_reference.page_of(f.name) for f in contract_files()} | {"README.md"}
    assert set(pages) == expected
    index = pages["README.md"]
    for file in contract_files():
        for service in file.services_by_name.values():
            assert f"#{service.full_name})" in index, service.full_name
        for element in [*messages_of(file), *enums_of(file)]:
            assert f"#{element.full_name})" in index, element.full_name


def test_every_element_of_the_contract_is_documented(pages: dict[str, str]) -> None:
    counted = {"rpcs": 0, "messages": 0, "enums": 0}
    for file in contract_files():
        page = pages[gen_reference.page_of(file.name)]
        anchors = gen_reference.anchors(page)
        for service in file.services_by_name.values():
            assert service.full_name in anchors
            for method in service.methods:
                assert method.full_name in anchors, method.full_name
                counted["rpcs"] += 1
        for message in messages_of(file):
            assert message.full_name in anchors, message.full_name
            text = section(page, message.full_name)
            for field in message.fields:
                assert f"| `{field.name}`" in text and f"| {field.number} |" in text, (
                    f"{message.full_name}.{field.name}"
                )
            counted["messages"] += 1
        for enum in enums_of(file):
            assert enum.full_name in anchors, enum.full_name
            text = section(page, enum.full_name)
            for value in enum.values:
                assert f"| `{value.name}` | {value.number} |" in text, value.name
            counted["enums"] += 1
        for extension in file.extensions_by_name.values():
            assert extension.full_name in anchors, extension.full_name
    # The whole contract, not a part of it.
    assert counted["rpcs"] >= 100 and counted["messages"] >= 100 and counted["enums"] >= 10


def test_every_rpc_shows_its_types_streaming_and_access_rule(pages: dict[str, str]) -> None:
    for file in contract_files():
        page = pages[gen_reference.page_of(file.name)]
        for service in file.services_by_name.values():
            for method in service.methods:
                text = section(page, method.full_name)
                signature = text.splitlines()[2]
                for streaming, message in (
                    (method.client_streaming, method.input_type),
                    (method.server_streaming, method.output_type),
                ):
                    link = f"[{message.full_name.removeprefix('gencharge.v1.')}]("
                    assert link in signature, method.full_name
                    assert (f"stream {link}" in signature) == streaming, method.full_name
                rule = method.GetOptions().Extensions[access_pb2.access]
                access = next(line for line in text.splitlines() if line.startswith("Access: "))
                audience = access_pb2.Audience.Name(rule.audience)
                if audience == "AUDIENCE_PERMISSION":
                    action = access_pb2.Action.Name(rule.action).removeprefix("ACTION_").lower()
                    assert f"role permission: {action} on `{rule.resource}`" in access
                elif audience == "AUDIENCE_SERVICE":
                    assert access == f"Access: service accounts with scope `{rule.service_scope}`"
                elif audience == "AUDIENCE_PUBLIC":
                    assert access == "Access: public", method.full_name
                else:
                    assert audience == "AUDIENCE_AUTHENTICATED", method.full_name
                    assert access.startswith("Access: signed in")
                    if rule.service_scope:
                        assert f"scope `{rule.service_scope}`" in access
                    assert ("about itself" in access) == rule.service_self


def test_comments_come_from_the_source_info(
    descriptor_set: descriptor_pb2.FileDescriptorSet, pages: dict[str, str]
) -> None:
    """The first line of each commented service, RPC, message, field and enum value."""
    checked = 0
    for file in descriptor_set.file:
        if file.package != "gencharge.v1":
            continue
        page = pages[gen_reference.page_of(file.name)]
        for location in file.source_code_info.location:
            first = location.leading_comments.strip().splitlines()[:1]
            if not first or re.search(r"[<*|`\\]", first[0]):
                continue  # escaped or formatted in the page: not comparable as it is
            words = " ".join(first[0].split())
            assert words in " ".join(page.split()), f"{file.name} {list(location.path)}: {words}"
            checked += 1
    assert checked > 500


def test_links_inside_the_reference_resolve(pages: dict[str, str]) -> None:
    anchors = {name: gen_reference.anchors(text) for name, text in pages.items()}
    checked = 0
    for name, text in pages.items():
        for target_page, anchor in gen_reference.links(text):
            if target_page.startswith("../"):
                assert (REFERENCE / target_page).resolve().exists(), (name, target_page)
                continue
            target = target_page or name
            assert target in pages, (name, target_page)
            if anchor:
                assert anchor in anchors[target], (name, target_page, anchor)
            checked += 1
    assert checked > 1000


def test_rendering_is_deterministic(
    descriptor_set: descriptor_pb2.FileDescriptorSet, pages: dict[str, str]
) -> None:
    first = gen_reference.render(descriptor_set)
    assert gen_reference.render(descriptor_set) == first == pages


def test_comment_markdown() -> None:
    comment = (
        " Use it with\n"
        "\n"
        "   option (x) = {a: 1};\n"
        "\n"
        " Notes:\n"
        " * one item that goes\n"
        "   on and on\n"
        " * <b>bold</b> a*b and `a<b>*c`\n"
        " # not a heading\n"
    )
    assert gen_reference.comment_markdown(comment) == (
        "Use it with\n\n```\noption (x) = {a: 1};\n```\n\nNotes:\n* one item that goes\n"
        "  on and on\n* &lt;b>bold&lt;/b> a\\*b and `a<b>*c`\n\\# not a heading"
    )
    assert gen_reference.comment_cell(" a | b\n c\n\n second") == r"a \| b c<br><br>second"

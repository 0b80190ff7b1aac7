"""docs/clients/typescript.md shows the SDK's examples as they are: every
``<!-- embed: path -->`` block is the file at ``path``, byte for byte, and every
example in clients/typescript/examples is on the page (test_typescript_sdk.py runs them
against the real server)."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
PAGE = REPO_ROOT / "docs" / "clients" / "typescript.md"
EXAMPLES = REPO_ROOT / "clients" / "typescript" / "examples"
EMBED = re.compile(r"<!-- embed: (?P<path>\S+) -->\n```ts\n(?P<body>.*?)```\n", re.S)


def embedded() -> dict[str, str]:
    return {m["path"]: m["body"] for m in EMBED.finditer(PAGE.read_text(encoding="utf-8"))}


def test_the_page_embeds_the_example_files_verbatim() -> None:
    blocks = embedded()
    assert blocks, "the page embeds no example"
    for path, body in blocks.items():
        file = REPO_ROOT / path
        assert file.is_file(), f"{path} (embedded in {PAGE.name}) does not exist"
        assert body == file.read_text(encoding="utf-8"), (
            f"{PAGE.relative_to(REPO_ROOT)} shows an outdated {path}: copy the file in"
        )


def test_every_example_is_on_the_page() -> None:
    files = {str(p.relative_to(REPO_ROOT)) for p in EXAMPLES.glob("*.ts")}
    assert files == set(embedded())


def test_the_readmes_link_the_page() -> None:
    assert "docs/clients/typescript.md" in (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    readme = (REPO_ROOT / "clients" / "typescript" / "README.md").read_text(encoding="utf-8")
    assert "docs/clients/typescript.md" in readme

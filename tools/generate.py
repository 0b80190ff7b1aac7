"""Generate everything derived from the GenCharge gRPC contract, check it is fresh, lint it.

Usage (from anywhere; paths are relative to the repository root):

    .venv/bin/python tools/generate.py          # regenerate every target in place
    .venv/bin/python tools/generate.py --check  # exit 1 if any target is stale
    .venv/bin/python tools/generate.py --lint   # buf lint + buf format --exit-code

Inputs: every ``protos/gencharge/v1/*.proto``. Imports resolve against ``protos/``,
``build/proto-deps/`` (google/rpc protos copied here from the installed
googleapis-common-protos package: git-ignored, never vendored) and the google/protobuf
well-known types bundled with grpcio-tools.

Targets (:func:`targets`), each owning one folder that nothing else writes:

- python stubs, ``generated/gencharge/v1/``: ``*_pb2.py`` + ``*_pb2.pyi`` (messages),
  ``*_pb2_grpc.py`` + ``*_pb2_grpc.pyi`` (stubs and servicers, typed by mypy-protobuf),
  plus the package files ``__init__.py`` and ``py.typed``. The import path is
  ``gencharge.v1.<name>_pb2`` (pyproject maps package ``gencharge`` to
  ``generated/gencharge``).
- api reference, ``docs/reference/``: Markdown pages from the contract's descriptor set
  and its comments (tools/gen_reference.py).
- python client, ``clients/python/src/gencharge_client/v1/``: the Python SDK's own
  copy of the messages and stubs (imports under ``gencharge_client.v1``), its RPC table
  and typed service classes (tools/gen_pyclient.py);
- typescript client, ``clients/typescript/src/gen/``: protoc-gen-es messages and
  services, the SDK's RPC table and paginators (tools/gen_typescript.py; needs
  ``clients/typescript/node_modules``, which ``make`` installs with ``npm ci``).

Both SDK tables follow one set of rules, tools/contract_rpcs.py (read-only, request_id,
pagination).
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.resources
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

TOOLS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TOOLS_DIR.parent
PROTO_ROOT = REPO_ROOT / "protos"
PROTO_PACKAGE = Path("gencharge") / "v1"
DEPS_DIR = REPO_ROOT / "build" / "proto-deps"
# The part of generated/ this script owns (other generators may write beside it).
OWNED_DIR = Path("gencharge")
BUF = REPO_ROOT / "node_modules" / ".bin" / "buf"

# google/* proto folders copied from googleapis-common-protos into build/proto-deps.
GOOGLE_DEP_DIRS = ("rpc",)

PACKAGE_FILES: dict[Path, str] = {
    OWNED_DIR / "__init__.py": (
        '"""GenCharge generated gRPC code (see protos/ and tools/generate.py)."""\n'
    ),
    OWNED_DIR / "py.typed": "",
    OWNED_DIR / "v1" / "__init__.py": (
        '"""Package gencharge.v1: generated from protos/gencharge/v1 by tools/generate.py.'
        ' Do not edit."""\n'
    ),
}


class GenerationError(RuntimeError):
    """protoc or buf failed."""


def proto_files() -> list[Path]:
    """The contract's .proto files, relative to PROTO_ROOT, in sorted order."""
    files = sorted((PROTO_ROOT / PROTO_PACKAGE).glob("*.proto"))
    if not files:
        raise GenerationError(f"no .proto files in {PROTO_ROOT / PROTO_PACKAGE}")
    return [f.relative_to(PROTO_ROOT) for f in files]


def googleapis_proto_dir() -> Path:
    """The installed googleapis-common-protos ``google/`` folder."""
    spec = importlib.util.find_spec("google.rpc.status_pb2")
    if spec is None or spec.origin is None:
        raise GenerationError("googleapis-common-protos is not installed")
    return Path(spec.origin).resolve().parent.parent


def grpc_tools_include_dir() -> Path:
    """grpcio-tools' bundled well-known types (google/protobuf/*.proto)."""
    return Path(str(importlib.resources.files("grpc_tools") / "_proto"))


def prepare_proto_deps() -> Path:
    """Copy google/rpc/*.proto from the installed package into build/proto-deps."""
    source_root = googleapis_proto_dir()
    for sub in GOOGLE_DEP_DIRS:
        target = DEPS_DIR / "google" / sub
        target.mkdir(parents=True, exist_ok=True)
        protos = sorted((source_root / sub).glob("*.proto"))
        if not protos:
            raise GenerationError(f"googleapis-common-protos has no {sub}/*.proto")
        wanted = {proto.name for proto in protos}
        for old in sorted(target.glob("*.proto")):
            if old.name not in wanted:
                old.unlink()
        for proto in protos:
            dest = target / proto.name
            if dest.exists() and filecmp.cmp(proto, dest, shallow=False):
                continue
            # Atomic replace: concurrent runs (parallel tests) never see a partial file.
            partial = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            shutil.copyfile(proto, partial)
            os.replace(partial, dest)
    return DEPS_DIR


def _plugin(name: str) -> Path:
    """A protoc plugin installed next to the running interpreter (no PATH needed)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise GenerationError(f"{name} not found: install mypy-protobuf")
        path = Path(found)
    return path


def _protoc(*options: str) -> None:
    """Run protoc over every contract proto with ``options`` (outputs, plugins)."""
    deps = prepare_proto_deps()
    args = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={deps}",
        f"--proto_path={grpc_tools_include_dir()}",
        *options,
        *(str(p) for p in proto_files()),
    ]
    result = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise GenerationError(f"protoc failed:\n{result.stdout}{result.stderr}")


def run_protoc(out_dir: Path) -> None:
    """Generate the Python code of every contract proto into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _protoc(
        f"--plugin=protoc-gen-mypy={_plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={_plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
    )
    for rel, text in PACKAGE_FILES.items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def write_descriptor_set(path: Path) -> None:
    """The contract's FileDescriptorSet, with its imports and source info (comments)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _protoc(f"--descriptor_set_out={path}", "--include_imports", "--include_source_info")


@dataclass(frozen=True)
class Target:
    """One generator and the repository folder it owns entirely.

    ``build(out_root)`` writes the target's files under ``out_root / owned`` (a scratch
    folder); ``--check`` compares that with ``REPO_ROOT / owned`` file by file, and a
    plain run copies the differences in (and deletes files no longer generated).
    """

    name: str
    owned: Path
    build: Callable[[Path], None]


def _build_python(out_root: Path) -> None:
    run_protoc(out_root / "generated")


def targets() -> list[Target]:
    """Everything tools/generate.py generates, in order (builders beside this file)."""
    if str(TOOLS_DIR) not in sys.path:
        sys.path.insert(0, str(TOOLS_DIR))
    import gen_pyclient
    import gen_reference
    import gen_typescript  # TypeScript SDK (clients/typescript)

    return [
        Target("python stubs", Path("generated") / OWNED_DIR, _build_python),
        Target("api reference", gen_reference.OWNED, gen_reference.builder(write_descriptor_set)),
        Target(
            "python client",
            gen_pyclient.OWNED,
            gen_pyclient.builder(_protoc, _plugin, write_descriptor_set),
        ),
        # TypeScript SDK: protoc-gen-es output and the methods table.
        Target(
            "typescript client",
            gen_typescript.OWNED,
            gen_typescript.builder(write_descriptor_set, REPO_ROOT),
        ),
    ]


def _tree_files(base: Path) -> set[Path]:
    """Files under base, relative to it (caches excluded)."""
    if not base.exists():
        return set()
    ignored = {"__pycache__", "node_modules"}
    return {
        p.relative_to(base)
        for p in base.rglob("*")
        if p.is_file() and not ignored.intersection(p.relative_to(base).parts)
    }


def stale_files(fresh_dir: Path, current_dir: Path) -> list[str]:
    """Paths (relative to the two folders) that differ between a fresh run and now."""
    fresh = _tree_files(fresh_dir)
    current = _tree_files(current_dir)
    stale: list[str] = []
    for rel in sorted(fresh | current):
        a, b = fresh_dir / rel, current_dir / rel
        if rel not in fresh:
            stale.append(f"{rel} (not generated any more: delete it)")
        elif rel not in current:
            stale.append(f"{rel} (missing)")
        elif not filecmp.cmp(a, b, shallow=False):
            stale.append(f"{rel} (differs)")
    return stale


def _fresh_run(target: Target, scratch: Path) -> Path:
    """Build ``target`` into ``scratch``; returns the folder that mirrors its owned one."""
    target.build(scratch)
    return scratch / target.owned


def check() -> list[str]:
    """Regenerate into temporary folders; the stale files, relative to the repository."""
    stale: list[str] = []
    for target in targets():
        with tempfile.TemporaryDirectory(prefix="gencharge-gen-") as tmp:
            fresh_dir = _fresh_run(target, Path(tmp))
            stale += [
                f"{target.owned / line}"
                for line in stale_files(fresh_dir, REPO_ROOT / target.owned)
            ]
    return stale


def generate() -> list[str]:
    """Regenerate every target in place; the paths (relative to the repository) that
    changed."""
    changed: list[str] = []
    for target in targets():
        current_dir = REPO_ROOT / target.owned
        with tempfile.TemporaryDirectory(prefix="gencharge-gen-") as tmp:
            fresh_dir = _fresh_run(target, Path(tmp))
            changed += [f"{target.owned / line}" for line in stale_files(fresh_dir, current_dir)]
            fresh = _tree_files(fresh_dir)
            for rel in sorted(_tree_files(current_dir) - fresh):
                (current_dir / rel).unlink()
            for rel in sorted(fresh):
                dest = current_dir / rel
                if not dest.exists() or not filecmp.cmp(fresh_dir / rel, dest, shallow=False):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(fresh_dir / rel, dest)
    return changed


def buf_commands() -> list[list[str]]:
    """The buf invocations that must pass: lint and format of our module."""
    buf = str(BUF)
    return [
        [buf, "lint"],
        [buf, "format", str(PROTO_ROOT.relative_to(REPO_ROOT)), "-d", "--exit-code"],
    ]


def lint() -> list[str]:
    """Run buf lint and buf format; returns the failures (empty when clean)."""
    if not BUF.exists():
        raise GenerationError(f"{BUF} is missing: run `npm ci` at the repository root")
    prepare_proto_deps()
    failures: list[str] = []
    for cmd in buf_commands():
        result = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            shown = " ".join([Path(cmd[0]).name, *cmd[1:]])
            failures.append(f"$ {shown} (exit {result.returncode})\n{result.stdout}{result.stderr}")
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--check", action="store_true", help="fail if a generated file differs from a fresh run"
    )
    mode.add_argument("--lint", action="store_true", help="run buf lint and buf format")
    args = parser.parse_args(argv)
    try:
        if args.check:
            stale = check()
            if stale:
                print("generated code is stale; run `.venv/bin/python tools/generate.py`:")
                for line in stale:
                    print(f"  {line}")
                return 1
            print("generated code is fresh")
            return 0
        if args.lint:
            failures = lint()
            for failure in failures:
                print(failure)
            if failures:
                return 1
            print("buf lint and buf format are clean")
            return 0
        changed = generate()
        total = sum(len(_tree_files(REPO_ROOT / t.owned)) for t in targets())
        print(f"generated {total} files, {len(changed)} changed")
        for line in changed:
            print(f"  {line}")
        return 0
    except GenerationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

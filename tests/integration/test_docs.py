"""Docs that run: every ```python block of README.md and docs/*.md runs as written.

Each file is one test: its blocks run in order in one namespace (a block uses the names of
the blocks above it, as a reader would), with top-level ``await`` allowed, on a fresh
embedded server of its own. The docs call ``rediscache.connect()`` with no arguments; the
test points that at the private server through ``REDISCACHE_DATA_DIR``, the variable a
reader would set, so the docs run exactly as printed.

A block that cannot run here (it needs a remote server, say) is marked in the markdown by
the line before its fence, visible to readers: ``<!-- not run: the reason -->``. Such blocks
stay rare and always say why (``test_unrun_doc_blocks_are_rare_and_explained``).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rediscache import AsyncHub, Hub, server
from rediscache.hub import watched_by_sentinels

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!--\s*not run:\s*(?P<reason>\S.*?)\s*-->")
ANY_NOT_RUN = re.compile(r"^\s*<!--\s*not run\b", re.M)  # also one without a reason
#: The most blocks the docs may leave unrun; raise it only with a reason in the markdown.
MAX_NOT_RUN = 2


@dataclass(frozen=True)
class Block:
    """One ```python block: its file, the line of its first code line, its code."""

    path: Path
    line: int
    code: str = field(repr=False)
    not_run: str | None  # the reason given in the markdown, or None: the block runs

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}, python block at line {self.line}"


def python_blocks(path: Path) -> list[Block]:
    """Every ```python block of a markdown file, in order, dedented (a block may sit in a
    list item). The non-blank line before a fence may mark the block ``<!-- not run: why -->``.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    previous = ""
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            indent = len(lines[i]) - len(lines[i].lstrip())
            start = i + 1
            i = start
            while i < len(lines) and lines[i].strip() != "```":
                i += 1
            if stripped == "```python":
                marker = NOT_RUN.fullmatch(previous)
                code = "\n".join(line[indent:] for line in lines[start:i])
                blocks.append(
                    Block(path, start + 1, code + "\n", marker["reason"] if marker else None)
                )
            previous = ""
        elif stripped:
            previous = stripped
        i += 1
    return blocks


def _blocks_by_file() -> dict[str, list[Block]]:
    found = {str(path.relative_to(ROOT)): python_blocks(path) for path in DOCS}
    return {name: blocks for name, blocks in found.items() if blocks}


BLOCKS = _blocks_by_file()


def test_docs_have_python_blocks() -> None:
    assert "README.md" in BLOCKS
    assert sum(len(blocks) for blocks in BLOCKS.values()) >= 5


def test_unrun_doc_blocks_are_rare_and_explained() -> None:
    not_run = [b for blocks in BLOCKS.values() for b in blocks if b.not_run is not None]
    assert len(not_run) <= MAX_NOT_RUN, [b.where for b in not_run]
    assert all(b.not_run for b in not_run)
    # a marker without a reason, or not right above a python fence, is an error
    for path in DOCS:
        markers = len(ANY_NOT_RUN.findall(path.read_text(encoding="utf-8")))
        marked = sum(1 for b in python_blocks(path) if b.not_run is not None)
        assert markers == marked, (
            f"{path.name}: a '<!-- not run: reason -->' without a reason or not above a "
            "python block"
        )


def _space_schemas(blocks: list[Block]) -> dict[str, set[str]]:
    """For each space name a file creates (``create_space("name", ...)`` with a literal
    name), the distinct argument lists it is created with (``exist_ok`` aside)."""
    schemas: dict[str, set[str]] = {}
    for block in blocks:
        for node in ast.walk(ast.parse(block.code)):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "create_space"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                continue
            schema = [ast.unparse(arg) for arg in node.args[1:]]
            schema += sorted(ast.unparse(kw) for kw in node.keywords if kw.arg != "exist_ok")
            schemas.setdefault(str(node.args[0].value), set()).add(", ".join(schema))
    return schemas


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_doc_space_names_have_one_schema(name: str) -> None:
    """Within a file a space name always comes with the same schema: an example never
    depends on a space of the same name that an earlier one created differently."""
    for space, schemas in _space_schemas(BLOCKS[name]).items():
        assert len(schemas) == 1, f"{name}: space {space!r} is created as {sorted(schemas)}"


def _run(block: Block, namespace: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
    # padded so that line numbers in a traceback are those of the markdown file
    source = "\n" * (block.line - 1) + block.code
    try:
        code = compile(source, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        if code.co_flags & inspect.CO_COROUTINE:
            loop.run_until_complete(eval(code, namespace))
        else:
            exec(code, namespace)
    except Exception as exc:  # whatever a doc block raises is a failure of that block
        raise AssertionError(f"{block.where} raised {type(exc).__name__}: {exc}") from exc


def _hubs(namespace: dict[str, Any]) -> list[Hub | AsyncHub]:
    return [value for value in namespace.values() if isinstance(value, Hub | AsyncHub)]


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_doc_python_blocks_run(name: str, own_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's python blocks run in order, in one namespace, on a fresh server."""
    server.start(server.ServerConfig(data_dir=own_dir))
    monkeypatch.delenv("REDISCACHE_URL", raising=False)
    monkeypatch.setenv("REDISCACHE_DATA_DIR", str(own_dir))
    namespace: dict[str, Any] = {"__name__": "__main__"}
    loop = asyncio.new_event_loop()
    try:
        for block in BLOCKS[name]:
            if block.not_run is None:
                _run(block, namespace, loop)
        # the docs' connect() reached the private server, not the default one (or a set of
        # Sentinels the doc started itself: docs/availability.md)
        for hub in _hubs(namespace):
            if watched_by_sentinels(hub.client):
                continue
            assert hub.server is not None
            assert Path(hub.server.data_dir).resolve() == own_dir.resolve()
    finally:
        for hub in _hubs(namespace):
            if isinstance(hub, AsyncHub):
                loop.run_until_complete(hub.close())
            else:
                hub.close()
        loop.close()

"""The shape of the package (docs/architecture.md): no import cycles, a docstring per module,
and one implementation behind the sync and asyncio classes, whose public surfaces match."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest

import rediscache
from rediscache import AsyncHub, AsyncSpace, AsyncVersionView, Hub, Space, VersionView
from rediscache.asyncio import (
    SYNC_ONLY,
    AsyncPartitionedSpace,
    AsyncPartitionedStage,
    AsyncPartitionedVersionView,
)
from rediscache.partitioned import PartitionedSpace, PartitionedStage, PartitionedVersionView

PACKAGE = Path(rediscache.__file__).parent
PAIRS = [
    (Hub, AsyncHub),
    (Space, AsyncSpace),
    (VersionView, AsyncVersionView),
    (PartitionedSpace, AsyncPartitionedSpace),
    (PartitionedVersionView, AsyncPartitionedVersionView),
    (PartitionedStage, AsyncPartitionedStage),
]


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute module of a relative import ``from <level dots><target> import ...``."""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every rediscache module ``name`` imports, wherever the import is (TYPE_CHECKING
    blocks and function bodies too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _resolve(name, is_package, node.level, node.module)
            else:
                base = node.module or ""
            if not base.startswith("rediscache"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in known else base)
    found.discard(name)
    return {m for m in found if m in known}


def test_no_import_cycles() -> None:
    """Not even type-only ones: a lower module or a protocol does instead."""
    modules = _modules()
    known = set(modules)
    graph = {name: _imports(name, path, known) for name, path in modules.items()}
    # a package's __init__ re-exports its modules; an edge into a package means its __init__
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_every_module_says_its_job() -> None:
    missing = [
        name
        for name, path in _modules().items()
        if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not missing, f"modules without a docstring: {missing}"


def _public(cls: type[Any]) -> dict[str, Any]:
    return {
        name: inspect.getattr_static(cls, name) for name in dir(cls) if not name.startswith("_")
    }


@pytest.mark.parametrize(("sync", "aio"), PAIRS, ids=lambda c: c.__name__)
def test_the_asyncio_classes_have_the_sync_surface(sync: type[Any], aio: type[Any]) -> None:
    """Every public name exists on both sides (apart from SYNC_ONLY, documented in
    rediscache.asyncio), and each operation is the same flow under both drivers: same
    implementation, same signature, awaited on the asyncio side."""
    ours, theirs = _public(sync), _public(aio)
    only_sync = sorted(set(ours) - set(theirs) - SYNC_ONLY)
    only_async = sorted(set(theirs) - set(ours))
    assert not only_sync, f"{sync.__name__} has, {aio.__name__} lacks: {only_sync}"
    assert not only_async, f"{aio.__name__} has, {sync.__name__} lacks: {only_async}"
    for name in sorted(set(ours) & set(theirs)):
        a, b = getattr(sync, name), getattr(aio, name)
        if isinstance(ours[name], property):
            assert isinstance(theirs[name], property), name
            continue
        if getattr(a, "__rediscache_op__", None) is None:
            continue  # no I/O (validate, count of a view...) or refused (a view's writes)
        assert inspect.unwrap(a) is inspect.unwrap(b), f"{name}: two implementations"
        assert inspect.signature(a).parameters == inspect.signature(b).parameters, name
        assert not inspect.iscoroutinefunction(a), name
        assert inspect.iscoroutinefunction(b) or inspect.isasyncgenfunction(b), name


def test_sync_only_names_exist() -> None:
    """The documented exceptions are real methods of the sync space."""
    assert set(_public(Space)) >= SYNC_ONLY


def test_help_shows_what_a_call_returns_and_names_the_call() -> None:
    """help() and inspect.signature show the public parameters and what a call gives (not
    the flow type of the implementation); a wrong argument names the public call."""
    assert inspect.signature(Space.get).return_annotation == "npt.NDArray[Any] | None"
    assert inspect.signature(AsyncSpace.snapshot).return_annotation == "Version"
    assert inspect.signature(Hub.create_space).return_annotation == "Space | PartitionedSpace"
    assert inspect.signature(AsyncSpace.at).return_annotation == "AsyncVersionView"
    assert inspect.signature(Space.iter_batches).return_annotation == "Iterator[Batch]"
    assert list(inspect.signature(Space.search).parameters)[:3] == ["self", "vector", "k"]
    assert "check a batch" in (Space.validate.__doc__ or "").lower()
    from types import SimpleNamespace

    from rediscache.config import SpaceConfig
    from rediscache.context import HubContext
    from rediscache.drive import SyncDriver
    from rediscache.state import SpaceState
    from rediscache.wire import ConnectCounter

    hub = SimpleNamespace(_driver=SyncDriver(None), _context=HubContext(ConnectCounter(), 1.0))
    config = SpaceConfig("t", 4, "l2", "flat", "float32", {}, {})
    space = Space(hub, config, SpaceState.initial())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^get\(\) got an unexpected keyword argument 'nope'"):
        space.get("k", nope=1)

"""The README's Python example runs as written (against the session's server)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import rediscache
from rediscache import Hub

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_examples_run(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    # the example connects to the default embedded server; give it the test session's hub
    monkeypatch.setattr(rediscache, "connect", lambda *args, **kwargs: hub)
    for name in ("items", "text-emb"):
        hub.drop_space(name, missing_ok=True)
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), {})
    finally:
        for name in ("items", "text-emb"):
            hub.drop_space(name, missing_ok=True)

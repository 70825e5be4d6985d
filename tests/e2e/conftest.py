"""Fixtures of the browser tests: the fake camera and microphone, and the pages' console."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.browser import FakeMedia, make_fake_media


@pytest.fixture
def fake_media(tmp_path: Path) -> FakeMedia:
    return make_fake_media(tmp_path / "media")


@pytest.fixture
def console_lines() -> Iterator[dict[str, list[str]]]:
    """Console output of each browser page, printed when the test fails."""
    lines: dict[str, list[str]] = {"host": [], "viewer": []}
    yield lines
    for name, page_lines in lines.items():
        print(f"--- {name} browser console ---")
        print("\n".join(page_lines))

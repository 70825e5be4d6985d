"""Fixtures of the browser tests that start a server process and two Chromiums."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.browser import FakeMedia, make_fake_media
from tests.support.processes import ServerProcess


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


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerProcess]:
    """A server process on SQLite and the in-process broker; its log is printed on failure."""
    process = ServerProcess(data_dir)
    try:
        yield process
    finally:
        process.stop()
        print("--- server log ---")
        print(process.log_text())

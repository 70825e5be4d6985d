"""The session key kept in the data folder: private, shared by processes that start
together, and never empty."""

from __future__ import annotations

import multiprocessing
import stat
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from core.settings import load_secret_key

SECRET_KEY_MIN_CHARS = 32

# Processes started at once on one data folder, and how many times: against a key
# file created by checking for it and then writing it, five runs out of five failed.
PROCESSES = 8
ROUNDS = 10
QUEUE_TIMEOUT_SECS = 30.0


@pytest.fixture(autouse=True)
def no_secret_key_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)


def test_secret_key_file_private_and_kept(tmp_path: Path) -> None:
    key = load_secret_key(tmp_path)
    assert len(key) >= SECRET_KEY_MIN_CHARS
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600
    assert load_secret_key(tmp_path) == key
    # No temporary file is left beside it.
    assert [path.name for path in tmp_path.iterdir()] == ["secret_key"]


@pytest.mark.parametrize("content", ["", "\n", "court"])
def test_secret_key_short_file_rejected(tmp_path: Path, content: str) -> None:
    """An empty key file, left by a crash while it was written, signed every session
    with an empty key, with which anyone can sign a cookie for any account."""
    (tmp_path / "secret_key").write_text(content)
    with pytest.raises(ValueError, match="delete it to generate a new key"):
        load_secret_key(tmp_path)


@pytest.mark.parametrize("value", ["court", "x" * (SECRET_KEY_MIN_CHARS - 1)])
def test_secret_key_short_variable_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """SECRET_KEY from the environment was taken at any length, even one character."""
    monkeypatch.setenv("SECRET_KEY", value)
    with pytest.raises(ValueError, match=f"SECRET_KEY has {len(value)} characters"):
        load_secret_key(tmp_path)
    assert not (tmp_path / "secret_key").exists()


def test_secret_key_variable_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    value = "k" * SECRET_KEY_MIN_CHARS
    monkeypatch.setenv("SECRET_KEY", value)
    assert load_secret_key(tmp_path) == value


def load_after_barrier(barrier: Barrier, data_dir: Path, keys: Queue[str]) -> None:
    barrier.wait()
    keys.put(load_secret_key(data_dir))


def test_secret_key_processes_agree(tmp_path: Path) -> None:
    """Processes starting together on one folder each wrote their own key, so a session
    cookie from one was rejected by another."""
    context = multiprocessing.get_context("fork")
    for round_number in range(ROUNDS):
        data_dir = tmp_path / f"round-{round_number}"
        barrier = context.Barrier(PROCESSES)
        keys: Queue[str] = context.Queue()
        processes = [
            context.Process(target=load_after_barrier, args=(barrier, data_dir, keys))
            for _ in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        loaded = {keys.get(timeout=QUEUE_TIMEOUT_SECS) for _ in processes}
        for process in processes:
            process.join()
            assert process.exitcode == 0
        assert loaded == {(data_dir / "secret_key").read_text()}

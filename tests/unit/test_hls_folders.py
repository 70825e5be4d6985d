"""The writer file of live HLS folders, and which folders a process removes: those that
an earlier or dead process of a given node name wrote, never a running process's."""

from __future__ import annotations

from pathlib import Path

from core.database import Database
from core.settings import Settings
from signaling.hls_folders import (
    WRITER_FILE,
    HlsWriter,
    find_left_folders,
    left_by,
    read_writer,
    remove_left_folder,
    remove_left_folders,
    write_writer_file,
)
from signaling.hls_links import HLS_FILE_NAME
from signaling.router import LocalRouter

RUNNING = HlsWriter("node-a", "instance-now")
PREDECESSOR = HlsWriter("node-a", "instance-before")
OTHER_NODE = HlsWriter("node-b", "instance-b")


def live_folder(hls_dir: Path, live_id: int, writer: HlsWriter | None) -> Path:
    """Create a live folder with a playlist and a segment, named by `writer` if given."""
    folder = hls_dir / str(live_id)
    folder.mkdir(parents=True)
    (folder / "high.m3u8").write_text("#EXTM3U\n")
    (folder / "high-1.m4s").write_bytes(b"\x00" * 16)
    if writer is not None:
        write_writer_file(folder, writer)
    return folder


def test_writer_file_round_trip(tmp_path: Path) -> None:
    write_writer_file(tmp_path, PREDECESSOR)
    assert read_writer(tmp_path) == PREDECESSOR


def test_writer_file_never_served() -> None:
    assert HLS_FILE_NAME.fullmatch(WRITER_FILE) is None


def test_writer_file_invalid(tmp_path: Path) -> None:
    assert read_writer(tmp_path) is None
    for text in ["", "not json", "[]", '{"node": "node-a"}', '{"node": 1, "instance": "x"}']:
        (tmp_path / WRITER_FILE).write_text(text)
        assert read_writer(tmp_path) is None, text


def test_left_by_node() -> None:
    is_left = left_by("node-a", RUNNING)
    assert is_left(PREDECESSOR)
    assert not is_left(RUNNING)
    assert not is_left(OTHER_NODE)


def test_find_left_folders(tmp_path: Path) -> None:
    live_folder(tmp_path, 1, PREDECESSOR)
    live_folder(tmp_path, 2, RUNNING)
    live_folder(tmp_path, 3, OTHER_NODE)
    live_folder(tmp_path, 4, None)
    live_folder(tmp_path, 12, PREDECESSOR)
    (tmp_path / "notes").mkdir()
    write_writer_file(tmp_path / "notes", PREDECESSOR)
    (tmp_path / "5").write_text("a file, not a folder")
    assert find_left_folders(tmp_path, left_by("node-a", RUNNING)) == [1, 12]


def test_find_left_folders_no_hls_dir(tmp_path: Path) -> None:
    assert find_left_folders(tmp_path / "hls", left_by("node-a", RUNNING)) == []


def test_remove_left_folder_checks_writer_again(tmp_path: Path) -> None:
    """A folder that a running process took over since it was found stays."""
    folder = live_folder(tmp_path, 1, PREDECESSOR)
    is_left = left_by("node-a", RUNNING)
    assert find_left_folders(tmp_path, is_left) == [1]
    write_writer_file(folder, OTHER_NODE)
    assert not remove_left_folder(tmp_path, 1, is_left)
    assert (folder / "high-1.m4s").exists()


def test_remove_left_folders(tmp_path: Path) -> None:
    left = live_folder(tmp_path, 1, PREDECESSOR)
    own = live_folder(tmp_path, 2, RUNNING)
    other = live_folder(tmp_path, 3, OTHER_NODE)
    unnamed = live_folder(tmp_path, 4, None)
    assert remove_left_folders(tmp_path, left_by("node-a", RUNNING)) == [1]
    assert not left.exists()
    for kept in (own, other, unnamed):
        assert (kept / "high-1.m4s").exists(), kept


async def test_local_router_start_removes_left(tmp_path: Path) -> None:
    """A restarted single process removes what its killed predecessor of the same node
    name left, and keeps the folders that name another node."""
    settings = Settings(data_dir=tmp_path, secret_key="k" * 40, node_name="node-a")
    database = Database(settings.resolved_database_url)
    router = LocalRouter(settings, database)
    left = live_folder(settings.hls_dir, 1, PREDECESSOR)
    other = live_folder(settings.hls_dir, 2, OTHER_NODE)
    assert router.media.hls_writer.node == "node-a"

    await router.start()

    assert not left.exists()
    assert (other / "high-1.m4s").exists()
    await router.close()
    await database.dispose()

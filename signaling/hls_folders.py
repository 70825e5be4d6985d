"""The writer of each live's HLS folder, and the removal of folders that a killed
server process left behind.

Every process of a deployment writes into the shared `<data dir>/hls/`, one folder per
live named by the live's id. The live's media process empties the folder when the
stream starts and removes it 30 s after the live ends (signaling/hls.py), but a killed
process removes nothing. So each folder names its writer in WRITER_FILE: the node name
and the instance token of the process, which changes at each start. A folder is removed
only when its writer is a process of a given node name other than the running one,
which no running process writes to any more.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

# Not a name that signaling/hls_links.py's HLS_FILE_NAME accepts, so it is never served.
WRITER_FILE = "writer.json"


@dataclass(frozen=True, slots=True)
class HlsWriter:
    """A server process that writes HLS folders: its node name and instance token."""

    node: str
    instance: str


def write_writer_file(directory: Path, writer: HlsWriter) -> None:
    (directory / WRITER_FILE).write_text(
        json.dumps({"node": writer.node, "instance": writer.instance})
    )


def read_writer(directory: Path) -> HlsWriter | None:
    """Return the writer of `directory`, or None when its WRITER_FILE is missing or invalid."""
    try:
        value = json.loads((directory / WRITER_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(value, dict):
        return None
    node, instance = value.get("node"), value.get("instance")
    if not isinstance(node, str) or not isinstance(instance, str):
        return None
    return HlsWriter(node, instance)


def left_by(node: str, running: HlsWriter) -> Callable[[HlsWriter], bool]:
    """Return a check for writers that are processes of `node` other than `running`,
    the process that checks: a dead process of `node`, or this one's predecessor."""

    def is_left(writer: HlsWriter) -> bool:
        return writer.node == node and writer.instance != running.instance

    return is_left


def find_left_folders(hls_dir: Path, is_left: Callable[[HlsWriter], bool]) -> list[int]:
    """Return the ids of the lives whose folder in `hls_dir` has a writer that passes
    `is_left`. Folders without a valid WRITER_FILE are left out: another process may
    have just created one and not written its file yet."""
    try:
        entries = sorted(hls_dir.iterdir())
    except FileNotFoundError:
        return []
    found: list[int] = []
    for entry in entries:
        if not entry.name.isdigit() or not entry.is_dir():
            continue
        writer = read_writer(entry)
        if writer is not None and is_left(writer):
            found.append(int(entry.name))
    return found


def remove_left_folder(hls_dir: Path, live_id: int, is_left: Callable[[HlsWriter], bool]) -> bool:
    """Remove the live's folder if its writer still passes `is_left`; return whether it did."""
    directory = hls_dir / str(live_id)
    writer = read_writer(directory)
    if writer is None or not is_left(writer):
        return False
    # NOTE: a process that empties this folder for a new stream between the check
    # above and this removal loses its first files. The callers remove only folders of
    # lives without a media node, so no process should be starting their stream.
    shutil.rmtree(directory, ignore_errors=True)
    logger.info(
        "removed the HLS folder of live %s left by node %s instance %s",
        live_id,
        writer.node,
        writer.instance,
    )
    return True


def remove_left_folders(hls_dir: Path, is_left: Callable[[HlsWriter], bool]) -> list[int]:
    """Remove every live folder of `hls_dir` whose writer passes `is_left`; return
    the ids of those lives."""
    return [
        live_id
        for live_id in find_left_folders(hls_dir, is_left)
        if remove_left_folder(hls_dir, live_id, is_left)
    ]

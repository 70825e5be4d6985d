"""Service configuration, read from the command line and the environment."""

from __future__ import annotations

import contextlib
import enum
import json
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_DATA_DIR = Path("data")
DEFAULT_TIME_ZONE = "Europe/Paris"
# The shortest secret key accepted, from SECRET_KEY or the data folder's key file. A
# generated key has 64 characters, so a shorter file is empty or truncated. A key
# that an attacker could guess would let them sign a session cookie for any account.
SECRET_KEY_MIN_CHARS = 32
DEFAULT_SMTP_PORT = 25
DEFAULT_SMTP_FROM = "Veillée <veillee@localhost>"
# A mentor has three days to answer a mentoring request before it passes to the next
# mentor: long enough to span a weekend, short enough that a new teacher is not left
# waiting for weeks at the start of the school year.
DEFAULT_MENTORING_ANSWER_TIMEOUT_SECS = 72 * 3600.0
# How often each process looks for unanswered requests past their time and for
# e-mails still to send: a minute late on a three-day limit does not matter.
DEFAULT_MENTORING_SWEEP_INTERVAL_SECS = 60.0
# How long a live stays on after its host's media connection or signaling socket is
# lost, waiting for the host to publish again. It is long enough to reload the page or
# rejoin a Wi-Fi network, and short enough that viewers do not wait on a frozen picture
# for long.
DEFAULT_HOST_RECONNECT_GRACE_SECS = 60.0
# WebRTC viewers one media process serves before it sends further viewers to the HLS
# stream. A generous default, not a measurement: each viewer costs the process the
# packetizing and encryption of its stream, so an operator sets the figure that the
# fan-out benchmark (benchmarks/) gives for their machine. 0 sends everyone to HLS.
DEFAULT_MAX_WEBRTC_VIEWERS = 1000
# Signaling sockets one person may have open on one live in one server process: a few
# tabs, far fewer than a script opening sockets in a loop would. Each socket may hold
# a peer connection, so the cap is lower than the chat's 8 sockets.
# NOTE: counted per process, so with N processes a person may open N times as many.
DEFAULT_SIGNALING_SOCKETS_PER_PERSON = 4


class MediaPath(enum.StrEnum):
    """The path a live's media takes to its viewers."""

    # Encode each video layer and the audio once per live; viewers' senders only
    # packetize and encrypt.
    ENCODE_ONCE = "encode_once"
    # aiortc's MediaRelay: one encoder per viewer. Kept for the fan-out benchmark.
    RELAY = "relay"


@dataclass(frozen=True)
class SmtpSettings:
    """The SMTP server that sends notification e-mails; `host` None sends none and logs
    each e-mail as skipped."""

    host: str | None = None
    port: int = DEFAULT_SMTP_PORT
    sender: str = DEFAULT_SMTP_FROM
    # Upgrade the connection with STARTTLS before logging in and sending.
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Settings:
    """Everything one server process needs to know; all processes of a deployment
    share `database_url`, `recordings_dir` and `secret_key`."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    data_dir: Path = DEFAULT_DATA_DIR
    # None means a SQLite file in `data_dir`.
    database_url: str | None = None
    # None means the in-process chat broker (one server process only).
    redis_url: str | None = None
    secret_key: str = ""
    # RTCIceServer dictionaries ({"urls": ..., "username": ..., "credential": ...}).
    # Empty by default: aiortc's own default is a public STUN host.
    ice_servers: tuple[dict[str, str], ...] = ()
    # How long a live waits for its lost host to publish again before it ends.
    host_reconnect_grace_secs: float = DEFAULT_HOST_RECONNECT_GRACE_SECS
    # How a live's media reaches its viewers.
    media_path: MediaPath = MediaPath.ENCODE_ONCE
    # WebRTC viewers of all lives on this media process; further viewers get the HLS
    # stream instead.
    max_webrtc_viewers: int = DEFAULT_MAX_WEBRTC_VIEWERS
    # Signaling sockets of one person on one live in this process; one more gets 4429.
    signaling_sockets_per_person: int = DEFAULT_SIGNALING_SOCKETS_PER_PERSON
    # Public origin of the site, used to check WebSocket Origin headers and build
    # absolute links (iCalendar feed). None accepts the request's own host.
    site_url: str | None = None
    # The site is served over HTTPS by a proxy in front of this process: the session
    # cookie is Secure on every response, even to a request that arrived over HTTP.
    https: bool = False
    demo: bool = False
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    mentoring_answer_timeout_secs: float = DEFAULT_MENTORING_ANSWER_TIMEOUT_SECS
    mentoring_sweep_interval_secs: float = DEFAULT_MENTORING_SWEEP_INTERVAL_SECS
    # Name of this process in logs and in the media-node records.
    node_name: str = field(default_factory=lambda: f"node-{os.getpid()}")

    def __post_init__(self) -> None:
        for name in (
            "host_reconnect_grace_secs",
            "mentoring_answer_timeout_secs",
            "mentoring_sweep_interval_secs",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.max_webrtc_viewers < 0:
            raise ValueError(f"max_webrtc_viewers must be 0 or more, got {self.max_webrtc_viewers}")
        if self.signaling_sockets_per_person < 1:
            raise ValueError(
                "signaling_sockets_per_person must be 1 or more, "
                f"got {self.signaling_sockets_per_person}"
            )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'veillee.sqlite3').resolve()}"

    @property
    def recordings_dir(self) -> Path:
        return self.data_dir / "recordings"

    @property
    def hls_dir(self) -> Path:
        """The folder of the lives' HLS streams, one subfolder per live."""
        return self.data_dir / "hls"

    @property
    def https_only(self) -> bool:
        """Whether every response marks the session cookie Secure."""
        return self.https or bool(self.site_url and self.site_url.startswith("https://"))


# Bind addresses that name no machine: a node bound to one is named after its host name.
UNNAMED_BIND_ADDRESSES = frozenset({"127.0.0.1", "::1", "localhost", "0.0.0.0", "::", ""})  # noqa: S104


def default_node_name(host: str, port: int) -> str:
    """Return `<host>:<port>` for a node bound to a specific address, else
    `<host name>:<port>`, for example "web-2:8000".

    Each process of a deployment needs its own name, which stays the same when it
    restarts: other processes reach it by that name, and it finishes the recordings
    left under that name. A loopback or wildcard address is the same on every machine,
    so the machine's host name takes its place.
    """
    if host in UNNAMED_BIND_ADDRESSES:
        host = socket.gethostname()
    return f"{host}:{port}"


def load_secret_key(data_dir: Path) -> str:
    """Return SECRET_KEY from the environment, or a key kept in `data_dir`.

    Keeping a generated key on disk lets sessions survive a restart and lets
    processes sharing the folder share the key. Raise ValueError when the variable or
    the file contains fewer than SECRET_KEY_MIN_CHARS characters.
    """
    from_env = os.environ.get("SECRET_KEY")
    if from_env:
        if len(from_env) < SECRET_KEY_MIN_CHARS:
            raise ValueError(
                f"SECRET_KEY has {len(from_env)} characters, fewer than "
                f"{SECRET_KEY_MIN_CHARS}: set a random key, such as the output of "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        return from_env
    data_dir.mkdir(parents=True, exist_ok=True)
    key_file = data_dir / "secret_key"
    if not key_file.exists():
        _create_key_file(key_file)
    key = key_file.read_text().strip()
    if len(key) < SECRET_KEY_MIN_CHARS:
        raise ValueError(
            f"{key_file} contains a key of {len(key)} characters, fewer than "
            f"{SECRET_KEY_MIN_CHARS}: delete it to generate a new key, which logs "
            "everyone out"
        )
    return key


def _create_key_file(key_file: Path) -> None:
    """Write a new random key to `key_file`, unless another process wrote one first.

    The key goes to a temporary file, readable by its owner only, which is then linked
    into place: a process never reads a partly written key, and processes starting
    together all keep the first key linked.
    """
    descriptor, temporary = tempfile.mkstemp(dir=key_file.parent, prefix=".secret_key.")
    try:
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        with contextlib.suppress(FileExistsError):
            os.link(temporary, key_file)
    finally:
        os.unlink(temporary)


def parse_ice_servers(raw: str | None) -> tuple[dict[str, str], ...]:
    """Parse the ICE_SERVERS JSON list; raise ValueError naming the problem."""
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"ICE_SERVERS is not valid JSON: {error}") from error
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and "urls" in item for item in value
    ):
        raise ValueError('ICE_SERVERS must be a JSON list of objects with "urls"')
    return tuple(value)

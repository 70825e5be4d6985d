"""server.py's command line: the host reconnection grace, from its option or its
environment variable, validated before the server starts."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

import server
from core.settings import (
    DEFAULT_HOST_RECONNECT_GRACE_SECS,
    DEFAULT_MAX_WEBRTC_VIEWERS,
    MediaPath,
    Settings,
)


@pytest.fixture(autouse=True)
def without_grace_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOST_RECONNECT_GRACE_SECS", raising=False)


def test_host_reconnect_grace_default() -> None:
    arguments = server.parse_arguments([])
    assert arguments.host_reconnect_grace == DEFAULT_HOST_RECONNECT_GRACE_SECS


def test_host_reconnect_grace_from_option(tmp_path: Path) -> None:
    arguments = server.parse_arguments(
        ["--host-reconnect-grace", "2.5", "--data-dir", str(tmp_path)]
    )
    assert arguments.host_reconnect_grace == 2.5
    assert server.settings_from_arguments(arguments).host_reconnect_grace_secs == 2.5


def test_host_reconnect_grace_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST_RECONNECT_GRACE_SECS", "90")
    assert server.parse_arguments([]).host_reconnect_grace == 90.0
    # the option wins over the environment
    assert server.parse_arguments(["--host-reconnect-grace", "5"]).host_reconnect_grace == 5.0


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soixante", ""])
def test_host_reconnect_grace_rejects_option(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        server.parse_arguments(["--host-reconnect-grace", value])
    assert exited.value.code == 2
    assert "--host-reconnect-grace" in capsys.readouterr().err


def test_host_reconnect_grace_rejects_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HOST_RECONNECT_GRACE_SECS", "0")
    with pytest.raises(SystemExit) as exited:
        server.parse_arguments([])
    assert exited.value.code == 2
    assert "positive number of seconds" in capsys.readouterr().err


def test_settings_reject_zero_grace() -> None:
    with pytest.raises(ValueError, match="host_reconnect_grace_secs"):
        Settings(host_reconnect_grace_secs=0)


def test_media_path_default_and_choices(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MEDIA_PATH", raising=False)
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-of-at-least-32-characters")
    assert server.parse_arguments([]).media_path is MediaPath.ENCODE_ONCE
    arguments = server.parse_arguments(["--media-path", "relay", "--data-dir", str(tmp_path)])
    assert server.settings_from_arguments(arguments).media_path is MediaPath.RELAY
    monkeypatch.setenv("MEDIA_PATH", "relay")
    assert server.parse_arguments([]).media_path is MediaPath.RELAY
    with pytest.raises(SystemExit):
        server.parse_arguments(["--media-path", "simulcast"])
    assert "--media-path" in capsys.readouterr().err


def test_max_webrtc_viewers_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAX_WEBRTC_VIEWERS", raising=False)
    assert server.parse_arguments([]).max_webrtc_viewers == DEFAULT_MAX_WEBRTC_VIEWERS


def test_max_webrtc_viewers_from_option_and_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MAX_WEBRTC_VIEWERS", "40")
    assert server.parse_arguments([]).max_webrtc_viewers == 40
    arguments = server.parse_arguments(["--max-webrtc-viewers", "0", "--data-dir", str(tmp_path)])
    assert server.settings_from_arguments(arguments).max_webrtc_viewers == 0


@pytest.mark.parametrize("value", ["-1", "2.5", "mille", ""])
def test_max_webrtc_viewers_rejects_option(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        server.parse_arguments(["--max-webrtc-viewers", value])
    assert exited.value.code == 2
    assert "--max-webrtc-viewers" in capsys.readouterr().err


def test_settings_reject_negative_viewer_cap() -> None:
    with pytest.raises(ValueError, match="max_webrtc_viewers"):
        Settings(max_webrtc_viewers=-1)


def test_node_name_default_names_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Guards against two machines of one deployment both named 127.0.0.1:8000."""
    monkeypatch.delenv("NODE_NAME", raising=False)
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-of-at-least-32-characters")
    for host in ("127.0.0.1", "0.0.0.0"):
        arguments = server.parse_arguments(["--host", host, "--data-dir", str(tmp_path)])
        assert server.settings_from_arguments(arguments).node_name == f"{socket.gethostname()}:8000"
    arguments = server.parse_arguments(["--host", "10.1.2.3", "--port", "8002"])
    assert server.settings_from_arguments(arguments).node_name == "10.1.2.3:8002"


def test_node_name_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NODE_NAME", "web-2")
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-of-at-least-32-characters")
    arguments = server.parse_arguments(["--data-dir", str(tmp_path)])
    assert server.settings_from_arguments(arguments).node_name == "web-2"


def test_https_option(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HTTPS", raising=False)
    monkeypatch.setenv("SECRET_KEY", "x" * 40)
    plain = server.settings_from_arguments(server.parse_arguments(["--data-dir", str(tmp_path)]))
    assert plain.https_only is False
    option = server.parse_arguments(["--https", "--data-dir", str(tmp_path)])
    assert server.settings_from_arguments(option).https_only is True
    monkeypatch.setenv("HTTPS", "1")
    environment = server.parse_arguments(["--data-dir", str(tmp_path)])
    assert server.settings_from_arguments(environment).https_only is True

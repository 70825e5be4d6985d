"""Debian's Chromium driven by Playwright, started so that it contacts nothing beyond
127.0.0.1, in French, with a fake camera and a microphone that speaks French."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, Playwright

CHROMIUM_PATH = Path("/usr/bin/chromium")
INSTALL_HINT = (
    "run `bash dev.sh test`, which installs chromium, chromium-l10n, ffmpeg and espeak-ng"
)

# Flags for every Chromium the tests start. With them Chromium resolves no host name
# and opens no connection beyond 127.0.0.1 (the host resolver maps every other name
# to NOTFOUND, and background services are off), while WebRTC to a local aiortc peer
# still works. Checked with Chromium 156 on Debian 12.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
    "--autoplay-policy=no-user-gesture-required",
    "--lang=fr-FR",
]
# Chromium's own texts, such as form validation messages, follow LANGUAGE on Linux:
# with Chromium 156 on Debian 12, --lang alone left them in English. Debian ships
# the French texts in the chromium-l10n package.
BROWSER_ENVIRONMENT = {"LANGUAGE": "fr"}
# Chromium reads only the last --disable-features. Playwright passes its own list
# before the caller's arguments, so this merged list goes last. Disabling
# WebRtcHideLocalIpsWithMdns makes Chromium offer its interface address instead of
# an mDNS name, which aiortc could not resolve.
DISABLE_FEATURES_FLAG = (
    "--disable-features=WebRtcHideLocalIpsWithMdns,NetworkTimeServiceQuerying,"
    "OptimizationHints,OptimizationGuideModelDownloading,OptimizationHintsFetching,"
    "OptimizationTargetPrediction,MediaRouter,AimEnabled,DestroyProfileOnBrowserClose,"
    "HttpsUpgrades,PaintHolding"
)
# For a page that publishes: grant camera and microphone without a prompt, and use
# fake devices instead of real ones.
FAKE_MEDIA_FLAGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

SPOKEN_FRENCH = "Bonjour à toutes et à tous, bienvenue dans ce live."
# 640x360 at 20 frames per second for 10 s, which Chromium loops: about 70 MB of
# raw YUV, small enough for a temporary folder, large enough for a readable picture.
TEST_PATTERN_FILTER = "testsrc2=size=640x360:rate=20"
TEST_PATTERN_SECS = 10
MEDIA_TOOL_TIMEOUT_SECS = 120


@dataclass(frozen=True)
class FakeMedia:
    """Files that Chromium plays as its camera and microphone."""

    audio: Path
    video: Path


def _require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def make_fake_media(folder: Path) -> FakeMedia:
    """Write a spoken-French WAV with espeak-ng and a test-pattern .y4m with ffmpeg."""
    folder.mkdir(parents=True, exist_ok=True)
    audio = folder / "speech.wav"
    video = folder / "pattern.y4m"
    subprocess.run(
        [_require_tool("espeak-ng"), "-v", "fr", "-w", str(audio), SPOKEN_FRENCH],
        check=True,
        capture_output=True,
        timeout=MEDIA_TOOL_TIMEOUT_SECS,
    )
    subprocess.run(
        [
            _require_tool("ffmpeg"),
            "-nostdin",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            TEST_PATTERN_FILTER,
            "-t",
            str(TEST_PATTERN_SECS),
            "-pix_fmt",
            "yuv420p",
            "-y",
            str(video),
        ],
        check=True,
        capture_output=True,
        timeout=MEDIA_TOOL_TIMEOUT_SECS,
    )
    return FakeMedia(audio=audio, video=video)


def chromium_arguments(media: FakeMedia | None) -> list[str]:
    """Return the command-line flags, with the fake devices when `media` is given."""
    arguments = list(CHROMIUM_FLAGS)
    if media is not None:
        arguments += [
            *FAKE_MEDIA_FLAGS,
            f"--use-file-for-fake-audio-capture={media.audio}",
            f"--use-file-for-fake-video-capture={media.video}",
        ]
    arguments.append(DISABLE_FEATURES_FLAG)
    return arguments


@contextmanager
def launch_chromium(
    playwright: Playwright, media: FakeMedia | None = None
) -> Iterator[BrowserContext]:
    """Start Debian's Chromium with a fresh profile folder; yield its browser context.

    Each call starts its own Chromium process, so two calls behave as two people on
    two computers: no shared cookies, cache or storage.
    """
    if not CHROMIUM_PATH.exists():
        pytest.fail(f"{CHROMIUM_PATH} is missing: {INSTALL_HINT}", pytrace=False)

    with tempfile.TemporaryDirectory(prefix="veillee-chromium-") as user_data_dir:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir,
            executable_path=str(CHROMIUM_PATH),
            headless=True,
            args=chromium_arguments(media),
            env={**os.environ, **BROWSER_ENVIRONMENT},
            locale="fr-FR",
            timezone_id="Europe/Paris",
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context
        finally:
            context.close()


def record_console(page: Page, lines: list[str]) -> None:
    """Append every console message and uncaught error of `page` to `lines`."""

    def on_console(message: ConsoleMessage) -> None:
        lines.append(f"{message.type}: {message.text}")

    def on_page_error(error: Exception) -> None:
        lines.append(f"pageerror: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)

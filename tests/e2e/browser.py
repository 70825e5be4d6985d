"""Debian's Chromium driven by Playwright, started so that it contacts nothing beyond
127.0.0.1, in French, with a fake camera and a microphone that speaks French."""

from __future__ import annotations

import os
import re
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


# The console errors Chromium logs when the Content Security Policy blocks something.
# Chromium 156 writes "Executing inline script violates the following Content Security
# Policy directive ... The action has been blocked."; earlier versions wrote "Refused
# to execute inline script ...", "Refused to connect to ..." and the like. A blocked
# script or socket breaks a page silently, so every browser test fails on such a line
# (see `launch_chromium`).
CSP_CONSOLE_ERROR_PATTERN = re.compile(
    r"^Refused to |violates the following Content Security Policy directive"
)


def is_csp_console_error(message: ConsoleMessage) -> bool:
    return message.type == "error" and CSP_CONSOLE_ERROR_PATTERN.search(message.text) is not None


@contextmanager
def launch_chromium(
    playwright: Playwright, media: FakeMedia | None = None, *, allow_csp_errors: bool = False
) -> Iterator[BrowserContext]:
    """Start Debian's Chromium with a fresh profile folder; yield its browser context.

    Each call starts its own Chromium process, so two calls behave as two people on
    two computers: no shared cookies, cache or storage. When the block ends without an
    exception, the test fails if any page of the context logged a Content Security
    Policy error, unless `allow_csp_errors` is set by a test that causes one on
    purpose.
    """
    if not CHROMIUM_PATH.exists():
        pytest.fail(f"{CHROMIUM_PATH} is missing: {INSTALL_HINT}", pytrace=False)

    csp_errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if is_csp_console_error(message):
            location = message.location
            csp_errors.append(f"{location.get('url', '?')}: {message.text}")

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
        context.on("console", on_console)
        try:
            yield context
        finally:
            context.close()

    if csp_errors and not allow_csp_errors:
        pytest.fail(
            "the Content Security Policy blocked something:\n" + "\n".join(csp_errors),
            pytrace=False,
        )


def record_console(page: Page, lines: list[str]) -> None:
    """Append every console message and uncaught error of `page` to `lines`."""

    def on_console(message: ConsoleMessage) -> None:
        lines.append(f"{message.type}: {message.text}")

    def on_page_error(error: Exception) -> None:
        lines.append(f"pageerror: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_page_error)


# Reports every Content Security Policy violation of the pages to the test through the
# binding that `record_csp_violations` exposes. Playwright runs init scripts through
# the DevTools protocol, so the page's own policy does not block this one.
CSP_VIOLATION_LISTENER_JS = """
document.addEventListener("securitypolicyviolation", (event) => {
  window.veilleeReportCspViolation(
    `${event.effectiveDirective} blocked ${event.blockedURI || "inline"} ` +
      `in ${event.documentURI} (${event.sourceFile}:${event.lineNumber})`,
  );
});
"""


def record_csp_violations(context: BrowserContext, violations: list[str]) -> None:
    """Append a line for each CSP violation of any page of `context` to `violations`."""

    def report(line: str) -> None:
        violations.append(line)

    context.expose_function("veilleeReportCspViolation", report)
    context.add_init_script(CSP_VIOLATION_LISTENER_JS)


# Polls a predicate in the page until it returns true, or throws after timeoutMs. The
# predicate's source goes into this function's own text, and Playwright compiles that
# through the DevTools protocol, where the page's Content Security Policy does not
# apply. Page.wait_for_function may compile its predicate with eval() in the page,
# which script-src 'self' forbids.
_WAIT_FOR_PREDICATE_JS = """
async ([arg, timeoutMs]) => {
  const predicate = %s;
  const deadline = performance.now() + timeoutMs;
  while (!(await predicate(arg))) {
    if (performance.now() > deadline) {
      throw new Error(`predicate still false after ${timeoutMs} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}
"""


def wait_for_predicate(
    page: Page, predicate: str, arg: object = None, timeout_ms: float = 15_000
) -> None:
    """Wait until the JavaScript function `predicate`, such as
    "(minimum) => window.count > minimum", returns true for `arg` in `page`."""
    page.evaluate(_WAIT_FOR_PREDICATE_JS % predicate, [arg, timeout_ms])

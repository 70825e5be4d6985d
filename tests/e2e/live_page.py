"""Helpers for browser tests that drive the live page: session cookies, the viewer's
decoded frames, and the chat."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import BrowserContext, Locator, Page

from tests.e2e.browser import record_console
from tests.support.clients import Account, register_for_live, schedule_live, sign_up

HOST = Account("claire.dubois@example.org", "cartes-mentales-2026", "Claire Dubois")
VIEWER = Account("ines.martin@example.org", "bonsoir-a-toutes-2026", "Inès Martin")
# The fake camera sends 20 frames per second: 40 more decoded frames prove about two
# seconds of moving picture.
FRAMES_GROWTH = 40
# Pages and WebSockets respond in well under a second here. The margin is for a loaded
# machine running two Chromiums, servers and aiortc on two cores.
PAGE_TIMEOUT_MS = 15_000

# Frames decoded by the viewer's <video>, from the browser's own playback counter.
TOTAL_VIDEO_FRAMES_JS = (
    "document.querySelector('[data-stage-video]').getVideoPlaybackQuality().totalVideoFrames"
)
FRAMES_ABOVE_JS = f"(minimum) => {TOTAL_VIDEO_FRAMES_JS} > minimum"


def host_and_viewer(base_url: str, title: str) -> tuple[httpx.Client, httpx.Client, int]:
    """Sign up HOST and VIEWER, and register VIEWER for a live titled `title` that HOST
    schedules. Return both logged-in clients, which the caller closes, and the live's id."""
    host_http = sign_up(base_url, HOST)
    viewer_http = sign_up(base_url, VIEWER)
    live_id = schedule_live(host_http, title)
    assert register_for_live(viewer_http, live_id).status_code == 303
    return host_http, viewer_http, live_id


def cookies_of(cookie: str, url: str) -> list[Any]:
    """Turn a Cookie header into the cookies Playwright adds to a browser for `url`."""
    return [
        {"name": name, "value": value, "url": url}
        for name, value in (pair.split("=", 1) for pair in cookie.split("; "))
    ]


def open_page(context: BrowserContext, cookie: str, url: str, console: list[str]) -> Page:
    """Return the browser's page, logged in with the Cookie header `cookie` for `url`,
    with its console output appended to `console`."""
    context.add_cookies(cookies_of(cookie, url))
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = context.pages[0] if context.pages else context.new_page()
    record_console(page, console)
    return page


def frames_decoded(page: Page) -> int:
    value: int = page.evaluate(TOTAL_VIDEO_FRAMES_JS)
    return value


def wait_for_frames(page: Page, growth: int, timeout_ms: float) -> None:
    """Wait until the viewer's video decodes `growth` more frames than now."""
    minimum = frames_decoded(page) + growth
    page.wait_for_function(FRAMES_ABOVE_JS, arg=minimum, timeout=timeout_ms)


def say(page: Page, text: str) -> None:
    page.get_by_label("Votre message").fill(text)
    page.get_by_label("Votre message").press("Enter")


def chat_items(page: Page, text: str) -> Locator:
    """The stored chat messages of the page that contain `text`."""
    return page.locator("[data-chat-messages] li[data-seq]").filter(has_text=text)

"""Text limits counted alike in Chromium and in the server: one table of texts goes
through the pages' trimming and counting (web/static/chat.js) and through each server
validator, and texts exactly at a limit are typed into the real forms."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from accounts.service import DISPLAY_NAME_MAX_CHARS, AccountError, clean_display_name
from chat.text import TEXT_MAX_CHARS, InvalidTextError, clean_text
from live.service import (
    DESCRIPTION_MAX_CHARS,
    TITLE_MAX_CHARS,
    LiveError,
    _clean_description,
    _clean_title,
)
from tests.e2e.browser import launch_chromium
from tests.support.clients import Account, register_for_live, schedule_live, sign_up
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOST = Account("claire.dubois@example.org", "limites-de-texte-2026", "Claire Dubois")
VIEWER = Account("karim.benali@example.org", "limites-de-texte-2026", "Karim Benali")
PAGE_TIMEOUT_MS = 15_000

EMOJI = "\N{GRINNING FACE}"
# Five code points: three emoji joined by two zero-width joiners.
FAMILY = "\N{WOMAN}\N{ZERO WIDTH JOINER}\N{WOMAN}\N{ZERO WIDTH JOINER}\N{GIRL}"
# "é" as e and a combining acute accent: two code points that NFC composes into one.
DECOMPOSED_E = "e\N{COMBINING ACUTE ACCENT}"
# White space that JavaScript's trim() and Python's str.strip() disagree on.
NEXT_LINE = "\u0085"
BYTE_ORDER_MARK = "\N{ZERO WIDTH NO-BREAK SPACE}"
# Reverses what follows it up to the end of its paragraph, unless isolated.
RIGHT_TO_LEFT_OVERRIDE = "\N{RIGHT-TO-LEFT OVERRIDE}"

# Counts each text as the pages do before they let it be sent.
BROWSER_COUNT_JS = """
async (texts) => {
  const { countCodePoints, trimWhiteSpace } = await import("/static/chat.js");
  return texts.map((text) => countCodePoints(trimWhiteSpace(text)));
}
"""


class Verdict:
    ACCEPTED = "accepted"
    EMPTY = "empty"
    TOO_LONG = "too long"


@dataclass(frozen=True)
class Field:
    """A text field: its limit, whether it may be empty, and its server validator,
    which returns the verdict."""

    max_chars: int
    required: bool
    # Whether the field accepts zero-width joiners, which display names reject.
    accepts_joiners: bool
    validate: Callable[[str], str]


def verdict_of_code(code: str) -> str:
    """Return the verdict of a server error code such as `title_too_long`."""
    if code.endswith("too_long"):
        return Verdict.TOO_LONG
    if code.endswith("missing") or code == "empty":
        return Verdict.EMPTY
    return f"invalid: {code}"


def chat_verdict(text: str) -> str:
    try:
        clean_text(text)
    except InvalidTextError as error:
        return verdict_of_code("too_long" if error.too_long else str(error))
    return Verdict.ACCEPTED


def live_verdict(clean: Callable[[str], str]) -> Callable[[str], str]:
    def verdict(text: str) -> str:
        try:
            clean(text)
        except LiveError as error:
            return verdict_of_code(error.code)
        return Verdict.ACCEPTED

    return verdict


def display_name_verdict(text: str) -> str:
    try:
        clean_display_name(text)
    except AccountError as error:
        return verdict_of_code(error.code)
    return Verdict.ACCEPTED


FIELDS = {
    "chat": Field(TEXT_MAX_CHARS, True, True, chat_verdict),
    "title": Field(TITLE_MAX_CHARS, True, True, live_verdict(_clean_title)),
    "description": Field(DESCRIPTION_MAX_CHARS, False, True, live_verdict(_clean_description)),
    "display_name": Field(DISPLAY_NAME_MAX_CHARS, True, False, display_name_verdict),
}


def texts_for(field: Field) -> list[tuple[str, str, int]]:
    """Return (label, text, code points counted) for texts at and around the limit."""
    limit = field.max_chars
    cases = [
        ("emoji at limit", EMOJI * limit, limit),
        ("emoji above limit", EMOJI * (limit + 1), limit + 1),
        ("emoji at limit, NEL and BOM", NEXT_LINE + EMOJI * limit + BYTE_ORDER_MARK, limit),
        ("emoji at limit, spaces", " \u3000" + EMOJI * limit + "\u00a0\u2028", limit),
        ("NFC at limit", DECOMPOSED_E * limit, limit),
        ("NFC above limit", DECOMPOSED_E * (limit + 1), limit + 1),
        ("white space only", f" {NEXT_LINE}{BYTE_ORDER_MARK}\u3000\t", 0),
    ]
    if field.accepts_joiners:
        cases += [
            ("joined emoji at limit", FAMILY * (limit // 5), 5 * (limit // 5)),
            ("joined emoji above limit", FAMILY * (limit // 5) + "x", 5 * (limit // 5) + 1),
        ]
    return cases


def expected_verdict(field: Field, count: int) -> str:
    if count == 0:
        return Verdict.EMPTY if field.required else Verdict.ACCEPTED
    return Verdict.TOO_LONG if count > field.max_chars else Verdict.ACCEPTED


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("text-limits"))
    yield process
    process.stop()


def new_page(context: BrowserContext) -> Page:
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    return page


def test_browser_and_server_count_alike(server: ServerProcess) -> None:
    """The pages trimmed with trim() and the server with str.strip(), so a text
    padded with U+0085 or U+FEFF was at the limit on one side only."""
    table = [
        (name, label, text, count)
        for name, field in FIELDS.items()
        for label, text, count in texts_for(field)
    ]
    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        page = new_page(context)
        page.goto(f"{server.url}/login")
        browser_counts = page.evaluate(BROWSER_COUNT_JS, [text for _, _, text, _ in table])

    for (name, label, text, count), browser_count in zip(table, browser_counts, strict=True):
        field = FIELDS[name]
        assert browser_count == count, f"{name}: {label}, counted by the browser"
        assert field.validate(text) == expected_verdict(field, count), f"{name}: {label}"


def test_chat_limit_and_bidi_in_page(server: ServerProcess) -> None:
    """A message of exactly TEXT_MAX_CHARS emoji, padded with white space that only
    one of trim() and strip() removes, is let through by the page and stored. A
    message with a right-to-left override is shown isolated."""
    host = sign_up(server.url, HOST)
    viewer = sign_up(server.url, VIEWER)
    live_id = schedule_live(host, "Les cartes mentales en classe de seconde")
    assert register_for_live(viewer, live_id).status_code == 303
    at_limit = NEXT_LINE + EMOJI * TEXT_MAX_CHARS + BYTE_ORDER_MARK

    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        context.add_cookies(
            [
                {"name": name, "value": value, "url": server.url}
                for name, value in viewer.cookies.items()
            ]
        )
        page = new_page(context)
        page.goto(f"{server.url}/lives/{live_id}")
        chat_input = page.locator("[data-chat-input]")
        expect(chat_input).to_be_enabled()

        chat_input.fill(EMOJI * (TEXT_MAX_CHARS + 1))
        expect(page.locator("[data-chat-counter]")).to_have_text(
            f"{TEXT_MAX_CHARS + 1} / {TEXT_MAX_CHARS}"
        )
        expect(page.locator("[data-chat-submit]")).to_be_disabled()

        chat_input.fill(at_limit)
        expect(page.locator("[data-chat-counter]")).to_have_text(
            f"{TEXT_MAX_CHARS} / {TEXT_MAX_CHARS}"
        )
        expect(page.locator("[data-chat-submit]")).to_be_enabled()
        page.locator("[data-chat-submit]").click()
        expect(page.locator("[data-chat-messages] li .text")).to_have_text(EMOJI * TEXT_MAX_CHARS)

        # a right-to-left override stays inside its own message
        chat_input.fill(RIGHT_TO_LEFT_OVERRIDE + "texte inversé")
        page.locator("[data-chat-submit]").click()
        overridden = page.locator("[data-chat-messages] li").nth(1)
        expect(overridden.locator(".text")).to_have_text(RIGHT_TO_LEFT_OVERRIDE + "texte inversé")
        assert overridden.locator(".author").evaluate("(element) => element.tagName") == "BDI"
        isolation = overridden.locator(".text").evaluate(
            "(element) => getComputedStyle(element).unicodeBidi"
        )
        assert isolation == "isolate"

    events = viewer.get(f"/api/chat/live:{live_id}/events").json()["events"]
    assert [event["text"] for event in events] == [
        EMOJI * TEXT_MAX_CHARS,
        RIGHT_TO_LEFT_OVERRIDE + "texte inversé",
    ]
    host.close()
    viewer.close()


def test_signup_name_emoji_at_limit(server: ServerProcess) -> None:
    """maxlength counted UTF-16 code units and stopped an emoji name at half the
    server's limit."""
    name_at_limit = EMOJI * DISPLAY_NAME_MAX_CHARS
    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        page = new_page(context)
        page.goto(f"{server.url}/signup")
        page.fill("input[name=email]", "ines.martin@example.org")
        page.fill("input[name=password]", "limites-de-texte-2026")
        name_input = page.locator("input[name=display_name]")

        name_input.fill(name_at_limit + EMOJI)
        assert name_input.evaluate("(input) => input.validity.valid") is False

        name_input.fill(BYTE_ORDER_MARK + name_at_limit + NEXT_LINE)
        assert name_input.evaluate("(input) => input.validity.valid") is True
        page.get_by_role("button", name="Créer mon compte").click()
        page.wait_for_url(f"{server.url}/")

        profile = httpx.get(
            f"{server.url}/profile",
            cookies={cookie["name"]: cookie["value"] for cookie in context.cookies()},
        )
    assert profile.status_code == 200
    assert name_at_limit in profile.text

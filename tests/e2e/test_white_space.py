"""The browser and the server trim the same white space from a chat message: every
character of the Basic Multilingual Plane goes through trimWhiteSpace in a real
Chromium and through chat.text's set, and the results are compared."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import sync_playwright

from chat.text import InvalidTextError, clean_text
from core.text import WHITE_SPACE
from tests.e2e.browser import launch_chromium
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRIM_ALL_JS = """
async (texts) => {
  const { trimWhiteSpace } = await import("/static/chat.js");
  return texts.map((text) => trimWhiteSpace(text));
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("white-space"))
    yield process
    process.stop()


def bmp_characters() -> list[str]:
    """Every code point of the Basic Multilingual Plane but the surrogates, which a
    JavaScript string can hold alone but JSON from Python cannot."""
    return [chr(code) for code in range(0x10000) if not 0xD800 <= code <= 0xDFFF]


def test_browser_and_server_trim_alike(server: ServerProcess) -> None:
    """Python's strip() and JavaScript's trim() disagree on U+001C to U+001F, U+0085
    and U+FEFF, so a message could count as empty on one side only."""
    texts = [f"{char}{char}x{char}y{char}" for char in bmp_characters()]
    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(f"{server.url}/login")
        trimmed_by_browser = page.evaluate(TRIM_ALL_JS, texts)

    mismatches = [
        f"U+{ord(text[0]):04X}"
        for text, browser in zip(texts, trimmed_by_browser, strict=True)
        if browser != text.strip(WHITE_SPACE)
    ]
    assert mismatches == []
    trimmed = {
        text[0] for text, browser in zip(texts, trimmed_by_browser, strict=True) if browser != text
    }
    assert trimmed == set(WHITE_SPACE)


@pytest.mark.parametrize("char", ["\x1c", "\x1d", "\x1e", "\x1f"])
def test_separator_controls_not_trimmed(char: str) -> None:
    """str.strip() removed these at the ends, while the browser kept and counted them."""
    with pytest.raises(InvalidTextError, match="control character"):
        clean_text(f"{char}Bonsoir{char}")


@pytest.mark.parametrize("char", ["\u0085", "\ufeff", "\u3000", "\u2028", "\u00a0"])
def test_white_space_trimmed_at_ends(char: str) -> None:
    assert clean_text(f"{char}Bonsoir{char}") == "Bonsoir"

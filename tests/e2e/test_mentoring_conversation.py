"""A mentoring conversation in two real Chromiums against a real server process: the
mentee's unread count rises as the mentor writes, messages arrive in real time both
ways, and the end of the mentorship closes the form on both sides."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from tests.e2e.browser import launch_chromium, record_console
from tests.support import mentoring_flows as flows
from tests.support.clients import Account, sign_up
from tests.support.processes import PROJECT_DIR, ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ARTIFACTS_DIR = PROJECT_DIR / "test-artifacts" / "mentoring"
MENTOR = Account("claire.dubois@example.org", "mentorat-claire-2026", "Claire Dubois")
MENTEE = Account("lea.martin@example.org", "mentorat-lea-2026", "Léa Martin")
# Pages and sockets answer in well under a second here; the margin is for a loaded
# CI machine running two Chromiums and a server on two cores.
PAGE_TIMEOUT_MS = 15_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("mentoring-e2e"))
    yield process
    process.stop()


def log_in(context: BrowserContext, server: ServerProcess, account: Account) -> Page:
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(f"{server.url}/login")
    page.fill("input[name=email]", account.email)
    page.fill("input[name=password]", account.password)
    page.click("form.stacked button[type=submit]")
    page.wait_for_url(f"{server.url}/")
    return page


def send_message(page: Page, text: str) -> None:
    page.fill("[data-chat-input]", text)
    page.press("[data-chat-input]", "Enter")


def test_conversation_in_two_browsers(server: ServerProcess) -> None:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    mentor_client = sign_up(server.url, MENTOR)
    mentee_client = sign_up(server.url, MENTEE)
    assert flows.save_offer(mentor_client).status_code == 303
    mentor_id = flows.proposed_mentor_ids(mentee_client, flows.need_form())[0]
    sent = flows.send_request(mentee_client, flows.need_form(), mentor_id)
    accepted = flows.answer(mentor_client, flows.request_id_of(sent), accept=True)
    conversation_id = flows.conversation_id_of(accepted)
    conversation_url = f"{server.url}/mentoring/conversations/{conversation_id}"
    console: list[str] = []

    with (
        sync_playwright() as playwright,
        launch_chromium(playwright) as mentor_browser,
        launch_chromium(playwright) as mentee_browser,
    ):
        mentor = log_in(mentor_browser, server, MENTOR)
        mentee = log_in(mentee_browser, server, MENTEE)
        record_console(mentor, console)
        record_console(mentee, console)

        # the mentee watches the dashboard while the mentor writes
        mentee.goto(f"{server.url}/mentoring")
        badge = mentee.locator("[data-conversation] [data-unread-count]")
        expect(badge).to_be_hidden()
        mentor.goto(conversation_url)
        expect(mentor.locator("[data-chat-input]")).to_be_enabled()
        send_message(mentor, "Bonjour Léa, comment se passent vos premières semaines ?")
        send_message(mentor, "N'hésitez pas à me poser vos questions ici.")
        expect(badge).to_have_text("2 non lus")
        mentee.screenshot(path=str(ARTIFACTS_DIR / "dashboard.png"), full_page=True)

        # reading the conversation marks it read
        with mentee.expect_response(lambda response: response.url.endswith("/read")) as mark:
            mentee.goto(conversation_url)
        assert mark.value.status == 204
        messages = mentee.locator("[data-chat-messages] li.message")
        expect(messages).to_have_count(2)
        expect(messages.nth(0)).to_contain_text("comment se passent vos premières semaines")
        listed = mentee_client.get("/api/mentoring/conversations").json()["conversations"]
        assert listed[0]["unread"] == 0

        # the reply reaches the mentor in real time
        send_message(mentee, "Bonjour ! La gestion de classe en 4e est difficile.")
        expect(mentor.locator("[data-chat-messages] li.message")).to_have_count(3)
        expect(mentor.locator("[data-chat-messages]")).to_contain_text("gestion de classe en 4e")
        mentor.screenshot(path=str(ARTIFACTS_DIR / "conversation.png"), full_page=True)

        # the mentor ends the mentorship; the mentee's open page stops taking messages
        mentor.click("details.end-mentorship summary")
        mentor.click("details.end-mentorship button[type=submit]")
        expect(mentor.locator("p.notice")).to_contain_text("Ce mentorat est terminé")
        expect(mentor.locator("[data-chat-input]")).to_be_disabled()
        send_message(mentee, "Merci pour tout !")
        expect(mentee.locator("[data-chat-status]")).to_contain_text(
            "La discussion est close : elle n'accepte plus de messages."
        )
        expect(mentee.locator("[data-chat-input]")).to_be_disabled()
        mentee.reload()
        expect(mentee.locator("[data-chat-messages] li.message")).to_have_count(3)
        mentee.screenshot(path=str(ARTIFACTS_DIR / "ended.png"), full_page=True)

    mentor_client.close()
    mentee_client.close()
    errors = [line for line in console if line.startswith(("error", "pageerror"))]
    assert errors == []

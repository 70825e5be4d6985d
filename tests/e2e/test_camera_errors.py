"""The host's live page in Debian's Chromium names the camera problem that
getUserMedia reports, so the host can tell whether to grant access, plug in a device
or close another application."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.browser import launch_chromium, record_console
from tests.support.clients import Account, schedule_live, sign_up
from tests.support.processes import ServerProcess

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HOST = Account("claire.dubois@example.org", "cartes-mentales-2026", "Claire Dubois")
PAGE_TIMEOUT_MS = 15_000

# Replaces getUserMedia with one that rejects with the DOMException named by the
# page's `camera-error` query parameter, or removes navigator.mediaDevices as
# browsers do outside a secure context. The server ignores the parameter.
SIMULATE_CAMERA_ERROR_JS = """
(() => {
  const name = new URLSearchParams(location.search).get("camera-error");
  if (name === "no-media-devices") {
    Object.defineProperty(Navigator.prototype, "mediaDevices", { get: () => undefined });
  } else if (name !== null) {
    navigator.mediaDevices.getUserMedia = () =>
      Promise.reject(new DOMException("simulated by the test", name));
  }
})();
"""

PERMISSION = (
    "Votre navigateur bloque l'accès à la caméra ou au micro. "
    "Autorisez-les pour ce site, puis rechargez la page."
)
NO_DEVICE = "Aucune caméra ou aucun micro n'a été trouvé. Branchez-les, puis rechargez la page."
DEVICE_IN_USE = (
    "La caméra ou le micro est déjà utilisé par une autre application. "
    "Fermez-la, puis rechargez la page."
)
OTHER = (
    "Impossible d'accéder à la caméra ou au micro. "
    "Vérifiez qu'ils sont branchés, puis rechargez la page."
)
INSECURE = (
    "Votre navigateur ne donne accès à la caméra que sur une connexion sécurisée : "
    "ouvrez le site en https."
)
# (value of camera-error, expected message)
CASES = [
    ("NotAllowedError", PERMISSION),
    ("SecurityError", PERMISSION),
    ("NotFoundError", NO_DEVICE),
    ("OverconstrainedError", NO_DEVICE),
    ("NotReadableError", DEVICE_IN_USE),
    ("AbortError", OTHER),
    ("no-media-devices", INSECURE),
]


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(data_dir)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def host_client(server: ServerProcess) -> Iterator[httpx.Client]:
    client = sign_up(server.url, HOST)
    try:
        yield client
    finally:
        client.close()


def test_camera_errors_named_by_cause(server: ServerProcess, host_client: httpx.Client) -> None:
    """Guards against the single permission message shown when no camera existed."""
    live_id = schedule_live(host_client, "Les cartes mentales en classe de seconde")
    console: list[str] = []
    with sync_playwright() as playwright, launch_chromium(playwright) as context:
        context.add_cookies(
            [
                {"name": name, "value": value, "url": server.url}
                for name, value in host_client.cookies.items()
            ]
        )
        context.set_default_timeout(PAGE_TIMEOUT_MS)
        context.add_init_script(SIMULATE_CAMERA_ERROR_JS)
        page = context.pages[0] if context.pages else context.new_page()
        record_console(page, console)

        for error_name, message in CASES:
            page.goto(f"{server.url}/lives/{live_id}?camera-error={error_name}")
            expect(page.locator("[data-stage-error]"), error_name).to_have_text(message)
            expect(page.get_by_role("button", name="Démarrer le live"), error_name).to_be_disabled()

    errors = [line for line in console if line.startswith(("error", "pageerror"))]
    assert errors == []

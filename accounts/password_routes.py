"""Password pages: asking for a reset link, choosing a new password through it, and
changing the password from the profile page."""

from __future__ import annotations

import logging
import math

from starlette.requests import HTTPConnection, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from accounts import service
from accounts.password_reset import (
    RESET_LINK_LIFETIME_SECS,
    ResetLinkSender,
    link_is_valid,
    reset_password,
)
from accounts.service import AccountError, normalize_email
from accounts.throttle import (
    LOGIN_PER_ACCOUNT,
    RESET_PER_ACCOUNT,
    RESET_PER_ADDRESS,
    RateLimiter,
    minutes_text,
)
from core.database import utc_now
from core.routing import Access, Route
from core.web import (
    client_address,
    database_of,
    log_in,
    render,
    require_user,
    settings_of,
)

logger = logging.getLogger(__name__)

# The token is in the path of the reset page: keep it out of Referer headers and caches.
TOKEN_PAGE_HEADERS = {"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
PASSWORDS_DIFFER = "Les deux mots de passe saisis sont différents."


def reset_links_of(connection: HTTPConnection) -> ResetLinkSender:
    sender: ResetLinkSender = connection.app.state.reset_links
    return sender


def _site_url(request: Request) -> str:
    return (settings_of(request).site_url or str(request.base_url)).rstrip("/")


async def forgot_password(request: Request) -> Response:
    """Show the form, or send a link to the address given when an account has it.

    The page that follows is the same whether or not an account has the address.
    """
    if request.method == "GET":
        return await render(request, "accounts/forgot.html", {"email": ""})

    form = await request.form()
    email = str(form.get("email", "")).strip()
    if not email:
        context = {"email": "", "error": "Indiquez votre adresse électronique."}
        return await render(request, "accounts/forgot.html", context, 400)

    address = client_address(request)
    limiter = RateLimiter(database_of(request), settings_of(request).secret_key)
    limits = [(RESET_PER_ACCOUNT, normalize_email(email)), (RESET_PER_ADDRESS, address)]
    wait_secs = await limiter.retry_after(limits)
    if wait_secs is not None:
        logger.warning("password reset rate limited client=%s", address)
        context = {
            "email": email,
            "error": "Trop de demandes de nouveau mot de passe. "
            f"Réessayez dans {minutes_text(wait_secs)}.",
        }
        response = await render(request, "accounts/forgot.html", context, 429)
        response.headers["Retry-After"] = str(math.ceil(wait_secs))
        return response

    await limiter.record(limits)
    reset_links_of(request).request_link(email, _site_url(request))
    lifetime_minutes = RESET_LINK_LIFETIME_SECS // 60
    return await render(
        request, "accounts/forgot_sent.html", {"email": email, "lifetime_minutes": lifetime_minutes}
    )


async def _reset_form(
    request: Request, token: str, *, valid: bool, error: str | None = None, status_code: int
) -> Response:
    """Render the new password form, or the sentence that explains an invalid link."""
    context = {"token": token, "valid": valid, "error": error}
    response = await render(request, "accounts/reset.html", context, status_code)
    response.headers.update(TOKEN_PAGE_HEADERS)
    return response


async def reset_page(request: Request) -> Response:
    """Show the new password form of a valid link, and set the password on submit."""
    token: str = request.path_params["token"]
    if request.method == "GET":
        async with database_of(request).session() as session:
            valid = await link_is_valid(session, token, utc_now())
        if not valid:
            logger.info("password reset page: unknown, used or expired link")
        return await _reset_form(request, token, valid=valid, status_code=200 if valid else 404)

    form = await request.form()
    password = str(form.get("password", ""))
    if password != str(form.get("confirmation", "")):
        return await _reset_form(
            request, token, valid=True, error=PASSWORDS_DIFFER, status_code=400
        )
    try:
        await reset_password(database_of(request), token, password, utc_now())
    except AccountError as error:
        if error.code == "reset_link_invalid":
            return await _reset_form(request, token, valid=False, status_code=404)
        return await _reset_form(request, token, valid=True, error=error.message, status_code=400)
    return RedirectResponse("/login?mot-de-passe=change", status_code=303)


async def _profile_error(request: Request, message: str, status_code: int) -> Response:
    return await render(request, "accounts/profile.html", {"password_error": message}, status_code)


async def change_password(request: Request) -> Response:
    """Change the password from the profile page. This browser stays logged in, and
    every other session of the account ends."""
    user = await require_user(request)
    form = await request.form()
    new = str(form.get("new_password", ""))
    if new != str(form.get("confirmation", "")):
        return await _profile_error(request, PASSWORDS_DIFFER, 400)

    # Guessing the current password from a session left open is limited like a log-in.
    limiter = RateLimiter(database_of(request), settings_of(request).secret_key)
    limits = [(LOGIN_PER_ACCOUNT, user.email)]
    wait_secs = await limiter.retry_after(limits)
    if wait_secs is not None:
        message = f"Trop de tentatives. Réessayez dans {minutes_text(wait_secs)}."
        return await _profile_error(request, message, 429)

    try:
        async with database_of(request).session() as session:
            db_user = await service.get_user(session, user.id)
            if db_user is None:
                return RedirectResponse("/login", status_code=303)
            await service.change_password(
                session, db_user, str(form.get("current_password", "")), new
            )
    except AccountError as error:
        if error.code == "password_wrong":
            await limiter.record(limits)
        return await _profile_error(request, error.message, 400)
    log_in(request, db_user)
    return await render(request, "accounts/profile.html", {"password_changed": True})


routes: list[BaseRoute] = [
    Route(
        "/password/forgot",
        forgot_password,
        access=Access.PUBLIC,
        methods=["GET", "POST"],
        name="forgot_password",
    ),
    Route(
        "/password/reset/{token}",
        reset_page,
        access=Access.TOKEN,
        methods=["GET", "POST"],
        name="reset_password",
    ),
    Route("/profile/password", change_password, access=Access.MEMBER, methods=["POST"]),
]

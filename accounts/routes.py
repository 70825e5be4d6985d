"""Sign-up, log-in, log-out and profile pages."""

from __future__ import annotations

import logging
import math
import unicodedata
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from accounts import service
from accounts.service import AccountError, normalize_email
from accounts.throttle import LOGIN_PER_ACCOUNT, LOGIN_PER_ADDRESS, RateLimiter, minutes_text
from core.routing import Access, Route
from core.web import (
    client_address,
    close_sockets_of,
    current_user,
    database_of,
    log_in,
    log_out,
    render,
    require_user,
    settings_of,
)

logger = logging.getLogger(__name__)


def _safe_next(raw: object) -> str:
    """Keep a post-log-in redirect on this site: only a local absolute path.

    A backslash or a control character is refused, because browsers drop tabs and line
    breaks from a URL and read a backslash as a slash: "/", a backslash, then a host
    name leads to that host.
    """
    if not isinstance(raw, str):
        return "/"
    if "\\" in raw or any(unicodedata.category(char) == "Cc" for char in raw):
        return "/"
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or not raw.startswith("/") or raw.startswith("//"):
        return "/"
    return raw


async def signup(request: Request) -> Response:
    if request.method == "GET":
        return await render(
            request,
            "accounts/signup.html",
            {"form": {}, "display_name_max_chars": service.DISPLAY_NAME_MAX_CHARS},
        )

    form = await request.form()
    values = {key: str(form.get(key, "")) for key in ("email", "display_name", "time_zone")}
    try:
        async with database_of(request).session() as session:
            user = await service.create_user(
                session,
                email=values["email"],
                display_name=values["display_name"],
                password=str(form.get("password", "")),
                time_zone=values["time_zone"],
            )
    except AccountError as error:
        context = {
            "form": values,
            "error": error.message,
            "display_name_max_chars": service.DISPLAY_NAME_MAX_CHARS,
        }
        return await render(request, "accounts/signup.html", context, 400)
    log_in(request, user)
    return RedirectResponse("/", status_code=303)


def _missing_login_fields(email: str, password: str) -> str | None:
    """Return the French error naming the empty fields of the log-in form, or None."""
    if not email.strip() and not password:
        return "Indiquez votre adresse électronique et votre mot de passe."
    if not email.strip():
        return "Indiquez votre adresse électronique."
    if not password:
        return "Indiquez votre mot de passe."
    return None


async def login(request: Request) -> Response:
    next_url = _safe_next(request.query_params.get("next"))
    if request.method == "GET":
        context = {
            "email": "",
            "next": next_url,
            "password_changed": request.query_params.get("mot-de-passe") == "change",
        }
        return await render(request, "accounts/login.html", context)

    form = await request.form()
    email = str(form.get("email", ""))
    password = str(form.get("password", ""))
    next_url = _safe_next(form.get("next"))
    missing = _missing_login_fields(email, password)
    if missing is not None:
        # not a guess at anything, so it does not count towards the limits
        logger.info("log-in rejected, empty field client=%s", client_address(request))
        return await render(
            request,
            "accounts/login.html",
            {"email": email, "next": next_url, "error": missing},
            400,
        )

    address = client_address(request)
    limiter = RateLimiter(database_of(request), settings_of(request).secret_key)
    limits = [(LOGIN_PER_ACCOUNT, normalize_email(email)), (LOGIN_PER_ADDRESS, address)]

    # checked before the password, so that a correct guess is rejected like a wrong one
    wait_secs = await limiter.retry_after(limits)
    if wait_secs is not None:
        logger.warning("log-in rate limited client=%s retry_after=%.0f s", address, wait_secs)
        response = await render(
            request,
            "accounts/login.html",
            {
                "email": email,
                "next": next_url,
                "error": "Trop de tentatives de connexion. "
                f"Réessayez dans {minutes_text(wait_secs)}.",
            },
            429,
        )
        response.headers["Retry-After"] = str(math.ceil(wait_secs))
        return response

    async with database_of(request).session() as session:
        user = await service.authenticate(session, email, password)
    if user is None:
        await limiter.record(limits)
        logger.warning("log-in failed client=%s", address)
        return await render(
            request,
            "accounts/login.html",
            {
                "email": email,
                "next": next_url,
                "error": "Adresse électronique ou mot de passe incorrect.",
            },
            400,
        )
    await limiter.clear(LOGIN_PER_ACCOUNT, normalize_email(email))
    log_in(request, user)
    logger.info("log-in user=%s", user.id)
    return RedirectResponse(next_url, status_code=303)


async def logout(request: Request) -> Response:
    """Log out here and in every other browser of the account, so that a copied
    session cookie stops working too."""
    user = await current_user(request)
    if user is not None:
        async with database_of(request).session() as session:
            await service.end_sessions(session, user.id)
        await close_sockets_of(request, user.id)
        logger.info("log-out user=%s", user.id)
    log_out(request)
    return RedirectResponse("/", status_code=303)


async def profile(request: Request) -> Response:
    user = await require_user(request)
    if request.method == "GET":
        return await render(request, "accounts/profile.html")

    form = await request.form()
    try:
        async with database_of(request).session() as session:
            db_user = await service.get_user(session, user.id)
            if db_user is None:
                log_out(request)
                return RedirectResponse("/login", status_code=303)
            await service.update_time_zone(session, db_user, str(form.get("time_zone", "")))
            request.state.user = db_user
    except AccountError as error:
        return await render(request, "accounts/profile.html", {"error": error.message}, 400)
    return await render(request, "accounts/profile.html", {"saved": True})


routes = [
    Route("/signup", signup, access=Access.PUBLIC, methods=["GET", "POST"], name="signup"),
    Route("/login", login, access=Access.PUBLIC, methods=["GET", "POST"], name="login"),
    # Logging out a visitor who is not logged in changes nothing.
    Route("/logout", logout, access=Access.PUBLIC, methods=["POST"], name="logout"),
    Route("/profile", profile, access=Access.MEMBER, methods=["GET", "POST"], name="profile"),
]

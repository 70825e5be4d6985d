"""Sign-up, log-in, log-out and profile pages."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from accounts import service
from accounts.service import AccountError
from core.routing import Access, Route
from core.web import check_csrf, database_of, log_in, log_out, render, require_user

logger = logging.getLogger(__name__)


def _safe_next(raw: object) -> str:
    """Keep a post-log-in redirect on this site: only a local absolute path."""
    if not isinstance(raw, str):
        return "/"
    parts = urlsplit(raw)
    if parts.scheme or parts.netloc or not raw.startswith("/") or raw.startswith("//"):
        return "/"
    return raw


async def signup(request: Request) -> Response:
    if request.method == "GET":
        return await render(request, "accounts/signup.html", {"form": {}})

    form = await request.form()
    check_csrf(request, form)
    values = {key: str(form.get(key, "")) for key in ("email", "display_name", "time_zone")}
    try:
        async with database_of(request).session() as session:
            user = await service.create_user(
                session,
                email=values["email"],
                display_name=values["display_name"],
                password=str(form.get("password", "")),
                time_zone=values["time_zone"] or "Europe/Paris",
            )
    except AccountError as error:
        return await render(
            request, "accounts/signup.html", {"form": values, "error": error.message}, 400
        )
    log_in(request, user)
    return RedirectResponse("/", status_code=303)


async def login(request: Request) -> Response:
    next_url = _safe_next(request.query_params.get("next"))
    if request.method == "GET":
        return await render(request, "accounts/login.html", {"email": "", "next": next_url})

    form = await request.form()
    check_csrf(request, form)
    email = str(form.get("email", ""))
    next_url = _safe_next(form.get("next"))
    async with database_of(request).session() as session:
        user = await service.authenticate(session, email, str(form.get("password", "")))
    if user is None:
        logger.warning("log-in failed client=%s", request.client.host if request.client else "?")
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
    log_in(request, user)
    logger.info("log-in user=%s", user.id)
    return RedirectResponse(next_url, status_code=303)


async def logout(request: Request) -> Response:
    form = await request.form()
    check_csrf(request, form)
    log_out(request)
    return RedirectResponse("/", status_code=303)


async def profile(request: Request) -> Response:
    user = await require_user(request)
    if request.method == "GET":
        return await render(request, "accounts/profile.html")

    form = await request.form()
    check_csrf(request, form)
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

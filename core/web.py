"""Request helpers shared by every package's routes: app state, the logged-in user,
CSRF tokens and French HTML rendering."""

from __future__ import annotations

import hmac
import secrets
from pathlib import Path
from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from accounts.models import User
from core.database import Database
from core.settings import Settings
from core.timezones import TIME_ZONES, format_local

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
SESSION_USER_KEY = "user_id"
# The account's `session_version` when the session started (see `current_user`).
SESSION_VERSION_KEY = "session_version"
SESSION_CSRF_KEY = "csrf"
CSRF_FIELD = "csrf_token"


# Largest value of the 32-bit INTEGER primary keys on PostgreSQL.
ID_MAX = 2**31 - 1


class IdConvertor(Convertor[int]):
    """A database id in a path, `{live_id:id}`: 1 to 10 decimal digits, without a
    leading zero, so that each id has one address (`/lives/01` is not `/lives/1`).

    Starlette's `int` matches any number of digits, and int() raises ValueError above
    4,300 of them, which became a 500. Here a longer number, or one that starts with
    0, matches no route (404), as the sockets reject such an id.
    A ten-digit number above ID_MAX converts to 0, which no row has, so the route's
    lookup finds nothing instead of overflowing PostgreSQL's 32-bit integer column.
    """

    regex = "[1-9][0-9]{0,9}"

    def convert(self, value: str) -> int:
        number = int(value)
        return number if number <= ID_MAX else 0

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", IdConvertor())


def build_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=WEB_DIR / "templates")
    templates.env.filters["local_time"] = format_local
    templates.env.globals["TIME_ZONES"] = TIME_ZONES
    return templates


def settings_of(connection: HTTPConnection) -> Settings:
    settings: Settings = connection.app.state.settings
    return settings


def database_of(connection: HTTPConnection) -> Database:
    database: Database = connection.app.state.database
    return database


def templates_of(connection: HTTPConnection) -> Jinja2Templates:
    templates: Jinja2Templates = connection.app.state.templates
    return templates


class LoginRequired(HTTPException):
    """Raised by `require_user`; server.py turns it into a redirect to the log-in page
    for pages, and a 401 JSON body for the API."""

    def __init__(self) -> None:
        super().__init__(status_code=401, detail="Connectez-vous pour continuer.")


async def current_user(connection: HTTPConnection) -> User | None:
    """Load the logged-in user from the signed session cookie, once per connection.

    A session counts only while the account's `session_version` is the one stored at
    log-in: logging out and changing the password raise it, which ends every earlier
    session of the account, copies of its cookie included. A session from before
    versions existed carries none and counts as version 0.
    """
    if "user" in connection.scope.get("state", {}):
        cached: User | None = connection.state.user
        return cached
    user_id = connection.session.get(SESSION_USER_KEY)
    user: User | None = None
    if isinstance(user_id, int):
        async with database_of(connection).session() as session:
            user = await session.get(User, user_id)
        version = connection.session.get(SESSION_VERSION_KEY, 0)
        if user is not None and version != user.session_version:
            user = None
    connection.state.user = user
    return user


async def require_user(connection: HTTPConnection) -> User:
    user = await current_user(connection)
    if user is None:
        raise LoginRequired
    return user


def client_address(connection: HTTPConnection) -> str:
    """Return the client's IP address; behind a proxy on this machine, uvicorn takes it
    from X-Forwarded-For (its --forwarded-allow-ips)."""
    return connection.client.host if connection.client else "unknown"


def log_in(request: Request, user: User) -> None:
    """Start a new session for `user`; the cookie changes, so a session id
    planted before log-in is worthless."""
    request.session.clear()
    request.session[SESSION_USER_KEY] = user.id
    request.session[SESSION_VERSION_KEY] = user.session_version
    request.session[SESSION_CSRF_KEY] = secrets.token_urlsafe(32)
    request.state.user = user


async def close_sockets_of(connection: HTTPConnection, user_id: int) -> None:
    """Close the person's open chat and signaling sockets in every process, after their
    sessions ended (log-out, password change). server.py sets the hook at start."""
    hook = getattr(connection.app.state, "on_sessions_ended", None)
    if hook is not None:
        await hook(user_id)


def log_out(request: Request) -> None:
    """Forget the session in this browser; `accounts.service.end_sessions` ends it
    everywhere else."""
    request.session.clear()
    request.state.user = None


def csrf_token(connection: HTTPConnection) -> str:
    token = connection.session.get(SESSION_CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        connection.session[SESSION_CSRF_KEY] = token
    return token


def check_csrf(request: Request, form: FormData) -> None:
    """Reject a request whose CSRF token, from the form field or the X-CSRF-Token
    header, does not match the session's."""
    sent = form.get(CSRF_FIELD)
    if sent is None:
        sent = request.headers.get("x-csrf-token")
    expected = request.session.get(SESSION_CSRF_KEY)
    # Compared as bytes, because compare_digest raises TypeError on a str that is
    # not ASCII, and the token sent is whatever the client chose.
    if (
        not isinstance(sent, str)
        or not isinstance(expected, str)
        or not hmac.compare_digest(
            sent.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
        )
    ):
        raise HTTPException(
            status_code=403,
            detail="Le formulaire a expiré. Rechargez la page et recommencez.",
        )


async def render(
    request: Request, template: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    """Render a French page with the logged-in user and a CSRF token in its context."""
    user = await current_user(request)
    full_context: dict[str, Any] = {
        "user": user,
        "csrf_token": csrf_token(request),
        "time_zone": user.time_zone if user else None,
    }
    full_context.update(context or {})
    return templates_of(request).TemplateResponse(
        request, template, full_context, status_code=status_code
    )

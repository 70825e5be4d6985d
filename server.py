"""Veillée's ASGI application, `create_app(settings)`, and the command line that serves it."""

from __future__ import annotations

import argparse
import contextlib
import http
import logging
import math
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles

import accounts.password_routes
import accounts.routes
import chat.routes
import live.demo
import live.routes
import mentoring.demo
import mentoring.mail
import mentoring.routes
import recordings.routes
import recordings.service
import signaling.hls_routes
import signaling.revocations
import signaling.router
import signaling.routes
from accounts.password_reset import ResetLinkSender
from chat.broker import create_broker
from chat.revocations import Revocation, RevocationBus, RevocationReason, chat_listener
from chat.service import ChatService
from core.bodies import BodySizeLimitMiddleware
from core.database import UNAVAILABLE_ERROR_TYPES, Database, is_unavailable
from core.database_health import check_database
from core.headers import SecurityHeadersMiddleware
from core.http_protocol import BoundedHeadHttpProtocol
from core.mail import Mailer
from core.routing import Access, Mount, Route
from core.sessions import SessionCookieMiddleware
from core.settings import (
    DEFAULT_DATA_DIR,
    DEFAULT_HOST,
    DEFAULT_HOST_RECONNECT_GRACE_SECS,
    DEFAULT_MAX_WEBRTC_VIEWERS,
    DEFAULT_MENTORING_ANSWER_TIMEOUT_SECS,
    DEFAULT_MENTORING_SWEEP_INTERVAL_SECS,
    DEFAULT_PORT,
    DEFAULT_SIGNALING_SOCKETS_PER_PERSON,
    MediaPath,
    Settings,
    default_node_name,
    load_secret_key,
    parse_ice_servers,
)
from core.socket_counts import SocketCounts
from core.web import (
    WEB_DIR,
    LoginRequired,
    build_templates,
    database_of,
    render,
    templates_of,
)
from core.websocket import FrameWebSocketProtocol
from live.channel_policy import LiveChannelPolicy, live_id_of_channel
from mentoring.channel_policy import ConversationChannelPolicy
from mentoring.mail import EmailOutbox
from mentoring.service import MentoringService
from mentoring.sweeper import TimeoutSweeper
from migrations.runner import upgrade_to_head
from signaling.protocol import CloseCode as SignalingCloseCode

logger = logging.getLogger("veillee.server")

# The French sentence shown for a request that failed because the database cannot be
# reached. The 503 response's Retry-After header is UNAVAILABLE_RETRY_AFTER_SECS.
UNAVAILABLE_MESSAGE = "Le service est momentanément indisponible. Réessayez dans quelques instants."
UNAVAILABLE_RETRY_AFTER_SECS = 5

# Maps each reason to the close code of the signaling sockets it closes.
SIGNALING_CLOSE_CODES = {
    RevocationReason.LOGGED_OUT: SignalingCloseCode.NOT_LOGGED_IN,
    RevocationReason.REMOVED: SignalingCloseCode.REMOVED,
}

# A session cookie lasts two weeks: long enough not to log a teacher out between
# two evening lives, short enough to expire on a forgotten shared computer.
SESSION_MAX_AGE_SECS = 14 * 24 * 3600


async def health(request: Request) -> Response:
    """Report whether the database, the chat broker and the media-node leases work;
    503 when one does not."""
    checks: dict[str, str] = {"database": await check_database(database_of(request))}
    # wiring:health
    chat_service: ChatService = request.app.state.chat
    checks["broker"] = "ok" if await chat_service.is_broker_healthy() else "error"
    router: signaling.router.Router = request.app.state.signaling
    checks["media_nodes"] = "ok" if await router.is_healthy() else "error"
    healthy = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if healthy else "degraded", **checks},
        status_code=200 if healthy else 503,
    )


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get(
        "accept", ""
    )


async def handle_http_error(request: Request, error: Exception) -> Response:
    if not isinstance(error, HTTPException):
        raise error
    if isinstance(error, LoginRequired) and not _wants_json(request):
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    messages = {
        400: "La requête est mal formée. Rechargez la page et recommencez.",
        401: "Connectez-vous pour continuer.",
        403: "Vous n'avez pas accès à cette page.",
        404: "Cette page n'existe pas.",
        405: "Cette action n'est pas possible ici.",
        413: "La requête est trop volumineuse.",
    }
    # Routes raise HTTPException with a French sentence as detail. Starlette's own
    # details are English: the status phrase ("Not Found"), or the multipart parser's
    # message for a malformed form ("Missing boundary in multipart.").
    message = messages.get(error.status_code, "Une erreur est survenue.")
    from_starlette = error.detail == http.HTTPStatus(error.status_code).phrase or isinstance(
        error.__context__, MultiPartException
    )
    if error.detail and not from_starlette:
        message = error.detail
    if _wants_json(request):
        return JSONResponse(
            {"error": {"code": f"http_{error.status_code}", "message": message}},
            status_code=error.status_code,
        )
    return await render(request, "error.html", {"message": message}, error.status_code)


async def handle_database_error(request: Request, error: Exception) -> Response:
    """Return a French 503 response when `error` means the database cannot be reached;
    raise anything else again, for handle_server_error.

    Logged as one line rather than a traceback, since an outage fails every request.
    """
    if request.scope["type"] != "http" or not is_unavailable(error):
        raise error
    logger.warning(
        "%s %s: database unavailable, responded 503: %s: %s",
        request.method,
        request.url.path,
        type(error).__name__,
        error,
    )
    headers = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_SECS)}
    return _error_response(request, "http_503", UNAVAILABLE_MESSAGE, 503, headers)


def _error_response(
    request: Request,
    code: str,
    message: str,
    status_code: int,
    headers: dict[str, str] | None = None,
) -> Response:
    """Return the JSON error body or the French error page, rendered without the
    logged-in user, because reading it needs the database, which may be what failed."""
    if _wants_json(request):
        return JSONResponse(
            {"error": {"code": code, "message": message}}, status_code=status_code, headers=headers
        )
    return templates_of(request).TemplateResponse(
        request,
        "error.html",
        {"message": message, "user": None},
        status_code=status_code,
        headers=headers,
    )


async def handle_server_error(request: Request, error: Exception) -> Response:
    """Return a French 500 response for an unexpected exception. Starlette's
    ServerErrorMiddleware then raises it again, and uvicorn logs it with its traceback.
    """
    message = "Une erreur inattendue est survenue. Réessayez dans un instant."
    return _error_response(request, "http_500", message, 500)


async def start_revocations(
    app: Starlette, settings: Settings, chat_service: ChatService
) -> RevocationBus:
    """Start the bus that closes a person's sockets in every process, with its
    listeners: the chat sockets, and the signaling sockets of a live."""
    revocations = RevocationBus(create_broker(settings.redis_url))
    revocations.add_listener(chat_listener(chat_service.connections))

    def close_signaling_sockets(revocation: Revocation) -> None:
        live_id = None
        if revocation.channel is not None:
            live_id = live_id_of_channel(revocation.channel)
            if live_id is None:
                return
        code = SIGNALING_CLOSE_CODES[revocation.reason]
        signaling.revocations.close_person(
            app.state.signaling.audience, revocation.user_id, live_id, code
        )

    revocations.add_listener(close_signaling_sockets)
    await revocations.start()

    async def end_sockets(user_id: int) -> None:
        await revocations.revoke(Revocation(user_id, RevocationReason.LOGGED_OUT))

    app.state.on_sessions_ended = end_sockets
    return revocations


def create_app(settings: Settings) -> Starlette:
    """Build the application for `settings`; nothing starts until the ASGI lifespan."""
    database = Database(settings.resolved_database_url)
    templates = build_templates()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.recordings_dir.mkdir(parents=True, exist_ok=True)
        await upgrade_to_head(database, settings.data_dir)
        # wiring:startup
        await recordings.service.recover_interrupted(database, settings)
        app.state.signaling = signaling.router.create_router(settings, database)
        app.state.media = app.state.signaling.media
        await app.state.signaling.start()
        chat_service = ChatService(database, create_broker(settings.redis_url))
        chat_service.policies.register("live", LiveChannelPolicy())
        chat_service.policies.register("conversation", ConversationChannelPolicy())
        await chat_service.start()
        app.state.chat = chat_service
        app.state.revocations = await start_revocations(app, settings, chat_service)
        outbox = EmailOutbox(database, Mailer(settings.smtp))
        app.state.reset_links = ResetLinkSender(database, Mailer(settings.smtp))
        app.state.mentoring = MentoringService(
            database,
            outbox,
            answer_timeout_secs=settings.mentoring_answer_timeout_secs,
            site_url=settings.site_url,
            deliver_in_background=True,
        )
        sweeper = TimeoutSweeper(
            app.state.mentoring, outbox, settings.mentoring_sweep_interval_secs
        )
        sweeper.start()
        if settings.demo:
            demo = await live.demo.ensure_demo_data(database, settings.data_dir)
            await mentoring.demo.ensure_mentoring_demo(
                app.state.mentoring, demo.host.id, demo.viewer.id
            )
            live.demo.print_demo_banner(demo, settings)
        logger.info(
            "started node=%s database=%s broker=%s recordings=%s ice_servers=%d",
            settings.node_name,
            "sqlite" if database.is_sqlite else "postgresql",
            "redis" if settings.redis_url else "in-process",
            settings.recordings_dir,
            len(settings.ice_servers),
        )
        try:
            yield
        finally:
            # wiring:shutdown
            await sweeper.stop()
            await app.state.mentoring.wait_for_deliveries()
            await app.state.reset_links.wait_for_deliveries()
            await app.state.media.close()
            await app.state.signaling.close()
            await app.state.revocations.stop()
            await chat_service.stop()
            await recordings.service.wait_for_finishing()
            await database.dispose()
            logger.info("stopped node=%s", settings.node_name)

    routes: list[BaseRoute] = [
        Route("/health", health, access=Access.PUBLIC, name="health"),
        Mount(
            "/static",
            app=StaticFiles(directory=WEB_DIR / "static"),
            access=Access.PUBLIC,
            name="static",
        ),
        *accounts.routes.routes,
        *accounts.password_routes.routes,
        *live.routes.routes,
        # wiring:routes
        *mentoring.routes.routes,
        *recordings.routes.routes,
        *signaling.routes.routes,
        *signaling.hls_routes.routes,
        *chat.routes.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(SecurityHeadersMiddleware, site_url=settings.site_url),
            Middleware(BodySizeLimitMiddleware),
            Middleware(
                SessionCookieMiddleware,
                secret_key=settings.secret_key,
                session_cookie="veillee_session",
                max_age=SESSION_MAX_AGE_SECS,
                same_site="lax",
                always_secure=settings.https_only,
            ),
        ],
        exception_handlers={
            HTTPException: handle_http_error,
            # Starlette's ExceptionMiddleware runs these, which pass everything that
            # is not an outage on to handle_server_error.
            **dict.fromkeys(UNAVAILABLE_ERROR_TYPES, handle_database_error),
            Exception: handle_server_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database = database
    app.state.templates = templates
    app.state.signaling_sockets = SocketCounts(settings.signaling_sockets_per_person)
    return app


class SecretPathFilter(logging.Filter):
    """Mask the tokens in uvicorn's access log: those of iCalendar feed paths, of
    password reset links and of HLS links, each the only credential of what it opens."""

    _patterns = (
        (re.compile(r"/calendar/[^/\s.\"]+\.ics"), "/calendar/***.ics"),
        (re.compile(r"/password/reset/[^/\s?\"]+"), "/password/reset/***"),
        (re.compile(r"(/hls/\d+/\d+/)[^/\s\"]+/"), r"\1***/"),
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._mask(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True

    def _mask(self, text: str) -> str:
        for pattern, replacement in self._patterns:
            text = pattern.sub(replacement, text)
        return text


def positive_seconds(raw: str) -> float:
    """Parse a duration in seconds for argparse; reject zero, negative and non-finite values."""
    try:
        seconds = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number of seconds: {raw!r}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {raw!r}")
    return seconds


def non_negative_count(raw: str) -> int:
    """Parse a count for argparse; reject negative and non-integer values."""
    try:
        count = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count: {raw!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {raw!r}")
    return count


def positive_count(raw: str) -> int:
    """Parse a count of at least 1 for argparse."""
    count = non_negative_count(raw)
    if count == 0:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {raw!r}")
    return count


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="server.py",
        description="Serve Veillée: evening lives, chat, recordings and mentoring.",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port (default: %(default)s)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("DATA_DIR", DEFAULT_DATA_DIR)),
        help="folder for the SQLite file, the recordings and the secret key (default: %(default)s)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="SQLAlchemy async URL, e.g. postgresql+asyncpg://... (default: SQLite in --data-dir)",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL"),
        help="Redis URL for chat fan-out between processes (default: in-process broker)",
    )
    parser.add_argument(
        "--ice-servers",
        default=os.environ.get("ICE_SERVERS"),
        help='JSON list of RTCIceServer objects, e.g. [{"urls": "turn:..."}] (default: none)',
    )
    parser.add_argument(
        "--site-url",
        default=os.environ.get("SITE_URL"),
        help="public origin such as https://veillee.example.org (default: the request's host)",
    )
    parser.add_argument(
        "--https",
        action="store_true",
        default=os.environ.get("HTTPS", "") == "1",
        help="the site is served over HTTPS by a proxy in front of this process: mark the "
        "session cookie Secure on every response; HTTPS=1 sets it too (default: Secure only "
        "on requests that arrive over HTTPS, or when --site-url starts with https://)",
    )
    parser.add_argument(
        "--host-reconnect-grace",
        type=positive_seconds,
        # a string default goes through `type` too, so a bad environment value is
        # rejected like a bad option
        default=os.environ.get("HOST_RECONNECT_GRACE_SECS", str(DEFAULT_HOST_RECONNECT_GRACE_SECS)),
        metavar="SECONDS",
        help="seconds a live stays on after its host's connection is lost, waiting for the "
        "host to publish again, before it ends; HOST_RECONNECT_GRACE_SECS sets the default "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--media-path",
        type=MediaPath,
        choices=list(MediaPath),
        default=os.environ.get("MEDIA_PATH", MediaPath.ENCODE_ONCE.value),
        help="how lives reach viewers: encode_once (one encoder per live and quality) or "
        "relay (one encoder per viewer, for comparison); MEDIA_PATH sets the default "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--max-webrtc-viewers",
        type=non_negative_count,
        default=os.environ.get("MAX_WEBRTC_VIEWERS", str(DEFAULT_MAX_WEBRTC_VIEWERS)),
        metavar="COUNT",
        help="WebRTC viewers of all lives on this process; the viewers beyond it watch the "
        "HLS stream, a few seconds behind; MAX_WEBRTC_VIEWERS sets the default "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--signaling-sockets-per-person",
        type=positive_count,
        default=os.environ.get(
            "SIGNALING_SOCKETS_PER_PERSON", str(DEFAULT_SIGNALING_SOCKETS_PER_PERSON)
        ),
        metavar="COUNT",
        help="signaling sockets one person may open on one live in this process; one more "
        "is closed with 4429; SIGNALING_SOCKETS_PER_PERSON sets the default "
        "(default: %(default)s)",
    )
    mentoring.mail.add_smtp_arguments(parser)
    parser.add_argument(
        "--mentoring-answer-timeout",
        type=float,
        default=float(
            os.environ.get("MENTORING_ANSWER_TIMEOUT_SECS") or DEFAULT_MENTORING_ANSWER_TIMEOUT_SECS
        ),
        help="seconds a mentor has to answer a request before it passes to the next mentor "
        "(default: %(default)s, 72 hours)",
    )
    parser.add_argument(
        "--mentoring-sweep-interval",
        type=float,
        default=float(
            os.environ.get("MENTORING_SWEEP_INTERVAL_SECS") or DEFAULT_MENTORING_SWEEP_INTERVAL_SECS
        ),
        help="seconds between two looks for timed-out requests and unsent e-mails "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="create a demo host, viewer and a live this evening, and print their log-in details",
    )
    parser.add_argument(
        "--log-level", default=os.environ.get("LOG_LEVEL", "INFO"), help="default: %(default)s"
    )
    return parser.parse_args(argv)


def settings_from_arguments(arguments: argparse.Namespace) -> Settings:
    data_dir: Path = arguments.data_dir
    return Settings(
        host=arguments.host,
        port=arguments.port,
        data_dir=data_dir,
        database_url=arguments.database_url,
        redis_url=arguments.redis_url,
        secret_key=load_secret_key(data_dir),
        ice_servers=parse_ice_servers(arguments.ice_servers),
        site_url=arguments.site_url,
        https=arguments.https,
        host_reconnect_grace_secs=arguments.host_reconnect_grace,
        media_path=arguments.media_path,
        max_webrtc_viewers=arguments.max_webrtc_viewers,
        signaling_sockets_per_person=arguments.signaling_sockets_per_person,
        demo=arguments.demo,
        smtp=mentoring.mail.smtp_settings_from(arguments),
        mentoring_answer_timeout_secs=arguments.mentoring_answer_timeout,
        mentoring_sweep_interval_secs=arguments.mentoring_sweep_interval,
        node_name=os.environ.get("NODE_NAME") or default_node_name(arguments.host, arguments.port),
    )


def uvicorn_config(app: Starlette, host: str, port: int, log_level: str) -> uvicorn.Config:
    """Return the uvicorn settings the service runs with; the socket tests use them too."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        ws_max_size=64 * 1024,
        # Responds 431 to a request line and headers above 16 KiB (core.http_protocol).
        http=BoundedHeadHttpProtocol,
        # Offers the chat a writer of frames encoded once per process (core.websocket).
        ws=FrameWebSocketProtocol,
        # NOTE: permessage-deflate stays off although browsers offer it. A chat event
        # is a few hundred bytes, so compression saves little bandwidth. With it, each
        # connection keeps its own compressor (about 40 KB of zlib state) and compresses
        # every event again, instead of sending the frame encoded once. The measured
        # cost is in docs/benchmarks.md.
        ws_per_message_deflate=False,
        # uvloop when installed (uvicorn[standard] brings it): its transports write to
        # sockets in C, which the chat fan-out does once per connection and event.
        loop="auto",
        lifespan="on",
    )


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    logging.basicConfig(
        level=arguments.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = settings_from_arguments(arguments)
    except ValueError as error:
        print(f"server.py: {error}", file=sys.stderr)
        return 2
    app = create_app(settings)
    logging.getLogger("uvicorn.access").addFilter(SecretPathFilter())
    config = uvicorn_config(app, settings.host, settings.port, arguments.log_level.lower())
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

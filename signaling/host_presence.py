"""Whether the host's media reaches a live that is on air: the `host` frame sent when
it stops and starts again, the `host` field of `welcome`, and the record of it in the
database (`Live.host_away_since`).

The media process writes the record before it broadcasts the frame. A socket joins the
live's audience before it reads the record for its welcome, so a socket that connects
during the change either reads the new value or receives the frame after its welcome.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import update

from core.database import UNAVAILABLE_ERROR_TYPES, Database, utc_now
from live.models import Live, LiveState

logger = logging.getLogger(__name__)


class HostStatus(enum.StrEnum):
    """Whether the host's media reaches a live that is on air, in the `host` frame."""

    AWAY = "away"
    BACK = "back"


class HostPresence(enum.StrEnum):
    """The host's presence in the `host` field of `welcome`: `away` while a live that
    is `live` waits for its host to publish again, `present` in every other case."""

    AWAY = "away"
    PRESENT = "present"


def host_frame(status: HostStatus) -> dict[str, Any]:
    return {"type": "host", "status": status.value}


def host_presence(state: LiveState, host_away_since: datetime | None) -> HostPresence:
    if state is LiveState.LIVE and host_away_since is not None:
        return HostPresence.AWAY
    return HostPresence.PRESENT


async def record_host_away(database: Database, live_id: int, away: bool) -> None:
    """Store that the host of a live that is `live` left (`away`) or published again.

    A database error, or a socket error of its client, is logged and not raised, so the
    live goes on. Sockets that connect meanwhile may then get a wrong `host` in their
    welcome, until the host's presence or the live's state changes again.
    """
    statement = update(Live).where(Live.id == live_id)
    if away:
        # a live that moved on meanwhile has no host to wait for
        statement = statement.where(Live.state == LiveState.LIVE).values(host_away_since=utc_now())
    else:
        statement = statement.where(Live.host_away_since.is_not(None)).values(host_away_since=None)
    try:
        async with database.session() as session:
            await session.execute(statement)
            await session.commit()
    except UNAVAILABLE_ERROR_TYPES as error:
        logger.error(
            "live %s: host %s not recorded: %s", live_id, "away" if away else "back", error
        )

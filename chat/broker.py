"""Fan-out of stored chat events between server processes.

The database is the log; a broker only carries each stored event, serialized once,
to every process that has subscribers on its channel. `create_broker` picks the
in-process broker, or Redis pub/sub when a Redis URL is configured.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

logger = logging.getLogger(__name__)

# Called with (channel, payload) for each event published on a subscribed channel.
EventHandler = Callable[[str, str], None]
# Called after a broker connection came back: events published meanwhile were lost
# and must be read from the database.
ReconnectHandler = Callable[[], None]


class BrokerError(Exception):
    """The broker failed to carry out `operation`; `reason` describes the failure."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"broker {operation} failed: {reason}")
        self.operation = operation
        self.reason = reason


class Broker(ABC):
    """Publish and subscribe by channel name; delivers to one handler per process."""

    name: str

    def __init__(self) -> None:
        self._on_event: EventHandler | None = None
        self._on_reconnect: ReconnectHandler | None = None

    def attach(self, on_event: EventHandler, on_reconnect: ReconnectHandler) -> None:
        """Set the process's receiver of events; call once, before `start`."""
        if self._on_event is not None:
            raise RuntimeError(f"{self.name} broker already has an event handler")
        self._on_event = on_event
        self._on_reconnect = on_reconnect

    def _deliver(self, channel: str, payload: str) -> None:
        if self._on_event is not None:
            self._on_event(channel, payload)

    def _reconnected(self) -> None:
        if self._on_reconnect is not None:
            self._on_reconnect()

    async def start(self) -> None:  # noqa: B027 - most brokers have nothing to start
        """Connect and start listening."""

    async def stop(self) -> None:  # noqa: B027
        """Stop listening and close connections; no task is left running."""

    @abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving `channel`'s events; they reach the handler once this returns."""

    @abstractmethod
    async def unsubscribe(self, channel: str) -> None: ...

    @abstractmethod
    async def publish(self, channel: str, payload: str) -> None:
        """Send `payload` to every subscribed process, this one included.

        Raise BrokerError when it could not be sent.
        """

    @abstractmethod
    async def is_healthy(self) -> bool:
        """Return whether the broker carries events right now (for /health)."""


class MemoryBroker(Broker):
    """The broker of a single server process: publishing delivers at once."""

    name = "in-process"

    def __init__(self) -> None:
        super().__init__()
        self._channels: set[str] = set()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def publish(self, channel: str, payload: str) -> None:
        if channel in self._channels:
            self._deliver(channel, payload)

    async def is_healthy(self) -> bool:
        return True


def create_broker(redis_url: str | None) -> Broker:
    """Return the Redis broker for `redis_url`, or the in-process broker for None."""
    if not redis_url:
        return MemoryBroker()
    # Imported here because chat.redis_broker imports this module.
    from chat.redis_broker import RedisBroker  # noqa: PLC0415

    return RedisBroker(redis_url)

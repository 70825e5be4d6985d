"""Redis pub/sub broker: one pub/sub connection per process, watched by a listener
task that reconnects with backoff and resubscribes every channel."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time

import redis.asyncio
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from chat.broker import Broker, BrokerError

logger = logging.getLogger(__name__)

# Redis channel names are shared by every application on the server: keep ours apart.
KEY_PREFIX = "veillee:chat:"
# Subscribed by every listener under its prefix, so that its connection exists before
# any channel is; nothing is published there.
CONTROL_CHANNEL = "_control"

# First wait after a lost connection, doubled up to the max: a Redis restart takes
# about a second, and the max keeps a long outage from flooding the log.
RECONNECT_INITIAL_SECS = 0.1
RECONNECT_MAX_SECS = 10.0
# The listener pings an idle connection this often, and gives it up when nothing,
# not even the pong, came back within twice this time (a peer gone without a reset).
HEARTBEAT_SECS = 10.0
# Connecting, publishing and a subscription's confirmation each fail after this.
COMMAND_TIMEOUT_SECS = 5.0


class ListenerState(enum.StrEnum):
    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"


class RedisBroker(Broker):
    """Fans events out through Redis pub/sub between all processes of a deployment.

    Channel `name` is the Redis channel `key_prefix + name`. `label` names this broker
    in logs and task names, since signaling runs a broker of its own beside chat's.
    """

    name = "redis"

    def __init__(self, url: str, key_prefix: str = KEY_PREFIX, label: str = "chat") -> None:
        super().__init__()
        self.url = url
        self.key_prefix = key_prefix
        self.label = label
        # The listener's client never retries inside redis-py, because the listener
        # must be the one place that reconnects: after each reconnection it has the
        # missed events read back. Publishing retries once, so that the first publish
        # after a Redis restart replaces its stale pooled connection instead of failing.
        self._listen_client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=COMMAND_TIMEOUT_SECS,
            socket_connect_timeout=COMMAND_TIMEOUT_SECS,
            retry=Retry(NoBackoff(), 0),
        )
        self._publish_client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=COMMAND_TIMEOUT_SECS,
            socket_connect_timeout=COMMAND_TIMEOUT_SECS,
            retry=Retry(NoBackoff(), 1),
        )
        self._channels: set[str] = set()
        self._pubsub: PubSub | None = None
        # Maps a Redis channel name to the event set when its subscription is confirmed.
        self._confirmations: dict[str, asyncio.Event] = {}
        self._listener: asyncio.Task[None] | None = None
        self.state = ListenerState.STOPPED
        self.connections = 0
        self.connected = asyncio.Event()

    def _set_state(self, new_state: ListenerState) -> None:
        if new_state is not self.state:
            logger.debug("%s redis broker: %s -> %s", self.label, self.state.value, new_state.value)
            self.state = new_state
        if new_state is ListenerState.CONNECTED:
            self.connected.set()
        else:
            self.connected.clear()

    async def start(self) -> None:
        if self._listener is not None:
            raise RuntimeError(
                f"{self.label} redis broker listener already started, state {self.state}"
            )
        self._set_state(ListenerState.CONNECTING)
        self._listener = asyncio.create_task(
            self._listen_forever(), name=f"{self.label}-redis-listener"
        )
        self._listener.add_done_callback(self._listener_done)

    async def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
        self._set_state(ListenerState.STOPPED)
        await self._listen_client.aclose()
        await self._publish_client.aclose()

    def _listener_done(self, task: asyncio.Task[None]) -> None:
        # The listener loop catches every Exception, so it ends only by cancellation
        # or a BaseException; chat would be left without fan-out, so it restarts.
        if task.cancelled() or self._listener is not task:
            return
        error = task.exception()
        logger.error("%s redis broker: listener died; restarting it", self.label, exc_info=error)
        self._listener = asyncio.create_task(
            self._listen_forever(), name=f"{self.label}-redis-listener"
        )
        self._listener.add_done_callback(self._listener_done)

    async def _listen_forever(self) -> None:
        delay = RECONNECT_INITIAL_SECS
        while True:
            connections_before = self.connections
            try:
                await self._listen_once()
            except (RedisError, OSError, TimeoutError) as error:
                logger.warning(
                    "%s redis broker: listener connection lost (%s: %s); reconnecting in %.1f s",
                    self.label,
                    type(error).__name__,
                    error,
                    delay,
                )
            except Exception:
                # A bug must not end fan-out for good: log it and reconnect with the
                # same backoff, so that a repeating failure cannot spin.
                logger.exception(
                    "%s redis broker: listener failed; reconnecting in %.1f s", self.label, delay
                )
            self._set_state(ListenerState.RECONNECTING)
            if self.connections > connections_before:
                delay = RECONNECT_INITIAL_SECS
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECS)

    async def _listen_once(self) -> None:
        """Subscribe every channel on a new connection and deliver until it fails."""
        pubsub = self._listen_client.pubsub()
        try:
            prefix = self.key_prefix
            keys = {prefix + CONTROL_CHANNEL, *(prefix + channel for channel in self._channels)}
            await pubsub.subscribe(*keys)
            self._pubsub = pubsub
            unconfirmed = set(keys)
            last_received = time.monotonic()

            while True:
                message = await pubsub.get_message(timeout=HEARTBEAT_SECS)
                if message is None:
                    if time.monotonic() - last_received > 2 * HEARTBEAT_SECS:
                        raise TimeoutError(f"no reply from Redis for {2 * HEARTBEAT_SECS} s")
                    await pubsub.ping()
                    continue
                last_received = time.monotonic()
                key = _text(message.get("channel"))
                message_type = message.get("type")

                if message_type == "message" and key is not None:
                    self._receive(key, message.get("data"))
                elif message_type == "subscribe" and key is not None:
                    self._confirm(key)
                    if self.state is ListenerState.CONNECTED:
                        continue
                    unconfirmed.discard(key)
                    if unconfirmed:
                        continue
                    # Channels the hub added while this connection was being set up
                    # are subscribed before the connection counts as ready.
                    missing = {prefix + channel for channel in self._channels} - keys
                    if missing:
                        keys |= missing
                        unconfirmed |= missing
                        await pubsub.subscribe(*missing)
                    else:
                        self._on_connected(len(keys) - 1)
        finally:
            self._pubsub = None
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await pubsub.aclose()

    def _on_connected(self, channel_count: int) -> None:
        self.connections += 1
        self._set_state(ListenerState.CONNECTED)
        if self.connections == 1:
            logger.info(
                "%s redis broker: listening url=%s channels=%d",
                self.label,
                _safe_url(self.url),
                channel_count,
            )
        else:
            logger.info(
                "%s redis broker: reconnected, resubscribed channels=%d connection=%d",
                self.label,
                channel_count,
                self.connections,
            )
        # Events published before the subscriptions were active are lost for this
        # process. That holds after a reconnection and for channels subscribed during
        # the first connection, so the hub reads them back from the database.
        self._reconnected()

    def _confirm(self, key: str) -> None:
        event = self._confirmations.get(key)
        if event is not None:
            event.set()

    def _receive(self, key: str, data: object) -> None:
        if not key.startswith(self.key_prefix) or not isinstance(data, bytes):
            return
        try:
            payload = data.decode()
        except UnicodeDecodeError:
            logger.warning(
                "%s redis broker: dropped a payload that is not UTF-8 on %s", self.label, key
            )
            return
        self._deliver(key.removeprefix(self.key_prefix), payload)

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        pubsub = self._pubsub
        if pubsub is None or self.state is not ListenerState.CONNECTED:
            # The listener subscribes every channel when it connects again, and then
            # has the hub read the missed events from the database.
            return
        key = self.key_prefix + channel
        confirmed = asyncio.Event()
        self._confirmations[key] = confirmed
        try:
            await pubsub.subscribe(key)
            await asyncio.wait_for(confirmed.wait(), COMMAND_TIMEOUT_SECS)
        except (RedisError, OSError, TimeoutError) as error:
            # The listener fails on the same connection and resubscribes.
            logger.warning(
                "%s redis broker: subscribe channel=%s failed: %s", self.label, channel, error
            )
        finally:
            self._confirmations.pop(key, None)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return
        try:
            await pubsub.unsubscribe(self.key_prefix + channel)
        except (RedisError, OSError, TimeoutError) as error:
            logger.warning(
                "%s redis broker: unsubscribe channel=%s failed: %s", self.label, channel, error
            )

    async def publish(self, channel: str, payload: str) -> None:
        try:
            await self._publish_client.publish(self.key_prefix + channel, payload)
        except (RedisError, OSError, TimeoutError) as error:
            raise BrokerError("publish", f"{type(error).__name__}: {error}") from error

    async def is_healthy(self) -> bool:
        if self.state is not ListenerState.CONNECTED:
            return False
        try:
            return bool(await self._publish_client.ping())
        except (RedisError, OSError, TimeoutError):
            return False


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, str):
        return value
    return None


def _safe_url(url: str) -> str:
    """Return `url` without its password, for logs."""
    scheme, separator, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{separator}{user}:***@{host}"

"""Signaling requests between server processes that share a Redis.

A socket's `publish`, `watch` and `end` go to the live's media node, which answers on
the socket's node. Only the SDP offer and answer cross: the media then flows directly
between the browser and the media node's peer.

Each node subscribes to its inbox channel, `inbox:<node>`, which carries JSON objects
of four kinds:

- `request`, to the media node: `id`, `from`, `instance`, `socket`, `live_id`,
  `user_id`, `role`, `op` (publish, watch or end) and `sdp`;
- `reply`, to the socket's node: `id` and `answer` (the SDP, or null after `end`), or
  `error` with the `code` and `message` of the error frame;
- `frame`, to the socket's node: `socket` and the `frame` for that one socket;
- `closed`, to each media node the socket sent requests to: `socket` and `live_id`.

NOTE: the media node trusts the user id and role that the request carries, because
only the deployment's own processes can reach its Redis.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio

from signaling.fanout import Outbox
from signaling.media import Listener
from signaling.nodes import KEY_PREFIX, REDIS_ERRORS, NodeIdentity
from signaling.peers import PeerRole
from signaling.protocol import ErrorCode, ProtocolError
from signaling.tasks import TaskSupervisor

logger = logging.getLogger(__name__)

# A forwarded offer is answered once the media node's peer has gathered its ICE
# candidates, which takes about a second; a node that takes this long is overloaded or
# gone, and the client sends its frame again after `try_again`.
REPLY_TIMEOUT_SECS = 10.0

# Operations a request may carry.
OPERATIONS = frozenset({"publish", "watch", "end"})

# Serves a request on the media node: (operation, live id, socket, SDP offer or None)
# -> SDP answer, or None after `end`; raises ProtocolError to refuse it.
RequestServer = Callable[[str, int, Listener, str | None], Awaitable[str | None]]
# Releases the peers of a socket that closed: (live id, socket).
PeerReleaser = Callable[[int, Listener], Coroutine[Any, Any, None]]


def inbox_channel(node: str) -> str:
    """Return the broker channel of the node's inbox (KEY_PREFIX comes before it in Redis)."""
    return f"inbox:{node}"


class RemoteListener:
    """A signaling socket of another node, as the media node's sessions see it."""

    def __init__(
        self,
        link: NodeLink,
        *,
        node: str,
        instance: str,
        socket_id: str,
        live_id: int,
        user_id: int,
        role: PeerRole,
    ) -> None:
        self.link = link
        self.node = node
        self.instance = instance
        self.socket_id = socket_id
        self.live_id = live_id
        self.user_id = user_id
        self.role = role
        # set when the socket's node reported that it closed, or died
        self.closed = False

    def __repr__(self) -> str:
        return f"RemoteListener({self.socket_id} node={self.node} user={self.user_id})"

    def send(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            self.link.send_frame(self, frame)


@dataclass
class ForwardingSocket:
    """A local socket that sent requests to other nodes."""

    socket_id: str
    # the media nodes it sent requests to, which must hear when it closes
    nodes: set[str] = field(default_factory=set)


class NodeLink:
    """This node's inbox: requests sent to media nodes and served for other nodes."""

    def __init__(
        self,
        identity: NodeIdentity,
        client: redis.asyncio.Redis,
        outbox: Outbox,
        serve: RequestServer,
        release: PeerReleaser,
    ) -> None:
        self.identity = identity
        self.node = identity.name
        self.redis = client
        self.outbox = outbox
        self._serve = serve
        self._release = release
        self._numbers = itertools.count(1)
        # maps request id to the reply's future and the node it was sent to
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], str]] = {}
        # maps each local socket that sent requests to its forwarding record
        self._sockets: dict[Listener, ForwardingSocket] = {}
        # maps socket id to the local socket, for `frame` messages
        self._sockets_by_id: dict[str, Listener] = {}
        # maps socket id to the remote socket that this media node serves
        self._remote: dict[str, RemoteListener] = {}
        self.tasks = TaskSupervisor(f"NodeLink({self.node})")

    def __repr__(self) -> str:
        return f"NodeLink({self.node})"

    @property
    def inbox(self) -> str:
        return inbox_channel(self.node)

    # the socket's side

    async def request(
        self, node: str, operation: str, live_id: int, listener: Listener, sdp: str | None
    ) -> str | None:
        """Send a request to the media node `node` and return its answer; raise
        ProtocolError with the node's error, or TRY_AGAIN when it does not reply."""
        socket = self._socket_of(listener)
        socket.nodes.add(node)
        request_id = f"{self.identity.instance}-{next(self._numbers)}"
        message = {
            "kind": "request",
            "id": request_id,
            "from": self.node,
            "instance": self.identity.instance,
            "socket": socket.socket_id,
            "live_id": live_id,
            "user_id": listener.user_id,
            "role": listener.role.value,
            "op": operation,
            "sdp": sdp,
        }
        reply_future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = (reply_future, node)
        try:
            receivers = await self.redis.publish(
                KEY_PREFIX + inbox_channel(node), json.dumps(message)
            )
            if receivers == 0:
                logger.warning(
                    "%r: %s of live %s not sent: node %s is not listening",
                    self,
                    operation,
                    live_id,
                    node,
                )
                raise ProtocolError(ErrorCode.TRY_AGAIN)
            reply = await asyncio.wait_for(reply_future, REPLY_TIMEOUT_SECS)
        except REDIS_ERRORS as error:
            # TimeoutError is among them: Redis or the media node did not answer in time
            logger.warning(
                "%r: %s of live %s on node %s failed: %s: %s",
                self,
                operation,
                live_id,
                node,
                type(error).__name__,
                error,
            )
            raise ProtocolError(ErrorCode.TRY_AGAIN) from error
        finally:
            self._pending.pop(request_id, None)

        refusal = reply.get("error")
        if isinstance(refusal, dict):
            raise _protocol_error(refusal)
        answer = reply.get("answer")
        return answer if isinstance(answer, str) else None

    def socket_closed(self, live_id: int, listener: Listener) -> None:
        """Tell the media nodes that `listener` sent requests to that it closed."""
        socket = self._sockets.pop(listener, None)
        if socket is None:
            return
        self._sockets_by_id.pop(socket.socket_id, None)
        closed = {"kind": "closed", "socket": socket.socket_id, "live_id": live_id}
        for node in sorted(socket.nodes):
            self.outbox.put(inbox_channel(node), json.dumps(closed))

    def _socket_of(self, listener: Listener) -> ForwardingSocket:
        socket = self._sockets.get(listener)
        if socket is None:
            socket = ForwardingSocket(f"{self.identity.instance}-s{next(self._numbers)}")
            self._sockets[listener] = socket
            self._sockets_by_id[socket.socket_id] = listener
        return socket

    def send_frame(self, listener: RemoteListener, frame: dict[str, Any]) -> None:
        message = {"kind": "frame", "socket": listener.socket_id, "frame": frame}
        self.outbox.put(inbox_channel(listener.node), json.dumps(message, ensure_ascii=False))

    # messages

    def receive(self, payload: str) -> None:
        """Handle one message of this node's inbox; after `close`, drop it."""
        if self.tasks.is_closed:
            return
        try:
            message = json.loads(payload)
            kind = message["kind"]
        except (ValueError, KeyError, TypeError):
            logger.warning("%r: dropped a malformed inbox message", self)
            return
        if kind == "request":
            self.tasks.spawn(self._serve_request(message), f"request {message.get('id')}")
        elif kind == "reply":
            pending = self._pending.get(str(message.get("id")))
            if pending is not None and not pending[0].done():
                pending[0].set_result(message)
        elif kind == "frame":
            listener = self._sockets_by_id.get(str(message.get("socket")))
            frame = message.get("frame")
            if listener is not None and isinstance(frame, dict):
                listener.send(frame)
        elif kind == "closed":
            remote = self._remote.pop(str(message.get("socket")), None)
            if remote is not None:
                remote.closed = True
                self.tasks.spawn(self._release(remote.live_id, remote), f"release {remote!r}")
        else:
            logger.warning("%r: dropped an inbox message of kind %r", self, kind)

    async def _serve_request(self, message: dict[str, Any]) -> None:
        try:
            request_id = str(message["id"])
            origin = str(message["from"])
            live_id = int(message["live_id"])
            operation = str(message["op"])
            sdp = message.get("sdp")
            listener = self._remote_listener(message)
        except (KeyError, ValueError, TypeError) as error:
            logger.warning("%r: dropped a malformed request: %r", self, error)
            return
        if operation not in OPERATIONS or not (sdp is None or isinstance(sdp, str)):
            logger.warning("%r: dropped a request with operation %r", self, operation)
            return

        reply: dict[str, Any] = {"kind": "reply", "id": request_id}
        try:
            reply["answer"] = await self._serve(operation, live_id, listener, sdp)
        except ProtocolError as error:
            reply["error"] = {"code": error.code.value, "message": error.message}
        except Exception:
            logger.exception("%r: %s of live %s for %r failed", self, operation, live_id, listener)
            reply["error"] = {"code": ErrorCode.TRY_AGAIN.value}

        # the socket may have closed while its request was served
        if listener.closed:
            await self._release(live_id, listener)
        try:
            await self.redis.publish(
                KEY_PREFIX + inbox_channel(origin), json.dumps(reply, ensure_ascii=False)
            )
        except REDIS_ERRORS as error:
            logger.warning(
                "%r: reply to %s of live %s for node %s lost: %s",
                self,
                operation,
                live_id,
                origin,
                error,
            )

    def _remote_listener(self, message: dict[str, Any]) -> RemoteListener:
        socket_id = str(message["socket"])
        listener = self._remote.get(socket_id)
        if listener is None:
            listener = RemoteListener(
                self,
                node=str(message["from"]),
                instance=str(message["instance"]),
                socket_id=socket_id,
                live_id=int(message["live_id"]),
                user_id=int(message["user_id"]),
                role=PeerRole(message["role"]),
            )
            self._remote[socket_id] = listener
        return listener

    # nodes

    def node_gone(self, name: str, instance: str) -> None:
        """Fail the requests waiting for the dead node `name`, and release the peers of
        the sockets that its process `instance` had here."""
        if self.tasks.is_closed:
            return
        for reply_future, node in self._pending.values():
            if node == name and not reply_future.done():
                reply_future.set_result(
                    {"kind": "reply", "error": {"code": ErrorCode.TRY_AGAIN.value}}
                )
        for socket_id, listener in list(self._remote.items()):
            if listener.node == name and listener.instance == instance:
                del self._remote[socket_id]
                listener.closed = True
                self.tasks.spawn(self._release(listener.live_id, listener), f"release {listener!r}")

    async def close(self) -> None:
        for reply_future, _ in self._pending.values():
            if not reply_future.done():
                reply_future.set_result(
                    {"kind": "reply", "error": {"code": ErrorCode.TRY_AGAIN.value}}
                )
        await self.tasks.close()


def _protocol_error(error: dict[str, Any]) -> ProtocolError:
    try:
        code = ErrorCode(str(error.get("code")))
    except ValueError:
        return ProtocolError(ErrorCode.TRY_AGAIN)
    message = error.get("message")
    return ProtocolError(code, message if isinstance(message, str) else None)

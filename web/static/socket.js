// A WebSocket to one of Veillée's JSON endpoints that reconnects after an
// unexpected close, with exponential backoff and jitter, and stops on the close
// codes after which reconnecting cannot help (docs/protocol.md, "Close codes").

export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TOO_MANY_ERRORS: 4400,
  NOT_LOGGED_IN: 4401,
  FORBIDDEN: 4403,
  NOT_FOUND: 4404,
  TOO_SLOW: 4408,
  REMOVED: 4410,
  TOO_MANY_SOCKETS: 4429,
});

// Close codes after which the client stops instead of reconnecting.
const FINAL_CLOSE_CODES = new Set([
  CloseCode.NORMAL,
  CloseCode.TOO_MANY_ERRORS,
  CloseCode.NOT_LOGGED_IN,
  CloseCode.FORBIDDEN,
  CloseCode.NOT_FOUND,
  CloseCode.REMOVED,
  CloseCode.TOO_MANY_SOCKETS,
]);

// The first retry waits about half a second; each failure doubles the delay up to
// 30 s, so a server restart is noticed quickly and a long outage costs little.
const BACKOFF_BASE_MS = 500;
const BACKOFF_MAX_MS = 30_000;
// A connection that stayed open this long counts as healthy and resets the backoff,
// so a server that accepts and immediately closes still backs off.
const STABLE_CONNECTION_MS = 10_000;
// Proxies commonly drop WebSockets idle for 60 s; a ping every 25 s keeps the
// connection busy, and a missing answer after 10 s means the link is dead.
const PING_INTERVAL_MS = 25_000;
const PING_TIMEOUT_MS = 10_000;

/** Returns the ws:// or wss:// URL of `path` on this page's origin. */
export function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

/**
 * Returns the delay before reconnection attempt `attempt` (0 for the first):
 * half of the exponential delay is fixed and half random ("equal jitter"), so that
 * thousands of viewers dropped by one server restart do not return all at once.
 */
export function backoffDelayMs(attempt) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

export class ReconnectingSocket {
  /**
   * `path` is the endpoint's path, such as "/ws/chat/live:12". The handlers are
   * onOpen(isReconnection), onFrame(frame) for every JSON object received,
   * onReconnecting(closeCode, delayMs) before each wait (closeCode is null when the
   * client gave up on a silent link), and onStop(closeCode) once the server closed
   * with a code after which reconnecting cannot help.
   */
  constructor(path, { onOpen, onFrame, onReconnecting, onStop }) {
    this.url = socketUrl(path);
    this.handlers = { onOpen, onFrame, onReconnecting, onStop };
    this.webSocket = null;
    this.attempt = 0;
    this.openedCount = 0;
    // True before start() and after the socket stopped for good.
    this.stopped = true;
    this.retryTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.stableTimer = null;
    window.addEventListener("online", () => this.reconnectNow());
  }

  get isOpen() {
    return this.webSocket !== null && this.webSocket.readyState === WebSocket.OPEN;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  /** Sends one frame; returns false, sending nothing, when the socket is not open. */
  send(frame) {
    if (!this.isOpen) {
      return false;
    }
    this.webSocket.send(JSON.stringify(frame));
    return true;
  }

  /** Closes the socket with 1000 and does not reconnect. */
  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const webSocket = this.webSocket;
    this.detach();
    if (webSocket !== null) {
      webSocket.close(CloseCode.NORMAL);
    }
  }

  /** Closes the current connection and opens a new one at once. */
  restart() {
    if (this.stopped) {
      return;
    }
    clearTimeout(this.retryTimer);
    const webSocket = this.webSocket;
    this.detach();
    if (webSocket !== null) {
      webSocket.close(CloseCode.NORMAL);
    }
    this.connect();
  }

  /** Connects at once when the socket is waiting to reconnect, such as when the network returns. */
  reconnectNow() {
    if (this.stopped || this.webSocket !== null) {
      return;
    }
    clearTimeout(this.retryTimer);
    this.connect();
  }

  connect() {
    const webSocket = new WebSocket(this.url);
    this.webSocket = webSocket;

    webSocket.addEventListener("open", () => {
      this.openedCount += 1;
      this.stableTimer = setTimeout(() => {
        this.attempt = 0;
      }, STABLE_CONNECTION_MS);
      this.schedulePing();
      this.handlers.onOpen(this.openedCount > 1);
    });

    webSocket.addEventListener("message", (event) => {
      this.schedulePing();
      if (typeof event.data !== "string") {
        return;
      }
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch (error) {
        console.warn("socket %s: ignored a frame that is not JSON: %s", this.url, error);
        return;
      }
      if (frame !== null && typeof frame === "object" && typeof frame.type === "string") {
        this.handlers.onFrame(frame);
      }
    });

    webSocket.addEventListener("close", (event) => {
      if (webSocket !== this.webSocket) {
        return;
      }
      this.detach();
      this.handleClose(event.code);
    });
  }

  handleClose(code) {
    if (this.stopped) {
      return;
    }
    if (FINAL_CLOSE_CODES.has(code)) {
      this.stopped = true;
      this.handlers.onStop(code);
      return;
    }
    this.scheduleReconnect(code);
  }

  scheduleReconnect(code) {
    const delayMs = backoffDelayMs(this.attempt);
    this.attempt += 1;
    this.handlers.onReconnecting(code, delayMs);
    this.retryTimer = setTimeout(() => this.connect(), delayMs);
  }

  schedulePing() {
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
    this.pingTimer = setTimeout(() => {
      if (!this.send({ type: "ping" })) {
        return;
      }
      // Any frame, not only the pong, proves the link alive and reschedules.
      this.pongTimer = setTimeout(() => this.abandonDeadConnection(), PING_TIMEOUT_MS);
    }, PING_INTERVAL_MS);
  }

  abandonDeadConnection() {
    console.warn("socket %s: no answer to ping after %d ms, reconnecting", this.url, PING_TIMEOUT_MS);
    const webSocket = this.webSocket;
    this.detach();
    if (webSocket !== null) {
      // The close handshake cannot complete on a dead link, so the old socket is
      // forgotten first and its late close event is ignored.
      webSocket.close(CloseCode.NORMAL);
    }
    this.scheduleReconnect(null);
  }

  /** Forgets the current connection and its timers without touching `stopped`. */
  detach() {
    clearTimeout(this.pingTimer);
    clearTimeout(this.pongTimer);
    clearTimeout(this.stableTimer);
    this.webSocket = null;
  }
}

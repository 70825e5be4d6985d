// Client side of the chat socket, /ws/chat/{channel}: ordered events, resume after
// a reconnection, and sends that survive one (docs/protocol.md, "Chat socket").
//
// ChatClient dispatches these events, each with its data in `detail`:
//   "welcome"     {user, role, canWrite, muted, slowModeSecs, maxChars}
//   "message"     {event}                   a message event to show, in seq order
//   "deletion"    {deletedSeq}              remove that message
//   "moderation"  {event}                   a mute, unmute or slow_mode event, in seq order
//   "reset"       {}                        discard every message shown
//   "sending"     {clientId, text}          a message of ours waits for the server
//   "sent"        {clientId}                that message is now shown as an event
//   "rejected"    {clientId, text, message} the server refused it, for good
//   "readonly"    {}                        the channel no longer accepts messages
//   "error"       {code, message}           an error frame about no pending message
//   "connection"  {status, code}            "connected", "synced", "reconnecting", "stopped"

import { ReconnectingSocket, backoffDelayMs } from "./socket.js";

export const DEFAULT_TEXT_MAX_CHARS = 1000;

// White space as docs/protocol.md defines it, the same set as core/text.py: Unicode's
// White_Space property and U+FEFF. Neither String.prototype.trim() nor Python's
// str.strip() has exactly this set.
const WHITE_SPACE =
  "\\t\\n\\v\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000\\uFEFF";
const SURROUNDING_WHITE_SPACE = new RegExp(`^[${WHITE_SPACE}]+|[${WHITE_SPACE}]+$`, "g");

/** Returns `text` without white space at either end, as the server trims every text. */
export function trimWhiteSpace(text) {
  return text.replace(SURROUNDING_WHITE_SPACE, "");
}

/**
 * Returns the length of `text` as the server counts it: Unicode code points after
 * NFC normalization, so "é" typed as e + combining accent counts once.
 */
export function countCodePoints(text) {
  return [...text.normalize("NFC")].length;
}

// Errors after which resending the same message cannot succeed.
const FINAL_SEND_ERRORS = new Set([
  "invalid_frame",
  "invalid_text",
  "text_too_long",
  "too_large",
  "rate_limited",
  "forbidden",
  "read_only",
  "muted",
  "slow_mode",
]);

// A message refused with try_again this many times is given back to its author:
// with the backoff delays, that is roughly ten seconds of a failing database or broker.
const MAX_SEND_ATTEMPTS = 5;

export class ChatClient extends EventTarget {
  /** `path` is the chat socket's path, such as "/ws/chat/live:12". */
  constructor(path) {
    super();
    this.user = null;
    this.role = null;
    this.canWrite = false;
    // Whether a moderator took this person's right to send, and the slow mode's
    // interval in seconds (0 when off), from `welcome` and then from events.
    this.muted = false;
    this.slowModeSecs = 0;
    // Highest seq applied; null until the first history arrives, and after a reset.
    this.lastSeq = null;
    this.synced = false;
    // Maps the client_id of each message not yet seen as an event to
    // {text, seq, attempt}: seq is set once acknowledged, and attempt counts
    // `try_again` answers.
    this.pending = new Map();
    this.socket = new ReconnectingSocket(path, {
      onOpen: () => this.handleOpen(),
      onFrame: (frame) => this.handleFrame(frame),
      onReconnecting: (code) => {
        this.synced = false;
        this.emit("connection", { status: "reconnecting", code });
      },
      onStop: (code) => {
        this.synced = false;
        this.emit("connection", { status: "stopped", code });
      },
    });
  }

  start() {
    this.socket.start();
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  get isHost() {
    return this.role === "host";
  }

  /** Sends `text` under a new client_id; it is sent again after a reconnection until stored. */
  send(text) {
    const clientId = `c-${crypto.randomUUID()}`;
    this.pending.set(clientId, { text, seq: null, attempt: 0 });
    this.emit("sending", { clientId, text });
    if (this.synced) {
      this.socket.send({ type: "send", client_id: clientId, text });
    }
    return clientId;
  }

  /** Asks the server to delete message `seq`; returns false when the socket is down. */
  deleteMessage(seq) {
    return this.socket.send({ type: "delete", seq });
  }

  /** Asks the server to take or give back a person's right to send (moderators only). */
  setMuted(userId, muted) {
    return this.socket.send({ type: muted ? "mute" : "unmute", user_id: userId });
  }

  /** Asks the server to set the slow mode, 0 to turn it off (moderators only). */
  setSlowMode(intervalSecs) {
    return this.socket.send({ type: "slow_mode", interval_secs: intervalSecs });
  }

  handleOpen() {
    this.synced = false;
    this.emit("connection", { status: "connected", code: null });
    // Only the very first connection asks for the recent history without `after`.
    const resume = this.lastSeq === null ? { type: "resume" } : { type: "resume", after: this.lastSeq };
    this.socket.send(resume);
  }

  handleFrame(frame) {
    switch (frame.type) {
      case "welcome":
        this.handleWelcome(frame);
        break;
      case "event":
        this.handleEvent(frame);
        break;
      case "reset":
        this.lastSeq = null;
        this.emit("reset");
        break;
      case "synced":
        this.handleSynced(frame);
        break;
      case "ack":
        this.handleAck(frame);
        break;
      case "error":
        this.handleError(frame);
        break;
      case "pong":
        break;
      default:
        console.warn("chat: ignored a frame of unknown type %s", frame.type);
    }
  }

  handleWelcome(frame) {
    this.user = frame.user;
    this.role = frame.role;
    this.canWrite = frame.can_write === true;
    this.muted = frame.muted === true;
    this.slowModeSecs = frame.slow_mode_secs ?? 0;
    const maxChars = frame.limits?.text_max_chars ?? DEFAULT_TEXT_MAX_CHARS;
    this.emit("welcome", {
      user: frame.user,
      role: frame.role,
      canWrite: this.canWrite,
      muted: this.muted,
      slowModeSecs: this.slowModeSecs,
      maxChars,
    });
  }

  handleEvent(frame) {
    const seq = frame.seq;
    if (this.lastSeq !== null && seq <= this.lastSeq) {
      return;
    }
    if (this.lastSeq !== null && seq !== this.lastSeq + 1) {
      // The server promises no gaps; if one shows up anyway, a fresh connection
      // resumes from the last applied seq and fills it.
      console.warn("chat: expected seq %d, received %d; resuming", this.lastSeq + 1, seq);
      this.synced = false;
      this.socket.restart();
      return;
    }
    this.lastSeq = seq;

    if (frame.kind === "deletion") {
      this.emit("deletion", { deletedSeq: frame.deleted_seq });
      return;
    }
    if (frame.kind === "mute" || frame.kind === "unmute") {
      if (this.user !== null && frame.user?.id === this.user.id) {
        this.muted = frame.kind === "mute";
      }
      this.emit("moderation", { event: frame });
      return;
    }
    if (frame.kind === "slow_mode") {
      this.slowModeSecs = frame.interval_secs ?? 0;
      this.emit("moderation", { event: frame });
      return;
    }
    if (frame.kind !== "message") {
      return;
    }
    const ownClientId = this.isOwnPending(frame) ? frame.client_id : null;
    if (ownClientId !== null) {
      this.pending.delete(ownClientId);
      this.emit("sent", { clientId: ownClientId });
    }
    if (!frame.deleted) {
      this.emit("message", { event: frame });
    }
  }

  isOwnPending(frame) {
    return (
      typeof frame.client_id === "string" &&
      this.pending.has(frame.client_id) &&
      this.user !== null &&
      frame.author?.id === this.user.id
    );
  }

  handleSynced(frame) {
    if (typeof frame.last_seq === "number") {
      this.lastSeq = Math.max(this.lastSeq ?? 0, frame.last_seq);
    }
    this.synced = true;
    this.emit("connection", { status: "synced", code: null });

    // Messages acknowledged before the drop came back in the history; the rest
    // are sent again with their client_id, which the server stores only once.
    for (const [clientId, message] of this.pending) {
      if (message.seq !== null && message.seq <= this.lastSeq) {
        this.pending.delete(clientId);
        this.emit("sent", { clientId });
      } else if (message.seq === null) {
        this.socket.send({ type: "send", client_id: clientId, text: message.text });
      }
    }
  }

  handleAck(frame) {
    const message = this.pending.get(frame.client_id);
    if (message !== undefined) {
      message.seq = frame.seq;
    }
  }

  handleError(frame) {
    const message = typeof frame.ref === "string" ? this.pending.get(frame.ref) : undefined;
    if (frame.code === "read_only") {
      this.canWrite = false;
      this.emit("readonly");
    }
    if (message === undefined) {
      this.emit("error", { code: frame.code, message: frame.message });
      return;
    }

    if (FINAL_SEND_ERRORS.has(frame.code)) {
      this.pending.delete(frame.ref);
      this.emit("rejected", { clientId: frame.ref, text: message.text, message: frame.message });
      return;
    }
    // try_again and any error the client does not know: nothing was stored, so
    // the same frame goes out again after a growing delay, a few times.
    if (message.attempt >= MAX_SEND_ATTEMPTS) {
      this.pending.delete(frame.ref);
      this.emit("rejected", { clientId: frame.ref, text: message.text, message: frame.message });
      return;
    }
    const delayMs = backoffDelayMs(message.attempt);
    message.attempt += 1;
    setTimeout(() => {
      if (this.synced && this.pending.get(frame.ref) === message && message.seq === null) {
        this.socket.send({ type: "send", client_id: frame.ref, text: message.text });
      }
    }, delayMs);
  }
}

// The chat panel: the message list, the form with its code-point counter, the
// errors and the connection status. Names and texts are untrusted, so they only
// ever go through textContent, inside elements that isolate their direction.

import { CloseCode } from "./socket.js";
import { DEFAULT_TEXT_MAX_CHARS, countCodePoints } from "./chat.js";

// A list scrolled to within this many pixels of its end follows new messages. Further
// up, the reader is reading history, so the list stays where it is.
const FOLLOW_THRESHOLD_PX = 48;

const CLOSED_MESSAGE = "La discussion est close : elle n'accepte plus de messages.";
const DISCONNECTED_MESSAGE = "La connexion est perdue : réessayez dans un instant.";

/**
 * Formats an ISO 8601 instant as a French time of day, such as "20:31", in
 * `timeZone` when given and valid, otherwise in the browser's zone.
 */
export function formatLocalTime(isoInstant, timeZone) {
  const moment = new Date(isoInstant);
  const options = { hour: "2-digit", minute: "2-digit" };
  try {
    return moment.toLocaleTimeString("fr-FR", timeZone ? { ...options, timeZone } : options);
  } catch (error) {
    if (!(error instanceof RangeError)) {
      throw error;
    }
    return moment.toLocaleTimeString("fr-FR", options);
  }
}

/**
 * Creates the <li> of one chat message. `dateTime` fills the <time> element's
 * machine-readable attribute and may be omitted, as on the replay page.
 */
export function createMessageElement({ authorName, text, timeText, dateTime }) {
  const item = document.createElement("li");
  item.className = "message";

  const time = document.createElement("time");
  time.className = "time";
  time.textContent = timeText;
  if (dateTime) {
    time.dateTime = dateTime;
  }

  // <bdi> keeps a name written right to left, or full of bidi overrides, from
  // reordering the text around it.
  const author = document.createElement("bdi");
  author.className = "author";
  author.textContent = authorName;

  const body = document.createElement("span");
  body.className = "text";
  body.dir = "auto";
  body.textContent = text;

  item.append(time, " ", author, " ", body);
  return item;
}

/** French text for a socket that stopped with `code`; `forbiddenMessage` covers 4403. */
function stoppedMessage(code, forbiddenMessage) {
  switch (code) {
    case CloseCode.NOT_LOGGED_IN:
      return "Connectez-vous pour continuer.";
    case CloseCode.FORBIDDEN:
      return forbiddenMessage;
    case CloseCode.NOT_FOUND:
      return "Cette discussion n'existe pas ou plus.";
    case CloseCode.TOO_MANY_ERRORS:
      return "La discussion s'est arrêtée après trop d'erreurs. Rechargez la page.";
    default:
      return "La discussion est fermée.";
  }
}

export class ChatView {
  /**
   * Binds `client` to the chat panel under `root`. `timeZone` is the IANA zone in
   * which times are shown; `forbiddenMessage` is shown when the server closes with 4403.
   */
  constructor(root, client, { timeZone = null, forbiddenMessage }) {
    this.client = client;
    this.timeZone = timeZone;
    this.forbiddenMessage = forbiddenMessage;
    this.maxChars = DEFAULT_TEXT_MAX_CHARS;
    this.list = root.querySelector("[data-chat-messages]");
    this.status = root.querySelector("[data-chat-status]");
    this.form = root.querySelector("[data-chat-form]");
    this.input = root.querySelector("[data-chat-input]");
    this.submitButton = root.querySelector("[data-chat-submit]");
    this.counter = root.querySelector("[data-chat-counter]");
    this.error = root.querySelector("[data-chat-error]");

    this.setWritable(false);
    this.showStatus("Connexion à la discussion…");
    this.bindForm();
    this.bindClient();
  }

  bindForm() {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.input.addEventListener("input", () => {
      // typing clears the last error, unless the text is still too long
      if (!this.updateCounter()) {
        this.hideError();
      }
    });
    this.input.addEventListener("keydown", (event) => {
      // Enter sends, Shift+Enter starts a new line; an input method composing a
      // character keeps its Enter.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.form.requestSubmit();
      }
    });
  }

  bindClient() {
    const client = this.client;
    client.addEventListener("welcome", ({ detail }) => {
      this.maxChars = detail.maxChars;
      this.form.hidden = !detail.canWrite;
      this.setWritable(detail.canWrite);
      this.updateCounter();
    });
    client.addEventListener("message", ({ detail }) => this.appendMessage(detail.event));
    client.addEventListener("deletion", ({ detail }) => this.removeMessage(detail.deletedSeq));
    client.addEventListener("reset", () => {
      for (const item of this.list.querySelectorAll("li[data-seq]")) {
        item.remove();
      }
    });
    client.addEventListener("sending", ({ detail }) => this.appendPending(detail));
    client.addEventListener("sent", ({ detail }) => this.removePending(detail.clientId));
    client.addEventListener("rejected", ({ detail }) => {
      this.removePending(detail.clientId);
      if (this.input.value === "") {
        this.input.value = detail.text;
        this.updateCounter();
      }
      this.showError(detail.message);
    });
    client.addEventListener("readonly", () => this.close());
    client.addEventListener("error", ({ detail }) => this.showError(detail.message));
    client.addEventListener("connection", ({ detail }) => this.showConnection(detail));
  }

  showConnection({ status, code }) {
    if (status === "synced" && this.client.canWrite) {
      this.showStatus("");
    } else if (status === "synced") {
      this.close();
    } else if (status === "reconnecting") {
      this.showStatus("Connexion perdue, reconnexion…");
    } else if (status === "stopped") {
      this.setWritable(false);
      this.showStatus(stoppedMessage(code, this.forbiddenMessage));
    }
  }

  /**
   * Stops accepting messages, such as when the live ends, and hides the form, which
   * could only fail from now on. The host may still delete messages.
   */
  close() {
    this.setWritable(false);
    this.form.hidden = true;
    this.showStatus(CLOSED_MESSAGE);
  }

  submit() {
    const text = this.input.value.trim();
    if (text === "") {
      return;
    }
    if (countCodePoints(text) > this.maxChars) {
      this.showError(`Votre message dépasse ${this.maxChars} caractères.`);
      return;
    }
    this.client.send(text);
    this.input.value = "";
    this.updateCounter();
    this.input.focus();
  }

  /** Updates the counter and the send button; returns whether the text is too long. */
  updateCounter() {
    const count = countCodePoints(this.input.value.trim());
    const over = count > this.maxChars;
    this.counter.textContent = `${count} / ${this.maxChars}`;
    this.counter.classList.toggle("over", over);
    this.submitButton.disabled = !this.writable || over || count === 0;
    if (over) {
      this.showError(`Votre message dépasse ${this.maxChars} caractères.`);
    }
    return over;
  }

  setWritable(writable) {
    this.writable = writable;
    this.input.disabled = !writable;
    this.updateCounter();
  }

  /** Runs `change` on the list and keeps it scrolled to the end if it was there. */
  changeList(change) {
    const list = this.list;
    const following = list.scrollHeight - list.scrollTop - list.clientHeight < FOLLOW_THRESHOLD_PX;
    change();
    if (following) {
      list.scrollTop = list.scrollHeight;
    }
  }

  appendMessage(event) {
    const item = createMessageElement({
      authorName: event.author?.name ?? "",
      text: event.text,
      timeText: formatLocalTime(event.sent_at, this.timeZone),
      dateTime: event.sent_at,
    });
    item.dataset.seq = String(event.seq);
    const own = this.client.user !== null && event.author?.id === this.client.user.id;
    if (own) {
      item.classList.add("own");
    }
    if (this.client.isHost || own) {
      item.append(this.createDeleteButton(event));
    }
    // stored messages go above those still waiting for the server
    const firstPending = this.list.querySelector("li.pending");
    this.changeList(() => this.list.insertBefore(item, firstPending));
  }

  createDeleteButton(event) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link delete";
    button.textContent = "Supprimer";
    button.setAttribute("aria-label", `Supprimer le message de ${event.author?.name ?? ""}`);
    button.addEventListener("click", () => {
      if (this.client.deleteMessage(event.seq)) {
        button.disabled = true;
      } else {
        this.showError(DISCONNECTED_MESSAGE);
      }
    });
    return button;
  }

  removeMessage(seq) {
    this.list.querySelector(`li[data-seq="${Number(seq)}"]`)?.remove();
  }

  appendPending({ clientId, text }) {
    const item = createMessageElement({
      authorName: this.client.user?.name ?? "",
      text,
      timeText: "envoi…",
    });
    item.classList.add("pending", "own");
    item.dataset.clientId = clientId;
    this.changeList(() => this.list.append(item));
  }

  removePending(clientId) {
    for (const item of this.list.querySelectorAll("li.pending")) {
      if (item.dataset.clientId === clientId) {
        item.remove();
      }
    }
  }

  showStatus(text) {
    this.status.textContent = text;
    this.status.hidden = text === "";
  }

  showError(message) {
    const text = message || "Une erreur est survenue.";
    if (!this.error.hidden && this.error.textContent === text) {
      // unchanged, so a screen reader does not announce it again at each keystroke
      return;
    }
    this.error.textContent = text;
    this.error.hidden = false;
  }

  hideError() {
    this.error.hidden = true;
    this.error.textContent = "";
  }
}

// The private conversation page of a mentorship: the same chat socket and chat panel
// as a live's, on the channel conversation:<id>, plus the read position that the
// unread counts start from. Its data comes from the data-* attributes of the
// [data-conversation-chat] element (web/templates/mentoring/conversation.html).

import { ChatClient } from "./chat.js";
import { ChatView } from "./chat-view.js";
import { CloseCode } from "./socket.js";

// Reading several messages in a row sends one read mark, this long after the last.
const READ_MARK_DELAY_MS = 1000;

// The server closes with 4404 both for a missing conversation and for one of other people.
const NOT_FOUND_MESSAGE = "Cette conversation n'existe pas.";

/** Sends the highest seq shown while the page is visible, at most once per delay. */
class ReadMarker {
  constructor(client, url, csrfToken) {
    this.client = client;
    this.url = url;
    this.csrfToken = csrfToken;
    this.sentSeq = 0;
    this.timer = null;
    document.addEventListener("visibilitychange", () => this.schedule());
  }

  schedule() {
    if (document.visibilityState !== "visible" || this.timer !== null) {
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      this.send();
    }, READ_MARK_DELAY_MS);
  }

  async send() {
    const seq = this.client.lastSeq;
    if (seq === null || seq <= this.sentSeq) {
      return;
    }
    try {
      const response = await fetch(this.url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": this.csrfToken },
        body: JSON.stringify({ seq }),
        credentials: "same-origin",
      });
      if (response.ok) {
        this.sentSeq = seq;
      }
    } catch (error) {
      // The next message or visibility change sends the mark again.
      console.warn("conversation: read mark not sent: %s", error);
    }
  }
}

function start(root) {
  const data = root.dataset;
  const client = new ChatClient(data.chatPath);
  new ChatView(root, client, {
    timeZone: data.timeZone || null,
    forbiddenMessage: NOT_FOUND_MESSAGE,
  });
  const marker = new ReadMarker(client, data.readUrl, data.csrfToken);
  client.addEventListener("message", () => marker.schedule());
  client.addEventListener("connection", ({ detail }) => {
    if (detail.status === "synced") {
      marker.schedule();
    } else if (detail.status === "stopped" && detail.code === CloseCode.NOT_LOGGED_IN) {
      location.assign(`/login?next=${encodeURIComponent(location.pathname)}`);
    }
  });
  client.start();
}

const root = document.querySelector("[data-conversation-chat]");
if (root !== null) {
  start(root);
}
